//! Runs made of shell commands: shell query mode (`/bin/sh -c CODE`) and batch mode (clean, build, exec), for
//! every language. Each command runs in its own process group in the work directory.
//!
//! A run's time limit bounds each command separately: when it passes, the run is reported `TimedOut`, the command's
//! group gets SIGINT and, if it is still there after [`TIMEOUT_GRACE`], SIGKILL; a batch stops there (the command
//! that timed out sends no `*-finished` event).

use super::output::{emit_output, PipeOutput};
use super::{Config, Sinks};
use backend_core::runner::{BatchOptions, RunnerEvent, Stream, TIMEOUT_GRACE};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

/// The exit code of a run interrupted between two batch commands (what a shell reports for SIGINT).
const INTERRUPTED: i32 = 128 + Signal::SIGINT as i32;
/// The exit code when `/bin/sh` cannot be started (a shell's "command not found").
const CANNOT_START: i32 = 127;

/// What the request side can do to a command run in progress.
#[derive(Default)]
pub struct ProcessControl {
    /// The process group of the command running now, 0 between commands.
    pgid: AtomicI32,
    interrupted: AtomicBool,
}

impl ProcessControl {
    /// SIGINT to the running command's group; a batch stops before its next command.
    pub fn interrupt(&self) {
        // Paired with the check in `run_command` after the group is published: one side always sees the other.
        self.interrupted.store(true, Ordering::SeqCst);
        signal_group(self.pgid.load(Ordering::SeqCst), Signal::SIGINT);
    }

    /// SIGKILL to the running command's group, for shutdown.
    pub fn kill(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        signal_group(self.pgid.load(Ordering::SeqCst), Signal::SIGKILL);
    }
}

fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// What the request side sends to a shell run's stdin.
pub enum StdinMessage {
    /// Text to write.
    Data(String),
    /// Close the pipe (the command reads end of file).
    Eof,
}

/// Starts a shell query run; returns its control and the sender for its stdin.
pub fn start_shell(
    run_id: String,
    code: String,
    limit: Option<Duration>,
    cfg: Arc<Config>,
    sinks: Sinks,
) -> (Arc<ProcessControl>, mpsc::UnboundedSender<StdinMessage>) {
    let control = Arc::new(ProcessControl::default());
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let ctl = control.clone();
    tokio::spawn(async move {
        let (code, _) = run_command(&run_id, &code, limit, &cfg, &sinks, &ctl, Some(stdin_rx)).await;
        sinks.finish(run_id, code).await;
    });
    (control, stdin_tx)
}

/// Starts a batch run: clean, build, exec, each when present (blank counts as absent) and each bounded by `limit`.
pub fn start_batch(
    run_id: String,
    options: BatchOptions,
    limit: Option<Duration>,
    cfg: Arc<Config>,
    sinks: Sinks,
) -> Arc<ProcessControl> {
    let control = Arc::new(ProcessControl::default());
    let ctl = control.clone();
    tokio::spawn(async move {
        let code = run_batch(&run_id, &options, limit, &cfg, &sinks, &ctl).await;
        sinks.finish(run_id, code).await;
    });
    control
}

async fn run_batch(
    run_id: &str,
    options: &BatchOptions,
    limit: Option<Duration>,
    cfg: &Config,
    sinks: &Sinks,
    ctl: &ProcessControl,
) -> i32 {
    // `*` asks for the runner's default step (Backend.AI's heuristics); this runner has none, so it is skipped.
    let present = |c: &Option<String>| c.clone().filter(|c| !c.trim().is_empty() && c.trim() != "*");
    type StepEvent = fn(String, i32) -> RunnerEvent;
    let steps: [(Option<String>, StepEvent); 2] = [
        (present(&options.clean), |run_id, exit_code| RunnerEvent::CleanFinished { run_id, exit_code }),
        (present(&options.build), |run_id, exit_code| RunnerEvent::BuildFinished { run_id, exit_code }),
    ];
    for (command, finished) in steps {
        let Some(command) = command else { continue };
        if ctl.interrupted.load(Ordering::SeqCst) {
            return INTERRUPTED;
        }
        let (code, timed_out) = run_command(run_id, &command, limit, cfg, sinks, ctl, None).await;
        if timed_out {
            return code;
        }
        let _ = sinks.events.send(finished(run_id.to_owned(), code)).await;
        if code != 0 {
            return code;
        }
    }
    match present(&options.exec) {
        Some(_) if ctl.interrupted.load(Ordering::SeqCst) => INTERRUPTED,
        Some(command) => run_command(run_id, &command, limit, cfg, sinks, ctl, None).await.0,
        None => 0,
    }
}

