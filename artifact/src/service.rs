//! The live analyzer: the sensor submits every model file it sees opened, and gets back, once
//! per file version, what the file is and — later, off the hot path — its digest and verdicts.
//!
//! Threads, not tasks: identification and hashing are blocking file I/O and CPU. Several
//! identification threads (`analysis_workers`, at nice 5) take files from a two-lane queue
//! (`queue`): small files and files that can carry code go first. Every identification is
//! bounded in bytes and in wall time (`max_analysis_ms`, a deadline the parsers check), so a
//! hostile file costs one worker a few seconds at most, and the next file goes to another. The
//! hashing threads lower their own I/O class to idle and their nice value so that a 40 GB
//! digest never competes with the inference process that opened the file; one of them takes the
//! large files, one at a time, the others only small ones. Files over `max_hash_bytes`, and
//! sparse ones, are not hashed: their report says why. `submit` only touches a mutex-protected
//! map and a bounded queue: it never blocks, and what does not fit is counted in
//! [`AnalyzerStats`] (a later event about the same file submits it again).
//!
//! Updates, per file version ([`FileIdentity`]):
//! 1. [`ArtifactUpdate::Identified`] soon after `submit`: format, metadata, pickle verdict and,
//!    when known, a digest — `verified` if the persistent cache knew this version, `claimed`
//!    if the store's path names one — or why none will be computed, with policy and licence
//!    evaluated on it (a claimed digest can get a model denied, never approved).
//!    A version the persistent verdict cache ([`crate::verdicts`]) knows as not a model (or
//!    of unknown format) is answered from it without reading the file (the report's
//!    `from_verdict_cache`); nothing else follows for it. Models always get a fresh
//!    identification.
//! 2. [`ArtifactUpdate::Digest`] when hashing finishes (not sent after a cache hit), with the
//!    verified digest (or `mismatch` and a critical finding) and the re-evaluated policy.
//! 3. [`ArtifactUpdate::PolicyChanged`] when a manifest reload changes a known verdict.
//!
//! The manifest is re-read on [`AnalyzerHandle::reload_manifest`] (the collector calls it on
//! SIGHUP) and when its file changes (polled); a manifest that
//! fails to load keeps the previous one and produces [`ArtifactUpdate::ManifestError`].
//!
//! [`AnalyzerHandle::shutdown`] sets a stop flag that the parsers' deadline and the hashing
//! loop check, waits about a second for the threads, and leaves behind (with a warning) any
//! that is stuck in a system call, such as a read from a filesystem that stopped answering.

mod queue;

