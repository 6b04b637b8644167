//! The process runtime: each kernel is a `backend-kernel-runner` child process with its own work directory standing
//! for `/home/work`, the `BACKENDAI_*` environment, and resource limits applied by the runner to itself.
//!
//! Layout under the runtime's root: `<kernel-id>/work/` (the work directory), `runner.sock`, `runner.log` (the
//! kernel's log) and `kernel.json` (what is needed to re-attach after an agent restart).
//!
//! Shared memory: a kernel here shares the host's `/dev/shm`, so [`KernelSpec::shmem`]
//! (`config.resource_opts.shmem`) cannot be applied and is not: the kernel sees whatever the host's `/dev/shm` holds,
//! and what it puts there counts against no limit of its own. Use the Docker runtime where the size must hold.

use async_trait::async_trait;
use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use backend_core::model::ImageInfo;
use backend_core::runtime::{resolve_image, ContainerRuntime, KernelExit, KernelHandle, KernelSpec, RunnerEndpoint};
use backend_core::vfolder::VFolderMount;
use backend_core::ResourceSlots;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

use super::cgroup::Cgroups;

/// How to start the kernel runner: a program and leading arguments (the runtime appends its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments placed before the runner's own.
    pub args: Vec<String>,
}

impl RunnerCommand {
    /// Finds the runner: `$BACKENDAI_KERNEL_RUNNER`, else `backend-kernel-runner` beside the current executable (or
    /// in its parent directory, where cargo puts binaries next to `deps/` and `examples/`), else the current
    /// executable itself with the `__kernel-runner` argument (binaries that call
    /// [`crate::runner_entry::dispatch`] first thing in `main`).
    pub fn locate() -> Self {
        if let Some(p) = std::env::var_os("BACKENDAI_KERNEL_RUNNER") {
            return Self { program: p.into(), args: vec![] };
        }
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("backend-kernel-runner"));
        for dir in exe.parent().into_iter().chain(exe.parent().and_then(Path::parent)) {
            let candidate = dir.join("backend-kernel-runner");
            if candidate.is_file() {
                return Self { program: candidate, args: vec![] };
            }
        }
        Self { program: exe, args: vec![crate::runner_entry::RUNNER_ARG.to_owned()] }
    }
}

/// Configuration of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// Where kernels' directories go.
    pub root: PathBuf,
    /// How to start the runner.
    pub runner: RunnerCommand,
    /// The Python interpreter for Python images.
    pub python: String,
    /// Kernels die when the agent process dies (standalone mode), instead of surviving for re-attachment.
    pub die_with_agent: bool,
    /// Images offered.
    pub images: Vec<ImageInfo>,
    /// Put each kernel in its own cgroups (memory without extra swap, CPU quota) when the machine allows.
    pub cgroups: bool,
}

impl ProcessRuntimeConfig {
    /// Defaults: `python:3.11` (aliases `python`, `python3`) on the host's `python3`, and `shell:latest` (alias
    /// `shell`, `bash`) on `/bin/sh`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let image = |name: &str, aliases: &[&str], lang: &str| ImageInfo {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            lang: lang.into(),
            min_slots: ResourceSlots::from([("cpu", 1.into()), ("mem", (64u64 << 20).into())]),
        };
        Self {
            root: root.into(),
            runner: RunnerCommand::locate(),
            python: "python3".into(),
            die_with_agent: false,
            images: vec![
                image("python:3.11", &["python", "python3"], "python"),
                image("shell:latest", &["shell", "bash"], "shell"),
            ],
            cgroups: true,
        }
    }
}

/// What `kernel.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KernelFile {
    handle: KernelHandle,
    pid: i32,
}

struct Running {
    pid: i32,
    handle: KernelHandle,
    exit: watch::Receiver<Option<KernelExit>>,
}

/// Kernels as local processes.
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    cgroups: Option<Cgroups>,
    kernels: Mutex<HashMap<KernelId, Running>>,
}

