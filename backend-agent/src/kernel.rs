//! The agent's kernel registry: one connection to each kernel's runner, and the run state that turns the runner's
//! event stream into Backend.AI execution results (`finished`, `continued`, `waiting-input`, ...).

use backend_core::api::{ConsoleItem, ExecuteMode, ExecuteRequest, ExecutionResult, RunStatus};
use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use backend_core::runner::{AgentCodec, BatchOptions, RunMode, RunnerEvent, RunnerRequest, Stream};
use backend_core::runtime::{KernelHandle, RunnerEndpoint};
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::Framed;

/// Output kept per run between two collects; beyond it output is dropped with a note, so code that prints without
/// end cannot exhaust the agent's memory.
pub const MAX_PENDING_OUTPUT: usize = 8 << 20;

/// What a run produced that the caller has not collected yet.
#[derive(Debug)]
enum Item {
    Console(ConsoleItem),
    Milestone { status: RunStatus, exit_code: Option<i32>, prompt: Option<String> },
}

#[derive(Debug, Default)]
struct RunState {
    /// The active (or last) run.
    run_id: Option<String>,
    /// True from Execute until Finished.
    active: bool,
    /// True while the run waits for input.
    waiting_input: bool,
    /// The run passed its time limit: its end is reported as `exec-timeout`.
    timed_out: bool,
    items: VecDeque<Item>,
    pending_bytes: usize,
    truncated: bool,
    completion: Option<oneshot::Sender<Vec<String>>>,
    /// Set when the runner connection is gone.
    closed: bool,
}

impl RunState {
    fn push_output(&mut self, stream: Stream, data: String) {
        if self.pending_bytes + data.len() > MAX_PENDING_OUTPUT {
            if !self.truncated {
                self.truncated = true;
                self.items.push_back(Item::Console(ConsoleItem::Stderr(
                    "\n[output truncated: more than 8 MiB was not collected]\n".into(),
                )));
            }
            return;
        }
        self.pending_bytes += data.len();
        // Merge with the previous chunk of the same stream so results stay compact.
        if let Some(Item::Console(last)) = self.items.back_mut() {
            match (last, stream) {
                (ConsoleItem::Stdout(t), Stream::Stdout) | (ConsoleItem::Stderr(t), Stream::Stderr) => {
                    t.push_str(&data);
                    return;
                }
                _ => {}
            }
        }
        self.items.push_back(Item::Console(match stream {
            Stream::Stdout => ConsoleItem::Stdout(data),
            Stream::Stderr => ConsoleItem::Stderr(data),
        }));
    }

    fn milestone(&mut self, status: RunStatus, exit_code: Option<i32>, prompt: Option<String>) {
        self.items.push_back(Item::Milestone { status, exit_code, prompt });
    }

    fn apply(&mut self, ev: RunnerEvent) {
        let current = |s: &Self, id: &str| s.run_id.as_deref() == Some(id);
        match ev {
            RunnerEvent::Ready { active_run, .. } => {
                if let Some(id) = active_run {
                    self.run_id = Some(id);
                    self.active = true;
                }
            }
            RunnerEvent::Output { run_id, stream, data } if current(self, &run_id) => self.push_output(stream, data),
            RunnerEvent::Media { run_id, mime, data } if current(self, &run_id) => {
                let item = if mime == "text/html" { ConsoleItem::Html(data) } else { ConsoleItem::Media(mime, data) };
                self.items.push_back(Item::Console(item));
            }
            RunnerEvent::WaitingInput { run_id, prompt } if current(self, &run_id) => {
                self.waiting_input = true;
                self.milestone(RunStatus::WaitingInput, None, Some(prompt));
            }
            RunnerEvent::CleanFinished { run_id, exit_code } if current(self, &run_id) => {
                self.milestone(RunStatus::CleanFinished, Some(exit_code), None)
            }
            RunnerEvent::BuildFinished { run_id, exit_code } if current(self, &run_id) => {
                self.milestone(RunStatus::BuildFinished, Some(exit_code), None)
            }
            RunnerEvent::TimedOut { run_id } if current(self, &run_id) && self.active => self.timed_out = true,
            RunnerEvent::Finished { run_id, exit_code } if current(self, &run_id) => {
                self.active = false;
                self.waiting_input = false;
                let status = if self.timed_out { RunStatus::ExecTimeout } else { RunStatus::Finished };
                self.milestone(status, Some(exit_code), None);
            }
            RunnerEvent::Completion { items } => {
                if let Some(tx) = self.completion.take() {
                    let _ = tx.send(items);
                }
            }
            RunnerEvent::Error { run_id, message } => {
                let note = format!("kernel runner: {message}\n");
                if run_id.is_some_and(|id| current(self, &id)) || self.active {
                    self.push_output(Stream::Stderr, note);
                } else {
                    tracing::warn!(%message, "kernel runner reported an error");
                }
            }
            other => tracing::debug!(event = ?other, "event of a run that is not current"),
        }
    }
}

