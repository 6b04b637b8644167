//! Accelerator plugins: the devices an agent has (GPUs), the slot kinds they add to its capacity (`cuda.device` for
//! whole devices, `cuda.shares` for fractions of one), which devices a kernel gets, and the environment that makes
//! the kernel see them.
//!
//! [`MockAccelerator`] is the embedded implementation (configurable fake devices); [`NvidiaAccelerator`] asks
//! `nvidia-smi` when it is installed and has no devices otherwise. Both keep an [`AllocationMap`], which avoids
//! fragmentation: a fraction goes to the partly used device with the least room that still holds it (best fit), so
//! idle devices stay whole for requests of whole devices.
//!
//! The agent (`backend-agent`, setting `agent.accelerator` = `none`, `mock:N` or `nvidia`) adds [`capacity`] to its
//! heartbeat, so the manager places kernels asking for `cuda.device` / `cuda.shares` only on agents that have them;
//! it [`allocate`]s a kernel's devices when it creates it (`QuotaExceeded` fails the create), gives the kernel
//! [`kernel_environ`] and [`container_args`] (the Docker runtime turns `--gpus` into a device request), [`free`]s
//! them when the kernel is destroyed or ends, and after its own restart [`restore`]s the devices of the kernels it
//! re-attaches from the allocations it recorded.
//!
//! [`capacity`]: AcceleratorPlugin::capacity
//! [`allocate`]: AcceleratorPlugin::allocate
//! [`kernel_environ`]: AcceleratorPlugin::kernel_environ
//! [`container_args`]: AcceleratorPlugin::container_args
//! [`free`]: AcceleratorPlugin::free
//! [`restore`]: AcceleratorPlugin::restore
//!
//! ```
//! use backend_core::accelerator::{AcceleratorPlugin, MockAccelerator};
//! use backend_core::ResourceSlots;
//! let gpus = MockAccelerator::new(2);
//! let half = ResourceSlots::from_pairs([("cuda.shares", "0.5")]).unwrap();
//! let a = gpus.allocate(&half).unwrap();
//! let b = gpus.allocate(&half).unwrap();
//! assert_eq!(a.devices, b.devices, "two halves share one device");
//! assert_eq!(gpus.kernel_environ(&a)["CUDA_VISIBLE_DEVICES"], "0");
//! gpus.free(&a);
//! gpus.free(&b);
//! ```

use crate::error::{Error, Result};
use crate::slots::ResourceSlots;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Slot of whole CUDA devices.
pub const CUDA_DEVICE: &str = "cuda.device";
/// Slot of fractional CUDA devices (1 = one whole device).
pub const CUDA_SHARES: &str = "cuda.shares";

/// One accelerator device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its index as the driver numbers it (`0`), used in `CUDA_VISIBLE_DEVICES`.
    pub index: u32,
    /// A stable id (`GPU-8f3c...`).
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Device memory in bytes.
    pub memory: u64,
}

/// The devices one kernel got: device index → the fraction of it (1 for a whole device).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAllocation {
    /// Per device index, the share taken.
    pub devices: BTreeMap<u32, Decimal>,
}

/// An accelerator plugin: discovery, slot kinds, allocation and the kernel's view of its devices.
pub trait AcceleratorPlugin: Send + Sync {
    /// The plugin's name (`cuda`).
    fn name(&self) -> &'static str;
    /// Slot kinds it provides (`cuda.device`, `cuda.shares`).
    fn slot_names(&self) -> Vec<&'static str>;
    /// Devices found.
    fn devices(&self) -> Vec<Device>;
    /// What it adds to the agent's capacity: each slot kind it provides, counted in devices.
    fn capacity(&self) -> ResourceSlots {
        let n = Decimal::from(self.devices().len() as u64);
        let mut slots = ResourceSlots::new();
        for name in self.slot_names() {
            slots.set(name, n);
        }
        slots
    }
    /// Devices for a kernel asking for `requested` (slots of other plugins are ignored). `QuotaExceeded` when they
    /// are not free now; nothing is taken then.
    fn allocate(&self, requested: &ResourceSlots) -> Result<DeviceAllocation>;
    /// Gives an allocation back.
    fn free(&self, allocation: &DeviceAllocation);
    /// Takes exactly these shares of these devices again: an agent that restarts and re-attaches to its kernels
    /// restores what they held, so new kernels do not get the same devices. `QuotaExceeded` when a device is unknown
    /// or the shares no longer fit; nothing is taken then.
    fn restore(&self, allocation: &DeviceAllocation) -> Result<()>;
    /// Environment variables that make the kernel see its devices (`CUDA_VISIBLE_DEVICES`).
    fn kernel_environ(&self, allocation: &DeviceAllocation) -> BTreeMap<String, String>;
    /// Extra container-runtime arguments (`--gpus device=0,1`); none by default.
    fn container_args(&self, allocation: &DeviceAllocation) -> Vec<String> {
        let _ = allocation;
        Vec::new()
    }
}

