//! Usage sampling: CPU time of the processes the session tracker is watching, and GPU
//! utilisation from the telemetry sources (NVML, DRM fdinfo, replay). It owns the sources and
//! the clock-tick unit; what the samples mean is the session tracker's business.

use std::path::PathBuf;

use crate::{
    config::TelemetryConfig,
    host,
    telemetry::{
        GpuTelemetry, Snapshot, Telemetry, fdinfo::FdinfoTelemetry, nvml::NvmlTelemetry, replay::ReplayTelemetry,
    },
};

pub struct Sampler {
    telemetry: Telemetry,
    ns_per_tick: u64,
}

impl Sampler {
    pub fn new(cfg: &TelemetryConfig) -> Self {
        let mut sources: Vec<Box<dyn GpuTelemetry>> = Vec::new();
        if cfg.nvml {
            sources.push(Box::new(NvmlTelemetry::new()));
        }
        if cfg.drm_fdinfo {
            sources.push(Box::new(FdinfoTelemetry::new(PathBuf::from("/proc"))));
        }
        if let Some(path) = &cfg.replay {
            sources.push(Box::new(ReplayTelemetry::new(path.clone())));
        }
        Self { telemetry: Telemetry::new(sources), ns_per_tick: 1_000_000_000 / host::clock_ticks() }
    }

    /// utime + stime of a process, in ns.
    pub fn cpu_time_ns(&self, pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(cpu_ticks(&stat)?.saturating_mul(self.ns_per_tick))
    }

    /// GPU use of these processes, from every source.
    pub fn gpu(&mut self, pids: &[u32]) -> Snapshot {
        self.telemetry.sample(pids)
    }

    /// What NVML said last (for health and status).
    pub fn nvml_state(&self) -> String {
        self.telemetry.nvml_state()
    }
}

/// utime + stime, in clock ticks, from the text of /proc/<pid>/stat. The command name may hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_hostile_command_name() {
        let stat = "42 (evil) 1 2 3 (x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5000 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }
}
