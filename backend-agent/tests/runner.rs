//! Integration tests of `backend-kernel-runner`: each test starts the binary on a temporary socket and work
//! directory and speaks the framed protocol of `backend_core::runner` to it, as the agent does.

use backend_core::conformance::wait::wait_until;
use backend_core::runner::{AgentCodec, BatchOptions, RunMode, RunnerEvent, RunnerRequest, Stream};
use futures::{SinkExt, StreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

/// How long any single wait may take before the test fails: a hung runner must fail the test rather than hang
/// it. This bounds waits; nothing asserts how fast anything is.
const SAFETY: Duration = backend_core::conformance::wait::WAIT_LIMIT;

/// A runner process with its own socket and work directory; stopped (SIGTERM, then SIGKILL) when dropped.
struct Runner {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Runner {
    fn start(lang: &str) -> Self {
        Self::start_with(lang, &[])
    }

    fn start_with(lang: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("runner.sock");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let child = Command::new(env!("CARGO_BIN_EXE_backend-kernel-runner"))
            .arg("--socket")
            .arg(&socket)
            .arg("--lang")
            .arg(lang)
            .arg("--workdir")
            .arg(&work)
            .args(extra)
            .spawn()
            .expect("start backend-kernel-runner");
        Runner { child, dir, socket }
    }

    fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Connects (waiting for the socket to appear) and reads the `Ready` greeting.
    async fn connect(&self) -> (Agent, Option<String>) {
        let stream = wait_until("the runner to listen", async || UnixStream::connect(&self.socket).await.ok()).await;
        let mut agent = Agent { framed: Framed::new(stream, AgentCodec::default()) };
        match agent.next().await {
            RunnerEvent::Ready { active_run, .. } => (agent, active_run),
            other => panic!("expected Ready first, got {other:?}"),
        }
    }

    /// Waits (bounded) for the process to exit.
    async fn wait_exit(&mut self) -> ExitStatus {
        wait_until("the runner to exit", async || self.child.try_wait().expect("try_wait")).await
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // SIGTERM lets the runner kill its interpreter; SIGKILL only if it does not exit.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's end of a connection.
struct Agent {
    framed: Framed<UnixStream, AgentCodec>,
}

/// What a run produced.
#[derive(Debug, Default)]
struct Run {
    stdout: String,
    stderr: String,
    exit_code: i32,
    /// Every event received while waiting for the run's end, in order.
    events: Vec<RunnerEvent>,
}

fn query(run_id: &str, code: &str) -> RunnerRequest {
    RunnerRequest::Execute {
        run_id: run_id.into(),
        mode: RunMode::Query,
        code: code.into(),
        options: BatchOptions::default(),
        timeout_ms: None,
    }
}

fn batch(run_id: &str, clean: Option<&str>, build: Option<&str>, exec: Option<&str>) -> RunnerRequest {
    RunnerRequest::Execute {
        run_id: run_id.into(),
        mode: RunMode::Batch,
        code: String::new(),
        options: BatchOptions {
            clean: clean.map(Into::into),
            build: build.map(Into::into),
            exec: exec.map(Into::into),
        },
        timeout_ms: None,
    }
}

impl Agent {
    async fn send(&mut self, request: RunnerRequest) {
        self.framed.send(request).await.expect("send request");
    }

    /// The next event; fails the test when the connection ends or nothing comes within [`SAFETY`].
    async fn next(&mut self) -> RunnerEvent {
        match tokio::time::timeout(SAFETY, self.framed.next()).await {
            Ok(Some(Ok(ev))) => ev,
            Ok(Some(Err(e))) => panic!("bad frame from the runner: {e}"),
            Ok(None) => panic!("the runner closed the connection"),
            Err(_) => panic!("no event from the runner within {SAFETY:?}"),
        }
    }

    /// Sends a query and collects its events until its `Finished`.
    async fn execute(&mut self, run_id: &str, code: &str) -> Run {
        self.send(query(run_id, code)).await;
        self.finish(run_id).await
    }

    /// Collects events until `Finished` of `run_id`.
    async fn finish(&mut self, run_id: &str) -> Run {
        let mut run = Run::default();
        loop {
            let ev = self.next().await;
            match &ev {
                RunnerEvent::Output { run_id: id, stream, data } if id == run_id => match stream {
                    Stream::Stdout => run.stdout.push_str(data),
                    Stream::Stderr => run.stderr.push_str(data),
                },
                RunnerEvent::Finished { run_id: id, exit_code } if id == run_id => {
                    run.exit_code = *exit_code;
                    run.events.push(ev);
                    return run;
                }
                _ => {}
            }
            run.events.push(ev);
        }
    }

    /// Reads events until one satisfies `pred`, returning those read before it and the match.
    async fn until(&mut self, pred: impl Fn(&RunnerEvent) -> bool) -> (Vec<RunnerEvent>, RunnerEvent) {
        let mut seen = Vec::new();
        loop {
            let ev = self.next().await;
            if pred(&ev) {
                return (seen, ev);
            }
            seen.push(ev);
        }
    }
}

fn is_stdout_containing(ev: &RunnerEvent, text: &str) -> bool {
    matches!(ev, RunnerEvent::Output { stream: Stream::Stdout, data, .. } if data.contains(text))
}

fn is_finished(ev: &RunnerEvent) -> bool {
    matches!(ev, RunnerEvent::Finished { .. })
}

#[tokio::test]
async fn python_state_persists_between_runs_and_bare_expressions_are_echoed() {
    let runner = Runner::start("python");
    let (mut agent, active) = runner.connect().await;
    assert_eq!(active, None);

    let run = agent.execute("r1", "x = 41").await;
    assert_eq!((run.exit_code, run.stdout.as_str(), run.stderr.as_str()), (0, "", ""));
    let run = agent.execute("r2", "print(x + 1)").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "42\n"));
    let run = agent.execute("r3", "x + 1").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "42\n"));
    // Like the REPL: None is not echoed, and only a final bare expression is.
    let run = agent.execute("r4", "x + 2\nNone").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, ""));
    let run = agent.execute("r5", "__name__").await;
    assert_eq!(run.stdout, "'__main__'\n");
}