impl ProcessRuntime {
    /// A runtime keeping its kernels under `config.root`.
    pub fn new(mut config: ProcessRuntimeConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| Error::io(format!("creating {}", config.root.display()), e))?;
        config.python = resolve_python(&config.python);
        let cgroups = if config.cgroups { Cgroups::detect() } else { None };
        if cgroups.is_none() && config.cgroups {
            tracing::info!("cgroups are not writable here: kernels get rlimits only");
        }
        Ok(Self { config, cgroups, kernels: Mutex::default() })
    }

    /// The cgroups kernels are put in, when the machine allows them.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    /// Stops a kernel's processes (gracefully unless `forced`) and forgets it, leaving its directory and cgroups.
    async fn stop(&self, kernel_id: KernelId, forced: bool) -> Result<KernelExit> {
        let (pid, mut exit) = {
            let kernels = self.kernels.lock().expect("kernels");
            let k = kernels.get(&kernel_id).ok_or_else(|| Error::KernelNotFound { id: kernel_id.to_string() })?;
            (k.pid, k.exit.clone())
        };
        let already = exit.borrow().clone();
        let result = match already {
            Some(done) => done,
            None => {
                let group = Pid::from_raw(pid);
                if !forced {
                    let _ = signal::killpg(group, Signal::SIGTERM);
                    let _ = tokio::time::timeout(Duration::from_secs(3), exit.wait_for(Option::is_some)).await;
                }
                if exit.borrow().is_none() {
                    let _ = signal::killpg(group, Signal::SIGKILL);
                    let _ = tokio::time::timeout(Duration::from_secs(10), exit.wait_for(Option::is_some)).await;
                }
                let code = exit.borrow().as_ref().and_then(|e| e.exit_code);
                KernelExit {
                    exit_code: code,
                    reason: if forced { "force-terminated" } else { "user-requested" }.into(),
                }
            }
        };
        // Whatever the runner started in its group goes too.
        let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        self.kernels.lock().expect("kernels").remove(&kernel_id);
        Ok(result)
    }

    fn kernel_dir(&self, id: KernelId) -> PathBuf {
        self.config.root.join(id.to_string())
    }

    fn track(&self, id: KernelId, pid: i32, handle: KernelHandle, exit: watch::Receiver<Option<KernelExit>>) {
        self.kernels.lock().expect("kernels").insert(id, Running { pid, handle, exit });
    }

    /// Re-attaches a kernel found on disk whose process still lives (not our child: polled for exit).
    fn adopt(&self, file: KernelFile) {
        let (tx, rx) = watch::channel(None);
        let pid = file.pid;
        tokio::spawn(async move {
            while signal::kill(Pid::from_raw(pid), None).is_ok() && !tx.is_closed() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let _ = tx.send(Some(KernelExit { exit_code: None, reason: "self-terminated".into() }));
        });
        self.track(file.handle.kernel_id, pid, file.handle, rx);
    }
}

/// The interpreter's real path: version-manager shims (pyenv, asdf) on `PATH` cost a shell script per start, which
/// would be paid by every kernel.
fn resolve_python(python: &str) -> String {
    std::process::Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| python.to_owned())
}

