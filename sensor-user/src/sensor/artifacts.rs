//! The artifact link: the sensor's side of artifact analysis. It owns which file version an
//! event is about (the identity lookups in flight and their answers), which process opened it,
//! which findings were already published, and the handle on the analyzer.
//!
//! Its interface is narrow: a file event asks [`ArtifactLink::summary`] what is known; the
//! resolver's answers and the analyzer's updates come in through [`ArtifactLink::on_identity`]
//! and [`ArtifactLink::on_update`], which return [`ArtifactNews`] — what to publish, which inode
//! mark to set in the kernel, what the session tracker should learn. It publishes nothing and
//! touches no kernel map itself, so its logic is tested without either.

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::resolver::{FileKey, Job, Resolver};
use crate::{
    enrich::artifact as art,
    process::ProcessInfo,
    proto::v1::{ArtifactSummary, Severity, event::Payload},
};
use lru::LruCache;
use modelwatch_artifact::{
    ArtifactReport, FileIdentity, Format,
    service::{AnalyzerHandle, AnalyzerStats, ArtifactRequest, ArtifactUpdate, Disconnected, UpdateSink},
};
use sensor_ebpf::{FileId, InodeMark};

/// Identity lookups in flight at most.
const MAX_PENDING: usize = 1024;

/// How long a file's stat(2) identity is trusted before it is checked again (it is still used
/// while the check runs).
const IDENTITY_TTL: Duration = Duration::from_secs(2);

/// Analyzer updates waiting for the event loop; when full, the analyzer's threads wait.
pub const ARTIFACT_UPDATES: usize = 1024;

/// Bound on the per-file bookkeeping.
const MAX_ARTIFACT_FILES: NonZeroUsize = NonZeroUsize::new(16_384).unwrap();

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

