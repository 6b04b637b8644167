//! The kernel runner (`backend-kernel-runner`, or any binary calling [`crate::runner_entry::dispatch`]): runs inside a kernel, hosts the language's interpreter and serves the agent over a
//! Unix socket with the framed protocol of [`backend_core::runner`].
//!
//! One agent connection is served at a time; a new one replaces the old, and the interpreter (with its state and
//! any run in progress) outlives both. Three tasks share the work so that none waits on another: the accept loop
//! (plus one reader per connection), the request loop in `main` (runs, input, interrupts), and the outbox, the only
//! writer to the agent. Output producers feed the outbox through a bounded channel, so a slow agent slows the
//! interpreter down rather than the request loop.
//!
//! Usage: `backend-kernel-runner --socket PATH --lang python|shell [--python PYTHON] [--workdir DIR]
//! [--max-memory BYTES] [--die-with-parent]`; `--socket` defaults to `$BACKENDAI_RUNNER_SOCKET`. The runner stops on
//! a `Shutdown` request, SIGTERM or SIGINT: it kills the interpreter and the running command, and removes its socket.
//!
//! Exit codes of runs. Python: 0; 1 for an uncaught exception, KeyboardInterrupt included (so an interrupted run
//! ends with 1); `n` for `sys.exit(n)`. If the interpreter dies, its status (128 + N for signal N) ends the run and a
//! fresh interpreter serves the next one. Shell and batch: the command's status, 128 + N when signal N killed it (an
//! interrupted command gives 130), 127 when `/bin/sh` cannot start.
//!
//! Interrupt: SIGINT to the interpreter (Python) or to the command's process group (shell, batch: a batch also
//! stops before its next command). One sent before the interpreter has started the code is delivered when it
//! does; one sent while no run is active does nothing.
//!
//! Time limit: an `Execute` may carry `timeout_ms`, counted from the run's start (in batch mode, from each command's
//! start). When it passes the runner sends `TimedOut`, notes it on stderr and interrupts the run as above; a run
//! still there after [`TIMEOUT_GRACE`] is killed: the command's process group, or the Python interpreter, whose
//! state is then lost (a stderr note says so, and the next run starts a fresh interpreter). The run's `Finished`
//! follows with a non-zero exit code (1 for Python's KeyboardInterrupt, 130 for an interrupted command, 137 when
//! killed).
//!
//! Input: for Python, `input()` and `sys.stdin` reads send `WaitingInput` and wait for an `Input`. A shell query
//! run's stdin is a pipe: `Input` texts are written to it whenever the run is active (`WaitingInput` is not
//! detected) and batch commands read /dev/null. An `Input` text of exactly `"\u{4}"` (Ctrl-D) means end of file.
//!
//! A request frame that is not valid JSON of a request gets an `Error` event and the connection stays; a frame
//! that breaks the framing itself (too long) ends that connection.

mod outbox;
mod output;
mod process;
mod python;

use anyhow::Context as _;
use backend_core::runner::{
    BatchOptions, RunMode, RunnerCodec, RunnerEvent, RunnerRequest, Stream, MAX_FRAME, SOCKET_ENV, TIMEOUT_GRACE,
};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use outbox::{Connection, Control, Outbox};
use process::{ProcessControl, StdinMessage};
use python::Interpreter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// How many run events may wait for the outbox before their producers wait.
const EVENT_QUEUE: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "Hosts a kernel's interpreter and serves the Backend.AI agent over a Unix socket")]
struct Cli {
    /// The Unix socket to listen on.
    #[arg(long, env = SOCKET_ENV)]
    socket: PathBuf,
    /// The kernel's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The Python interpreter to run (`--lang python`).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// The directory code and commands run in (default: the current directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Caps the memory the interpreter and commands may allocate, in bytes (RLIMIT_DATA, inherited).
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<u64>,
    /// Shut down (killing the interpreter) when the process that started the runner exits.
    #[arg(long)]
    die_with_parent: bool,
    /// A cgroup directory to join before starting anything (repeatable: one per cgroup v1 hierarchy).
    #[arg(long, value_name = "DIR")]
    cgroup: Vec<PathBuf>,
    /// A virtual folder to mount before starting anything, `SRC:DST:ro` or `SRC:DST:rw` (repeatable; the process
    /// runtime's way to mount folders, Docker bind-mounts them itself).
    #[arg(long = "mount", value_name = "SRC:DST:MODE")]
    mounts: Vec<String>,
    /// A shell script to run in the work directory before listening (the session's bootstrap script); its output
    /// goes to the runner's own output (the kernel's log), and a failure is logged, not fatal.
    #[arg(long, value_name = "FILE")]
    bootstrap: Option<PathBuf>,
}

