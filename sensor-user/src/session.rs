//! Inference sessions: the state machine that turns low-level facts (a model mapped, ioctls on
//! an accelerator, GPU busy, CPU busy) into "process P ran inference on device D with model M
//! from T1 to T2".
//!
//! Pure: inputs are observations with the time they were made, outputs are session events.
//! No I/O, no clock of its own (tests drive it with tokio's paused time).
//!
//! Rules:
//! - **Start** when a process has model evidence (it opened or mapped a model file that is not
//!   known to be "not a model") and activity evidence within the idle window: accelerator
//!   compute (the ioctl category mix looks like compute, or a compute-only driver — KFD, UVM,
//!   DRM accel — saw memory/submit/sync work), or GPU utilisation attributed to its pid (NVML,
//!   fdinfo, replay); or, for CPU inference, a model mapping of at least the large-model size
//!   and the process using at least `cpu_busy_percent` of a core. A child of a process with a
//!   running session that shows activity evidence starts a session linked to its parent's
//!   (multi-process runtimes: ollama serve → runner, vLLM workers).
//! - Inference-runtime libraries and known runtime executables are evidence that raises the
//!   confidence; they are listed with the rest.
//! - **Never** a session: processes whose executable is in `non_inference_executables`
//!   (copying, hashing, downloading: cp, sha256sum, curl, ...), installed in a system binary
//!   directory. The executable decides, never the name a process gives itself (argv[0], comm):
//!   an interpreter that calls itself `cp`, or a copy of one named `cp` in a home directory,
//!   is judged like any other process. A browser or compositor using the GPU without a model
//!   never has model evidence.
//! - **Updates** every `update_interval`, with interval and total usage.
//! - **End** on process exit (exact), on exec (the program was replaced), after
//!   `idle_timeout` without activity, or when the sensor stops.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, SystemTime},
};

use modelwatch_artifact::size::human_bytes;
use tokio::time::Instant;

use crate::{
    accel::ioctls::{self, IoctlCategory as Cat},
    enrich,
    host::timestamp,
    process::ProcessInfo,
    proto::v1::{
        Accelerator, ArtifactFormat, ArtifactSummary, CategoryCount, EvidenceKind, FileRef, InferenceSessionEnded,
        InferenceSessionStarted, InferenceSessionUpdated, SessionEndReason, SessionEngine, SessionEvidence,
        SessionModel, SessionUsage,
    },
};

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub update_interval: Duration,
    pub idle_timeout: Duration,
    pub cpu_busy_percent: f64,
    pub large_model_bytes: u64,
    pub runtime_executables: Vec<String>,
    pub non_inference_executables: Vec<String>,
}

/// Who an observation is about: the process-table entry (shared, so an observation costs no
/// copies).
pub type Subject = Arc<ProcessInfo>;

/// One fact about a process. Borrowed: most observations repeat what the tracker already
/// knows and must not cost a copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<'a> {
    /// The process replaced its program.
    Exec,
    Exit,
    ModelOpened {
        file: &'a FileRef,
        artifact: Option<&'a ArtifactSummary>,
    },
    ModelMapped {
        file: &'a FileRef,
        length: u64,
        artifact: Option<&'a ArtifactSummary>,
    },
    /// Bytes of a model file read without mapping it (io_uring); counted like mapped bytes.
    ModelRead {
        file: &'a FileRef,
        bytes: u64,
        artifact: Option<&'a ArtifactSummary>,
    },
    RuntimeLibrary {
        name: &'a str,
    },
    AcceleratorOpened {
        device: &'a Accelerator,
    },
    Ioctls {
        device: &'a Accelerator,
        compute_only_driver: bool,
        categories: Vec<(Cat, u64)>,
    },
    Gpu {
        device: String,
        sm_percent: Option<f64>,
        memory_bytes: Option<u64>,
        engine_busy_ns: Option<u64>,
    },
    /// Cumulative CPU time of the process.
    Cpu {
        cpu_time_ns: u64,
    },
}

/// Session events, with the process they are about.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Started(Subject, InferenceSessionStarted),
    Updated(Subject, InferenceSessionUpdated),
    Ended(Subject, InferenceSessionEnded),
}

/// Directories of packaged programs: a non-inference tool is recognised only there.
const SYSTEM_BIN_DIRS: [&str; 8] = [
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/libexec",
    "/usr/lib/git-core",
];

/// Most processes tracked at once; the least recently active non-session ones go first.
const MAX_TRACKED: usize = 16_384;
const MAX_EVIDENCE: usize = 32;
const MAX_MODELS: usize = 64;

#[derive(Debug, Clone, Default)]
struct Usage {
    sm_sum: f64,
    sm_samples: u32,
    sm_max: f64,
    gpu_mem_last: u64,
    gpu_mem_peak: u64,
    engine_busy_ns: u64,
    ioctls: BTreeMap<i32, u64>,
    ioctl_total: u64,
    cpu_ns: u64,
}

impl Usage {
    fn to_proto(&self, interval: Duration, model_bytes: u64) -> SessionUsage {
        let secs = interval.as_secs_f64();
        SessionUsage {
            gpu_sm_percent_avg: if self.sm_samples > 0 { self.sm_sum / f64::from(self.sm_samples) } else { 0.0 },
            gpu_sm_percent_max: self.sm_max,
            gpu_memory_bytes: self.gpu_mem_last,
            gpu_memory_peak_bytes: self.gpu_mem_peak,
            engine_busy_ns: self.engine_busy_ns,
            ioctls: self.ioctls.iter().map(|(c, n)| CategoryCount { category: *c, count: *n }).collect(),
            ioctl_rate: if secs > 0.0 { self.ioctl_total as f64 / secs } else { 0.0 },
            cpu_time_ns: self.cpu_ns,
            cpu_percent: if secs > 0.0 { self.cpu_ns as f64 / 1e9 / secs * 100.0 } else { 0.0 },
            model_bytes_mapped: model_bytes,
            interval_ns: interval.as_nanos() as u64,
        }
    }
}

