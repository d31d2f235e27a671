//! NVIDIA utilisation through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run
//! time). No driver or no library: the source reports itself unavailable, once, and samples
//! nothing.

use std::collections::HashMap;

use nvml_wrapper::{Nvml, enums::device::UsedGpuMemory};

use super::{GpuTelemetry, ProcessGpuSample, Snapshot, SourceState};

pub struct NvmlTelemetry {
    nvml: Option<Nvml>,
    state: SourceState,
    /// Last `process_utilization_stats` timestamp per device index.
    last_seen: HashMap<u32, u64>,
    warned: bool,
}

impl NvmlTelemetry {
    /// Loads NVML; never fails, but may come up unavailable.
    pub fn new() -> Self {
        match Nvml::init() {
            Ok(nvml) => {
                let version = nvml.sys_driver_version().unwrap_or_else(|_| "unknown".into());
                let count = nvml.device_count().unwrap_or(0);
                let state = SourceState::Available(format!("driver {version}, {count} GPUs"));
                tracing::info!("NVML {}", state.describe());
                Self { nvml: Some(nvml), state, last_seen: HashMap::new(), warned: false }
            }
            Err(e) => {
                let state = SourceState::Unavailable(e.to_string());
                tracing::info!("NVML {}", state.describe());
                Self { nvml: None, state, last_seen: HashMap::new(), warned: false }
            }
        }
    }
}

impl Default for NvmlTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl GpuTelemetry for NvmlTelemetry {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn state(&self) -> SourceState {
        self.state.clone()
    }

    fn sample(&mut self, _pids: &[u32]) -> Snapshot {
        let Some(nvml) = &self.nvml else { return Snapshot::default() };
        let mut snap = Snapshot::default();
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => {
                if !self.warned {
                    tracing::warn!("NVML device count failed: {e}");
                    self.warned = true;
                }
                return snap;
            }
        };
        for index in 0..count {
            let Ok(dev) = nvml.device_by_index(index) else { continue };
            // /dev/nvidiaN is named by the device's minor number, as discovery names it.
            let node = dev.minor_number().map_or_else(|_| format!("nvml:{index}"), |m| format!("/dev/nvidia{m}"));
            let mut per_pid: HashMap<u32, ProcessGpuSample> = HashMap::new();
            if let Ok(procs) = dev.running_compute_processes() {
                for p in procs {
                    let e = per_pid.entry(p.pid).or_insert_with(|| ProcessGpuSample {
                        pid: p.pid,
                        device: node.clone(),
                        ..Default::default()
                    });
                    if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                        e.memory_bytes = Some(e.memory_bytes.unwrap_or(0).saturating_add(bytes));
                    }
                }
            }
            let since = self.last_seen.get(&index).copied();
            if let Ok(samples) = dev.process_utilization_stats(since) {
                let mut newest = since.unwrap_or(0);
                for s in samples {
                    newest = newest.max(s.timestamp);
                    let e = per_pid.entry(s.pid).or_insert_with(|| ProcessGpuSample {
                        pid: s.pid,
                        device: node.clone(),
                        ..Default::default()
                    });
                    // Several samples per interval: keep the highest.
                    e.sm_percent = Some(e.sm_percent.unwrap_or(0.0).max(f64::from(s.sm_util)));
                }
                self.last_seen.insert(index, newest);
            }
            snap.processes.extend(per_pid.into_values());
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine has no NVIDIA driver: the source must come up unavailable, say why, and
    /// sample nothing without erroring.
    #[test]
    fn absent_driver_is_unavailable_not_an_error() {
        if std::path::Path::new("/proc/driver/nvidia/version").exists() {
            // A GPU machine: the available path is exercised by the device check instead.
            let mut t = NvmlTelemetry::new();
            assert!(matches!(t.state(), SourceState::Available(_)));
            let _ = t.sample(&[]);
            return;
        }
        let mut t = NvmlTelemetry::new();
        let SourceState::Unavailable(why) = t.state() else { panic!("NVML available without a driver?") };
        assert!(!why.is_empty());
        assert_eq!(t.sample(&[1]), Snapshot::default());
        assert!(t.state().describe().starts_with("unavailable: "));
    }
}
