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
//! A file is looked for by its path, through the process's root, and then through what the
//! process holds (its descriptor, its mapping): a path deeper than the kernel's walk, a name
//! that is not UTF-8, a file unlinked after its open and a memfd are all analysed. A file
//! reached through the process is held open here until the analyzer has read it (the analyzer
//! opens it as `/proc/self/fd/<n>`), so the process closing it or exiting does not lose it.
//!
//! Fairness: the lookups in flight and the analyses queued are shared among the users asking
//! for them. A user may hold at most `capacity / (users + 1)` of either (users: those holding
//! some, counting the one asking), so whatever one user floods, another always finds room.
//! What is refused is counted and charged to the process that asked ([`Culprits`]).
//!
//! A verdict is about one content version. Versions are keyed exactly as the kernel saw them
//! ([`FileKey`]: device, inode, size, full ctime), and a cached verdict is reused only while the
//! kernel vouches that the content did not change under that key: the mark the collector set
//! for the version is still there ([`ArtifactLink::mark_set`]: the kernel drops it on a write
//! open or when it finds a writer), and the record carries no writer and no timestamp-less
//! write (`sensor_ebpf::content`). Otherwise the version is looked up and analysed again.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    num::NonZeroUsize,
    os::fd::AsRawFd as _,
    os::unix::ffi::{OsStrExt as _, OsStringExt as _},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    losses::Culprits,
    resolver::{Candidate, FileKey, Found, Job, Resolver},
};
use crate::{
    decode::KernelPath,
    enrich::artifact as art,
    process::ProcessInfo,
    proto::v1::{ArtifactSummary, FileRef, LossSource, Severity, event::Payload},
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

/// Files held open for the analyzer at most (each is a descriptor of the sensor's).
const MAX_HELD: usize = 256;

/// A held file or a queued analysis older than this is given up (the analyzer answers every
/// request it accepted, so only a lost update leaves one behind).
const STALE_AFTER: Duration = Duration::from_secs(600);

/// Delivers the analyzer's updates (sent from its own threads) into the event loop.
pub struct LoopUpdates(pub tokio::sync::mpsc::Sender<ArtifactUpdate>);

impl UpdateSink for LoopUpdates {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected> {
        self.0.blocking_send(update).map_err(|_| Disconnected)
    }
}

/// What the process holds of the file, for when its path does not lead to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    /// The descriptor an open returned (or that a /proc walk found).
    Fd(i32),
    /// A mapping: its address and length, and the descriptor it was made from (which the
    /// process may have closed since).
    Mapping { addr: u64, len: u64, fd: i32 },
}

/// A file event, as the artifact link needs it.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub path: &'a KernelPath,
    /// The version from the event: (kernel dev, ino, size, ctime).
    pub key: FileKey,
    pub handle: Handle,
    /// The collector's mark the kernel still held valid for this version (`sensor_ebpf::mark`,
    /// 0: none).
    pub mark: u32,
    /// `sensor_ebpf::content` bits.
    pub content: u32,
    /// When the record was made (`CLOCK_BOOTTIME`, ns).
    pub ktime_ns: u64,
}

/// A file's name as events report it: the kernel's path (exact bytes when not UTF-8), or the
/// path the process's descriptor gives when the kernel's was truncated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FileName {
    text: String,
    bytes: Option<Vec<u8>>,
    truncated: bool,
}

impl FileName {
    fn of(path: &KernelPath) -> Self {
        Self { text: path.path.clone(), bytes: path.raw.clone(), truncated: path.truncated }
    }

    /// A truncated name is replaced by where the held descriptor says the file is, when that
    /// is a whole path of a file still linked.
    fn completed_by(&mut self, link_target: Option<&PathBuf>) {
        let Some(target) = link_target else { return };
        let bytes = target.as_os_str().as_bytes();
        if !self.truncated || !bytes.starts_with(b"/") || bytes.ends_with(b" (deleted)") {
            return;
        }
        match std::str::from_utf8(bytes) {
            Ok(t) => (self.text, self.bytes) = (t.to_owned(), None),
            Err(_) => (self.text, self.bytes) = (String::from_utf8_lossy(bytes).into_owned(), Some(bytes.to_vec())),
        }
        self.truncated = false;
    }

