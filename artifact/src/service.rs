//! The live analyzer: the sensor submits every model file it sees opened, and gets back, once
//! per file version, what the file is and — later, off the hot path — its digest and verdicts.
//!
//! Threads, not tasks: identification and hashing are blocking file I/O and CPU, and the
//! hashing threads lower their own I/O class to idle and their nice value so that a 40 GB
//! digest never competes with the inference process that opened the file. `submit` only
//! touches a mutex-protected map and a bounded queue: it never blocks, and what does not fit is
//! counted in [`AnalyzerStats`] (a later event about the same file submits it again).
//!
//! Updates, per file version ([`FileIdentity`]):
//! 1. [`ArtifactUpdate::Identified`] soon after `submit`: format, metadata, pickle verdict and,
//!    when known, a digest — `verified` if the persistent cache knew this version, `claimed`
//!    if the store's path names one — with policy and licence evaluated on it (a claimed
//!    digest can get a model denied, never approved).
//! 2. [`ArtifactUpdate::Digest`] when hashing finishes (not sent after a cache hit), with the
//!    verified digest (or `mismatch` and a critical finding) and the re-evaluated policy.
//! 3. [`ArtifactUpdate::PolicyChanged`] when a manifest reload changes a known verdict.
//!
//! The manifest is re-read on [`AnalyzerHandle::reload_manifest`] (the collector calls it on
//! SIGHUP) and when its file changes (polled); a manifest that
//! fails to load keeps the previous one and produces [`ArtifactUpdate::ManifestError`].

