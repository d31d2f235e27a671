//! The loss ledger: every counter of something the sensor could not see, deliver or do, and how
//! much of it was already reported, so that each loss reaches the stream exactly once, as an
//! `EventsLost` per source with the growth of each named counter.
//!
//! Sources report cumulative counters (they never go down); the ledger remembers the last value
//! it published for each (source, name) and publishes the difference. A new counter is one
//! [`Loss`] line where the sensor gathers them; nothing else needs to know about it.
//!
//! Where a source can tell who caused a loss (whose events overflowed a queue or a share of
//! it), it charges that process in [`Culprits`]; each report names the top few per source and
//! starts counting afresh.

use std::collections::{BTreeMap, HashMap};

use crate::{
    process::ProcessInfo,
    proto::v1::{EventsLost, LossCulprit, LossSource, Severity},
};

/// Culprits named per `EventsLost`.
pub const TOP_CULPRITS: usize = 5;
/// Processes counted per source between two reports; beyond, the least charged one is replaced
/// (its count carries over, so a process that floods is never pushed out by many small ones).
const MAX_CULPRITS: usize = 256;

/// Who caused the losses since the last report, per source.
#[derive(Debug, Default)]
pub struct Culprits {
    by_source: BTreeMap<i32, HashMap<String, LossCulprit>>,
}

impl Culprits {
    /// Charges `n` lost items of `source` to `p`.
    pub fn charge(&mut self, source: LossSource, p: &ProcessInfo, n: u64) {
        let book = self.by_source.entry(source as i32).or_default();
        if let Some(c) = book.get_mut(&p.entity_id) {
            c.count += n;
            return;
        }
        // Space-saving: the newcomer takes the place (and the count) of the least charged
        // process, so heavy hitters are never undercounted.
        let mut inherited = 0;
        if book.len() >= MAX_CULPRITS
            && let Some(victim) = book.values().min_by_key(|c| c.count).map(|c| c.entity_id.clone())
            && let Some(v) = book.remove(&victim)
        {
            inherited = v.count;
        }
        book.insert(
            p.entity_id.clone(),
            LossCulprit {
                pid: p.pid,
                comm: p.comm.clone(),
                uid: p.uid,
                user: p.user.clone(),
                count: inherited + n,
                entity_id: p.entity_id.clone(),
            },
        );
    }

    /// The top culprits of `source`, most first; forgets them.
    fn take(&mut self, source: i32) -> Vec<LossCulprit> {
        let mut all: Vec<LossCulprit> = self.by_source.remove(&source).unwrap_or_default().into_values().collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        all.truncate(TOP_CULPRITS);
        all
    }
}

/// One cumulative loss counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub source: LossSource,
    pub name: &'static str,
    pub value: u64,
}

impl Loss {
    pub const fn new(source: LossSource, name: &'static str, value: u64) -> Self {
        Self { source, name, value }
    }
}

/// How a source's losses are reported: how bad they are and what they mean to an analyst.
fn describe(source: LossSource) -> (Severity, &'static str) {
    match source {
        LossSource::Kernel => {
            (Severity::High, "the kernel dropped records: ring buffer full (per kind) or over a budget (by name)")
        }
        LossSource::KernelMap => (Severity::High, "a kernel map was full"),
        LossSource::Decode => (Severity::Medium, "records the collector could not decode"),
        LossSource::Analyzer => (Severity::Medium, "artifact analyses that did not happen"),
        LossSource::SessionTracker => (Severity::Medium, "processes not followed: the session table is full"),
        _ => (Severity::Medium, "events not delivered"),
    }
}

#[derive(Debug, Default)]
pub struct LossLedger {
    reported: BTreeMap<(i32, &'static str), u64>,
}

impl LossLedger {
    /// The losses not reported yet, one `EventsLost` per source that grew (in the order the
    /// sources first appear in `counters`), each naming its top culprits, and remembers them as
    /// reported. Culprits are counted afresh from here.
    /// Every counter seen so far with the total reported for it.
    pub fn totals(&self) -> Vec<(LossSource, &'static str, u64)> {
        self.reported
            .iter()
            .filter_map(|(&(source, name), &v)| Some((LossSource::try_from(source).ok()?, name, v)))
            .collect()
    }

