//! The Backend.AI agent: runs the kernels of compute sessions on one worker, mediates their execution, and announces
//! its capacity and images to the managers with heartbeats.
//!
//! Composition: an [`Agent`] holds a [`ContainerRuntime`] (here [`runtime::process::ProcessRuntime`]), the
//! [`kernel::KernelRegistry`] of runner connections, and the event bus and live state it reports through. [`run`]
//! serves the [`rpc`] API on a listener the caller owns until the caller's shutdown future resolves. Its
//! [`accelerator`] devices (none by default) add `cuda.device` / `cuda.shares` to its capacity and go to the kernels
//! that ask for them.

pub mod accelerator;
pub mod cluster;
pub mod dummy;
pub mod files;
pub mod http;
pub mod kernel;
pub mod rpc;
pub mod runner;
pub mod runner_entry;
pub mod runtime;

use backend_core::api::{ExecuteRequest, ExecutionResult};
use backend_core::error::{Error, Result};
use backend_core::events::{Event, EventBus};
use backend_core::ids::{AgentId, KernelId};
use backend_core::live::LiveState;
use backend_core::model::AgentHeartbeat;
use backend_core::runtime::{ContainerRuntime, KernelExit, KernelHandle, KernelSpec};
use backend_core::ResourceSlots;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use accelerator::{AcceleratorSetting, KernelDevices};
use kernel::{KernelConn, KernelRegistry};

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Its id (unique in the cluster).
    pub id: AgentId,
    /// The scaling group it serves.
    pub scaling_group: String,
    /// The shared token managers must send.
    pub token: String,
    /// The RPC address managers should use; default `http://<listener address>`.
    pub advertised_addr: Option<String>,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// How long an execute call waits for a milestone before answering `continued`.
    pub flush_window: Duration,
    /// Capacity to announce; default: the machine's CPUs and memory. The accelerator's slots are added where this
    /// gives them no amount.
    pub capacity: Option<ResourceSlots>,
    /// The accelerator plugin (default: none).
    pub accelerator: AcceleratorSetting,
    /// Where the agent keeps what must survive its restart (the kernels' devices, `accelerator.json`); none: kept
    /// in memory only.
    pub state_dir: Option<PathBuf>,
}

impl AgentConfig {
    /// Defaults for an agent with this id and token.
    pub fn new(id: impl Into<AgentId>, token: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            scaling_group: "default".into(),
            token: token.into(),
            advertised_addr: None,
            heartbeat_interval: Duration::from_secs(3),
            flush_window: Duration::from_secs(2),
            capacity: None,
            accelerator: AcceleratorSetting::None,
            state_dir: None,
        }
    }
}

/// The machine's CPUs and memory, as slots.
pub fn host_capacity() -> ResourceSlots {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(1 << 30);
    ResourceSlots::from([("cpu", cpus.into()), ("mem", mem.into())])
}

/// One agent.
pub struct Agent {
    /// Its settings.
    pub config: AgentConfig,
    /// The runtime that runs its kernels.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Runner connections.
    pub kernels: KernelRegistry,
    /// The accelerator devices and which kernel holds which.
    pub devices: KernelDevices,
    bus: Arc<dyn EventBus>,
    live: Arc<dyn LiveState>,
}

impl Agent {
    /// An agent over a runtime, reporting through `bus` and `live`.
    pub fn new(
        config: AgentConfig,
        runtime: Arc<dyn ContainerRuntime>,
        bus: Arc<dyn EventBus>,
        live: Arc<dyn LiveState>,
    ) -> Arc<Self> {
        let state_file = config.state_dir.as_ref().map(|d| d.join("accelerator.json"));
        let devices = KernelDevices::new(config.accelerator.build(), state_file);
        Arc::new(Self { config, runtime, kernels: KernelRegistry::default(), devices, bus, live })
    }