use std::{
    collections::HashMap,
    fs::File,
    io::{Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver as StdReceiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

pub use crate::FileIdentity;
use crate::{
    AnalyzeOptions, ArtifactConfig, ArtifactError, ArtifactReport, Manifest, apply_digest, digest::DigestCache,
    evaluate, identify_open, open_artifact,
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
    /// Submissions refused because the identification queue was full.
    pub dropped: u64,
    pub identified: u64,
    pub failed: u64,
    pub cache_hits: u64,
    pub hashed: u64,
    pub hashed_bytes: u64,
    pub hash_nanos: u64,
    /// Digests not computed because the hashing queue was full.
    pub hash_dropped: u64,
    pub manifest_reloads: u64,
    pub manifest_errors: u64,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    identified: AtomicU64,
    failed: AtomicU64,
    cache_hits: AtomicU64,
    hashed: AtomicU64,
    hashed_bytes: AtomicU64,
    hash_nanos: AtomicU64,
    hash_dropped: AtomicU64,
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
    analysis_tx: Mutex<Option<SyncSender<ArtifactRequest>>>,
    hash_tx: Mutex<Option<SyncSender<HashJob>>>,
    manifest_tx: Mutex<Option<mpsc::Sender<ManifestCmd>>>,
    updates: Box<dyn UpdateSink>,
    cache: Mutex<DigestCache>,
    stats: Counters,
    /// Numbers identifications (see [`Slot::generation`]).
    generations: AtomicU64,
    stop: AtomicBool,
    paused: (Mutex<bool>, std::sync::Condvar),
    threads: Mutex<Vec<JoinHandle<()>>>,
}

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
        let updates: Box<dyn UpdateSink> = Box::new(updates);
        let (analysis_tx, analysis_rx) = mpsc::sync_channel::<ArtifactRequest>(cfg.analysis_queue);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<HashJob>(cfg.hash_queue);
        let (manifest_tx, manifest_rx) = mpsc::channel::<ManifestCmd>();
        let inner = Arc::new(Inner {
            opts: RwLock::new(opts),
            manifest_path: cfg.manifest.clone(),
            slots: Mutex::new(HashMap::new()),
            max_slots: cfg.cache_max_entries.max(1024),
            analysis_tx: Mutex::new(Some(analysis_tx)),
            hash_tx: Mutex::new(Some(hash_tx)),
            manifest_tx: Mutex::new(Some(manifest_tx)),
            updates,
            cache: Mutex::new(cache),
            stats: Counters::default(),
            generations: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            paused: (Mutex::new(start.paused), std::sync::Condvar::new()),
            threads: Mutex::new(Vec::new()),
        });
        let handle = AnalyzerHandle { inner: inner.clone() };
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f).map_err(|e| ArtifactError::Start(e.to_string()))
        };
        let mut threads = Vec::new();
        {
            let inner = inner.clone();
            threads.push(spawn("mw-artifact-id".into(), Box::new(move || identification_loop(&inner, analysis_rx)))?);
        }
        let hash_rx = Arc::new(Mutex::new(hash_rx));
        for i in 0..cfg.hash_workers {
            let (inner, rx) = (inner.clone(), hash_rx.clone());
            threads.push(spawn(format!("mw-artifact-hash{i}"), Box::new(move || hash_loop(&inner, &rx)))?);
        }
        {
            let inner = inner.clone();
            let poll = Duration::from_secs(cfg.manifest_poll_secs);
            threads.push(spawn(
                "mw-artifact-manifest".into(),
                Box::new(move || manifest_loop(&inner, manifest_rx, poll)),
            )?);
        }
        if let Ok(mut t) = inner.threads.lock() {
            t.extend(threads);
        }
        Ok(handle)
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
        let sent = match inner.analysis_tx.lock() {
            Ok(tx) => match tx.as_ref() {
                Some(tx) => tx.try_send(req).map_err(|e| matches!(e, TrySendError::Full(_))),
                None => Err(false),
            },
            Err(_) => Err(false),
        };
        if sent.is_err() {
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
            failed: l(&c.failed),
            cache_hits: l(&c.cache_hits),
            hashed: l(&c.hashed),
            hashed_bytes: l(&c.hashed_bytes),
            hash_nanos: l(&c.hash_nanos),
            hash_dropped: l(&c.hash_dropped),
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
        let (lock, cv) = &self.inner.paused;
        if let Ok(mut p) = lock.lock() {
            *p = false;
            cv.notify_all();
        }
    }

    /// Writes the digest cache now.
    pub fn flush_cache(&self) -> std::io::Result<()> {
        match self.inner.cache.lock() {
            Ok(mut c) => c.save(),
            Err(_) => Ok(()),
        }
    }

    /// Stops every thread (an in-progress digest is abandoned) and writes the digest cache.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.store(true, Ordering::Relaxed);
        self.resume();
        if let Ok(mut tx) = inner.analysis_tx.lock() {
            tx.take();
        }
        if let Ok(mut tx) = inner.hash_tx.lock() {
            tx.take();
        }
        if let Ok(mut tx) = inner.manifest_tx.lock()
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(ManifestCmd::Stop);
        }
        let threads = inner.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        if let Err(e) = self.flush_cache() {
            tracing::warn!(error = %e, "cannot write the digest cache");
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

fn identification_loop(inner: &Inner, rx: StdReceiver<ArtifactRequest>) {
    lower_thread_priority(false, 5);
    {
        let (lock, cv) = &inner.paused;
        if let Ok(mut p) = lock.lock() {
            while *p {
                p = match cv.wait(p) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
        }
    }
    while let Ok(req) = rx.recv() {
        if inner.stop.load(Ordering::Relaxed) {
            break;
        }
        identify_one(inner, req);
    }
}

fn identify_one(inner: &Inner, req: ArtifactRequest) {
    let ArtifactRequest { path, identity } = req;
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
    let opts = match inner.opts.read() {
        Ok(o) => o.clone(),
        Err(_) => return,
    };
    let mut report = identify_open(&path, &mut file, meta.len(), &opts);
    inc(&inner.stats.identified);
    let generation = inner.generations.fetch_add(1, Ordering::Relaxed);
    let cached = inner.cache.lock().ok().and_then(|mut c| c.get(&identity));
    if let Some(sha) = cached {
        inc(&inner.stats.cache_hits);
        apply_digest(&mut report, &sha);
        evaluate(&mut report, opts.manifest.as_deref(), &opts.license);
        let report = Arc::new(report);
        set_slot(inner, identity, Phase::Done, report.clone(), generation);
        return send(inner, ArtifactUpdate::Identified { identity, report });
    }
    evaluate(&mut report, opts.manifest.as_deref(), &opts.license);
    let report = Arc::new(report);
    // The slot first: a small file's digest can be done before try_send returns.
    set_slot(inner, identity, Phase::Hashing, report.clone(), generation);
    let job = HashJob { identity, file, report: report.clone(), generation };
    let queued = match inner.hash_tx.lock() {
        Ok(tx) => tx.as_ref().is_some_and(|tx| tx.try_send(job).is_ok()),
        Err(_) => false,
    };
    if !queued {
        inc(&inner.stats.hash_dropped);
        set_slot(inner, identity, Phase::HashDropped, report.clone(), generation);
    }
    send(inner, ArtifactUpdate::Identified { identity, report });
}

fn hash_loop(inner: &Inner, rx: &Mutex<StdReceiver<HashJob>>) {
    lower_thread_priority(true, 10);
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if inner.stop.load(Ordering::Relaxed) {
            return;
        }
        hash_one(inner, job);
    }
}

fn hash_one(inner: &Inner, mut job: HashJob) {
    let path = job.report.path.clone();
    let t = Instant::now();
    let hashed =
        job.file.seek(SeekFrom::Start(0)).and_then(|_| crate::digest::sha256_until(&mut job.file, &inner.stop));
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
    evaluate(&mut report, opts.manifest.as_deref(), &opts.license);
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
        evaluate(&mut r, opts.manifest.as_deref(), &opts.license);
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
