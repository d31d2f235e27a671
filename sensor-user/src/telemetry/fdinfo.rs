//! DRM fdinfo: per-client engine time and memory, as drivers publish them in
//! `/proc/<pid>/fdinfo/<fd>` for DRM and DRM-accel file descriptors (format:
//! Documentation/gpu/drm-usage-stats.rst in the kernel). Vendor-neutral: amdgpu, i915, xe,
//! nouveau, msm, panfrost, v3d, ivpu and others publish the same keys.
//!
//! Written by hand because no crate parses these files; the parser is bounded (lines, key and
//! value lengths) and fuzzed (`proc_files` target), since a process controls which files its
//! fds point to.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{GpuTelemetry, ProcessGpuSample, Snapshot, SourceState};

const MAX_LINES: usize = 512;
const MAX_FDS: usize = 4096;

/// What one fdinfo file says about its DRM client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrmClient {
    pub driver: String,
    /// `drm-client-id`: unique per open of the device; dup'd fds share it.
    pub client_id: Option<u64>,
    /// Cumulative busy time per engine, ns.
    pub engines: Vec<(String, u64)>,
    /// Resident (or, when not published, total) memory over all regions, bytes.
    pub memory_bytes: u64,
}

/// Parses one fdinfo file. `None` when it is not a DRM client.
pub fn parse(text: &str) -> Option<DrmClient> {
    let mut c = DrmClient::default();
    let mut is_drm = false;
    let mut resident = 0u64;
    let mut total = 0u64;
    let mut memory_legacy = 0u64;
    for line in text.lines().take(MAX_LINES) {
        let Some((key, value)) = line.split_once(':') else { continue };
        if key.len() > 64 {
            continue;
        }
        let value = value.trim();
        match key {
            "drm-driver" => {
                is_drm = true;
                c.driver = value.chars().take(32).collect();
            }
            "drm-client-id" => c.client_id = value.parse().ok(),
            _ => {
                if let Some(engine) = key.strip_prefix("drm-engine-") {
                    // "drm-engine-capacity-<name>" is a count of engines, not time.
                    if engine.starts_with("capacity-") {
                        continue;
                    }
                    if let Some(ns) = value.strip_suffix(" ns").and_then(|v| v.trim().parse::<u64>().ok()) {
                        c.engines.push((engine.chars().take(32).collect(), ns));
                    }
                } else if key.starts_with("drm-resident-") {
                    resident = resident.saturating_add(parse_size(value).unwrap_or(0));
                } else if key.starts_with("drm-total-") {
                    total = total.saturating_add(parse_size(value).unwrap_or(0));
                } else if key.starts_with("drm-memory-") {
                    memory_legacy = memory_legacy.saturating_add(parse_size(value).unwrap_or(0));
                }
            }
        }
    }
    if !is_drm {
        return None;
    }
    c.memory_bytes = if resident > 0 {
        resident
    } else if memory_legacy > 0 {
        memory_legacy
    } else {
        total
    };
    Some(c)
}

/// "123", "123 KiB", "4 MiB".
fn parse_size(v: &str) -> Option<u64> {
    let mut it = v.split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    let mult = match it.next() {
        None => 1,
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        Some(_) => return None,
    };
    n.checked_mul(mult)
}

/// Samples fdinfo of the given processes' DRM and accel fds.
pub struct FdinfoTelemetry {
    proc_root: PathBuf,
    /// (pid, client id, engine) → (busy ns, when).
    last: HashMap<(u32, u64, String), (u64, Instant)>,
}

impl FdinfoTelemetry {
    pub fn new(proc_root: PathBuf) -> Self {
        Self { proc_root, last: HashMap::new() }
    }

    fn clients_of(&self, pid: u32) -> Vec<(String, DrmClient)> {
        let fd_dir = self.proc_root.join(pid.to_string()).join("fd");
        let Ok(rd) = std::fs::read_dir(&fd_dir) else { return Vec::new() };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        // The first MAX_FDS entries only: fd numbers are handed out lowest first, and a
        // runtime opens its device early, so a process with more fds is still found.
        for entry in rd.take(MAX_FDS).flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            if !is_accel_node(&target) {
                continue;
            }
            let info = self.proc_root.join(pid.to_string()).join("fdinfo").join(entry.file_name());
            let Ok(text) = std::fs::read_to_string(&info) else { continue };
            let Some(client) = parse(&text) else { continue };
            // Dup'd fds of one open share a client id: count it once.
            if let Some(id) = client.client_id
                && !seen.insert(id)
            {
                continue;
            }
            out.push((target.to_string_lossy().into_owned(), client));
        }
        out
    }
}

fn is_accel_node(p: &Path) -> bool {
    p.starts_with("/dev/dri") || p.starts_with("/dev/accel")
}

