//! The artifact link: the sensor's side of artifact analysis. It owns which file version an
//! event is about (the identity lookups in flight and their answers), which process opened it,
//! which findings were already published, and the handle on the analyzer.
//!
//! Its interface is narrow: a file event asks [`ArtifactLink::summary`] what is known; the
//! resolver's answers and the analyzer's updates come in through [`ArtifactLink::on_identity`]
//! and [`ArtifactLink::on_update`], which return [`ArtifactNews`] — what to publish, which inode
//! mark to set in the kernel, what the session tracker should learn. It publishes nothing and
//! touches no kernel map itself, so its logic is tested without either.
//!
//! A verdict is about one content version. Versions are keyed exactly as the kernel saw them
//! ([`FileKey`]: device, inode, size, full ctime), and a cached verdict is reused only while the
//! kernel vouches that the content did not change under that key: the mark the collector set
//! for the version is still there ([`ArtifactLink::mark_set`]: the kernel drops it on a write
//! open or when it finds a writer), and the record carries no writer and no timestamp-less
//! write (`sensor_ebpf::content`). Otherwise the version is looked up and analysed again.

use std::{num::NonZeroUsize, path::PathBuf, sync::Arc};

use super::resolver::{FileKey, Job, Resolver};
use crate::{
    enrich::artifact as art,
    process::ProcessInfo,
    proto::v1::{ArtifactFormat, ArtifactSummary, ModelFileOpened, Severity, event::Payload},
};
use lru::LruCache;
use modelwatch_artifact::{
    ArtifactReport, FileIdentity, Format,
    service::{AnalyzerHandle, AnalyzerStats, ArtifactRequest, ArtifactUpdate, Disconnected, UpdateSink},
};
use sensor_ebpf::{FileId, InodeMark};

/// Identity lookups in flight at most.
const MAX_PENDING: usize = 1024;

/// Analyzer updates waiting for the event loop; when full, the analyzer's threads wait.
pub const ARTIFACT_UPDATES: usize = 1024;

/// Bound on the per-file bookkeeping.
const MAX_ARTIFACT_FILES: NonZeroUsize = NonZeroUsize::new(16_384).unwrap();

/// Marks remembered: as many as the kernel's INODE_MARKS holds, so that a mark the kernel
/// dropped is told apart from one the collector never set.
const MAX_MARKS: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// Opens held back until their file's content is known (see [`ArtifactLink::defer_open`]).
const MAX_DEFERRED: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

/// Delivers the analyzer's updates (sent from its own threads) into the event loop.
pub struct LoopUpdates(pub tokio::sync::mpsc::Sender<ArtifactUpdate>);

impl UpdateSink for LoopUpdates {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected> {
        self.0.blocking_send(update).map_err(|_| Disconnected)
    }
}

