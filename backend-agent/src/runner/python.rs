//! The persistent Python interpreter: spawning it, its control channel, and the task that turns what it says (and
//! what it writes to its real stdout/stderr) into run events.

use super::output::{emit_output, PipeOutput};
use super::{Config, Internal, Sinks};
use backend_core::runner::{RunnerEvent, Stream, MAX_FRAME};
use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};

/// The REPL the interpreter runs (`python3 -u -c`).
const PYTHON_REPL: &str = include_str!("python_repl.py");
/// Longest control line accepted from the interpreter (its output messages are far smaller).
const MAX_LINE: usize = 64 << 20;

/// Runner → interpreter.
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum ToPython<'a> {
    Exec {
        id: &'a str,
        code: &'a str,
    },
    Input {
        text: &'a str,
        eof: bool,
    },
    Complete {
        code: &'a str,
    },
    /// The pipes were drained up to the interpreter's `sync`.
    Synced,
}

/// Interpreter → runner.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum FromPython {
    Start {
        id: String,
    },
    Out {
        s: Stream,
        d: String,
    },
    Input {
        prompt: String,
    },
    Done {
        id: String,
        code: i32,
    },
    Completion {
        items: Vec<String>,
    },
    /// About to start a process: drain the pipes, then answer `synced`.
    Sync,
    /// A rich item from `display()`: `text/html` becomes an html console item, anything else a media item.
    Media {
        mime: String,
        d: String,
    },
}

/// A running interpreter, as the request side sees it.
pub struct Interpreter {
    /// Distinguishes this interpreter's exit notice from a predecessor's.
    pub generation: u64,
    pid: Pid,
    control: mpsc::UnboundedSender<String>,
    runs: mpsc::UnboundedSender<String>,
}

impl Interpreter {
    /// Starts `python -u -c <repl>` in the work directory; its control channel is its fd 0.
    pub fn spawn(cfg: &Config, generation: u64, sinks: Sinks) -> std::io::Result<Self> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut child = {
            let mut cmd = Command::new(&cfg.python);
            cmd.arg("-u")
                .arg("-c")
                .arg(PYTHON_REPL)
                .current_dir(&cfg.workdir)
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // It stays in the runner's process group: whoever stops the kernel by its group stops it too.
                .kill_on_drop(true);
            cmd.spawn()?
            // `cmd` drops here with our copy of the child's socket end; otherwise its exit would never read as EOF.
        };
        // Never a pid of 0: signalling it would reach the runner's whole process group.
        let pid = child.id().ok_or_else(|| std::io::Error::other("the interpreter exited at once"))?;
        let pid = Pid::from_raw(pid as i32);
        ours.set_nonblocking(true)?;
        let (read, write) = tokio::net::UnixStream::from_std(ours)?.into_split();
        let (control, control_rx) = mpsc::unbounded_channel();
        let (runs, runs_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_control(write, control_rx));
        let pipes = PipeOutput::new(child.stdout.take(), child.stderr.take());
        let io = InterpreterIo { pipes, control: control.clone(), sinks };
        tokio::spawn(serve(child, read, io, runs_rx, generation));
        Ok(Self { generation, pid, control, runs })
    }

    /// Hands a run to the interpreter; false when it is gone (the caller starts a fresh one).
    pub fn start_run(&self, run_id: &str, code: &str) -> bool {
        // The reading task must know the run before the interpreter can say anything about it.
        self.runs.send(run_id.to_owned()).is_ok() && self.send(&ToPython::Exec { id: run_id, code })
    }

    /// Answers a pending `input()`; the text `"\u{4}"` (Ctrl-D) is end of file.
    pub fn send_input(&self, text: &str) {
        let eof = text == "\u{4}";
        self.send(&ToPython::Input { text: if eof { "" } else { text }, eof });
    }

    /// Asks for completions; the answer arrives as a `Completion` event.
    pub fn complete(&self, code: &str) -> bool {
        self.send(&ToPython::Complete { code })
    }

    /// SIGINT: the running code gets KeyboardInterrupt.
    pub fn interrupt(&self) {
        let _ = kill(self.pid, Signal::SIGINT);
    }

    /// SIGKILL, for shutdown.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    fn send(&self, msg: &ToPython<'_>) -> bool {
        send_line(&self.control, msg)
    }
}

fn send_line(control: &mpsc::UnboundedSender<String>, msg: &ToPython<'_>) -> bool {
    match serde_json::to_string(msg) {
        Ok(mut line) => {
            line.push('\n');
            control.send(line).is_ok()
        }
        Err(_) => false,
    }
}

/// What the reading task works with besides the interpreter itself.
struct InterpreterIo {
    /// The interpreter's real stdout/stderr.
    pipes: PipeOutput,
    /// For answering `sync`.
    control: mpsc::UnboundedSender<String>,
    sinks: Sinks,
}

