//! The Docker runtime: each kernel is a container of a locally built kernel image (see
//! `scripts/build-kernel-images.sh`), driven through bollard.
//!
//! The agent's own `backend-kernel-runner` binary is bind-mounted read-only into every container and is its entrypoint
//! (under `docker-init`, which reaps orphans and forwards signals). The runner listens on a Unix socket in a per-kernel
//! host directory bind-mounted at [`IPC_DIR`], so the agent reaches it through the file system and nothing else can:
//! the container's own network is a bridge network per owner ([`KernelNetwork::PerOwner`]), which has no route to
//! other owners' networks. Host layout under the runtime's root: `<kernel-id>/work/` (the kernel's `/home/work`, owned
//! by uid 1000) and `<kernel-id>/ipc/runner.sock`.
//!
//! Containers carry `ai.backend.rs.*` labels (kernel, session, owner, language, and the runtime's root), which is all
//! [`DockerRuntime::list_kernels`] needs to re-attach after an agent restart, and what
//! [`DockerRuntime::sweep_orphans`] uses to remove containers nobody owns.

use crate::error::{Error, Result};
use crate::ids::{KernelId, SessionId};
use crate::model::ImageInfo;
use crate::runtime::{resolve_image, ContainerRuntime, KernelExit, KernelHandle, KernelSpec, RunnerEndpoint};
use crate::slots::{parse_amount, ResourceSlots};
use async_trait::async_trait;
/// The Docker client library this runtime is built on, for callers that need the raw API.
pub use bollard;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, NetworkCreateRequest, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Label every kernel image carries.
pub const LABEL_KERNELSPEC: &str = "ai.backend.kernelspec";
/// The kernel's id.
pub const LABEL_KERNEL_ID: &str = "ai.backend.rs.kernel-id";
/// The kernel's session.
pub const LABEL_SESSION_ID: &str = "ai.backend.rs.session-id";
/// The owning access key.
pub const LABEL_OWNER: &str = "ai.backend.rs.owner";
/// The runner's language.
pub const LABEL_LANG: &str = "ai.backend.rs.lang";
/// The root directory of the runtime that made the container: runtimes with other roots leave it alone.
pub const LABEL_ROOT: &str = "ai.backend.rs.root";
/// Where the runner binary is mounted inside a kernel.
pub const RUNNER_PATH: &str = "/opt/backend.ai/bin/backend-kernel-runner";
/// Where the directory holding the runner's socket is mounted inside a kernel.
pub const IPC_DIR: &str = "/opt/backend.ai/ipc";
/// The session's bootstrap script, in [`IPC_DIR`].
const BOOTSTRAP_FILE: &str = "bootstrap.sh";
pub use super::KERNEL_UID;

/// The network a kernel container is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelNetwork {
    /// A user-defined bridge network per owner access key (`backendai-owner-<key>`), made on demand: kernels of one
    /// owner reach each other, and Docker's isolation rules keep other owners' networks unreachable.
    #[default]
    PerOwner,
    /// No network at all (loopback only).
    None,
}

/// Configuration of the Docker runtime.
#[derive(Debug, Clone)]
pub struct DockerRuntimeConfig {
    /// Where kernels' host directories go (made absolute at start).
    pub root: PathBuf,
    /// The host's kernel runner binary, bind-mounted read-only into every kernel. It must run on the images' libc
    /// (the images are built from the host's own Debian suite).
    pub runner: PathBuf,
    /// Arguments placed before the runner's own (`__kernel-runner` for a binary that dispatches to the runner).
    pub runner_args: Vec<String>,
    /// The kernels' network.
    pub network: KernelNetwork,
    /// Most processes a kernel may have.
    pub pids_limit: i64,
    /// Size of `/dev/shm`, in bytes, for kernels whose spec names none ([`KernelSpec::shmem`] wins).
    pub shm_size: i64,
    /// How long a graceful stop waits before killing.
    pub stop_timeout: Duration,
    /// How long a new kernel's runner has to start listening.
    pub start_timeout: Duration,
    /// Ceiling of the kernels' open-file limit (dockerd refuses more than its own hard limit).
    pub max_nofile: u64,
    /// Ceiling of the kernels' locked-memory limit, in bytes.
    pub max_memlock: u64,
    /// How long an owner's network outlives its last kernel, so that the owner's next session reuses it instead of
    /// paying for a new bridge (zero: removed with the last kernel). Idle networks go when the agent stops
    /// ([`DockerRuntime::release_idle_networks`]).
    pub network_linger: Duration,
}

impl DockerRuntimeConfig {
    /// Defaults: per-owner networks lingering 30 s, 4096 processes, 64 MiB of shared memory, 3 s to stop, 60 s to
    /// start, at most 20000 open files and 8 MiB of locked memory.
    pub fn new(root: impl Into<PathBuf>, runner: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            runner: runner.into(),
            runner_args: vec![],
            network: KernelNetwork::PerOwner,
            pids_limit: 4096,
            shm_size: 64 << 20,
            stop_timeout: Duration::from_secs(3),
            start_timeout: Duration::from_secs(60),
            max_nofile: 20_000,
            max_memlock: 8 << 20,
            network_linger: Duration::from_secs(30),
        }
    }
}