/// Runs `/bin/sh -c command`, streaming its output; returns its exit code (128 + N when killed by signal N) and
/// whether `limit` passed (then `TimedOut` was sent and the command interrupted, killed after the grace).
/// Without `stdin` the command reads /dev/null. The run ends when the shell exits: output its background jobs
/// write later is not waited for.
async fn run_command(
    run_id: &str,
    command: &str,
    limit: Option<Duration>,
    cfg: &Config,
    sinks: &Sinks,
    ctl: &ProcessControl,
    stdin: Option<mpsc::UnboundedReceiver<StdinMessage>>,
) -> (i32, bool) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&cfg.workdir)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("backend-kernel-runner: cannot start /bin/sh in {}: {e}\n", cfg.workdir.display());
            emit_output(&sinks.events, run_id, Stream::Stderr, &msg).await;
            return (CANNOT_START, false);
        }
    };
    let pgid = child.id().map_or(0, |id| id as i32);
    ctl.pgid.store(pgid, Ordering::SeqCst);
    if ctl.interrupted.load(Ordering::SeqCst) {
        signal_group(pgid, Signal::SIGINT); // an Interrupt that came before the group existed
    }
    if let (Some(pipe), Some(rx)) = (child.stdin.take(), stdin) {
        tokio::spawn(feed_stdin(pipe, rx));
    }
    let mut pipes = PipeOutput::new(child.stdout.take(), child.stderr.take());
    // The next step against a command that overstays: SIGINT at the limit, SIGKILL after the grace.
    let mut alarm = limit.map(|l| tokio::time::Instant::now() + l);
    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = pipes.ready() => emit_chunks(&mut pipes, run_id, false, sinks).await,
            _ = tokio::time::sleep_until(alarm.unwrap_or_else(tokio::time::Instant::now)), if alarm.is_some() => {
                if timed_out {
                    signal_group(pgid, Signal::SIGKILL);
                    alarm = None;
                } else {
                    timed_out = true;
                    // What the command wrote so far goes first, then the event, then what the interrupt makes it write.
                    pipes.drain_now();
                    emit_chunks(&mut pipes, run_id, false, sinks).await;
                    super::report_timeout(sinks, run_id, limit.unwrap_or_default()).await;
                    signal_group(pgid, Signal::SIGINT);
                    alarm = Some(tokio::time::Instant::now() + TIMEOUT_GRACE);
                }
            }
        }
    };
    ctl.pgid.store(0, Ordering::SeqCst);
    pipes.drain_now();
    emit_chunks(&mut pipes, run_id, true, sinks).await;
    let code = match status {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(e) => {
            let msg = format!("backend-kernel-runner: lost the command: {e}\n");
            emit_output(&sinks.events, run_id, Stream::Stderr, &msg).await;
            -1
        }
    };
    // A command that caught the SIGINT and exited 0 still did not finish within its limit.
    (if timed_out && code == 0 { INTERRUPTED } else { code }, timed_out)
}

async fn emit_chunks(pipes: &mut PipeOutput, run_id: &str, all: bool, sinks: &Sinks) {
    for (stream, data) in pipes.take(all) {
        emit_output(&sinks.events, run_id, stream, &data).await;
    }
}

/// Writes Input texts to the command; ends (closing the pipe) on `Eof`, when the run ends, or when the command
/// stops reading.
async fn feed_stdin(mut pipe: ChildStdin, mut rx: mpsc::UnboundedReceiver<StdinMessage>) {
    while let Some(StdinMessage::Data(text)) = rx.recv().await {
        if pipe.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}