impl GpuTelemetry for FdinfoTelemetry {
    fn name(&self) -> &'static str {
        "drm-fdinfo"
    }

    fn state(&self) -> SourceState {
        SourceState::Available("per-process DRM engine time".into())
    }

    fn sample(&mut self, pids: &[u32]) -> Snapshot {
        let now = Instant::now();
        let mut snap = Snapshot::default();
        let mut live = std::collections::HashSet::new();
        for &pid in pids {
            for (device, client) in self.clients_of(pid) {
                let id = client.client_id.unwrap_or(0);
                let mut busy_delta = 0u64;
                let mut best_percent: Option<f64> = None;
                for (engine, ns) in &client.engines {
                    let key = (pid, id, engine.clone());
                    live.insert(key.clone());
                    if let Some((prev_ns, prev_at)) = self.last.insert(key, (*ns, now)) {
                        let d = ns.saturating_sub(prev_ns);
                        busy_delta = busy_delta.saturating_add(d);
                        let wall = now.duration_since(prev_at).as_nanos() as f64;
                        if wall > 0.0 {
                            let pct = (d as f64 / wall * 100.0).min(100.0);
                            best_percent = Some(best_percent.unwrap_or(0.0).max(pct));
                        }
                    }
                }
                snap.processes.push(ProcessGpuSample {
                    pid,
                    device,
                    sm_percent: best_percent,
                    memory_bytes: Some(client.memory_bytes),
                    engine_busy_ns: Some(busy_delta),
                });
            }
        }
        // Forget clients that went away.
        self.last.retain(|k, _| live.contains(k));
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMDGPU: &str = "pos:\t0\nflags:\t02100002\nmnt_id:\t25\nino:\t1033\ndrm-driver:\tamdgpu\n\
drm-client-id:\t14\ndrm-pdev:\t0000:03:00.0\ndrm-total-vram:\t4096 KiB\ndrm-resident-vram:\t2048 KiB\n\
drm-resident-gtt:\t1024 KiB\ndrm-engine-gfx:\t1000000 ns\ndrm-engine-compute:\t5000000 ns\n\
drm-engine-capacity-gfx:\t1\n";

    #[test]
    fn parses_engines_memory_and_client() {
        let c = parse(AMDGPU).unwrap();
        assert_eq!(c.driver, "amdgpu");
        assert_eq!(c.client_id, Some(14));
        assert_eq!(c.engines, vec![("gfx".into(), 1_000_000), ("compute".into(), 5_000_000)]);
        assert_eq!(c.memory_bytes, 3 << 20, "resident regions are summed, total ignored");
    }

    #[test]
    fn legacy_and_plain_sizes() {
        let c = parse("drm-driver: i915\ndrm-memory-system: 8 MiB\ndrm-engine-render: 42 ns\n").unwrap();
        assert_eq!(c.memory_bytes, 8 << 20);
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1 TiB"), None);
        assert_eq!(parse_size("99999999999999999999 KiB"), None);
    }

    #[test]
    fn non_drm_and_hostile_input() {
        assert_eq!(parse("pos: 0\nflags: 02\n"), None);
        let long_key = format!("drm-driver: x\n{}: 1 ns\n", "drm-engine-".to_owned() + &"a".repeat(500));
        assert!(parse(&long_key).unwrap().engines.is_empty());
        let garbage = "drm-driver:\u{0}\ndrm-engine-gfx: -5 ns\ndrm-engine-x: 18446744073709551616 ns\n:::\n";
        let c = parse(garbage).unwrap();
        assert!(c.engines.is_empty());
        let many = "drm-driver: x\n".to_owned() + &"drm-engine-e: 1 ns\n".repeat(10_000);
        assert_eq!(parse(&many).unwrap().engines.len(), MAX_LINES - 1);
    }

    #[test]
    fn samples_deltas_from_a_fixture_proc_tree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("77");
        std::fs::create_dir_all(p.join("fd")).unwrap();
        std::fs::create_dir_all(p.join("fdinfo")).unwrap();
        std::os::unix::fs::symlink("/dev/dri/renderD128", p.join("fd/5")).unwrap();
        std::os::unix::fs::symlink("/dev/dri/renderD128", p.join("fd/6")).unwrap(); // dup
        std::os::unix::fs::symlink("/etc/passwd", p.join("fd/7")).unwrap();
        std::fs::write(p.join("fdinfo/5"), AMDGPU).unwrap();
        std::fs::write(p.join("fdinfo/6"), AMDGPU).unwrap();
        let mut t = FdinfoTelemetry::new(dir.path().to_owned());
        let first = t.sample(&[77]);
        assert_eq!(first.processes.len(), 1, "dup'd fds count once");
        assert_eq!(first.processes[0].engine_busy_ns, Some(0));
        assert_eq!(first.processes[0].sm_percent, None, "no rate before a second sample");
        let later = AMDGPU.replace("5000000 ns", "9000000 ns");
        std::fs::write(p.join("fdinfo/5"), &later).unwrap();
        std::fs::write(p.join("fdinfo/6"), &later).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = t.sample(&[77]);
        let s = &second.processes[0];
        assert_eq!(s.engine_busy_ns, Some(4_000_000));
        assert!(s.sm_percent.unwrap() > 0.0 && s.sm_percent.unwrap() <= 100.0);
        assert_eq!(s.device, "/dev/dri/renderD128");
        assert_eq!(s.memory_bytes, Some(3 << 20));
    }
}
