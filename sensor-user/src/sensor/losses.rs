//! The loss ledger: every counter of something the sensor could not see, deliver or do, and how
//! much of it was already reported, so that each loss reaches the stream exactly once, as an
//! `EventsLost` per source with the growth of each named counter.
//!
//! Sources report cumulative counters (they never go down); the ledger remembers the last value
//! it published for each (source, name) and publishes the difference. A new counter is one
//! [`Loss`] line where the sensor gathers them; nothing else needs to know about it.

use std::collections::BTreeMap;

use crate::proto::v1::{EventsLost, LossSource, Severity};

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
    /// sources first appear in `counters`), and remembers them as reported.
    pub fn report(&mut self, counters: &[Loss]) -> Vec<(Severity, EventsLost)> {
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
        assert!(ledger.report(&counters(0, 0, 0)).is_empty(), "nothing lost, nothing said");
        let out = ledger.report(&counters(5, 0, 2));
        assert_eq!(out.len(), 2);
        let (sev, kernel) = &out[0];
        assert_eq!((*sev, kernel.source, kernel.count), (Severity::High, LossSource::Kernel as i32, 5));
        assert_eq!(kernel.by_kind.get("file_open"), Some(&5));
        assert!(!kernel.by_kind.contains_key("file_mmap"));
        assert_eq!((out[1].1.source, out[1].1.count), (LossSource::Decode as i32, 2));
        // Only the growth is reported next time, and unchanged sources stay quiet.
        let out = ledger.report(&counters(7, 1, 2));
        assert_eq!(
            out.iter().map(|(_, e)| (e.source, e.count)).collect::<Vec<_>>(),
            [(LossSource::Kernel as i32, 2), (LossSource::KernelMap as i32, 1)]
        );
        assert!(ledger.report(&counters(7, 1, 2)).is_empty());
    }
}