/// Re-reads the approved-model manifest on SIGHUP. Registered before the sensor reports ready,
/// so a SIGHUP right after start is neither missed nor fatal (its default action terminates).
pub fn reload_manifest_on_sighup(analyzer: &AnalyzerHandle) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no async runtime: the manifest reloads on change only");
        return;
    };
    let registered = {
        let _enter = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    match registered {
        Ok(mut sig) => {
            let analyzer = analyzer.clone();
            rt.spawn(async move {
                while sig.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the model manifest");
                    analyzer.reload_manifest();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP; the manifest reloads on change only"),
    }
}

/// Who opened a file version, the path the kernel reported for it, and the device number the
/// kernel knows the file by (for its inode marks).
#[derive(Clone)]
struct Opener {
    process: Arc<ProcessInfo>,
    path: String,
    kdev: u32,
}

/// What a file record (open, mmap) says about the file version it describes.
pub struct Sighting<'a> {
    pub process: &'a Arc<ProcessInfo>,
    /// The path the kernel rebuilt.
    pub path: &'a str,
    pub key: FileKey,
    /// The collector's mark the kernel still held valid for this version (`sensor_ebpf::mark`,
    /// 0: none).
    pub mark: u32,
    /// `sensor_ebpf::content` bits.
    pub content: u32,
    /// When the record was made (`CLOCK_BOOTTIME`, ns).
    pub ktime_ns: u64,
}

/// An open held back until its file's content is known: one only a runtime process's widening
/// selected (`MATCH_REASON_RUNTIME_PROCESS`), reported if the file is a model or code.
#[derive(Clone)]
pub struct DeferredOpen {
    pub ktime_ns: u64,
    pub process: Arc<ProcessInfo>,
    pub tid: u32,
    pub payload: ModelFileOpened,
}

/// What the sensor should do about an analyzer update.
#[derive(Default)]
pub struct ArtifactNews {
    /// A held-back open whose file proved a model or code: published first, with its time.
    pub opened: Option<DeferredOpen>,
    /// Events to publish, in order: (the process they are about, payload, severity).
    pub events: Vec<(Option<Arc<ProcessInfo>>, Payload, Severity)>,
    /// The verdict to record in the kernel's inode marks.
    pub mark: Option<(FileId, InodeMark)>,
    /// The file (by its kernel path) and what it is, for the session tracker.
    pub known: Option<(String, ArtifactSummary)>,
    /// The process that opened a file identified as a model: an inference runtime from now on
    /// (unless it only copies or hashes models).
    pub model_opener: Option<Arc<ProcessInfo>>,
    /// The manifest could not be reloaded: the health event's message.
    pub manifest_error: Option<String>,
}

/// Whether a file with this summary deserves a report when only a runtime process's widening
/// selected it: a model of any format (pickles included), not "no model" or "unknown".
pub fn worth_reporting(a: &ArtifactSummary) -> bool {
    !matches!(
        ArtifactFormat::try_from(a.format),
        Ok(ArtifactFormat::Unspecified | ArtifactFormat::Unknown | ArtifactFormat::NotAModel) | Err(_)
    )
}

/// A mark the collector set in the kernel: for which version, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MarkSet {
    size: u64,
    ctime: (i64, u32),
    at_ns: u64,
}

/// Counters of analyses that did not happen, for the loss ledger.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkLosses {
    /// Lookups not made: too many in flight, or the resolver's queue was full.
    pub lookups_dropped: u64,
    /// Lookups that found no file with the reported inode (deleted, or in a mount namespace
    /// whose last process exited before the lookup ran).
    pub file_not_found: u64,
    pub analyzer: AnalyzerStats,
}

pub struct ArtifactLink {
    analyzer: AnalyzerHandle,
    /// Suppress later opens of files whose content is not a model (`files.suppress_known_non_models`).
    mark_non_models: bool,
    openers: LruCache<FileIdentity, Opener>,
    /// Finding codes already published per file version.
    reported_findings: LruCache<FileIdentity, std::collections::BTreeSet<String>>,
    /// The version the kernel reported → the file's identity, so a model opened a thousand
    /// times a second is not stat(2)ed a thousand times.
    identities: LruCache<FileKey, FileIdentity>,
    /// Identity lookups in flight: who asked, about which path.
    pending: std::collections::HashMap<FileKey, (Arc<ProcessInfo>, String)>,
    /// Marks set in the kernel, by (kernel device, inode).
    marks: LruCache<(u32, u64), MarkSet>,
    /// Held-back opens: by version until its identity is known, then by identity. A version
    /// whose only openers so far were held back is "quiet": a non-model stays unreported.
    deferred_by_key: LruCache<FileKey, DeferredOpen>,
    quiet: LruCache<FileIdentity, Option<DeferredOpen>>,
    lookups_refused: u64,
    lookups_unresolved: u64,
}

