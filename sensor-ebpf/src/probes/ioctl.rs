//! ioctl(2) on watched accelerator devices: counted per (tgid, device, command) in the kernel.
//! Processes that hold no watched device leave after one map lookup. Also the one ioctl that
//! opens a file: XFS's open-by-handle, whose fds write without timestamps.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};

use super::syscall_arg;
use crate::{
    file::{count_ioctl, note_invisible_writer},
    kernel::{file_from_fd, self_tgid},
    maps::PROC_DEVICES,
};

/// `_IOWR('X', 107, struct xfs_fsop_handlereq)` on 64-bit: XFS_IOC_OPEN_BY_HANDLE.
const XFS_IOC_OPEN_BY_HANDLE: u32 = 0xc038_586b;

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let cmd = syscall_arg(&ctx, 1) as u32;
    if cmd == XFS_IOC_OPEN_BY_HANDLE {
        note_invisible_writer(i64::from(syscall_arg(&ctx, 0) as i64 as i32), syscall_arg(&ctx, 2));
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The one lookup every unwatched ioctl pays: does this process hold a watched device?
    if PROC_DEVICES.get_ptr(tgid).is_none() || tgid == self_tgid() {
        return 0;
    }
    let fd = i64::from(syscall_arg(&ctx, 0) as i64 as i32);
    let Ok(file) = file_from_fd(fd) else {
        return 0;
    };
    count_ioctl(file, fd, cmd, tgid);
    0
}
