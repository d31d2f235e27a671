//! The sensor's side of usage: draining the kernel's ioctl counts, sampling CPU time and GPU
//! telemetry, and feeding the session tracker whose conclusions become session events.

use super::{
    AcceleratorActivity, Arc, BTreeMap, CategoryCount, DeviceInfo, Instant, Observation, Payload, ProcessInfo, Sensor,
    SessionEvent, SystemTime, TInstant, enrich, host, ioctls,
};

/// ioctl counts of one drain, per decoded category.
fn category_mix(dev: &DeviceInfo, cmds: &[(u32, u64)]) -> Vec<(ioctls::IoctlCategory, u64)> {
    let mut mix: BTreeMap<ioctls::IoctlCategory, u64> = BTreeMap::new();
    for (cmd, n) in cmds {
        *mix.entry(ioctls::category_of(dev.driver, *cmd)).or_default() += n;
    }
    mix.into_iter().collect()
}

/// utime + stime of a process, in ns, from /proc/<pid>/stat.
fn cpu_time_ns(pid: u32, ns_per_tick: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime).saturating_mul(ns_per_tick))
}

impl Sensor {
    /// Feeds the session tracker and publishes what it concludes.
    pub(super) fn observe(&mut self, p: &Arc<ProcessInfo>, obs: Observation<'_>) {
        let out = self.tracker.observe(TInstant::now(), SystemTime::now(), p, obs);
        self.publish_sessions(out);
    }

    pub(super) fn publish_sessions(&mut self, events: Vec<SessionEvent>) {
        for ev in events {
            let (subject, payload) = match ev {
                SessionEvent::Started(s, p) => (s, Payload::SessionStarted(p)),
                SessionEvent::Updated(s, p) => (s, Payload::SessionUpdated(p)),
                SessionEvent::Ended(s, p) => (s, Payload::SessionEnded(p)),
            };
            // The table's entry when the process is still there (it may have exec'd since),
            // else the identity the session was opened with.
            let process = self.table.get(subject.pid).filter(|p| p.entity_id == subject.entity_id).unwrap_or(subject);
            let event = self.enricher.event(host::boottime_ns(), Some((&process, process.pid)), payload);
            self.publish(event);
        }
    }

    /// Samples CPU time of session candidates and GPU utilisation, then lets the tracker
    /// update and expire sessions.
    pub fn sample_usage(&mut self) {
        for pid in self.tracker.candidates() {
            let Some(p) = self.table.get(pid) else { continue };
            if let Some(cpu_time_ns) = cpu_time_ns(pid, self.ns_per_tick) {
                self.observe(&p, Observation::Cpu { cpu_time_ns });
            }
        }
        let snapshot = self.telemetry.sample(&self.tracker.accelerator_users());
        for s in snapshot.processes {
            let Some(p) = self.table.get(s.pid) else { continue };
            self.observe(
                &p,
                Observation::Gpu {
                    device: s.device,
                    sm_percent: s.sm_percent,
                    memory_bytes: s.memory_bytes,
                    engine_busy_ns: s.engine_busy_ns,
                },
            );
        }
        let out = self.tracker.tick(TInstant::now());
        self.publish_sessions(out);
        let nvml = self.telemetry.nvml_state();
        if let Ok(mut st) = self.status.lock() {
            st.nvml = nvml;
        }
    }

    /// Reports ioctl counts that changed since the last drain, then forgets exited processes.
    pub fn drain_ioctls(&mut self) {
        let now = Instant::now();
        let interval_ns = now.duration_since(self.last_drain).as_nanos() as u64;
        self.last_drain = now;
        let mut per: BTreeMap<(u32, u32), Vec<(u32, u64)>> = BTreeMap::new();
        for (key, total) in self.maps.ioctl_counts() {
            let prev = self.ioctl_seen.insert(key, total).unwrap_or(0);
            if total > prev {
                per.entry((key.tgid, key.rdev)).or_default().push((key.cmd, total - prev));
            }
        }
        let ktime = host::boottime_ns();
        for ((tgid, rdev), cmds) in per {
            let dev = self.devices.get(&rdev);
            let ioctls: Vec<_> = cmds.iter().map(|(cmd, n)| enrich::ioctl_count(dev, *cmd, *n)).collect();
            let mut cats: BTreeMap<i32, u64> = BTreeMap::new();
            for c in &ioctls {
                *cats.entry(c.category).or_default() += c.count;
            }
            let total = ioctls.iter().map(|c| c.count).sum();
            let payload = Payload::AcceleratorActivity(AcceleratorActivity {
                device: dev.map(|d| d.accel.clone()),
                first_use: false,
                ioctls,
                categories: cats.into_iter().map(|(category, count)| CategoryCount { category, count }).collect(),
                interval_ns,
                total,
                first_command: None,
            });
            let process = self.table.get(tgid);
            self.publish(self.enricher.event(ktime, process.as_deref().map(|p| (p, tgid)), payload));
            if let (Some(p), Some(dev)) = (process, dev) {
                let categories = category_mix(dev, &cmds);
                let (device, compute_only_driver) = (dev.accel.clone(), dev.driver.is_compute_only());
                self.observe(&p, Observation::Ioctls { device: &device, compute_only_driver, categories });
            }
        }
        // Only processes that used a watched device have counts to forget (drained just above,
        // so they are all in `ioctl_seen`). A process whose counts never fitted in the kernel
        // map leaves a first-use flag behind; that map is LRU and recycles it.
        let exited: std::collections::HashSet<u32> = std::mem::take(&mut self.forget).into_iter().collect();
        let users: std::collections::HashSet<u32> =
            self.ioctl_seen.keys().map(|k| k.tgid).filter(|t| exited.contains(t)).collect();
        if !users.is_empty() {
            self.maps.forget_processes(&users);
            self.ioctl_seen.retain(|k, _| !users.contains(&k.tgid));
        }
    }
}
