//! The candidate gate: model events wait for the content verdict.
//!
//! The kernel selects candidates by what it can see cheaply — a model extension, a model
//! directory, a size, a process with runtime evidence — and that selects Python's `.pth` path
//! files, large binaries, archives and logs too. So an open or a mapping of a candidate is
//! held here until the analyzer says what the file version is:
//! - a model: the event is published, with the time of the open or mmap and the artifact
//!   summary, and the session tracker learns of it;
//! - not a model: it is dropped and counted per kind of candidate (`candidates_rejected` in
//!   status; each logged at debug level);
//! - content of no known format: published (`MATCH_REASON_UNIDENTIFIED`) only when the other
//!   evidence is strong — an unambiguous model extension or a model directory, in a process
//!   that has shown inference-runtime evidence — else dropped and counted;
//! - no verdict (the file vanished before it could be read, or the analyzer did not answer in
//!   time): published (`MATCH_REASON_UNIDENTIFIED`) when it was selected by a model extension
//!   or a model directory — a model-named file that disappears before it can be judged is
//!   itself worth a look — and dropped and counted when only its size selected it.
//!
//! Repeated events of one file by one process (the threads of an engine opening one model at
//! once) within [`FOLD`] of the first are folded into it (`repeats`).
//!
//! The gate owns the held events and the counters; it decides nothing about content and
//! publishes nothing itself: the sensor offers events, passes verdicts and takes what is ready.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use sensor_ebpf::reason;

use super::resolver::FileKey;
use crate::{
    process::ProcessInfo,
    proto::v1::{ArtifactFormat, ArtifactSummary, MatchReason, PickleVerdict, event::Payload},
};

/// The default fold window (`files.fold_window_ms`): events of one file by one process this
/// close to the first are folded into it. Short: an engine's threads open a model within
/// microseconds of each other, and every event that is already judged waits this long.
#[cfg(test)]
const FOLD: Duration = Duration::from_millis(20);

/// How long an event waits for its verdict before it is judged on its other evidence: above
/// the analyzer's time budget (5 s by default) with room for its queue.
pub const VERDICT_WAIT: Duration = Duration::from_secs(15);

/// Events held at most; beyond it the oldest are judged at once, on their other evidence.
const MAX_HELD: usize = 16_384;

/// Extensions that name a model format and nothing else. Others (`.bin`, `.pth`, `.pb`, `.h5`,
/// `.pkl`, `.npy`, ...) are as often data or code: their content decides alone.
const UNAMBIGUOUS: &[&str] = &["gguf", "ggml", "safetensors", "onnx", "tflite", "llamafile", "mlmodel", "keras"];

/// What the content says about a file version.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not analysed yet.
    Pending,
    Model(ArtifactSummary),
    /// Not a model: why (for the log), and what it is.
    NotModel(&'static str, Option<Box<ArtifactSummary>>),
    /// Read, but of no known format.
    Unknown(Option<Box<ArtifactSummary>>),
    /// No verdict will come (the file could not be analysed).
    Failed,
}

impl Verdict {
    /// The verdict a known summary gives.
    pub fn of(summary: Option<ArtifactSummary>) -> Self {
        let Some(s) = summary else { return Verdict::Pending };
        let format = ArtifactFormat::try_from(s.format).unwrap_or(ArtifactFormat::Unknown);
        let risky_pickle = s.pickle == PickleVerdict::Suspicious as i32 || s.pickle == PickleVerdict::Malicious as i32;
        match format {
            ArtifactFormat::NotAModel => Verdict::NotModel("not a model", Some(Box::new(s))),
            ArtifactFormat::Unknown | ArtifactFormat::Unspecified => Verdict::Unknown(Some(Box::new(s))),
            // Data containers (plain HDF5, NumPy arrays) are no models, unless they carry
            // pickled code that is not safe: that is reported like a model.
            ArtifactFormat::Hdf5 | ArtifactFormat::Numpy | ArtifactFormat::NumpyZip if !risky_pickle => {
                Verdict::NotModel("a data array, not a model", Some(Box::new(s)))
            }
            _ => Verdict::Model(s),
        }
    }
}

/// A model event waiting for its verdict.
pub struct Candidate {
    pub key: FileKey,
    /// When it happened (`CLOCK_BOOTTIME`), and on which thread.
    pub ktime_ns: u64,
    pub tid: u32,
    pub process: Arc<ProcessInfo>,
    /// `ModelFileOpened` or `ModelMapped`, without the artifact yet.
    pub payload: Payload,
    /// The kernel's reasons (`sensor_ebpf::reason` bits).
    pub reasons: u32,
    /// The file's name, for the extension rule.
    pub path: String,
    /// The process has shown inference-runtime evidence.
    pub runtime_process: bool,
    /// Opened for writing only: what it holds when judged is what is being replaced.
    pub write_only: bool,
}