/// Which share of each device is in use, and the best-fit rules that hand devices out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationMap {
    used: BTreeMap<u32, Decimal>,
}

impl AllocationMap {
    /// A map of idle devices with these indices.
    pub fn new(indices: impl IntoIterator<Item = u32>) -> Self {
        Self { used: indices.into_iter().map(|i| (i, Decimal::ZERO)).collect() }
    }

    /// The share of each device in use.
    pub fn used(&self) -> &BTreeMap<u32, Decimal> {
        &self.used
    }

    /// Takes `whole` idle devices and then `shares` (a whole part as idle devices, the rest as a fraction of the
    /// partly used device with the least room that holds it, or of an idle one when none does). All or nothing.
    pub fn allocate(&mut self, whole: Decimal, shares: Decimal) -> Result<DeviceAllocation> {
        let refuse = || Error::QuotaExceeded {
            msg: format!("not enough free accelerator devices for {whole} whole and {shares} shares"),
        };
        if whole.is_sign_negative() || shares.is_sign_negative() || !whole.fract().is_zero() {
            return Err(Error::InvalidParams { msg: "device counts must be whole and not negative".into() });
        }
        let mut trial = self.used.clone();
        let mut got = DeviceAllocation::default();
        let whole_devices = whole + shares.trunc();
        let fraction = shares.fract();
        let mut need = whole_devices;
        for (index, used) in trial.iter_mut() {
            if need.is_zero() {
                break;
            }
            if used.is_zero() {
                *used = Decimal::ONE;
                got.devices.insert(*index, Decimal::ONE);
                need -= Decimal::ONE;
            }
        }
        if !need.is_zero() {
            return Err(refuse());
        }
        if !fraction.is_zero() {
            // Best fit: the least room that still holds the fraction; partly used devices have less room than idle
            // ones, so they fill up first.
            let (index, _) = trial
                .iter()
                .map(|(i, used)| (*i, Decimal::ONE - *used))
                .filter(|(_, room)| *room >= fraction)
                .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
                .ok_or_else(refuse)?;
            *trial.get_mut(&index).expect("known device") += fraction;
            *got.devices.entry(index).or_default() += fraction;
        }
        self.used = trial;
        Ok(got)
    }

    /// Takes exactly `allocation` (device by device), all or nothing: for re-attaching kernels after a restart.
    pub fn claim(&mut self, allocation: &DeviceAllocation) -> Result<()> {
        let mut trial = self.used.clone();
        for (index, share) in &allocation.devices {
            let used = trial.get_mut(index).filter(|u| **u + *share <= Decimal::ONE && !share.is_sign_negative());
            let Some(used) = used else {
                return Err(Error::QuotaExceeded { msg: format!("device {index} cannot take {share} more") });
            };
            *used += *share;
        }
        self.used = trial;
        Ok(())
    }

    /// Gives an allocation back (never below zero).
    pub fn free(&mut self, allocation: &DeviceAllocation) {
        for (index, share) in &allocation.devices {
            if let Some(used) = self.used.get_mut(index) {
                *used = (*used - *share).max(Decimal::ZERO);
            }
        }
    }
}

fn visible_devices(allocation: &DeviceAllocation) -> BTreeMap<String, String> {
    let list: Vec<String> = allocation.devices.keys().map(u32::to_string).collect();
    let mut env = BTreeMap::new();
    env.insert("CUDA_VISIBLE_DEVICES".to_owned(), list.join(","));
    let shares: Vec<String> = allocation.devices.iter().map(|(i, s)| format!("{i}:{}", s.normalize())).collect();
    env.insert("BACKENDAI_CUDA_SHARES".to_owned(), shares.join(","));
    env
}

/// Fake CUDA devices for tests and the standalone stack: whole-device (`cuda.device`) and fractional
/// (`cuda.shares`) slots over one [`AllocationMap`].
#[derive(Debug)]
pub struct MockAccelerator {
    devices: Vec<Device>,
    map: Mutex<AllocationMap>,
}

impl MockAccelerator {
    /// `n` fake devices with 16 GiB each.
    pub fn new(n: u32) -> Self {
        Self::with_devices(
            (0..n)
                .map(|index| Device {
                    index,
                    uuid: format!("MOCK-GPU-{index}"),
                    model: "Mock GPU".into(),
                    memory: 16 << 30,
                })
                .collect(),
        )
    }

    /// These devices.
    pub fn with_devices(devices: Vec<Device>) -> Self {
        let map = AllocationMap::new(devices.iter().map(|d| d.index));
        Self { devices, map: Mutex::new(map) }
    }