use std::{
    collections::HashMap,
    fs::File,
    io::{Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver as StdReceiver, RecvTimeoutError, SyncSender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use self::queue::{Lane, WorkQueue};
pub use crate::FileIdentity;
use crate::{
    AnalyzeOptions, ArtifactConfig, ArtifactError, ArtifactReport, Manifest, apply_digest, apply_digest_skipped, codes,
    digest::{self, DigestCache},
    evaluate, formats, identify_open, judge, open_artifact,
    verdicts::{CachedVerdict, VerdictCache},
    verify_signature,
};

/// A file the sensor saw opened. `path` must be openable by the sensor (for a process in
/// another mount namespace, a `/proc/<pid>/root/...` path); `identity` is what the event said
/// about the file, and the analyzer checks the path still leads to that inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRequest {
    pub path: PathBuf,
    pub identity: FileIdentity,
}

#[derive(Debug, Clone)]
pub enum ArtifactUpdate {
    Identified {
        identity: FileIdentity,
        report: Arc<ArtifactReport>,
    },
    Digest {
        identity: FileIdentity,
        report: Arc<ArtifactReport>,
    },
    PolicyChanged {
        identity: FileIdentity,
        report: Arc<ArtifactReport>,
    },
    /// The file could not be analysed (gone, unreadable, changed under us).
    Failed {
        identity: FileIdentity,
        path: PathBuf,
        error: String,
    },
    ManifestReloaded {
        path: PathBuf,
        approved: usize,
        denied: usize,
    },
    /// The manifest could not be (re)loaded; the previous one stays in force.
    ManifestError(String),
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AnalyzerStats {
    pub submitted: u64,
    /// Submissions of a file version already queued or analysed.
    pub duplicates: u64,
    /// Submissions refused because the identification queue was full (or the analyzer was
    /// stopping).
    pub dropped: u64,
    pub identified: u64,
    /// Identifications cut short by their time budget (`analysis_incomplete`).
    pub incomplete: u64,
    pub failed: u64,
    pub cache_hits: u64,
    /// Identifications answered from the persistent verdict cache (not a model, or unknown
    /// format, on this very content version): the file was not read.
    pub verdict_cache_hits: u64,
    pub hashed: u64,
    pub hashed_bytes: u64,
    pub hash_nanos: u64,
    /// Digests not computed because the hashing queue was full.
    pub hash_dropped: u64,
    /// Digests not computed by policy: files too large or sparse (`digest_skipped`).
    pub digest_skipped: u64,
    pub manifest_reloads: u64,
    pub manifest_errors: u64,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    identified: AtomicU64,
    incomplete: AtomicU64,
    failed: AtomicU64,
    cache_hits: AtomicU64,
    verdict_cache_hits: AtomicU64,
    hashed: AtomicU64,
    hashed_bytes: AtomicU64,
    hash_nanos: AtomicU64,
    hash_dropped: AtomicU64,
    digest_skipped: AtomicU64,
    manifest_reloads: AtomicU64,
    manifest_errors: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for identification.
    Queued,
    /// Identified, digest on its way.
    Hashing,
    /// Identified, but the hashing queue was full: a new submission retries.
    HashDropped,
    Done,
}

struct Slot {
    phase: Phase,
    report: Option<Arc<ArtifactReport>>,
    /// Which identification produced the report: a digest computed for an earlier one (of a
    /// version forgotten since) is not applied to it.
    generation: u64,
}

struct HashJob {
    identity: FileIdentity,
    file: File,
    report: Arc<ArtifactReport>,
    generation: u64,
}

enum ManifestCmd {
    Reload,
    Stop,
}

struct Inner {
    opts: RwLock<AnalyzeOptions>,
    manifest_path: Option<PathBuf>,
    slots: Mutex<HashMap<FileIdentity, Slot>>,
    max_slots: usize,
    analysis: WorkQueue<ArtifactRequest>,
    hashing: WorkQueue<HashJob>,
    manifest_tx: Mutex<Option<mpsc::Sender<ManifestCmd>>>,
    updates: Box<dyn UpdateSink>,
    cache: Mutex<DigestCache>,
    verdicts: Mutex<VerdictCache>,
    stats: Counters,
    /// Numbers identifications (see [`Slot::generation`]).
    generations: AtomicU64,
    /// Shared with every identification's deadline and every digest's read loop.
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Files up to this size go to identification's urgent lane whatever their name: they are
/// quick, and a pickle disguised under another extension is usually small.
const SMALL_FILE: u64 = 64 << 20;
/// Files up to this size go to hashing's urgent lane (about a second of SHA-256).
const SMALL_DIGEST: u64 = 1 << 30;
/// How long [`AnalyzerHandle::shutdown`] waits for the threads before leaving them behind.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Cheap to clone; every clone drives the same analyzer.
#[derive(Clone)]
pub struct AnalyzerHandle {
    inner: Arc<Inner>,
}

/// Starts analyzers.
pub struct Analyzer;

/// Start-up switches that tests need.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Do not identify anything until [`AnalyzerHandle::resume`] (to fill queues
    /// deterministically in tests).
    pub paused: bool,
}

/// Where the analyzer's threads deliver their updates. Delivery may block: it only backs up the
/// analyzer's own bounded queues, never the caller of [`AnalyzerHandle::submit`]. An error means
/// nobody listens any more, and the analyzer winds down.
///
/// A trait rather than a channel type, so the library needs no async runtime: the collector
/// delivers into its event loop's channel, tests and tools into a standard one.
pub trait UpdateSink: Send + Sync + 'static {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected>;
}

/// The receiving side of an [`UpdateSink`] is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiver of artifact updates is gone")]
pub struct Disconnected;

impl UpdateSink for SyncSender<ArtifactUpdate> {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected> {
        self.send(update).map_err(|_| Disconnected)
    }
}

impl UpdateSink for mpsc::Sender<ArtifactUpdate> {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected> {
        self.send(update).map_err(|_| Disconnected)
    }
}

const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(5);

impl Analyzer {
    /// Starts the identification thread, `hash_workers` hashing threads and the manifest
    /// watcher. Fails when the configuration is invalid or the configured manifest cannot be
    /// loaded (at start there is no previous manifest to keep).
    pub fn start(
        cfg: &ArtifactConfig,
        state_dir: &Path,
        updates: impl UpdateSink,
    ) -> Result<AnalyzerHandle, ArtifactError> {
        Self::start_with(cfg, state_dir, updates, StartOptions::default())
    }

    pub fn start_with(
        cfg: &ArtifactConfig,
        state_dir: &Path,
        updates: impl UpdateSink,
        start: StartOptions,
    ) -> Result<AnalyzerHandle, ArtifactError> {
        let opts = AnalyzeOptions::from_config(cfg)?;
        let cache = DigestCache::load(&state_dir.join(&cfg.cache_file), cfg.cache_max_entries);
        let verdicts = VerdictCache::load(&state_dir.join(&cfg.verdict_cache_file), cfg.verdict_cache_max_entries);
        let updates: Box<dyn UpdateSink> = Box::new(updates);
        let (manifest_tx, manifest_rx) = mpsc::channel::<ManifestCmd>();
        let inner = Arc::new(Inner {
            opts: RwLock::new(opts),
            manifest_path: cfg.manifest.clone(),
            slots: Mutex::new(HashMap::new()),
            max_slots: cfg.cache_max_entries.max(1024),
            analysis: WorkQueue::new(cfg.analysis_queue, start.paused),
            hashing: WorkQueue::new(cfg.hash_queue, false),
            manifest_tx: Mutex::new(Some(manifest_tx)),
            updates,
            cache: Mutex::new(cache),
            verdicts: Mutex::new(verdicts),
            stats: Counters::default(),
            generations: AtomicU64::new(1),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
        });
        let handle = AnalyzerHandle { inner: inner.clone() };
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| -> Result<(), ArtifactError> {
            let t = std::thread::Builder::new().name(name).spawn(f).map_err(|e| ArtifactError::Start(e.to_string()))?;
            if let Ok(mut threads) = inner.threads.lock() {
                threads.push(t);
            }
            Ok(())
        };
        let started = (|| {
            for i in 0..cfg.analysis_workers {
                let inner = inner.clone();
                spawn(format!("mw-artifact-id{i}"), Box::new(move || identification_loop(&inner)))?;
            }
            for i in 0..cfg.hash_workers {
                let inner = inner.clone();
                // One thread takes the large digests, one at a time: two would compete for the
                // disk, and the others stay free for the small ones.
                spawn(format!("mw-artifact-hash{i}"), Box::new(move || hash_loop(&inner, i == 0)))?;
            }
            let inner = inner.clone();
            let poll = Duration::from_secs(cfg.manifest_poll_secs);
            spawn("mw-artifact-manifest".into(), Box::new(move || manifest_loop(&inner, manifest_rx, poll)))
        })();
        if let Err(e) = started {
            handle.shutdown();
            return Err(e);
        }
        Ok(handle)
    }
}

/// The identification lane of a request: files that are small, or named like a format that can
/// carry code, go first. The name is all there is before the file is read (and `submit` must
/// not read); content decides everything else.
fn analysis_lane(req: &ArtifactRequest) -> Lane {
    if req.identity.size <= SMALL_FILE || formats::named_like_code_carrier(&req.path) {
        Lane::Urgent
    } else {
        Lane::Bulk
    }
}

impl AnalyzerHandle {
    /// Queues a file version for analysis; never blocks. Versions already queued or analysed
    /// are counted as duplicates; a full queue is counted as dropped.
    pub fn submit(&self, req: ArtifactRequest) {
        let inner = &self.inner;
        inc(&inner.stats.submitted);
        if inner.stop.load(Ordering::Relaxed) {
            inc(&inner.stats.dropped);
            return;
        }
        {
            let Ok(mut slots) = inner.slots.lock() else { return };
            match slots.get_mut(&req.identity) {
                Some(s) if s.phase != Phase::HashDropped => {
                    inc(&inner.stats.duplicates);
                    return;
                }
                Some(s) => s.phase = Phase::Queued,
                None => {
                    if slots.len() >= inner.max_slots {
                        evict(&mut slots, inner.max_slots / 10);
                    }
                    slots.insert(req.identity, Slot { phase: Phase::Queued, report: None, generation: 0 });
                }
            }
        }
        let identity = req.identity;
        let lane = analysis_lane(&req);
        if inner.analysis.try_push(req, lane).is_err() {
            inc(&inner.stats.dropped);
            if let Ok(mut slots) = inner.slots.lock() {
                // Forget the version so a later event about it is accepted.
                if slots.get(&identity).is_some_and(|s| s.report.is_none()) {
                    slots.remove(&identity);
                } else if let Some(s) = slots.get_mut(&identity) {
                    s.phase = Phase::HashDropped;
                }
            }
        }
    }

    /// Forgets what is known about a file version (its report and cached digest), so that its
    /// next submission is analysed again: for when the caller learnt that the content may have
    /// changed under an unchanged identity (the kernel saw a writer, or writes that change no
    /// timestamp). A digest still being computed for the forgotten report is discarded when it
    /// finishes.
    pub fn forget(&self, identity: &FileIdentity) {
        if let Ok(mut slots) = self.inner.slots.lock() {
            slots.remove(identity);
        }
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.remove(identity);
        }
        if let Ok(mut verdicts) = self.inner.verdicts.lock() {
            verdicts.remove(identity);
        }
    }

    /// The latest report for a file version, if it has been identified.
    pub fn lookup(&self, identity: &FileIdentity) -> Option<Arc<ArtifactReport>> {
        self.inner.slots.lock().ok()?.get(identity)?.report.clone()
    }

    pub fn stats(&self) -> AnalyzerStats {
        let c = &self.inner.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AnalyzerStats {
            submitted: l(&c.submitted),
            duplicates: l(&c.duplicates),
            dropped: l(&c.dropped),
            identified: l(&c.identified),
            incomplete: l(&c.incomplete),
            failed: l(&c.failed),
            cache_hits: l(&c.cache_hits),
            verdict_cache_hits: l(&c.verdict_cache_hits),
            hashed: l(&c.hashed),
            hashed_bytes: l(&c.hashed_bytes),
            hash_nanos: l(&c.hash_nanos),
            hash_dropped: l(&c.hash_dropped),
            digest_skipped: l(&c.digest_skipped),
            manifest_reloads: l(&c.manifest_reloads),
            manifest_errors: l(&c.manifest_errors),
        }
    }

    /// Re-reads the manifest now (the collector calls this on SIGHUP).
    pub fn reload_manifest(&self) {
        if let Ok(tx) = self.inner.manifest_tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send(ManifestCmd::Reload);
        }
    }

    /// Lets a paused analyzer (see [`StartOptions::paused`]) start identifying.
    pub fn resume(&self) {
        self.inner.analysis.resume();
    }

    /// Writes the digest and verdict caches now.
    pub fn flush_cache(&self) -> std::io::Result<()> {
        let digests = match self.inner.cache.lock() {
            Ok(mut c) => c.save(),
            Err(_) => Ok(()),
        };
        let verdicts = match self.inner.verdicts.lock() {
            Ok(mut v) => v.save(),
            Err(_) => Ok(()),
        };
        digests.and(verdicts)
    }

    /// Stops every thread and writes the digest cache, in about a second at most: in-progress
    /// identifications and digests see the stop flag within milliseconds and are abandoned;
    /// a thread still running after `SHUTDOWN_WAIT` (stuck in a system call on a filesystem
    /// that does not answer) is left behind, and the log says so. Idempotent.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.store(true, Ordering::Relaxed);
        inner.analysis.close();
        inner.hashing.close();
        if let Ok(mut tx) = inner.manifest_tx.lock()
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(ManifestCmd::Stop);
        }
        let threads = inner.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut stuck = Vec::new();
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            } else {
                stuck.push(t.thread().name().unwrap_or("?").to_owned());
            }
        }
        if !stuck.is_empty() {
            tracing::warn!(
                threads = %stuck.join(", "),
                "artifact analyzer threads did not stop within {} ms (blocked in a read?); leaving them behind",
                SHUTDOWN_WAIT.as_millis()
            );
        }
        if let Err(e) = self.flush_cache() {
            tracing::warn!(error = %e, "cannot write the digest or verdict cache");
        }
    }
}