/// An event the gate let through: publish it, then tell the session tracker.
pub struct Released {
    pub ktime_ns: u64,
    pub tid: u32,
    pub process: Arc<ProcessInfo>,
    pub payload: Payload,
}

struct Held {
    c: Candidate,
    since: Instant,
    verdict: Verdict,
    repeats: u32,
    fold: Fold,
}

/// What later events fold into: (tgid, file version, open or mapping).
type Fold = (u32, FileKey, Kind);

/// Which of a process's events on a file an event is: an open, or a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Open,
    Map,
}

fn kind(p: &Payload) -> Kind {
    if matches!(p, Payload::ModelMapped(_)) { Kind::Map } else { Kind::Open }
}

#[derive(Default)]
pub struct CandidateGate {
    /// Report non-models too (`files.report_non_models`).
    report_non_models: bool,
    /// `files.fold_window_ms`; zero: nothing is folded, judged events go out at once.
    fold: Duration,
    held: HashMap<u64, Held>,
    /// Held events in arrival order (ids), for deadlines.
    order: VecDeque<u64>,
    /// The held event that later ones of the same process, file and kind fold into.
    folding: HashMap<Fold, u64>,
    /// Held events per file version, for its verdict.
    /// (Ordered sets: a popular file can have thousands held, and each leaves on its own.)
    by_key: HashMap<FileKey, BTreeSet<u64>>,
    next_id: u64,
    rejected: BTreeMap<&'static str, u64>,
    unidentified: u64,
    folded: u64,
}

/// The kind of candidate, for the counters: the reason that selected it.
fn candidate_kind(reasons: u32) -> &'static str {
    [
        (reason::MODEL_DIR, "model_dir"),
        (reason::EXTENSION, "extension"),
        (reason::REQUESTED_EXTENSION, "requested_extension"),
        (reason::MAPPING_LEN, "mapping_length"),
        (reason::SIZE, "size"),
        (reason::RUNTIME_PROCESS, "runtime_process"),
    ]
    .iter()
    .find(|(bit, _)| reasons & bit != 0)
    .map_or("other", |(_, name)| name)
}

fn unambiguous_extension(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(_, ext)| UNAMBIGUOUS.iter().any(|u| u.eq_ignore_ascii_case(ext)))
}

/// Evidence strong enough to report a file whose content is of no known format.
fn strong(c: &Candidate) -> bool {
    let named = c.reasons & (reason::EXTENSION | reason::REQUESTED_EXTENSION) != 0 && unambiguous_extension(&c.path);
    (named || c.reasons & reason::MODEL_DIR != 0) && c.runtime_process
}

/// Selected by what it is called or where it lies, not only by its size; and read, not only
/// written (a file being written is judged when it is next opened, as the new version it is).
fn named_like_a_model(c: &Candidate) -> bool {
    let named =
        c.reasons & (reason::EXTENSION | reason::REQUESTED_EXTENSION | reason::MODEL_DIR | reason::MARKED_MODEL) != 0;
    named && (!c.write_only || c.runtime_process)
}

impl CandidateGate {
    pub fn new(report_non_models: bool, fold: Duration) -> Self {
        Self { report_non_models, fold, ..Self::default() }
    }

    /// New settings (a configuration reload): events held now keep the deadline they have.
    pub fn configure(&mut self, report_non_models: bool, fold: Duration) {
        self.report_non_models = report_non_models;
        self.fold = fold;
    }

    /// Takes a candidate event with what is known of its file now. Returns it at once when it
    /// is judged already and nothing folds.
    pub fn offer(&mut self, c: Candidate, verdict: Verdict, now: Instant) -> Option<Released> {
        let fold = (c.process.pid, c.key, kind(&c.payload));
        if !self.fold.is_zero()
            && let Some(h) = self.folding.get(&fold).and_then(|id| self.held.get_mut(id))
        {
            h.repeats += 1;
            self.folded += 1;
            return None;
        }
        if let Verdict::NotModel(why, _) = verdict
            && !self.report_non_models
        {
            self.reject(&c, why);
            return None;
        }
        if self.fold.is_zero() && verdict != Verdict::Pending {
            let h = Held { c, since: now, verdict, repeats: 0, fold };
            return self.settle(h);
        }
        if self.held.len() >= MAX_HELD
            && let Some(oldest) = self.order.pop_front()
            && let Some(h) = self.take(oldest)
        {
            // Judged now, on what it has: out of room to wait. (Only a flood of candidates
            // gets here; its events are the ones judged early.)
            let _ = self.settle_unjudged(h);
        }
        let id = self.next_id;
        self.next_id += 1;
        if !self.fold.is_zero() {
            self.folding.insert(fold, id);
        }
        self.by_key.entry(c.key).or_default().insert(id);
        self.order.push_back(id);
        self.held.insert(id, Held { c, since: now, verdict, repeats: 0, fold });
        None
    }

