//! The running sensor: probes → decode → enrich → bus. One task owns all mutable state (process
//! table, kernel map handles, counters) and reacts to ring-buffer records and timers, so there
//! is no locking on the hot path. [`artifacts`] connects it to the artifact analyzer,
//! [`usage`] to ioctl counts, telemetry and the session tracker.

mod artifacts;
mod resolver;
mod usage;

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::FileTypeExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

pub use artifacts::reload_manifest_on_sighup;
use artifacts::{ARTIFACT_UPDATES, LoopUpdates, MAX_ARTIFACT_FILES};
use aya::maps::{MapData, RingBuf};
use lru::LruCache;
use modelwatch_artifact::{
    FileIdentity, Format,
    service::{Analyzer, AnalyzerHandle, ArtifactRequest, ArtifactUpdate},
};
use resolver::{Answer, FileKey, Job, Resolver};
use sensor_ebpf::{EventKind, FileId, IoctlKey, kernel_dev_from_user, reason};
use tokio::io::{Interest, unix::AsyncFd};

use tokio::time::Instant as TInstant;

use crate::{
    accel::{
        discovery::{self, DeviceInfo, Roots},
        ioctls,
    },
    bus::Bus,
    config::{self, Config},
    decode::{self, KernelEvent},
    enrich::artifact as art,
    enrich::{self, Enricher},
    host,
    probes::{self, KernelMaps, KernelStats, ProbeSettings, Probes},
    process::{ProcessInfo, ProcessTable},
    proto::v1::{
        AcceleratorActivity, AcceleratorOpened, CategoryCount, Event, EventsLost, HealthState, KernelCounters,
        LossSource, ProcessExec, ProcessFork, SensorHealth, Severity, event::Payload,
    },
    session::{Observation, SessionConfig, SessionEvent, Tracker},
    telemetry::{GpuTelemetry, Telemetry, fdinfo::FdinfoTelemetry, nvml::NvmlTelemetry, replay::ReplayTelemetry},
};

/// Shared, read-mostly view of the sensor for the API's Status call.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    pub started_at: Option<SystemTime>,
    pub probes_attached: Vec<String>,
    pub probes_skipped: Vec<String>,
    pub kernel: KernelStats,
    pub decode_errors: u64,
    pub devices_watched: Vec<String>,
    pub nvml: String,
}

pub type SharedStatus = Arc<Mutex<StatusView>>;

/// Asks the sensor loop for fresh kernel counters (the API's Status reads them live).
pub type StatsRequest = tokio::sync::oneshot::Sender<KernelStats>;

/// Kernel counters as the schema reports them.
pub fn kernel_counters(s: &KernelStats) -> KernelCounters {
    let by_kind = |v: &[u64]| EventKind::ALL.iter().map(|k| (k.name().to_owned(), v[k.index() as usize])).collect();
    KernelCounters {
        produced: s.produced_total(),
        dropped: s.dropped_total(),
        produced_by_kind: by_kind(&s.produced),
        dropped_by_kind: by_kind(&s.dropped),
        pending_full: s.pending_full,
        ioctl_counts_full: s.ioctl_counts_full,
        ioctl_gate_full: s.ioctl_gate_full,
        paths_truncated: s.path_truncated,
        read_failures: s.read_failed,
        ioctls_counted: s.ioctls_counted,
    }
}