/// A live connection to one kernel's runner.
pub struct KernelConn {
    /// What the runtime said about the kernel.
    pub handle: KernelHandle,
    requests: mpsc::Sender<RunnerRequest>,
    state: Mutex<RunState>,
    changed: Notify,
    /// Serialises execute calls on one kernel, so two callers never interleave runs.
    exec_lock: tokio::sync::Mutex<()>,
}

impl KernelConn {
    /// Connects to the kernel's runner, retrying until it accepts or `patience` runs out.
    pub async fn connect(handle: KernelHandle, patience: Duration) -> Result<Arc<Self>> {
        let RunnerEndpoint::Unix(path) = &handle.endpoint;
        let deadline = tokio::time::Instant::now() + patience;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::io(format!("connecting to the kernel runner at {}", path.display()), e))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        let (mut sink, mut events) = Framed::new(stream, AgentCodec::default()).split();
        let (tx, mut rx) = mpsc::channel::<RunnerRequest>(64);
        let conn = Arc::new(Self {
            handle,
            requests: tx,
            state: Mutex::new(RunState::default()),
            changed: Notify::new(),
            exec_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                if sink.send(req).await.is_err() {
                    break;
                }
            }
        });
        let weak = Arc::downgrade(&conn);
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let Some(conn) = weak.upgrade() else { return };
                match ev {
                    Ok(ev) => conn.state.lock().expect("run state").apply(ev),
                    Err(e) => {
                        tracing::warn!(error = %e, "bad frame from kernel runner");
                        break;
                    }
                }
                conn.changed.notify_waiters();
            }
            if let Some(conn) = weak.upgrade() {
                let mut st = conn.state.lock().expect("run state");
                st.closed = true;
                if st.active {
                    st.active = false;
                    st.push_output(Stream::Stderr, "kernel runner connection lost\n".into());
                    st.milestone(RunStatus::Finished, Some(-1), None);
                }
                drop(st);
                conn.changed.notify_waiters();
            }
        });
        Ok(conn)
    }

    async fn send(&self, req: RunnerRequest) -> Result<()> {
        self.requests.send(req).await.map_err(|_| Error::Conflict { msg: "the kernel is not running".into() })
    }

    /// Carries out one execute call and answers within about `flush` (a run that has not reached a milestone by
    /// then is `continued`). A query or batch call's `options.exec_timeout` (seconds) limits the run it starts, from
    /// its start and across continue calls (in batch mode, each command); a run that passes it ends `exec-timeout`.
    pub async fn execute(&self, req: ExecuteRequest, flush: Duration) -> Result<ExecutionResult> {
        let _guard = self.exec_lock.lock().await;
        let run_id = match req.mode {
            ExecuteMode::Query | ExecuteMode::Batch => {
                let run_id = req.run_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
                let limit = backend_core::api::exec_timeout(&req.options)?;
                {
                    let mut st = self.state.lock().expect("run state");
                    if st.closed {
                        return Err(Error::Conflict { msg: "the kernel is not running".into() });
                    }
                    if st.active {
                        return Err(Error::Conflict {
                            msg: format!("run {} is still active", st.run_id.clone().unwrap_or_default()),
                        });
                    }
                    *st = RunState { run_id: Some(run_id.clone()), active: true, ..RunState::default() };
                }
                let (mode, options) = if req.mode == ExecuteMode::Batch {
                    let options: BatchOptions = serde_json::from_value(req.options.clone())
                        .map_err(|e| Error::InvalidParams { msg: format!("invalid batch options: {e}") })?;
                    (RunMode::Batch, options)
                } else {
                    (RunMode::Query, BatchOptions::default())
                };
                let timeout_ms = limit.map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX).max(1));
                self.send(RunnerRequest::Execute {
                    run_id: run_id.clone(),
                    mode,
                    code: req.code.clone(),
                    options,
                    timeout_ms,
                })
                .await?;
                run_id
            }
            ExecuteMode::Continue | ExecuteMode::Input => {
                let run_id = req
                    .run_id
                    .clone()
                    .ok_or_else(|| Error::InvalidParams { msg: "runId is required for continue and input".into() })?;
                {
                    let mut st = self.state.lock().expect("run state");
                    if st.run_id.as_deref() != Some(run_id.as_str()) {
                        return Err(Error::InvalidParams { msg: format!("unknown run {run_id}") });
                    }
                    if req.mode == ExecuteMode::Input {
                        if !st.waiting_input {
                            return Err(Error::Conflict { msg: format!("run {run_id} is not waiting for input") });
                        }
                        st.waiting_input = false;
                    }
                }
                if req.mode == ExecuteMode::Input {
                    self.send(RunnerRequest::Input { run_id: run_id.clone(), text: req.code.clone() }).await?;
                }
                run_id
            }
            ExecuteMode::Complete => return self.complete(req, flush).await,
        };
        Ok(self.collect(run_id, flush).await)
    }

    async fn complete(&self, req: ExecuteRequest, flush: Duration) -> Result<ExecutionResult> {
        let (tx, rx) = oneshot::channel();
        self.state.lock().expect("run state").completion = Some(tx);
        self.send(RunnerRequest::Complete { code: req.code }).await?;
        let items = tokio::time::timeout(flush, rx).await.ok().and_then(|r| r.ok()).unwrap_or_default();
        Ok(ExecutionResult {
            run_id: req.run_id.unwrap_or_default(),
            status: RunStatus::Finished,
            exit_code: Some(0),
            options: serde_json::Value::Null,
            files: vec![],
            console: vec![ConsoleItem::Completion(items)],
        })
    }

    /// Takes the run's output up to its next milestone, waiting at most `flush` for one.
    async fn collect(&self, run_id: String, flush: Duration) -> ExecutionResult {
        let deadline = tokio::time::Instant::now() + flush;
        let mut console: Vec<ConsoleItem> = Vec::new();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().expect("run state");
                while let Some(item) = st.items.pop_front() {
                    match item {
                        Item::Console(c) => {
                            if let ConsoleItem::Stdout(t) | ConsoleItem::Stderr(t) = &c {
                                st.pending_bytes = st.pending_bytes.saturating_sub(t.len());
                            }
                            console.push(c);
                        }
                        Item::Milestone { status, exit_code, prompt } => {
                            let options = prompt
                                .map(|p| serde_json::json!({ "prompt": p, "is_password": false }))
                                .unwrap_or(serde_json::Value::Null);
                            return ExecutionResult { run_id, status, exit_code, options, files: vec![], console };
                        }
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return ExecutionResult {
                    run_id,
                    status: RunStatus::Continued,
                    exit_code: None,
                    options: serde_json::Value::Null,
                    files: vec![],
                    console,
                };
            }
        }
    }

    /// Interrupts the running code (SIGINT inside the kernel).
    pub async fn interrupt(&self) -> Result<()> {
        self.send(RunnerRequest::Interrupt).await
    }

    /// True once the runner connection is gone.
    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("run state").closed
    }
}

