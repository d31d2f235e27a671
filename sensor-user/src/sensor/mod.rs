//! The running sensor: the wiring of the pipeline's components and the event loop that drives
//! them. One task owns all mutable state, so there is no locking on the hot path.
//!
//! Records come from the kernel's ring buffer and are decoded (`decode`), attributed to a
//! process (`process::ProcessTable`), turned into schema events (`enrich`) and published on the
//! `bus`. The components here each own their state and answer through a narrow interface:
//! - [`artifacts::ArtifactLink`]: which file version an event is about, and the analyzer;
//! - [`candidates::CandidateGate`]: model events wait there for the content's verdict;
//! - [`devices::DeviceUsage`]: watched accelerators and the kernel's ioctl counts;
//! - [`usage::Sampler`]: CPU and GPU samples for the session tracker;
//! - [`model_dirs::ModelDirs`]: the configured model directories in the kernel filter;
//! - [`reads::ModelReads`]: the kernel's io_uring read counts of model files;
//! - [`rate_limit::RateLimits`]: records the kernel's per-process rate limit dropped, and whose;
//! - [`losses::LossLedger`]: every loss counter, reported once, with who caused it;
//! - [`resolver::Resolver`]: stat(2)s off the loop, for the first and the fourth;
//! - [`proc_scan::Scanner`]: walks of /proc for what the probes could not see happen (files
//!   loaded before the sensor started, model descriptors passed between processes);
//! - [`reload`]: what a configuration reloaded on SIGHUP changes, and its application;
//! - `session::Tracker` (its own module): inference sessions.
//!
//! A new kernel event kind gets one arm in [`Sensor::on_event`].

mod artifacts;
mod candidates;
mod devices;
mod losses;
mod model_dirs;
mod proc_scan;
mod rate_limit;
mod reads;
mod reload;
mod resolver;
mod usage;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use modelwatch_artifact::service::{Analyzer, ArtifactUpdate};
use sensor_ebpf::{EventKind, reason};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc::Receiver,
};

pub use self::reload::{ConfigSource, LIVE as LIVE_SETTINGS, on_sighup as reload_on_sighup};
use self::{
    artifacts::{ARTIFACT_UPDATES, ArtifactLink, ArtifactNews, Handle, LoopUpdates, Sighting},
    candidates::{Candidate, CandidateGate, Released, Verdict},
    devices::DeviceUsage,
    losses::{Loss, LossLedger},
    model_dirs::ModelDirs,
    proc_scan::{Attributions, Found, Rules, Scanner, Subject, Walk},
    rate_limit::RateLimits,
    reads::ModelReads,
    resolver::{Answer, Resolver},
    usage::Sampler,
};
use crate::{
    bus::Bus,
    config::Config,
    decode::{self, FileMmap, FileOpen, KernelEvent},
    enrich::{self, Enricher, Origin},
    host,
    loader::{self, KernelMaps, KernelStats, LoadSettings, LoaderError, Probes},
    process::{ProcessInfo, ProcessTable},
    proto::v1::{
        AcceleratorActivity, AcceleratorOpened, Event, EventsLost, FileRef, HealthState, LossCulprit, LossSource,
        ModelRead, ProcessExec, ProcessFork, SensorHealth, Severity, event::Payload,
    },
    session::{Observation, SessionConfig, SessionEvent, Tracker},
    status::{SharedStatus, StatsRequest, StatusView},
};

/// Pause after draining the ring buffer (see the run loop).
const RING_BATCH_PAUSE: Duration = Duration::from_micros(500);
/// Records handled per turn of the run loop before the other work gets its turn.
const RING_BATCH_MAX: usize = 16_384;
/// How long the drain at shutdown may take.
const FINAL_DRAIN_MAX: Duration = Duration::from_secs(2);
/// How long a stopping sensor waits for the verdicts its held model events need.
const VERDICTS_AT_STOP: Duration = Duration::from_secs(1);
/// How long start-up waits for the model directories (a hung filesystem: they join later).
const MODEL_DIRS_AT_START: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error("artifact analysis: {0}")]
    Analyzer(#[from] modelwatch_artifact::ArtifactError),
    #[error("{what}: {source}")]
    EventLoop { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

/// What reaches the loop from other threads and tasks.
struct Inbox {
    artifacts: Receiver<ArtifactUpdate>,
    answers: Receiver<Answer>,
    stats: Receiver<StatsRequest>,
    found: Receiver<Found>,
    /// Configurations read again on SIGHUP (or why they could not be).
    reloads: Receiver<Result<Config, crate::config::ConfigError>>,
    /// The name service's answers about uids /etc/passwd does not know.
    users: Receiver<crate::users::Answer>,
}

pub struct Sensor {
    /// The configuration in force: the start's, then each reload's live settings.
    cfg: Config,
    config_source: ConfigSource,
    maps: KernelMaps,
    probes: Probes,
    table: ProcessTable,
    enricher: Enricher,
    bus: Bus,
    status: SharedStatus,
    resolver: Resolver,
    artifacts: ArtifactLink,
    gate: CandidateGate,
    devices: DeviceUsage,
    model_dirs: ModelDirs,
    reads: ModelReads,
    rate_limits: RateLimits,
    sampler: Sampler,
    tracker: Tracker,
    losses: LossLedger,
    scanner: Scanner,
    /// Which processes were reported with which files (so a /proc walk adds only the unseen).
    attributions: Attributions,
    /// A walk of /proc that could not look at everything: said in the health event.
    walk_note: Option<String>,
    decode_errors: u64,
    stats_tx: tokio::sync::mpsc::Sender<StatsRequest>,
    inbox: Option<Inbox>,
}

/// Shared objects are code, never weights, however large (libcudnn, libtorch_cuda).
fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("so"))
        || name.to_ascii_lowercase().contains(".so.")
}