/// Forgets up to `n` versions that no worker still holds: finished ones and ones whose hashing
/// was dropped (a later event submits those again). Queued and hashing versions stay, so the
/// map exceeds `max_slots` by at most what the two queues and the workers hold.
fn evict(slots: &mut HashMap<FileIdentity, Slot>, n: usize) {
    let victims: Vec<FileIdentity> = slots
        .iter()
        .filter(|(_, s)| matches!(s.phase, Phase::Done | Phase::HashDropped))
        .map(|(k, _)| *k)
        .take(n.max(1))
        .collect();
    for v in victims {
        slots.remove(&v);
    }
}

/// Lowers the calling thread's CPU and I/O priority. `idle_io`: I/O only when the disk is
/// otherwise idle (IOPRIO_CLASS_IDLE); otherwise the lowest best-effort level.
pub fn lower_thread_priority(idle_io: bool, nice: i32) {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    let prio =
        if idle_io { IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT } else { (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7 };
    // SAFETY: plain syscalls on the calling thread (who = 0); no memory is passed.
    unsafe {
        if libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0 as libc::c_long, prio) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "ioprio_set failed");
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "setpriority failed");
        }
    }
}

fn send(inner: &Inner, u: ArtifactUpdate) {
    // Runs on plain threads: blocking here only backs up the bounded queues.
    if inner.updates.deliver(u).is_err() {
        // Nobody listens any more: wind down.
        inner.stop.store(true, Ordering::Relaxed);
    }
}

