//! Empty programs on exactly the attach points of the real probes. `cargo xtask bench` loads
//! them to measure what the kernel charges for having a BPF program on these tracepoints at
//! all, so the cost of modelwatch's own logic can be shown separately.
#![no_std]
#![no_main]

mod runtime;

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

macro_rules! empty_tp {
    ($($name:ident),* $(,)?) => {
        $(
            #[tracepoint]
            pub fn $name(_ctx: TracePointContext) -> u32 {
                0
            }
        )*
    };
}

empty_tp!(
    sys_enter_openat,
    sys_enter_openat2,
    sys_enter_open,
    sys_enter_creat,
    sys_enter_open_by_handle_at,
    sys_exit_open_any,
    sys_enter_mmap,
    sys_exit_mmap,
    sys_enter_ioctl,
    sched_process_exec,
    sched_process_exit,
    io_uring_complete,
    sys_exit_read_any,
);

#[raw_tracepoint]
pub fn sched_process_fork(_ctx: RawTracePointContext) -> u32 {
    0
}