fn session_config(cfg: &Config) -> SessionConfig {
    SessionConfig {
        update_interval: Duration::from_millis(cfg.sessions.update_interval_ms),
        idle_timeout: Duration::from_millis(cfg.sessions.idle_timeout_ms),
        cpu_busy_percent: cfg.sessions.cpu_busy_percent,
        large_model_bytes: cfg.files.size_threshold.0,
        runtime_executables: cfg.sessions.runtime_executables.clone(),
        non_inference_executables: cfg.sessions.non_inference_executables.clone(),
    }
}

impl Sensor {
    /// Loads the probes and prepares every kernel map from the configuration.
    pub fn start(cfg: Config, config_source: ConfigSource, bus: Bus) -> Result<(Self, RingBuf<MapData>), SensorError> {
        let settings = LoadSettings {
            size_threshold: cfg.files.size_threshold.0,
            runtime_budget: cfg.files.runtime_process_opens_per_sec,
            rate_per_sec: cfg.sensor.file_events_per_sec,
            rate_burst: cfg.sensor.file_events_burst,
            ring_buffer_bytes: cfg.sensor.ring_buffer_kib.saturating_mul(1024),
            self_tgid: std::process::id(),
            // Overridable for kernels that keep BTF elsewhere (and to test the error path).
            btf_path: std::env::var_os("MODELWATCH_BTF")
                .map_or_else(|| PathBuf::from(crate::offsets::VMLINUX_BTF), PathBuf::from),
        };
        let (probes, mut maps, ring) = loader::load(&settings)?;
        maps.set_extensions(cfg.files.extensions.iter().map(String::as_str))?;
        maps.set_runtime_libraries(cfg.files.runtime_libraries.iter().map(String::as_str))?;
        let host_info = host::host_info();
        let (user_answers, users) = tokio::sync::mpsc::channel(64);
        let lookups =
            crate::users::spawn_lookups(crate::users::name_service, move |a| user_answers.blocking_send(a).is_ok())
                .map_err(|e| SensorError::EventLoop { what: "starting the user name lookups", source: e.into() })?;
        let mut table = ProcessTable::new(host_info.boot_id.clone(), PathBuf::from("/proc"), cfg.exit_grace())
            .with_user_lookups(lookups);
        let seeded = table.seed();
        tracing::debug!(processes = seeded, "process table seeded from /proc");
        let status = Arc::new(Mutex::new(StatusView {
            started_at: Some(SystemTime::now()),
            probes_attached: probes.attached.clone(),
            probes_skipped: probes.skipped.clone(),
            nvml: "not sampled".into(),
            config: Some(reload::view(&cfg, &config_source, Vec::new())),
            ..Default::default()
        }));
        let (stats_tx, stats) = tokio::sync::mpsc::channel(16);
        let (updates, artifact_rx) = tokio::sync::mpsc::channel(ARTIFACT_UPDATES);
        let analyzer = Analyzer::start(&cfg.artifact, &cfg.sensor.state_dir, LoopUpdates(updates))?;
        let reloads =
            reload::on_sighup(config_source.clone(), cfg.artifact.manifest.is_some().then(|| analyzer.clone()));
        let (resolver, answers) = Resolver::start()
            .map_err(|e| SensorError::EventLoop { what: "starting the file lookup thread", source: e.into() })?;
        let (scanner, found) = Scanner::start(std::process::id())
            .map_err(|e| SensorError::EventLoop { what: "starting the /proc walks", source: e.into() })?;
        let sampler = Sampler::new(&cfg.telemetry);
        if let Ok(mut st) = status.lock() {
            st.nvml = sampler.nvml_state();
        }
        let mut sensor = Self {
            artifacts: ArtifactLink::new(analyzer, cfg.files.suppress_known_non_models, cfg.artifact.analysis_queue),
            gate: CandidateGate::new(cfg.files.report_non_models, Duration::from_millis(cfg.files.fold_window_ms)),
            tracker: Tracker::new(session_config(&cfg)),
            cfg,
            config_source,
            maps,
            probes,
            table,
            enricher: Enricher::new(host_info),
            bus,
            status,
            resolver,
            devices: DeviceUsage::default(),
            model_dirs: ModelDirs::default(),
            reads: ModelReads::default(),
            rate_limits: RateLimits::default(),
            sampler,
            losses: LossLedger::default(),
            scanner,
            attributions: Attributions::default(),
            walk_note: None,
            decode_errors: 0,
            stats_tx,
            inbox: None,
        };
        sensor.rescan()?;
        for extra in &sensor.cfg.devices.extra {
            if !sensor.devices.paths().iter().any(|d| Path::new(d) == extra.path()) {
                tracing::warn!(device = %extra.path().display(), "configured device is not a character device (yet); watched once it is");
            }
        }
        // Model directories that exist now are in force before the sensor reports ready,
        // unless their filesystem hangs: then they join when the lookup returns.
        let mut answers = answers;
        let deadline = Instant::now() + MODEL_DIRS_AT_START;
        while Instant::now() < deadline {
            match answers.try_recv() {
                Ok(answer) => {
                    let dirs = matches!(answer, Answer::Dirs(_));
                    sensor.on_answer(answer)?;
                    if dirs {
                        break;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        sensor.inbox = Some(Inbox { artifacts: artifact_rx, answers, stats, found, reloads, users });
        // The probes are attached: what was loaded before is found by walking /proc once.
        let f = &sensor.cfg.files;
        let rules = Rules::new(&f.extensions, f.size_threshold.0, sensor.model_dirs.paths(), &f.runtime_libraries);
        sensor.scanner.request(Walk::AtStart(Arc::new(rules)));
        // Start-up parsed the kernel's BTF (tens of MB of short-lived allocations); give the
        // freed memory back to the system instead of keeping it in the allocator's free lists.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        Ok((sensor, ring))
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// Where the API asks for live kernel counters.
    pub fn stats_requests(&self) -> tokio::sync::mpsc::Sender<StatsRequest> {
        self.stats_tx.clone()
    }

    pub fn host(&self) -> crate::proto::v1::Host {
        self.enricher.host.clone()
    }

    /// Looks for model directories (through the resolver) and accelerator devices that
    /// appeared since the last scan.
    fn rescan(&mut self) -> Result<(), SensorError> {
        self.model_dirs.look_for(&self.cfg.files.model_dirs, &mut self.resolver);
        self.devices.discover(&mut self.maps, &self.cfg.devices.extra)?;
        if let Ok(mut s) = self.status.lock() {
            s.devices_watched = self.devices.paths();
        }
        Ok(())
    }

    /// What the resolver found.
    fn on_answer(&mut self, answer: Answer) -> Result<(), SensorError> {
        match answer {
            Answer::Identity { key, found } => {
                if found.is_none() {
                    // Gone, or never the reported inode: no verdict will come.
                    self.gate.decide(key, &Verdict::Failed);
                }
                if let Some(known) = self.artifacts.on_identity(key, found) {
                    self.on_artifact(known);
                }
                Ok(())
            }
            Answer::Dirs(found) => Ok(self.model_dirs.on_found(found, &mut self.maps)?),
        }
    }

    fn publish(&self, ev: Event) {
        self.bus.publish(ev);
    }

    /// Publishes an event about `process` (thread `tid`) at kernel time `ktime_ns`.
    fn publish_about(&self, ktime_ns: u64, process: Option<(&ProcessInfo, u32)>, payload: Payload, severity: Severity) {
        let mut ev = self.enricher.event(ktime_ns, process, payload);
        ev.severity = severity as i32;
        self.publish(ev);
    }

    /// Handles one ring-buffer record.
    pub fn on_record(&mut self, bytes: &[u8]) {
        match decode::decode(bytes) {
            Ok(ev) => self.on_event(&ev),
            Err(e) => {
                self.decode_errors += 1;
                tracing::debug!("undecodable record: {e}");
            }
        }
    }

    fn on_event(&mut self, ev: &KernelEvent) {
        let h = *ev.header();
        let (p, payload) = match ev {
            KernelEvent::Exec(e) => {
                let p = self.table.on_exec(e);
                if self.tracker.is_runtime_executable(&p) {
                    self.add_runtime_process(h.tgid, sensor_ebpf::runtime::EXECUTABLE);
                }
                self.observe(&p, Observation::Exec);
                (p, Payload::ProcessExec(ProcessExec { filename: e.filename.clone(), old_pid: e.raw.old_pid }))
            }
            KernelEvent::Fork(f) => {
                let child = self.table.on_fork(f);
                let parent = self.table.resolve(&h);
                let payload = Payload::ProcessFork(ProcessFork {
                    child_entity_id: child.entity_id.clone(),
                    child_pid: child.pid,
                });
                (parent, payload)
            }
            KernelEvent::Exit(x) => {
                let Some(p) = self.table.on_exit(&h, x.raw.ppid, Instant::now()) else {
                    tracing::debug!(tgid = h.tgid, "duplicate exit record");
                    return;
                };
                self.devices.exited(h.tgid);
                self.reads.exited(h.tgid);
                self.rate_limits.exited(h.tgid);
                let duration = h.ktime_ns.saturating_sub(p.start_boottime_ns);
                // The exit event goes out first, then the session's end.
                let payload = Payload::ProcessExit(enrich::exit_payload(x.raw.exit_code, duration));
                self.publish(self.enricher.event(h.ktime_ns, Some((&p, h.pid)), payload));
                self.observe(&p, Observation::Exit);
                return;
            }
            KernelEvent::Open(o) if o.raw.reasons & reason::DEVICE != 0 => {
                let Some(dev) = self.devices.get(o.raw.rdev) else { return };
                let device = dev.accel.clone();
                let p = self.table.resolve(&h);
                self.observe(&p, Observation::AcceleratorOpened { device: &device });
                let (flags, fd) = (o.raw.flags, o.raw.fd);
                (p, Payload::AcceleratorOpened(AcceleratorOpened { device: Some(device), flags, fd }))
            }
            KernelEvent::Open(o) => {
                self.file_opened(o, Origin::Kernel);
                return;
            }
            KernelEvent::Mmap(m) => match self.file_mapped(m, Origin::Kernel) {
                Some(runtime_library) => runtime_library,
                None => return,
            },
            KernelEvent::DeviceIoctl(d) => {
                let dev = self.devices.get(d.raw.rdev);
                let payload = Payload::AcceleratorActivity(AcceleratorActivity {
                    device: dev.map(|d| d.accel.clone()),
                    first_use: true,
                    first_command: Some(enrich::ioctl_count(dev, d.raw.cmd, 1)),
                    ..Default::default()
                });
                (self.table.resolve(&h), payload)
            }
        };
        self.publish(self.enricher.event(h.ktime_ns, Some((&p, h.pid)), payload));
    }

    /// A model file opened (or, for a /proc walk, found held): offered to the gate, which
    /// publishes it once the content says it is a model.
    fn file_opened(&mut self, o: &FileOpen, origin: Origin) {
        let p = self.table.resolve(&o.raw.header);
        self.attributions.note(Subject { pid: p.pid, start_ticks: p.start_ticks }, o.raw.dev, o.raw.ino, false);
        let opened = enrich::open_payload(o, origin);
        let r = &o.raw;
        let key = (r.dev, r.ino, r.size, r.ctime_sec, r.ctime_nsec);
        self.reads.saw(key, &o.path.path, r.mode);
        let handle = Handle::Fd(r.fd);
        let seen =
            Sighting { path: &o.path, key, handle, mark: r.mark, content: r.content, ktime_ns: r.header.ktime_ns };
        let summary = self.artifacts.summary(&mut self.resolver, &p, &seen);
        let candidate = Candidate {
            key,
            ktime_ns: o.raw.header.ktime_ns,
            tid: o.raw.header.pid,
            runtime_process: self.tracker.runtime_evidence(&p),
            process: p,
            payload: Payload::ModelFileOpened(opened),
            reasons: o.raw.reasons,
            path: o.path.path.clone(),
            write_only: o.raw.flags & 0o3 == 0o1,
        };
        let now = self.gate.offer(candidate, Verdict::of(summary), Instant::now());
        self.publish_released(now.into_iter().collect());
    }

    /// A model file or a runtime library mapped (or found mapped). A runtime library is
    /// reported at once (returned, to publish); a model goes through the gate.
    fn file_mapped(&mut self, m: &FileMmap, origin: Origin) -> Option<(Arc<ProcessInfo>, Payload)> {
        let p = self.table.resolve(&m.raw.header);
        self.attributions.note(Subject { pid: p.pid, start_ticks: p.start_ticks }, m.raw.dev, m.raw.ino, true);
        let mapped = enrich::mmap_payload(m, origin);
        if !mapped.runtime_library.is_empty() {
            self.observe(&p, Observation::RuntimeLibrary { name: &mapped.runtime_library });
            return Some((p, Payload::ModelMapped(mapped)));
        }
        if mapped.file.as_ref().is_some_and(|f| is_shared_object(&f.path)) {
            // Code, not weights, however large.
            return None;
        }
        let r = &m.raw;
        let key = (r.dev, r.ino, r.size, r.ctime_sec, r.ctime_nsec);
        self.reads.saw(key, &m.path.path, 0o100_000);
        let handle = Handle::Mapping { addr: r.addr, len: r.len, fd: r.fd };
        let seen =
            Sighting { path: &m.path, key, handle, mark: r.mark, content: r.content, ktime_ns: r.header.ktime_ns };
        let summary = self.artifacts.summary(&mut self.resolver, &p, &seen);
        let candidate = Candidate {
            key,
            ktime_ns: m.raw.header.ktime_ns,
            tid: m.raw.header.pid,
            runtime_process: self.tracker.runtime_evidence(&p),
            process: p,
            payload: Payload::ModelMapped(mapped),
            reasons: m.raw.reasons,
            path: m.path.path.clone(),
            write_only: false,
        };
        let now = self.gate.offer(candidate, Verdict::of(summary), Instant::now());
        self.publish_released(now.into_iter().collect());
        None
    }

    /// Publishes the model events the gate let through, with the time they happened, and tells
    /// the session tracker.
    fn release_candidates(&mut self) {
        let ready = self.gate.ready(Instant::now());
        self.publish_released(ready);
    }

    fn publish_released(&mut self, released: Vec<Released>) {
        for Released { ktime_ns, tid, process, payload } in released {
            match &payload {
                Payload::ModelFileOpened(o) => {
                    if let Some(file) = &o.file {
                        self.observe(&process, Observation::ModelOpened { file, artifact: o.artifact.as_ref() });
                    }
                }
                Payload::ModelMapped(m) => {
                    if let Some(file) = &m.file {
                        let obs = Observation::ModelMapped { file, length: m.length, artifact: m.artifact.as_ref() };
                        self.observe(&process, obs);
                    }
                }
                _ => {}
            }
            self.publish(self.enricher.event(ktime_ns, Some((&process, tid)), payload));
        }
    }

    /// What a walk of /proc found: reported as the kernel would have reported it, unless the
    /// process was already reported with that file.
    fn on_found(&mut self, found: Found) {
        let (who, dev, ino, at_start, mapped) = match &found {
            Found::Open { who, file, at_start, .. } => (*who, file.dev, file.ino, *at_start, false),
            Found::Map { who, file, at_start, .. } => (*who, file.dev, file.ino, *at_start, true),
            Found::Done(s) => {
                let what = if s.at_start { "start-up walk of /proc" } else { "walk of /proc for model holders" };
                tracing::debug!(processes = s.processes, found = s.found, elapsed = ?s.elapsed, "{what} done");
                if let Some(why) = &s.cut_short {
                    tracing::warn!("{what} cut short: {why}");
                    self.walk_note = Some(format!("{what} cut short: {why}"));
                }
                return;
            }
        };
        if self.attributions.knows(who, dev, ino, mapped) {
            return;
        }
        let Some(p) = self.table.find(who.pid, who.start_ticks) else { return };
        let origin = if at_start { Origin::PresentAtStart } else { Origin::HeldDescriptor };
        let now = host::boottime_ns();
        let runtime_library = match &found {
            Found::Open { file, fd, flags, .. } => {
                self.file_opened(&proc_scan::open_record(&p, file, *fd, *flags, now), origin);
                None
            }
            Found::Map { file, addr, len, offset, prot, flags, .. } => {
                self.file_mapped(&proc_scan::mmap_record(&p, file, *addr, *len, *offset, *prot, *flags, now), origin)
            }
            Found::Done(_) => return,
        };
        if let Some((p, payload)) = runtime_library {
            self.publish(self.enricher.event(now, Some((&p, p.pid)), payload));
        }
    }

    /// Publishes what the analyzer learnt, tells the kernel which inodes are models (so their
    /// mappings are reported) and which are not (so their opens cost nothing), and lets the
    /// session tracker know.
    fn on_artifact(&mut self, update: ArtifactUpdate) {
        let ArtifactNews { events, mark, known, key, failed, model_opener, manifest_error } =
            self.artifacts.on_update(update);
        if let Some(message) = manifest_error {
            let mut health = self.health(HealthState::Degraded);
            if let Some(Payload::SensorHealth(h)) = &mut health.payload {
                h.state = HealthState::Degraded as i32;
                h.message = format!("model manifest: {message} (the previous manifest stays in force)");
            }
            health.severity = Severity::Medium as i32;
            self.publish(health);
        }
        if let Some((id, m)) = mark {
            match self.maps.mark_inode(id, m) {
                // After the write: a record made earlier cannot have seen the mark.
                Ok(()) => self.artifacts.mark_set(id, &m, host::boottime_ns()),
                Err(e) => tracing::warn!("cannot mark inode: {e}"),
            }
        }
        if let Some(p) = model_opener.filter(|p| !self.tracker.is_non_inference_executable(p)) {
            self.add_runtime_process(p.pid, sensor_ebpf::runtime::MODEL);
        }
        if let Some((path, summary)) = &known {
            self.tracker.artifact_known(path, summary);
        }
        // The events that waited for this verdict go out first: they happened first.
        if let Some(key) = key {
            let verdict = if failed { Verdict::Failed } else { Verdict::of(known.map(|(_, s)| s)) };
            self.gate.decide(key, &verdict);
            let released = self.gate.release_key(key);
            self.publish_released(released);
        }
        let now = host::boottime_ns();
        for (process, payload, severity) in events {
            self.publish_about(now, process.as_deref().map(|p| (p, p.pid)), payload, severity);
        }
    }

    /// From now on the files `tgid` opens are identification candidates.
    fn add_runtime_process(&mut self, tgid: u32, flags: u32) {
        if self.cfg.files.runtime_process_opens_per_sec == 0 {
            return;
        }
        if let Err(e) = self.maps.add_runtime_process(tgid, flags) {
            tracing::debug!(tgid, "cannot widen a runtime process: {e}");
        }
    }

    /// Feeds the session tracker and publishes what it concludes.
    fn observe(&mut self, p: &Arc<ProcessInfo>, obs: Observation<'_>) {
        let out = self.tracker.observe(tokio::time::Instant::now(), SystemTime::now(), p, obs);
        self.publish_sessions(out);
    }

    fn publish_sessions(&self, events: Vec<SessionEvent>) {
        for ev in events {
            let (subject, payload) = match ev {
                SessionEvent::Started(s, p) => (s, Payload::SessionStarted(p)),
                SessionEvent::Updated(s, p) => (s, Payload::SessionUpdated(p)),
                SessionEvent::Ended(s, p) => (s, Payload::SessionEnded(p)),
            };
            // The table's entry when the process is still there (it may have exec'd since),
            // else the identity the session was opened with.
            let process = self.table.get(subject.pid).filter(|p| p.entity_id == subject.entity_id).unwrap_or(subject);
            self.publish(self.enricher.event(host::boottime_ns(), Some((&process, process.pid)), payload));
        }
    }

    /// Samples CPU time of session candidates and GPU utilisation, then lets the tracker
    /// update and expire sessions.
    pub fn sample_usage(&mut self) {
        for pid in self.tracker.candidates() {
            let Some(p) = self.table.get(pid) else { continue };
            if let Some(cpu_time_ns) = self.sampler.cpu_time_ns(pid) {
                self.observe(&p, Observation::Cpu { cpu_time_ns });
            }
        }
        let snapshot = self.sampler.gpu(&self.tracker.accelerator_users());
        for s in snapshot.processes {
            let Some(p) = self.table.get(s.pid) else { continue };
            self.observe(
                &p,
                Observation::Gpu {
                    device: s.device,
                    sm_percent: s.sm_percent,
                    memory_bytes: s.memory_bytes,
                    engine_busy_ns: s.engine_busy_ns,
                },
            );
        }
        let out = self.tracker.tick(tokio::time::Instant::now());
        self.publish_sessions(out);
        let nvml = self.sampler.nvml_state();
        if let Ok(mut st) = self.status.lock() {
            st.nvml = nvml;
        }
    }

    /// Reports the ioctl counts that grew since the last drain, per process and device.
    pub fn drain_ioctls(&mut self) {
        let (interval_ns, deltas) = self.devices.drain(&mut self.maps);
        let ktime = host::boottime_ns();
        for d in deltas {
            let payload = Payload::AcceleratorActivity(self.devices.activity(&d, interval_ns));
            let process = self.table.get(d.tgid);
            self.publish(self.enricher.event(ktime, process.as_deref().map(|p| (p, d.tgid)), payload));
            if let (Some(p), Some((dev, categories))) = (process, self.devices.category_mix(&d)) {
                let (device, compute_only_driver) = (dev.accel.clone(), dev.driver.is_compute_only());
                self.observe(&p, Observation::Ioctls { device: &device, compute_only_driver, categories });
            }
        }
    }

    /// Reports the bytes processes read from model files through io_uring since the last drain.
    pub fn drain_reads(&mut self) {
        let (interval_ns, deltas) = self.reads.drain(&mut self.maps);
        let ktime = host::boottime_ns();
        for d in deltas {
            let seen = self.reads.file(d.dev, d.ino).cloned();
            let file = FileRef {
                path: seen.as_ref().map(|f| f.path.clone()).unwrap_or_default(),
                inode: d.ino,
                device: sensor_ebpf::user_dev_from_kernel(d.dev),
                size: seen.as_ref().map_or(0, |f| f.key.2),
                mode: seen.as_ref().map_or(0, |f| f.mode),
                ..Default::default()
            };
            let artifact = seen.as_ref().and_then(|f| self.artifacts.known_summary(f.key));
            // Model events are about models: reads of a file judged otherwise are not reported
            // (the kernel counts the reads of model-named files before any verdict), and reads
            // of one not judged yet wait for its verdict.
            match Verdict::of(artifact.clone()) {
                Verdict::NotModel(..) | Verdict::Unknown(_) => continue,
                Verdict::Pending if seen.is_some() => {
                    self.reads.hold(&d);
                    continue;
                }
                _ => {}
            }
            let process = self.table.get(d.tgid);
            if let Some(p) = &process {
                self.observe(p, Observation::ModelRead { file: &file, bytes: d.bytes, artifact: artifact.as_ref() });
            }
            let payload = Payload::ModelRead(ModelRead {
                file: Some(file),
                bytes: d.bytes,
                interval_ns,
                via: if d.via == sensor_ebpf::read_via::IO_URING { "io_uring" } else { "read" }.into(),
                artifact,
            });
            self.publish(self.enricher.event(ktime, process.as_deref().map(|p| (p, d.tgid)), payload));
        }
    }

    /// Reports the records the per-process rate limit dropped, naming the processes.
    fn report_rate_limited(&mut self, kernel: &KernelStats) {
        let Some(drops) = self.rate_limits.drain(&mut self.maps, kernel.rate_limited) else { return };
        let culprits = drops
            .culprits
            .iter()
            .map(|&(pid, count)| {
                let p = self.table.get(pid);
                LossCulprit {
                    pid,
                    comm: p.as_ref().map(|p| p.comm.clone()).unwrap_or_default(),
                    uid: p.as_ref().map_or(0, |p| p.uid),
                    user: p.as_ref().map(|p| p.user.clone()).unwrap_or_default(),
                    count,
                    entity_id: p.as_ref().map(|p| p.entity_id.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let lost = EventsLost {
            count: drops.count,
            source: LossSource::Kernel as i32,
            detail: "file records over their process's rate (sensor.file_events_per_sec) were dropped".into(),
            by_kind: [("rate_limited".to_owned(), drops.count)].into(),
            culprits,
        };
        self.publish(self.sensor_event(Severity::High, Payload::EventsLost(lost)));
    }

    /// Every loss counter, cumulative, for the ledger.
    fn loss_counters(&self, kernel: &KernelStats) -> Vec<Loss> {
        let mut c: Vec<Loss> = EventKind::ALL
            .iter()
            .map(|k| Loss::new(LossSource::Kernel, k.name(), kernel.dropped[k.index() as usize]))
            .collect();
        let link = self.artifacts.losses(&self.resolver);
        c.extend([
            Loss::new(LossSource::Decode, "undecodable", self.decode_errors),
            Loss::new(LossSource::KernelMap, "pending_full", kernel.pending_full),
            Loss::new(LossSource::KernelMap, "ioctl_counts_full", kernel.ioctl_counts_full),
            Loss::new(LossSource::KernelMap, "ioctl_gate_full", kernel.ioctl_gate_full),
            Loss::new(LossSource::KernelMap, "model_reads_full", kernel.model_reads_full),
            Loss::new(LossSource::KernelMap, "runtime_map_full", kernel.runtime_map_full),
            Loss::new(LossSource::Kernel, "runtime_budget", kernel.runtime_budget),
            Loss::new(LossSource::Kernel, "io_uring_unresolved", kernel.io_uring_unresolved),
            Loss::new(LossSource::Analyzer, "lookup_dropped", link.lookups_dropped),
            Loss::new(LossSource::Analyzer, "file_not_found", link.file_not_found),
            Loss::new(
                LossSource::Analyzer,
                "identification_dropped",
                link.analyzer.dropped + link.identifications_refused,
            ),
            Loss::new(LossSource::Analyzer, "hash_dropped", link.analyzer.hash_dropped),
            Loss::new(LossSource::Analyzer, "failed", link.analyzer.failed),
            Loss::new(LossSource::SessionTracker, "untracked", self.tracker.untracked()),
        ]);
        c
    }

    /// Publishes EventsLost for everything not delivered since the last check: kernel drops,
    /// undecodable records, kernel maps that were full, artifact analyses that did not happen,
    /// processes the session table had no room for.
    pub fn report_losses(&mut self) {
        let stats = self.maps.stats();
        self.report_rate_limited(&stats);
        let counters = self.loss_counters(&stats);
        for (severity, lost) in self.losses.report(&counters, self.artifacts.culprits()) {
            self.publish(self.sensor_event(severity, Payload::EventsLost(lost)));
        }
        if let Ok(mut s) = self.status.lock() {
            s.kernel = stats;
            s.decode_errors = self.decode_errors;
            s.candidates_rejected = self.gate.rejected().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            s.model_events_folded = self.gate.folded();
            s.model_events_unidentified = self.gate.unidentified();
            s.verdicts_from_cache = self.artifacts.verdicts_from_cache();
            s.losses = self.losses.totals();
            s.artifacts_queued = self.artifacts.queued();
            s.sessions_active = self.tracker.active() as u64;
        }
    }

    fn sensor_event(&self, severity: Severity, payload: Payload) -> Event {
        Event {
            event_time: Some(host::timestamp(SystemTime::now())),
            host: Some(self.enricher.host.clone()),
            severity: severity as i32,
            payload: Some(payload),
            ..Default::default()
        }
    }

    pub fn health(&self, state: HealthState) -> Event {
        let stats = self.maps.stats();
        let mut notes = Vec::new();
        if !self.probes.skipped.is_empty() {
            notes.push(format!("probes skipped: {}", self.probes.skipped.join(", ")));
        }
        if stats.dropped_total() > 0 {
            notes.push(format!("{} kernel records dropped", stats.dropped_total()));
        }
        let stuck = self.resolver.stuck();
        if let Some((secs, what)) = &stuck {
            notes.push(format!("file lookups stuck for {secs} s on {what} (its filesystem does not answer)"));
        }
        if let Some(note) = &self.walk_note {
            notes.push(note.clone());
        }
        let degraded = !self.probes.skipped.is_empty() || stats.dropped_total() > 0 || stuck.is_some();
        let state = if state == HealthState::Ok && degraded { HealthState::Degraded } else { state };
        let nvml = self.status.lock().map(|s| s.nvml.clone()).unwrap_or_default();
        self.sensor_event(
            Severity::Info,
            Payload::SensorHealth(SensorHealth {
                state: state as i32,
                message: notes.join("; "),
                backend: "tracepoint".into(),
                probes_attached: self.probes.attached.clone(),
                probes_skipped: self.probes.skipped.clone(),
                kernel: Some(enrich::kernel_counters(&stats)),
                nvml,
                decode_errors: self.decode_errors,
                rss_bytes: rss_bytes(),
                devices_watched: self.devices.count() as u32,
                artifacts_queued: self.artifacts.queued(),
                accelerators: self.devices.accelerators(),
            }),
        )
    }

    /// Housekeeping: processes whose exit record was lost are ended, exited ones forgotten,
    /// new model directories and accelerators looked for, and memory given back.
    fn housekeeping(&mut self) {
        for p in self.table.sweep(Instant::now()) {
            tracing::debug!(pid = p.pid, "process gone without an exit record");
            self.devices.exited(p.pid);
            self.reads.exited(p.pid);
            self.rate_limits.exited(p.pid);
            self.observe(&p, Observation::Exit);
        }
        self.maps.refresh_runtime_present();
        for pid in self.table.evict(Instant::now()) {
            tracing::trace!(pid, "evicted exited process");
        }
        if let Err(e) = self.rescan() {
            tracing::warn!("rescan failed: {e:#}");
        }
        self.artifacts.expire();
        // Descriptors of known models in processes never seen opening them (passed over a
        // Unix socket, inherited): one walk at a time, only while there are models to look for.
        let models = self.artifacts.models();
        if !models.is_empty() {
            self.scanner.request(Walk::Holders(Arc::new(models)));
        }
        // A burst fills the bus and sink queues; once they drain, glibc keeps the freed memory
        // in its free lists (and per-thread arenas) for good. An endpoint agent should shrink
        // back: a trim every housekeeping tick costs about a millisecond.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }

    /// The loop's configured timers: kernel counter drains, housekeeping, usage samples.
    fn timers(&self) -> [tokio::time::Interval; 3] {
        [
            self.cfg.drain_interval(),
            Duration::from_millis(self.cfg.sensor.housekeeping_ms),
            Duration::from_millis(self.cfg.telemetry.interval_ms),
        ]
        .map(interval)
    }

    /// Runs until `shutdown` resolves, then drains what the kernel still holds.
    pub async fn run(mut self, ring: RingBuf<MapData>, shutdown: impl Future<Output = ()>) -> Result<(), SensorError> {
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
            SensorError::EventLoop { what: "registering the ring buffer with the event loop", source: e.into() }
        })?;
        self.publish(self.health(HealthState::Ok));
        // The status view (and the metrics) know every loss counter from the start, not from
        // the first drain.
        self.report_losses();
        let mut health = interval(Duration::from_secs(60));
        let [mut drain, mut housekeeping, mut usage] = self.timers();
        tokio::pin!(shutdown);
        let Some(mut inbox) = self.inbox.take() else {
            return Err(SensorError::EventLoop { what: "starting the event loop", source: "run twice".into() });
        };
        loop {
            tokio::select! {
                Some(reply) = inbox.stats.recv() => {
                    let _ = reply.send(self.maps.stats());
                }
                Some(answer) = inbox.answers.recv() => self.on_answer(answer)?,
                Some(found) = inbox.found.recv() => {
                    // The ring may still hold the kernel's record of what the walk found: handle
                    // the records first, so the walk does not report it a second time.
                    let rb = ring.get_mut();
                    for _ in 0..RING_BATCH_MAX {
                        let Some(item) = rb.next() else { break };
                        self.on_record(&item);
                    }
                    self.on_found(found);
                }
                Some(update) = inbox.artifacts.recv() => self.on_artifact(update),
                Some(answer) = inbox.users.recv() => self.table.user_named(answer),
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(|e| SensorError::EventLoop { what: "waiting on the ring buffer", source: e.into() })?;
                    let rb = guard.get_inner_mut();
                    let mut n = 0usize;
                    // Bounded, so timers, API requests and shutdown get their turn under a
                    // flood; the ring stays marked readable and the next turn goes on.
                    while n < RING_BATCH_MAX {
                        let Some(item) = rb.next() else { break };
                        self.on_record(&item);
                        n += 1;
                    }
                    if n < RING_BATCH_MAX {
                        guard.clear_ready();
                    }
                    if n > 0 {
                        // Let records gather before the next wake-up: under load one wake-up
                        // per half millisecond instead of one per record.
                        tokio::time::sleep(RING_BATCH_PAUSE).await;
                    }
                }
                _ = drain.tick() => {
                    self.drain_ioctls();
                    self.drain_reads();
                    self.report_losses();
                }
                _ = housekeeping.tick() => self.housekeeping(),
                _ = health.tick() => self.publish(self.health(HealthState::Ok)),
                Some(loaded) = inbox.reloads.recv() => {
                    if self.on_reload(loaded) {
                        [drain, housekeeping, usage] = self.timers();
                    }
                }
                _ = usage.tick() => self.sample_usage(),
                () = sleep_until(self.gate.next_deadline()), if self.gate.held() > 0 => self.release_candidates(),
                () = &mut shutdown => break,
            }
        }
        // Whatever the kernel produced before we stopped is still delivered; the probes are
        // still attached, so a flood could go on for ever: the drain has a deadline. Records
        // still in the ring then are not delivered; the final health event's produced count
        // includes them.
        let rb = ring.get_mut();
        let deadline = Instant::now() + FINAL_DRAIN_MAX;
        while Instant::now() < deadline {
            let Some(item) = rb.next() else { break };
            self.on_record(&item);
        }
        // Model events still waiting for a verdict get a moment for it, then are judged on what
        // they have.
        let deadline = tokio::time::Instant::now() + VERDICTS_AT_STOP;
        while self.gate.held() > 0 {
            match tokio::time::timeout_at(deadline, inbox.artifacts.recv()).await {
                Ok(Some(update)) => self.on_artifact(update),
                _ => break,
            }
        }
        let rest = self.gate.drain();
        self.publish_released(rest);
        self.drain_ioctls();
        self.drain_reads();
        self.report_losses();
        let ends = self.tracker.shutdown(tokio::time::Instant::now());
        self.publish_sessions(ends);
        self.artifacts.shutdown();
        self.publish(self.health(HealthState::Stopping));
        Ok(())
    }
}

/// A timer whose first tick is one period from now, and that does not catch up missed ticks.
fn interval(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t.reset();
    t
}

/// Sleeps until `at`; for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resident set size of this process.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}