#[tokio::test]
async fn python_keeps_stdout_and_stderr_apart_and_reports_exceptions_and_exit_codes() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;

    let run = agent.execute("r1", "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')").await;
    assert_eq!(run.exit_code, 0);
    let outputs: Vec<(Stream, String)> = run
        .events
        .iter()
        .filter_map(|ev| match ev {
            RunnerEvent::Output { stream, data, .. } => Some((*stream, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        outputs,
        vec![
            (Stream::Stdout, "a\n".to_owned()),
            (Stream::Stderr, "b\n".to_owned()),
            (Stream::Stdout, "c\n".to_owned()),
        ]
    );

    let run = agent.execute("r2", "def f():\n    raise ValueError('boom')\nf()").await;
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.starts_with("Traceback (most recent call last):\n"), "{}", run.stderr);
    assert!(run.stderr.contains("ValueError: boom"), "{}", run.stderr);
    assert!(run.stderr.contains("raise ValueError('boom')"), "source lines are shown: {}", run.stderr);
    assert!(!run.stderr.contains("<string>"), "no runner frames: {}", run.stderr);
    assert_eq!(run.stdout, "");

    let run = agent.execute("r3", "def (:").await;
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.contains("SyntaxError"), "{}", run.stderr);

    let run = agent.execute("r4", "import sys\nsys.exit(3)").await;
    assert_eq!(run.exit_code, 3);
    let run = agent.execute("r5", "sys.exit()").await;
    assert_eq!(run.exit_code, 0);
    let run = agent.execute("r6", "sys.exit('bye')").await;
    assert_eq!((run.exit_code, run.stderr.as_str()), (1, "bye\n"));

    let run = agent.execute("r7", "print('still alive')").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "still alive\n"));
}

#[tokio::test]
async fn python_forwards_what_subprocesses_write_to_the_real_descriptors() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    let code = "import os, subprocess\nprint('py-before')\nsubprocess.run(['sh', '-c', 'echo out; echo err >&2'])\n\
                os.system('echo system')\nprint('py-after')";
    let run = agent.execute("r1", code).await;
    assert_eq!(run.exit_code, 0);
    // In the order of writing: the REPL's buffered text is sent before a process starts.
    assert_eq!(run.stdout, "py-before\nout\nsystem\npy-after\n");
    assert_eq!(run.stderr, "err\n");
}

