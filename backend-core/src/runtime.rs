//! Container runtimes: how an agent turns a kernel spec into a running kernel whose runner it can talk to.
//!
//! The agent owns the runner protocol ([`crate::runner`]); a runtime only starts, finds, stops and inspects
//! kernels, and tells the agent where each kernel's runner listens.

#[cfg(feature = "docker")]
pub mod docker;

use crate::error::{Error, Result};
use crate::ids::{AccessKey, KernelId, SessionId};
use crate::model::ImageInfo;
use crate::slots::ResourceSlots;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The user (uid, and gid) code runs as in a kernel container, as the kernel images create it; folders' files
/// belong to it so sessions can write into the folders they mount.
pub const KERNEL_UID: u32 = 1000;

/// Everything a runtime needs to start one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSpec {
    /// The kernel.
    pub kernel_id: KernelId,
    /// Its session.
    pub session_id: SessionId,
    /// The owning keypair.
    pub owner: AccessKey,
    /// Image reference (resolved against the runtime's images).
    pub image: String,
    /// Slots granted.
    pub slots: ResourceSlots,
    /// Extra environment (the runtime adds the `BACKENDAI_*` variables).
    pub environ: BTreeMap<String, String>,
    /// `main` or `sub`.
    pub cluster_role: String,
    /// Index within the role.
    pub cluster_idx: u32,
    /// Host name inside the cluster.
    pub cluster_hostname: String,
    /// Number of kernels in the session.
    pub cluster_size: u32,
    /// Virtual folders to mount.
    #[serde(default)]
    pub mounts: Vec<crate::vfolder::VFolderMount>,
    /// A shell script to run once before the kernel takes code (its output goes to the kernel's log).
    #[serde(default)]
    pub bootstrap_script: Option<String>,
    /// The size of the kernel's shared memory (`/dev/shm`) in bytes (`config.resource_opts.shmem`); `None`: the
    /// runtime's default (Docker's 64 MiB). Runtimes that cannot size `/dev/shm` say so in their docs.
    #[serde(default)]
    pub shmem: Option<u64>,
    /// Extra container-runtime arguments from the agent's accelerator plugin
    /// ([`crate::accelerator::AcceleratorPlugin::container_args`], e.g. `--gpus "device=0,1"`). The manager sends
    /// none; the agent fills them in after allocating devices. The Docker runtime turns `--gpus` into a device
    /// request; the process runtime has no container and ignores them (the kernel sees its devices through
    /// `CUDA_VISIBLE_DEVICES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_args: Vec<String>,
}

impl KernelSpec {
    /// The main kernel of a one-kernel session of `owner` with fresh ids: no extra environment, mounts, bootstrap
    /// script, shared-memory size or container arguments.
    pub fn main(owner: impl Into<AccessKey>, image: impl Into<String>, slots: ResourceSlots) -> Self {
        Self {
            kernel_id: KernelId::new(),
            session_id: SessionId::new(),
            owner: owner.into(),
            image: image.into(),
            slots,
            environ: BTreeMap::new(),
            cluster_role: "main".into(),
            cluster_idx: 1,
            cluster_hostname: "main1".into(),
            cluster_size: 1,
            mounts: Vec::new(),
            bootstrap_script: None,
            shmem: None,
            container_args: Vec::new(),
        }
    }

    /// The kernel's environment: the request's variables, then the `BACKENDAI_*` ones every kernel gets (cluster
    /// hosts, role, rank, ...), with `HOME` at `home`.
    pub fn environ(&self, home: &str) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.environ.clone();
        let hosts: Vec<String> =
            std::iter::once("main1".to_owned()).chain((1..self.cluster_size).map(|i| format!("sub{i}"))).collect();
        let local_rank = if self.cluster_role == "main" { 0 } else { self.cluster_idx };
        for (k, v) in [
            ("BACKENDAI_KERNEL_ID", self.kernel_id.to_string()),
            ("BACKENDAI_SESSION_ID", self.session_id.to_string()),
            ("BACKENDAI_KERNEL_IMAGE", self.image.clone()),
            ("BACKENDAI_ACCESS_KEY", self.owner.to_string()),
            ("BACKENDAI_CLUSTER_ROLE", self.cluster_role.clone()),
            ("BACKENDAI_CLUSTER_IDX", self.cluster_idx.to_string()),
            ("BACKENDAI_CLUSTER_HOST", self.cluster_hostname.clone()),
            ("BACKENDAI_CLUSTER_HOSTS", hosts.join(",")),
            ("BACKENDAI_CLUSTER_SIZE", self.cluster_size.to_string()),
            ("BACKENDAI_CLUSTER_REPLICAS", format!("main:1,sub:{}", self.cluster_size.saturating_sub(1))),
            ("BACKENDAI_CLUSTER_LOCAL_RANK", local_rank.to_string()),
            ("HOME", home.to_owned()),
            ("LANG", "C.UTF-8".to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
        env
    }
}

/// Where a kernel's runner listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerEndpoint {
    /// A Unix socket path on the agent's host.
    Unix(PathBuf),
}

