//! read(2) and its kin (pread64, readv, preadv, preadv2): how much of a model file a process
//! read. Engines that read their model into memory (ONNX Runtime, llama.cpp `--no-mmap`,
//! `torch.load`) map nothing; what they read is their evidence of a loaded model, as a mapping
//! is for the others.
//!
//! Every read of every process passes here, so the common case is one lookup: only processes
//! that opened a file the probes reported (`READERS`) go on to the file behind the descriptor,
//! and only reads of model candidates are counted (`crate::file::count_read`).

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use sensor_ebpf::read_via;

use super::syscall_ret;
use crate::{
    file::count_read,
    kernel::{SyscallArgs, args_from_regs, file_from_fd},
    maps::READERS,
};

#[tracepoint(category = "syscalls", name = "sys_exit_read")]
pub fn sys_exit_read_any(ctx: TracePointContext) -> u32 {
    let ret = syscall_ret(&ctx);
    if ret <= 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The collector never opens files the probes report, so it is never in READERS.
    if READERS.get_ptr(tgid).is_none() || !args_from_regs() {
        return 0;
    }
    let Ok(args) = SyscallArgs::read() else { return 0 };
    let fd = args.get::<0>() as i64 as i32;
    if fd < 0 {
        return 0;
    }
    if let Ok(file) = file_from_fd(i64::from(fd)) {
        count_read(file, ret as u64, tgid, read_via::SYSCALL);
    }
    0
}