#[derive(Debug, Clone)]
struct Active {
    id: String,
    started: Instant,
    started_wall: SystemTime,
    last_update: Instant,
    interval: Usage,
    total: Usage,
    accelerators: BTreeMap<String, Accelerator>,
}

#[derive(Debug, Clone)]
struct Model {
    file: FileRef,
    artifact: Option<ArtifactSummary>,
    bytes_mapped: u64,
}

impl Model {
    /// False once content identification said the file is not a model.
    fn may_be_model(&self) -> bool {
        self.artifact.as_ref().is_none_or(|a| a.format != ArtifactFormat::NotAModel as i32)
    }
}

#[derive(Debug, Clone)]
struct Proc {
    subject: Subject,
    models: BTreeMap<String, Model>,
    runtime_libs: BTreeSet<String>,
    accelerators: BTreeMap<String, Accelerator>,
    evidence: Vec<SessionEvidence>,
    /// Compute seen on an accelerator, and when.
    last_compute: Option<(Instant, String)>,
    last_gpu: Option<(Instant, String)>,
    /// (time, cumulative cpu ns) of the previous CPU sample.
    last_cpu: Option<(Instant, u64)>,
    cpu_percent: f64,
    /// Model bytes mapped or read at the previous CPU sample, and whether they grew since:
    /// CPU spent while a model is still being read (copied, hashed, scanned) is not inference;
    /// CPU after the load is.
    bytes_at_last_cpu: u64,
    loading: bool,
    last_activity: Option<Instant>,
    last_seen: Instant,
    session: Option<Active>,
    /// Usage seen while no session runs (the ioctls and GPU samples that are the evidence for
    /// one), and since when: a session that starts takes it, so its totals include the work
    /// that started it. Older than the idle timeout, it is forgotten.
    pending: Usage,
    pending_since: Option<Instant>,
    /// The inference runtime the program is, decided once per program image.
    runtime: Option<String>,
}

impl Proc {
    fn new(subject: Subject, now: Instant, wall: SystemTime, runtime: Option<String>) -> Self {
        let evidence = runtime
            .iter()
            .map(|r| SessionEvidence {
                kind: EvidenceKind::RuntimeExecutable as i32,
                detail: r.clone(),
                time: Some(timestamp(wall)),
            })
            .collect();
        Self {
            evidence,
            runtime,
            subject,
            models: BTreeMap::new(),
            runtime_libs: BTreeSet::new(),
            accelerators: BTreeMap::new(),
            last_compute: None,
            last_gpu: None,
            last_cpu: None,
            cpu_percent: 0.0,
            bytes_at_last_cpu: 0,
            loading: false,
            last_activity: None,
            last_seen: now,
            session: None,
            pending: Usage::default(),
            pending_since: None,
        }
    }

    /// Applies `f` to the running session's interval and total, or to the pending usage.
    fn account(&mut self, now: Instant, window: Duration, f: impl Fn(&mut Usage)) {
        if let Some(s) = &mut self.session {
            f(&mut s.interval);
            f(&mut s.total);
            return;
        }
        if self.pending_since.is_none_or(|t| now.duration_since(t) > window) {
            self.pending = Usage::default();
            self.pending_since = Some(now);
        }
        f(&mut self.pending);
    }

    fn note(&mut self, kind: EvidenceKind, detail: String, wall: SystemTime) {
        if self.evidence.len() >= MAX_EVIDENCE
            || self.evidence.iter().any(|e| e.kind == kind as i32 && e.detail == detail)
        {
            return;
        }
        self.evidence.push(SessionEvidence { kind: kind as i32, detail, time: Some(timestamp(wall)) });
    }

    fn has_model(&self) -> bool {
        self.models.values().any(Model::may_be_model)
    }

    fn model_bytes(&self) -> u64 {
        self.models.values().filter(|m| m.may_be_model()).map(|m| m.bytes_mapped).sum()
    }

    fn mark_active(&mut self, now: Instant) {
        self.last_activity = Some(now);
    }
}

pub struct Tracker {
    cfg: SessionConfig,
    procs: HashMap<String, Proc>,
    untracked: u64,
}

impl Tracker {
    pub fn new(cfg: SessionConfig) -> Self {
        Self { cfg, procs: HashMap::new(), untracked: 0 }
    }

    /// New settings (a configuration reload): they apply to what is observed from now on.
    pub fn set_config(&mut self, cfg: SessionConfig) {
        self.cfg = cfg;
    }

    /// Number of running sessions.
    pub fn active(&self) -> usize {
        self.procs.values().filter(|p| p.session.is_some()).count()
    }

    /// Pids worth sampling for CPU and GPU use: processes with model or accelerator evidence.
    pub fn candidates(&self) -> Vec<u32> {
        self.procs
            .values()
            .filter(|p| !p.models.is_empty() || !p.accelerators.is_empty() || p.session.is_some())
            // A decoy (cp, sha256sum) never starts a session: its use is not worth sampling.
            .filter(|p| p.session.is_some() || !self.is_decoy(&p.subject))
            .map(|p| p.subject.pid)
            .collect()
    }

    /// Whether the process has shown inference-runtime evidence: a runtime library mapped, a
    /// runtime executable, a model already loaded, or accelerator compute.
    pub fn runtime_evidence(&self, p: &ProcessInfo) -> bool {
        let tracked = self.procs.get(&p.entity_id).is_some_and(|t| {
            !t.runtime_libs.is_empty() || !t.models.is_empty() || t.last_compute.is_some() || t.session.is_some()
        });
        tracked || self.runtime_of(p).is_some()
    }

    /// Pids of tracked processes that hold accelerators.
    pub fn accelerator_users(&self) -> Vec<u32> {
        self.procs.values().filter(|p| !p.accelerators.is_empty()).map(|p| p.subject.pid).collect()
    }

    fn basename(s: &str) -> &str {
        s.rsplit('/').next().unwrap_or(s)
    }