#[tokio::test]
async fn python_input_waits_for_the_agent() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;

    agent.send(query("r1", "print('before')\nname = input('who? ')\nprint('hi', name)")).await;
    let (before, waiting) = agent.until(|ev| matches!(ev, RunnerEvent::WaitingInput { .. })).await;
    assert_eq!(waiting, RunnerEvent::WaitingInput { run_id: "r1".into(), prompt: "who? ".into() });
    assert!(
        before.iter().any(|ev| is_stdout_containing(ev, "before")),
        "output printed before input() arrives before WaitingInput: {before:?}"
    );
    agent.send(RunnerRequest::Input { run_id: "r1".into(), text: "bob".into() }).await;
    let run = agent.finish("r1").await;
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.stdout, "hi bob\n");

    // sys.stdin reads ask too, and keep the newline.
    agent.send(query("r2", "import sys\nline = sys.stdin.readline()\nprint(repr(line))")).await;
    agent.until(|ev| matches!(ev, RunnerEvent::WaitingInput { .. })).await;
    agent.send(RunnerRequest::Input { run_id: "r2".into(), text: "abc".into() }).await;
    assert_eq!(agent.finish("r2").await.stdout, "'abc\\n'\n");

    // Input for a run that does not wait is refused, and nothing else happens.
    agent.send(RunnerRequest::Input { run_id: "r1".into(), text: "late".into() }).await;
    let ev = agent.next().await;
    assert!(matches!(ev, RunnerEvent::Error { run_id: Some(ref id), .. } if id == "r1"), "{ev:?}");
    let run = agent.execute("r3", "print(name)").await;
    assert_eq!(run.stdout, "bob\n");
}

#[tokio::test]
async fn python_interrupt_raises_keyboard_interrupt_and_keeps_state() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "x = 7").await.exit_code, 0);

    agent.send(query("r2", "print('looping')\nwhile True:\n    pass")).await;
    agent.until(|ev| is_stdout_containing(ev, "looping")).await;
    agent.send(RunnerRequest::Interrupt).await;
    let run = agent.finish("r2").await;
    assert_ne!(run.exit_code, 0);
    assert!(run.stderr.contains("KeyboardInterrupt"), "{}", run.stderr);

    // An Interrupt sent right behind the Execute is not lost, whenever the code actually starts.
    agent.send(query("r3", "while True:\n    pass")).await;
    agent.send(RunnerRequest::Interrupt).await;
    let run = agent.finish("r3").await;
    assert_ne!(run.exit_code, 0);
    assert!(run.stderr.contains("KeyboardInterrupt"), "{}", run.stderr);

    // Interrupting a wait for input ends the run.
    agent.send(query("r4", "input('? ')")).await;
    agent.until(|ev| matches!(ev, RunnerEvent::WaitingInput { .. })).await;
    agent.send(RunnerRequest::Interrupt).await;
    let run = agent.finish("r4").await;
    assert_ne!(run.exit_code, 0);
    assert!(run.stderr.contains("KeyboardInterrupt"), "{}", run.stderr);

    let run = agent.execute("r5", "print(x)").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "7\n"));
}

#[tokio::test]
async fn python_output_is_streamed_before_the_run_ends() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    let code =
        "import os, time\nprint('first')\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\nprint('second')";
    agent.send(query("r1", code)).await;
    // The run cannot end before the file exists, so seeing "first" now proves it was streamed.
    let (before, _) = agent.until(|ev| is_stdout_containing(ev, "first")).await;
    assert!(!before.iter().any(is_finished));
    std::fs::write(runner.workdir().join("go"), b"").expect("create go");
    let run = agent.finish("r1").await;
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.stdout, "second\n");
}