impl ArtifactLink {
    pub fn new(analyzer: AnalyzerHandle, mark_non_models: bool) -> Self {
        Self {
            analyzer,
            mark_non_models,
            openers: LruCache::new(MAX_ARTIFACT_FILES),
            reported_findings: LruCache::new(MAX_ARTIFACT_FILES),
            identities: LruCache::new(MAX_ARTIFACT_FILES),
            pending: std::collections::HashMap::new(),
            marks: LruCache::new(MAX_MARKS),
            deferred_by_key: LruCache::new(MAX_DEFERRED),
            quiet: LruCache::new(MAX_DEFERRED),
            lookups_refused: 0,
            lookups_unresolved: 0,
        }
    }

    /// What is known about a file a process opened or mapped. The file is looked up (off the
    /// loop) by its path and, failing that, through the process's root, since it may live in
    /// another mount namespace; either must still be the inode the kernel reported. Unknown
    /// versions then go to the analyzer when the answer comes back.
    pub fn summary(&mut self, resolver: &mut Resolver, s: &Sighting<'_>) -> Option<ArtifactSummary> {
        let key = s.key;
        let mut known = self.identities.get(&key).copied();
        if let Some(identity) = known
            && self.changed_since_verdict(s)
        {
            // The content may differ from what was judged under this very key: judge again.
            tracing::debug!(path = s.path, "content changed without a new version; analysing again");
            self.identities.pop(&key);
            self.reported_findings.pop(&identity);
            self.marks.pop(&(key.0, key.1));
            self.analyzer.forget(&identity);
            known = None;
        }
        if known.is_none() && !self.pending.contains_key(&key) {
            // Our own view first: when it is the same inode, the analyzer can still open it
            // after the process exits (its /proc root then vanishes, failing the analysis).
            let path = s.path;
            let candidates = [PathBuf::from(path), PathBuf::from(format!("/proc/{}/root{path}", s.process.pid))];
            if self.pending.len() >= MAX_PENDING {
                self.lookups_refused += 1;
            } else if resolver.submit(Job::Identity { key, candidates }) {
                self.pending.insert(key, (s.process.clone(), path.to_owned()));
            }
        }
        let identity = known?;
        let opener = Opener { process: s.process.clone(), path: s.path.to_owned(), kdev: key.0 };
        self.openers.put(identity, opener);
        self.analyzer.lookup(&identity).map(|report| art::summary(&report, &identity))
    }

    /// Whether the kernel says the content may have changed since the collector's verdict on
    /// this version: a writer held the file, it was written without timestamps, or the mark
    /// set for the version was dropped (a write open) before this record was made.
    fn changed_since_verdict(&self, s: &Sighting<'_>) -> bool {
        use sensor_ebpf::content;
        if s.content & (content::WRITER | content::NOCMTIME) != 0 {
            return true;
        }
        let (kdev, ino, size, ctime_sec, ctime_nsec) = s.key;
        self.marks.peek(&(kdev, ino)).is_some_and(|m| {
            m.size == size && m.ctime == (ctime_sec, ctime_nsec) && s.ktime_ns > m.at_ns && s.mark == 0
        })
    }

    /// Holds back an open that only a runtime process's widening selected, until its file is
    /// known (its summary was not known yet when the record came). Dropped when no lookup
    /// could be made for it (that loss is counted as `lookup_dropped`).
    pub fn defer_open(&mut self, key: FileKey, open: DeferredOpen) {
        if self.pending.contains_key(&key) {
            self.deferred_by_key.put(key, open);
        } else if let Some(identity) = self.identities.get(&key).copied() {
            // Known, but not identified yet.
            match self.quiet.get_mut(&identity) {
                Some(slot) => *slot = Some(open),
                None if self.analyzer.lookup(&identity).is_none() => {
                    self.quiet.put(identity, Some(open));
                }
                None => {}
            }
        }
    }

    /// An open of this version that is reported whatever its content: its verdict is
    /// published whatever it is.
    pub fn loud(&mut self, key: FileKey) {
        if let Some(identity) = self.identities.peek(&key) {
            self.quiet.pop(identity);
        }
    }