    /// The runtime this process is, from its executable and (for interpreters) its script or
    /// module.
    fn runtime_of(&self, s: &ProcessInfo) -> Option<String> {
        let mut names: Vec<&str> = vec![Self::basename(&s.exe)];
        if let Some(a0) = s.cmdline.first() {
            names.push(Self::basename(a0));
        }
        // python3 -m vllm.entrypoints..., python3 /srv/ComfyUI/main.py, text-generation-webui/server.py
        let mut args = s.cmdline.iter().skip(1).take(4);
        while let Some(a) = args.next() {
            if a == "-m" {
                if let Some(m) = args.next() {
                    names.push(m.split('.').next().unwrap_or(m));
                }
            } else if !a.starts_with('-') {
                names.extend(a.split('/').filter(|c| !c.is_empty()));
                break;
            }
        }
        self.cfg.runtime_executables.iter().find(|r| names.iter().any(|n| n.eq_ignore_ascii_case(r))).cloned()
    }

    /// Whether the process runs a known inference runtime (`runtime_executables`).
    pub fn is_runtime_executable(&self, s: &Subject) -> bool {
        self.runtime_of(s).is_some()
    }

    /// Whether the process is one that touches models without running them
    /// (`non_inference_executables`: copying, hashing, downloading).
    pub fn is_non_inference_executable(&self, s: &Subject) -> bool {
        self.is_decoy(s)
    }

    /// A known non-inference tool: by its executable's file name, in a directory where
    /// packages install programs (an unprivileged user cannot put a renamed interpreter there).
    fn is_decoy(&self, s: &Subject) -> bool {
        let Some((dir, name)) = s.exe.rsplit_once('/') else { return false };
        SYSTEM_BIN_DIRS.contains(&dir) && self.cfg.non_inference_executables.iter().any(|d| d == name)
    }

