//! Standalone mode: a manager and an agent in one process on the embedded defaults (SQLite in a data directory,
//! in-process events and live state, in-memory configuration, the process runtime or Docker). Session records survive
//! a restart; kernels that died with the process are marked terminated with a reason when it starts again, and
//! kernels that survived it (Docker containers, or any kernel with [`StandaloneConfig::keep_kernels`]) are
//! re-attached. Virtual folders live on the volume `local`, the directory `vfolders` of the data directory.

use crate::{Manager, ManagerConfig};
use anyhow::Context;
use backend_agent::runtime::{AgentRuntime, RuntimeConfig, RuntimeKind};
use backend_agent::{Agent, AgentConfig};
use backend_core::auth::generate_keypair;
use backend_core::config::{ConfigStore, LocalConfigStore};
use backend_core::events::{EventBus, LocalEventBus};
use backend_core::live::{LiveState, LocalLiveState};
use backend_core::model::{AgentStatus, KeyPair, Role};
use backend_core::runtime::ContainerRuntime;
use backend_core::storage::LocalStorage;
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::MetadataStore;
use backend_core::ResourceSlots;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Settings of a standalone stack.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// Where the database, kernels and credentials live.
    pub data_dir: PathBuf,
    /// The public API's address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Manager settings.
    pub manager: ManagerConfig,
    /// Capacity the agent announces (default: the machine's).
    pub capacity: Option<ResourceSlots>,
    /// The runtime kernels run on (default: process).
    pub runtime: RuntimeKind,
    /// Leave kernels running at [`Standalone::shutdown`] (and let process kernels outlive the process), so the next
    /// start re-attaches to them instead of ending them.
    pub keep_kernels: bool,
}

impl StandaloneConfig {
    /// Defaults: API on 127.0.0.1:8081.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            manager: ManagerConfig::default(),
            capacity: None,
            runtime: RuntimeKind::Process,
            keep_kernels: false,
        }
    }
}

/// A running standalone stack.
pub struct Standalone {
    /// `http://host:port` of the public API.
    pub endpoint: String,
    /// The admin keypair.
    pub admin: KeyPair,
    /// The file holding the admin credentials (mode 0600).
    pub credentials_file: PathBuf,
    /// The manager.
    pub manager: Arc<Manager>,
    /// The in-process agent.
    pub agent: Arc<Agent>,
    runtime: AgentRuntime,
    keep_kernels: bool,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _background: crate::Background,
}

/// The credentials file's name inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.env";

async fn admin_keypair(store: &dyn MetadataStore, file: &Path) -> anyhow::Result<KeyPair> {
    backend_core::store::fixtures::ensure_user(store, "admin@lablup.com", Role::Superadmin).await?;
    if let Ok(text) = tokio::fs::read_to_string(file).await {
        let value = |key: &str| {
            text.lines().find_map(|l| {
                l.trim().trim_start_matches("export ").strip_prefix(key)?.strip_prefix('=').map(str::to_owned)
            })
        };
        if let Some(ak) = value("BACKEND_ACCESS_KEY") {
            if let Some(kp) = store.keypair(&ak.as_str().into()).await? {
                return Ok(kp);
            }
        }
    }
    let (access_key, secret_key) = generate_keypair();
    let kp = KeyPair {
        access_key: access_key.into(),
        secret_key,
        user_id: "admin@lablup.com".into(),
        role: Role::Superadmin,
        is_active: true,
        rate_limit: 30_000,
        resource_policy: "default".into(),
        created_at: chrono::Utc::now(),
    };
    store.insert_keypair(&kp).await?;
    Ok(kp)
}

/// The transfer token secret's file inside the data directory (kept so tokens survive a restart).
pub const TRANSFER_SECRET_FILE: &str = "transfer.secret";