    fn apply(&self, f: &mut FileRef) {
        f.path.clone_from(&self.text);
        f.path_bytes = self.bytes.clone().unwrap_or_default();
        f.path_truncated = self.truncated;
    }
}

/// Who opened a file version, the name the event reported for it, and the device number the
/// kernel knows the file by (for its inode marks).
#[derive(Clone)]
struct Opener {
    process: Arc<ProcessInfo>,
    name: FileName,
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
    /// The version the news is about, as events name it (for the events waiting on it).
    pub key: Option<FileKey>,
    /// That version could not be analysed: no verdict will come.
    pub failed: bool,
    /// The process that opened a file identified as a model: an inference runtime from now on
    /// (unless it only copies or hashes models).
    pub model_opener: Option<Arc<ProcessInfo>>,
    /// The manifest could not be reloaded: the health event's message.
    pub manifest_error: Option<String>,
}

/// A probe looks the mark up before it reads the clock for its record: a record whose lookup
/// came just before the mark was written can carry a time just after it. Such a record is not
/// evidence that the mark was dropped. (Without this margin, a file opened many thousand times
/// a second was taken for changed at almost every verdict, analysed again, and its events held
/// for the new verdict, over and over.) A probe runs in well under a microsecond; the margin is
/// generous.
const MARK_RACE_NS: u64 = 1_000_000;

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
    /// Lookups not made: the asking user's share of lookups in flight was used up, or the
    /// resolver's queue was full.
    pub lookups_dropped: u64,
    /// Lookups that found no file with the reported inode (deleted and closed, or in a mount
    /// namespace whose last process exited before the lookup ran).
    pub file_not_found: u64,
    /// Analyses not queued because the asking user's share of the analyzer's queue was used
    /// up (the analyzer's own refusals are in `analyzer.dropped`).
    pub identifications_refused: u64,
    pub analyzer: AnalyzerStats,
}

/// Counts per user, for the fair shares.
#[derive(Debug, Default)]
struct Shares {
    by_uid: HashMap<u32, usize>,
}

impl Shares {
    /// Whether `uid` may take one more of `capacity`, `total` being taken: each user holding
    /// some (counting `uid`) may hold at most `capacity / (users + 1)`, so a newcomer always
    /// finds room however much the others asked for.
    fn admits(&self, uid: u32, total: usize, capacity: usize) -> bool {
        let mine = self.by_uid.get(&uid).copied().unwrap_or(0);
        let users = self.by_uid.len() + usize::from(mine == 0);
        total < capacity && mine < (capacity / (users + 1)).max(1)
    }

    fn add(&mut self, uid: u32) {
        *self.by_uid.entry(uid).or_default() += 1;
    }

    fn remove(&mut self, uid: u32) {
        if let Some(n) = self.by_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.by_uid.remove(&uid);
            }
        }
    }
}

/// A lookup in flight: who asked, about which name.
struct Pending {
    process: Arc<ProcessInfo>,
    name: FileName,
}

/// A version submitted to the analyzer and not answered yet: whose share it uses, and the
/// file held open for it, if any.
struct Queued {
    uid: u32,
    held: Option<File>,
    since: Instant,
    /// The same version held open, for an analysis submitted by path: opened by the resolver
    /// next to the path, or a later opener's descriptor. If the path is gone when the analyzer
    /// gets to it (unlinked right after the open), the analysis is made again through this.
    spare: Option<File>,
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
    /// Marks set in the kernel, by (kernel device, inode).
    marks: LruCache<(u32, u64), MarkSet>,
    /// Identity lookups in flight.
    pending: HashMap<FileKey, Pending>,
    pending_shares: Shares,
    /// Versions the analyzer is working on for us.
    queued: HashMap<FileIdentity, Queued>,
    queued_shares: Shares,
    /// How many analyses may be queued at once (the analyzer's queue).
    analysis_capacity: usize,
    /// (kernel dev, ino) of the files identified as models, for the /proc scan of holders.
    models: LruCache<(u32, u64), ()>,
    culprits: Culprits,
    lookups_refused: u64,
    lookups_unresolved: u64,
    identifications_refused: u64,
    /// Identifications the analyzer answered from its persisted verdict cache.
    verdicts_from_cache: u64,
}