    /// Creates a kernel and connects to its runner. A kernel asking for accelerator slots first gets its devices
    /// (`QuotaExceeded` when they are not free). A kernel whose runner cannot be reached is destroyed again, so a
    /// failed create leaves nothing behind (its devices are given back too).
    pub async fn create_kernel(self: &Arc<Self>, mut spec: KernelSpec) -> Result<KernelHandle> {
        self.devices.prepare(&mut spec)?;
        let created = match self.runtime.create_kernel(&spec).await {
            Ok(handle) => self.attach(handle, spec.kernel_id).await,
            Err(e) => Err(e),
        };
        if created.is_err() {
            self.devices.release(spec.kernel_id);
        }
        created
    }

    /// Connects to a started kernel's runner and registers it; a kernel whose runner cannot be reached is destroyed.
    async fn attach(self: &Arc<Self>, handle: KernelHandle, kernel_id: KernelId) -> Result<KernelHandle> {
        let connected = tokio::select! {
            conn = KernelConn::connect(handle.clone(), Duration::from_secs(30)) => conn,
            exit = self.runtime.wait_kernel(kernel_id) => Err(match exit {
                Ok(exit) => Error::Internal {
                    msg: format!("the kernel runner exited before it listened (exit code {:?})", exit.exit_code),
                },
                Err(e) => e,
            }),
        };
        match connected {
            Ok(conn) => {
                self.kernels.insert(conn);
                self.watch_exit(&handle);
                Ok(handle)
            }
            Err(e) => {
                let _ = self.runtime.destroy_kernel(kernel_id, true).await;
                Err(e)
            }
        }
    }

    /// Restarts a kernel: its processes are replaced by fresh ones from the same spec (state in the interpreter is
    /// lost; the runtime keeps the scratch directory where it can).
    /// The kernel keeps its devices.
    pub async fn restart_kernel(self: &Arc<Self>, mut spec: KernelSpec) -> Result<KernelHandle> {
        self.devices.prepare(&mut spec)?;
        self.kernels.remove(spec.kernel_id);
        let handle = self.runtime.restart_kernel(&spec).await?;
        self.attach(handle, spec.kernel_id).await
    }

    /// Destroys a kernel. Destroying one the agent no longer has is not an error when the runtime still knows it.
    /// Its devices are given back either way.
    pub async fn destroy_kernel(&self, id: KernelId, forced: bool) -> Result<KernelExit> {
        self.kernels.remove(id);
        let exit = self.runtime.destroy_kernel(id, forced).await;
        self.devices.release(id);
        exit
    }

    /// One execute call on a kernel.
    pub async fn execute(&self, id: KernelId, req: ExecuteRequest) -> Result<ExecutionResult> {
        self.kernels.get(id)?.execute(req, self.config.flush_window).await
    }

    /// Interrupts a kernel's running code.
    pub async fn interrupt(&self, id: KernelId) -> Result<()> {
        self.kernels.get(id)?.interrupt().await
    }

    /// Reconnects to the kernels the runtime still has (after an agent restart). A kernel whose runner no longer
    /// answers is removed and reported as ended, so no record stays RUNNING and no directory or container is left.
    /// Re-attached kernels take back the devices they held ([`KernelDevices::restore`]). Returns how many kernels
    /// were re-attached.
    pub async fn reattach(self: &Arc<Self>) -> Result<usize> {
        let mut kept = Vec::new();
        for handle in self.runtime.list_kernels().await? {
            let id = handle.kernel_id;
            match KernelConn::connect(handle.clone(), Duration::from_millis(500)).await {
                Ok(conn) => {
                    self.kernels.insert(conn);
                    self.watch_exit(&handle);
                    kept.push(id);
                }
                Err(e) => {
                    tracing::warn!(kernel = %id, error = %e, "kernel found but its runner does not answer");
                    let exit = self.runtime.destroy_kernel(id, true).await.ok();
                    let event = Event::KernelExited {
                        agent_id: self.config.id.clone(),
                        kernel_id: id,
                        exit_code: exit.and_then(|e| e.exit_code),
                        reason: "kernel-lost: it ended while its agent was down".into(),
                    };
                    self.bus.publish(event).await?;
                }
            }
        }
        self.devices.restore(&kept);
        Ok(kept.len())
    }

