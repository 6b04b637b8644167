//! An agent in a cluster: events and live state in Redis, shared configuration (the Redis URL, the agent token) in
//! etcd, kernels from the configured runtime.
//!
//! Settings are layered ([`backend_core::settings`]): built-in [`DEFAULTS`] < `agent.toml` < `BACKENDAI_*`
//! environment variables < `--set section.key=value`.

use crate::accelerator::AcceleratorSetting;
use crate::runtime::{AgentRuntime, RuntimeConfig, RuntimeKind};
use crate::{Agent, AgentConfig};
use anyhow::Context;
use backend_core::config::etcd::EtcdConfigStore;
use backend_core::events::redis::RedisEventBus;
use backend_core::live::redis::RedisLiveState;
use backend_core::settings::{keys, local_or_shared, EtcdSettings, Layers, RedisSettings};
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
accelerator = "none"

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
    pub redis: RedisSettings,
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
    /// Accelerator devices: `none`, `mock:N` (N fake CUDA devices) or `nvidia` (the GPUs `nvidia-smi` lists). They
    /// add `cuda.device` (and for the mock `cuda.shares`) to the capacity.
    pub accelerator: AcceleratorSetting,
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
    let redis = local_or_shared(settings.redis.url.as_deref(), &shared, keys::REDIS_URL, "redis.url").await?;
    let token = local_or_shared(None, &shared, keys::AGENT_TOKEN, "agent token").await?;
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
    config.accelerator = s.accelerator;
    // The kernels' devices are recorded beside the kernels' directories, so a restarted agent takes them back.
    config.state_dir = Some(s.data_dir.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_settings_file_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.toml");
        let layers = Layers { defaults: DEFAULTS, file: Some(&file), env_prefix: "BACKENDAI", ..Default::default() };
        let settings: AgentSettings = layers.load().unwrap();
        assert_eq!(settings.agent.runtime, RuntimeKind::Process);
        assert_eq!(settings.agent.scaling_group, "default");
        assert!(settings.redis.url.is_none(), "the sample leaves the Redis URL to etcd");
        assert_eq!(settings.agent.accelerator, AcceleratorSetting::None);
    }

    #[test]
    fn the_accelerator_comes_from_the_file_the_environment_or_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, "[agent]\naccelerator = \"mock:4\"\n").unwrap();
        let load = |env: &[(&str, &str)], overrides: &[String]| -> AgentSettings {
            let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Layers { defaults: DEFAULTS, file: Some(&file), env_prefix: "BACKENDAI", env, overrides }.load().unwrap()
        };
        assert_eq!(load(&[], &[]).agent.accelerator, AcceleratorSetting::Mock(4));
        let env = [("BACKENDAI_AGENT_ACCELERATOR", "nvidia")];
        assert_eq!(load(&env, &[]).agent.accelerator, AcceleratorSetting::Nvidia);
        let cli = ["agent.accelerator=mock:2".to_owned()];
        assert_eq!(load(&env, &cli).agent.accelerator, AcceleratorSetting::Mock(2));
        let bad = Layers {
            defaults: DEFAULTS,
            overrides: &["agent.accelerator=tpu".to_owned()],
            env_prefix: "BACKENDAI",
            ..Default::default()
        };
        assert!(bad.load::<AgentSettings>().is_err());
    }
}