impl ArtifactLink {
    /// Whether later opens of non-models are filtered in the kernel from now on (a
    /// configuration reload); marks already set stay until their file changes.
    pub fn set_mark_non_models(&mut self, on: bool) {
        self.mark_non_models = on;
    }

    /// `analysis_capacity`: the analyzer's queue length (`artifact.analysis_queue`).
    pub fn new(analyzer: AnalyzerHandle, mark_non_models: bool, analysis_capacity: usize) -> Self {
        Self {
            analyzer,
            mark_non_models,
            openers: LruCache::new(MAX_ARTIFACT_FILES),
            reported_findings: LruCache::new(MAX_ARTIFACT_FILES),
            identities: LruCache::new(MAX_ARTIFACT_FILES),
            marks: LruCache::new(MAX_MARKS),
            pending: HashMap::new(),
            pending_shares: Shares::default(),
            queued: HashMap::new(),
            queued_shares: Shares::default(),
            analysis_capacity: analysis_capacity.max(1),
            models: LruCache::new(MAX_ARTIFACT_FILES),
            culprits: Culprits::default(),
            lookups_refused: 0,
            lookups_unresolved: 0,
            identifications_refused: 0,
            verdicts_from_cache: 0,
        }
    }

    /// Where the file of `seen` may be found, in order: our own view of its path (the analyzer
    /// can still open it after the process exits), the same path through the process's root
    /// (another mount namespace), then what the process holds.
    fn candidates(p: &ProcessInfo, seen: &Sighting<'_>) -> Vec<Candidate> {
        let mut c = Vec::with_capacity(4);
        let path = seen.path;
        if path.complete && !path.truncated {
            let bytes = path.raw.as_deref().unwrap_or(path.path.as_bytes());
            let own = PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
            let mut through_root = format!("/proc/{}/root", p.pid).into_bytes();
            through_root.extend_from_slice(bytes);
            c.push(Candidate::Path(own));
            c.push(Candidate::Path(PathBuf::from(std::ffi::OsString::from_vec(through_root))));
        }
        match seen.handle {
            Handle::Fd(fd) => c.push(Candidate::Descriptor { pid: p.pid, fd }),
            Handle::Mapping { addr, len, fd } => {
                c.push(Candidate::Mapping { pid: p.pid, addr, len });
                c.push(Candidate::Descriptor { pid: p.pid, fd });
            }
        }
        c
    }