#[tokio::test]
async fn python_large_output_arrives_complete_in_coalesced_bounded_frames() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    const LINES: usize = 500_000;
    let code = format!("for i in range({LINES}):\n    print('0123456789')");
    let run = agent.execute("r1", &code).await;
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.stdout.len(), LINES * 11);
    assert!(run.stdout.lines().all(|l| l == "0123456789"));
    let frames: Vec<usize> = run
        .events
        .iter()
        .filter(|ev| matches!(ev, RunnerEvent::Output { .. }))
        .map(|ev| serde_json::to_vec(ev).expect("encode").len())
        .collect();
    let largest = frames.iter().copied().max().unwrap_or(0);
    assert!(largest <= 64 * 1024 + 256, "a frame of {largest} bytes");
    assert!(frames.len() < LINES / 100, "{} frames for {LINES} lines", frames.len());
}

#[tokio::test]
async fn python_completion_uses_the_namespace() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "zebra_count = 3").await.exit_code, 0);
    agent.send(RunnerRequest::Complete { code: "print(zebra_c".into() }).await;
    match agent.next().await {
        RunnerEvent::Completion { items } => assert_eq!(items, vec!["zebra_count".to_owned()]),
        other => panic!("expected Completion, got {other:?}"),
    }
}

#[tokio::test]
async fn shell_query_streams_output_and_exit_code_and_feeds_input() {
    let runner = Runner::start("shell");
    let (mut agent, _) = runner.connect().await;
    let run = agent.execute("r1", "echo $((6*7)); echo err >&2; exit 4").await;
    assert_eq!((run.stdout.as_str(), run.stderr.as_str(), run.exit_code), ("42\n", "err\n", 4));

    // The command's stdin is a pipe that Input writes to.
    agent.send(query("r2", "read line; echo \"got $line\"")).await;
    agent.send(RunnerRequest::Input { run_id: "r2".into(), text: "abc".into() }).await;
    let run = agent.finish("r2").await;
    assert_eq!((run.stdout.as_str(), run.exit_code), ("got abc\n", 0));

    // Ctrl-D closes it.
    agent.send(query("r3", "cat; echo done")).await;
    agent.send(RunnerRequest::Input { run_id: "r3".into(), text: "one".into() }).await;
    agent.send(RunnerRequest::Input { run_id: "r3".into(), text: "\u{4}".into() }).await;
    let run = agent.finish("r3").await;
    assert_eq!((run.stdout.as_str(), run.exit_code), ("one\ndone\n", 0));

    let run = agent.execute("r4", "pwd").await;
    let workdir = runner.workdir().canonicalize().expect("canonical work dir");
    assert_eq!(Path::new(run.stdout.trim_end()), workdir);

    agent.send(query("r5", "echo started; sleep 1000")).await;
    agent.until(|ev| is_stdout_containing(ev, "started")).await;
    agent.send(RunnerRequest::Interrupt).await;
    assert_eq!(agent.finish("r5").await.exit_code, 130);
}

#[tokio::test]
async fn batch_runs_clean_build_exec_in_order_and_stops_at_a_failure() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;

    agent.send(batch("b1", Some("echo cleaning"), Some("echo building"), Some("echo running; exit 5"))).await;
    let run = agent.finish("b1").await;
    let steps: Vec<String> = run
        .events
        .iter()
        .filter_map(|ev| match ev {
            RunnerEvent::Output { data, .. } => Some(data.trim_end().to_owned()),
            RunnerEvent::CleanFinished { exit_code, .. } => Some(format!("clean-finished {exit_code}")),
            RunnerEvent::BuildFinished { exit_code, .. } => Some(format!("build-finished {exit_code}")),
            RunnerEvent::Finished { exit_code, .. } => Some(format!("finished {exit_code}")),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["cleaning", "clean-finished 0", "building", "build-finished 0", "running", "finished 5"]);

    agent.send(batch("b2", None, Some("echo broken >&2; exit 2"), Some("echo should-not-run"))).await;
    let run = agent.finish("b2").await;
    assert_eq!(run.exit_code, 2);
    assert_eq!(run.stderr, "broken\n");
    assert_eq!(run.stdout, "");
    assert!(run.events.iter().any(|ev| matches!(ev, RunnerEvent::BuildFinished { exit_code: 2, .. })));
    assert!(!run.events.iter().any(|ev| matches!(ev, RunnerEvent::CleanFinished { .. })));

    agent.send(batch("b3", None, Some("true"), None)).await;
    assert_eq!(agent.finish("b3").await.exit_code, 0);
}