pub struct Sensor {
    cfg: Config,
    maps: KernelMaps,
    probes: Probes,
    table: ProcessTable,
    enricher: Enricher,
    bus: Bus,
    status: SharedStatus,
    devices: HashMap<u32, DeviceInfo>,
    model_dirs: Vec<(PathBuf, FileId)>,
    ioctl_seen: HashMap<IoctlKey, u64>,
    last_drain: Instant,
    forget: Vec<u32>,
    reported_drops: KernelStats,
    reported_analyzer: modelwatch_artifact::service::AnalyzerStats,
    reported_untracked: u64,
    decode_errors: u64,
    reported_decode_errors: u64,
    tracker: Tracker,
    telemetry: Telemetry,
    ns_per_tick: u64,
    analyzer: AnalyzerHandle,
    artifact_rx: Option<tokio::sync::mpsc::Receiver<ArtifactUpdate>>,
    /// Which process opened a file version, and the path the kernel reported for it.
    /// With the device number the kernel knows the file by (for its inode marks).
    artifact_files: LruCache<FileIdentity, (Arc<ProcessInfo>, String, u32)>,
    /// Finding codes already published per file version.
    reported_findings: LruCache<FileIdentity, std::collections::BTreeSet<String>>,
    /// (kernel dev, ino, size) → the file's identity and where it was found, so a model opened
    /// a thousand times a second is not stat(2)ed a thousand times.
    identities: LruCache<FileKey, (FileIdentity, PathBuf, Instant)>,
    /// stat(2)s run here, off the loop (see the resolver module).
    resolver: Resolver,
    answers: Option<tokio::sync::mpsc::Receiver<Answer>>,
    /// Identity lookups in flight: who asked, about which path.
    pending: HashMap<FileKey, (Arc<ProcessInfo>, String)>,
    /// Lookups not made because too many were in flight.
    lookups_refused: u64,
    /// Lookups that found no file with the reported inode (deleted, or in a mount namespace
    /// whose last process exited before the lookup ran): those files are not analysed.
    lookups_unresolved: u64,
    reported_lookups_dropped: u64,
    reported_lookups_unresolved: u64,
    stats_tx: tokio::sync::mpsc::Sender<StatsRequest>,
    stats_rx: Option<tokio::sync::mpsc::Receiver<StatsRequest>>,
}

/// Pause after draining the ring buffer (see the run loop).
const RING_BATCH_PAUSE: Duration = Duration::from_micros(500);
/// Records handled per turn of the run loop before the other work gets its turn.
const RING_BATCH_MAX: usize = 16_384;
/// How long the drain at shutdown may take.
const FINAL_DRAIN_MAX: Duration = Duration::from_secs(2);

/// Shared objects are code, never weights, however large (libcudnn, libtorch_cuda).
fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("so"))
        || name.to_ascii_lowercase().contains(".so.")
}