pub use crate::runtime::KernelStats;

/// A local image usable as a kernel.
#[derive(Debug, Clone)]
struct KernelImage {
    info: ImageInfo,
    /// The Docker reference to create containers from.
    reference: String,
    /// The interpreter (`ai.backend.runtime-path`).
    runtime_path: String,
}

struct Tracked {
    container_id: String,
    handle: KernelHandle,
    exit: watch::Receiver<Option<KernelExit>>,
    /// Set by destroy before it stops the container, so the watcher reports why.
    requested: Arc<Mutex<Option<String>>>,
    owner: String,
}

/// Kernels as Docker containers.
pub struct DockerRuntime {
    docker: Docker,
    config: DockerRuntimeConfig,
    root_label: String,
    ulimits: Vec<ResourcesUlimits>,
    host_cpus: u64,
    kernels: Mutex<HashMap<KernelId, Tracked>>,
    /// Per owner: held while its network is made and a container joins it, or while the network is removed.
    network_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The kernel images last listed, and when: creates within [`IMAGES_FRESH_FOR`] reuse the list.
    images: Mutex<Option<(std::time::Instant, Vec<KernelImage>)>>,
}

/// How long a listing of the kernel images is reused (an image not in it makes the next create list again).
const IMAGES_FRESH_FOR: Duration = Duration::from_secs(10);

/// Removes network `name` unless a container is on it, under the owner's network lock.
async fn remove_unused_network(docker: &Docker, lock: &tokio::sync::Mutex<()>, name: &str) {
    let _held = lock.lock().await;
    let filters = HashMap::from([("network", vec![name.to_owned()])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    if let Ok(users) = docker.list_containers(Some(options)).await {
        if users.is_empty() {
            if let Err(e) = docker.remove_network(name).await {
                if !matches!(status_of(&e), Some(403 | 404 | 409)) {
                    tracing::warn!(network = %name, error = %e, "could not remove an owner's network");
                }
            }
        }
    }
}

/// The container name of a kernel.
pub fn container_name(id: KernelId) -> String {
    format!("backendai-kernel-{id}")
}

fn unavailable(what: &str, e: bollard::errors::Error) -> Error {
    Error::Unavailable { msg: format!("docker: {what}: {e}") }
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Reads `(soft, hard)` of one line of a `/proc/<pid>/limits` file (`unlimited` is `u64::MAX`).
fn proc_limit(text: &str, name: &str) -> Option<(u64, u64)> {
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    let mut it = rest.split_whitespace().map(|v| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() });
    Some((it.next()??, it.next()??))
}

/// The kernels' ulimits: the agent's own, never above dockerd's hard limits (read from its `/proc` entry when
/// visible) nor the configured ceilings, since dockerd refuses to raise a limit past its own.
fn kernel_ulimits(config: &DockerRuntimeConfig) -> Vec<ResourcesUlimits> {
    let own = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let daemon = std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/limits", pid.trim())).ok())
        .unwrap_or_default();
    let limit = |docker_name: &str, proc_name: &str, ceiling: u64| {
        let (soft, hard) = proc_limit(&own, proc_name).unwrap_or((ceiling, ceiling));
        let daemon_hard = proc_limit(&daemon, proc_name).map(|(_, h)| h).unwrap_or(u64::MAX);
        let hard = hard.min(daemon_hard).min(ceiling);
        let soft = soft.min(hard);
        ResourcesUlimits {
            name: Some(docker_name.into()),
            soft: Some(i64::try_from(soft).unwrap_or(i64::MAX)),
            hard: Some(i64::try_from(hard).unwrap_or(i64::MAX)),
        }
    };
    vec![
        limit("nofile", "Max open files", config.max_nofile),
        limit("memlock", "Max locked memory", config.max_memlock),
    ]
}

fn environ(spec: &KernelSpec) -> Vec<String> {
    let mut env = spec.environ("/home/work");
    env.insert("USER".into(), "work".into());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A Docker network name for an owner: lower-case letters, digits and dashes only.
fn owner_network(owner: &str) -> String {
    let clean: String =
        owner.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    format!("backendai-owner-{clean}")
}

fn image_of(summary: &bollard::models::ImageSummary) -> Option<KernelImage> {
    let labels = &summary.labels;
    labels.get(LABEL_KERNELSPEC)?;
    let tags: Vec<&String> = summary.repo_tags.iter().filter(|t| !t.contains("<none>")).collect();
    let reference = (*tags.first()?).clone();
    let name = labels.get("ai.backend.rs.name").filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| reference.clone());
    let mut aliases: Vec<String> = labels
        .get("ai.backend.rs.aliases")
        .map(|a| a.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    for tag in tags {
        if *tag != name && !aliases.contains(tag) {
            aliases.push(tag.clone());
        }
    }
    let runtime_path = labels.get("ai.backend.runtime-path").cloned().unwrap_or_else(|| "/usr/bin/python3".into());
    let lang = labels.get("ai.backend.runtime-type").cloned().unwrap_or_else(|| "python".into());
    let mut min_slots = ResourceSlots::new();
    for (key, value) in labels {
        if let Some(slot) = key.strip_prefix("ai.backend.resource.min.") {
            if let Ok(amount) = parse_amount(value) {
                min_slots.set(slot, amount);
            }
        }
    }
    Some(KernelImage { info: ImageInfo { name, aliases, lang, min_slots }, reference, runtime_path })
}

/// The device requests of an accelerator plugin's container arguments ([`KernelSpec::container_args`]), read as the
/// Docker CLI reads them: `--gpus all`, `--gpus 2` or `--gpus "device=0,1"` (quotes optional). Other arguments are
/// refused, so a plugin asking for something this runtime cannot do fails the create instead of being ignored.
pub fn device_requests(args: &[String]) -> Result<Vec<DeviceRequest>> {
    let mut requests = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--gpus") {
            Some("") => args.next().map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => None,
        };
        let Some(value) = value.map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'')) else {
            return Err(Error::InvalidParams { msg: format!("container argument {arg:?} is not supported by Docker") });
        };
        let gpu = vec![vec!["gpu".to_owned()]];
        let request = if value == "all" {
            DeviceRequest { count: Some(-1), capabilities: Some(gpu), ..Default::default() }
        } else if let Some(list) = value.strip_prefix("device=") {
            let ids = list.split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect();
            DeviceRequest { device_ids: Some(ids), capabilities: Some(gpu), ..Default::default() }
        } else if let Ok(count) = value.parse::<i64>() {
            DeviceRequest { count: Some(count), capabilities: Some(gpu), ..Default::default() }
        } else {
            return Err(Error::InvalidParams { msg: format!("--gpus {value:?} is not a device list, count or all") });
        };
        requests.push(request);
    }
    Ok(requests)
}

