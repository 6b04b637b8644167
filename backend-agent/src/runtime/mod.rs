//! Container runtimes of the agent, chosen by name at start: `process` runs each kernel as a local child process (the
//! embedded default), `docker` runs it as a container of a locally built kernel image
//! ([`backend_core::runtime::docker`]).

pub mod cgroup;
pub mod process;

use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use backend_core::runtime::docker::{DockerRuntime, DockerRuntimeConfig};
use backend_core::runtime::ContainerRuntime;
use process::{ProcessRuntime, ProcessRuntimeConfig, RunnerCommand};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The runtimes an agent can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Kernels as local processes.
    #[default]
    Process,
    /// Kernels as Docker containers.
    Docker,
}

impl RuntimeKind {
    /// The runtime's name, as heartbeats report it.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            other => Err(Error::InvalidParams { msg: format!("unknown runtime {other:?} (process or docker)") }),
        }
    }
}

/// A runtime's configuration, by kind.
#[derive(Debug, Clone)]
pub enum RuntimeConfig {
    /// The process runtime.
    Process(ProcessRuntimeConfig),
    /// The Docker runtime.
    Docker(DockerRuntimeConfig),
}

impl RuntimeConfig {
    /// Defaults of `kind` keeping kernels' directories under `root`; both start the runner
    /// [`RunnerCommand::locate`] finds (the Docker runtime bind-mounts it into every container).
    pub fn new(kind: RuntimeKind, root: impl Into<PathBuf>) -> Self {
        match kind {
            RuntimeKind::Process => RuntimeConfig::Process(ProcessRuntimeConfig::new(root)),
            RuntimeKind::Docker => {
                let runner = RunnerCommand::locate();
                let mut config = DockerRuntimeConfig::new(root, runner.program);
                config.runner_args = runner.args;
                RuntimeConfig::Docker(config)
            }
        }
    }

    /// Which runtime this configures.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            RuntimeConfig::Process(_) => RuntimeKind::Process,
            RuntimeConfig::Docker(_) => RuntimeKind::Docker,
        }
    }
}

/// A built runtime: the trait object the agent holds, plus what only one kind offers.
#[derive(Clone)]
pub enum AgentRuntime {
    /// The process runtime.
    Process(Arc<ProcessRuntime>),
    /// The Docker runtime.
    Docker(Arc<DockerRuntime>),
}

impl AgentRuntime {
    /// Builds the runtime `config` describes (the Docker one connects to the local daemon).
    pub async fn build(config: RuntimeConfig) -> Result<Self> {
        Ok(match config {
            RuntimeConfig::Process(c) => AgentRuntime::Process(Arc::new(ProcessRuntime::new(c)?)),
            RuntimeConfig::Docker(c) => AgentRuntime::Docker(Arc::new(DockerRuntime::connect(c).await?)),
        })
    }

    /// The runtime as the agent holds it.
    pub fn as_dyn(&self) -> Arc<dyn ContainerRuntime> {
        match self {
            AgentRuntime::Process(r) => r.clone(),
            AgentRuntime::Docker(r) => r.clone(),
        }
    }

    /// Removes kernels nobody owns (Docker containers and directories not in `known`, older than `grace`); the
    /// process runtime has nothing to sweep. Call after the agent has re-attached.
    pub async fn sweep_orphans(&self, known: &HashSet<KernelId>, grace: Duration) -> Result<Vec<KernelId>> {
        match self {
            AgentRuntime::Process(_) => Ok(vec![]),
            AgentRuntime::Docker(r) => r.sweep_orphans(known, grace).await,
        }
    }

    /// Releases what the runtime keeps between kernels (the Docker runtime's idle owner networks); call when the
    /// agent stops.
    pub async fn shutdown(&self) {
        if let AgentRuntime::Docker(r) = self {
            r.release_idle_networks().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        assert_eq!("docker".parse::<RuntimeKind>().unwrap(), RuntimeKind::Docker);
        assert_eq!("Process".parse::<RuntimeKind>().unwrap(), RuntimeKind::Process);
        assert!("podman".parse::<RuntimeKind>().is_err());
        assert_eq!(RuntimeKind::default().to_string(), "process");
        assert_eq!(RuntimeConfig::new(RuntimeKind::Docker, "/tmp/k").kind(), RuntimeKind::Docker);
    }
}