/// What the sensor should do about an analyzer update.
#[derive(Default)]
pub struct ArtifactNews {
    /// Events to publish, in order: (the process they are about, payload, severity).
    pub events: Vec<(Option<Arc<ProcessInfo>>, Payload, Severity)>,
    /// The verdict to record in the kernel's inode marks.
    pub mark: Option<(FileId, InodeMark)>,
    /// The file (by its kernel path) and what it is, for the session tracker.
    pub known: Option<(String, ArtifactSummary)>,
    /// The manifest could not be reloaded: the health event's message.
    pub manifest_error: Option<String>,
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
    /// (kernel dev, ino, size) → the file's identity, so a model opened a thousand times a
    /// second is not stat(2)ed a thousand times.
    identities: LruCache<FileKey, (FileIdentity, Instant)>,
    /// Identity lookups in flight: who asked, about which path.
    pending: std::collections::HashMap<FileKey, (Arc<ProcessInfo>, String)>,
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
            lookups_refused: 0,
            lookups_unresolved: 0,
        }
    }

    /// What is known about a file a process opened or mapped. The file is looked up (off the
    /// loop) by its path and, failing that, through the process's root, since it may live in
    /// another mount namespace; either must still be the inode the kernel reported. Unknown
    /// versions then go to the analyzer when the answer comes back.
    pub fn summary(
        &mut self,
        resolver: &mut Resolver,
        p: &Arc<ProcessInfo>,
        path: &str,
        key: FileKey,
    ) -> Option<ArtifactSummary> {
        let known = self.identities.get(&key).map(|(id, at)| (*id, at.elapsed() < IDENTITY_TTL));
        if known.is_none_or(|(_, fresh)| !fresh) && !self.pending.contains_key(&key) {
            // Our own view first: when it is the same inode, the analyzer can still open it
            // after the process exits (its /proc root then vanishes, failing the analysis).
            let candidates = [PathBuf::from(path), PathBuf::from(format!("/proc/{}/root{path}", p.pid))];
            if self.pending.len() >= MAX_PENDING {
                self.lookups_refused += 1;
            } else if resolver.submit(Job::Identity { key, candidates }) {
                self.pending.insert(key, (p.clone(), path.to_owned()));
            }
        }
        let (identity, _) = known?;
        self.openers.put(identity, Opener { process: p.clone(), path: path.to_owned(), kdev: key.0 });
        self.analyzer.lookup(&identity).map(|report| art::summary(&report, &identity))
    }

    /// The resolver found (or not) the file an event was about. A version the analyzer already
    /// knows (from its persisted cache) comes back as an update to handle like the analyzer's.
    pub fn on_identity(&mut self, key: FileKey, found: Option<(FileIdentity, PathBuf)>) -> Option<ArtifactUpdate> {
        let (process, path) = self.pending.remove(&key)?;
        let Some((identity, file)) = found else {
            self.lookups_unresolved += 1;
            self.identities.pop(&key);
            return None;
        };
        self.identities.put(key, (identity, Instant::now()));
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
        let (identity, report) = match update {
            ArtifactUpdate::Identified { identity, report }
            | ArtifactUpdate::Digest { identity, report }
            | ArtifactUpdate::PolicyChanged { identity, report } => (identity, report),
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
        self.news(identity, &report)
    }

    fn news(&mut self, identity: FileIdentity, report: &ArtifactReport) -> ArtifactNews {
        let opener = self.openers.get(&identity).cloned();
        let (process, kernel_path, kdev) = match opener {
            Some(o) => (Some(o.process), o.path, o.kdev),
            None => (None, report.path.to_string_lossy().into_owned(), art::kernel_dev(&identity)),
        };
        let verdict = if report.format.is_model() {
            Some(sensor_ebpf::mark::MODEL)
        } else if self.mark_non_models && matches!(report.format, Format::NotAModel | Format::Unknown) {
            Some(sensor_ebpf::mark::NOT_MODEL)
        } else {
            None
        };
        let mark = verdict.map(|verdict| {
            let id = FileId { dev: kdev, _pad0: 0, ino: identity.ino };
            (id, InodeMark { verdict, _pad0: 0, size: identity.size, ctime_sec: identity.ctime_sec })
        });
        let summary = art::summary(report, &identity);
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
        ArtifactNews { events, mark, known: Some((kernel_path, summary)), manifest_error: None }
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

    /// A GGUF header the artifact library recognises.
    fn gguf() -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v
    }

    fn next_update(rx: &std::sync::mpsc::Receiver<ArtifactUpdate>) -> ArtifactUpdate {
        rx.recv_timeout(Duration::from_secs(60)).expect("an analyzer update")
    }

    #[tokio::test]
    async fn a_file_is_looked_up_once_analysed_and_published_for_its_opener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, gguf()).expect("write");
        let md = std::fs::metadata(&model).expect("stat");
        let key = (kernel_dev_from_user(md.dev()), md.ino(), md.size());
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(42);
        let path = model.to_str().expect("utf-8");

        // Unknown: a lookup goes out, nothing is known yet; a second event does not ask again.
        assert!(link.summary(&mut resolver, &p, path, key).is_none());
        assert!(link.summary(&mut resolver, &p, path, key).is_none());
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
        assert_eq!((mark_id.ino, mark.verdict), (md.ino(), sensor_ebpf::mark::MODEL));
        assert_eq!(news.known.as_ref().map(|(p, _)| p.as_str()), Some(path));
        // Now the identity is known: the next event gets the summary at once.
        assert!(link.summary(&mut resolver, &p, path, key).is_some());
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
        assert!(first.mark.is_none(), "non-models are not marked when suppression is off");
        assert_eq!(link.on_update(update()).events.len(), 1, "the finding is not repeated");

        // An answer that found no file counts as file_not_found.
        let (mut resolver, _answers) = Resolver::start().expect("resolver");
        let p = process(1);
        assert!(link.summary(&mut resolver, &p, "/nonexistent/m.gguf", (1, 2, 3)).is_none());
        assert!(link.on_identity((1, 2, 3), None).is_none());
        assert_eq!(link.losses(&resolver).file_not_found, 1);
        link.shutdown();
    }
}