    /// What is known about a version, without asking for anything.
    pub fn known_summary(&self, key: FileKey) -> Option<ArtifactSummary> {
        let identity = self.identities.peek(&key)?;
        self.analyzer.lookup(identity).map(|report| art::summary(&report, identity))
    }

    /// The sensor recorded `mark` in the kernel at `at_ns` (`CLOCK_BOOTTIME`).
    pub fn mark_set(&mut self, id: FileId, mark: &InodeMark, at_ns: u64) {
        let set = MarkSet { size: mark.size, ctime: (mark.ctime_sec, mark.ctime_nsec), at_ns };
        self.marks.put((id.dev, id.ino), set);
    }

    /// The resolver found (or not) the file an event was about. A version the analyzer already
    /// knows (from its persisted cache) comes back as an update to handle like the analyzer's.
    pub fn on_identity(&mut self, key: FileKey, found: Option<(FileIdentity, PathBuf)>) -> Option<ArtifactUpdate> {
        let (process, path) = self.pending.remove(&key)?;
        let deferred = self.deferred_by_key.pop(&key);
        let Some((identity, file)) = found else {
            self.lookups_unresolved += 1;
            self.identities.pop(&key);
            return None;
        };
        self.identities.put(key, identity);
        if let Some(d) = deferred {
            self.quiet.put(identity, Some(d));
        }
        let first = self.openers.put(identity, Opener { process, path, kdev: key.0 }).is_none();
        match self.analyzer.lookup(&identity) {
            // Known from an earlier run: say what it is once, and put the kernel's mark back.
            Some(report) if first => Some(ArtifactUpdate::Identified { identity, report }),
            Some(_) => None,
            None => {
                self.analyzer.submit(ArtifactRequest { path: file, identity });
                None
            }
        }
    }

    /// What an analyzer update means for the stream, the kernel's marks and the tracker.
    pub fn on_update(&mut self, update: ArtifactUpdate) -> ArtifactNews {
        // Only an identification tells the kernel what the content is: a digest or a policy
        // change comes later (minutes, for a large file), when a write open may have dropped
        // the mark already, and must not put back a verdict about content that is gone.
        let (identity, report, identified) = match update {
            ArtifactUpdate::Identified { identity, report } => (identity, report, true),
            ArtifactUpdate::Digest { identity, report } | ArtifactUpdate::PolicyChanged { identity, report } => {
                (identity, report, false)
            }
            ArtifactUpdate::Failed { path, error, .. } => {
                tracing::debug!(path = %path.display(), "artifact not analysed: {error}");
                return ArtifactNews::default();
            }
            ArtifactUpdate::ManifestReloaded { path, approved, denied } => {
                tracing::info!(manifest = %path.display(), approved, denied, "model manifest loaded");
                return ArtifactNews::default();
            }
            ArtifactUpdate::ManifestError(message) => {
                tracing::warn!("model manifest: {message}");
                return ArtifactNews { manifest_error: Some(message), ..ArtifactNews::default() };
            }
        };
        let mut news = self.news(identity, &report);
        if !identified {
            news.mark = None;
        }
        news
    }