fn fail(inner: &Inner, identity: FileIdentity, path: &Path, error: String) {
    inc(&inner.stats.failed);
    if let Ok(mut slots) = inner.slots.lock() {
        slots.remove(&identity);
    }
    tracing::debug!(path = %path.display(), %error, "artifact analysis failed");
    send(inner, ArtifactUpdate::Failed { identity, path: path.to_owned(), error });
}

fn set_slot(inner: &Inner, identity: FileIdentity, phase: Phase, report: Arc<ArtifactReport>, generation: u64) {
    if let Ok(mut slots) = inner.slots.lock() {
        slots.insert(identity, Slot { phase, report: Some(report), generation });
    }
}

fn identification_loop(inner: &Inner) {
    lower_thread_priority(false, 5);
    while let Some(req) = inner.analysis.pop(true) {
        if inner.stop.load(Ordering::Relaxed) {
            break;
        }
        identify_one(inner, req);
    }
}

fn identify_one(inner: &Inner, req: ArtifactRequest) {
    let ArtifactRequest { path, identity } = req;
    if let Some(report) = remembered_verdict(inner, &path, &identity) {
        inc(&inner.stats.identified);
        inc(&inner.stats.verdict_cache_hits);
        let report = Arc::new(report);
        set_slot(inner, identity, Phase::Done, report.clone(), inner.generations.fetch_add(1, Ordering::Relaxed));
        return send(inner, ArtifactUpdate::Identified { identity, report });
    }
    let (mut file, meta) = match open_artifact(&path) {
        Ok(x) => x,
        Err(e) => return fail(inner, identity, &path, e.to_string()),
    };
    let actual = FileIdentity::from_metadata(&meta);
    if actual != identity {
        let why = if (actual.dev, actual.ino) != (identity.dev, identity.ino) {
            "the path now leads to another file"
        } else {
            "the file changed since the event"
        };
        return fail(inner, identity, &path, why.into());
    }
    let mut opts = match inner.opts.read() {
        Ok(o) => o.clone(),
        Err(_) => return,
    };
    opts.stop = Some(inner.stop.clone());
    let mut report = identify_open(&path, &mut file, meta.len(), &opts);
    if inner.stop.load(Ordering::Relaxed) {
        // Cut short by the shutdown: nobody waits for it, and it is not the file's verdict.
        return;
    }
    if let Some(verdict) = CachedVerdict::of(&report)
        && let Ok(mut v) = inner.verdicts.lock()
    {
        v.insert(&identity, verdict);
        if let Err(e) = v.save_if_due(CACHE_SAVE_INTERVAL) {
            tracing::warn!(error = %e, "cannot write the verdict cache");
        }
    }
    inc(&inner.stats.identified);
    if report.findings.iter().any(|f| f.code == codes::ANALYSIS_INCOMPLETE) {
        inc(&inner.stats.incomplete);
    }
    let generation = inner.generations.fetch_add(1, Ordering::Relaxed);
    let cached = inner.cache.lock().ok().and_then(|mut c| c.get(&identity));
    if let Some(sha) = cached {
        // The signature of a directory model needs its other files' digests: from the cache
        // here, since an analysis worker must not spend minutes hashing. One not cached sends
        // the model to the hash workers like a cache miss.
        let mut done = report.clone();
        apply_digest(&mut done, &sha);
        let missed = std::cell::Cell::new(false);
        verify_signature(&mut done, &opts, &mut |p| {
            cached_only(inner, p).ok_or_else(|| {
                missed.set(true);
                std::io::Error::new(std::io::ErrorKind::WouldBlock, "not in the digest cache")
            })
        });
        if !missed.get() {
            inc(&inner.stats.cache_hits);
            judge(&mut done, &opts);
            let report = Arc::new(done);
            set_slot(inner, identity, Phase::Done, report.clone(), generation);
            return send(inner, ArtifactUpdate::Identified { identity, report });
        }
    }
    if let Some(skipped) = digest::skip_reason(&file, &meta, &opts.hash) {
        inc(&inner.stats.digest_skipped);
        apply_digest_skipped(&mut report, skipped);
        judge(&mut report, &opts);
        let report = Arc::new(report);
        set_slot(inner, identity, Phase::Done, report.clone(), generation);
        return send(inner, ArtifactUpdate::Identified { identity, report });
    }
    judge(&mut report, &opts);
    let report = Arc::new(report);
    // The slot and the identification before the hash job: a small file's digest can be
    // done before the push returns, and must never reach the receiver before what it updates.
    set_slot(inner, identity, Phase::Hashing, report.clone(), generation);
    send(inner, ArtifactUpdate::Identified { identity, report: report.clone() });
    let job = HashJob { identity, file, report: report.clone(), generation };
    let lane = if identity.size <= SMALL_DIGEST { Lane::Urgent } else { Lane::Bulk };
    if inner.hashing.try_push(job, lane).is_err() {
        inc(&inner.stats.hash_dropped);
        set_slot(inner, identity, Phase::HashDropped, report, generation);
    }
}