/// The languages the runner hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A persistent Python interpreter.
    Python,
    /// `/bin/sh -c` per run.
    Shell,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Shell => "shell",
        }
    }
}

/// What every run needs to know.
pub struct Config {
    /// The kernel's language.
    pub lang: Lang,
    /// The Python interpreter.
    pub python: PathBuf,
    /// Where code and commands run.
    pub workdir: PathBuf,
}

/// Notices from run tasks to the request loop.
#[derive(Debug)]
pub enum Internal {
    /// The interpreter began running the code of this run (interrupts can now reach it).
    Started(String),
    /// The run waits for an `Input`.
    WaitingInput(String),
    /// The run ended (its `Finished` follows).
    RunEnded(String),
    /// The interpreter of this generation exited.
    InterpreterExited(u64),
    /// This Python run passed its time limit (`TimedOut` is already sent): interrupt it.
    TimedOut(String),
    /// This Python run outlived the grace after its time limit: kill the interpreter.
    TimeoutGraceOver(String),
}

/// Where run tasks send what they produce.
#[derive(Clone)]
pub struct Sinks {
    /// Run events for the agent.
    pub events: mpsc::Sender<RunnerEvent>,
    /// Notices for the request loop.
    pub internal: mpsc::UnboundedSender<Internal>,
}

impl Sinks {
    /// Ends a run: the request loop hears first, so a new `Execute` sent in answer to `Finished` is accepted.
    pub async fn finish(&self, run_id: String, exit_code: i32) {
        let _ = self.internal.send(Internal::RunEnded(run_id.clone()));
        let _ = self.events.send(RunnerEvent::Finished { run_id, exit_code }).await;
    }
}

/// Reports that a run passed its time limit: the `TimedOut` event, then a note on the run's stderr.
pub async fn report_timeout(sinks: &Sinks, run_id: &str, limit: Duration) {
    let _ = sinks.events.send(RunnerEvent::TimedOut { run_id: run_id.to_owned() }).await;
    let note = format!(
        "\n[backend-kernel-runner: the run passed its time limit of {} s and is interrupted]\n",
        limit.as_secs_f64()
    );
    output::emit_output(&sinks.events, run_id, Stream::Stderr, &note).await;
}

/// The whole runner for a command line (program name first); returns the process exit code.
pub fn main_with_args(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if let Err(e) = apply_process_options(&cli) {
        eprintln!("backend-kernel-runner: {e:#}");
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backend-kernel-runner: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("backend-kernel-runner: {e:#}");
            1
        }
    }
}

/// Settings of the runner process itself, made before any child exists so that every child inherits them.
fn apply_process_options(cli: &Cli) -> anyhow::Result<()> {
    for dir in &cli.cgroup {
        // Joining first means every process the kernel ever starts is counted and limited.
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("cannot join the cgroup {}", dir.display()))?;
    }
    if let Some(bytes) = cli.max_memory {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        // RLIMIT_DATA counts what a program allocates (heap, private writable mappings), unlike RLIMIT_AS, which
        // also counts address space merely reserved (thread stacks, malloc arenas) and breaks ordinary programs.
        let (_, hard) = getrlimit(Resource::RLIMIT_DATA).context("cannot read the memory limit")?;
        let limit = bytes.min(hard);
        setrlimit(Resource::RLIMIT_DATA, limit, limit).context("cannot set the memory limit")?;
    }
    if !cli.mounts.is_empty() {
        mount_folders(&cli.mounts)?;
    }
    if cli.die_with_parent {
        let parent = nix::unistd::getppid();
        // SIGTERM, so the usual shutdown kills the interpreter and removes the socket.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
            .context("cannot ask to die with the parent")?;
        // A parent that died before the request above has already left us re-parented.
        anyhow::ensure!(nix::unistd::getppid() == parent, "the parent process is already gone");
    }
    Ok(())
}

