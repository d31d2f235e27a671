//! Tracepoint entry points, one file per topic. Each is a thin wrapper that turns the
//! tracepoint's arguments into a `struct file *` and plain values, then calls `crate::file`.

mod io_uring;
mod ioctl;
mod mmap;
mod open;
mod process;
mod read;

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};

/// Syscall argument `n` in a `syscalls/sys_enter_*` record (after the common header and
/// `__syscall_nr`). The record is the program's context: a direct load, no helper call.
#[inline(always)]
pub fn syscall_arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(16 + 8 * n).cast::<u64>()) }
}

/// The return value in a `syscalls/sys_exit_*` record.
#[inline(always)]
pub fn syscall_ret(ctx: &TracePointContext) -> i64 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(16).cast::<i64>()) }
}

/// The syscall number in a `syscalls/sys_{enter,exit}_*` record.
#[inline(always)]
pub fn syscall_nr(ctx: &TracePointContext) -> i32 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(8).cast::<i32>()) }
}
