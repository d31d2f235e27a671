//! ioctl(2) on watched accelerator devices: counted per (tgid, device, command) in the kernel.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use super::syscall_arg;
use crate::{
    file::count_ioctl,
    kernel::{current_task, file_from_fd, self_tgid},
};

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == self_tgid() {
        return 0;
    }
    let fd = syscall_arg(&ctx, 0) as i64 as i32 as i64;
    let Ok(file) = file_from_fd(current_task(), fd) else {
        return 0;
    };
    count_ioctl(file, fd, syscall_arg(&ctx, 1) as u32, tgid);
    0
}
