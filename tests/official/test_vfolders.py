"""Virtual folders through the official Backend.AI client (23.9.10): its `vfolder` CLI commands and its SDK, unchanged,
including the tus upload (aiotusclient) and the ranged download they do against our transfer endpoints.

Run through scripts/official-client.sh (`-k vfolder`), which starts a standalone manager and exports the client's
environment.
"""

import hashlib
import json
import os
import subprocess
import uuid

import pytest
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

CLI = os.environ["BACKENDAI_CLI"]


def cli(*args, cwd=None, input=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, timeout=300, cwd=cwd)


def ok(*args, cwd=None, input=None):
    result = cli(*args, cwd=cwd, input=input)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"backend.ai {' '.join(args)}: {out}"
    # Some 23.9 commands report failures with exit status 0: their message is the tell.
    assert "✗" not in out and "Error" not in out.replace("error_msg", ""), f"backend.ai {' '.join(args)}: {out}"
    return out


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def blob(size, seed):
    """Bytes that differ from offset to offset, so a misplaced chunk shows."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def test_vfolder_cli_round_trip(tmp_path):
    folder = name("vf")
    hosts = ok("vfolder", "list-hosts")
    assert "local" in hosts, hosts
    assert f'Virtual folder "{folder}" is created' in ok("vfolder", "create", folder, "local")
    listed = ok("vfolder", "list")
    assert folder in listed, listed

    # Larger than the CLI's 8 MiB default chunk, so the tus upload takes several PATCHes.
    content = blob(9 * 1024 * 1024 + 17, folder)
    (tmp_path / "data.bin").write_bytes(content)
    ok("vfolder", "upload", folder, "data.bin", cwd=tmp_path)
    files = ok("vfolder", "ls", folder)
    row = next((line for line in files.splitlines() if line.startswith("data.bin")), None)
    assert row is not None and str(len(content)) in row, files

    down = tmp_path / "down"
    down.mkdir()
    ok("vfolder", "download", folder, "data.bin", cwd=down)
    assert (down / "data.bin").read_bytes() == content

    info = ok("vfolder", "info", folder)
    assert f'Virtual folder "{folder}"' in info, info
    assert "- Number of files: 1" in info, info

    ok("vfolder", "mkdir", folder, "inner")
    ok("vfolder", "mv", folder, "data.bin", "inner/data.bin")
    ok("vfolder", "rename-file", folder, "inner/data.bin", "renamed.bin")
    inner = ok("vfolder", "ls", folder, "inner")
    names = [line.split()[0] for line in inner.splitlines() if line.strip()]
    assert "renamed.bin" in names and "data.bin" not in names, inner
    ok("vfolder", "delete-file", folder, "inner/renamed.bin", input="y\n")
    assert "renamed.bin" not in ok("vfolder", "ls", folder, "inner")
    ok("vfolder", "rm", folder, "inner", "-r", input="y\n")
    assert "inner" not in ok("vfolder", "ls", folder)

    renamed = name("vf-renamed")
    ok("vfolder", "rename", folder, renamed)
    ok("vfolder", "delete", renamed)
    gone = cli("vfolder", "info", renamed)
    assert gone.returncode != 0, gone.stdout + gone.stderr
    # With no folder left, the 23.9 CLI's paginated list ends in `NoItems` and exit status 1.
    after = cli("vfolder", "list")
    assert renamed not in after.stdout, after.stdout + after.stderr
    assert after.returncode == 0 or "NoItems" in after.stdout + after.stderr, after.stdout + after.stderr


def test_vfolder_cli_refuses_what_it_must():
    folder = name("vf-bad")
    ok("vfolder", "create", folder, "local")
    dup = cli("vfolder", "create", folder, "local")
    assert dup.returncode != 0, dup.stdout + dup.stderr
    unknown_host = cli("vfolder", "create", name("vf-host"), "no-such-host")
    assert unknown_host.returncode != 0, unknown_host.stdout + unknown_host.stderr
    reserved = cli("vfolder", "create", ".ssh", "local")
    assert reserved.returncode != 0, reserved.stdout + reserved.stderr
    escape = cli("vfolder", "mkdir", folder, "../outside")
    assert escape.returncode != 0, escape.stdout + escape.stderr
    ok("vfolder", "delete", folder)


def test_vfolder_sdk_create_upload_download(tmp_path):
    folder = name("sdk-vf")
    src = tmp_path / "src"
    src.mkdir()
    content = blob(3 * 1024 * 1024 + 5, folder)
    (src / "model.bin").write_bytes(content)
    with Session() as api:
        created = api.VFolder.create(name=folder, host="local")
        assert created["name"] == folder
        assert any(f["name"] == folder for f in api.VFolder.list())
        hosts = api.VFolder.list_hosts()
        assert "local" in hosts["allowed"] and hosts["default"] == "local"

        vf = api.VFolder(folder)
        vf.upload(["model.bin"], basedir=src, chunk_size=1024 * 1024)
        listing = vf.list_files(".")
        entries = json.loads(listing["files"])
        assert [(e["filename"], e["size"]) for e in entries] == [("model.bin", len(content))]

        dst = tmp_path / "dst"
        dst.mkdir()
        vf.download(["model.bin"], basedir=dst)
        assert (dst / "model.bin").read_bytes() == content

        info = vf.info()
        assert info["name"] == folder and info["is_owner"] and info["permission"] == "wd"

        vf.delete()
        with pytest.raises(BackendAPIError) as err:
            api.VFolder(folder).info()
        assert err.value.status == 404