fn telemetry_sources(cfg: &Config) -> Telemetry {
    let mut sources: Vec<Box<dyn GpuTelemetry>> = Vec::new();
    if cfg.telemetry.nvml {
        sources.push(Box::new(NvmlTelemetry::new()));
    }
    if cfg.telemetry.drm_fdinfo {
        sources.push(Box::new(FdinfoTelemetry::new(PathBuf::from("/proc"))));
    }
    if let Some(path) = &cfg.telemetry.replay {
        sources.push(Box::new(ReplayTelemetry::new(path.clone())));
    }
    Telemetry::new(sources)
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

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(transparent)]
    Probes(#[from] probes::ProbeError),
    #[error("artifact analysis: {0}")]
    Analyzer(#[from] modelwatch_artifact::ArtifactError),
    #[error("{what}: {source}")]
    EventLoop { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

impl Sensor {
    /// Loads the probes and prepares every kernel map from the configuration.
    pub fn start(cfg: Config, bus: Bus) -> Result<(Self, RingBuf<MapData>), SensorError> {
        let settings = ProbeSettings {
            size_threshold: cfg.files.size_threshold.0,
            ring_buffer_bytes: cfg.sensor.ring_buffer_kib.saturating_mul(1024),
            self_tgid: std::process::id(),
            // Overridable for kernels that keep BTF elsewhere (and to test the error path).
            btf_path: std::env::var_os("MODELWATCH_BTF")
                .map_or_else(|| PathBuf::from(crate::offsets::VMLINUX_BTF), PathBuf::from),
        };
        let (probes, mut maps, ring) = probes::load(&settings)?;
        maps.set_extensions(cfg.files.extensions.iter().map(String::as_str))?;
        maps.set_runtime_libraries(cfg.files.runtime_libraries.iter().map(String::as_str))?;
        let host_info = host::host_info();
        let mut table = ProcessTable::new(host_info.boot_id.clone(), PathBuf::from("/proc"), cfg.exit_grace());
        let seeded = table.seed();
        tracing::debug!(processes = seeded, "process table seeded from /proc");
        let status = Arc::new(Mutex::new(StatusView {
            started_at: Some(SystemTime::now()),
            probes_attached: probes.attached.clone(),
            probes_skipped: probes.skipped.clone(),
            nvml: "not sampled".into(),
            ..Default::default()
        }));
        let cfg_for_sessions = cfg.clone();
        let (stats_tx, stats_rx) = tokio::sync::mpsc::channel(16);
        let (updates, artifact_rx) = tokio::sync::mpsc::channel(ARTIFACT_UPDATES);
        let analyzer = Analyzer::start(&cfg.artifact, &cfg.sensor.state_dir, LoopUpdates(updates))?;
        if cfg.artifact.manifest.is_some() {
            reload_manifest_on_sighup(&analyzer);
        }
        let (resolver, answers) = Resolver::start()
            .map_err(|e| SensorError::EventLoop { what: "starting the file lookup thread", source: e.into() })?;
        let mut sensor = Self {
            cfg,
            maps,
            probes,
            table,
            enricher: Enricher::new(host_info),
            bus,
            status,
            devices: HashMap::new(),
            model_dirs: Vec::new(),
            ioctl_seen: HashMap::new(),
            last_drain: Instant::now(),
            forget: Vec::new(),
            reported_drops: KernelStats::default(),
            reported_analyzer: Default::default(),
            reported_untracked: 0,
            decode_errors: 0,
            reported_decode_errors: 0,
            tracker: Tracker::new(session_config(&cfg_for_sessions)),
            telemetry: telemetry_sources(&cfg_for_sessions),
            ns_per_tick: 1_000_000_000 / host::clock_ticks(),
            analyzer,
            artifact_rx: Some(artifact_rx),
            artifact_files: LruCache::new(MAX_ARTIFACT_FILES),
            reported_findings: LruCache::new(MAX_ARTIFACT_FILES),
            identities: LruCache::new(MAX_ARTIFACT_FILES),
            resolver,
            answers: Some(answers),
            pending: HashMap::new(),
            lookups_refused: 0,
            lookups_unresolved: 0,
            reported_lookups_dropped: 0,
            reported_lookups_unresolved: 0,
            stats_tx,
            stats_rx: Some(stats_rx),
        };
        if let Ok(mut st) = sensor.status.lock() {
            st.nvml = sensor.telemetry.nvml_state();
        }
        sensor.rescan()?;
        for extra in &sensor.cfg.devices.extra {
            if !sensor.devices.values().any(|d| Path::new(&d.accel.path) == extra.path()) {
                tracing::warn!(device = %extra.path().display(), "configured device is not a character device (yet); watched once it is");
            }
        }
        // Model directories that exist now are in force before the sensor reports ready,
        // unless their filesystem hangs: then they join when the lookup returns.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match sensor.answers.as_mut().map(tokio::sync::mpsc::Receiver::try_recv) {
                Some(Ok(answer)) => {
                    let dirs = matches!(answer, Answer::Dirs(_));
                    sensor.on_answer(answer)?;
                    if dirs {
                        break;
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
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

    /// Looks for model directories (through the resolver: they may lie under a user's home,
    /// on any filesystem) and accelerator devices that appeared since the last scan.
    fn rescan(&mut self) -> Result<(), SensorError> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let dirs: Vec<PathBuf> =
            self.cfg.files.model_dirs.iter().flat_map(|spec| config::expand_home(spec, &passwd)).collect();
        if !dirs.is_empty() && !self.resolver.submit(Job::Dirs(dirs)) {
            tracing::debug!("file lookups queue full: model directories looked for next time");
        }
        for dev in discovery::discover(&Roots::default(), &self.cfg.devices.extra) {
            if self.devices.contains_key(&dev.rdev) {
                continue;
            }
            self.maps.watch_device(dev.rdev, dev.accel.kind as u32)?;
            tracing::info!(device = %dev.accel.path, driver = %dev.accel.driver, "watching accelerator");
            self.devices.insert(dev.rdev, dev);
        }
        if !self.devices.is_empty() {
            self.seed_device_users();
        }
        if let Ok(mut s) = self.status.lock() {
            let mut devs: Vec<String> = self.devices.values().map(|d| d.accel.path.clone()).collect();
            devs.sort();
            s.devices_watched = devs;
        }
        Ok(())
    }

    /// What the resolver found.
    fn on_answer(&mut self, answer: Answer) -> Result<(), SensorError> {
        match answer {
            Answer::Identity { key, found } => {
                self.on_identity(key, found);
                Ok(())
            }
            Answer::Dirs(found) => self.on_dirs(found),
        }
    }

    /// Puts the model directories that are new in force.
    fn on_dirs(&mut self, found: Vec<(PathBuf, FileId)>) -> Result<(), SensorError> {
        let mut new_dirs: Vec<(PathBuf, FileId)> = Vec::new();
        for (dir, id) in found {
            if !self.model_dirs.iter().any(|(_, known)| *known == id) && !new_dirs.iter().any(|(_, n)| *n == id) {
                new_dirs.push((dir, id));
            }
        }
        if !new_dirs.is_empty() {
            let ids: Vec<FileId> = new_dirs.iter().map(|(_, id)| *id).collect();
            let (added, result) = self.maps.add_model_dirs(&ids);
            // Only directories in force count as known: the others are tried again next scan.
            for (dir, id) in new_dirs.into_iter().take(added) {
                tracing::info!(dir = %dir.display(), "watching model directory");
                self.model_dirs.push((dir, id));
            }
            result?;
        }
        Ok(())
    }

    /// Processes that already hold a watched device (opened before the sensor started, or
    /// received over a socket) are found in /proc, so their ioctls are counted too.
    /// Each fd's target is read as a link (procfs answers that itself) and only device paths
    /// are stat(2)ed: following every fd would reach into any filesystem, a hung one included.
    fn seed_device_users(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        let me = std::process::id();
        let known: Vec<PathBuf> = self.devices.values().map(|d| PathBuf::from(&d.accel.path)).collect();
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            let holds = fds.flatten().any(|fd| {
                let Ok(target) = std::fs::read_link(fd.path()) else { return false };
                if !target.starts_with("/dev/") && !known.contains(&target) {
                    return false;
                }
                // The fd itself, not the path: the process may live in another mount namespace.
                std::fs::metadata(fd.path())
                    .ok()
                    .filter(|m| m.file_type().is_char_device())
                    .is_some_and(|m| self.devices.contains_key(&kernel_dev_from_user(m.rdev())))
            });
            if holds && let Err(e) = self.maps.add_device_user(pid) {
                tracing::debug!(pid, "cannot watch ioctls: {e}");
            }
        }
    }

    fn publish(&self, ev: Event) {
        self.bus.publish(ev);
    }

    /// Handles one ring-buffer record.
    pub fn on_record(&mut self, bytes: &[u8]) {
        match decode::decode(bytes) {
            Ok(ev) => self.on_event(ev),
            Err(e) => {
                self.decode_errors += 1;
                tracing::debug!("undecodable record: {e}");
            }
        }
    }

    fn on_event(&mut self, ev: KernelEvent) {
        let h = *ev.header();
        let (p, payload) = match &ev {
            KernelEvent::Exec(e) => {
                let p = self.table.on_exec(e);
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
                let Some(p) = self.table.on_exit(&h, Instant::now()) else {
                    tracing::debug!(tgid = h.tgid, "duplicate exit record");
                    return;
                };
                self.forget.push(h.tgid);
                let duration = h.ktime_ns.saturating_sub(p.start_boottime_ns);
                // The exit event goes out first, then the session's end.
                let payload = Payload::ProcessExit(enrich::exit_payload(x.raw.exit_code, duration));
                self.publish(self.enricher.event(h.ktime_ns, Some((&p, h.pid)), payload));
                self.observe(&p, Observation::Exit);
                return;
            }
            KernelEvent::Open(o) if o.raw.reasons & reason::DEVICE != 0 => {
                let Some(dev) = self.devices.get(&o.raw.rdev) else { return };
                let device = dev.accel.clone();
                let p = self.table.resolve(&h);
                self.observe(&p, Observation::AcceleratorOpened { device: &device });
                let (flags, fd) = (o.raw.flags, o.raw.fd);
                (p, Payload::AcceleratorOpened(AcceleratorOpened { device: Some(device), flags, fd }))
            }
            KernelEvent::Open(o) => {
                let p = self.table.resolve(&h);
                let mut opened = enrich::open_payload(o);
                if o.raw.mode & 0o170000 == 0o100000 && !o.path.truncated {
                    opened.artifact = self.artifact_for(&p, &o.path.path, o.raw.ino, o.raw.dev, o.raw.size);
                }
                if let Some(file) = &opened.file {
                    self.observe(&p, Observation::ModelOpened { file, artifact: opened.artifact.as_ref() });
                }
                (p, Payload::ModelFileOpened(opened))
            }
            KernelEvent::Mmap(m) => {
                let p = self.table.resolve(&h);
                let mut mapped = enrich::mmap_payload(m);
                if mapped.runtime_library.is_empty() && !m.path.truncated {
                    mapped.artifact = self.artifact_for(&p, &m.path.path, m.raw.ino, m.raw.dev, m.raw.size);
                }
                if !mapped.runtime_library.is_empty() {
                    self.observe(&p, Observation::RuntimeLibrary { name: &mapped.runtime_library });
                } else if let Some(file) = mapped.file.as_ref().filter(|f| !is_shared_object(&f.path)) {
                    self.observe(
                        &p,
                        Observation::ModelMapped { file, length: m.raw.len, artifact: mapped.artifact.as_ref() },
                    );
                }
                (p, Payload::ModelMapped(mapped))
            }
            KernelEvent::DeviceIoctl(d) => {
                let dev = self.devices.get(&d.raw.rdev);
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

    /// Publishes EventsLost for everything not delivered since the last check: kernel drops,
    /// undecodable records, kernel maps that were full, artifact analyses that did not happen.
    pub fn report_losses(&mut self) {
        let stats = self.maps.stats();
        let kernel: Vec<(&str, u64, u64)> = EventKind::ALL
            .iter()
            .map(|k| (k.name(), self.reported_drops.dropped[k.index() as usize], stats.dropped[k.index() as usize]))
            .collect();
        self.report_counters(Severity::High, LossSource::Kernel, "the kernel ring buffer was full", &kernel);
        self.report_counters(
            Severity::Medium,
            LossSource::Decode,
            "records the collector could not decode",
            &[("undecodable", self.reported_decode_errors, self.decode_errors)],
        );
        self.reported_decode_errors = self.decode_errors;
        let (was, now) = (&self.reported_drops, &stats);
        self.report_counters(
            Severity::High,
            LossSource::KernelMap,
            "a kernel map was full",
            &[
                ("pending_full", was.pending_full, now.pending_full),
                ("ioctl_counts_full", was.ioctl_counts_full, now.ioctl_counts_full),
                ("ioctl_gate_full", was.ioctl_gate_full, now.ioctl_gate_full),
            ],
        );
        let (was, now) = (self.reported_analyzer, self.analyzer.stats());
        let lookups = self.resolver.dropped() + self.lookups_refused;
        self.report_counters(
            Severity::Medium,
            LossSource::Analyzer,
            "artifact analyses that did not happen",
            &[
                ("lookup_dropped", self.reported_lookups_dropped, lookups),
                ("file_not_found", self.reported_lookups_unresolved, self.lookups_unresolved),
                ("identification_dropped", was.dropped, now.dropped),
                ("hash_dropped", was.hash_dropped, now.hash_dropped),
                ("failed", was.failed, now.failed),
            ],
        );
        self.reported_analyzer = now;
        self.reported_lookups_dropped = lookups;
        self.reported_lookups_unresolved = self.lookups_unresolved;
        let untracked = self.tracker.untracked();
        self.report_counters(
            Severity::Medium,
            LossSource::SessionTracker,
            "processes not followed: the session table is full",
            &[("untracked", self.reported_untracked, untracked)],
        );
        self.reported_untracked = untracked;
        if let Ok(mut s) = self.status.lock() {
            s.kernel = stats.clone();
            s.decode_errors = self.decode_errors;
        }
        self.reported_drops = stats;
    }

    /// One EventsLost for the counters of `source` that grew: (name, last reported, now).
    fn report_counters(&self, severity: Severity, source: LossSource, detail: &str, counters: &[(&str, u64, u64)]) {
        let by_kind: BTreeMap<String, u64> = counters
            .iter()
            .filter(|(_, was, now)| now > was)
            .map(|(name, was, now)| ((*name).to_owned(), now - was))
            .collect();
        if by_kind.is_empty() {
            return;
        }
        let count = by_kind.values().sum();
        self.publish(self.sensor_event(
            severity,
            Payload::EventsLost(EventsLost { count, source: source as i32, detail: detail.into(), by_kind }),
        ));
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
        let degraded = !self.probes.skipped.is_empty() || stats.dropped_total() > 0;
        let state = if state == HealthState::Ok && degraded { HealthState::Degraded } else { state };
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
        let state = if state == HealthState::Ok && stuck.is_some() { HealthState::Degraded } else { state };
        let nvml = self.status.lock().map(|s| s.nvml.clone()).unwrap_or_default();
        self.sensor_event(
            Severity::Info,
            Payload::SensorHealth(SensorHealth {
                state: state as i32,
                message: notes.join("; "),
                backend: "tracepoint".into(),
                probes_attached: self.probes.attached.clone(),
                probes_skipped: self.probes.skipped.clone(),
                kernel: Some(kernel_counters(&stats)),
                nvml,
                decode_errors: self.decode_errors,
                rss_bytes: rss_bytes(),
                devices_watched: self.devices.len() as u32,
                artifacts_queued: {
                    let a = self.analyzer.stats();
                    a.submitted.saturating_sub(a.duplicates + a.dropped + a.identified + a.failed)
                },
            }),
        )
    }

    /// Runs until `shutdown` resolves, then drains what the kernel still holds.
    pub async fn run(mut self, ring: RingBuf<MapData>, shutdown: impl Future<Output = ()>) -> Result<(), SensorError> {
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
            SensorError::EventLoop { what: "registering the ring buffer with the event loop", source: e.into() }
        })?;
        self.publish(self.health(HealthState::Ok));
        let mut drain = tokio::time::interval(self.cfg.drain_interval());
        let mut housekeeping = tokio::time::interval(Duration::from_millis(self.cfg.sensor.housekeeping_ms));
        let mut health = tokio::time::interval(Duration::from_secs(60));
        let mut usage = tokio::time::interval(Duration::from_millis(self.cfg.telemetry.interval_ms));
        for t in [&mut drain, &mut housekeeping, &mut health, &mut usage] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t.reset();
        }
        tokio::pin!(shutdown);
        let mut artifacts = self.artifact_rx.take();
        let mut answers = self.answers.take();
        let mut stats_requests = self.stats_rx.take();
        loop {
            tokio::select! {
                request = async { match stats_requests.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match request {
                        Some(reply) => {
                            let _ = reply.send(self.maps.stats());
                        }
                        None => stats_requests = None,
                    }
                }
                answer = async { match answers.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match answer {
                        Some(a) => self.on_answer(a)?,
                        None => answers = None,
                    }
                }
                update = async { match artifacts.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match update {
                        Some(u) => self.on_artifact(u),
                        None => artifacts = None,
                    }
                }
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
                    self.report_losses();
                }
                _ = housekeeping.tick() => {
                    // Processes whose exit record was lost: end what is kept about them.
                    for p in self.table.sweep(Instant::now()) {
                        tracing::debug!(pid = p.pid, "process gone without an exit record");
                        self.forget.push(p.pid);
                        self.observe(&p, Observation::Exit);
                    }
                    for pid in self.table.evict(Instant::now()) {
                        tracing::trace!(pid, "evicted exited process");
                    }
                    if let Err(e) = self.rescan() {
                        tracing::warn!("rescan failed: {e:#}");
                    }
                    // A burst fills the bus and sink queues; once they drain, glibc keeps the
                    // freed memory in its free lists (and per-thread arenas) for good. An
                    // endpoint agent should shrink back: a trim every housekeeping tick costs
                    // about a millisecond.
                    // SAFETY: malloc_trim has no preconditions.
                    unsafe { libc::malloc_trim(0) };
                }
                _ = health.tick() => self.publish(self.health(HealthState::Ok)),
                _ = usage.tick() => self.sample_usage(),
                _ = &mut shutdown => break,
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
        self.drain_ioctls();
        self.report_losses();
        let ends = self.tracker.shutdown(TInstant::now());
        self.publish_sessions(ends);
        self.analyzer.shutdown();
        self.publish(self.health(HealthState::Stopping));
        Ok(())
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
