//! Tracepoint entry points, one file per topic. Each is a thin wrapper that turns the
//! tracepoint's arguments into a `struct file *` and plain values, then calls `crate::file`.

mod ioctl;
mod mmap;
mod open;
mod process;

use aya_ebpf::programs::TracePointContext;

/// Offset of syscall argument `n` in a `syscalls/sys_enter_*` record (after the common header
/// and `__syscall_nr`).
#[inline(always)]
pub fn syscall_arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(16 + 8 * n) }.unwrap_or(0)
}

/// The return value in a `syscalls/sys_exit_*` record.
#[inline(always)]
pub fn syscall_ret(ctx: &TracePointContext) -> i64 {
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}