/// Mounts folders given as `SRC:DST:MODE`. As root, in a mount namespace of the runner's own (so nothing leaks to
/// the host and the mounts vanish with the kernel), with `ro` folders remounted read-only. Without root there is no
/// way to bind-mount: the folder appears as a symlink and `ro` cannot be enforced (the process runtime isolates
/// nothing then; the Docker runtime enforces it).
fn mount_folders(specs: &[String]) -> anyhow::Result<()> {
    let mut mounts = Vec::new();
    for spec in specs {
        let mut parts = spec.rsplitn(3, ':');
        let (Some(mode), Some(dst), Some(src)) = (parts.next(), parts.next(), parts.next()) else {
            anyhow::bail!("--mount {spec:?} is not SRC:DST:MODE");
        };
        anyhow::ensure!(mode == "ro" || mode == "rw", "--mount {spec:?}: the mode is ro or rw");
        mounts.push((PathBuf::from(src), PathBuf::from(dst), mode == "ro"));
    }
    if nix::unistd::geteuid().is_root() {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("cannot make a mount namespace")?;
        // Shared propagation would copy our mounts back into the host's namespace.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .context("cannot make mounts private")?;
        for (src, dst, read_only) in &mounts {
            std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
            mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .with_context(|| format!("cannot mount {} at {}", src.display(), dst.display()))?;
            if *read_only {
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
                    .with_context(|| format!("cannot make {} read-only", dst.display()))?;
            }
        }
    } else {
        for (src, dst, read_only) in &mounts {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let _ = std::fs::remove_file(dst);
            std::os::unix::fs::symlink(src, dst).with_context(|| format!("cannot link {}", dst.display()))?;
            if *read_only {
                eprintln!(
                    "backend-kernel-runner: {} is read-only but not running as root: linked, not enforced",
                    dst.display()
                );
            }
        }
    }
    Ok(())
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let workdir = match cli.workdir {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    anyhow::ensure!(workdir.is_dir(), "work directory {} is not a directory", workdir.display());
    if let Some(script) = &cli.bootstrap {
        // Before listening: the kernel is not ready, and takes no code, until its bootstrap has run.
        match tokio::process::Command::new("/bin/sh").arg(script).current_dir(&workdir).status().await {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("backend-kernel-runner: the bootstrap script ended with {status}"),
            Err(e) => eprintln!("backend-kernel-runner: cannot run the bootstrap script: {e}"),
        }
    }
    let cfg = Arc::new(Config { lang: cli.lang, python: cli.python, workdir });
    let listener = bind(&cli.socket)?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // A stray Ctrl-C (the runner started by hand) shuts down cleanly too; Interrupt requests never signal us.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let (conn_tx, conn_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    let (request_tx, mut request_rx) = mpsc::unbounded_channel();
    tokio::spawn(Outbox::new(cfg.lang.name()).run(conn_rx, control_rx, events_rx));
    tokio::spawn(accept(listener, conn_tx, request_tx, control_tx.clone()));

    let sinks = Sinks { events: events_tx, internal: internal_tx };
    let mut kernel = Kernel::new(cfg, sinks, control_tx);
    kernel.warm_up();
    loop {
        tokio::select! {
            biased;
            // Run notices first: a request sent in answer to an event must see the state that event reported.
            Some(notice) = internal_rx.recv() => kernel.on_notice(notice),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            request = request_rx.recv() => match request {
                Some(RunnerRequest::Shutdown) | None => break,
                Some(request) => kernel.on_request(request),
            },
        }
    }
    kernel.kill();
    let _ = std::fs::remove_file(&cli.socket);
    Ok(())
}

/// Binds the socket, replacing a stale socket file left by an earlier runner.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove the stale socket {}", path.display())),
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))
}

