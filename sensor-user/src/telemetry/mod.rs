//! GPU and accelerator utilisation sources behind one trait, [`GpuTelemetry`]:
//!
//! - [`nvml`]: NVIDIA's management library through `nvml-wrapper` (loaded at run time; absent
//!   driver or library means "unavailable", reported once, never an error per tick). Per device:
//!   SM and memory utilisation, memory used; per process: running compute processes with their
//!   GPU memory and `process_utilization_stats` since the previous sample.
//! - [`fdinfo`]: DRM fdinfo (`/proc/<pid>/fdinfo/<fd>`, `drm-engine-*`, `drm-memory-*`,
//!   `drm-resident-*`), vendor-neutral per-process engine time for amdgpu, i915, xe, nouveau,
//!   msm, panfrost, accel drivers and others, sampled only for processes that hold accelerator
//!   fds.
//! - [`replay`]: recorded samples read from a JSON-lines file, so sessions can be exercised on
//!   machines without a GPU (tests, demos).

pub mod fdinfo;
pub mod nvml;
pub mod replay;

use serde::{Deserialize, Serialize};

/// Utilisation attributed to one process on one device over the last interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessGpuSample {
    pub pid: u32,
    /// Device node, e.g. /dev/nvidia0 or /dev/dri/renderD128.
    #[serde(default)]
    pub device: String,
    /// Compute (SM / busiest engine) utilisation, percent.
    #[serde(default)]
    pub sm_percent: Option<f64>,
    /// Device memory held by the process, bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Engine busy time in the interval, ns (fdinfo).
    #[serde(default)]
    pub engine_busy_ns: Option<u64>,
}

/// What one sampling round found: per-process use (sessions attribute by process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub processes: Vec<ProcessGpuSample>,
}

/// Whether a source works on this machine, in words for the health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Available(String),
    Unavailable(String),
}

impl SourceState {
    pub fn describe(&self) -> String {
        match self {
            SourceState::Available(s) => format!("available ({s})"),
            SourceState::Unavailable(s) => format!("unavailable: {s}"),
        }
    }
}

/// A utilisation source. Sampling never fails loudly: a source that cannot sample returns an
/// empty snapshot and says why in [`GpuTelemetry::state`].
pub trait GpuTelemetry: Send {
    fn name(&self) -> &'static str;
    fn state(&self) -> SourceState;
    /// Samples utilisation. `pids` are the processes that hold accelerator fds (sources that
    /// must look per process, like fdinfo, look only at those).
    fn sample(&mut self, pids: &[u32]) -> Snapshot;
}

/// All configured sources, sampled together.
#[derive(Default)]
pub struct Telemetry {
    sources: Vec<Box<dyn GpuTelemetry>>,
}

impl Telemetry {
    pub fn new(sources: Vec<Box<dyn GpuTelemetry>>) -> Self {
        Self { sources }
    }

    pub fn sample(&mut self, pids: &[u32]) -> Snapshot {
        let mut all = Snapshot::default();
        for s in &mut self.sources {
            let snap = s.sample(pids);
            all.processes.extend(snap.processes);
        }
        all
    }

    /// The NVML source's state, for the `nvml` field of health and status.
    pub fn nvml_state(&self) -> String {
        self.sources.iter().find(|s| s.name() == "nvml").map_or_else(|| "disabled".into(), |s| s.state().describe())
    }
}