    /// Feeds one observation; returns the session events it caused.
    pub fn observe(
        &mut self,
        now: Instant,
        wall: SystemTime,
        subject: &Subject,
        obs: Observation<'_>,
    ) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        // Only processes with relevant facts are tracked; exit and CPU samples of unknown
        // processes are ignored.
        let relevant = matches!(
            obs,
            Observation::ModelOpened { .. }
                | Observation::ModelMapped { .. }
                | Observation::ModelRead { .. }
                | Observation::RuntimeLibrary { .. }
                | Observation::AcceleratorOpened { .. }
                | Observation::Ioctls { .. }
                | Observation::Gpu { .. }
        );
        if !self.procs.contains_key(&subject.entity_id) {
            if !relevant {
                return out;
            }
            if !self.make_room() {
                self.untracked += 1;
                return out;
            }
            let runtime = self.runtime_of(subject);
            self.procs.insert(subject.entity_id.clone(), Proc::new(subject.clone(), now, wall, runtime));
        }
        let large = self.cfg.large_model_bytes;
        let cpu_busy = self.cfg.cpu_busy_percent;
        let window = self.cfg.idle_timeout;
        let new_runtime = matches!(obs, Observation::Exec).then(|| self.runtime_of(subject));
        let Some(p) = self.procs.get_mut(&subject.entity_id) else { return out };
        if !Arc::ptr_eq(&p.subject, subject) {
            p.subject = subject.clone();
        }
        p.last_seen = now;
        match obs {
            Observation::Exit => {
                if let Some(ended) = end(p, now, SessionEndReason::ProcessExit) {
                    out.push(ended);
                }
                self.procs.remove(&subject.entity_id);
                return out;
            }
            Observation::Exec => {
                if let Some(ended) = end(p, now, SessionEndReason::Exec) {
                    out.push(ended);
                }
                // A new program: earlier mappings and evidence are gone with the old image.
                *p = Proc::new(subject.clone(), now, wall, new_runtime.flatten());
                return out;
            }
            Observation::ModelOpened { file, artifact } => {
                if let Some(m) = p.models.get_mut(&file.path) {
                    if let Some(a) = artifact {
                        m.artifact = Some(a.clone());
                    }
                } else if p.models.len() < MAX_MODELS {
                    p.note(EvidenceKind::ModelOpened, file.path.clone(), wall);
                    p.models.insert(
                        file.path.clone(),
                        Model { file: file.clone(), artifact: artifact.cloned(), bytes_mapped: 0 },
                    );
                }
            }
            Observation::ModelMapped { file, length, artifact }
            | Observation::ModelRead { file, bytes: length, artifact } => {
                if p.models.get(&file.path).is_none_or(|m| m.bytes_mapped == 0) {
                    let (kind, how) = match obs {
                        Observation::ModelRead { .. } => (EvidenceKind::ModelRead, "read"),
                        _ => (EvidenceKind::ModelMapped, "mapped"),
                    };
                    p.note(kind, format!("{} ({} bytes {how})", file.path, length), wall);
                }
                if !p.models.contains_key(&file.path) && p.models.len() < MAX_MODELS {
                    p.models.insert(file.path.clone(), Model { file: file.clone(), artifact: None, bytes_mapped: 0 });
                }
                if let Some(m) = p.models.get_mut(&file.path) {
                    m.bytes_mapped = m.bytes_mapped.saturating_add(length);
                    if let Some(a) = artifact {
                        m.artifact = Some(a.clone());
                    }
                }
            }
            Observation::RuntimeLibrary { name } => {
                if p.runtime_libs.insert(name.to_owned()) {
                    p.note(EvidenceKind::RuntimeLibrary, name.to_owned(), wall);
                }
            }
            Observation::AcceleratorOpened { device } => {
                if !p.accelerators.contains_key(&device.path) {
                    p.accelerators.insert(device.path.clone(), device.clone());
                }
            }
            Observation::Ioctls { device, compute_only_driver, categories } => {
                let compute = ioctls::looks_like_compute(&categories)
                    || (compute_only_driver
                        && categories
                            .iter()
                            .any(|(c, n)| *n > 0 && matches!(c, Cat::Memory | Cat::Submit | Cat::Sync)));
                let total: u64 = categories.iter().map(|(_, n)| n).sum();
                p.account(now, window, |u| {
                    for (c, n) in &categories {
                        *u.ioctls.entry(enrich::category(*c) as i32).or_default() += n;
                    }
                    u.ioctl_total += total;
                });
                if let Some(s) = &mut p.session
                    && !s.accelerators.contains_key(&device.path)
                {
                    s.accelerators.insert(device.path.clone(), device.clone());
                }
                if compute {
                    let mix: Vec<String> = categories.iter().map(|(c, n)| format!("{}={n}", c.as_str())).collect();
                    let detail = format!("{} {} ({})", device.path, device.driver, mix.join(" "));
                    p.last_compute = Some((now, detail));
                    p.mark_active(now);
                }
                if !p.accelerators.contains_key(&device.path) {
                    p.accelerators.insert(device.path.clone(), device.clone());
                }
            }
            Observation::Gpu { device, sm_percent, memory_bytes, engine_busy_ns } => {
                let busy = sm_percent.is_some_and(|s| s > 0.0) || engine_busy_ns.is_some_and(|b| b > 0);
                let holds_memory = memory_bytes.is_some_and(|m| m > 0);
                p.account(now, window, |u| {
                    if let Some(sm) = sm_percent {
                        u.sm_sum += sm;
                        u.sm_samples += 1;
                        u.sm_max = u.sm_max.max(sm);
                    }
                    if let Some(m) = memory_bytes {
                        u.gpu_mem_last = m;
                        u.gpu_mem_peak = u.gpu_mem_peak.max(m);
                    }
                    u.engine_busy_ns = u.engine_busy_ns.saturating_add(engine_busy_ns.unwrap_or(0));
                });
                if busy || holds_memory {
                    let detail = format!(
                        "{device}: {}{}",
                        sm_percent.map_or_else(|| "busy".into(), |s| format!("{s:.0}% busy")),
                        memory_bytes.map(|m| format!(", {} memory", human_bytes(m))).unwrap_or_default()
                    );
                    p.last_gpu = Some((now, detail));
                }
                if busy {
                    p.mark_active(now);
                }
            }
            Observation::Cpu { cpu_time_ns } => {
                let bytes = p.model_bytes();
                p.loading = bytes > p.bytes_at_last_cpu;
                p.bytes_at_last_cpu = bytes;
                if let Some((then, prev)) = p.last_cpu {
                    let wall_ns = now.duration_since(then).as_nanos() as f64;
                    let used = cpu_time_ns.saturating_sub(prev);
                    p.cpu_percent = if wall_ns > 0.0 { used as f64 / wall_ns * 100.0 } else { 0.0 };
                    if let Some(s) = &mut p.session {
                        s.interval.cpu_ns += used;
                        s.total.cpu_ns += used;
                    }
                    if p.cpu_percent >= cpu_busy && bytes >= large && !p.loading {
                        p.mark_active(now);
                    }
                }
                p.last_cpu = Some((now, cpu_time_ns));
            }
        }
        if self.procs.get(&subject.entity_id).is_none_or(|p| p.session.is_some()) || self.is_decoy(subject) {
            return out;
        }
        let parent_session = self.session_of(&subject.entity_id, &subject.parent_entity_id);
        let idle = self.cfg.idle_timeout;
        if let Some(p) = self.procs.get_mut(&subject.entity_id) {
            let runtime = p.runtime.clone();
            if let Some(started) = try_start(p, now, wall, idle, large, cpu_busy, parent_session, runtime) {
                out.push(started);
            }
        }
        out
    }

    /// What the sensor learnt about a model file later (identification by content): every
    /// process that uses it sees the result.
    pub fn artifact_known(&mut self, path: &str, artifact: &ArtifactSummary) {
        for p in self.procs.values_mut() {
            if let Some(m) = p.models.get_mut(path) {
                m.artifact = Some(artifact.clone());
            }
        }
    }

    /// The session id of `parent`, when it has one (and it is not the process itself).
    fn session_of(&self, me: &str, parent: &str) -> Option<String> {
        if parent.is_empty() || parent == me {
            return None;
        }
        self.procs.get(parent).and_then(|p| p.session.as_ref()).map(|s| s.id.clone())
    }

    /// Periodic work: updates and idle ends.
    pub fn tick(&mut self, now: Instant) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        for p in self.procs.values_mut() {
            let Some(s) = &p.session else { continue };
            let idle_since = p.last_activity.unwrap_or(s.started);
            if now.duration_since(idle_since) >= self.cfg.idle_timeout {
                if let Some(e) = end(p, now, SessionEndReason::Idle) {
                    out.push(e);
                }
                continue;
            }
            if now.duration_since(s.last_update) >= self.cfg.update_interval {
                out.push(update(p, now));
            }
        }
        out
    }

    /// Ends every session (the sensor is stopping).
    pub fn shutdown(&mut self, now: Instant) -> Vec<SessionEvent> {
        self.procs.values_mut().filter_map(|p| end(p, now, SessionEndReason::SensorStop)).collect()
    }

    /// Makes room for one more process: the one without a session seen longest ago goes.
    /// False when every tracked process has a session (then the newcomer is not tracked).
    fn make_room(&mut self) -> bool {
        if self.procs.len() < MAX_TRACKED {
            return true;
        }
        let oldest = self
            .procs
            .iter()
            .filter(|(_, p)| p.session.is_none())
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.procs.remove(&k).is_some())
    }

    /// Processes not tracked since start because the table was full of sessions.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