/// Writes control lines in their own task, so a large `exec` never holds up the request loop.
async fn write_control(mut write: OwnedWriteHalf, mut lines: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = lines.recv().await {
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads the interpreter until it exits, then finishes the run it was in (if any) with its exit status.
async fn serve(
    mut child: Child,
    read: OwnedReadHalf,
    mut io: InterpreterIo,
    mut runs: mpsc::UnboundedReceiver<String>,
    generation: u64,
) {
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    let mut current: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            Some(id) = runs.recv() => current = Some(id),
            line = lines.next() => match line {
                Some(Ok(line)) => io.handle_line(&line, &mut current).await,
                Some(Err(_)) => continue, // an over-long line: skipped by the codec
                // The interpreter closes its end only by exiting.
                None => break,
            },
            _ = io.pipes.ready() => io.emit_pipes(current.as_deref(), false).await,
        }
    }
    // Refuse new runs, but take one that was handed over before: it must be finished below.
    runs.close();
    while let Ok(id) = runs.try_recv() {
        current = Some(id);
    }
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(_) => -1,
    };
    io.pipes.drain_now();
    io.emit_pipes(current.as_deref(), true).await;
    let _ = io.sinks.internal.send(Internal::InterpreterExited(generation));
    if let Some(run_id) = current {
        let note = format!(
            "\n[backend-kernel-runner: the Python interpreter exited with code {code}; its state is lost and the \
             next run starts a fresh one]\n"
        );
        emit_output(&io.sinks.events, &run_id, Stream::Stderr, &note).await;
        io.sinks.finish(run_id, code).await;
    }
}

impl InterpreterIo {
    async fn handle_line(&mut self, line: &str, current: &mut Option<String>) {
        let Ok(msg) = serde_json::from_str::<FromPython>(line) else { return };
        let sinks = &self.sinks;
        match msg {
            FromPython::Start { id } => {
                if current.as_deref() == Some(id.as_str()) {
                    let _ = sinks.internal.send(Internal::Started(id));
                }
            }
            FromPython::Out { s, d } => {
                // Output of background threads between runs has no run to go to.
                if let Some(run_id) = current.as_deref() {
                    // Pipe output that is already there was (nearly always) written first; `sync` makes it exact
                    // around the processes the REPL starts.
                    self.drain_and_emit(Some(run_id), false).await;
                    emit_output(&self.sinks.events, run_id, s, &d).await;
                }
            }
            FromPython::Media { mime, d } => {
                let Some(run_id) = current.clone() else { return };
                self.drain_and_emit(Some(&run_id), false).await;
                // One item is one frame: an item too large for a frame cannot be split like text.
                if d.len() + mime.len() + run_id.len() + 64 > MAX_FRAME {
                    let note = format!(
                        "[backend-kernel-runner: display() of a {mime} item of {} bytes dropped: more than a frame \
                         ({MAX_FRAME} bytes) holds]\n",
                        d.len()
                    );
                    emit_output(&self.sinks.events, &run_id, Stream::Stderr, &note).await;
                    return;
                }
                let _ = self.sinks.events.send(RunnerEvent::Media { run_id, mime, data: d }).await;
            }
            FromPython::Sync => {
                self.drain_and_emit(current.as_deref(), false).await;
                send_line(&self.control, &ToPython::Synced);
            }
            FromPython::Input { prompt } => {
                let Some(run_id) = current.clone() else { return };
                self.drain_and_emit(Some(&run_id), true).await;
                // The request side learns first, so an Input answering the event below always finds the run waiting.
                let _ = self.sinks.internal.send(Internal::WaitingInput(run_id.clone()));
                let _ = self.sinks.events.send(RunnerEvent::WaitingInput { run_id, prompt }).await;
            }
            FromPython::Done { id, code } => {
                if current.as_deref() != Some(id.as_str()) {
                    return;
                }
                self.drain_and_emit(Some(&id), true).await;
                *current = None;
                self.sinks.finish(id, code).await;
            }
            FromPython::Completion { items } => {
                let _ = sinks.events.send(RunnerEvent::Completion { items }).await;
            }
        }
    }

    async fn drain_and_emit(&mut self, run_id: Option<&str>, all: bool) {
        self.pipes.drain_now();
        self.emit_pipes(run_id, all).await;
    }

    /// Emits the interpreter's real stdout/stderr as output of the current run; between runs it is dropped.
    async fn emit_pipes(&mut self, run_id: Option<&str>, all: bool) {
        for (stream, data) in self.pipes.take(all) {
            if let Some(run_id) = run_id {
                emit_output(&self.sinks.events, run_id, stream, &data).await;
            }
        }
    }
}
