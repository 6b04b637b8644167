//! The agent's accelerator devices: which plugin it runs ([`AcceleratorSetting`]: `none`, `mock:N` or `nvidia`), what
//! they add to its capacity, and which devices each of its kernels holds ([`KernelDevices`]).
//!
//! A kernel asking for `cuda.device` or `cuda.shares` gets devices from the plugin when it is created (all or
//! nothing; `QuotaExceeded` fails the create), the plugin's environment (`CUDA_VISIBLE_DEVICES`, ...) and its
//! container arguments (`--gpus "device=0"`, which the Docker runtime turns into a device request). The devices are
//! given back when the kernel is destroyed or ends by itself; a restart keeps them.
//!
//! Restarts of the agent: the allocations are written to `accelerator.json` in the agent's state directory (when it
//! has one), and a restarted agent takes back exactly the devices of the kernels it re-attaches; entries of kernels
//! that did not survive are dropped. Without a state directory nothing is written and re-attached kernels hold no
//! devices in the new agent's books.

use backend_core::accelerator::{
    AcceleratorPlugin, DeviceAllocation, MockAccelerator, NvidiaAccelerator, CUDA_DEVICE, CUDA_SHARES,
};
use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use backend_core::runtime::KernelSpec;
use backend_core::ResourceSlots;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Which accelerator plugin an agent runs (`agent.accelerator`, `--accelerator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AcceleratorSetting {
    /// No accelerator: the agent offers no device slots and refuses kernels that ask for them.
    #[default]
    None,
    /// `mock:N`: N fake CUDA devices ([`MockAccelerator`]), for tests and demonstrations.
    Mock(u32),
    /// `nvidia`: the GPUs `nvidia-smi` lists ([`NvidiaAccelerator`]); none found means no device slots.
    Nvidia,
}

impl AcceleratorSetting {
    /// The plugin this setting names; `None` for no accelerator.
    pub fn build(self) -> Option<Arc<dyn AcceleratorPlugin>> {
        match self {
            AcceleratorSetting::None => None,
            AcceleratorSetting::Mock(n) => Some(Arc::new(MockAccelerator::new(n))),
            AcceleratorSetting::Nvidia => {
                let plugin = NvidiaAccelerator::detect();
                if plugin.devices().is_empty() {
                    tracing::info!("nvidia-smi found no GPU: this agent offers no cuda slots");
                }
                Some(Arc::new(plugin))
            }
        }
    }
}

impl std::str::FromStr for AcceleratorSetting {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "" | "none" => Ok(AcceleratorSetting::None),
            "nvidia" | "cuda" => Ok(AcceleratorSetting::Nvidia),
            _ => s.strip_prefix("mock:").and_then(|n| n.trim().parse().ok()).map(AcceleratorSetting::Mock).ok_or_else(
                || Error::InvalidParams {
                    msg: format!("unknown accelerator {s:?} (none, nvidia, or mock:N for N fake devices)"),
                },
            ),
        }
    }
}

impl std::fmt::Display for AcceleratorSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcceleratorSetting::None => f.write_str("none"),
            AcceleratorSetting::Mock(n) => write!(f, "mock:{n}"),
            AcceleratorSetting::Nvidia => f.write_str("nvidia"),
        }
    }
}

impl TryFrom<String> for AcceleratorSetting {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<AcceleratorSetting> for String {
    fn from(s: AcceleratorSetting) -> Self {
        s.to_string()
    }
}

/// What `accelerator.json` holds: per kernel, device index → share (as decimal text).
type Ledger = BTreeMap<KernelId, BTreeMap<u32, Decimal>>;

/// The devices each kernel of an agent holds, over its plugin.
pub struct KernelDevices {
    plugin: Option<Arc<dyn AcceleratorPlugin>>,
    held: Mutex<HashMap<KernelId, DeviceAllocation>>,
    state_file: Option<PathBuf>,
}

impl KernelDevices {
    /// Books over `plugin` (none: no devices), written to `state_file` when given.
    pub fn new(plugin: Option<Arc<dyn AcceleratorPlugin>>, state_file: Option<PathBuf>) -> Self {
        Self { plugin, held: Mutex::default(), state_file }
    }

    /// The plugin, if the agent has one.
    pub fn plugin(&self) -> Option<&Arc<dyn AcceleratorPlugin>> {
        self.plugin.as_ref()
    }

    /// What the devices add to the agent's capacity (nothing without a plugin or without devices).
    pub fn capacity(&self) -> ResourceSlots {
        match &self.plugin {
            Some(p) if !p.devices().is_empty() => p.capacity(),
            _ => ResourceSlots::new(),
        }
    }

    /// The devices a kernel holds.
    pub fn held(&self, id: KernelId) -> Option<DeviceAllocation> {
        self.held.lock().expect("device books").get(&id).cloned()
    }

    /// Gives `spec`'s kernel its devices: the ones it already holds (a restart), or new ones from the plugin when it
    /// asks for device slots; then adds the plugin's environment and container arguments to the spec. A kernel
    /// asking for no device slots is left as it is.
    pub fn prepare(&self, spec: &mut KernelSpec) -> Result<()> {
        let mut device_slots: Vec<&str> = vec![CUDA_DEVICE, CUDA_SHARES];
        if let Some(p) = &self.plugin {
            device_slots.extend(p.slot_names());
        }
        let asked: Vec<String> = device_slots
            .iter()
            .filter(|s| !spec.slots.get(s).is_zero())
            .map(|s| format!("{s}={}", spec.slots.get(s).normalize()))
            .collect();
        let held = self.held(spec.kernel_id);
        if asked.is_empty() && held.is_none() {
            return Ok(());
        }
        let Some(plugin) = &self.plugin else {
            return Err(Error::QuotaExceeded {
                msg: format!("this agent has no accelerator, but the kernel asks for {}", asked.join(", ")),
            });
        };
        let allocation = match held {
            Some(a) => a,
            None => {
                let a = plugin.allocate(&spec.slots).map_err(|e| match e {
                    Error::QuotaExceeded { msg } => {
                        Error::QuotaExceeded { msg: format!("{msg} (the kernel asks for {})", asked.join(", ")) }
                    }
                    other => other,
                })?;
                self.held.lock().expect("device books").insert(spec.kernel_id, a.clone());
                self.save();
                a
            }
        };
        spec.environ.extend(plugin.kernel_environ(&allocation));
        spec.container_args.extend(plugin.container_args(&allocation));
        Ok(())
    }

    /// Gives back the devices a kernel held (nothing when it held none).
    pub fn release(&self, id: KernelId) {
        let Some(allocation) = self.held.lock().expect("device books").remove(&id) else { return };
        if let Some(p) = &self.plugin {
            p.free(&allocation);
        }
        self.save();
    }

    /// After a restart: takes back, from the state file, the devices of the kernels in `kept` (those re-attached);
    /// the others' entries are dropped. A device that can no longer be taken (the setting changed) is logged and
    /// left out.
    pub fn restore(&self, kept: &[KernelId]) {
        let Some(path) = &self.state_file else { return };
        let ledger: Ledger = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "unreadable accelerator state: starting empty");
                Ledger::new()
            }),
            Err(_) => Ledger::new(),
        };
        {
            let mut held = self.held.lock().expect("device books");
            for (id, devices) in ledger {
                if !kept.contains(&id) || held.contains_key(&id) {
                    continue;
                }
                let allocation = DeviceAllocation { devices };
                let restored = match &self.plugin {
                    Some(p) => p.restore(&allocation),
                    None => Err(Error::QuotaExceeded { msg: "the agent has no accelerator now".into() }),
                };
                match restored {
                    Ok(()) => {
                        held.insert(id, allocation);
                    }
                    Err(e) => tracing::warn!(kernel = %id, error = %e, "could not restore a kernel's devices"),
                }
            }
        }
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.state_file else { return };
        let ledger: Ledger =
            self.held.lock().expect("device books").iter().map(|(id, a)| (*id, a.devices.clone())).collect();
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&ledger)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "could not record the kernels' devices");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_print() {
        assert_eq!("mock:2".parse::<AcceleratorSetting>().unwrap(), AcceleratorSetting::Mock(2));
        assert_eq!("NVIDIA".parse::<AcceleratorSetting>().unwrap(), AcceleratorSetting::Nvidia);
        assert_eq!("none".parse::<AcceleratorSetting>().unwrap(), AcceleratorSetting::None);
        assert!("mock:x".parse::<AcceleratorSetting>().is_err());
        assert!("tpu".parse::<AcceleratorSetting>().is_err());
        assert_eq!(AcceleratorSetting::Mock(3).to_string(), "mock:3");
        assert!(AcceleratorSetting::None.build().is_none());
        assert_eq!(AcceleratorSetting::Mock(2).build().unwrap().devices().len(), 2);
    }
}
