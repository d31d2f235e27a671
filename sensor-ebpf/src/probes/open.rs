//! open(2), openat(2), openat2(2), creat(2), open_by_handle_at(2): at sys_exit the new fd is
//! resolved to its `struct file`. The arguments come from the task's saved user registers where
//! the architecture keeps them intact (x86_64); elsewhere the sys_enter programs stash them.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use sensor_ebpf::syscall;

use super::{syscall_arg as tp_arg, syscall_nr, syscall_ret};
use crate::{
    file::opened,
    kernel::{SyscallArgs, args_from_regs, config, file_from_fd, self_tgid},
    maps::{PENDING_OPENS, PendingOpen, count},
};

const O_CREAT: u32 = 0o100;
const O_WRONLY: u32 = 0o1;
const O_TRUNC: u32 = 0o1000;

#[inline(always)]
fn stash(filename: u64, flags: u32, which: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == self_tgid() {
        return;
    }
    let p = PendingOpen { filename, flags, syscall: which };
    if PENDING_OPENS.insert(pid_tgid, p, 0).is_err() {
        count(sensor_ebpf::stat::PENDING_FULL, 1);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    stash(tp_arg(&ctx, 1), tp_arg(&ctx, 2) as u32, syscall::OPENAT);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // openat2(dfd, filename, struct open_how *how, size): flags are how->flags (u64, first).
    let how = tp_arg(&ctx, 2) as *const u64;
    let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how) }.unwrap_or(0);
    stash(tp_arg(&ctx, 1), flags as u32, syscall::OPENAT2);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    stash(tp_arg(&ctx, 0), tp_arg(&ctx, 1) as u32, syscall::OPEN);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    stash(tp_arg(&ctx, 0), O_CREAT | O_WRONLY | O_TRUNC, syscall::CREAT);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_open_by_handle_at")]
pub fn sys_enter_open_by_handle_at(ctx: TracePointContext) -> u32 {
    // open_by_handle_at(mount_fd, handle, flags): no name to capture.
    stash(0, tp_arg(&ctx, 2) as u32, syscall::OPEN_BY_HANDLE_AT);
    0
}

/// One program for the exits of all five open syscalls (the collector attaches it to each):
/// the verifier checks the path walk once instead of four times, and which syscall it was is
/// already in the stashed arguments.
#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_open_any(ctx: TracePointContext) -> u32 {
    on_exit(&ctx);
    0
}

/// The arguments of the open that is returning: from the saved registers, or from the stash.
#[inline(always)]
fn pending_args(ctx: &TracePointContext, pid_tgid: u64) -> Option<PendingOpen> {
    if !args_from_regs() {
        let p = unsafe { *PENDING_OPENS.get_ptr(pid_tgid)? };
        let _ = PENDING_OPENS.remove(pid_tgid);
        return Some(p);
    }
    let nr = syscall_nr(ctx) as u32;
    let a = SyscallArgs::read().ok()?;
    let (filename, flags, which) = if nr == config!(nr_openat) {
        (a.get::<1>(), a.get::<2>() as u32, syscall::OPENAT)
    } else if nr == config!(nr_openat2) {
        let how = a.get::<2>() as *const u64;
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how) }.unwrap_or(0);
        (a.get::<1>(), flags as u32, syscall::OPENAT2)
    } else if nr == config!(nr_open) {
        (a.get::<0>(), a.get::<1>() as u32, syscall::OPEN)
    } else if nr == config!(nr_creat) {
        (a.get::<0>(), O_CREAT | O_WRONLY | O_TRUNC, syscall::CREAT)
    } else if nr == config!(nr_open_by_handle_at) {
        (0, a.get::<2>() as u32, syscall::OPEN_BY_HANDLE_AT)
    } else {
        return None;
    };
    Some(PendingOpen { filename, flags, syscall: which })
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd = syscall_ret(ctx);
    if args_from_regs() && (fd < 0 || (pid_tgid >> 32) as u32 == self_tgid()) {
        return;
    }
    let Some(pending) = pending_args(ctx, pid_tgid) else {
        return;
    };
    if fd < 0 {
        return;
    }
    let Ok(file) = file_from_fd(fd) else {
        count(sensor_ebpf::stat::READ_FAILED, 1);
        return;
    };
    opened(file, fd, &pending);
}
