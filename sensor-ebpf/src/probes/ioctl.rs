//! ioctl(2) on watched accelerator devices: counted per (tgid, device, command) in the kernel.
//! Processes that hold no watched device leave after one map lookup.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};

use super::syscall_arg;
use crate::{
    file::count_ioctl,
    kernel::{file_from_fd, self_tgid},
    maps::PROC_DEVICES,
};

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The one lookup every unwatched ioctl pays: does this process hold a watched device?
    if PROC_DEVICES.get_ptr(tgid).is_none() || tgid == self_tgid() {
        return 0;
    }
    let fd = i64::from(syscall_arg(&ctx, 0) as i64 as i32);
    let Ok(file) = file_from_fd(fd) else {
        return 0;
    };
    count_ioctl(file, fd, syscall_arg(&ctx, 1) as u32, tgid);
    0
}
