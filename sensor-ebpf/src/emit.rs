//! Record headers and the one place records enter the ring buffer, so every record is counted
//! as produced or dropped.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_ktime_get_boot_ns, generated::bpf_ringbuf_output,
};
use sensor_ebpf::{EventHeader, EventKind, stat};

use crate::{
    kernel::{current_task, leader_start_boottime},
    maps::{EVENTS, count},
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