/// Reads the transfer secret kept in `file`, creating a random one (mode 0600) the first time.
fn transfer_secret(file: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(text) = std::fs::read_to_string(file) {
        if !text.trim().is_empty() {
            return Ok(text.trim().as_bytes().to_vec());
        }
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(secret.into_bytes())
}

fn write_credentials(file: &Path, endpoint: &str, kp: &KeyPair) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = format!(
        "# Backend.AI standalone admin credentials: `source` this file, then use `bai` or the official client.\n\
         export BACKEND_ENDPOINT={endpoint}\nexport BACKEND_ENDPOINT_TYPE=api\n\
         export BACKEND_ACCESS_KEY={}\nexport BACKEND_SECRET_KEY={}\n",
        kp.access_key, kp.secret_key
    );
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

impl Standalone {
    /// Starts the stack and returns once the agent has registered, so sessions can be created at once.
    pub async fn start(config: StandaloneConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
        // Kernels run in directories of their own, so every path handed to them must be absolute.
        let data = &std::fs::canonicalize(&config.data_dir)
            .with_context(|| format!("resolving {}", config.data_dir.display()))?;
        let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::open(&data.join("metadata.db"))?);
        backend_core::store::fixtures::ensure_defaults(store.as_ref()).await?;
        let bus: Arc<dyn EventBus> = Arc::new(LocalEventBus::new());
        let live: Arc<dyn LiveState> = Arc::new(LocalLiveState::new());
        let shared: Arc<dyn ConfigStore> = Arc::new(LocalConfigStore::new());
        let token = uuid::Uuid::new_v4().simple().to_string();
        shared.put("config/agent-token", &token).await?;

        let mut manager_config = config.manager.clone();
        manager_config.transfer.secret = transfer_secret(&data.join(TRANSFER_SECRET_FILE))?;
        let storage = crate::owned_by_kernels(LocalStorage::new([("local".to_owned(), data.join("vfolders"))])?);
        let manager = Manager::with_storage(
            manager_config,
            store.clone(),
            bus.clone(),
            live.clone(),
            shared,
            &token,
            Arc::new(storage),
        );
        let background = crate::start_background(&manager).await?;
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let mut runtime_config = RuntimeConfig::new(config.runtime, data.join("kernels"));
        if let RuntimeConfig::Process(process) = &mut runtime_config {
            process.die_with_agent = !config.keep_kernels;
        }
        let runtime = AgentRuntime::build(runtime_config)
            .await
            .with_context(|| format!("starting the {} runtime", config.runtime))?;
        let mut agent_config = AgentConfig::new("standalone-agent", token);
        agent_config.capacity = config.capacity.clone();
        let agent = Agent::new(agent_config, runtime.as_dyn(), bus, live);
        // The agent keeps its port across restarts when it can: kernel records of sessions that survive a restart
        // (re-attached kernels) name the agent by that address.
        let port_file = data.join("agent.port");
        let old_port = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok());
        let agent_listener = match old_port {
            Some(port) => match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => l,
                Err(_) => TcpListener::bind("127.0.0.1:0").await?,
            },
            None => TcpListener::bind("127.0.0.1:0").await?,
        };
        let agent_addr = format!("http://{}", agent_listener.local_addr()?);
        std::fs::write(&port_file, agent_listener.local_addr()?.port().to_string())
            .with_context(|| format!("writing {}", port_file.display()))?;
        // The last run's record may name the same address: mark it lost so the wait below sees this run's
        // registration (which comes after re-attachment).
        if store.agent(&agent.config.id).await?.is_some() {
            store.set_agent_status(&agent.config.id, AgentStatus::Lost, chrono::Utc::now()).await?;
        }
        let api_listener = TcpListener::bind(config.bind).await.with_context(|| format!("binding {}", config.bind))?;
        let endpoint = format!("http://{}", api_listener.local_addr()?);

        let tasks = vec![
            tokio::spawn({
                let agent = agent.clone();
                let stopped = until_stopped(stopped.clone());
                async move {
                    if let Err(e) = backend_agent::run(agent, agent_listener, stopped).await {
                        tracing::error!(error = %e, "agent stopped");
                    }
                }
            }),
            tokio::spawn(crate::serve(manager.clone(), api_listener, until_stopped(stopped))),
        ];

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // The last record was marked lost above, so this sees this run's registration, not a stale record.
            let registered = store
                .agent(&agent.config.id)
                .await?
                .is_some_and(|a| a.status == AgentStatus::Alive && a.addr == agent_addr);
            if registered {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the in-process agent did not register");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // The agent has re-attached what survived the last run; what it did not take is an orphan.
        let known: std::collections::HashSet<_> = agent.kernels.handles().iter().map(|h| h.kernel_id).collect();
        match runtime.sweep_orphans(&known, Duration::from_secs(60)).await {
            Ok(removed) if !removed.is_empty() => tracing::info!(count = removed.len(), "removed orphan kernels"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not sweep orphan kernels"),
        }

        let credentials_file = data.join(CREDENTIALS_FILE);
        let admin = admin_keypair(store.as_ref(), &credentials_file).await?;
        write_credentials(&credentials_file, &endpoint, &admin)?;
        let keep_kernels = config.keep_kernels;
        Ok(Self {
            endpoint,
            admin,
            credentials_file,
            manager,
            agent,
            runtime,
            keep_kernels,
            stop,
            tasks,
            _background: background,
        })
    }

    /// Stops the servers and kills the kernels without recording their end, as a stopped process would: the next
    /// start finds the records and marks those kernels terminated. With [`StandaloneConfig::keep_kernels`] the
    /// kernels stay and the next start re-attaches to them.
    pub async fn shutdown(self) {
        let Self { runtime, keep_kernels, stop, tasks, _background: background, .. } = self;
        let _ = stop.send(true);
        // The registry goes first, so the kernels' deaths below are not recorded, as with a killed process.
        drop(background);
        if !keep_kernels {
            let kernels: Arc<dyn ContainerRuntime> = runtime.as_dyn();
            for handle in kernels.list_kernels().await.unwrap_or_default() {
                let _ = kernels.destroy_kernel(handle.kernel_id, true).await;
            }
        }
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        runtime.shutdown().await;
    }
}
