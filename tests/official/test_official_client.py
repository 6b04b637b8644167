"""The official Backend.AI client (23.9.10) against our manager: its SDK and CLI, unchanged.

Run through scripts/official-client.sh, which starts a standalone manager and exports BACKEND_ENDPOINT,
BACKEND_ACCESS_KEY, BACKEND_SECRET_KEY and BACKENDAI_CLI.
"""

import os
import subprocess
import time
import uuid

import pytest
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

CLI = os.environ["BACKENDAI_CLI"]


def cli(*args, input=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, timeout=120)


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_sdk_sessions_keep_state_between_executions():
    with Session() as api:
        session = api.ComputeSession.get_or_create("python:3.11", name=name("sdk"))
        assert session.status == "RUNNING"
        assert session.created
        assert session.execute(code="x = 6 * 7")["status"] == "finished"
        result = session.execute(code="print(x)")
        assert result["status"] == "finished"
        assert result["exitCode"] == 0
        assert result["console"] == [["stdout", "42\n"]]
        again = api.ComputeSession.get_or_create("python:3.11", name=session.name)
        assert not again.created and str(again.id) == str(session.id)
        session.destroy()


def test_sdk_reads_input_and_reports_errors():
    with Session() as api:
        session = api.ComputeSession.get_or_create("python:3.11", name=name("sdk-in"))
        result = session.execute(code="n = input('who? ')\nprint('hi', n)")
        assert result["status"] == "waiting-input"
        result = session.execute(result["runId"], code="bob", mode="input")
        assert result["status"] == "finished"
        assert ["stdout", "hi bob\n"] in result["console"]
        failed = session.execute(code="raise ValueError('boom')")
        assert failed["exitCode"] == 1
        assert any(kind == "stderr" and "ValueError: boom" in text for kind, text in failed["console"])
        session.destroy()
        with pytest.raises(BackendAPIError) as err:
            api.ComputeSession("no-such-session").get_info()
        assert err.value.status == 404


def test_cli_session_create_and_destroy():
    session = name("cli")
    created = cli("session", "create", "--name", session, "python:3.11")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "ready" in created.stdout + created.stderr
    destroyed = cli("session", "destroy", session)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    gone = cli("session", "destroy", session)
    assert gone.returncode != 0


def test_cli_run_prints_and_removes_its_session():
    result = cli("run", "--rm", "python:3.11", "-c", "print(6*7)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "42" in result.stdout.splitlines()
    assert "exit code = 0" in result.stdout + result.stderr


def test_cli_runs_share_a_named_session_and_the_read_side_sees_it():
    session = name("shared")
    created = cli("session", "create", "-t", session, "python:3.11")
    assert created.returncode == 0, created.stdout + created.stderr
    first = cli("run", "-t", session, "python:3.11", "-c", "y = 20")
    assert first.returncode == 0, first.stdout + first.stderr
    second = cli("run", "-t", session, "python:3.11", "-c", "print(y + 22)")
    assert "42" in second.stdout.splitlines(), second.stdout + second.stderr

    listed = cli("ps")
    assert listed.returncode == 0 and session in listed.stdout, listed.stdout + listed.stderr
    row = next(line for line in listed.stdout.splitlines() if session in line)
    assert "RUNNING" in row
    session_id = row.split()[2]
    info = cli("session", "info", session_id)
    assert info.returncode == 0 and "RUNNING" in info.stdout, info.stdout + info.stderr
    admin_list = cli("admin", "session", "list")
    assert admin_list.returncode == 0 and session in admin_list.stdout, admin_list.stdout + admin_list.stderr
    agents = cli("admin", "agent", "list")
    assert agents.returncode == 0 and "ALIVE" in agents.stdout, agents.stdout + agents.stderr

    assert cli("session", "destroy", session).returncode == 0
    dead = cli("ps", "--dead")
    assert session in dead.stdout, dead.stdout + dead.stderr


def test_cli_run_reports_a_failing_exit_code():
    result = cli("run", "--rm", "python:3.11", "-c", "import sys; print('bye'); sys.exit(3)")
    out = result.stdout + result.stderr
    assert "bye" in result.stdout.splitlines(), out
    # The 23.9 CLI prints the code's exit code (its own exit status stays 0).
    assert "exit code = 3" in out, out


def wait_until_connected(pid):
    """Waits until process `pid` holds an established TCP connection to the manager (its event stream)."""
    port = int(os.environ["BACKEND_ENDPOINT"].rsplit(":", 1)[1].rstrip("/"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open("/proc/net/tcp") as table:
            for row in table.readlines()[1:]:
                cols = row.split()
                if cols[3] == "01" and int(cols[2].split(":")[1], 16) == port and cols[9] in inodes:
                    time.sleep(0.5)  # the request on that connection reaches the server's subscription
                    return
        time.sleep(0.05)
    raise AssertionError("the events watcher never connected")


def test_cli_events_show_a_session_lifecycle():
    session = name("events")
    watcher = subprocess.Popen([CLI, "events", session], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_connected(watcher.pid)
        assert cli("session", "create", "-t", session, "python:3.11").returncode == 0
        assert cli("session", "destroy", session).returncode == 0
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "session_terminated" not in seen:
            line = watcher.stdout.readline()
            if not line:
                break
            seen.append(line.split()[0] if line.split() else "")
        for event in ["session_enqueued", "session_started", "session_terminated"]:
            assert event in seen, seen
        assert seen.index("session_enqueued") < seen.index("session_started") < seen.index("session_terminated")
    finally:
        watcher.kill()
        watcher.wait()


def test_cli_reports_a_wrong_secret_key():
    env = dict(os.environ, BACKEND_SECRET_KEY="not-the-secret-key-0000000000000000000000")
    result = subprocess.run([CLI, "ps"], capture_output=True, text=True, env=env, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "401" in out or "auth" in out.lower(), out


def test_cli_batch_run_of_an_uploaded_file(tmp_path):
    (tmp_path / "main.py").write_text("import sys\nprint('from file', sys.argv[1:])\n")
    result = subprocess.run(
        [CLI, "run", "--rm", "--exec", "python main.py a b", "python:3.11", "main.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "from file ['a', 'b']" in result.stdout, out
    assert "exit code = 0" in out, out


def test_cli_session_files_round_trip(tmp_path):
    session = name("files")
    (tmp_path / "data.txt").write_text("payload\n")
    assert cli("session", "create", "-t", session, "python:3.11").returncode == 0
    up = subprocess.run([CLI, "session", "upload", session, "data.txt"], capture_output=True, text=True, cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    listed = cli("session", "ls", session)
    assert "data.txt" in listed.stdout, listed.stdout + listed.stderr
    run = cli("run", "-t", session, "python:3.11", "-c", "open('out.txt', 'w').write(open('data.txt').read().upper())")
    assert run.returncode == 0, run.stdout + run.stderr
    dest = tmp_path / "dl"
    dest.mkdir()
    down = subprocess.run(
        [CLI, "session", "download", session, "out.txt"], capture_output=True, text=True, cwd=dest, timeout=60
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert (dest / "out.txt").read_text() == "PAYLOAD\n"
    assert cli("session", "destroy", session).returncode == 0