/// Accepts agents; each new one replaces the previous connection.
async fn accept(
    listener: UnixListener,
    connections: mpsc::UnboundedSender<Connection>,
    requests: mpsc::UnboundedSender<RunnerRequest>,
    replies: mpsc::UnboundedSender<Control>,
) {
    let mut reader: Option<JoinHandle<()>> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Some(old) = reader.take() {
                    old.abort();
                }
                let (read, write) = stream.into_split();
                // The outbox greets the agent before any answer to its requests can exist.
                if connections.send(FramedWrite::new(write, RunnerCodec::default())).is_err() {
                    return;
                }
                reader = Some(tokio::spawn(read_requests(read, requests.clone(), replies.clone())));
            }
            Err(e) => {
                // Typically out of descriptors: pause instead of spinning on the same error.
                eprintln!("backend-kernel-runner: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Forwards one connection's requests. Frames are decoded here rather than by `RunnerCodec`, because a codec
/// error would end the stream and a malformed request should only cost an `Error` event.
async fn read_requests(
    read: OwnedReadHalf,
    requests: mpsc::UnboundedSender<RunnerRequest>,
    replies: mpsc::UnboundedSender<Control>,
) {
    let codec = LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec();
    let mut frames = FramedRead::new(read, codec);
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let message = format!("unreadable frame, closing the connection: {e}");
                let _ = replies.send(Control::Reply(RunnerEvent::Error { run_id: None, message }));
                return;
            }
        };
        match serde_json::from_slice::<RunnerRequest>(&frame) {
            Ok(request) => {
                if requests.send(request).is_err() {
                    return;
                }
            }
            Err(e) => {
                let run_id = serde_json::from_slice::<serde_json::Value>(&frame)
                    .ok()
                    .and_then(|v| v.get("run_id").and_then(|id| id.as_str()).map(str::to_owned));
                let message = format!("malformed request: {e}");
                let _ = replies.send(Control::Reply(RunnerEvent::Error { run_id, message }));
            }
        }
    }
}

/// The run in progress.
struct ActiveRun {
    run_id: String,
    kind: RunKind,
    /// A Python run's time limit (commands keep their own); aborted when the run ends.
    timer: Option<JoinHandle<()>>,
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

enum RunKind {
    /// Query code in the interpreter.
    Python {
        /// The interpreter said it runs the code: a SIGINT now reaches it.
        started: bool,
        /// An Interrupt came before that; it is delivered on start.
        interrupt_pending: bool,
        waiting_input: bool,
    },
    /// Shell commands.
    Process { control: Arc<ProcessControl>, stdin: Option<mpsc::UnboundedSender<StdinMessage>> },
}

/// The request side: the interpreter and the active run.
struct Kernel {
    cfg: Arc<Config>,
    sinks: Sinks,
    replies: mpsc::UnboundedSender<Control>,
    interpreter: Option<Interpreter>,
    generations: u64,
    active: Option<ActiveRun>,
}

impl Kernel {
    fn new(cfg: Arc<Config>, sinks: Sinks, replies: mpsc::UnboundedSender<Control>) -> Self {
        Self { cfg, sinks, replies, interpreter: None, generations: 0, active: None }
    }

    /// Starts the interpreter now, so the first run does not pay for its start-up.
    fn warm_up(&mut self) {
        if self.cfg.lang == Lang::Python {
            if let Err(e) = self.spawn_interpreter() {
                eprintln!("backend-kernel-runner: cannot start {}: {e}", self.cfg.python.display());
            }
        }
    }

    fn spawn_interpreter(&mut self) -> std::io::Result<()> {
        self.generations += 1;
        self.interpreter = Some(Interpreter::spawn(&self.cfg, self.generations, self.sinks.clone())?);
        Ok(())
    }

