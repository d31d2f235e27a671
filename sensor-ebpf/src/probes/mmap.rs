//! mmap(2): file-backed mappings of large files, of inodes the collector marked as models, and
//! executable mappings of inference-runtime libraries are reported at sys_exit with the
//! returned address. Arguments come from the saved registers (x86_64) or, elsewhere, from a
//! stash filled at sys_enter.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};

use super::{syscall_arg as tp_arg, syscall_ret};
use sensor_ebpf::{reason, runtime};

use crate::{
    emit::admit_file_record,
    file::{content_flags, emit_mmap, inspect, invalidate, mmap_reasons, note_runtime},
    kernel::{SyscallArgs, args_from_regs, file_from_fd, self_tgid},
    maps::{MMAP_SCRATCH, PENDING_MMAPS, PendingMmap, count},
};

const MAP_ANONYMOUS: u64 = 0x20;
const MAP_SHARED: u64 = 0x01;
const PROT_WRITE: u64 = 0x2;

struct MmapArgs {
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    off: u64,
}

/// Judges a mapping; `Some` when it is to be reported.
#[inline(always)]
fn judge(a: &MmapArgs) -> Option<PendingMmap> {
    let fd = a.fd as i64 as i32;
    if a.flags & MAP_ANONYMOUS != 0 || fd < 0 {
        return None;
    }
    let file = file_from_fd(i64::from(fd)).ok()?;
    let Ok(facts) = inspect(file) else {
        count(sensor_ebpf::stat::READ_FAILED, 1);
        return None;
    };
    // A shared writable mapping is a writer (its fd was opened for writing, which dropped the
    // mark already, unless the fd came from somewhere the probes do not see).
    if a.flags & MAP_SHARED != 0 && a.prot & PROT_WRITE != 0 {
        invalidate(&facts);
    }
    let mut mark = 0;
    let reasons = mmap_reasons(&facts, a.len, a.prot as u32, &mut mark);
    if reasons == 0 {
        return None;
    }
    Some(PendingMmap {
        file: file as u64,
        ino: facts.ino,
        size: facts.size,
        len: a.len,
        offset: a.off,
        dev: facts.dev(),
        prot: a.prot as u32,
        flags: a.flags as u32,
        fd,
        reasons,
        ctime_nsec: facts.ctime_nsec,
        ctime_sec: facts.ctime_sec,
        mark,
        content: content_flags(&facts, false),
    })
}

/// Only attached where arguments cannot be read at exit.
#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == self_tgid() {
        return 0;
    }
    let a = MmapArgs {
        len: tp_arg(&ctx, 1),
        prot: tp_arg(&ctx, 2),
        flags: tp_arg(&ctx, 3),
        fd: tp_arg(&ctx, 4),
        off: tp_arg(&ctx, 5),
    };
    if let Some(p) = judge(&a)
        && PENDING_MMAPS.insert(pid_tgid, p, 0).is_err()
    {
        count(sensor_ebpf::stat::PENDING_FULL, 1);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let addr = syscall_ret(&ctx);
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = if args_from_regs() {
        // Errors come back as -4095..-1.
        if (-4095..0).contains(&addr) || (pid_tgid >> 32) as u32 == self_tgid() {
            return 0;
        }
        let Ok(a) = SyscallArgs::read() else {
            return 0;
        };
        let args = MmapArgs {
            len: a.get::<1>(),
            prot: a.get::<2>(),
            flags: a.get::<3>(),
            fd: a.get::<4>(),
            off: a.get::<5>(),
        };
        match judge(&args) {
            Some(p) => p,
            None => return 0,
        }
    } else {
        let Some(p) = PENDING_MMAPS.get_ptr(pid_tgid) else {
            return 0;
        };
        let p = unsafe { *p };
        let _ = PENDING_MMAPS.remove(pid_tgid);
        if (-4095..0).contains(&addr) {
            return 0;
        }
        p
    };
    let tgid = (pid_tgid >> 32) as u32;
    if pending.reasons & reason::RUNTIME_LIBRARY != 0 {
        // From now on the files this process opens are identification candidates.
        note_runtime(tgid, runtime::LIBRARY);
    }
    if !admit_file_record(tgid) {
        return 0;
    }
    let Some(rec) = MMAP_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    emit_mmap(rec, &pending, addr as u64);
    0
}