/// A kernel the runtime knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelHandle {
    /// The kernel.
    pub kernel_id: KernelId,
    /// Its session.
    pub session_id: SessionId,
    /// The runtime's handle (container id; process id for the process runtime).
    pub container_id: String,
    /// Where its runner listens.
    pub endpoint: RunnerEndpoint,
    /// The runner's language.
    pub lang: String,
}

/// How a kernel ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelExit {
    /// Exit code of its main process, when known.
    pub exit_code: Option<i32>,
    /// Why it ended (`user-requested`, `self-terminated`, `oom-killed`, `killed`).
    pub reason: String,
}

/// A kernel's resource usage at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStats {
    /// CPU time used, in nanoseconds.
    pub cpu_used_ns: u64,
    /// Memory in use, in bytes.
    pub mem_bytes: u64,
    /// The memory limit, in bytes.
    pub mem_limit: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// Runs kernels. Object-safe: agents hold an `Arc<dyn ContainerRuntime>`.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// The runtime's name (`process`, `docker`).
    fn name(&self) -> &'static str;
    /// The images this runtime can start.
    async fn images(&self) -> Result<Vec<ImageInfo>>;
    /// Creates and starts a kernel; returns once its runner accepts connections.
    async fn create_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle>;
    /// Stops a kernel (gracefully unless `forced`) and removes what it left. Destroying a kernel that is already
    /// gone answers its recorded exit, or `KernelNotFound` when the runtime never knew it.
    async fn destroy_kernel(&self, kernel_id: KernelId, forced: bool) -> Result<KernelExit>;
    /// Replaces a kernel's processes with fresh ones from the same spec (a session restart). The default destroys
    /// and re-creates it; runtimes that can keep the kernel's scratch directory do so.
    async fn restart_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle> {
        self.destroy_kernel(spec.kernel_id, true).await?;
        self.create_kernel(spec).await
    }
    /// Kernels that exist now, including those started before this process (for re-attachment after a restart).
    async fn list_kernels(&self) -> Result<Vec<KernelHandle>>;
    /// Waits until a kernel ends by itself and says how. Returns at once for a kernel that has already ended.
    async fn wait_kernel(&self, kernel_id: KernelId) -> Result<KernelExit>;
    /// The kernel's resource usage now. Optional.
    async fn stats(&self, kernel_id: KernelId) -> Result<KernelStats> {
        let _ = kernel_id;
        Err(Error::Unsupported { what: format!("stats on the {} runtime", self.name()) })
    }
    /// The kernel's output log. Optional.
    async fn logs(&self, kernel_id: KernelId) -> Result<String> {
        let _ = kernel_id;
        Err(Error::Unsupported { what: format!("logs on the {} runtime", self.name()) })
    }
    /// The host directory holding the kernel's work directory (`/home/work` inside it), for file transfers.
    /// Optional.
    fn work_dir(&self, kernel_id: KernelId) -> Result<PathBuf> {
        let _ = kernel_id;
        Err(Error::Unsupported { what: format!("file transfers on the {} runtime", self.name()) })
    }
}

/// Finds the image a reference names among `images`: by name or alias, or by the name without its tag
/// (`python` finds `python:3.11`) when exactly one image has that base.
pub fn resolve_image<'a>(images: &'a [ImageInfo], reference: &str) -> Option<&'a ImageInfo> {
    if let Some(found) = images.iter().find(|i| i.answers_to(reference)) {
        return Some(found);
    }
    let base = |name: &str| name.rsplit('/').next().unwrap_or(name).split(':').next().unwrap_or(name).to_owned();
    let wanted = base(reference);
    let mut matching = images.iter().filter(|i| base(&i.name) == wanted);
    let first = matching.next()?;
    (reference == wanted && matching.next().is_none()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, aliases: &[&str]) -> ImageInfo {
        ImageInfo {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            lang: "python".into(),
            min_slots: ResourceSlots::new(),
        }
    }

    #[test]
    fn resolves_names_aliases_and_bases() {
        let images = vec![image("python:3.11", &["python3"]), image("shell:latest", &[])];
        assert_eq!(resolve_image(&images, "python:3.11").unwrap().name, "python:3.11");
        assert_eq!(resolve_image(&images, "python3").unwrap().name, "python:3.11");
        assert_eq!(resolve_image(&images, "python").unwrap().name, "python:3.11");
        assert!(resolve_image(&images, "python:2.7").is_none());
        assert!(resolve_image(&images, "ruby").is_none());
    }
}
