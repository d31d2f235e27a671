//! The state one identification shares between the parsers: the bounds, the deadline, the
//! pickle and inflate budgets left, the findings, and every pickle walked so far, from which the
//! artifact's one pickle verdict is made (whichever parsers met the streams).

use std::{collections::HashSet, io::Read};

use crate::{
    Limits,
    io::{Deadline, Reader},
    pickle_scan::{self, Import, PicklePolicy},
    report::{Finding, PickleVerdict, Safety, Severity, codes},
};

/// State shared by the parsers during one identification: the bounds, the deadline, the pickle
/// policy, the pickle and inflate budgets left, the pickles walked so far and the findings.
pub struct Ctx<'a> {
    pub limits: &'a Limits,
    pub policy: &'a PicklePolicy,
    /// Every reader of this identification checks it (see [`Ctx::reader`]).
    pub deadline: Deadline,
    pub findings: Vec<Finding>,
    pickle_budget: u64,
    inflate_budget: u64,
    imports: Vec<Import>,
    import_set: HashSet<Import>,
    imports_unlisted: u64,
    malicious_unlisted: usize,
    streams: Vec<String>,
    complete: bool,
}

impl<'a> Ctx<'a> {
    /// A context whose deadline is the limits' time budget from now.
    pub fn new(limits: &'a Limits, policy: &'a PicklePolicy) -> Self {
        Self::with_deadline(limits, policy, Deadline::after(limits.analysis_budget(), None))
    }

    pub fn with_deadline(limits: &'a Limits, policy: &'a PicklePolicy, deadline: Deadline) -> Self {
        Self {
            limits,
            policy,
            deadline,
            findings: Vec::new(),
            pickle_budget: limits.max_pickle_bytes,
            inflate_budget: limits.max_parse_bytes,
            imports: Vec::new(),
            import_set: HashSet::new(),
            imports_unlisted: 0,
            malicious_unlisted: 0,
            streams: Vec::new(),
            complete: true,
        }
    }

    pub fn finding(&mut self, severity: Severity, code: &str, message: impl Into<String>) {
        // Past the deadline every read fails, and the parsers would call that content
        // malformed or over a limit: one `analysis_incomplete` finding says what happened.
        if self.deadline.hit().is_some() && (code == codes::MALFORMED || code == codes::LIMIT_EXCEEDED) {
            return;
        }
        self.findings.push(Finding::new(severity, code, message));
    }