/// The kernels this agent runs, by id.
#[derive(Default)]
pub struct KernelRegistry {
    kernels: Mutex<HashMap<KernelId, Arc<KernelConn>>>,
}

impl KernelRegistry {
    /// Adds a kernel.
    pub fn insert(&self, conn: Arc<KernelConn>) {
        self.kernels.lock().expect("registry").insert(conn.handle.kernel_id, conn);
    }

    /// A kernel by id.
    pub fn get(&self, id: KernelId) -> Result<Arc<KernelConn>> {
        self.kernels
            .lock()
            .expect("registry")
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::KernelNotFound { id: id.to_string() })
    }

    /// Removes a kernel.
    pub fn remove(&self, id: KernelId) -> Option<Arc<KernelConn>> {
        self.kernels.lock().expect("registry").remove(&id)
    }

    /// Removes a kernel only while it is still the incarnation `container_id` (not a restarted one).
    pub fn remove_if(&self, id: KernelId, container_id: &str) -> Option<Arc<KernelConn>> {
        let mut kernels = self.kernels.lock().expect("registry");
        if kernels.get(&id).is_some_and(|c| c.handle.container_id == container_id) {
            kernels.remove(&id)
        } else {
            None
        }
    }

    /// Every kernel's handle.
    pub fn handles(&self) -> Vec<KernelHandle> {
        self.kernels.lock().expect("registry").values().map(|c| c.handle.clone()).collect()
    }
}