fn label_filter(pairs: &[(&str, &str)]) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", pairs.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

impl DockerRuntime {
    /// Connects to the local Docker daemon (`DOCKER_HOST` or the default socket), negotiating the API version so
    /// older engines (20.10 speaks 1.41) are served, and prepares `config.root`.
    pub async fn connect(config: DockerRuntimeConfig) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| unavailable("connecting", e))?;
        let docker = docker.negotiate_version().await.map_err(|e| unavailable("negotiating the API version", e))?;
        Self::with_client(docker, config).await
    }

    /// A runtime over an existing client.
    pub async fn with_client(docker: Docker, mut config: DockerRuntimeConfig) -> Result<Self> {
        docker.ping().await.map_err(|e| unavailable("the daemon does not answer", e))?;
        std::fs::create_dir_all(&config.root)
            .map_err(|e| Error::io(format!("creating {}", config.root.display()), e))?;
        config.root = std::fs::canonicalize(&config.root)
            .map_err(|e| Error::io(format!("resolving {}", config.root.display()), e))?;
        config.runner = std::fs::canonicalize(&config.runner)
            .map_err(|e| Error::io(format!("finding the kernel runner {}", config.runner.display()), e))?;
        let ulimits = kernel_ulimits(&config);
        let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        let root_label = config.root.display().to_string();
        Ok(Self {
            docker,
            config,
            root_label,
            ulimits,
            host_cpus,
            kernels: Mutex::default(),
            network_locks: Mutex::default(),
            images: Mutex::default(),
        })
    }

    /// The bollard client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The runtime's settings (with its root made absolute).
    pub fn config(&self) -> &DockerRuntimeConfig {
        &self.config
    }

    fn kernel_dir(&self, id: KernelId) -> PathBuf {
        self.config.root.join(id.to_string())
    }

    fn socket_path(&self, id: KernelId) -> PathBuf {
        self.kernel_dir(id).join("ipc").join("runner.sock")
    }

    /// The kernel images, from the recent listing when there is one.
    async fn cached_kernel_images(&self) -> Result<Vec<KernelImage>> {
        if let Some((at, images)) = self.images.lock().expect("images").as_ref() {
            if at.elapsed() < IMAGES_FRESH_FOR {
                return Ok(images.clone());
            }
        }
        self.kernel_images().await
    }

    async fn kernel_images(&self) -> Result<Vec<KernelImage>> {
        let filters = HashMap::from([("label", vec![LABEL_KERNELSPEC.to_owned()])]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self.docker.list_images(Some(options)).await.map_err(|e| unavailable("listing images", e))?;
        let mut found: Vec<KernelImage> = images.iter().filter_map(image_of).collect();
        found.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        *self.images.lock().expect("images") = Some((std::time::Instant::now(), found.clone()));
        Ok(found)
    }

    fn network_lock(&self, owner: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.network_locks.lock().expect("network locks").entry(owner.to_owned()).or_default().clone()
    }

    /// Removes the owner's network once no container uses it: every network takes an address pool, and Docker has
    /// only a few dozen of them.
    async fn release_network(&self, owner: &str) {
        if self.config.network != KernelNetwork::PerOwner || owner.is_empty() {
            return;
        }
        remove_unused_network(&self.docker, &self.network_lock(owner), &owner_network(owner)).await;
    }

    /// [`Self::release_network`] after the configured linger, in the background.
    async fn release_network_later(&self, owner: &str) {
        if self.config.network_linger.is_zero() {
            return self.release_network(owner).await;
        }
        if self.config.network != KernelNetwork::PerOwner || owner.is_empty() {
            return;
        }
        let (docker, lock, name) = (self.docker.clone(), self.network_lock(owner), owner_network(owner));
        let linger = self.config.network_linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            remove_unused_network(&docker, &lock, &name).await;
        });
    }

    /// Makes the owner's network unless it exists.
    async fn ensure_network(&self, owner: &str) -> Result<String> {
        let name = owner_network(owner);
        match self.docker.inspect_network(&name, None).await {
            Ok(_) => return Ok(name),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(unavailable("inspecting a network", e)),
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(LABEL_OWNER.to_owned(), owner.to_owned())])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(name),
            // Another kernel of the same owner made it first.
            Err(e) if status_of(&e) == Some(409) => Ok(name),
            Err(e) => Err(unavailable("creating the owner's network", e)),
        }
    }

    /// The kernel's host directories, owned by the kernel's user so the runner can listen and code can write.
    fn prepare_dirs(&self, id: KernelId, bootstrap_script: Option<&str>) -> Result<()> {
        let dir = self.kernel_dir(id);
        for sub in ["work", "ipc"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            if std::os::unix::fs::chown(&path, Some(KERNEL_UID), Some(KERNEL_UID)).is_err() {
                // Not root: let the kernel's user in through the mode instead.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| Error::io(format!("opening {} to the kernel", path.display()), e))?;
            }
        }
        if let Some(script) = bootstrap_script {
            // Beside the runner's socket: only the agent and the kernel see the directory.
            let path = dir.join("ipc").join(BOOTSTRAP_FILE);
            std::fs::write(&path, script).map_err(|e| Error::io("writing the bootstrap script", e))?;
        }
        let socket = self.socket_path(id);
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing the stale {}", socket.display()), e)),
        }
        Ok(())
    }

    fn container_body(&self, spec: &KernelSpec, image: &KernelImage, network: Option<String>) -> ContainerCreateBody {
        let dir = self.kernel_dir(spec.kernel_id);
        let mut entrypoint = vec![RUNNER_PATH.to_owned()];
        entrypoint.extend(self.config.runner_args.iter().cloned());
        entrypoint.extend(
            [
                "--socket",
                &format!("{IPC_DIR}/runner.sock"),
                "--lang",
                &image.info.lang,
                "--workdir",
                "/home/work",
                "--python",
                &image.runtime_path,
            ]
            .map(str::to_owned),
        );
        if spec.bootstrap_script.is_some() {
            entrypoint.extend(["--bootstrap".to_owned(), format!("{IPC_DIR}/{BOOTSTRAP_FILE}")]);
        }
        let labels = HashMap::from([
            (LABEL_KERNEL_ID.to_owned(), spec.kernel_id.to_string()),
            (LABEL_SESSION_ID.to_owned(), spec.session_id.to_string()),
            (LABEL_OWNER.to_owned(), spec.owner.to_string()),
            (LABEL_LANG.to_owned(), image.info.lang.clone()),
            (LABEL_ROOT.to_owned(), self.root_label.clone()),
        ]);
        let mem = spec.slots.get("mem").trunc().to_i64().filter(|m| *m > 0);
        let cpus = spec.slots.get("cpu").min(Decimal::from(self.host_cpus));
        let nano_cpus = (cpus * Decimal::from(1_000_000_000u64)).trunc().to_i64().filter(|n| *n > 0);
        let host_config = HostConfig {
            binds: Some(
                [
                    format!("{}:{RUNNER_PATH}:ro", self.config.runner.display()),
                    format!("{}:{IPC_DIR}", dir.join("ipc").display()),
                    format!("{}:/home/work", dir.join("work").display()),
                ]
                .into_iter()
                // Docker mounts in path order, so folders under /home/work land on top of the work directory.
                .chain(spec.mounts.iter().map(|m| {
                    let mode = if m.permission.can_write() { "rw" } else { "ro" };
                    format!("{}:{}:{mode}", m.host_path.display(), m.kernel_path)
                }))
                .collect(),
            ),
            memory: mem,
            // No swap beyond the memory limit.
            memory_swap: mem,
            nano_cpus,
            pids_limit: Some(self.config.pids_limit),
            // The session's `resource_opts.shmem` when it names one (the manager keeps it within `mem`).
            shm_size: Some(spec.shmem.and_then(|b| i64::try_from(b).ok()).unwrap_or(self.config.shm_size)),
            ulimits: Some(self.ulimits.clone()),
            // The runner needs no privilege: it only listens on a socket in a directory the kernel's user owns.
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            init: Some(true),
            network_mode: Some(network.unwrap_or_else(|| "none".into())),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.reference.clone()),
            hostname: Some(spec.cluster_hostname.clone()),
            user: Some(format!("{KERNEL_UID}:{KERNEL_UID}")),
            env: Some(environ(spec)),
            entrypoint: Some(entrypoint),
            cmd: None,
            working_dir: Some("/home/work".into()),
            labels: Some(labels),
            stop_signal: Some("SIGTERM".into()),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    /// Creates and starts the container; a container left under the same name (a crashed restart) is replaced.
    async fn start_container(&self, body: ContainerCreateBody, id: KernelId) -> Result<String> {
        let name = container_name(id);
        let options = || CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self.docker.create_container(Some(options()), body.clone()).await {
            Err(e) if status_of(&e) == Some(409) => {
                let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                let _ = self.docker.remove_container(&name, Some(force)).await;
                self.docker.create_container(Some(options()), body).await
            }
            other => other,
        }
        .map_err(|e| unavailable("creating the kernel container", e))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            let _ = self.docker.remove_container(&created.id, Some(force)).await;
            return Err(unavailable("starting the kernel container", e));
        }
        Ok(created.id)
    }

    /// Follows a container until it ends: an OOM event ends the kernel (the runner would otherwise replace its dead
    /// interpreter and hide that the kernel outgrew its memory), then the exit is read from inspect.
    fn watch(
        &self,
        container_id: String,
        since: i64,
        requested: Arc<Mutex<Option<String>>>,
    ) -> watch::Receiver<Option<KernelExit>> {
        let (tx, rx) = watch::channel(None);
        let docker = self.docker.clone();
        tokio::spawn(async move {
            let filters = HashMap::from([
                ("container", vec![container_id.clone()]),
                ("type", vec!["container".to_owned()]),
                ("event", vec!["oom".to_owned()]),
            ]);
            let options = EventsOptionsBuilder::new().since(&since.to_string()).filters(&filters).build();
            let mut events = Box::pin(docker.events(Some(options)));
            let mut events_open = true;
            let mut oom = false;
            loop {
                let mut wait = Box::pin(docker.wait_container(&container_id, None));
                loop {
                    tokio::select! {
                        ev = events.next(), if events_open => match ev {
                            Some(Ok(_)) => {
                                oom = true;
                                let kill = bollard::query_parameters::KillContainerOptionsBuilder::new()
                                    .signal("SIGKILL")
                                    .build();
                                let _ = docker.kill_container(&container_id, Some(kill)).await;
                            }
                            _ => events_open = false,
                        },
                        _ = wait.next() => break,
                    }
                }
                // A wait that failed for another reason than the end (a daemon hiccup) is retried.
                match docker.inspect_container(&container_id, None).await {
                    Ok(info) if info.state.as_ref().and_then(|s| s.running).unwrap_or(false) => {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(info) => {
                        let state = info.state.unwrap_or_default();
                        let exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
                        let reason = requested.lock().expect("requested").clone().unwrap_or_else(|| {
                            if oom || state.oom_killed.unwrap_or(false) { "oom-killed" } else { "self-terminated" }
                                .to_owned()
                        });
                        let _ = tx.send(Some(KernelExit { exit_code, reason }));
                        return;
                    }
                    Err(_) => {
                        let reason = requested.lock().expect("requested").clone().unwrap_or_else(|| "killed".into());
                        let _ = tx.send(Some(KernelExit { exit_code: None, reason }));
                        return;
                    }
                }
            }
        });
        rx
    }

    fn track(&self, container_id: String, handle: KernelHandle, since: i64, owner: String) {
        let requested = Arc::new(Mutex::new(None));
        let exit = self.watch(container_id.clone(), since, requested.clone());
        let id = handle.kernel_id;
        self.kernels.lock().expect("kernels").insert(id, Tracked { container_id, handle, exit, requested, owner });
    }

    /// Tracks a container of ours this runtime instance did not start (found by label after an agent restart).
    fn adopt(&self, summary: &bollard::models::ContainerSummary) -> Option<KernelHandle> {
        let labels = summary.labels.as_ref()?;
        let kernel_id: KernelId = labels.get(LABEL_KERNEL_ID)?.parse().ok()?;
        if let Some(t) = self.kernels.lock().expect("kernels").get(&kernel_id) {
            return Some(t.handle.clone());
        }
        let session_id: SessionId = labels.get(LABEL_SESSION_ID)?.parse().ok()?;
        let container_id = summary.id.clone()?;
        let handle = KernelHandle {
            kernel_id,
            session_id,
            container_id: container_id.clone(),
            endpoint: RunnerEndpoint::Unix(self.socket_path(kernel_id)),
            lang: labels.get(LABEL_LANG).cloned().unwrap_or_else(|| "python".into()),
        };
        let owner = labels.get(LABEL_OWNER).cloned().unwrap_or_default();
        self.track(container_id, handle.clone(), summary.created.unwrap_or(0), owner);
        Some(handle)
    }

    async fn our_containers(&self, extra: &[(&str, &str)]) -> Result<Vec<bollard::models::ContainerSummary>> {
        let mut pairs = vec![(LABEL_ROOT, self.root_label.as_str())];
        pairs.extend_from_slice(extra);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&label_filter(&pairs)).build();
        self.docker.list_containers(Some(options)).await.map_err(|e| unavailable("listing containers", e))
    }

    /// The tracked kernel, adopting its container when another runtime instance started it.
    async fn find(
        &self,
        id: KernelId,
    ) -> Result<Option<(String, watch::Receiver<Option<KernelExit>>, Arc<Mutex<Option<String>>>)>> {
        let get = || {
            self.kernels
                .lock()
                .expect("kernels")
                .get(&id)
                .map(|t| (t.container_id.clone(), t.exit.clone(), t.requested.clone()))
        };
        if let Some(found) = get() {
            return Ok(Some(found));
        }
        let id_text = id.to_string();
        for summary in self.our_containers(&[(LABEL_KERNEL_ID, &id_text)]).await? {
            self.adopt(&summary);
        }
        Ok(get())
    }

    /// Stops and removes a kernel's container, keeping its directory; answers its exit.
    async fn stop(&self, id: KernelId, forced: bool) -> Result<Option<KernelExit>> {
        let Some((container_id, mut exit, requested)) = self.find(id).await? else { return Ok(None) };
        let already = exit.borrow().clone();
        let result = match already {
            Some(done) => done,
            None => {
                let reason = if forced { "force-terminated" } else { "user-requested" };
                *requested.lock().expect("requested") = Some(reason.to_owned());
                let t = if forced { 0 } else { self.config.stop_timeout.as_secs().max(1) as i32 };
                let options = StopContainerOptionsBuilder::new().t(t).build();
                if let Err(e) = self.docker.stop_container(&container_id, Some(options)).await {
                    if !matches!(status_of(&e), Some(304 | 404)) {
                        return Err(unavailable("stopping the kernel container", e));
                    }
                }
                let waited = tokio::time::timeout(Duration::from_secs(30), exit.wait_for(Option::is_some)).await;
                let code = match waited {
                    Ok(Ok(done)) => done.as_ref().and_then(|e| e.exit_code),
                    _ => None,
                };
                KernelExit { exit_code: code, reason: reason.to_owned() }
            }
        };
        let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        if let Err(e) = self.docker.remove_container(&container_id, Some(force)).await {
            if status_of(&e) != Some(404) {
                return Err(unavailable("removing the kernel container", e));
            }
        }
        self.kernels.lock().expect("kernels").remove(&id);
        Ok(Some(result))
    }

    /// Waits until the runner's socket accepts connections, or fails when the container ends or time runs out.
    async fn wait_ready(&self, id: KernelId) -> Result<()> {
        let socket = self.socket_path(id);
        let mut exit = self
            .kernels
            .lock()
            .expect("kernels")
            .get(&id)
            .map(|t| t.exit.clone())
            .ok_or_else(|| Error::KernelNotFound { id: id.to_string() })?;
        let ready = async {
            loop {
                if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let ended = async {
            let done = exit.wait_for(Option::is_some).await;
            done.ok().and_then(|e| e.as_ref().and_then(|e| e.exit_code))
        };
        let code = tokio::select! {
            _ = ready => return Ok(()),
            code = ended => code,
            _ = tokio::time::sleep(self.config.start_timeout) => {
                return Err(Error::Internal {
                    msg: format!("the kernel runner did not listen within {:?}", self.config.start_timeout),
                })
            }
        };
        let log = self.logs(id).await.unwrap_or_default();
        Err(Error::Internal {
            msg: format!("the kernel runner exited before it listened (exit code {code:?}): {}", log.trim()),
        })
    }

    /// A kernel's resource usage now (Docker's one-shot stats).
    pub async fn stats(&self, kernel_id: KernelId) -> Result<KernelStats> {
        let Some((container_id, ..)) = self.find(kernel_id).await? else {
            return Err(Error::KernelNotFound { id: kernel_id.to_string() });
        };
        let options = StatsOptionsBuilder::new().stream(false).one_shot(true).build();
        let mut stream = Box::pin(self.docker.stats(&container_id, Some(options)));
        let stats = match stream.next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) if status_of(&e) == Some(404) => {
                return Err(Error::KernelNotFound { id: kernel_id.to_string() })
            }
            Some(Err(e)) => return Err(unavailable("reading kernel stats", e)),
            None => return Err(Error::Unavailable { msg: "docker: no stats answered".into() }),
        };
        let io = |op: &str| {
            stats
                .blkio_stats
                .as_ref()
                .and_then(|b| b.io_service_bytes_recursive.as_ref())
                .map(|entries| {
                    entries
                        .iter()
                        .filter(|e| e.op.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(op)))
                        .filter_map(|e| e.value)
                        .sum()
                })
                .unwrap_or(0)
        };
        Ok(KernelStats {
            cpu_used_ns: stats
                .cpu_stats
                .as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
            mem_bytes: stats.memory_stats.as_ref().and_then(|m| m.usage).unwrap_or(0),
            mem_limit: stats.memory_stats.as_ref().and_then(|m| m.limit).unwrap_or(0),
            io_read_bytes: io("read"),
            io_write_bytes: io("write"),
            pids: stats.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        })
    }

    /// Removes what no known kernel owns: containers of this runtime's root whose kernel is not in `known` and that
    /// are older than `grace` (younger ones may be kernels being created right now), and kernel directories left
    /// without a container. Returns the kernels removed. An agent calls it once it has re-attached.
    pub async fn sweep_orphans(&self, known: &HashSet<KernelId>, grace: Duration) -> Result<Vec<KernelId>> {
        let now = chrono::Utc::now().timestamp();
        let mut removed = vec![];
        let mut with_container = HashSet::new();
        for summary in self.our_containers(&[]).await? {
            let Some(id) =
                summary.labels.as_ref().and_then(|l| l.get(LABEL_KERNEL_ID)).and_then(|v| v.parse::<KernelId>().ok())
            else {
                continue;
            };
            with_container.insert(id);
            let age = now - summary.created.unwrap_or(now);
            if known.contains(&id) || age < grace.as_secs() as i64 {
                continue;
            }
            tracing::info!(kernel = %id, "removing an orphan kernel container");
            if self.destroy_kernel(id, true).await.is_ok() {
                removed.push(id);
            }
        }
        let mut entries = match tokio::fs::read_dir(&self.config.root).await {
            Ok(e) => e,
            Err(e) => return Err(Error::io("listing kernel directories", e)),
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(id) = entry.file_name().to_string_lossy().parse::<KernelId>() else { continue };
            if known.contains(&id) || with_container.contains(&id) {
                continue;
            }
            let old = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= grace);
            if old && tokio::fs::remove_dir_all(entry.path()).await.is_ok() {
                removed.push(id);
            }
        }
        // Owners' networks nobody uses any more (their last kernel went while no runtime watched).
        self.release_idle_networks().await;
        Ok(removed)
    }

    /// Removes every owner network no container uses, now: those whose last kernel ended while no runtime watched,
    /// and those lingering after their last kernel (`network_linger`). Call when the agent stops, so no network
    /// outlives it (Docker has only a few dozen address pools).
    pub async fn release_idle_networks(&self) {
        let filters = HashMap::from([("label", vec![LABEL_OWNER.to_owned()])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::new().filters(&filters).build();
        if let Ok(networks) = self.docker.list_networks(Some(options)).await {
            for owner in networks.iter().filter_map(|n| n.labels.as_ref()?.get(LABEL_OWNER)) {
                self.release_network(owner).await;
            }
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn stats(&self, kernel_id: KernelId) -> Result<KernelStats> {
        DockerRuntime::stats(self, kernel_id).await
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.kernel_images().await?.into_iter().map(|i| i.info).collect())
    }

    async fn create_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle> {
        let mut images = self.cached_kernel_images().await?;
        if resolve_image(&images.iter().map(|i| i.info.clone()).collect::<Vec<_>>(), &spec.image).is_none() {
            images = self.kernel_images().await?;
        }
        let infos: Vec<ImageInfo> = images.iter().map(|i| i.info.clone()).collect();
        let wanted =
            resolve_image(&infos, &spec.image).ok_or_else(|| Error::ImageNotFound { image: spec.image.clone() })?;
        let image = images.iter().find(|i| i.info.name == wanted.name).expect("resolved among these").clone();
        let devices = device_requests(&spec.container_args)?;
        self.prepare_dirs(spec.kernel_id, spec.bootstrap_script.as_deref())?;
        let since = chrono::Utc::now().timestamp() - 1;
        let started = async {
            // The owner's network may not be removed between its creation and the container joining it.
            let lock = self.network_lock(spec.owner.as_str());
            let _held = lock.lock().await;
            let network = match self.config.network {
                KernelNetwork::PerOwner => Some(self.ensure_network(spec.owner.as_str()).await?),
                KernelNetwork::None => None,
            };
            let mut body = self.container_body(spec, &image, network);
            if let (false, Some(host)) = (devices.is_empty(), body.host_config.as_mut()) {
                host.device_requests = Some(devices);
            }
            self.start_container(body, spec.kernel_id).await
        };
        let container_id = match started.await {
            Ok(id) => id,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(self.kernel_dir(spec.kernel_id)).await;
                return Err(e);
            }
        };
        let handle = KernelHandle {
            kernel_id: spec.kernel_id,
            session_id: spec.session_id,
            container_id: container_id.clone(),
            endpoint: RunnerEndpoint::Unix(self.socket_path(spec.kernel_id)),
            lang: image.info.lang.clone(),
        };
        self.track(container_id, handle.clone(), since, spec.owner.to_string());
        if let Err(e) = self.wait_ready(spec.kernel_id).await {
            let _ = self.destroy_kernel(spec.kernel_id, true).await;
            return Err(e);
        }
        Ok(handle)
    }

    async fn destroy_kernel(&self, kernel_id: KernelId, forced: bool) -> Result<KernelExit> {
        let dir = self.kernel_dir(kernel_id);
        let owner = self.kernels.lock().expect("kernels").get(&kernel_id).map(|t| t.owner.clone());
        let exit = match self.stop(kernel_id, forced).await? {
            Some(exit) => exit,
            // The directory alone means the container went away while nobody watched.
            None if dir.is_dir() => {
                KernelExit { exit_code: None, reason: "kernel-lost: its container disappeared".into() }
            }
            None => return Err(Error::KernelNotFound { id: kernel_id.to_string() }),
        };
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(kernel = %kernel_id, error = %e, "could not remove the kernel directory");
            }
        }
        if let Some(owner) = owner {
            self.release_network_later(&owner).await;
        }
        Ok(exit)
    }

    async fn restart_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle> {
        // The work directory stays; only the container is replaced.
        self.stop(spec.kernel_id, true).await?;
        self.create_kernel(spec).await
    }

    async fn list_kernels(&self) -> Result<Vec<KernelHandle>> {
        Ok(self.our_containers(&[]).await?.iter().filter_map(|s| self.adopt(s)).collect())
    }

    async fn wait_kernel(&self, kernel_id: KernelId) -> Result<KernelExit> {
        let Some((_, mut exit, _)) = self.find(kernel_id).await? else {
            return Err(Error::KernelNotFound { id: kernel_id.to_string() });
        };
        let done = exit.wait_for(Option::is_some).await.map_err(|_| Error::internal("kernel watcher ended"))?;
        Ok(done.clone().expect("checked"))
    }

    async fn logs(&self, kernel_id: KernelId) -> Result<String> {
        let container = self
            .kernels
            .lock()
            .expect("kernels")
            .get(&kernel_id)
            .map(|t| t.container_id.clone())
            .unwrap_or_else(|| container_name(kernel_id));
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("10000").build();
        let mut stream = Box::pin(self.docker.logs(&container, Some(options)));
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) if status_of(&e) == Some(404) => {
                    return Err(Error::KernelNotFound { id: kernel_id.to_string() })
                }
                Err(e) => return Err(unavailable("reading kernel logs", e)),
            }
        }
        Ok(text)
    }

    fn work_dir(&self, kernel_id: KernelId) -> Result<PathBuf> {
        let work = self.kernel_dir(kernel_id).join("work");
        if !work.is_dir() {
            return Err(Error::KernelNotFound { id: kernel_id.to_string() });
        }
        Ok(work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 20000                files     \n\
                    Max locked memory         unlimited            unlimited            bytes     \n";
        assert_eq!(proc_limit(text, "Max open files"), Some((1024, 20000)));
        assert_eq!(proc_limit(text, "Max locked memory"), Some((u64::MAX, u64::MAX)));
        assert_eq!(proc_limit(text, "Max processes"), None);
    }

    #[test]
    fn ulimits_never_exceed_the_ceilings() {
        let mut config = DockerRuntimeConfig::new("/tmp", "/bin/true");
        config.max_nofile = 100;
        config.max_memlock = 4096;
        for u in kernel_ulimits(&config) {
            let ceiling = if u.name.as_deref() == Some("nofile") { 100 } else { 4096 };
            assert!(u.hard.unwrap() <= ceiling && u.soft.unwrap() <= u.hard.unwrap(), "{u:?}");
        }
    }

    #[test]
    fn owner_networks_are_valid_docker_names() {
        assert_eq!(owner_network("AKIA.Ab_1"), "backendai-owner-akia-ab-1");
    }

    #[test]
    fn gpu_arguments_become_device_requests() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = device_requests(&args(&["--gpus", "\"device=0,2\""])).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].device_ids, Some(vec!["0".to_owned(), "2".to_owned()]));
        assert_eq!(got[0].capabilities, Some(vec![vec!["gpu".to_owned()]]));
        assert_eq!(device_requests(&args(&["--gpus=all"])).unwrap()[0].count, Some(-1));
        assert_eq!(device_requests(&args(&["--gpus", "2"])).unwrap()[0].count, Some(2));
        assert!(device_requests(&[]).unwrap().is_empty());
        assert!(device_requests(&args(&["--privileged"])).is_err());
        assert!(device_requests(&args(&["--gpus"])).is_err());
        assert!(device_requests(&args(&["--gpus", "some"])).is_err());
    }

    #[test]
    fn images_come_from_labels() {
        let summary = bollard::models::ImageSummary {
            repo_tags: vec!["backendai/python:3.11".into()],
            labels: HashMap::from([
                (LABEL_KERNELSPEC.to_owned(), "1".to_owned()),
                ("ai.backend.runtime-type".to_owned(), "python".to_owned()),
                ("ai.backend.runtime-path".to_owned(), "/usr/bin/python3".to_owned()),
                ("ai.backend.resource.min.mem".to_owned(), "64m".to_owned()),
                ("ai.backend.resource.min.cpu".to_owned(), "1".to_owned()),
                ("ai.backend.rs.name".to_owned(), "python:3.11".to_owned()),
                ("ai.backend.rs.aliases".to_owned(), "python,python3".to_owned()),
            ]),
            ..Default::default()
        };
        let image = image_of(&summary).unwrap();
        assert_eq!(image.info.name, "python:3.11");
        assert_eq!(image.info.aliases, ["python", "python3", "backendai/python:3.11"]);
        assert_eq!(image.info.min_slots.get("mem"), Decimal::from(64u64 << 20));
        assert_eq!(image.reference, "backendai/python:3.11");
        let untagged = bollard::models::ImageSummary { repo_tags: vec!["<none>:<none>".into()], ..summary };
        assert!(image_of(&untagged).is_none());
    }
}