    /// Removes a held event from every index.
    fn take(&mut self, id: u64) -> Option<Held> {
        let h = self.held.remove(&id)?;
        if self.folding.get(&h.fold) == Some(&id) {
            self.folding.remove(&h.fold);
        }
        if let Some(ids) = self.by_key.get_mut(&h.c.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_key.remove(&h.c.key);
            }
        }
        Some(h)
    }

    /// The verdict for a file version: every event held for it is decided.
    pub fn decide(&mut self, key: FileKey, verdict: &Verdict) {
        for id in self.by_key.get(&key).into_iter().flatten() {
            if let Some(h) = self.held.get_mut(id)
                && h.verdict == Verdict::Pending
            {
                h.verdict = verdict.clone();
            }
        }
    }

    /// When the next held event is due (its fold window, or its wait for a verdict, ends).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|h| if h.verdict == Verdict::Pending { h.since + VERDICT_WAIT } else { h.since + self.fold })
            .min()
    }

    /// The events decided and past their fold window, or out of time: in arrival order.
    pub fn ready(&mut self, now: Instant) -> Vec<Released> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.order.len());
        while let Some(id) = self.order.pop_front() {
            let Some(h) = self.held.get(&id) else { continue };
            let due = match h.verdict {
                Verdict::Pending => now >= h.since + VERDICT_WAIT,
                _ => now >= h.since + self.fold,
            };
            if !due {
                keep.push_back(id);
                continue;
            }
            let Some(h) = self.take(id) else { continue };
            if let Some(r) = self.settle(h) {
                out.push(r);
            }
        }
        self.order = keep;
        out
    }

    /// The decided events of one file version, at once (its verdict just came: the fold window
    /// of an event that waited for it has long passed).
    pub fn release_key(&mut self, key: FileKey) -> Vec<Released> {
        let decided: Vec<u64> = self
            .by_key
            .get(&key)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| self.held.get(id).is_some_and(|h| h.verdict != Verdict::Pending))
            .collect();
        let gone: HashSet<u64> = decided.iter().copied().collect();
        self.order.retain(|id| !gone.contains(id));
        self.settle_all(decided)
    }

    /// Everything held, judged on what it has (shutdown).
    pub fn drain(&mut self) -> Vec<Released> {
        let ids: Vec<u64> = self.order.drain(..).collect();
        self.settle_all(ids)
    }

    fn settle_all(&mut self, ids: Vec<u64>) -> Vec<Released> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(h) = self.take(id)
                && let Some(r) = self.settle(h)
            {
                out.push(r);
            }
        }
        out
    }

    fn settle(&mut self, h: Held) -> Option<Released> {
        match h.verdict.clone() {
            Verdict::Model(summary) => Some(release(h, Some(summary), false)),
            Verdict::NotModel(_, summary) if self.report_non_models => Some(release(h, summary.map(|s| *s), false)),
            Verdict::NotModel(why, _) => {
                self.reject(&h.c, why);
                None
            }
            Verdict::Unknown(summary) if self.report_non_models => Some(release(h, summary.map(|s| *s), false)),
            Verdict::Unknown(summary) => {
                if strong(&h.c) {
                    self.unidentified += 1;
                    Some(release(h, summary.map(|s| *s), true))
                } else {
                    self.reject(&h.c, "no known model format, and no runtime in the process");
                    None
                }
            }
            Verdict::Pending | Verdict::Failed => self.settle_unjudged(h),
        }
    }

    fn settle_unjudged(&mut self, h: Held) -> Option<Released> {
        if self.report_non_models || named_like_a_model(&h.c) {
            self.unidentified += 1;
            Some(release(h, None, true))
        } else {
            self.reject(&h.c, "content could not be judged, and only its size selected it");
            None
        }
    }

    fn reject(&mut self, c: &Candidate, why: &str) {
        let kind = candidate_kind(c.reasons);
        *self.rejected.entry(kind).or_default() += 1;
        tracing::debug!(path = %c.path, pid = c.process.pid, candidate = kind, "not reported: {why}");
    }

    /// Candidates not reported, per kind of candidate.
    pub fn rejected(&self) -> &BTreeMap<&'static str, u64> {
        &self.rejected
    }

    /// Events reported without a content verdict.
    pub fn unidentified(&self) -> u64 {
        self.unidentified
    }

    /// Events folded into an earlier one of the same process and file.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

