//! An agent in a cluster: events and live state in Redis, shared configuration (the Redis URL, the agent token) in
//! etcd, kernels from the configured runtime.
//!
//! Settings are layered ([`backend_core::settings`]): built-in [`DEFAULTS`] < `agent.toml` < `BACKENDAI_*`
//! environment variables < `--set section.key=value`.

use crate::runtime::{AgentRuntime, RuntimeConfig, RuntimeKind};
use crate::{Agent, AgentConfig};
use anyhow::Context;
use backend_core::config::etcd::EtcdConfigStore;
use backend_core::config::ConfigStore;
use backend_core::events::redis::RedisEventBus;
use backend_core::live::redis::RedisLiveState;
use backend_core::settings::{keys, EtcdSettings, Layers};
use backend_core::ResourceSlots;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The built-in defaults of `agent.toml`.
pub const DEFAULTS: &str = r#"
[agent]
scaling_group = "default"
bind = "0.0.0.0:6001"
runtime = "process"
data_dir = "/var/lib/backend-ai/agent"
heartbeat_interval_secs = 3.0

[etcd]
endpoints = ["http://127.0.0.1:2379"]
namespace = "local"

[redis]
"#;

/// A clustered agent's settings (`agent.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// `[agent]`: this process.
    pub agent: AgentSection,
    /// `[etcd]`: where the shared configuration is.
    pub etcd: EtcdSettings,
    /// `[redis]`: Redis.
    pub redis: RedisSection,
}

/// The `[agent]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The agent's id, unique in the cluster (default: the host name).
    pub id: Option<String>,
    /// The scaling group it serves.
    pub scaling_group: String,
    /// Address of the RPC API managers call.
    pub bind: SocketAddr,
    /// The RPC URL managers should use (default `http://<bind>`; set it when binding a wildcard address).
    pub advertised_addr: Option<String>,
    /// `process` (kernels as local processes) or `docker` (containers of locally built kernel images).
    pub runtime: RuntimeKind,
    /// Where kernels' directories live.
    pub data_dir: PathBuf,
    /// Time between heartbeats.
    pub heartbeat_interval_secs: f64,
    /// Capacity to announce (`{ cpu = "4", mem = "8g" }`); default: the machine's CPUs and memory.
    pub capacity: Option<BTreeMap<String, String>>,
}

/// The `[redis]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// Redis URL; default: etcd's `config/redis/url`.
    pub url: Option<String>,
}

impl AgentSettings {
    /// Loads the layers: defaults, `file`, the process environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let layers =
            Layers { defaults: DEFAULTS, file, env_prefix: "BACKENDAI", env: std::env::vars().collect(), overrides };
        Ok(layers.load()?)
    }
}

/// The host's name, the default agent id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "agent".into())
}

/// Connects to etcd and Redis, builds the runtime and serves the agent until `shutdown` resolves.
pub async fn serve(
    settings: &AgentSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let s = &settings.agent;
    let shared = EtcdConfigStore::connect(&settings.etcd.endpoints, &settings.etcd.namespace)
        .await
        .with_context(|| format!("connecting to etcd at {}", settings.etcd.endpoints.join(",")))?;
    let redis = match &settings.redis.url {
        Some(url) => url.clone(),
        None => shared
            .get(keys::REDIS_URL)
            .await?
            .with_context(|| format!("no redis.url: set it in agent.toml or put `{}` into etcd", keys::REDIS_URL))?,
    };
    let token = shared
        .get(keys::AGENT_TOKEN)
        .await?
        .with_context(|| format!("no agent token in etcd: put `{}` (backend-manager config put)", keys::AGENT_TOKEN))?;
    let namespace = &settings.etcd.namespace;
    let bus = RedisEventBus::connect(&redis, namespace).await.context("connecting to Redis (events)")?;
    let live = RedisLiveState::connect(&redis, namespace).await.context("connecting to Redis (live state)")?;

    let mut config = AgentConfig::new(s.id.clone().unwrap_or_else(host_name), token);
    config.scaling_group = s.scaling_group.clone();
    config.advertised_addr = s.advertised_addr.clone();
    config.heartbeat_interval = Duration::try_from_secs_f64(s.heartbeat_interval_secs)
        .context("agent.heartbeat_interval_secs must be a positive number")?;
    if let Some(capacity) = &s.capacity {
        let pairs = capacity.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        config.capacity = Some(ResourceSlots::from_pairs(pairs).context("agent.capacity")?);
    }
    let runtime = AgentRuntime::build(RuntimeConfig::new(s.runtime, s.data_dir.join("kernels")))
        .await
        .with_context(|| format!("starting the {} runtime", s.runtime))?;
    // Kernels found running are re-attached by `run`; the managers' reconciliation destroys those no session owns.
    let agent = Agent::new(config, runtime.as_dyn(), Arc::new(bus), Arc::new(live));
    let listener = tokio::net::TcpListener::bind(s.bind).await.with_context(|| format!("binding {}", s.bind))?;
    crate::run(agent, listener, shutdown).await?;
    runtime.shutdown().await;
    Ok(())
}