/// The report of a version the verdict cache knows, built without reading the file: the
/// verdict is about this identity, whatever the path leads to now. A file whose path claims a
/// digest (a store blob) is served only when its digest is known too, so a blob whose content
/// is not what its name says is still found out.
fn remembered_verdict(inner: &Inner, path: &Path, identity: &FileIdentity) -> Option<ArtifactReport> {
    let verdict = inner.verdicts.lock().ok()?.get(identity)?;
    let opts = inner.opts.read().ok()?.clone();
    let mut report = verdict.report(path, identity.size);
    let sha = inner.cache.lock().ok().and_then(|mut c| c.get(identity));
    match sha {
        Some(sha) => {
            inc(&inner.stats.cache_hits);
            apply_digest(&mut report, &sha);
        }
        None if report.digest.is_some() => return None,
        None => {}
    }
    evaluate(&mut report, opts.manifest.as_deref(), &opts.license);
    Some(report)
}

/// The cached digest of a file as it is now, if any.
fn cached_only(inner: &Inner, path: &Path) -> Option<String> {
    let file = digest::open_readonly(path).ok()?;
    let identity = FileIdentity::from_metadata(&file.metadata().ok()?);
    inner.cache.lock().ok()?.get(&identity)
}

/// The digest of another file of a signed directory model, through the digest cache: a model
/// loaded again costs a `stat` per file, not a read. Stopped by the shutdown like any hashing.
fn cached_digest(inner: &Inner, path: &Path) -> std::io::Result<String> {
    let mut file = digest::open_readonly(path)?;
    let identity = FileIdentity::from_metadata(&file.metadata()?);
    if let Some(sha) = inner.cache.lock().ok().and_then(|mut c| c.get(&identity)) {
        return Ok(sha);
    }
    let (sha, _) = digest::sha256_until(&mut file, &inner.stop)?;
    // Kept only when the file did not change while it was read.
    if file.metadata().map(|m| FileIdentity::from_metadata(&m)).ok() == Some(identity)
        && let Ok(mut c) = inner.cache.lock()
    {
        c.insert(&identity, &sha);
    }
    Ok(sha)
}