    /// The share of each device in use.
    pub fn usage(&self) -> BTreeMap<u32, Decimal> {
        self.map.lock().expect("allocation map").used().clone()
    }
}

impl AcceleratorPlugin for MockAccelerator {
    fn name(&self) -> &'static str {
        "cuda"
    }
    fn slot_names(&self) -> Vec<&'static str> {
        vec![CUDA_DEVICE, CUDA_SHARES]
    }
    fn devices(&self) -> Vec<Device> {
        self.devices.clone()
    }
    fn allocate(&self, requested: &ResourceSlots) -> Result<DeviceAllocation> {
        self.map.lock().expect("allocation map").allocate(requested.get(CUDA_DEVICE), requested.get(CUDA_SHARES))
    }
    fn free(&self, allocation: &DeviceAllocation) {
        self.map.lock().expect("allocation map").free(allocation);
    }
    fn restore(&self, allocation: &DeviceAllocation) -> Result<()> {
        self.map.lock().expect("allocation map").claim(allocation)
    }
    fn kernel_environ(&self, allocation: &DeviceAllocation) -> BTreeMap<String, String> {
        visible_devices(allocation)
    }
}

/// NVIDIA GPUs found by `nvidia-smi`, as whole devices (`cuda.device`): fractions need a sharing layer in the
/// container that this server does not ship. No devices when `nvidia-smi` is missing or fails.
#[derive(Debug)]
pub struct NvidiaAccelerator {
    devices: Vec<Device>,
    map: Mutex<AllocationMap>,
}

impl NvidiaAccelerator {
    /// Runs `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`.
    pub fn detect() -> Self {
        let output = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"])
            .output();
        let devices = match output {
            Ok(out) if out.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)),
            _ => Vec::new(),
        };
        let map = AllocationMap::new(devices.iter().map(|d| d.index));
        Self { devices, map: Mutex::new(map) }
    }
}

/// Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` (memory in MiB);
/// lines that do not parse are skipped.
pub fn parse_nvidia_smi(csv: &str) -> Vec<Device> {
    csv.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, uuid, model, memory] = fields.as_slice() else { return None };
            Some(Device {
                index: index.parse().ok()?,
                uuid: (*uuid).to_owned(),
                model: (*model).to_owned(),
                memory: memory.parse::<u64>().ok()? << 20,
            })
        })
        .collect()
}

