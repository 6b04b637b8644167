//! A manager in a cluster: metadata in PostgreSQL, live state and events in Redis, shared configuration in etcd.
//!
//! Settings are layered ([`backend_core::settings`]): built-in [`DEFAULTS`] < `manager.toml` < `BACKENDAI_*`
//! environment variables < `--set section.key=value`. What the local settings leave out — the database URL, the
//! Redis URL, the agent token — is read from etcd under the cluster's namespace ([`backend_core::settings::keys`]),
//! where `backend-manager config load` put it, so every manager and agent shares one copy. The vfolder volumes are
//! the config store's `volumes/<name>/path` keys.

use crate::{Manager, ManagerConfig, TransferConfig};
use anyhow::Context;
use backend_core::config::etcd::EtcdConfigStore;
use backend_core::config::ConfigStore;
use backend_core::events::redis::RedisEventBus;
use backend_core::live::redis::RedisLiveState;
use backend_core::settings::{keys, local_or_shared, EtcdSettings, Layers, RedisSettings};
use backend_core::storage::LocalStorage;
use backend_core::store::postgres::PostgresStore;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The built-in defaults of `manager.toml`.
pub const DEFAULTS: &str = r#"
[manager]
bind = "0.0.0.0:8081"
heartbeat_timeout_secs = 30.0
schedule_interval_secs = 2.0
max_body_bytes = 8388608

[etcd]
endpoints = ["http://127.0.0.1:2379"]
namespace = "local"

[db]
pool_size = 16

[redis]
"#;

/// A clustered manager's settings (`manager.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSettings {
    /// `[manager]`: this process.
    pub manager: ManagerSection,
    /// `[etcd]`: where the shared configuration is.
    pub etcd: EtcdSettings,
    /// `[db]`: PostgreSQL.
    pub db: DbSection,
    /// `[redis]`: Redis.
    pub redis: RedisSettings,
}

/// The `[manager]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSection {
    /// This manager's id (default: a random one); the scheduler lease names its holder by it.
    pub id: Option<String>,
    /// Address of the public API.
    pub bind: SocketAddr,
    /// PEM certificate chain: with `tls_key`, the API is served over HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// An agent not heard from for this long is LOST.
    pub heartbeat_timeout_secs: f64,
    /// Time between scheduler passes when nothing wakes it.
    pub schedule_interval_secs: f64,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// The HMAC secret of vfolder transfer tokens; default: etcd's `config/transfer-secret`, else one derived from
    /// the agent token (so every manager and storage proxy of the cluster agrees without configuration).
    pub transfer_secret: Option<String>,
    /// The public base URL of a separate transfer service (`backend-manager storage-proxy`), e.g.
    /// `https://storage.example.com/transfer`; default: this manager serves transfers itself.
    pub transfer_url: Option<String>,
}

/// The `[db]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSection {
    /// PostgreSQL URL; default: etcd's `config/db/url`.
    pub url: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl ManagerSettings {
    /// Loads the layers: defaults, `file`, the process environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let layers =
            Layers { defaults: DEFAULTS, file, env_prefix: "BACKENDAI", env: std::env::vars().collect(), overrides };
        Ok(layers.load()?)
    }

    /// The manager's own settings.
    pub fn manager_config(&self) -> anyhow::Result<ManagerConfig> {
        let secs = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value).with_context(|| format!("manager.{name} must be a positive number"))
        };
        let mut config = ManagerConfig {
            heartbeat_timeout: secs("heartbeat_timeout_secs", self.manager.heartbeat_timeout_secs)?,
            schedule_interval: secs("schedule_interval_secs", self.manager.schedule_interval_secs)?,
            max_body_bytes: self.manager.max_body_bytes,
            ..ManagerConfig::default()
        };
        if let Some(id) = &self.manager.id {
            config.id = id.clone();
        }
        Ok(config)
    }

    /// The shared configuration store.
    pub async fn connect_etcd(&self) -> anyhow::Result<EtcdConfigStore> {
        EtcdConfigStore::connect(&self.etcd.endpoints, &self.etcd.namespace)
            .await
            .with_context(|| format!("connecting to etcd at {}", self.etcd.endpoints.join(",")))
    }

    /// The metadata store (not migrated: see `backend-manager schema migrate`).
    pub async fn connect_db(&self, shared: &dyn ConfigStore) -> anyhow::Result<PostgresStore> {
        let url = local_or_shared(self.db.url.as_deref(), shared, keys::DB_URL, "db.url").await?;
        PostgresStore::connect(&url, self.db.pool_size).await.context("connecting to PostgreSQL")
    }
}

/// The shared key of the transfer token secret.
pub const TRANSFER_SECRET_KEY: &str = "config/transfer-secret";

/// The storage volumes of the cluster: every `volumes/<name>/path` of the config store (the mount point, the same
/// on every machine).
pub async fn volumes(shared: &dyn ConfigStore) -> anyhow::Result<LocalStorage> {
    let found: Vec<(String, PathBuf)> = shared
        .get_prefix("volumes/")
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("volumes/")?.strip_suffix("/path")?;
            (!name.contains('/')).then(|| (name.to_owned(), PathBuf::from(value)))
        })
        .collect();
    Ok(crate::owned_by_kernels(LocalStorage::new(found).context("opening the storage volumes")?))
}