#[tokio::test]
async fn a_new_connection_finds_the_interpreter_state_and_the_run_in_progress() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "y = 5").await.exit_code, 0);
    drop(agent);

    let (mut agent, active) = runner.connect().await;
    assert_eq!(active, None);
    assert_eq!(agent.execute("r2", "print(y)").await.stdout, "5\n");

    // The agent goes away in the middle of a run; the run's events wait for the next agent.
    let code =
        "import os, time\nprint('first')\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\nprint('second')";
    agent.send(query("r3", code)).await;
    agent.until(|ev| is_stdout_containing(ev, "first")).await;
    drop(agent);
    std::fs::write(runner.workdir().join("go"), b"").expect("create go");
    let (mut agent, active) = runner.connect().await;
    assert_eq!(active.as_deref(), Some("r3"));
    let run = agent.finish("r3").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "second\n"));

    // A newer connection replaces an older one that is still open.
    let (mut newer, _) = runner.connect().await;
    assert_eq!(newer.execute("r4", "print(y * 2)").await.stdout, "10\n");
    assert!(agent.framed.next().await.is_none(), "the older connection is closed");
}

#[tokio::test]
async fn python_interpreter_death_finishes_the_run_and_a_fresh_one_follows() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "z = 1").await.exit_code, 0);

    let run = agent.execute("r2", "import os\nos._exit(3)").await;
    assert_eq!(run.exit_code, 3);
    assert!(run.stderr.contains("exited with code 3"), "{}", run.stderr);

    let run = agent.execute("r3", "print('fresh')\nprint('z' in globals())").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "fresh\nFalse\n"));

    let run = agent.execute("r4", "import ctypes\nctypes.string_at(0)").await;
    assert_eq!(run.exit_code, 128 + 11, "SIGSEGV: {}", run.stderr);
    assert_eq!(agent.execute("r5", "print(2)").await.stdout, "2\n");
}

#[tokio::test]
async fn execute_while_busy_is_refused_without_disturbing_the_active_run() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    let code = "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\nprint('done')";
    agent.send(query("r1", code)).await;
    agent.send(query("r2", "print('intruder')")).await;
    let (_, error) = agent.until(|ev| matches!(ev, RunnerEvent::Error { .. })).await;
    assert!(matches!(error, RunnerEvent::Error { run_id: Some(ref id), .. } if id == "r2"), "{error:?}");
    std::fs::write(runner.workdir().join("go"), b"").expect("create go");
    let run = agent.finish("r1").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "done\n"));
    assert!(!run.events.iter().any(|ev| matches!(ev, RunnerEvent::Finished { run_id, .. } if run_id == "r2")));
}

#[tokio::test]
async fn a_malformed_request_gets_an_error_and_the_connection_stays() {
    let runner = Runner::start("shell");
    let (mut agent, _) = runner.connect().await;
    let body = br#"{"op":"execute","run_id":"bad","mode":"sideways"}"#;
    let stream = agent.framed.get_mut();
    stream.write_all(&(body.len() as u32).to_be_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let ev = agent.next().await;
    assert!(matches!(ev, RunnerEvent::Error { run_id: Some(ref id), .. } if id == "bad"), "{ev:?}");
    assert_eq!(agent.execute("r1", "echo ok").await.stdout, "ok\n");
}

#[tokio::test]
async fn shutdown_stops_the_runner_and_removes_its_socket() {
    let mut runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    let run = agent.execute("r1", "import os\nprint(os.getpid())").await;
    let interpreter: i32 = run.stdout.trim().parse().expect("pid");
    agent.send(RunnerRequest::Shutdown).await;
    assert!(runner.wait_exit().await.success());
    assert!(!runner.socket.exists());
    // The interpreter was killed: gone, or a zombie waiting for its new parent to reap it.
    let stat = format!("/proc/{interpreter}/stat");
    wait_until("the interpreter to end with the runner", async || match std::fs::read_to_string(&stat) {
        Err(_) => Some(()),
        Ok(s) => s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')).then_some(()),
    })
    .await;
}

#[tokio::test]
async fn output_beyond_the_disconnected_buffer_is_dropped_with_a_note() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    // 16 MiB: far more than the 1 MiB kept, plus what the runner's queues and the socket can still hold when
    // the next agent connects.
    let code = "import os, sys, time\nprint('first')\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\n\
                for i in range(16 * 1024):\n    sys.stdout.write('x' * 1023 + '\\n')\n\
                sys.stdout.flush()\nopen('written', 'w').close()";
    agent.send(query("r1", code)).await;
    agent.until(|ev| is_stdout_containing(ev, "first")).await;
    drop(agent);
    std::fs::write(runner.workdir().join("go"), b"").expect("create go");
    let written = runner.workdir().join("written");
    wait_until("the run to finish writing", async || written.exists().then_some(())).await;
    let (mut agent, active) = runner.connect().await;
    assert_eq!(active.as_deref(), Some("r1"));
    let run = agent.finish("r1").await;
    assert_eq!(run.exit_code, 0);
    assert!(run.stderr.contains("output dropped"), "{}", run.stderr);
    assert!(run.stdout.len() < 16 << 20, "{} bytes arrived", run.stdout.len());
    assert!(run.stdout.len() >= 1 << 20, "the first MiB is kept");
}