impl AcceleratorPlugin for NvidiaAccelerator {
    fn name(&self) -> &'static str {
        "cuda"
    }
    fn slot_names(&self) -> Vec<&'static str> {
        vec![CUDA_DEVICE]
    }
    fn devices(&self) -> Vec<Device> {
        self.devices.clone()
    }
    fn allocate(&self, requested: &ResourceSlots) -> Result<DeviceAllocation> {
        if !requested.get(CUDA_SHARES).is_zero() {
            return Err(Error::InvalidParams { msg: format!("{CUDA_SHARES} is not available on this agent") });
        }
        self.map.lock().expect("allocation map").allocate(requested.get(CUDA_DEVICE), Decimal::ZERO)
    }
    fn free(&self, allocation: &DeviceAllocation) {
        self.map.lock().expect("allocation map").free(allocation);
    }
    fn restore(&self, allocation: &DeviceAllocation) -> Result<()> {
        self.map.lock().expect("allocation map").claim(allocation)
    }
    fn kernel_environ(&self, allocation: &DeviceAllocation) -> BTreeMap<String, String> {
        let mut env = visible_devices(allocation);
        env.remove("BACKENDAI_CUDA_SHARES");
        env
    }
    fn container_args(&self, allocation: &DeviceAllocation) -> Vec<String> {
        if allocation.devices.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = allocation.devices.keys().map(u32::to_string).collect();
        vec!["--gpus".into(), format!("\"device={}\"", list.join(","))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(s: &str) -> ResourceSlots {
        ResourceSlots::from_pairs([(CUDA_SHARES, s)]).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn fractions_pack_onto_partly_used_devices_first() {
        let gpus = MockAccelerator::new(3);
        let a = gpus.allocate(&shares("0.5")).unwrap();
        let b = gpus.allocate(&shares("0.3")).unwrap();
        assert_eq!(a.devices.keys().collect::<Vec<_>>(), b.devices.keys().collect::<Vec<_>>());
        // 0.2 left on device 0: a 0.25 goes to an idle device, a 0.2 fills device 0 exactly (best fit).
        let c = gpus.allocate(&shares("0.25")).unwrap();
        assert_eq!(c.devices, BTreeMap::from([(1, dec("0.25"))]));
        let d = gpus.allocate(&shares("0.2")).unwrap();
        assert_eq!(d.devices, BTreeMap::from([(0, dec("0.2"))]));
        // Device 2 is still whole, so a whole device is still there.
        let whole = ResourceSlots::from_pairs([(CUDA_DEVICE, "1")]).unwrap();
        assert_eq!(gpus.allocate(&whole).unwrap().devices, BTreeMap::from([(2, Decimal::ONE)]));
        assert!(gpus.allocate(&whole).is_err(), "no idle device left");
        assert_eq!(gpus.kernel_environ(&d)["CUDA_VISIBLE_DEVICES"], "0");
    }

    #[test]
    fn shares_above_one_take_whole_devices_plus_a_fraction_and_never_over_allocate() {
        let gpus = MockAccelerator::new(2);
        let a = gpus.allocate(&shares("1.5")).unwrap();
        assert_eq!(a.devices, BTreeMap::from([(0, Decimal::ONE), (1, dec("0.5"))]));
        let before = gpus.usage();
        assert!(gpus.allocate(&shares("0.6")).is_err());
        assert_eq!(gpus.usage(), before, "a refused allocation takes nothing");
        assert_eq!(gpus.kernel_environ(&a)["CUDA_VISIBLE_DEVICES"], "0,1");
        gpus.free(&a);
        assert!(gpus.usage().values().all(|u| u.is_zero()), "free gives every share back");
        assert_eq!(gpus.capacity().get(CUDA_SHARES), Decimal::from(2));
    }

    #[test]
    fn restore_takes_exactly_what_was_held_or_nothing() {
        let gpus = MockAccelerator::new(2);
        let held = DeviceAllocation { devices: BTreeMap::from([(1, Decimal::ONE), (0, dec("0.5"))]) };
        gpus.restore(&held).unwrap();
        assert_eq!(gpus.usage(), BTreeMap::from([(0, dec("0.5")), (1, Decimal::ONE)]));
        let whole = ResourceSlots::from_pairs([(CUDA_DEVICE, "1")]).unwrap();
        assert!(gpus.allocate(&whole).is_err(), "no idle device after the restore");
        let before = gpus.usage();
        let too_much = DeviceAllocation { devices: BTreeMap::from([(0, dec("0.4")), (1, dec("0.1"))]) };
        assert!(gpus.restore(&too_much).is_err());
        let unknown = DeviceAllocation { devices: BTreeMap::from([(7, Decimal::ONE)]) };
        assert!(gpus.restore(&unknown).is_err());
        assert_eq!(gpus.usage(), before, "a refused restore takes nothing");
        assert_eq!(gpus.allocate(&shares("0.5")).unwrap().devices, BTreeMap::from([(0, dec("0.5"))]));
    }

    #[test]
    fn nvidia_smi_output_parses_and_absence_means_no_devices() {
        let csv = "0, GPU-aaa, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-bbb, NVIDIA A100-SXM4-40GB, 40960\ngarbage\n";
        let devices = parse_nvidia_smi(csv);
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].uuid, "GPU-bbb");
        assert_eq!(devices[0].memory, 40960 << 20);
        let detected = NvidiaAccelerator::detect();
        if std::process::Command::new("nvidia-smi").output().is_err() {
            assert!(detected.devices().is_empty());
        }
        let plugin = NvidiaAccelerator { map: Mutex::new(AllocationMap::new([0, 1])), devices };
        let got = plugin.allocate(&ResourceSlots::from_pairs([(CUDA_DEVICE, "2")]).unwrap()).unwrap();
        assert_eq!(plugin.container_args(&got), vec!["--gpus".to_owned(), "\"device=0,1\"".to_owned()]);
    }

    proptest! {
        #[test]
        fn the_map_never_over_allocates_and_free_restores(
            devices in 1u32..5,
            requests in proptest::collection::vec((0u32..3, 0u32..20), 1..30),
            release in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let gpus = MockAccelerator::new(devices);
            let mut held = Vec::new();
            for (i, (whole, tenths)) in requests.iter().enumerate() {
                let mut req = ResourceSlots::new();
                req.set(CUDA_DEVICE, Decimal::from(*whole));
                req.set(CUDA_SHARES, Decimal::new(i64::from(*tenths), 1));
                let before = gpus.usage();
                match gpus.allocate(&req) {
                    Ok(a) => {
                        let total: Decimal = a.devices.values().copied().sum();
                        prop_assert_eq!(total, Decimal::from(*whole) + Decimal::new(i64::from(*tenths), 1));
                        held.push(a);
                    }
                    Err(_) => prop_assert_eq!(gpus.usage(), before),
                }
                prop_assert!(gpus.usage().values().all(|u| *u <= Decimal::ONE && !u.is_sign_negative()));
                if release[i] && !held.is_empty() {
                    gpus.free(&held.remove(0));
                }
            }
            for a in held.drain(..) {
                gpus.free(&a);
            }
            prop_assert!(gpus.usage().values().all(|u| u.is_zero()));
        }
    }
}