    /// Reports a kernel that ends by itself (not through `destroy_kernel`).
    fn watch_exit(self: &Arc<Self>, handle: &KernelHandle) {
        let agent = Arc::downgrade(self);
        let runtime = self.runtime.clone();
        let (id, incarnation) = (handle.kernel_id, handle.container_id.clone());
        tokio::spawn(async move {
            let Ok(exit) = runtime.wait_kernel(id).await else { return };
            let Some(agent) = agent.upgrade() else { return };
            if agent.kernels.remove_if(id, &incarnation).is_some() {
                // It ended by itself: free what it left (directory, cgroups) now rather than at session end.
                let _ = agent.runtime.destroy_kernel(id, true).await;
                agent.devices.release(id);
                let event = Event::KernelExited {
                    agent_id: agent.config.id.clone(),
                    kernel_id: id,
                    exit_code: exit.exit_code,
                    reason: exit.reason,
                };
                if let Err(e) = agent.bus.publish(event).await {
                    tracing::warn!(kernel = %id, error = %e, "could not report a kernel exit");
                }
            }
        });
    }

    /// The capacity it announces: the configured (or the machine's) slots, plus the accelerator's slots that the
    /// configuration gives no amount of.
    pub fn capacity(&self) -> ResourceSlots {
        let mut slots = self.config.capacity.clone().unwrap_or_else(host_capacity);
        for (name, amount) in self.devices.capacity().iter() {
            if slots.get(name).is_zero() {
                slots.set(name, amount);
            }
        }
        slots
    }

    /// The heartbeat this agent sends.
    pub async fn heartbeat(&self, addr: &str) -> Result<AgentHeartbeat> {
        Ok(AgentHeartbeat {
            id: self.config.id.clone(),
            addr: addr.to_owned(),
            scaling_group: self.config.scaling_group.clone(),
            architecture: std::env::consts::ARCH.to_owned(),
            available_slots: self.capacity(),
            images: self.runtime.images().await?,
            runtime: self.runtime.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// Puts each kernel's resource usage into the live state as `kernel.<id>.stats` (JSON of
    /// [`backend_core::runtime::KernelStats`]) until `ttl`; runtimes without stats are skipped.
    pub async fn publish_stats(&self, ttl: Duration) {
        for handle in self.kernels.handles() {
            let id = handle.kernel_id;
            match self.runtime.stats(id).await {
                Ok(stats) => {
                    let value = serde_json::to_value(&stats).unwrap_or_default();
                    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(10));
                    if let Err(e) =
                        self.live.set_stat(&format!("kernel.{id}.stats"), value, ttl, chrono::Utc::now()).await
                    {
                        tracing::debug!(kernel = %id, error = %e, "could not record kernel stats");
                    }
                }
                Err(backend_core::Error::Unsupported { .. }) => return,
                Err(e) => tracing::debug!(kernel = %id, error = %e, "no stats for a kernel"),
            }
        }
    }

    /// Publishes one heartbeat now.
    pub async fn send_heartbeat(&self, addr: &str) -> Result<()> {
        let hb = self.heartbeat(addr).await?;
        self.live.touch_agent(&self.config.id, chrono::Utc::now()).await?;
        self.bus.publish(Event::AgentHeartbeat(hb)).await
    }
}

/// Serves the agent on `listener` until `shutdown` resolves: re-attaches to surviving kernels, sends heartbeats, and
/// answers RPC calls. Kernels keep running after shutdown (the next start re-attaches to them).
pub async fn run(
    agent: Arc<Agent>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let local = listener.local_addr().map_err(|e| Error::io("reading the listener address", e))?;
    let addr = agent.config.advertised_addr.clone().unwrap_or_else(|| format!("http://{local}"));
    let reattached = agent.reattach().await?;
    if reattached > 0 {
        tracing::info!(count = reattached, "re-attached to running kernels");
    }
    agent.send_heartbeat(&addr).await?;
    let beat = {
        let agent = agent.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(agent.config.heartbeat_interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = agent.send_heartbeat(&addr).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                agent.publish_stats(agent.config.heartbeat_interval * 3).await;
            }
        })
    };
    tracing::info!(agent = %agent.config.id, %addr, "agent serving");
    warp::serve(rpc::routes(agent)).incoming(listener).graceful(shutdown).run().await;
    beat.abort();
    Ok(())
}
