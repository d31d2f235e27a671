//! Device usage: which accelerator nodes are watched, which processes hold them, and the ioctl
//! counts the kernel keeps per (process, device, command) — drained into per-interval deltas.
//!
//! It owns the watched-device table, the last drained totals and the exited processes whose
//! kernel counters are still to be forgotten. It returns deltas and leaves publishing and the
//! session tracker to the sensor.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::PathBuf,
    time::Instant,
};

use sensor_ebpf::{IoctlKey, kernel_dev_from_user};

use crate::{
    accel::{
        discovery::{self, DeviceInfo, Roots},
        ioctls,
    },
    config::ExtraDevice,
    enrich,
    loader::{KernelMaps, LoaderError},
    proto::v1::{AcceleratorActivity, CategoryCount},
};

/// ioctls of one process on one device since the last drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlDelta {
    pub tgid: u32,
    pub rdev: u32,
    /// (command, count), in command order.
    pub cmds: Vec<(u32, u64)>,
}

/// The kernel's per-(process, device, command) ioctl counters, as the drain needs them.
pub trait IoctlCounters {
    /// Cumulative counts, summed over CPUs.
    fn ioctl_counts(&self) -> Vec<(IoctlKey, u64)>;
    /// Forgets every counter of these processes (pids get reused).
    fn forget_processes(&mut self, tgids: &HashSet<u32>);
}

impl IoctlCounters for KernelMaps {
    fn ioctl_counts(&self) -> Vec<(IoctlKey, u64)> {
        KernelMaps::ioctl_counts(self)
    }

    fn forget_processes(&mut self, tgids: &HashSet<u32>) {
        KernelMaps::forget_processes(self, tgids);
    }
}

pub struct DeviceUsage {
    devices: HashMap<u32, DeviceInfo>,
    /// Cumulative count per key at the last drain.
    seen: HashMap<IoctlKey, u64>,
    last_drain: Instant,
    /// Processes that exited since the last drain.
    exited: Vec<u32>,
}

impl Default for DeviceUsage {
    fn default() -> Self {
        Self { devices: HashMap::new(), seen: HashMap::new(), last_drain: Instant::now(), exited: Vec::new() }
    }
}

impl DeviceUsage {
    pub fn get(&self, rdev: u32) -> Option<&DeviceInfo> {
        self.devices.get(&rdev)
    }

    /// How many devices are watched.
    pub fn count(&self) -> usize {
        self.devices.len()
    }