fn exit_of(status: std::process::ExitStatus) -> KernelExit {
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    KernelExit { exit_code, reason: "self-terminated".into() }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.config.images.clone())
    }

    async fn create_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle> {
        let image = resolve_image(&self.config.images, &spec.image)
            .ok_or_else(|| Error::ImageNotFound { image: spec.image.clone() })?
            .clone();
        let dir = self.kernel_dir(spec.kernel_id);
        let work = dir.join("work");
        tokio::fs::create_dir_all(&work).await.map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
        let socket = dir.join("runner.sock");
        let log = std::fs::File::create(dir.join("runner.log")).map_err(|e| Error::io("creating the kernel log", e))?;
        let log2 = log.try_clone().map_err(|e| Error::io("creating the kernel log", e))?;
        let mut cmd = tokio::process::Command::new(&self.config.runner.program);
        cmd.args(&self.config.runner.args)
            .arg("--socket")
            .arg(&socket)
            .arg("--lang")
            .arg(&image.lang)
            .arg("--workdir")
            .arg(&work)
            .arg("--python")
            .arg(&self.config.python);
        let mem = spec.slots.get("mem");
        if !mem.is_zero() {
            cmd.arg("--max-memory").arg(mem.trunc().to_string());
        }
        if self.config.die_with_agent {
            cmd.arg("--die-with-parent");
        }
        let cgroup_dirs = match &self.cgroups {
            Some(cg) => cg.create(spec.kernel_id, &spec.slots)?,
            None => vec![],
        };
        for dir in &cgroup_dirs {
            cmd.arg("--cgroup").arg(dir);
        }
        for mount in &spec.mounts {
            cmd.arg("--mount").arg(mount_arg(mount, &work)?);
        }
        if let Some(script) = &spec.bootstrap_script {
            let file = dir.join("bootstrap.sh");
            tokio::fs::write(&file, script).await.map_err(|e| Error::io("writing the bootstrap script", e))?;
            cmd.arg("--bootstrap").arg(file);
        }
        cmd.envs(spec.environ(&work.display().to_string()))
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group, so stopping the kernel stops everything it started.
            .process_group(0)
            .kill_on_drop(false);
        let mut child =
            cmd.spawn().map_err(|e| Error::io(format!("starting {}", self.config.runner.program.display()), e))?;
        let pid = child.id().map(|p| p as i32).ok_or_else(|| Error::internal("kernel exited at once"))?;
        let handle = KernelHandle {
            kernel_id: spec.kernel_id,
            session_id: spec.session_id,
            container_id: format!("pid:{pid}"),
            endpoint: RunnerEndpoint::Unix(socket),
            lang: image.lang.clone(),
        };
        let file = serde_json::to_vec(&KernelFile { handle: handle.clone(), pid }).map_err(Error::internal)?;
        tokio::fs::write(dir.join("kernel.json"), file).await.map_err(|e| Error::io("writing kernel.json", e))?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_of(status),
                Err(e) => KernelExit { exit_code: None, reason: format!("wait failed: {e}") },
            };
            let _ = tx.send(Some(exit));
        });
        self.track(spec.kernel_id, pid, handle.clone(), rx);
        Ok(handle)
    }

    async fn destroy_kernel(&self, kernel_id: KernelId, forced: bool) -> Result<KernelExit> {
        let result = self.stop(kernel_id, forced).await?;
        if let Some(cg) = &self.cgroups {
            let dirs = cg.dirs(kernel_id);
            // A group can only be removed once its last process is reaped.
            for _ in 0..1000 {
                if dirs.iter().all(|d| {
                    !d.join("cgroup.procs").exists()
                        || std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
                }) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            cg.remove(&dirs);
        }
        let dir = self.kernel_dir(kernel_id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(kernel = %kernel_id, error = %e, "could not remove the kernel directory");
        }
        Ok(result)
    }

    async fn restart_kernel(&self, spec: &KernelSpec) -> Result<KernelHandle> {
        // The work directory and cgroups stay; only the processes are replaced.
        self.stop(spec.kernel_id, true).await?;
        self.create_kernel(spec).await
    }

    async fn list_kernels(&self) -> Result<Vec<KernelHandle>> {
        let mut known: Vec<KernelHandle> =
            self.kernels.lock().expect("kernels").values().map(|k| k.handle.clone()).collect();
        let mut entries = match tokio::fs::read_dir(&self.config.root).await {
            Ok(e) => e,
            Err(e) => return Err(Error::io("listing kernels", e)),
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(id) = entry.file_name().to_string_lossy().parse::<KernelId>() else { continue };
            if known.iter().any(|h| h.kernel_id == id) {
                continue;
            }
            let path = entry.path().join("kernel.json");
            let file =
                match tokio::fs::read(&path).await.ok().and_then(|b| serde_json::from_slice::<KernelFile>(&b).ok()) {
                    Some(f) => f,
                    None => continue,
                };
            if signal::kill(Pid::from_raw(file.pid), None).is_ok() {
                known.push(file.handle.clone());
                self.adopt(file);
            } else {
                // The kernel died while nobody watched; keep its directory until the manager destroys it, and
                // remember its exit so destroy and wait answer at once.
                let exit =
                    KernelExit { exit_code: None, reason: "kernel-lost: it ended while its agent was down".into() };
                let (_tx, rx) = watch::channel(Some(exit));
                known.push(file.handle.clone());
                self.track(id, file.pid, file.handle, rx);
            }
        }
        Ok(known)
    }

    async fn wait_kernel(&self, kernel_id: KernelId) -> Result<KernelExit> {
        let mut exit = {
            let kernels = self.kernels.lock().expect("kernels");
            kernels.get(&kernel_id).ok_or_else(|| Error::KernelNotFound { id: kernel_id.to_string() })?.exit.clone()
        };
        let done = exit.wait_for(Option::is_some).await.map_err(|_| Error::internal("kernel watcher ended"))?;
        Ok(done.clone().expect("checked"))
    }

    async fn logs(&self, kernel_id: KernelId) -> Result<String> {
        let path = self.kernel_dir(kernel_id).join("runner.log");
        let bytes = tokio::fs::read(&path).await.map_err(|_| Error::KernelNotFound { id: kernel_id.to_string() })?;
        let tail = bytes.len().saturating_sub(1 << 20);
        Ok(String::from_utf8_lossy(&bytes[tail..]).into_owned())
    }

    fn work_dir(&self, kernel_id: KernelId) -> Result<PathBuf> {
        let work = self.kernel_dir(kernel_id).join("work");
        if !work.is_dir() {
            return Err(Error::KernelNotFound { id: kernel_id.to_string() });
        }
        Ok(work)
    }
}

/// The runner's `--mount` argument for a folder: the kernel's `/home/work` is the work directory here.
fn mount_arg(mount: &VFolderMount, work: &Path) -> Result<String> {
    let rel = mount
        .kernel_path
        .strip_prefix("/home/work/")
        .filter(|rel| !rel.is_empty() && !rel.split('/').any(|c| c.is_empty() || c == "." || c == ".."))
        .ok_or_else(|| Error::InvalidParams {
            msg: format!("mount path {:?} is not inside /home/work", mount.kernel_path),
        })?;
    let mode = if mount.permission.can_write() { "rw" } else { "ro" };
    Ok(format!("{}:{}:{mode}", mount.host_path.display(), work.join(rel).display()))
}