    /// A reader over `src` bound by this identification's deadline.
    pub fn reader<'r>(&self, src: &'r mut dyn crate::io::ReadSeek, len: u64) -> crate::io::PResult<Reader<'r>> {
        Ok(Reader::new(src, len)?.with_deadline(self.deadline.clone()))
    }

    /// Whether every pickle met so far was walked to its end.
    pub fn pickles_complete(&self) -> bool {
        self.complete
    }

    /// Bytes that zip entries other than pickles may still inflate to, across the whole
    /// artifact (nested zips, configurations, NumPy headers): duplicates and nesting cannot
    /// multiply what one file costs. Pickle entries are bounded by the pickle budget.
    pub fn inflate_left(&self) -> u64 {
        self.inflate_budget
    }

    pub fn spend_inflate(&mut self, bytes: u64) {
        self.inflate_budget = self.inflate_budget.saturating_sub(bytes);
    }

    /// Walks the pickle stream(s) in `r`, labelled `label` in the report.
    pub fn scan_pickle(&mut self, label: &str, r: &mut dyn Read) -> pickle_scan::Walk {
        let walk = pickle_scan::walk_until(r, self.pickle_budget, &self.deadline, self.policy);
        self.record_walk(label, walk.clone());
        walk
    }

    /// Walks a `storages` or `tensors` member of a legacy torch tar (`r[r.pos()..end]`).
    pub fn scan_torch_tar_member(&mut self, label: &str, member: pickle_scan::TarMember, r: &mut Reader<'_>, end: u64) {
        let walk = pickle_scan::walk_torch_tar_member(member, r, end, self.pickle_budget, self.policy);
        self.record_walk(label, walk);
    }

    /// Walks `r` from its start as a pickle, as any loader that unpickles the whole file
    /// would, and records the walk only if it shows a pickle: content in another format can
    /// start with one (a tar name field, an HDF5 user block). Returns the walk when recorded.
    pub fn sniff_pickle(&mut self, label: &str, r: &mut dyn Read) -> Option<pickle_scan::Walk> {
        let walk = pickle_scan::walk_until(r, self.pickle_budget, &self.deadline, self.policy);
        // A sniff cut short by the deadline is not recorded here: `identify` marks the pickle
        // judgement of the whole artifact incomplete.
        if !pickle_scan::walk_shows_pickle(&walk) {
            // Not recorded, but read: it still spends the budget.
            self.pickle_budget = self.pickle_budget.saturating_sub(walk.bytes);
            return None;
        }
        self.record_walk(label, walk.clone());
        Some(walk)
    }

    /// Records a walk made elsewhere.
    fn record_walk(&mut self, label: &str, walk: pickle_scan::Walk) {
        self.pickle_budget = self.pickle_budget.saturating_sub(walk.bytes);
        if let Some(why) = walk.incomplete_reason(self.limits.max_pickle_bytes) {
            self.complete = false;
            self.finding(
                Severity::Medium,
                codes::PICKLE_INCOMPLETE,
                format!("pickle stream {label} could not be walked to its end: {why}"),
            );
        }
        for imp in walk.imports {
            if self.import_set.contains(&imp) {
                continue;
            }
            if self.import_set.len() < pickle_scan::MAX_GLOBALS {
                self.import_set.insert(imp.clone());
                self.imports.push(imp);
                continue;
            }
            // Past the bound the import is judged now: a malicious one is listed anyway.
            if self.imports_unlisted == 0 {
                self.complete = false;
                self.finding(
                    Severity::Medium,
                    codes::PICKLE_INCOMPLETE,
                    format!("the pickles import more than {} distinct globals; those past the bound were judged but are not listed", pickle_scan::MAX_GLOBALS),
                );
            }
            self.imports_unlisted += 1;
            if self.malicious_unlisted < 64 && self.policy.judge(&imp) == Safety::Malicious {
                self.malicious_unlisted += 1;
                self.imports.push(imp);
            }
        }
        if self.streams.len() < 256 {
            self.streams.push(label.to_owned());
        }
    }

    /// Marks the pickle judgement as incomplete without a walk (a stream that could not even
    /// be opened, such as an encrypted zip entry, or content that was not examined).
    pub fn pickle_unreadable(&mut self, label: &str, why: &str) {
        self.complete = false;
        if self.streams.len() < 256 {
            self.streams.push(label.to_owned());
        }
        self.finding(Severity::Medium, codes::PICKLE_INCOMPLETE, format!("pickle {label} could not be read: {why}"));
    }

    pub(super) fn pickle_verdict(&mut self) -> Option<PickleVerdict> {
        if self.streams.is_empty() {
            return None;
        }
        let (verdict, offending) = pickle_scan::verdict(self.policy, &self.imports, self.complete);
        let mut globals: Vec<String> = self.imports.iter().map(Import::display).collect();
        globals.sort();
        globals.dedup();
        match verdict {
            Safety::Malicious => self.finding(
                Severity::Critical,
                codes::PICKLE_MALICIOUS,
                format!("loading this pickle runs code: it imports {}", offending.join(", ")),
            ),
            Safety::Suspicious if !offending.is_empty() => self.finding(
                Severity::High,
                codes::PICKLE_SUSPICIOUS,
                format!("pickle imports globals outside the allowlist: {}", offending.join(", ")),
            ),
            _ => {}
        }
        Some(PickleVerdict { verdict, globals, offending, streams: self.streams.clone(), complete: self.complete })
    }
}
