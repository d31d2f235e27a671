//! Rate-limited records: the kernel holds each process to a fair share of the ring buffer and
//! counts what it drops, globally and per process. This component turns those counters into
//! losses charged to the processes that caused them.
//!
//! It owns the last reported totals (global and per process) and the exited processes whose
//! kernel entries are still to be removed once their last drops are reported.

use std::collections::{HashMap, HashSet};

use crate::loader::KernelMaps;

/// Records dropped since the last report, and whose they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateDrops {
    /// Every record the limit dropped (the kernel's global counter grew by this much).
    pub count: u64,
    /// (tgid, records) per process, most first; their sum can fall short of `count` when the
    /// kernel's per-process map had no room.
    pub culprits: Vec<(u32, u64)>,
}

/// The kernel's per-process drop counters, as the drain needs them.
pub trait RateCounters {
    /// Cumulative drops per process.
    fn rate_drops(&self) -> Vec<(u32, u64)>;
    /// Removes the entries of these processes.
    fn forget_rate(&mut self, tgids: &HashSet<u32>);
}

impl RateCounters for KernelMaps {
    fn rate_drops(&self) -> Vec<(u32, u64)> {
        KernelMaps::rate_drops(self)
    }

    fn forget_rate(&mut self, tgids: &HashSet<u32>) {
        KernelMaps::forget_rate(self, tgids);
    }
}

#[derive(Debug, Default)]
pub struct RateLimits {
    reported_total: u64,
    per_process: HashMap<u32, u64>,
    exited: Vec<u32>,
}

impl RateLimits {
    /// The process exited: its kernel entry goes after its last drops are reported.
    pub fn exited(&mut self, tgid: u32) {
        self.exited.push(tgid);
    }

    /// What was dropped since the last call, given the kernel's cumulative global counter
    /// `total`; `None` when nothing was. Then forgets the processes that exited.
    pub fn drain(&mut self, maps: &mut impl RateCounters, total: u64) -> Option<RateDrops> {
        let mut culprits = Vec::new();
        for (tgid, dropped) in maps.rate_drops() {
            let prev = self.per_process.insert(tgid, dropped).unwrap_or(0);
            if dropped > prev {
                culprits.push((tgid, dropped - prev));
            }
        }
        culprits.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let exited: HashSet<u32> = std::mem::take(&mut self.exited).into_iter().collect();
        if !exited.is_empty() {
            maps.forget_rate(&exited);
            self.per_process.retain(|t, _| !exited.contains(t));
        }
        let count = total.saturating_sub(self.reported_total);
        self.reported_total = self.reported_total.max(total);
        (count > 0).then_some(RateDrops { count, culprits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        drops: Vec<(u32, u64)>,
        forgotten: Vec<u32>,
    }

    impl RateCounters for Fake {
        fn rate_drops(&self) -> Vec<(u32, u64)> {
            self.drops.clone()
        }

        fn forget_rate(&mut self, tgids: &HashSet<u32>) {
            self.forgotten.extend(tgids);
            self.drops.retain(|(t, _)| !tgids.contains(t));
        }
    }

    #[test]
    fn drops_are_reported_once_and_charged_to_their_processes() {
        let mut limits = RateLimits::default();
        let mut kernel = Fake { drops: vec![(10, 5), (11, 50)], ..Default::default() };
        assert!(limits.drain(&mut kernel, 0).is_none(), "nothing dropped, nothing said");
        let mut limits = RateLimits::default();
        let d = limits.drain(&mut kernel, 60).unwrap();
        assert_eq!(d, RateDrops { count: 60, culprits: vec![(11, 50), (10, 5)] }, "most first; 5 uncharged");
        kernel.drops[0].1 = 7;
        let d = limits.drain(&mut kernel, 62).unwrap();
        assert_eq!(d, RateDrops { count: 2, culprits: vec![(10, 2)] });
        assert!(limits.drain(&mut kernel, 62).is_none());
        // An exited process is reported once more, then forgotten (its pid may come back).
        limits.exited(11);
        kernel.drops[1].1 = 51;
        assert_eq!(limits.drain(&mut kernel, 63).unwrap().culprits, [(11, 1)]);
        assert_eq!(kernel.forgotten, [11]);
        kernel.drops.push((11, 3));
        assert_eq!(limits.drain(&mut kernel, 66).unwrap().culprits, [(11, 3)], "a reused pid starts afresh");
    }
}