    fn news(&mut self, identity: FileIdentity, report: &ArtifactReport) -> ArtifactNews {
        let opener = self.openers.get(&identity).cloned();
        let (process, kernel_path, kdev) = match opener {
            Some(o) => (Some(o.process), o.path, o.kdev),
            None => (None, report.path.to_string_lossy().into_owned(), art::kernel_dev(&identity)),
        };
        // Every version gets a mark: besides what it does in the kernel, it is how the kernel
        // tells the collector that the content changed under the version's key.
        let verdict = if report.format.is_model() {
            sensor_ebpf::mark::MODEL
        } else if self.mark_non_models && matches!(report.format, Format::NotAModel | Format::Unknown) {
            sensor_ebpf::mark::NOT_MODEL
        } else {
            sensor_ebpf::mark::KNOWN
        };
        let id = FileId { dev: kdev, _pad0: 0, ino: identity.ino };
        let mark = InodeMark {
            verdict,
            ctime_nsec: identity.ctime_nsec as u32,
            size: identity.size,
            ctime_sec: identity.ctime_sec,
        };
        let mark = Some((id, mark));
        let summary = art::summary(report, &identity);
        let model_opener = report.format.is_model().then(|| process.clone()).flatten();
        // Held back: reported only when the file proved a model or code, or has findings.
        let findings = report.findings.iter().any(|f| f.severity > modelwatch_artifact::Severity::Info);
        let mut opened = None;
        if let Some(held) = self.quiet.get_mut(&identity) {
            if !(worth_reporting(&summary) || findings) {
                return ArtifactNews { mark, model_opener, ..ArtifactNews::default() };
            }
            opened = held.take().map(|mut d| {
                d.payload.artifact = Some(summary.clone());
                d
            });
            self.quiet.pop(&identity);
        }
        let mut identified = art::identified(report, &identity);
        if let Some(f) = &mut identified.file {
            f.path.clone_from(&kernel_path);
        }
        let severity = report.max_severity().map_or(Severity::Info, art::severity).max(Severity::Info);
        let mut events = vec![(process.clone(), Payload::ArtifactIdentified(identified), severity)];
        let reported = self.reported_findings.get_or_insert_mut(identity, Default::default);
        for f in &report.findings {
            if f.severity <= modelwatch_artifact::Severity::Info || !reported.insert(f.code.clone()) {
                continue;
            }
            let mut finding = art::policy_finding(report, &identity, f);
            if let Some(file) = &mut finding.file {
                file.path.clone_from(&kernel_path);
            }
            events.push((process.clone(), Payload::PolicyFinding(finding), art::severity(f.severity)));
        }
        ArtifactNews { opened, events, mark, known: Some((kernel_path, summary)), model_opener, manifest_error: None }
    }

    pub fn losses(&self, resolver: &Resolver) -> LinkLosses {
        LinkLosses {
            lookups_dropped: resolver.dropped() + self.lookups_refused,
            file_not_found: self.lookups_unresolved,
            analyzer: self.analyzer.stats(),
        }
    }

    /// Files queued for analysis but not yet identified (for the health event).
    pub fn queued(&self) -> u64 {
        let a = self.analyzer.stats();
        a.submitted.saturating_sub(a.duplicates + a.dropped + a.identified + a.failed)
    }