#[tokio::test]
async fn sigterm_stops_the_runner_and_removes_its_socket() {
    let mut runner = Runner::start("shell");
    let (_agent, _) = runner.connect().await;
    kill(Pid::from_raw(runner.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert!(runner.wait_exit().await.success());
    assert!(!runner.socket.exists());
}

#[tokio::test]
async fn max_memory_turns_a_huge_allocation_into_memory_error() {
    let runner = Runner::start_with("python", &["--max-memory", "536870912"]);
    let (mut agent, _) = runner.connect().await;
    let run = agent.execute("r1", "b = bytearray(2 << 30)").await;
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.contains("MemoryError"), "{}", run.stderr);
    let run = agent.execute("r2", "b = bytearray(1 << 20)\nprint(len(b))").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "1048576\n"));
}

#[tokio::test]
async fn die_with_parent_shuts_down_when_the_parent_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("runner.sock");
    // A parent that only waits for the runner, killed below as an agent might die.
    let mut parent = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" & wait")
        .arg(env!("CARGO_BIN_EXE_backend-kernel-runner"))
        .arg("--socket")
        .arg(&socket)
        .args(["--lang", "shell", "--die-with-parent"])
        .arg("--workdir")
        .arg(dir.path())
        .spawn()
        .expect("start the parent");
    wait_until("the runner to listen", async || UnixStream::connect(&socket).await.ok()).await;
    parent.kill().expect("kill the parent");
    parent.wait().expect("reap the parent");
    // Its shutdown removes the socket.
    wait_until("the runner to shut down with its parent", async || (!socket.exists()).then_some(())).await;
}

/// A request with a time limit (`timeout_ms`).
fn limited(request: RunnerRequest, limit_ms: u64) -> RunnerRequest {
    match request {
        RunnerRequest::Execute { run_id, mode, code, options, .. } => {
            RunnerRequest::Execute { run_id, mode, code, options, timeout_ms: Some(limit_ms) }
        }
        other => other,
    }
}

fn timed_out_before_finished(run: &Run) -> bool {
    let timed_out = run.events.iter().position(|ev| matches!(ev, RunnerEvent::TimedOut { .. }));
    let finished = run.events.iter().position(is_finished);
    matches!((timed_out, finished), (Some(t), Some(f)) if t < f)
}

#[tokio::test]
async fn python_run_past_its_time_limit_is_interrupted_and_the_state_kept() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "x = 11").await.exit_code, 0);

    agent.send(limited(query("r2", "print('spinning')\nwhile True:\n    pass"), 1000)).await;
    let run = agent.finish("r2").await;
    assert!(timed_out_before_finished(&run), "{:?}", run.events);
    assert_ne!(run.exit_code, 0);
    assert_eq!(run.stdout, "spinning\n", "the output produced before the limit is kept");
    assert!(run.stderr.contains("time limit of 1 s"), "{}", run.stderr);
    assert!(run.stderr.contains("KeyboardInterrupt"), "{}", run.stderr);

    // The interpreter lives on with its state; a run within its limit is not touched.
    agent.send(limited(query("r3", "print(x)"), 60_000)).await;
    let run = agent.finish("r3").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "11\n"));
    assert!(!run.events.iter().any(|ev| matches!(ev, RunnerEvent::TimedOut { .. })));
}