fn models(p: &Proc) -> Vec<SessionModel> {
    p.models
        .values()
        .filter(|m| m.may_be_model())
        .map(|m| SessionModel {
            file: Some(m.file.clone()),
            artifact: m.artifact.clone(),
            bytes_mapped: m.bytes_mapped,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn try_start(
    p: &mut Proc,
    now: Instant,
    wall: SystemTime,
    idle: Duration,
    large: u64,
    cpu_busy: f64,
    parent_session: Option<String>,
    runtime: Option<String>,
) -> Option<SessionEvent> {
    let recent = |t: &Option<(Instant, String)>| {
        t.as_ref().filter(|(at, _)| now.duration_since(*at) < idle).map(|(_, d)| d.clone())
    };
    let compute = recent(&p.last_compute);
    let gpu = recent(&p.last_gpu);
    // Busy after the model was loaded: a process busy only while reading it copies or hashes.
    let cpu = p.model_bytes() >= large && p.cpu_percent >= cpu_busy && !p.loading;
    let has_model = p.has_model();
    let accelerated = compute.is_some() || gpu.is_some();
    let engine = if has_model && accelerated {
        SessionEngine::Accelerator
    } else if has_model && cpu {
        SessionEngine::Cpu
    } else if parent_session.is_some() && (accelerated || cpu) {
        if accelerated { SessionEngine::Accelerator } else { SessionEngine::Cpu }
    } else {
        return None;
    };
    if let Some(d) = &compute {
        p.note(EvidenceKind::AcceleratorCompute, d.clone(), wall);
    }
    if let Some(d) = &gpu {
        p.note(EvidenceKind::GpuUtilization, d.clone(), wall);
    }
    if cpu {
        p.note(
            EvidenceKind::CpuBusy,
            format!("{:.0}% CPU with {} of model mapped", p.cpu_percent, human_bytes(p.model_bytes())),
            wall,
        );
    }
    if let Some(parent) = &parent_session {
        p.note(EvidenceKind::ParentSession, parent.clone(), wall);
    }
    let mut confidence: f64 = if engine == SessionEngine::Cpu { 0.5 } else { 0.6 };
    if gpu.is_some() {
        confidence += 0.15;
    }
    if compute.is_some() && gpu.is_some() {
        confidence += 0.05;
    }
    if !p.runtime_libs.is_empty() {
        confidence += 0.1;
    }
    if runtime.is_some() {
        confidence += 0.1;
    }
    if p.models.values().any(|m| {
        m.artifact.as_ref().is_some_and(|a| {
            a.format != ArtifactFormat::Unknown as i32 && a.format != ArtifactFormat::Unspecified as i32
        })
    }) {
        confidence += 0.05;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let accelerators: BTreeMap<String, Accelerator> =
        if engine == SessionEngine::Accelerator { p.accelerators.clone() } else { BTreeMap::new() };
    p.last_activity = Some(now);
    p.pending_since = None;
    p.session = Some(Active {
        id: id.clone(),
        started: now,
        started_wall: wall,
        last_update: now,
        // The total includes the work that started the session; the first interval starts
        // now, so its rates are over the time it covers.
        interval: Usage::default(),
        total: std::mem::take(&mut p.pending),
        accelerators: accelerators.clone(),
    });
    Some(SessionEvent::Started(
        p.subject.clone(),
        InferenceSessionStarted {
            session_id: id,
            engine: engine as i32,
            accelerators: accelerators.into_values().collect(),
            models: models(p),
            evidence: p.evidence.clone(),
            confidence: (confidence.min(0.99) * 100.0).round() / 100.0,
            parent_session_id: parent_session.unwrap_or_default(),
            runtime: runtime.unwrap_or_default(),
        },
    ))
}

fn update(p: &mut Proc, now: Instant) -> SessionEvent {
    let model_bytes = p.model_bytes();
    let s = p.session.as_mut().expect("caller checked the session");
    let interval = s.interval.to_proto(now.duration_since(s.last_update), model_bytes);
    let total = s.total.to_proto(now.duration_since(s.started), model_bytes);
    s.interval = Usage::default();
    s.last_update = now;
    let ev = InferenceSessionUpdated {
        session_id: s.id.clone(),
        interval: Some(interval),
        total: Some(total),
        elapsed_ns: now.duration_since(s.started).as_nanos() as u64,
        models: Vec::new(),
    };
    SessionEvent::Updated(p.subject.clone(), ev)
}

fn end(p: &mut Proc, now: Instant, reason: SessionEndReason) -> Option<SessionEvent> {
    let s = p.session.take()?;
    let duration = now.duration_since(s.started);
    let total = s.total.to_proto(duration, p.model_bytes());
    Some(SessionEvent::Ended(
        p.subject.clone(),
        InferenceSessionEnded {
            session_id: s.id,
            reason: reason as i32,
            start_time: Some(timestamp(s.started_wall)),
            duration_ns: duration.as_nanos() as u64,
            total: Some(total),
            models: models(p),
            accelerators: s.accelerators.into_values().collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::AcceleratorKind;

    fn cfg() -> SessionConfig {
        SessionConfig {
            update_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            cpu_busy_percent: 50.0,
            large_model_bytes: 32 << 20,
            runtime_executables: vec!["ollama".into(), "llama-server".into(), "vllm".into()],
            non_inference_executables: vec!["cp".into(), "sha256sum".into(), "curl".into()],
        }
    }

    fn subject(pid: u32, exe: &str, parent: &str) -> Subject {
        Arc::new(ProcessInfo {
            entity_id: format!("e{pid}"),
            pid,
            ppid: 0,
            parent_entity_id: parent.into(),
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            exe: exe.into(),
            cmdline: vec![exe.rsplit('/').next().unwrap().into()],
            cmdline_truncated: false,
            comm: String::new(),
            cgroup_id: 0,
            container_id: String::new(),
            start_ticks: 0,
            start_boottime_ns: 0,
        })
    }

    fn model(path: &str) -> FileRef {
        FileRef { path: path.into(), size: 4 << 30, ..Default::default() }
    }

    fn gpu() -> Accelerator {
        Accelerator {
            path: "/dev/dri/renderD128".into(),
            driver: "amdgpu".into(),
            kind: AcceleratorKind::Gpu as i32,
            ..Default::default()
        }
    }

    fn submit_mix() -> Observation<'static> {
        static GPU: std::sync::OnceLock<Accelerator> = std::sync::OnceLock::new();
        Observation::Ioctls {
            device: GPU.get_or_init(gpu),
            compute_only_driver: false,
            categories: vec![(Cat::Submit, 40), (Cat::Memory, 6), (Cat::Sync, 40)],
        }
    }

    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn started(evs: &[SessionEvent]) -> Vec<&InferenceSessionStarted> {
        evs.iter().filter_map(|e| if let SessionEvent::Started(_, s) = e { Some(s) } else { None }).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn start_update_and_end_on_exit() {
        let mut t = Tracker::new(cfg());
        let p = subject(100, "/usr/local/bin/llama-server", "e1");
        let now = Instant::now();
        assert!(
            t.observe(
                now,
                wall(),
                &p,
                Observation::ModelMapped { file: &model("/m/llama.gguf"), length: 4 << 30, artifact: None }
            )
            .is_empty()
        );
        assert!(t.observe(now, wall(), &p, Observation::AcceleratorOpened { device: &gpu() }).is_empty());
        let evs = t.observe(now, wall(), &p, submit_mix());
        let s = started(&evs);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].engine, SessionEngine::Accelerator as i32);
        assert_eq!(s[0].runtime, "llama-server");
        assert_eq!(s[0].accelerators[0].path, "/dev/dri/renderD128");
        assert_eq!(s[0].models[0].bytes_mapped, 4 << 30);
        let kinds: Vec<i32> = s[0].evidence.iter().map(|e| e.kind).collect();
        assert!(
            kinds.contains(&(EvidenceKind::ModelMapped as i32))
                && kinds.contains(&(EvidenceKind::AcceleratorCompute as i32))
        );
        assert!(s[0].confidence >= 0.7, "{}", s[0].confidence);
        let id = s[0].session_id.clone();
        // No second start for the same process.
        assert!(started(&t.observe(now, wall(), &p, submit_mix())).is_empty());

        tokio::time::advance(Duration::from_secs(5)).await;
        t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::Gpu {
                device: "/dev/dri/renderD128".into(),
                sm_percent: Some(70.0),
                memory_bytes: Some(6 << 30),
                engine_busy_ns: None,
            },
        );
        assert!(t.tick(Instant::now()).is_empty(), "update interval not reached");
        tokio::time::advance(Duration::from_secs(5)).await;
        t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::Gpu {
                device: "/dev/dri/renderD128".into(),
                sm_percent: Some(72.0),
                memory_bytes: Some(6 << 30),
                engine_busy_ns: None,
            },
        );
        let ups = t.tick(Instant::now());
        let [SessionEvent::Updated(_, u)] = ups.as_slice() else { panic!("{ups:?}") };
        assert_eq!(u.session_id, id);
        let i = u.interval.as_ref().unwrap();
        assert_eq!(i.gpu_sm_percent_avg, 71.0);
        assert_eq!(i.gpu_memory_peak_bytes, 6 << 30);
        assert_eq!(i.interval_ns, 10_000_000_000);
        assert_eq!(u.elapsed_ns, 10_000_000_000);

        tokio::time::advance(Duration::from_secs(3)).await;
        let evs = t.observe(Instant::now(), wall(), &p, Observation::Exit);
        let [SessionEvent::Ended(_, e)] = evs.as_slice() else { panic!("{evs:?}") };
        assert_eq!(e.reason, SessionEndReason::ProcessExit as i32);
        assert_eq!(e.duration_ns, 13_000_000_000);
        // Both mixes: the one that started the session and the one after.
        assert_eq!(e.total.as_ref().unwrap().ioctls.iter().map(|c| c.count).sum::<u64>(), 2 * 86);
        assert_eq!(t.active(), 0);
        assert!(t.candidates().is_empty(), "exited processes are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn usage_before_the_start_counts_in_the_total_within_the_idle_window() {
        let mut t = Tracker::new(cfg());
        let p = subject(101, "/usr/bin/python3", "e2");
        let now = Instant::now();
        let display =
            |n| Observation::Ioctls { device: &GPU_DEV, compute_only_driver: false, categories: vec![(Cat::Query, n)] };
        static GPU_DEV: std::sync::LazyLock<Accelerator> = std::sync::LazyLock::new(gpu);
        // Long before: forgotten by the time the session starts.
        t.observe(now, wall(), &p, display(1000));
        tokio::time::advance(Duration::from_secs(61)).await;
        // Within the window: query ioctls and a GPU sample with nothing mapped yet (no session).
        t.observe(Instant::now(), wall(), &p, display(5));
        let evs = t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::Gpu {
                device: "/dev/dri/renderD128".into(),
                sm_percent: Some(40.0),
                memory_bytes: Some(1 << 30),
                engine_busy_ns: None,
            },
        );
        assert!(started(&evs).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        // The mapping completes the evidence (a model and recent GPU use): the session starts.
        let evs = t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::ModelMapped { file: &model("/m/llama.gguf"), length: 4 << 30, artifact: None },
        );
        assert_eq!(started(&evs).len(), 1);
        t.observe(Instant::now(), wall(), &p, submit_mix());
        // The first update's interval starts at the start: nothing from before it.
        tokio::time::advance(Duration::from_secs(10)).await;
        let ups = t.tick(Instant::now());
        let [SessionEvent::Updated(_, u)] = ups.as_slice() else { panic!("{ups:?}") };
        let interval: u64 = u.interval.as_ref().unwrap().ioctls.iter().map(|c| c.count).sum();
        assert_eq!(interval, 86);
        let evs = t.observe(Instant::now(), wall(), &p, Observation::Exit);
        let [SessionEvent::Ended(_, e)] = evs.as_slice() else { panic!("{evs:?}") };
        let total = e.total.as_ref().unwrap();
        let counts: Vec<(i32, u64)> = total.ioctls.iter().map(|c| (c.category, c.count)).collect();
        use crate::proto::v1::IoctlCategory as P;
        assert_eq!(counts, [(P::Memory as i32, 6), (P::Submit as i32, 40), (P::Sync as i32, 40), (P::Query as i32, 5)]);
        assert_eq!((total.gpu_sm_percent_max, total.gpu_memory_peak_bytes), (40.0, 1 << 30));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_and_activity_restarts() {
        let mut t = Tracker::new(cfg());
        let p = subject(7, "/usr/bin/python3", "");
        t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::ModelOpened { file: &model("/m/a.safetensors"), artifact: None },
        );
        let evs = t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::Gpu {
                device: "/dev/nvidia0".into(),
                sm_percent: Some(90.0),
                memory_bytes: Some(1 << 30),
                engine_busy_ns: None,
            },
        );
        assert_eq!(started(&evs).len(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        let evs = t.tick(Instant::now());
        assert!(evs.iter().all(|e| matches!(e, SessionEvent::Updated(..))));
        tokio::time::advance(Duration::from_secs(1)).await;
        let evs = t.tick(Instant::now());
        let [SessionEvent::Ended(_, e)] = evs.as_slice() else { panic!("{evs:?}") };
        assert_eq!(e.reason, SessionEndReason::Idle as i32);
        assert_eq!(e.duration_ns, 60_000_000_000);
        // Busy again: a new session, new id.
        let evs = t.observe(
            Instant::now(),
            wall(),
            &p,
            Observation::Gpu {
                device: "/dev/nvidia0".into(),
                sm_percent: Some(50.0),
                memory_bytes: None,
                engine_busy_ns: None,
            },
        );
        let s = started(&evs);
        assert_eq!(s.len(), 1);
        assert_ne!(s[0].session_id, e.session_id);
    }

    #[tokio::test(start_paused = true)]
    async fn cpu_inference_needs_a_large_mapping_and_a_busy_cpu() {
        let mut t = Tracker::new(cfg());
        let p = subject(9, "/opt/llama-cli", "");
        let t0 = Instant::now();
        t.observe(
            t0,
            wall(),
            &p,
            Observation::ModelMapped { file: &model("/m/q4.gguf"), length: 4 << 30, artifact: None },
        );
        t.observe(t0, wall(), &p, Observation::Cpu { cpu_time_ns: 0 });
        tokio::time::advance(Duration::from_secs(1)).await;
        // 20% of a core: not busy.
        assert!(t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: 200_000_000 }).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let evs = t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: 1_800_000_000 });
        let s = started(&evs);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].engine, SessionEngine::Cpu as i32);
        assert!(s[0].accelerators.is_empty());
        // A small mapping and a busy CPU is not inference.
        let q = subject(10, "/usr/bin/python3", "");
        t.observe(
            Instant::now(),
            wall(),
            &q,
            Observation::ModelMapped { file: &model("/m/tiny.pt"), length: 4096, artifact: None },
        );
        t.observe(Instant::now(), wall(), &q, Observation::Cpu { cpu_time_ns: 0 });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.observe(Instant::now(), wall(), &q, Observation::Cpu { cpu_time_ns: 1_000_000_000 }).is_empty());
    }

    /// A model read without mapping it (io_uring) is model evidence like a mapping: its bytes
    /// count towards the large-model size of the CPU-inference rule.
    #[tokio::test(start_paused = true)]
    async fn model_reads_count_like_mapped_bytes() {
        let mut t = Tracker::new(cfg());
        let p = subject(11, "/opt/uring-engine", "");
        let t0 = Instant::now();
        for _ in 0..4 {
            let file = model("/m/q4.gguf");
            t.observe(t0, wall(), &p, Observation::ModelRead { file: &file, bytes: 1 << 30, artifact: None });
        }
        t.observe(t0, wall(), &p, Observation::Cpu { cpu_time_ns: 0 });
        tokio::time::advance(Duration::from_secs(1)).await;
        let evs = t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: 900_000_000 });
        let s = started(&evs);
        assert_eq!(s.len(), 1, "4 GiB read and a busy CPU: CPU inference");
        assert_eq!(s[0].models[0].bytes_mapped, 4 << 30);
        let kinds: Vec<i32> = s[0].evidence.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&(EvidenceKind::ModelRead as i32)), "{kinds:?}");
        assert!(!kinds.contains(&(EvidenceKind::ModelMapped as i32)), "{kinds:?}");
    }

    /// A process busy only while it reads a model (hashing it, scanning it, copying it with a
    /// tool not on the decoy list) is not inferring; busy after the reads stopped, it is.
    #[tokio::test(start_paused = true)]
    async fn cpu_counts_after_the_load_not_during_it() {
        let mut t = Tracker::new(cfg());
        let p = subject(12, "/home/u/hash.py", "");
        let file = model("/m/q4.gguf");
        let mut cpu = 0;
        t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: cpu });
        for _ in 0..3 {
            t.observe(
                Instant::now(),
                wall(),
                &p,
                Observation::ModelRead { file: &file, bytes: 1 << 30, artifact: None },
            );
            tokio::time::advance(Duration::from_secs(1)).await;
            cpu += 900_000_000;
            let evs = t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: cpu });
            assert!(started(&evs).is_empty(), "busy while reading: no session");
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        cpu += 900_000_000;
        let evs = t.observe(Instant::now(), wall(), &p, Observation::Cpu { cpu_time_ns: cpu });
        assert_eq!(started(&evs).len(), 1, "busy after the load: CPU inference");
    }

    #[tokio::test(start_paused = true)]
    async fn decoys_never_start_sessions() {
        let mut t = Tracker::new(cfg());
        let now = Instant::now();
        // cp and sha256sum read the model and burn CPU, even with GPU samples attributed.
        for exe in ["/usr/bin/cp", "/usr/bin/sha256sum", "/usr/bin/curl"] {
            let p = subject(exe.len() as u32, exe, "");
            t.observe(now, wall(), &p, Observation::ModelOpened { file: &model("/m/x.gguf"), artifact: None });
            t.observe(
                now,
                wall(),
                &p,
                Observation::ModelMapped { file: &model("/m/x.gguf"), length: 4 << 30, artifact: None },
            );
            assert!(t.observe(now, wall(), &p, submit_mix()).is_empty(), "{exe}");
        }
        // A compositor on the GPU with no model.
        let c = subject(500, "/usr/bin/gnome-shell", "");
        assert!(t.observe(now, wall(), &c, submit_mix()).is_empty());
        assert!(
            t.observe(
                now,
                wall(),
                &c,
                Observation::Gpu {
                    device: "/dev/dri/renderD128".into(),
                    sm_percent: Some(30.0),
                    memory_bytes: None,
                    engine_busy_ns: None
                }
            )
            .is_empty()
        );
        // A display-only ioctl mix with a model open is not compute either.
        let v = subject(501, "/usr/bin/mpv", "");
        t.observe(now, wall(), &v, Observation::ModelOpened { file: &model("/m/x.gguf"), artifact: None });
        let g = gpu();
        let display = Observation::Ioctls {
            device: &g,
            compute_only_driver: false,
            categories: vec![(Cat::Other, 400), (Cat::Query, 10)],
        };
        assert!(t.observe(now, wall(), &v, display).is_empty());
        // A file identified as "not a model" is no model evidence.
        let n = subject(502, "/usr/bin/python3", "");
        let not_model = ArtifactSummary { format: ArtifactFormat::NotAModel as i32, ..Default::default() };
        t.observe(
            now,
            wall(),
            &n,
            Observation::ModelOpened { file: &model("/m/notes.pth"), artifact: Some(&not_model) },
        );
        assert!(t.observe(now, wall(), &n, submit_mix()).is_empty());
        assert_eq!(t.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn names_a_process_gives_itself_decide_nothing() {
        let mut t = Tracker::new(cfg());
        let now = Instant::now();
        // Names a process gives itself decide nothing: python3 calling itself cp (argv[0]), and
        // a copy of python3 named cp in a home directory, are not decoys.
        let renamed = |pid: u32, exe: &str, argv0: &str| {
            Arc::new(ProcessInfo {
                cmdline: vec![argv0.into()],
                comm: argv0.into(),
                ..(*subject(pid, exe, "")).clone()
            })
        };
        for p in [renamed(400, "/usr/bin/python3.11", "cp"), renamed(401, "/home/mallory/bin/cp", "cp")] {
            t.observe(
                now,
                wall(),
                &p,
                Observation::ModelMapped { file: &model("/m/x.gguf"), length: 4 << 30, artifact: None },
            );
            let out = t.observe(now, wall(), &p, submit_mix());
            assert!(matches!(out.as_slice(), [SessionEvent::Started(..)]), "{}: {out:?}", p.exe);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn multi_process_runtime_links_child_to_parent_session() {
        let mut t = Tracker::new(cfg());
        let now = Instant::now();
        let serve = subject(1000, "/usr/local/bin/ollama", "");
        t.observe(now, wall(), &serve, Observation::ModelOpened { file: &model("/m/blobs/sha256-ab"), artifact: None });
        let evs = t.observe(
            now,
            wall(),
            &serve,
            Observation::Gpu {
                device: "/dev/nvidia0".into(),
                sm_percent: Some(5.0),
                memory_bytes: Some(1 << 20),
                engine_busy_ns: None,
            },
        );
        let parent_id = started(&evs)[0].session_id.clone();
        // The runner never opens the model itself (weights come over shared memory) but
        // computes on the GPU: its own session, linked to the parent's.
        let runner = subject(1001, "/usr/local/bin/ollama", "e1000");
        let evs = t.observe(
            now,
            wall(),
            &runner,
            Observation::Gpu {
                device: "/dev/nvidia0".into(),
                sm_percent: Some(95.0),
                memory_bytes: Some(5 << 30),
                engine_busy_ns: None,
            },
        );
        let s = started(&evs);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].parent_session_id, parent_id);
        assert!(s[0].evidence.iter().any(|e| e.kind == EvidenceKind::ParentSession as i32));
        // A forked helper with no activity of its own gets nothing.
        let helper = subject(1002, "/usr/local/bin/ollama", "e1000");
        assert!(t.observe(now, wall(), &helper, Observation::AcceleratorOpened { device: &gpu() }).is_empty());
        assert_eq!(t.active(), 2);
        // Exec replaces the program: the runner's session ends.
        let evs = t.observe(now, wall(), &runner, Observation::Exec);
        let [SessionEvent::Ended(_, e)] = evs.as_slice() else { panic!("{evs:?}") };
        assert_eq!(e.reason, SessionEndReason::Exec as i32);
        let ends = t.shutdown(Instant::now());
        assert_eq!(ends.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn compute_only_drivers_count_memory_work() {
        let mut t = Tracker::new(cfg());
        let now = Instant::now();
        let p = subject(3, "/usr/bin/python3", "");
        t.observe(now, wall(), &p, Observation::ModelOpened { file: &model("/m/w.safetensors"), artifact: None });
        let kfd = Accelerator { path: "/dev/kfd".into(), driver: "amdkfd".into(), ..Default::default() };
        let evs = t.observe(
            now,
            wall(),
            &p,
            Observation::Ioctls { device: &kfd, compute_only_driver: true, categories: vec![(Cat::Memory, 2)] },
        );
        assert_eq!(started(&evs).len(), 1);
    }

    #[test]
    fn untracked_processes_cost_nothing() {
        let mut t = Tracker::new(cfg());
        let p = subject(4, "/bin/ls", "");
        let now = Instant::now();
        assert!(t.observe(now, wall(), &p, Observation::Cpu { cpu_time_ns: 5 }).is_empty());
        assert!(t.observe(now, wall(), &p, Observation::Exit).is_empty());
        assert!(t.candidates().is_empty());
    }
}