    /// Watched device paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut devs: Vec<String> = self.devices.values().map(|d| d.accel.path.clone()).collect();
        devs.sort();
        devs
    }

    /// The watched devices as the schema describes them, sorted by path.
    pub fn accelerators(&self) -> Vec<crate::proto::v1::Accelerator> {
        let mut devs: Vec<_> = self.devices.values().map(|d| d.accel.clone()).collect();
        devs.sort_by(|a, b| a.path.cmp(&b.path));
        devs
    }

    /// Watches accelerators that appeared since the last call, and finds the processes that
    /// already hold one.
    pub fn discover(&mut self, maps: &mut KernelMaps, extra: &[ExtraDevice]) -> Result<(), LoaderError> {
        for dev in discovery::discover(&Roots::default(), extra) {
            if self.devices.contains_key(&dev.rdev) {
                continue;
            }
            maps.watch_device(dev.rdev, dev.accel.kind as u32)?;
            tracing::info!(device = %dev.accel.path, driver = %dev.accel.driver, "watching accelerator");
            self.devices.insert(dev.rdev, dev);
        }
        if !self.devices.is_empty() {
            self.seed_device_users(maps);
        }
        Ok(())
    }

    /// Processes that already hold a watched device (opened before the sensor started, or
    /// received over a socket) are found in /proc, so their ioctls are counted too.
    /// Each fd's target is read as a link (procfs answers that itself) and only device paths
    /// are stat(2)ed: following every fd would reach into any filesystem, a hung one included.
    fn seed_device_users(&self, maps: &mut KernelMaps) {
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        let me = std::process::id();
        let known: Vec<PathBuf> = self.devices.values().map(|d| PathBuf::from(&d.accel.path)).collect();
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            let holds = fds.flatten().any(|fd| {
                let Ok(target) = std::fs::read_link(fd.path()) else { return false };
                if !target.starts_with("/dev/") && !known.contains(&target) {
                    return false;
                }
                // The fd itself, not the path: the process may live in another mount namespace.
                std::fs::metadata(fd.path())
                    .ok()
                    .filter(|m| m.file_type().is_char_device())
                    .is_some_and(|m| self.devices.contains_key(&kernel_dev_from_user(m.rdev())))
            });
            if holds && let Err(e) = maps.add_device_user(pid) {
                tracing::debug!(pid, "cannot watch ioctls: {e}");
            }
        }
    }

    /// The process exited: its kernel counters are forgotten at the next drain.
    pub fn exited(&mut self, tgid: u32) {
        self.exited.push(tgid);
    }

    /// The ioctl counts that grew since the last drain (and the interval, in ns), then forgets
    /// the counters of processes that exited.
    pub fn drain(&mut self, maps: &mut impl IoctlCounters) -> (u64, Vec<IoctlDelta>) {
        let now = Instant::now();
        let interval_ns = now.duration_since(self.last_drain).as_nanos() as u64;
        self.last_drain = now;
        let mut per: BTreeMap<(u32, u32), Vec<(u32, u64)>> = BTreeMap::new();
        for (key, total) in maps.ioctl_counts() {
            let prev = self.seen.insert(key, total).unwrap_or(0);
            if total > prev {
                per.entry((key.tgid, key.rdev)).or_default().push((key.cmd, total - prev));
            }
        }
        let deltas = per.into_iter().map(|((tgid, rdev), cmds)| IoctlDelta { tgid, rdev, cmds }).collect();
        // Only processes that used a watched device have counts to forget (drained just above,
        // so they are all in `seen`). A process whose counts never fitted in the kernel map
        // leaves a first-use flag behind; that map is LRU and recycles it.
        let exited: HashSet<u32> = std::mem::take(&mut self.exited).into_iter().collect();
        let users: HashSet<u32> = self.seen.keys().map(|k| k.tgid).filter(|t| exited.contains(t)).collect();
        if !users.is_empty() {
            maps.forget_processes(&users);
            self.seen.retain(|k, _| !users.contains(&k.tgid));
        }
        (interval_ns, deltas)
    }

    /// A delta as the stream reports it.
    pub fn activity(&self, d: &IoctlDelta, interval_ns: u64) -> AcceleratorActivity {
        let dev = self.devices.get(&d.rdev);
        let ioctls: Vec<_> = d.cmds.iter().map(|(cmd, n)| enrich::ioctl_count(dev, *cmd, *n)).collect();
        let mut cats: BTreeMap<i32, u64> = BTreeMap::new();
        for c in &ioctls {
            *cats.entry(c.category).or_default() += c.count;
        }
        AcceleratorActivity {
            device: dev.map(|d| d.accel.clone()),
            first_use: false,
            total: ioctls.iter().map(|c| c.count).sum(),
            ioctls,
            categories: cats.into_iter().map(|(category, count)| CategoryCount { category, count }).collect(),
            interval_ns,
            first_command: None,
        }
    }

    /// A delta's counts per decoded category, for the session tracker.
    pub fn category_mix(&self, d: &IoctlDelta) -> Option<(&DeviceInfo, Vec<(ioctls::IoctlCategory, u64)>)> {
        let dev = self.devices.get(&d.rdev)?;
        let mut mix: BTreeMap<ioctls::IoctlCategory, u64> = BTreeMap::new();
        for (cmd, n) in &d.cmds {
            *mix.entry(ioctls::category_of(dev.driver, *cmd)).or_default() += n;
        }
        Some((dev, mix.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeCounters {
        counts: Vec<(IoctlKey, u64)>,
        forgotten: Vec<u32>,
    }

    impl IoctlCounters for FakeCounters {
        fn ioctl_counts(&self) -> Vec<(IoctlKey, u64)> {
            self.counts.clone()
        }

        fn forget_processes(&mut self, tgids: &HashSet<u32>) {
            self.forgotten.extend(tgids);
            self.counts.retain(|(k, _)| !tgids.contains(&k.tgid));
        }
    }

    fn key(tgid: u32, cmd: u32) -> IoctlKey {
        IoctlKey { tgid, rdev: 7, cmd, _pad0: 0 }
    }

    #[test]
    fn drains_deltas_per_process_and_forgets_exited_ones() {
        let mut usage = DeviceUsage::default();
        let mut kernel = FakeCounters {
            counts: vec![(key(1, 0x10), 5), (key(1, 0x20), 1), (key(2, 0x10), 3)],
            ..Default::default()
        };
        let (_, d) = usage.drain(&mut kernel);
        assert_eq!(
            d,
            [
                IoctlDelta { tgid: 1, rdev: 7, cmds: vec![(0x10, 5), (0x20, 1)] },
                IoctlDelta { tgid: 2, rdev: 7, cmds: vec![(0x10, 3)] },
            ]
        );
        // Only growth is reported; unchanged counters say nothing.
        kernel.counts[0].1 = 8;
        let (_, d) = usage.drain(&mut kernel);
        assert_eq!(d, [IoctlDelta { tgid: 1, rdev: 7, cmds: vec![(0x10, 3)] }]);
        // An exited process is forgotten in the kernel and here, after its last counts drained.
        usage.exited(2);
        usage.exited(99);
        let (_, d) = usage.drain(&mut kernel);
        assert!(d.is_empty());
        assert_eq!(kernel.forgotten, [2], "only processes that had counters");
        kernel.counts.push((key(2, 0x10), 1));
        let (_, d) = usage.drain(&mut kernel);
        assert_eq!(d, [IoctlDelta { tgid: 2, rdev: 7, cmds: vec![(0x10, 1)] }], "a reused pid starts from zero");
    }
}