fn hash_loop(inner: &Inner, takes_bulk: bool) {
    lower_thread_priority(true, 10);
    while let Some(job) = inner.hashing.pop(takes_bulk) {
        if inner.stop.load(Ordering::Relaxed) {
            return;
        }
        hash_one(inner, job);
    }
}

fn hash_one(inner: &Inner, mut job: HashJob) {
    let path = job.report.path.clone();
    let t = Instant::now();
    let hashed = job.file.seek(SeekFrom::Start(0)).and_then(|_| digest::sha256_until(&mut job.file, &inner.stop));
    let after = job.file.metadata().map(|m| FileIdentity::from_metadata(&m));
    let (sha, bytes) = match hashed {
        Ok(x) => x,
        Err(e) if inner.stop.load(Ordering::Relaxed) => {
            tracing::debug!(error = %e, "hashing abandoned at shutdown");
            return;
        }
        Err(e) => return fail(inner, job.identity, &path, format!("cannot read while hashing: {e}")),
    };
    if after.ok() != Some(job.identity) || bytes != job.identity.size {
        return fail(inner, job.identity, &path, "the file changed while it was hashed".into());
    }
    inner.stats.hashed_bytes.fetch_add(bytes, Ordering::Relaxed);
    inner.stats.hash_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    inc(&inner.stats.hashed);
    let opts = match inner.opts.read() {
        Ok(o) => o.clone(),
        Err(_) => return,
    };
    let mut report = (*job.report).clone();
    apply_digest(&mut report, &sha);
    verify_signature(&mut report, &opts, &mut |p| cached_digest(inner, p));
    judge(&mut report, &opts);
    let report = Arc::new(report);
    {
        let Ok(mut slots) = inner.slots.lock() else { return };
        // The caller forgot this version while it was hashed (see AnalyzerHandle::forget): the
        // digest may be of other content than the report, so neither is kept.
        if slots.get(&job.identity).is_none_or(|s| s.generation != job.generation) {
            tracing::debug!(path = %path.display(), "digest of a forgotten version discarded");
            return;
        }
        let generation = job.generation;
        slots.insert(job.identity, Slot { phase: Phase::Done, report: Some(report.clone()), generation });
        if let Ok(mut c) = inner.cache.lock() {
            c.insert(&job.identity, &sha);
            if let Err(e) = c.save_if_due(CACHE_SAVE_INTERVAL) {
                tracing::warn!(error = %e, "cannot write the digest cache");
            }
        }
    }
    send(inner, ArtifactUpdate::Digest { identity: job.identity, report });
}

