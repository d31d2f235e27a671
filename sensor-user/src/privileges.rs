//! The capabilities the sensor needs, and the check at start-up that names the missing ones
//! (instead of a bare EPERM from the kernel, or a sensor that runs but sees less).
//!
//! The set was found by running the sensor as an unprivileged user with one capability
//! fewer at a time (`tests/tests/privileges.rs` keeps it so): on kernel 6.18 it needs
//! exactly [`SENSOR`]. `CAP_SYS_RESOURCE` is not in it: since Linux 5.11 BPF memory is
//! charged to the cgroup, not to RLIMIT_MEMLOCK. `CAP_SYS_ADMIN` is not either: it is only
//! needed to mount tracefs where nothing mounted it (systemd mounts it at boot), and to lower
//! nothing else; `CAP_CHOWN` neither: the packaged service runs in the `modelwatch` group, so
//! handing its socket to that group needs no privilege.

use std::fmt::Write as _;

/// A capability (its number in `linux/capability.h`) and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub u32, pub &'static str);

pub const CAP_DAC_OVERRIDE: Cap = Cap(1, "CAP_DAC_OVERRIDE");
pub const CAP_DAC_READ_SEARCH: Cap = Cap(2, "CAP_DAC_READ_SEARCH");
pub const CAP_SYS_PTRACE: Cap = Cap(19, "CAP_SYS_PTRACE");
pub const CAP_SYS_ADMIN: Cap = Cap(21, "CAP_SYS_ADMIN");
pub const CAP_PERFMON: Cap = Cap(38, "CAP_PERFMON");
pub const CAP_BPF: Cap = Cap(39, "CAP_BPF");
pub const CAP_CHECKPOINT_RESTORE: Cap = Cap(40, "CAP_CHECKPOINT_RESTORE");

/// One need: the capability that grants it, the broader ones that grant it too (older
/// kernels have only `CAP_SYS_ADMIN`), and what it is for.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub cap: Cap,
    pub or: &'static [Cap],
    pub why: &'static str,
}

const PROBES_BPF: Need = Need { cap: CAP_BPF, or: &[CAP_SYS_ADMIN], why: "to load the kernel probes" };
const PROBES_PERFMON: Need =
    Need { cap: CAP_PERFMON, or: &[CAP_SYS_ADMIN], why: "to load tracing programs and attach them to tracepoints" };
const READ_ANY_FILE: Need = Need {
    cap: CAP_DAC_READ_SEARCH,
    or: &[CAP_DAC_OVERRIDE],
    why: "to read tracefs (root only) and the model files of every user",
};
const OTHER_PROCESSES: Need = Need {
    cap: CAP_SYS_PTRACE,
    or: &[],
    why: "to read other users' processes in /proc: open descriptors, executables, mount namespaces, GPU fdinfo",
};
const MAPPINGS: Need = Need {
    cap: CAP_CHECKPOINT_RESTORE,
    or: &[CAP_SYS_ADMIN],
    why: "to read models that processes hold only as mappings, through /proc/<pid>/map_files",
};

/// What loading and attaching the probes needs.
pub const PROBES: &[Need] = &[PROBES_BPF, PROBES_PERFMON, READ_ANY_FILE];

/// What the running sensor needs: the packaged unit grants exactly these.
pub const SENSOR: &[Need] = &[PROBES_BPF, PROBES_PERFMON, READ_ANY_FILE, OTHER_PROCESSES, MAPPINGS];

#[derive(Debug, thiserror::Error)]
#[error(
    "the sensor must run as root or with the capabilities it needs; it runs as uid {uid} without {}. \
     Grant {} (the packaged unit does: AmbientCapabilities=)",
    missing_text(.missing),
    needed_text(.needed)
)]
pub struct MissingCapabilities {
    pub uid: u32,
    pub missing: Vec<Need>,
    pub needed: &'static [Need],
}

fn missing_text(missing: &[Need]) -> String {
    let mut s = String::new();
    for (i, n) in missing.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{} ({})", n.cap.1, n.why);
    }
    s
}

fn needed_text(needed: &[Need]) -> String {
    needed.iter().map(|n| n.cap.1).collect::<Vec<_>>().join(" ")
}

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status").map_or(0, |s| parse_cap_eff(&s))
}

fn parse_cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// The needs of `needed` that the capability set `eff` does not meet.
pub fn missing(needed: &[Need], eff: u64) -> Vec<Need> {
    let has = |c: Cap| c.0 < 64 && eff & (1u64 << c.0) != 0;
    needed.iter().filter(|n| !has(n.cap) && !n.or.iter().any(|c| has(*c))).copied().collect()
}

/// Fails, naming every missing capability and what it is for, unless this process has
/// `needed`. Root is no exception: a container or a bounding set can take capabilities from
/// root too.
pub fn require(needed: &'static [Need]) -> Result<(), MissingCapabilities> {
    let missing = missing(needed, effective());
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    Err(MissingCapabilities { uid, missing, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |a, c| a | 1 << c.0)
    }

    #[test]
    fn each_missing_capability_is_named_with_its_purpose() {
        let all = set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE]);
        assert!(missing(SENSOR, all).is_empty());
        for n in SENSOR {
            let gone = missing(SENSOR, all & !(1 << n.cap.0));
            assert_eq!(gone.len(), 1);
            let e = MissingCapabilities { uid: 999, missing: gone, needed: SENSOR }.to_string();
            assert!(e.contains(&format!("without {} ({})", n.cap.1, n.why)), "{e}");
            assert!(e.contains("uid 999") && e.contains("must run as root"), "{e}");
        }
    }

    #[test]
    fn broader_capabilities_stand_in_for_the_narrow_ones() {
        // Root's full set, and kernels before 5.8 (no CAP_BPF, CAP_PERFMON, CAP_CHECKPOINT_RESTORE).
        assert!(missing(SENSOR, u64::MAX).is_empty());
        assert!(missing(SENSOR, set(&[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE])).is_empty());
        assert_eq!(missing(PROBES, 0).len(), 3);
    }

    #[test]
    fn cap_eff_is_read_from_the_status_file() {
        let status = "Name:\tmodelwatch\nCapInh:\t0000000000000000\nCapEff:\t000001c000080004\n";
        assert_eq!(
            parse_cap_eff(status),
            set(&[CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF, CAP_CHECKPOINT_RESTORE])
        );
        assert_eq!(parse_cap_eff("garbage"), 0);
    }
}
