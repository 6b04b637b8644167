//! Per-kernel cgroups for the process runtime, where the machine lets the agent create them: a memory limit with no
//! extra swap and a CPU quota from the kernel's slots. cgroup v2 (one unified directory) and v1 (the `memory` and
//! `cpu` hierarchies) are both handled; the runner joins the groups itself before it starts anything.

use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use backend_core::ResourceSlots;
use rust_decimal::prelude::ToPrimitive;
use std::path::{Path, PathBuf};

/// The CFS period used for CPU quotas, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Where kernels' cgroups are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2: `<root>/<kernel>` with `memory.max`, `memory.swap.max`, `cpu.max`.
    V2 {
        /// The parent group of all kernels.
        root: PathBuf,
    },
    /// cgroup v1: `<memory>/<kernel>` and `<cpu>/<kernel>`.
    V1 {
        /// The parent group in the memory hierarchy.
        memory: PathBuf,
        /// The parent group in the cpu hierarchy.
        cpu: PathBuf,
    },
}

impl Cgroups {
    /// Finds a writable cgroup hierarchy under `/sys/fs/cgroup` and makes the `backend-ai` parent group, or `None`
    /// when the machine does not allow it (then kernels run with rlimits only).
    pub fn detect() -> Option<Self> {
        let base = Path::new("/sys/fs/cgroup");
        let parent = "backend-ai";
        let found = if base.join("cgroup.controllers").is_file() {
            let root = base.join(parent);
            std::fs::create_dir_all(&root).ok()?;
            // Children of the parent may only use controllers the parent hands down.
            let _ = std::fs::write(base.join("cgroup.subtree_control"), "+memory +cpu");
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
            Cgroups::V2 { root }
        } else {
            let memory = base.join("memory").join(parent);
            let cpu = base.join("cpu").join(parent);
            std::fs::create_dir_all(&memory).ok()?;
            std::fs::create_dir_all(&cpu).ok()?;
            Cgroups::V1 { memory, cpu }
        };
        // Prove it works with a throwaway group.
        let probe = KernelId::new();
        let dirs = found.create(probe, &ResourceSlots::new()).ok()?;
        found.remove(&dirs);
        Some(found)
    }

    /// Makes the kernel's groups with limits from its slots; returns the directories the runner must join.
    pub fn create(&self, kernel: KernelId, slots: &ResourceSlots) -> Result<Vec<PathBuf>> {
        let mem = slots.get("mem").trunc().to_u64().filter(|m| *m > 0);
        let quota = (slots.get("cpu") * rust_decimal::Decimal::from(CPU_PERIOD_US)).trunc().to_u64().filter(|q| *q > 0);
        let write = |dir: &Path, file: &str, value: String| {
            std::fs::write(dir.join(file), &value)
                .map_err(|e| Error::io(format!("setting {file}={value} in {}", dir.display()), e))
        };
        let mkdir =
            |dir: &Path| std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e));
        match self {
            Cgroups::V2 { root } => {
                let dir = root.join(kernel.to_string());
                mkdir(&dir)?;
                if let Some(m) = mem {
                    write(&dir, "memory.max", m.to_string())?;
                    // No swap beyond the memory limit; absent when the kernel has no swap accounting.
                    if dir.join("memory.swap.max").exists() {
                        write(&dir, "memory.swap.max", "0".into())?;
                    }
                }
                if let Some(q) = quota {
                    write(&dir, "cpu.max", format!("{q} {CPU_PERIOD_US}"))?;
                }
                Ok(vec![dir])
            }
            Cgroups::V1 { memory, cpu } => {
                let mdir = memory.join(kernel.to_string());
                let cdir = cpu.join(kernel.to_string());
                mkdir(&mdir)?;
                mkdir(&cdir)?;
                if let Some(m) = mem {
                    write(&mdir, "memory.limit_in_bytes", m.to_string())?;
                    if mdir.join("memory.memsw.limit_in_bytes").exists() {
                        write(&mdir, "memory.memsw.limit_in_bytes", m.to_string())?;
                    }
                }
                if let Some(q) = quota {
                    write(&cdir, "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                    write(&cdir, "cpu.cfs_quota_us", q.to_string())?;
                }
                Ok(vec![mdir, cdir])
            }
        }
    }

    /// The kernel's group directories (whether or not they exist).
    pub fn dirs(&self, kernel: KernelId) -> Vec<PathBuf> {
        match self {
            Cgroups::V2 { root } => vec![root.join(kernel.to_string())],
            Cgroups::V1 { memory, cpu } => vec![memory.join(kernel.to_string()), cpu.join(kernel.to_string())],
        }
    }

    /// Removes the groups (they must be empty: call after the kernel's processes are gone).
    pub fn remove(&self, dirs: &[PathBuf]) {
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a kernel cgroup");
                }
            }
        }
    }
}
