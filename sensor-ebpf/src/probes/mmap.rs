//! mmap(2): file-backed mappings are judged at sys_enter (fd → file), reported at sys_exit with
//! the returned address.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use super::{syscall_arg, syscall_ret};
use crate::{
    file::{emit_mmap, inspect, mmap_reasons},
    kernel::{current_task, file_from_fd, self_tgid},
    maps::{MMAP_SCRATCH, PENDING_MMAPS, PendingMmap, count},
};

const MAP_ANONYMOUS: u64 = 0x20;

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let flags = syscall_arg(&ctx, 3);
    let fd = syscall_arg(&ctx, 4) as i64 as i32;
    if flags & MAP_ANONYMOUS != 0 || fd < 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == self_tgid() {
        return 0;
    }
    let Ok(file) = file_from_fd(current_task(), fd as i64) else {
        return 0;
    };
    let Ok(facts) = inspect(file) else {
        count(sensor_ebpf::stat::READ_FAILED, 1);
        return 0;
    };
    let len = syscall_arg(&ctx, 1);
    let prot = syscall_arg(&ctx, 2) as u32;
    let reasons = mmap_reasons(file, &facts, len, prot);
    if reasons == 0 {
        return 0;
    }
    let p = PendingMmap {
        file: file as u64,
        ino: facts.ino,
        size: facts.size,
        len,
        offset: syscall_arg(&ctx, 5),
        dev: facts.dev,
        prot,
        flags: flags as u32,
        fd,
        reasons,
        _pad: 0,
    };
    if PENDING_MMAPS.insert(pid_tgid, p, 0).is_err() {
        count(sensor_ebpf::stat::PENDING_FULL, 1);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = PENDING_MMAPS.get_ptr(pid_tgid) else {
        return 0;
    };
    let pending = unsafe { *p };
    let _ = PENDING_MMAPS.remove(pid_tgid);
    let addr = syscall_ret(&ctx);
    // Errors come back as -4095..-1.
    if (-4095..0).contains(&addr) {
        return 0;
    }
    let Some(rec) = MMAP_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    emit_mmap(rec, &pending, addr as u64);
    0
}