    fn reply(&self, ev: RunnerEvent) {
        let _ = self.replies.send(Control::Reply(ev));
    }

    fn error(&self, run_id: Option<&str>, message: String) {
        self.reply(RunnerEvent::Error { run_id: run_id.map(str::to_owned), message });
    }

    fn on_notice(&mut self, notice: Internal) {
        match notice {
            Internal::InterpreterExited(generation) => {
                if self.interpreter.as_ref().is_some_and(|i| i.generation == generation) {
                    self.interpreter = None; // the next run starts a fresh one
                }
            }
            Internal::RunEnded(run_id) => {
                if self.active.as_ref().is_some_and(|a| a.run_id == run_id) {
                    self.active = None;
                }
            }
            Internal::TimedOut(run_id) => {
                if self.active.as_ref().is_some_and(|a| a.run_id == run_id) {
                    self.interrupt();
                }
            }
            Internal::TimeoutGraceOver(run_id) => {
                if self.active.as_ref().is_some_and(|a| a.run_id == run_id) {
                    // The interpreter's exit finishes the run, with a note that its state is lost.
                    if let Some(interpreter) = &self.interpreter {
                        interpreter.kill();
                    }
                }
            }
            Internal::Started(run_id) => {
                if let Some(ActiveRun {
                    run_id: id, kind: RunKind::Python { started, interrupt_pending, .. }, ..
                }) = &mut self.active
                {
                    if *id == run_id {
                        *started = true;
                        if std::mem::take(interrupt_pending) {
                            if let Some(interpreter) = &self.interpreter {
                                interpreter.interrupt();
                            }
                        }
                    }
                }
            }
            Internal::WaitingInput(run_id) => {
                if let Some(ActiveRun { run_id: id, kind: RunKind::Python { waiting_input, .. }, .. }) =
                    &mut self.active
                {
                    if *id == run_id {
                        *waiting_input = true;
                    }
                }
            }
        }
    }

    fn on_request(&mut self, request: RunnerRequest) {
        match request {
            RunnerRequest::Execute { run_id, mode, code, options, timeout_ms } => {
                // A limit of 0 would end the run before it starts; the agent never sends one.
                let limit = timeout_ms.filter(|ms| *ms > 0).map(Duration::from_millis);
                self.execute(run_id, mode, code, options, limit)
            }
            RunnerRequest::Input { run_id, text } => self.input(run_id, text),
            RunnerRequest::Interrupt => self.interrupt(),
            RunnerRequest::Complete { code } => self.complete(&code),
            RunnerRequest::Shutdown => {} // handled by the loop in `serve`
        }
    }

    fn execute(&mut self, run_id: String, mode: RunMode, code: String, options: BatchOptions, limit: Option<Duration>) {
        if let Some(active) = &self.active {
            let message = format!("run {} is still active; wait for its end or interrupt it", active.run_id);
            return self.error(Some(&run_id), message);
        }
        let _ = self.replies.send(Control::RunStarted(run_id.clone()));
        let kind = match (mode, self.cfg.lang) {
            (RunMode::Batch, _) => {
                let control =
                    process::start_batch(run_id.clone(), options, limit, self.cfg.clone(), self.sinks.clone());
                RunKind::Process { control, stdin: None }
            }
            (RunMode::Query, Lang::Shell) => {
                let (control, stdin) =
                    process::start_shell(run_id.clone(), code, limit, self.cfg.clone(), self.sinks.clone());
                RunKind::Process { control, stdin: Some(stdin) }
            }
            (RunMode::Query, Lang::Python) => {
                if let Err(message) = self.start_python(&run_id, &code) {
                    let sinks = self.sinks.clone();
                    // The run never became active; its events still go through the outbox in order.
                    tokio::spawn(async move {
                        let _ = sinks
                            .events
                            .send(RunnerEvent::Output { run_id: run_id.clone(), stream: Stream::Stderr, data: message })
                            .await;
                        let _ = sinks.events.send(RunnerEvent::Finished { run_id, exit_code: 127 }).await;
                    });
                    return;
                }
                RunKind::Python { started: false, interrupt_pending: false, waiting_input: false }
            }
        };
        let timer = match (&kind, limit) {
            (RunKind::Python { .. }, Some(limit)) => Some(self.python_timer(run_id.clone(), limit)),
            _ => None,
        };
        self.active = Some(ActiveRun { run_id, kind, timer });
    }