impl ManagerSettings {
    /// The transfer settings: the secret from these settings, else from the config store, else derived from the
    /// agent token.
    pub async fn transfer_config(&self, shared: &dyn ConfigStore) -> anyhow::Result<TransferConfig> {
        let secret = match (&self.manager.transfer_secret, shared.get(TRANSFER_SECRET_KEY).await?) {
            (Some(local), _) => local.clone(),
            (None, Some(shared_secret)) => shared_secret,
            (None, None) => {
                let token = local_or_shared(None, shared, keys::AGENT_TOKEN, "agent token").await?;
                format!("transfer-secret-of:{token}")
            }
        };
        Ok(TransferConfig {
            secret: secret.into_bytes(),
            public_url: self.manager.transfer_url.clone(),
            https: self.manager.tls_cert.is_some(),
        })
    }
}

/// Serves only the transfer endpoints (`backend-manager storage-proxy`) until `shutdown` resolves: the volumes and
/// the secret come from the same settings and config store as `serve`; no database is touched.
pub async fn serve_storage_proxy(
    settings: &ManagerSettings,
    bind: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shared = settings.connect_etcd().await?;
    let transfers = Arc::new(crate::api::transfer::Transfers {
        storage: Arc::new(volumes(&shared).await?),
        secret: settings.transfer_config(&shared).await?.secret,
    });
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    crate::api::transfer::serve(transfers, listener, shutdown).await;
    Ok(())
}

/// Connects to the three services and composes a manager. Fails when the schema has pending migrations.
pub async fn connect(settings: &ManagerSettings) -> anyhow::Result<Arc<Manager>> {
    let shared = settings.connect_etcd().await?;
    let store = settings.connect_db(&shared).await?;
    let pending: Vec<String> =
        store.migration_status().await?.into_iter().filter(|(_, applied)| !applied).map(|(v, _)| v).collect();
    anyhow::ensure!(
        pending.is_empty(),
        "the database schema has pending migrations ({}): run `backend-manager schema migrate` first",
        pending.join(", ")
    );
    let redis = local_or_shared(settings.redis.url.as_deref(), &shared, keys::REDIS_URL, "redis.url").await?;
    let namespace = &settings.etcd.namespace;
    let bus = RedisEventBus::connect(&redis, namespace).await.context("connecting to Redis (events)")?;
    let live = RedisLiveState::connect(&redis, namespace).await.context("connecting to Redis (live state)")?;
    let token = local_or_shared(None, &shared, keys::AGENT_TOKEN, "agent token").await?;
    let mut config = settings.manager_config()?;
    config.transfer = settings.transfer_config(&shared).await?;
    let storage = volumes(&shared).await?;
    Ok(Manager::with_storage(
        config,
        Arc::new(store),
        Arc::new(bus),
        Arc::new(live),
        Arc::new(shared),
        &token,
        Arc::new(storage),
    ))
}

/// Runs a clustered manager until `shutdown` resolves: the API (over HTTPS when a certificate is configured) and
/// the background work (registry, scheduler under the shared lease, liveness).
pub async fn serve(
    settings: &ManagerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let manager = connect(settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.manager.bind)
        .await
        .with_context(|| format!("binding {}", settings.manager.bind))?;
    let tls = match (&settings.manager.tls_cert, &settings.manager.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("manager.tls_cert and manager.tls_key go together"),
    };
    let _background = crate::start_background(&manager).await?;
    tracing::info!(id = %manager.config.id, addr = %listener.local_addr()?, tls = tls.is_some(), "manager serving");
    match tls {
        Some(acceptor) => crate::tls::serve(crate::api::routes(manager), listener, acceptor, shutdown).await,
        None => crate::serve(manager, listener, shutdown).await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_settings_file_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/manager.toml");
        let layers = Layers { defaults: DEFAULTS, file: Some(&file), env_prefix: "BACKENDAI", ..Default::default() };
        let settings: ManagerSettings = layers.load().unwrap();
        assert_eq!(settings.etcd.namespace, "local");
        assert_eq!(settings.db.pool_size, 16);
        assert!(settings.db.url.is_none(), "the sample leaves the database URL to etcd");
        assert_eq!(settings.manager_config().unwrap().heartbeat_timeout, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn volumes_and_transfer_secret_come_from_the_config_store() {
        use backend_core::config::LocalConfigStore;
        use backend_core::storage::StorageBackend;
        let dir = tempfile::tempdir().unwrap();
        let shared = LocalConfigStore::new();
        shared.put("volumes/local/path", &dir.path().join("v").display().to_string()).await.unwrap();
        shared.put("volumes/local/backend", "vfs").await.unwrap();
        shared.put(keys::AGENT_TOKEN, "tok").await.unwrap();
        assert_eq!(volumes(&shared).await.unwrap().hosts(), ["local"]);
        assert!(dir.path().join("v").is_dir(), "the volume's directory is created");

        let layers = Layers { defaults: DEFAULTS, env_prefix: "BACKENDAI", ..Default::default() };
        let mut settings: ManagerSettings = layers.load().unwrap();
        let derived = settings.transfer_config(&shared).await.unwrap();
        assert_eq!(derived.secret, settings.transfer_config(&shared).await.unwrap().secret, "managers agree");
        shared.put(TRANSFER_SECRET_KEY, "shared-secret").await.unwrap();
        assert_eq!(settings.transfer_config(&shared).await.unwrap().secret, b"shared-secret");
        settings.manager.transfer_secret = Some("local-secret".into());
        assert_eq!(settings.transfer_config(&shared).await.unwrap().secret, b"local-secret");
    }
}
