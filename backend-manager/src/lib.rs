//! The Backend.AI manager: the public REST API, keypair auth, the service layer (sessions, virtual folders,
//! administration), the scheduler loop and the agent registry.
//!
//! A [`Manager`] is composed from the core traits ([`MetadataStore`], [`EventBus`], [`LiveState`], [`ConfigStore`])
//! and scheduling policies; [`run`] serves it on a listener the caller owns until the caller's shutdown resolves.
//! [`standalone`] composes the embedded defaults with an in-process agent.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let dir = std::path::PathBuf::from("./data");
//! let stack = backend_manager::standalone::Standalone::start(backend_manager::standalone::StandaloneConfig::new(dir)).await?;
//! println!("API at {} with credentials in {}", stack.endpoint, stack.credentials_file.display());
//! stack.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod cli;
pub mod cluster;
pub mod registry;
pub mod scheduler;
pub mod service;
pub mod standalone;
pub mod tls;

use backend_agent::rpc::AgentClient;
use backend_core::config::ConfigStore;
use backend_core::error::Result;
use backend_core::events::EventBus;
use backend_core::live::LiveState;
use backend_core::scheduler::{AgentSelector, Dispersed, Fifo, Sequencer};
use backend_core::storage::{LocalStorage, StorageBackend};
use backend_core::store::MetadataStore;
use backend_core::ResourceSlots;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The manager's settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// This manager's id (for the scheduler lease).
    pub id: String,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: u64,
    /// Slots a kernel gets for those its request leaves out.
    pub default_resources: ResourceSlots,
    /// Largest `clusterSize`.
    pub max_cluster_size: u32,
    /// Time between scheduler passes when nothing wakes it.
    pub schedule_interval: Duration,
    /// An agent not heard from for this long is LOST.
    pub heartbeat_timeout: Duration,
    /// The transfer endpoints (vfolder uploads and downloads).
    pub transfer: TransferConfig,
}

/// Settings of the token-authorised transfer endpoints ([`api::transfer`]).
#[derive(Clone)]
pub struct TransferConfig {
    /// The HMAC secret of transfer tokens, shared with a separate storage proxy when there is one.
    pub secret: Vec<u8>,
    /// The public base URL of the transfer endpoints when they are served apart (`backend-manager storage-proxy`);
    /// `None`: this manager serves them under [`api::transfer::PREFIX`] of the address the client used.
    pub public_url: Option<String>,
    /// True when this manager terminates TLS itself, so URLs to its own transfer endpoints are `https` (a proxy in
    /// front says so with `X-Forwarded-Proto` instead).
    pub https: bool,
}

impl Default for TransferConfig {
    /// A random secret (tokens die with the process) and no separate transfer service.
    fn default() -> Self {
        Self { secret: uuid::Uuid::new_v4().as_bytes().repeat(2), public_url: None, https: false }
    }
}

impl std::fmt::Debug for TransferConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("TransferConfig").field("secret", &"<redacted>").field("public_url", &self.public_url).finish()
    }
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            id: format!("manager-{}", uuid::Uuid::new_v4().simple()),
            max_body_bytes: 8 << 20,
            default_resources: ResourceSlots::from([("cpu", 1.into()), ("mem", (256u64 << 20).into())]),
            max_cluster_size: 16,
            schedule_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(30),
            transfer: TransferConfig::default(),
        }
    }
}

/// The manager's shared state: configuration, the plug-point implementations and the scheduler's wake-up signal. Its
/// methods are the service layer ([`service`]), grouped by service module.
pub struct Manager {
    /// Settings.
    pub config: ManagerConfig,
    /// Durable metadata.
    pub store: Arc<dyn MetadataStore>,
    /// Events between managers and agents.
    pub bus: Arc<dyn EventBus>,
    /// Liveness and rate limits.
    pub live: Arc<dyn LiveState>,
    /// Shared configuration.
    pub shared_config: Arc<dyn ConfigStore>,
    /// Calls agents.
    pub agents: AgentClient,
    /// Orders pending sessions.
    pub sequencer: Box<dyn Sequencer>,
    /// Chooses agents.
    pub selector: Box<dyn AgentSelector>,
    /// The selectors scaling groups name in `agent_selector`, by scaling group, kept so that a round-robin one
    /// rotates across passes.
    pub(crate) group_selectors: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn AgentSelector>>>,
    /// The volumes of virtual folders.
    pub storage: Arc<dyn StorageBackend>,
    /// Wakes the scheduler loop.
    pub wake_scheduler: Notify,
    /// When this manager started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl Manager {
    /// A manager with the FIFO sequencer and the dispersed selector, and no vfolder volumes.
    pub fn new(
        config: ManagerConfig,
        store: Arc<dyn MetadataStore>,
        bus: Arc<dyn EventBus>,
        live: Arc<dyn LiveState>,
        shared_config: Arc<dyn ConfigStore>,
        agent_token: &str,
    ) -> Arc<Self> {
        let no_volumes = Arc::new(LocalStorage::new([]).expect("no volume to create"));
        Self::with_storage(config, store, bus, live, shared_config, agent_token, no_volumes)
    }

    /// A manager with the FIFO sequencer and the dispersed selector, keeping vfolders in `storage`.
    pub fn with_storage(
        config: ManagerConfig,
        store: Arc<dyn MetadataStore>,
        bus: Arc<dyn EventBus>,
        live: Arc<dyn LiveState>,
        shared_config: Arc<dyn ConfigStore>,
        agent_token: &str,
        storage: Arc<dyn StorageBackend>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            bus,
            live,
            shared_config,
            agents: AgentClient::new(agent_token),
            sequencer: Box::new(Fifo),
            selector: Box::new(Dispersed),
            group_selectors: Default::default(),
            storage,
            wake_scheduler: Notify::new(),
            started_at: chrono::Utc::now(),
        })
    }
}

/// The manager's background work: the agent registry, the scheduler loop and the liveness check. Aborted on drop.
pub struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts the background work. The registry has joined its consumer group when this returns, so agent reports
/// published from then on are not missed.
pub async fn start_background(manager: &Arc<Manager>) -> Result<Background> {
    let events = manager.bus.consume(registry::MANAGER_GROUP).await?;
    Ok(Background(vec![
        tokio::spawn(registry::run(manager.clone(), events)),
        tokio::spawn(scheduler::run(manager.clone())),
        tokio::spawn(registry::watch_liveness(manager.clone())),
    ]))
}

/// Serves the public API on `listener` until `shutdown` resolves (without background work).
pub async fn serve(manager: Arc<Manager>, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "manager serving");
    warp::serve(api::routes(manager)).incoming(listener).graceful(shutdown).run().await;
}

/// Serves the manager on `listener` until `shutdown` resolves, with its background work running beside the API.
pub async fn run(
    manager: Arc<Manager>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let _background = start_background(&manager).await?;
    serve(manager, listener, shutdown).await;
    Ok(())
}

/// Gives the files the storage creates to the user kernels run as ([`backend_core::runtime::KERNEL_UID`]), so
/// sessions can write into the folders they mount read-write. Only root may give files away; a manager running as
/// another user keeps them its own, which suits the process runtime (its kernels run as the agent's user).
pub fn owned_by_kernels(storage: LocalStorage) -> LocalStorage {
    use backend_core::runtime::KERNEL_UID;
    if nix::unistd::geteuid().is_root() {
        storage.with_owner(KERNEL_UID, KERNEL_UID)
    } else {
        storage
    }
}