#[tokio::test]
async fn python_run_that_ignores_the_interrupt_is_killed_after_the_grace() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    assert_eq!(agent.execute("r1", "kept = 1").await.exit_code, 0);
    let stubborn =
        "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass";
    agent.send(limited(query("r2", stubborn), 500)).await;
    let run = agent.finish("r2").await;
    assert!(timed_out_before_finished(&run), "{:?}", run.events);
    assert_eq!(run.exit_code, 128 + 9, "SIGKILL: {}", run.stderr);
    assert!(run.stderr.contains("state is lost"), "the restart is announced: {}", run.stderr);

    let run = agent.execute("r3", "print('kept' in globals())").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "False\n"), "a fresh interpreter serves the next run");
}

#[tokio::test]
async fn shell_and_batch_commands_past_their_time_limit_are_stopped() {
    let runner = Runner::start("shell");
    let (mut agent, _) = runner.connect().await;

    agent.send(limited(query("s1", "echo started; sleep 30; echo never"), 500)).await;
    let run = agent.finish("s1").await;
    assert!(timed_out_before_finished(&run), "{:?}", run.events);
    assert_eq!(run.exit_code, 130, "{}", run.stderr);
    assert_eq!(run.stdout, "started\n");

    // Each batch command has the whole limit; the one that passes it ends the batch without its *-finished event.
    agent.send(limited(batch("b1", Some("sleep 0.3; echo cleaned"), Some("sleep 30"), Some("echo never")), 1000)).await;
    let run = agent.finish("b1").await;
    assert!(timed_out_before_finished(&run), "{:?}", run.events);
    assert_ne!(run.exit_code, 0);
    assert_eq!(run.stdout, "cleaned\n");
    assert!(run.events.iter().any(|ev| matches!(ev, RunnerEvent::CleanFinished { exit_code: 0, .. })));
    assert!(!run.events.iter().any(|ev| matches!(ev, RunnerEvent::BuildFinished { .. })));

    // A command that shrugs off SIGINT is killed after the grace.
    agent.send(limited(batch("b2", None, None, Some("trap '' INT; sleep 30")), 300)).await;
    let run = agent.finish("b2").await;
    assert!(timed_out_before_finished(&run), "{:?}", run.events);
    assert_eq!(run.exit_code, 128 + 9, "{}", run.stderr);

    agent.send(limited(batch("b3", None, None, Some("echo quick")), 60_000)).await;
    let run = agent.finish("b3").await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, "quick\n"));
    assert!(!run.events.iter().any(|ev| matches!(ev, RunnerEvent::TimedOut { .. })));
}

#[tokio::test]
async fn python_display_sends_html_and_media_items_in_order_with_the_output() {
    let runner = Runner::start("python");
    let (mut agent, _) = runner.connect().await;
    let code = r#"
class Html:
    def _repr_html_(self):
        return "<b>bold</b>"
class Png:
    def _repr_html_(self):
        return None  # declines: the next type is tried
    def _repr_png_(self):
        return b"\x89PNG"
class Svg:
    def _repr_svg_(self):
        return "<svg/>"
print("a")
display(Html())
print("b")
display(Png(), Svg())
display("<i>it</i>", mime="text/html")
display("aGk=", mime="image/jpeg")
display([1, 2])
print("c", end="")
"#;
    let run = agent.execute("d1", code).await;
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    // Consecutive output chunks merged, as the agent merges them into one console item.
    let mut items: Vec<String> = Vec::new();
    for ev in &run.events {
        match ev {
            RunnerEvent::Output { data, .. } => match items.last_mut() {
                Some(last) if last.starts_with("out ") => last.push_str(data),
                _ => items.push(format!("out {data}")),
            },
            RunnerEvent::Media { mime, data, .. } => items.push(format!("{mime} {data}")),
            _ => {}
        }
    }
    assert_eq!(
        items,
        [
            "out a\n",
            "text/html <b>bold</b>",
            "out b\n",
            "image/png iVBORw==",
            "image/svg+xml <svg/>",
            "text/html <i>it</i>",
            "image/jpeg aGk=",
            "out [1, 2]\nc",
        ]
    );
}
