//! Facts about the machine the sensor runs on, and the conversion of kernel boot-time stamps
//! to UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proto::v1::Host;

/// The host block of every event.
pub fn host_info() -> Host {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    Host {
        host_id: read("/etc/machine-id"),
        hostname: hostname(),
        boot_id: boot_id(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: read("/proc/sys/kernel/osrelease"),
    }
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// `CLOCK_BOOTTIME` now, in nanoseconds (the clock of the kernel's event stamps).
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Converts `CLOCK_BOOTTIME` stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Wall-clock time at boot, ns since the epoch.
    boot_wall_ns: u64,
}

impl BootClock {
    pub fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Self { boot_wall_ns: wall.saturating_sub(boottime_ns()) }
    }

    pub fn to_system_time(&self, boottime_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.boot_wall_ns.saturating_add(boottime_ns))
    }

    pub fn to_timestamp(&self, boottime_ns: u64) -> pbjson_types::Timestamp {
        timestamp(self.to_system_time(boottime_ns))
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// Clock ticks per second of /proc/<pid>/stat times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}