    pub fn report(&mut self, counters: &[Loss], culprits: &mut Culprits) -> Vec<(Severity, EventsLost)> {
        let mut out: Vec<(Severity, EventsLost)> = Vec::new();
        for c in counters {
            let was = self.reported.entry((c.source as i32, c.name)).or_insert(0);
            if c.value <= *was {
                continue;
            }
            let grew = c.value - *was;
            *was = c.value;
            let at = match out.iter().position(|(_, e)| e.source == c.source as i32) {
                Some(i) => i,
                None => {
                    let (severity, detail) = describe(c.source);
                    out.push((
                        severity,
                        EventsLost { source: c.source as i32, detail: detail.into(), ..Default::default() },
                    ));
                    out.len() - 1
                }
            };
            let lost = &mut out[at].1;
            lost.count += grew;
            *lost.by_kind.entry(c.name.to_owned()).or_default() += grew;
        }
        for (_, lost) in &mut out {
            lost.culprits = culprits.take(lost.source);
            // A culprit's count is within what this report says was lost (a charge can land
            // just after its counter was read).
            for c in &mut lost.culprits {
                c.count = c.count.min(lost.count);
            }
        }
        *culprits = Culprits::default();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_loss_is_reported_once_grouped_by_source() {
        let mut ledger = LossLedger::default();
        let counters = |ring: u64, map: u64, undecodable: u64| {
            [
                Loss::new(LossSource::Kernel, "file_open", ring),
                Loss::new(LossSource::Kernel, "file_mmap", 0),
                Loss::new(LossSource::KernelMap, "pending_full", map),
                Loss::new(LossSource::Decode, "undecodable", undecodable),
            ]
        };
        let none = &mut Culprits::default();
        assert!(ledger.report(&counters(0, 0, 0), none).is_empty(), "nothing lost, nothing said");
        let out = ledger.report(&counters(5, 0, 2), none);
        assert_eq!(out.len(), 2);
        let (sev, kernel) = &out[0];
        assert_eq!((*sev, kernel.source, kernel.count), (Severity::High, LossSource::Kernel as i32, 5));
        assert_eq!(kernel.by_kind.get("file_open"), Some(&5));
        assert!(!kernel.by_kind.contains_key("file_mmap"));
        assert_eq!((out[1].1.source, out[1].1.count), (LossSource::Decode as i32, 2));
        // Only the growth is reported next time, and unchanged sources stay quiet.
        let out = ledger.report(&counters(7, 1, 2), none);
        assert_eq!(
            out.iter().map(|(_, e)| (e.source, e.count)).collect::<Vec<_>>(),
            [(LossSource::Kernel as i32, 2), (LossSource::KernelMap as i32, 1)]
        );
        assert!(ledger.report(&counters(7, 1, 2), none).is_empty());
        // The totals are what was reported, including counters that never grew.
        let totals = ledger.totals();
        assert_eq!(totals.len(), 4);
        assert!(totals.contains(&(LossSource::Kernel, "file_open", 7)));
        assert!(totals.contains(&(LossSource::Kernel, "file_mmap", 0)));
        assert!(totals.contains(&(LossSource::Decode, "undecodable", 2)));
    }

    fn proc(pid: u32, uid: u32) -> ProcessInfo {
        ProcessInfo { pid, uid, entity_id: format!("e{pid}"), comm: format!("c{pid}"), ..Default::default() }
    }

    #[test]
    fn reports_name_the_top_culprits_of_their_source() {
        let mut ledger = LossLedger::default();
        let mut culprits = Culprits::default();
        let (flooder, other) = (proc(10, 65534), proc(11, 1000));
        for _ in 0..1000 {
            culprits.charge(LossSource::Analyzer, &flooder, 3);
        }
        culprits.charge(LossSource::Analyzer, &other, 1);
        // Many one-off processes do not push the flooder out.
        for pid in 100..1000 {
            culprits.charge(LossSource::Analyzer, &proc(pid, 1), 1);
        }
        culprits.charge(LossSource::Kernel, &other, 9);
        let out = ledger.report(&[Loss::new(LossSource::Analyzer, "lookup_dropped", 5000)], &mut culprits);
        assert_eq!(out.len(), 1);
        let lost = &out[0].1;
        assert_eq!(lost.culprits.len(), TOP_CULPRITS);
        assert_eq!((lost.culprits[0].pid, lost.culprits[0].uid, lost.culprits[0].count), (10, 65534, 3000));
        assert_eq!(lost.culprits[0].entity_id, "e10");
        assert!(lost.culprits.windows(2).all(|w| w[0].count >= w[1].count));
        // Counted afresh: the next report names nobody who caused nothing since.
        let out = ledger.report(&[Loss::new(LossSource::Analyzer, "lookup_dropped", 5001)], &mut culprits);
        assert!(out[0].1.culprits.is_empty());
    }
}