    /// Counts a Python run's time limit: reports the timeout and has the request loop interrupt the run, then kill
    /// the interpreter if the run is still there after the grace.
    fn python_timer(&self, run_id: String, limit: Duration) -> JoinHandle<()> {
        let sinks = self.sinks.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            // Queued before the interrupt is sent, so the agent hears of the timeout before the run's end.
            report_timeout(&sinks, &run_id, limit).await;
            let _ = sinks.internal.send(Internal::TimedOut(run_id.clone()));
            tokio::time::sleep(TIMEOUT_GRACE).await;
            let _ = sinks.internal.send(Internal::TimeoutGraceOver(run_id));
        })
    }

    /// Hands the code to the interpreter, starting a fresh one if there is none or it just died.
    fn start_python(&mut self, run_id: &str, code: &str) -> Result<(), String> {
        for _ in 0..2 {
            if self.interpreter.is_none() {
                if let Err(e) = self.spawn_interpreter() {
                    return Err(format!("backend-kernel-runner: cannot start {}: {e}\n", self.cfg.python.display()));
                }
            }
            if self.interpreter.as_ref().is_some_and(|i| i.start_run(run_id, code)) {
                return Ok(());
            }
            self.interpreter = None;
        }
        Err("backend-kernel-runner: the Python interpreter exits as soon as it starts\n".to_owned())
    }

    fn input(&mut self, run_id: String, text: String) {
        let Some(active) = self.active.as_mut().filter(|a| a.run_id == run_id) else {
            return self.error(Some(&run_id), format!("run {run_id} is not active"));
        };
        match &mut active.kind {
            RunKind::Python { waiting_input, .. } => {
                if !std::mem::take(waiting_input) {
                    return self.error(Some(&run_id), format!("run {run_id} is not waiting for input"));
                }
                if let Some(interpreter) = &self.interpreter {
                    interpreter.send_input(&text);
                }
            }
            RunKind::Process { stdin: Some(stdin), .. } => {
                let message = if text == "\u{4}" {
                    StdinMessage::Eof
                } else if text.ends_with('\n') {
                    StdinMessage::Data(text)
                } else {
                    StdinMessage::Data(text + "\n")
                };
                let _ = stdin.send(message);
            }
            RunKind::Process { stdin: None, .. } => {
                self.error(Some(&run_id), format!("run {run_id} is a batch run and reads no input"));
            }
        }
    }

    fn interrupt(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        }; // nothing runs: nothing to interrupt
        match &mut active.kind {
            RunKind::Python { started, interrupt_pending, waiting_input } => {
                *waiting_input = false; // KeyboardInterrupt ends the wait
                if !*started {
                    *interrupt_pending = true;
                } else if let Some(interpreter) = &self.interpreter {
                    interpreter.interrupt();
                }
            }
            RunKind::Process { control, .. } => control.interrupt(),
        }
    }

    fn complete(&mut self, code: &str) {
        // Only an idle interpreter can look at its namespace; otherwise there is no candidate to offer.
        let asked = self.active.is_none() && self.interpreter.as_ref().is_some_and(|i| i.complete(code));
        if !asked {
            self.reply(RunnerEvent::Completion { items: Vec::new() });
        }
    }

    /// Shutdown: the interpreter and any running command die with the runner.
    fn kill(&mut self) {
        if let Some(interpreter) = &self.interpreter {
            interpreter.kill();
        }
        if let Some(ActiveRun { kind: RunKind::Process { control, .. }, .. }) = &self.active {
            control.kill();
        }
    }
}