    /// What is known about a file a process opened or mapped. Unknown versions are looked up
    /// off the loop (see [`Self::candidates`]; each must still be the inode the kernel
    /// reported) and then go to the analyzer when the answer comes back.
    pub fn summary(
        &mut self,
        resolver: &mut Resolver,
        p: &Arc<ProcessInfo>,
        seen: &Sighting<'_>,
    ) -> Option<ArtifactSummary> {
        let key = seen.key;
        let mut known = self.identities.get(&key).copied();
        if let Some(identity) = known
            && self.changed_since_verdict(seen)
        {
            // The content may differ from what was judged under this very key: judge again.
            tracing::debug!(path = %seen.path.path, "content changed without a new version; analysing again");
            self.identities.pop(&key);
            self.reported_findings.pop(&identity);
            self.marks.pop(&(key.0, key.1));
            self.analyzer.forget(&identity);
            known = None;
        }
        if known.is_none() && !self.pending.contains_key(&key) {
            if !self.pending_shares.admits(p.uid, self.pending.len(), MAX_PENDING) {
                self.lookups_refused += 1;
                self.culprits.charge(LossSource::Analyzer, p, 1);
            } else if resolver.submit(Job::Identity { key, candidates: Self::candidates(p, seen) }) {
                self.pending.insert(key, Pending { process: p.clone(), name: FileName::of(seen.path) });
                self.pending_shares.add(p.uid);
            } else {
                // Counted by the resolver.
                self.culprits.charge(LossSource::Analyzer, p, 1);
            }
        }
        let identity = known?;
        self.openers.put(identity, Opener { process: p.clone(), name: FileName::of(seen.path), kdev: key.0 });
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
            m.size == size && m.ctime == (ctime_sec, ctime_nsec) && s.ktime_ns > m.at_ns + MARK_RACE_NS && s.mark == 0
        })
    }

    /// What is known about a version, without asking for anything.
    pub fn known_summary(&self, key: FileKey) -> Option<ArtifactSummary> {
        let identity = self.identities.peek(&key)?;
        self.analyzer.lookup(identity).map(|report| art::summary(&report, identity))
    }

    /// The sensor recorded `mark` in the kernel; `at_ns` (`CLOCK_BOOTTIME`) was read after the
    /// write.
    pub fn mark_set(&mut self, id: FileId, mark: &InodeMark, at_ns: u64) {
        let set = MarkSet { size: mark.size, ctime: (mark.ctime_sec, mark.ctime_nsec), at_ns };
        self.marks.put((id.dev, id.ino), set);
    }

    /// The resolver found (or not) the file an event was about. A version the analyzer already
    /// knows (from its persisted cache) comes back as an update to handle like the analyzer's.
    pub fn on_identity(&mut self, key: FileKey, found: Option<Found>) -> Option<ArtifactUpdate> {
        let Pending { process, mut name } = self.pending.remove(&key)?;
        self.pending_shares.remove(process.uid);
        let Some(Found { identity, path, held, name: link_target, spare }) = found else {
            self.lookups_unresolved += 1;
            self.identities.pop(&key);
            return None;
        };
        name.completed_by(link_target.as_ref());
        self.identities.put(key, identity);
        let first = self.openers.put(identity, Opener { process: process.clone(), name, kdev: key.0 }).is_none();
        match self.analyzer.lookup(&identity) {
            // Known from an earlier run: say what it is once, and put the kernel's mark back.
            Some(report) if first => Some(ArtifactUpdate::Identified { identity, report }),
            Some(_) => None,
            None => {
                self.submit(&process, identity, path, held, spare);
                None
            }
        }
    }

    /// Queues a version for analysis within its user's share; a held file is handed over as
    /// `/proc/self/fd/<n>` and kept open until the analyzer answers. A `spare` (the same
    /// version, opened by the resolver next to a path) is kept for a retry should the path go.
    fn submit(
        &mut self,
        process: &ProcessInfo,
        identity: FileIdentity,
        path: PathBuf,
        held: Option<File>,
        spare: Option<File>,
    ) {
        // Spares are a fallback: within the descriptor budget only.
        let spare = spare.filter(|_| self.held_count() < MAX_HELD);
        if let Some(q) = self.queued.get_mut(&identity) {
            // On its way: its answer serves this event too.
            if q.held.is_none() && q.spare.is_none() {
                q.spare = held.or(spare);
            }
            return;
        }
        if !self.queued_shares.admits(process.uid, self.queued.len(), self.analysis_capacity) {
            self.identifications_refused += 1;
            self.culprits.charge(LossSource::Analyzer, process, 1);
            // Looked up again (and resubmitted) at the next event after the identity expires.
            return;
        }
        if held.is_some() && self.held_count() >= MAX_HELD {
            self.release_oldest_held();
        }
        let path = held.as_ref().map_or(path, |f| PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())));
        // Only our submits move these two counters: growth is this submit refused (queue
        // full), or taken as a duplicate of a version on its way (whose answer serves it).
        let before = self.analyzer.stats();
        self.analyzer.submit(ArtifactRequest { path, identity });
        let after = self.analyzer.stats();
        if after.dropped > before.dropped {
            self.culprits.charge(LossSource::Analyzer, process, 1);
            return;
        }
        if after.duplicates > before.duplicates {
            return;
        }
        let spare = if held.is_some() { None } else { spare };
        self.queued.insert(identity, Queued { uid: process.uid, held, since: Instant::now(), spare });
        self.queued_shares.add(process.uid);
    }

    /// Descriptors kept for queued analyses (held files and spares).
    fn held_count(&self) -> usize {
        self.queued.values().map(|q| usize::from(q.held.is_some()) + usize::from(q.spare.is_some())).sum()
    }

    /// Closes the oldest spare, or else the oldest held file (whose analysis then fails, counted
    /// as failed, unless the analyzer opened it already).
    fn release_oldest_held(&mut self) {
        if let Some(q) = self.queued.values_mut().filter(|q| q.spare.is_some()).min_by_key(|q| q.since) {
            q.spare = None;
        } else if let Some(q) = self.queued.values_mut().filter(|q| q.held.is_some()).min_by_key(|q| q.since) {
            q.held = None;
        }
    }

    /// An analysis by path failed while a spare of the version is held: submits it again
    /// through that descriptor (the share stays taken). Whether it did.
    fn retry_through_spare(&mut self, identity: &FileIdentity) -> bool {
        if self.queued.get(identity).is_none_or(|q| q.spare.is_none()) {
            return false;
        }
        let Some(mut q) = self.queued.remove(identity) else { return false };
        let Some(spare) = q.spare.take() else { return false };
        // The version as the file is now: the unlink that made the path fail changed its ctime,
        // and the analyzer checks what it reads against the version it is asked about. The
        // events' key leads to the version analysed from now on.
        let now = spare.metadata().map_or(*identity, |m| FileIdentity::from_metadata(&m));
        if now != *identity {
            let key = self.key_of(identity);
            if let Some(o) = self.openers.peek(identity).cloned() {
                self.openers.put(now, o);
            }
            self.identities.put(key, now);
        }
        let path = PathBuf::from(format!("/proc/self/fd/{}", spare.as_raw_fd()));
        q.held = Some(spare);
        self.analyzer.forget(identity);
        self.analyzer.submit(ArtifactRequest { path, identity: now });
        self.queued.insert(now, q);
        true
    }

    /// The analyzer answered about `identity`: its share is free and its held file closed.
    fn answered(&mut self, identity: &FileIdentity) {
        if let Some(q) = self.queued.remove(identity) {
            self.queued_shares.remove(q.uid);
        }
    }

    /// Gives up analyses whose answer never came (so they do not hold a share for ever).
    pub fn expire(&mut self) {
        let stale: Vec<FileIdentity> =
            self.queued.iter().filter(|(_, q)| q.since.elapsed() > STALE_AFTER).map(|(id, _)| *id).collect();
        for id in stale {
            self.answered(&id);
        }
    }

    /// What an analyzer update means for the stream, the kernel's marks and the tracker.
    pub fn on_update(&mut self, update: ArtifactUpdate) -> ArtifactNews {
        // Only an identification tells the kernel what the content is: a digest or a policy
        // change comes later (minutes, for a large file), when a write open may have dropped
        // the mark already, and must not put back a verdict about content that is gone.
        let (identity, report, identified) = match update {
            ArtifactUpdate::Identified { identity, report } => {
                self.answered(&identity);
                if report.from_verdict_cache {
                    // Judged in an earlier run: the kernel is marked as for a fresh verdict.
                    self.verdicts_from_cache += 1;
                }
                (identity, report, true)
            }
            ArtifactUpdate::Digest { identity, report } | ArtifactUpdate::PolicyChanged { identity, report } => {
                (identity, report, false)
            }
            ArtifactUpdate::Failed { identity, path, error } => {
                if self.retry_through_spare(&identity) {
                    tracing::debug!(path = %path.display(), "artifact not analysed: {error}; again through a held descriptor");
                    return ArtifactNews::default();
                }
                self.answered(&identity);
                tracing::debug!(path = %path.display(), "artifact not analysed: {error}");
                let key = Some(self.key_of(&identity));
                return ArtifactNews { key, failed: true, ..ArtifactNews::default() };
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

    /// How events name a version: the kernel's device number, the inode, the size, the ctime.
    fn key_of(&mut self, identity: &FileIdentity) -> FileKey {
        let kdev = self.openers.get(identity).map_or_else(|| art::kernel_dev(identity), |o| o.kdev);
        (kdev, identity.ino, identity.size, identity.ctime_sec, identity.ctime_nsec as u32)
    }

    fn news(&mut self, identity: FileIdentity, report: &ArtifactReport) -> ArtifactNews {
        let opener = self.openers.get(&identity).cloned();
        let (process, name, kdev) = match opener {
            Some(o) => (Some(o.process), Some(o.name), o.kdev),
            None => (None, None, art::kernel_dev(&identity)),
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
        if report.format.is_model() {
            self.models.put((kdev, identity.ino), ());
        }
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
        let mut identified = art::identified(report, &identity);
        if let (Some(f), Some(name)) = (&mut identified.file, &name) {
            name.apply(f);
        }
        let kernel_path = identified.file.as_ref().map(|f| f.path.clone()).unwrap_or_default();
        let severity = report.max_severity().map_or(Severity::Info, art::severity).max(Severity::Info);
        // Only models are announced; a file that is not one is counted by the candidate gate.
        // What still matters about a non-model is a high finding (a store blob whose content
        // is not what its name claims).
        let model = report.format.is_model()
            || report.pickle.as_ref().is_some_and(|p| p.verdict != modelwatch_artifact::Safety::Safe);
        let mut events = Vec::new();
        if model {
            events.push((process.clone(), Payload::ArtifactIdentified(identified), severity));
        }
        let reported = self.reported_findings.get_or_insert_mut(identity, Default::default);
        for f in &report.findings {
            let worth = if model { modelwatch_artifact::Severity::Low } else { modelwatch_artifact::Severity::High };
            if f.severity < worth || !reported.insert(f.code.clone()) {
                continue;
            }
            let mut finding = art::policy_finding(report, &identity, f);
            if let (Some(file), Some(name)) = (&mut finding.file, &name) {
                name.apply(file);
            }
            events.push((process.clone(), Payload::PolicyFinding(finding), art::severity(f.severity)));
        }
        let key = Some((kdev, identity.ino, identity.size, identity.ctime_sec, identity.ctime_nsec as u32));
        let known = Some((kernel_path, summary));
        ArtifactNews { events, mark, known, key, failed: false, model_opener, manifest_error: None }
    }

    /// (kernel dev, ino) of the files identified as models (most recent first, bounded).
    pub fn models(&self) -> HashSet<(u32, u64)> {
        self.models.iter().map(|(k, ())| *k).collect()
    }

    pub fn losses(&self, resolver: &Resolver) -> LinkLosses {
        LinkLosses {
            lookups_dropped: resolver.dropped() + self.lookups_refused,
            file_not_found: self.lookups_unresolved,
            identifications_refused: self.identifications_refused,
            analyzer: self.analyzer.stats(),
        }
    }

    /// The processes charged with analyses that did not happen, for the loss ledger.
    pub fn culprits(&mut self) -> &mut Culprits {
        &mut self.culprits
    }

    /// Verdicts the analyzer served from its persisted verdict cache (not a model, or unknown
    /// format, on a version judged in an earlier run), since start.
    pub fn verdicts_from_cache(&self) -> u64 {
        self.verdicts_from_cache
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
    fn seen(path: &KernelPath, key: FileKey, mark: u32, ktime_ns: u64) -> Sighting<'_> {
        Sighting { path, key, handle: Handle::Fd(-1), mark, content: 0, ktime_ns }
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
        let key = key_of(&md);
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true, 1024);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(42);
        let path = model.to_str().expect("utf-8");
        let kpath = kernel_path(path);
        let seen = seen(&kpath, key, 0, 1);

        // Unknown: a lookup goes out, nothing is known yet; a second event does not ask again.
        assert!(link.summary(&mut resolver, &p, &seen).is_none());
        assert!(link.summary(&mut resolver, &p, &seen).is_none());
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
        // Now the identity is known: while the kernel vouches for the version (the mark set for
        // it is still there), the next event gets the summary at once, and no new lookup.
        link.mark_set(mark_id, &mark, 10);
        let kpath = kernel_path(path);
        let later = Sighting { mark: sensor_ebpf::mark::MODEL, ktime_ns: 11, ..seen };
        assert!(link.summary(&mut resolver, &p, &later).is_some());
        assert!(answers.try_recv().is_err(), "no new lookup while the kernel vouches for the version");
        // A record whose probe looked before the mark was written, with a time just after it:
        // the same version, not a change.
        let raced = Sighting { mark: 0, ktime_ns: 10 + MARK_RACE_NS, ..seen };
        assert!(link.summary(&mut resolver, &p, &raced).is_some());
        assert!(answers.try_recv().is_err(), "no new lookup for a record that raced the mark");
        // The mark gone (a write open) before a record of the same version: analysed again.
        let changed = Sighting { mark: 0, ktime_ns: 11 + MARK_RACE_NS, ..seen };
        assert!(link.summary(&mut resolver, &p, &changed).is_none());
        drop(kpath);
        link.shutdown();
    }

    #[test]
    fn findings_are_published_once_per_version_and_lost_lookups_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, false, 1024);
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
        // Not a model: no identification event (the candidate gate counts it), but its high
        // finding still goes out, once.
        assert_eq!(first.events.len(), 1, "only the finding");
        assert!(matches!(first.events[0].1, Payload::PolicyFinding(_)));
        // Every version gets a mark (it is how the kernel tells of a change under its key); a
        // non-model is filtered only when suppression is on.
        assert_eq!(first.mark.map(|(_, m)| m.verdict), Some(sensor_ebpf::mark::KNOWN));
        assert!(first.key.is_some() && !first.failed);
        assert!(link.on_update(update()).events.is_empty(), "the finding is not repeated");

        // An answer that found no file counts as file_not_found.
        let (mut resolver, _answers) = Resolver::start().expect("resolver");
        let p = process(1);
        let kpath = kernel_path("/nonexistent/m.gguf");
        let seen = seen(&kpath, (1, 2, 3, 0, 0), 0, 1);
        assert!(link.summary(&mut resolver, &p, &seen).is_none());
        assert!(link.on_identity((1, 2, 3, 0, 0), None).is_none());
        assert_eq!(link.losses(&resolver).file_not_found, 1);
        link.shutdown();
    }

    /// The path found, then unlinked before the analyzer gets to it (the process that opened
    /// it holds it, but no later event brings its descriptor): analysed through the file the
    /// resolver opened next to the path.
    #[tokio::test]
    async fn a_file_unlinked_between_its_lookup_and_its_analysis_is_analysed_all_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("gone.gguf");
        std::fs::write(&model, gguf()).expect("write");
        let md = std::fs::metadata(&model).expect("stat");
        let key = key_of(&md);
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), state.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true, 1024);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let p = process(42);
        let kpath = kernel_path(model.to_str().expect("utf-8"));
        // A descriptor number that is not the file: only the path leads to it.
        let seen = Sighting { handle: Handle::Fd(-1), ..seen(&kpath, key, 0, 1) };
        assert!(link.summary(&mut resolver, &p, &seen).is_none());
        let Some(super::super::resolver::Answer::Identity { key: k, found }) = answers.recv().await else {
            panic!("no identity answer")
        };
        std::fs::remove_file(&model).expect("unlink");
        assert!(link.on_identity(k, found).is_none());
        let news = loop {
            match next_update(&rx) {
                u @ ArtifactUpdate::Identified { .. } => break link.on_update(u),
                u @ ArtifactUpdate::Failed { .. } => {
                    let news = link.on_update(u);
                    assert!(!news.failed, "failed for good: no retry through the file held next to the path");
                }
                _ => {}
            }
        };
        assert!(news.events.iter().any(|(_, payload, _)| matches!(payload, Payload::ArtifactIdentified(_))));
        assert_eq!(news.mark.map(|(_, m)| m.verdict), Some(sensor_ebpf::mark::MODEL));
        link.shutdown();
    }

    fn kernel_path(path: &str) -> KernelPath {
        KernelPath { path: path.into(), complete: true, ..Default::default() }
    }

    fn user(pid: u32, uid: u32) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo { pid, uid, entity_id: format!("entity-{pid}"), ..Default::default() })
    }

    #[test]
    fn shares_leave_room_for_a_newcomer_whoever_floods() {
        let mut s = Shares::default();
        let cap = 1024;
        let mut total = 0;
        // One user alone gets half.
        while s.admits(65534, total, cap) {
            s.add(65534);
            total += 1;
        }
        assert_eq!(total, 512);
        // A second one gets a third of the whole, and a third user still finds room.
        while s.admits(1000, total, cap) {
            s.add(1000);
            total += 1;
        }
        assert_eq!(total, 512 + 341);
        assert!(s.admits(0, total, cap));
        s.remove(65534);
        assert_eq!(s.by_uid[&65534], 511);
        // A tiny capacity still admits one each.
        assert!(Shares::default().admits(5, 0, 1));
    }

    /// While one user's lookups fill its share, another user's file is still looked up; the
    /// refusals are charged to the flooding process.
    #[test]
    fn a_flood_of_lookups_by_one_user_leaves_room_for_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start(&ArtifactConfig::default(), dir.path(), tx).expect("analyzer");
        let mut link = ArtifactLink::new(analyzer, true, 1024);
        let (mut resolver, _answers) = Resolver::start().expect("resolver");
        let flooder = user(10, 65534);
        // Nothing answers while the test runs: the answers are never read.
        let kpath = kernel_path("/nonexistent/flood.gguf");
        for ino in 0..2000 {
            let seen = seen(&kpath, (1, ino, 1, 0, 0), 0, 1);
            link.summary(&mut resolver, &flooder, &seen);
        }
        let refused = link.losses(&resolver).lookups_dropped;
        assert_eq!(refused, 2000 - 512, "the flooder got half the table");
        let root = user(1, 0);
        let seen = seen(&kpath, (1, 99_999, 1, 0, 0), 0, 1);
        link.summary(&mut resolver, &root, &seen);
        assert_eq!(link.losses(&resolver).lookups_dropped, refused, "root's lookup went out");
        assert!(link.pending.contains_key(&(1, 99_999, 1, 0, 0)));
        let mut ledger = super::super::losses::LossLedger::default();
        let counters = [super::super::losses::Loss::new(LossSource::Analyzer, "lookup_dropped", refused)];
        let out = ledger.report(&counters, link.culprits());
        let c = &out[0].1.culprits;
        assert_eq!((c.len(), c[0].pid, c[0].uid, c[0].count), (1, 10, 65534, refused));
        link.shutdown();
    }

    /// A file reached through the opener's descriptor is held: it is analysed even though the
    /// opener closed it (and it was unlinked) before the analyzer ran.
    #[tokio::test]
    async fn a_held_file_is_analysed_after_its_opener_let_go() {
        use std::os::fd::AsRawFd as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("brief.gguf");
        std::fs::write(&model, gguf()).expect("write");
        let f = File::open(&model).expect("open");
        let md = f.metadata().expect("stat");
        let key = (kernel_dev_from_user(md.dev()), md.ino(), md.size(), md.ctime(), md.ctime_nsec() as u32);
        std::fs::remove_file(&model).expect("unlink");
        let (tx, rx) = std::sync::mpsc::channel();
        let analyzer = Analyzer::start_with(
            &ArtifactConfig::default(),
            dir.path(),
            tx,
            modelwatch_artifact::service::StartOptions { paused: true },
        )
        .expect("analyzer");
        let mut link = ArtifactLink::new(analyzer.clone(), true, 1024);
        let (mut resolver, mut answers) = Resolver::start().expect("resolver");
        let kpath = kernel_path(model.to_str().expect("utf-8"));
        let me = Arc::new(ProcessInfo { pid: std::process::id(), ..Default::default() });
        let seen = Sighting { handle: Handle::Fd(f.as_raw_fd()), ..seen(&kpath, key, 0, 1) };
        assert!(link.summary(&mut resolver, &me, &seen).is_none());
        let Some(super::super::resolver::Answer::Identity { key: k, found }) = answers.recv().await else {
            panic!("no identity answer")
        };
        assert!(found.as_ref().is_some_and(|f| f.held.is_some()), "reached through the descriptor");
        assert!(link.on_identity(k, found).is_none());
        // The opener lets go before the analyzer runs.
        drop(f);
        analyzer.resume();
        let news = loop {
            match next_update(&rx) {
                u @ ArtifactUpdate::Identified { .. } => break link.on_update(u),
                ArtifactUpdate::Failed { error, .. } => panic!("analysis failed: {error}"),
                _ => {}
            }
        };
        let Payload::ArtifactIdentified(a) = &news.events[0].1 else { panic!("not identified") };
        assert_eq!(a.artifact.as_ref().map(|s| s.format), Some(crate::proto::v1::ArtifactFormat::Gguf as i32));
        assert_eq!(a.file.as_ref().map(|f| f.path.as_str()), Some(kpath.path.as_str()), "named as the event named it");
        assert!(link.queued.is_empty(), "answered: the held file is closed");
        link.shutdown();
    }
}
