//! Record headers and the one place records enter the ring buffer, so every record is counted
//! as produced or dropped.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_ktime_get_boot_ns, bpf_ktime_get_ns, generated::bpf_ringbuf_output,
};
use sensor_ebpf::{EventHeader, EventKind, RateState, stat};

use crate::{
    kernel::{config, current_task, leader_start_boottime},
    maps::{EVENTS, RATE, count},
};

/// Fills `h` for the current task. `size` is set by [`output`].
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind as u16;
    h._pad0 = 0;
    h.size = 0;
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.start_boottime_ns = leader_start_boottime(current_task());
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// The ring's fair share: may process `tgid` send one more file record (open, mmap)? A GCRA
/// bucket per process: records are spaced `rate_interval_ns` apart on average, and a process
/// may run `rate_burst_ns` ahead of that. Beyond, the record is dropped and counted, globally
/// and against the process, so one process flooding opens cannot crowd everyone else's out of
/// the ring. Races between CPUs may admit a few records more than the limit, never fewer.
#[inline(always)]
pub fn admit_file_record(tgid: u32) -> bool {
    mw_admit(u64::from(tgid)) != 0
}

/// A global BPF function, verified once, whatever state its callers are in.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_admit(tgid: u64) -> u64 {
    let tgid = tgid as u32;
    let interval = config!(rate_interval_ns);
    if interval == 0 {
        return 1;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(s) = RATE.get_ptr_mut(tgid) else {
        let fresh = RateState { tat_ns: now + interval, dropped: 0 };
        if RATE.insert(tgid, fresh, 0).is_err() {
            // No room to hold the process to its share: let it through rather than lose it.
            count(stat::RATE_MAP_FULL, 1);
        }
        return 1;
    };
    // SAFETY: a pointer into the map's value, valid for this program run.
    let s = unsafe { &mut *s };
    let tat = if s.tat_ns > now { s.tat_ns } else { now };
    if tat - now > config!(rate_burst_ns) {
        s.dropped += 1;
        count(stat::RATE_LIMITED, 1);
        return 0;
    }
    s.tat_ns = tat + interval;
    1
}

/// Copies `len` bytes at `record` (which starts with a header) into the ring buffer and counts
/// the outcome. `max` is the size of the memory behind `record`; `len` is clamped to it.
#[inline(always)]
pub fn output(kind: EventKind, record: *mut u8, len: usize, max: usize) {
    let mut len = len;
    if len > max {
        len = max;
    }
    unsafe { (*(record as *mut EventHeader)).size = len as u32 };
    let ret = unsafe { bpf_ringbuf_output((&raw const EVENTS).cast_mut().cast(), record.cast(), len as u64, 0) };
    if ret == 0 {
        count(stat::produced(kind), 1);
    } else {
        count(stat::dropped(kind), 1);
    }
}