    pub fn shutdown(&self) {
        self.analyzer.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use modelwatch_artifact::{ArtifactConfig, service::Analyzer};
    use sensor_ebpf::kernel_dev_from_user;

    use super::*;

    fn process(pid: u32) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo { pid, ..Default::default() })
    }

    fn key_of(md: &std::fs::Metadata) -> FileKey {
        (kernel_dev_from_user(md.dev()), md.ino(), md.size(), md.ctime(), md.ctime_nsec() as u32)
    }

    /// A record about `key` made at `ktime_ns` that found the kernel's mark `mark` valid.
    fn seen<'a>(p: &'a Arc<ProcessInfo>, path: &'a str, key: FileKey, mark: u32, ktime_ns: u64) -> Sighting<'a> {
        Sighting { process: p, path, key, mark, content: 0, ktime_ns }
    }

    /// A GGUF header the artifact library recognises.
    fn gguf() -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v
    }

    fn next_update(rx: &std::sync::mpsc::Receiver<ArtifactUpdate>) -> ArtifactUpdate {
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("an analyzer update")
    }

    #[tokio::test]
    async fn a_file_is_looked_up_once_analysed_and_published_for_its_opener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, gguf()).expect("write");
        let md = std::fs::metadata(&model).expect("stat");
        let key = key_of(&md);
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(42);
        let path = model.to_str().expect("utf-8");

        // Unknown: a lookup goes out, nothing is known yet; a second event does not ask again.
        assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 1)).is_none());
        assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 2)).is_none());
        let Some(super::super::resolver::Answer::Identity { key: k, found }) = answers.recv().await else {
            panic!("no identity answer")
        };
        assert!(link.on_identity(k, found).is_none(), "submitted to the analyzer, nothing known yet");
        assert!(answers.try_recv().is_err(), "one lookup for two events");

        let news = loop {
            let u = next_update(&rx);
            if matches!(u, ArtifactUpdate::Identified { .. }) {
                break link.on_update(u);
            }
        };
        let (who, payload, _) = &news.events[0];
        assert_eq!(who.as_ref().map(|p| p.pid), Some(42));
        assert!(matches!(payload, Payload::ArtifactIdentified(_)));
        let (mark_id, mark) = news.mark.expect("a model is marked");
        assert_eq!(news.model_opener.map(|p| p.pid), Some(42), "its opener is a runtime from now on");
        assert_eq!((mark_id.ino, mark.verdict), (md.ino(), sensor_ebpf::mark::MODEL));
        assert_eq!(news.known.as_ref().map(|(p, _)| p.as_str()), Some(path));
        // Now the identity is known: the next event gets the summary at once.
        link.mark_set(mark_id, &mark, 10);
        assert!(link.summary(&mut resolver, &seen(&p, path, key, sensor_ebpf::mark::MODEL, 11)).is_some());
        assert!(answers.try_recv().is_err(), "no new lookup while the kernel vouches for the version");
        link.shutdown();
    }

    #[test]
    fn findings_are_published_once_per_version_and_lost_lookups_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, false);
        let text = dir.path().join("notes.bin");
        std::fs::write(&text, "just text\n").expect("write");
        let (mut file, md) = modelwatch_artifact::open_artifact(&text).expect("open");
        let mut report = modelwatch_artifact::identify_open(
            &text,
            &mut file,
            md.len(),
            &modelwatch_artifact::AnalyzeOptions::default(),
        );
        assert_eq!(report.format, Format::NotAModel);
        let identity = FileIdentity::from_metadata(&md);
        report.findings.push(modelwatch_artifact::Finding::new(modelwatch_artifact::Severity::High, "x", "bad"));
        let update = || ArtifactUpdate::Identified { identity, report: Arc::new(report.clone()) };
        let first = link.on_update(update());
        assert_eq!(first.events.len(), 2, "identified, then the finding");
        let (_, mark) = first.mark.expect("every version is marked");
        assert_eq!(mark.verdict, sensor_ebpf::mark::KNOWN, "not suppressed when suppression is off");
        assert_eq!(link.on_update(update()).events.len(), 1, "the finding is not repeated");

        // An answer that found no file counts as file_not_found.
        let (mut resolver, _answers) = Resolver::start().expect("resolver");
        let p = process(1);
        assert!(link.summary(&mut resolver, &seen(&p, "/nonexistent/m.gguf", (1, 2, 3, 4, 5), 0, 1)).is_none());
        assert!(link.on_identity((1, 2, 3, 4, 5), None).is_none());
        assert_eq!(link.losses(&resolver).file_not_found, 1);
        link.shutdown();
    }

    /// Waits for the link's next identification of anything.
    fn identified(link: &mut ArtifactLink, rx: &std::sync::mpsc::Receiver<ArtifactUpdate>) -> ArtifactNews {
        loop {
            let u = next_update(rx);
            if matches!(u, ArtifactUpdate::Identified { .. }) {
                return link.on_update(u);
            }
        }
    }

    async fn look_up(
        link: &mut ArtifactLink,
        answers: &mut tokio::sync::mpsc::Receiver<super::super::resolver::Answer>,
    ) {
        let Some(super::super::resolver::Answer::Identity { key, found }) = answers.recv().await else {
            panic!("no identity answer")
        };
        assert!(link.on_identity(key, found).is_none(), "submitted to the analyzer");
    }

    /// A verdict is reused only while the kernel vouches for the version: once it dropped the
    /// mark (a write open) or saw a writer or a timestamp-less write, the same key is analysed
    /// again, content included.
    #[tokio::test]
    async fn a_verdict_is_not_reused_once_the_kernel_says_the_content_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("w.pkl");
        std::fs::write(&file, b"just some text\n").expect("write");
        let md = std::fs::metadata(&file).expect("stat");
        let key = key_of(&md);
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(7);
        let path = file.to_str().expect("utf-8");

        assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 1)).is_none());
        look_up(&mut link, &mut answers).await;
        let news = identified(&mut link, &rx);
        let (id, mark) = news.mark.expect("marked");
        assert_eq!(mark.verdict, sensor_ebpf::mark::NOT_MODEL);
        link.mark_set(id, &mark, 100);
        // A record from before the mark was set says nothing about it.
        assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 50)).is_some());
        // The kernel still holds the mark: the verdict stands.
        assert!(link.summary(&mut resolver, &seen(&p, path, key, sensor_ebpf::mark::NOT_MODEL, 200)).is_some());
        assert!(answers.try_recv().is_err());

        // Same size, same ctime (a timestamp-less write), new content; the kernel dropped the mark.
        {
            use std::os::unix::fs::FileExt as _;
            let f = std::fs::OpenOptions::new().write(true).open(&file).expect("open");
            f.write_all_at(b"cos\nsystem\n(S'x'\ntR.", 0).expect("pwrite");
        }
        assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 300)).is_none(), "judged again");
        look_up(&mut link, &mut answers).await;
        let news = identified(&mut link, &rx);
        assert!(
            news.events.iter().any(|(_, e, _)| matches!(e, Payload::PolicyFinding(f) if f.finding.as_ref().is_some_and(|f| f.code == "pickle_malicious"))),
            "the new content's finding"
        );
        let (id, mark) = news.mark.expect("marked");
        link.mark_set(id, &mark, 400);

        // A writer, or writes without timestamps, void the verdict whatever the mark says.
        for content in [sensor_ebpf::content::WRITER, sensor_ebpf::content::NOCMTIME] {
            let mut s = seen(&p, path, key, mark.verdict, 500);
            s.content = content;
            assert!(link.summary(&mut resolver, &s).is_none(), "{content}");
            look_up(&mut link, &mut answers).await;
            let news = identified(&mut link, &rx);
            let (id, mark) = news.mark.expect("marked");
            link.mark_set(id, &mark, 600);
        }
        link.shutdown();
    }

    /// An open that only a runtime process's widening selected is reported once its file
    /// proves a model or code; a non-model is marked and stays unreported.
    #[tokio::test]
    async fn held_back_opens_are_reported_only_for_models_and_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(9);
        for (name, content, reported) in
            [("notes.dat", &b"plain text\n"[..], false), ("weights.dat", &b"cos\nsystem\n(S'x'\ntR."[..], true)]
        {
            let file = dir.path().join(name);
            std::fs::write(&file, content).expect("write");
            let key = key_of(&std::fs::metadata(&file).expect("stat"));
            let path = file.to_str().expect("utf-8");
            assert!(link.summary(&mut resolver, &seen(&p, path, key, 0, 1)).is_none());
            let payload = ModelFileOpened { syscall: "openat".into(), ..Default::default() };
            link.defer_open(key, DeferredOpen { ktime_ns: 5, process: p.clone(), tid: 9, payload });
            look_up(&mut link, &mut answers).await;
            let news = identified(&mut link, &rx);
            assert!(news.mark.is_some(), "{name}: marked either way");
            assert_eq!(news.opened.is_some(), reported, "{name}");
            assert_eq!(!news.events.is_empty(), reported, "{name}");
            if let Some(o) = news.opened {
                assert_eq!(o.ktime_ns, 5, "published with the open's own time");
                assert!(o.payload.artifact.is_some_and(|a| worth_reporting(&a)));
            }
        }
        link.shutdown();
    }
}