fn release(h: Held, summary: Option<ArtifactSummary>, unidentified: bool) -> Released {
    let Held { c, repeats, .. } = h;
    let mut payload = c.payload;
    match &mut payload {
        Payload::ModelFileOpened(o) => {
            o.artifact = summary;
            o.repeats = repeats;
            if unidentified {
                o.reasons.push(MatchReason::Unidentified as i32);
            }
        }
        Payload::ModelMapped(m) => {
            m.artifact = summary;
            if unidentified {
                m.reasons.push(MatchReason::Unidentified as i32);
            }
        }
        _ => {}
    }
    Released { ktime_ns: c.ktime_ns, tid: c.tid, process: c.process, payload }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{ModelFileOpened, ModelMapped};

    fn process(pid: u32) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo { pid, ..Default::default() })
    }

    fn open(pid: u32, key: FileKey, path: &str, reasons: u32, runtime: bool) -> Candidate {
        Candidate {
            key,
            ktime_ns: 1_000,
            tid: pid,
            process: process(pid),
            payload: Payload::ModelFileOpened(ModelFileOpened::default()),
            reasons,
            path: path.into(),
            runtime_process: runtime,
            write_only: false,
        }
    }

    fn model() -> Verdict {
        Verdict::Model(ArtifactSummary { format: ArtifactFormat::Gguf as i32, name: "m".into(), ..Default::default() })
    }

    #[test]
    fn a_model_waits_for_its_verdict_then_goes_out_with_its_time_and_repeats() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let key = (1, 2, 3, 0, 0);
        let _ = g.offer(open(7, key, "/m/x.gguf", reason::EXTENSION, false), Verdict::Pending, t0);
        for _ in 0..3 {
            let _ = g.offer(open(7, key, "/m/x.gguf", reason::EXTENSION, false), Verdict::Pending, t0);
        }
        assert!(g.ready(t0 + FOLD * 10).is_empty(), "no verdict yet");
        g.decide(key, &model());
        let out = g.ready(t0 + FOLD * 10);
        assert_eq!(out.len(), 1);
        let Payload::ModelFileOpened(o) = &out[0].payload else { panic!() };
        assert_eq!((o.repeats, out[0].ktime_ns), (3, 1_000));
        assert_eq!(o.artifact.as_ref().map(|a| a.name.as_str()), Some("m"));
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn a_known_model_waits_only_for_its_fold_window() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let _ = g.offer(open(7, (1, 2, 3, 0, 0), "/m/x.gguf", reason::MARKED_MODEL, false), model(), t0);
        assert_eq!(g.next_deadline(), Some(t0 + FOLD));
        assert!(g.ready(t0).is_empty());
        assert_eq!(g.ready(t0 + FOLD).len(), 1);
        // Another process's open of the same file is its own event.
        let _ = g.offer(open(7, (1, 2, 3, 0, 0), "/m/x.gguf", 0, false), model(), t0);
        let _ = g.offer(open(8, (1, 2, 3, 0, 0), "/m/x.gguf", 0, false), model(), t0);
        assert_eq!(g.ready(t0 + FOLD).len(), 2);
    }

    #[test]
    fn without_a_fold_window_judged_events_go_out_at_once() {
        let mut g = CandidateGate::new(false, Duration::ZERO);
        let t0 = Instant::now();
        assert!(g.offer(open(7, (1, 2, 3, 0, 0), "/m/x.gguf", 0, false), model(), t0).is_some());
        assert!(g.offer(open(7, (1, 2, 3, 0, 0), "/m/x.gguf", 0, false), model(), t0).is_some(), "nothing folds");
        assert!(
            g.offer(open(7, (1, 2, 4, 0, 0), "/m/y.gguf", 0, false), Verdict::Pending, t0).is_none(),
            "still waits"
        );
        assert!(g.offer(open(7, (1, 2, 4, 0, 0), "/m/y.gguf", 0, false), Verdict::Pending, t0).is_none());
        assert_eq!(g.held(), 2, "each waits on its own");
    }

    #[test]
    fn non_models_are_counted_by_the_reason_that_selected_them() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let _ = g.offer(
            open(7, (1, 1, 9, 0, 0), "/usr/bin/node", reason::SIZE, false),
            Verdict::NotModel("not a model", None),
            t0,
        );
        let _ = g.offer(open(7, (1, 2, 9, 0, 0), "/x/site.pth", reason::EXTENSION, false), Verdict::Pending, t0);
        g.decide((1, 2, 9, 0, 0), &Verdict::NotModel("not a model", None));
        assert!(g.ready(t0 + FOLD).is_empty());
        assert_eq!(g.rejected().get("size"), Some(&1));
        assert_eq!(g.rejected().get("extension"), Some(&1));
    }

    #[test]
    fn unknown_content_needs_strong_evidence() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let unknown = || Verdict::Unknown(None);
        // A .gguf in a runtime process: reported, flagged unidentified.
        let _ = g.offer(open(7, (1, 1, 1, 0, 0), "/m/a.gguf", reason::EXTENSION, true), unknown(), t0);
        // A .bin (ambiguous) in a runtime process, a .gguf in a plain process, a large file:
        // content alone decides, and it says nothing.
        let _ = g.offer(open(7, (1, 2, 1, 0, 0), "/m/b.bin", reason::EXTENSION, true), unknown(), t0);
        let _ = g.offer(open(8, (1, 3, 1, 0, 0), "/m/c.gguf", reason::EXTENSION, false), unknown(), t0);
        let _ = g.offer(open(8, (1, 4, 1, 0, 0), "/var/log/big.log", reason::SIZE, true), unknown(), t0);
        let out = g.ready(t0 + FOLD);
        assert_eq!(out.len(), 1);
        let Payload::ModelFileOpened(o) = &out[0].payload else { panic!() };
        assert_eq!(o.reasons, [MatchReason::Unidentified as i32]);
        assert_eq!(g.unidentified(), 1);
        assert_eq!(g.rejected().values().sum::<u64>(), 3);
    }

    #[test]
    fn without_a_verdict_a_model_name_is_reported_and_a_size_is_not() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let _ = g.offer(open(8, (1, 1, 1, 0, 0), "/m/vanished.pkl", reason::EXTENSION, false), Verdict::Pending, t0);
        let _ = g.offer(open(8, (1, 2, 1, 0, 0), "/var/log/big.log", reason::SIZE, false), Verdict::Pending, t0);
        let _ = g.offer(open(8, (1, 3, 1, 0, 0), "/m/slow.gguf", reason::EXTENSION, false), Verdict::Pending, t0);
        let mut written = open(8, (1, 4, 1, 0, 0), "/m/being-written.npy", reason::EXTENSION, false);
        written.write_only = true;
        let _ = g.offer(written, Verdict::Pending, t0);
        g.decide((1, 1, 1, 0, 0), &Verdict::Failed);
        g.decide((1, 2, 1, 0, 0), &Verdict::Failed);
        g.decide((1, 4, 1, 0, 0), &Verdict::Failed);
        let out = g.ready(t0 + FOLD);
        assert_eq!(out.len(), 1, "a failure is judged at once, the rest wait");
        assert_eq!(g.rejected().get("size"), Some(&1));
        assert_eq!(g.rejected().get("extension"), Some(&1), "a write is judged at its next open");
        let out = g.ready(t0 + VERDICT_WAIT);
        assert_eq!(out.len(), 1, "no answer in time: judged on its name");
        let Payload::ModelFileOpened(o) = &out[0].payload else { panic!() };
        assert_eq!(o.reasons, [MatchReason::Unidentified as i32]);
        assert_eq!(g.unidentified(), 2);
    }

    #[test]
    fn mappings_fold_separately_from_opens_and_drain_settles_everything() {
        let mut g = CandidateGate::new(false, FOLD);
        let t0 = Instant::now();
        let mut map = open(7, (1, 1, 1, 0, 0), "/m/a.gguf", reason::EXTENSION, false);
        map.payload = Payload::ModelMapped(ModelMapped::default());
        let _ = g.offer(open(7, (1, 1, 1, 0, 0), "/m/a.gguf", reason::EXTENSION, false), Verdict::Pending, t0);
        let _ = g.offer(map, Verdict::Pending, t0);
        assert_eq!(g.held(), 2);
        g.decide((1, 1, 1, 0, 0), &model());
        let out = g.drain();
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1].payload, Payload::ModelMapped(_)));
    }
}