/// What identifies one version of the manifest file.
fn manifest_signature(path: &Path) -> Option<FileIdentity> {
    std::fs::metadata(path).ok().map(|m| FileIdentity::from_metadata(&m))
}

fn manifest_loop(inner: &Inner, rx: StdReceiver<ManifestCmd>, poll: Duration) {
    let Some(path) = inner.manifest_path.clone() else {
        // Nothing to watch; wait for the stop command.
        while let Ok(cmd) = rx.recv() {
            if matches!(cmd, ManifestCmd::Stop) {
                return;
            }
        }
        return;
    };
    let mut seen = manifest_signature(&path);
    // With polling disabled, wake only for commands.
    let wait = if poll.is_zero() { Duration::from_secs(3600) } else { poll };
    loop {
        let forced = match rx.recv_timeout(wait) {
            Ok(ManifestCmd::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(ManifestCmd::Reload) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if inner.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = manifest_signature(&path);
        if !forced && (poll.is_zero() || now == seen) {
            continue;
        }
        seen = now;
        reload(inner, &path);
    }
}

fn reload(inner: &Inner, path: &Path) {
    let m = match Manifest::load(path) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            inc(&inner.stats.manifest_errors);
            tracing::warn!(error = %e, "manifest not reloaded; keeping the previous one");
            return send(inner, ArtifactUpdate::ManifestError(e.to_string()));
        }
    };
    inc(&inner.stats.manifest_reloads);
    let opts = match inner.opts.write() {
        Ok(mut o) => {
            o.manifest = Some(m.clone());
            o.clone()
        }
        Err(_) => return,
    };
    tracing::info!(path = %path.display(), approved = m.approved_count(), denied = m.denied_count(), "manifest loaded");
    send(
        inner,
        ArtifactUpdate::ManifestReloaded {
            path: path.to_owned(),
            approved: m.approved_count(),
            denied: m.denied_count(),
        },
    );
    // Re-judge what is known; announce what changed.
    let known: Vec<(FileIdentity, Arc<ArtifactReport>)> = match inner.slots.lock() {
        Ok(s) => s.iter().filter_map(|(k, v)| v.report.clone().map(|r| (*k, r))).collect(),
        Err(_) => return,
    };
    for (identity, old) in known {
        let mut r = (*old).clone();
        judge(&mut r, &opts);
        if r == *old {
            continue;
        }
        let report = Arc::new(r);
        if let Ok(mut s) = inner.slots.lock()
            && let Some(slot) = s.get_mut(&identity)
        {
            slot.report = Some(report.clone());
        }
        send(inner, ArtifactUpdate::PolicyChanged { identity, report });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_lower_their_priority() {
        let (io, nice) = std::thread::spawn(|| {
            lower_thread_priority(true, 10);
            // SAFETY: getpriority on the calling thread.
            let nice = unsafe {
                *libc::__errno_location() = 0;
                libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t)
            };
            // SAFETY: read-only syscall on the calling thread.
            let io = unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) };
            (io, nice)
        })
        .join()
        .expect("thread");
        assert_eq!(io, 3 << 13, "IOPRIO_CLASS_IDLE");
        assert!(nice >= 10, "nice {nice}");
    }

    #[test]
    fn eviction_also_frees_versions_whose_hashing_was_dropped() {
        let id = |ino| FileIdentity { dev: 1, ino, size: 1, mtime_ns: 0, ctime_sec: 0, ctime_nsec: 0 };
        let mut slots = HashMap::new();
        for (ino, phase) in [
            (1, Phase::HashDropped),
            (2, Phase::HashDropped),
            (3, Phase::Queued),
            (4, Phase::Hashing),
            (5, Phase::Done),
        ] {
            slots.insert(id(ino), Slot { phase, report: None, generation: 0 });
        }
        evict(&mut slots, 10);
        let mut left: Vec<u64> = slots.keys().map(|k| k.ino).collect();
        left.sort_unstable();
        assert_eq!(left, [3, 4]);
    }
}
