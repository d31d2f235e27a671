//! Process lifecycle: exec, fork (processes only, not threads) and exit of the last thread, so
//! the collector's process table stays exact without polling /proc.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use sensor_ebpf::{ARGS_MAX, EventKind, FILENAME_MAX, ProcessExitEvent, ProcessForkEvent, path_flag, stat};

use crate::{
    emit::{fill_header, output},
    file::{runtime_fork, runtime_gone},
    kernel::{ReadError, config, current_task, off, parent_tgid, read, read_ptr, self_tgid},
    maps::{EXEC_SCRATCH, ExecRecord, PROC_DEVICES, RATE, READERS, count},
    path::walk,
};

#[inline(always)]
fn is_self() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == self_tgid()
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if is_self() {
        return 0;
    }
    // The old program's runtime libraries are gone; a runtime executable is added back by the
    // collector.
    runtime_gone((bpf_get_current_pid_tgid() >> 32) as u32);
    let Some(rec) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let r = unsafe { &mut *rec };
    fill_header(&mut r.ev.header, EventKind::ProcessExec);
    let task = current_task();
    r.ev.ppid = parent_tgid(task);
    r.ev.old_pid = unsafe { ctx.read_at::<u32>(16) }.unwrap_or(0);
    let tail = r.tail.as_mut_ptr();

    // argv lives at the top of the new stack, between mm->arg_start and mm->arg_end.
    let mut args_len = 0usize;
    r.ev.args_truncated = 0;
    let mm = read_ptr(task, off!(task_mm));
    if let Ok(mm) = mm {
        let start: u64 = read(mm, off!(mm_arg_start)).unwrap_or(0);
        let end: u64 = read(mm, off!(mm_arg_end)).unwrap_or(0);
        if end > start {
            let mut n = (end - start) as usize;
            if n > ARGS_MAX {
                n = ARGS_MAX;
                r.ev.args_truncated = 1;
            }
            if unsafe { bpf_probe_read_user(tail.cast(), n as u32, start as *const _) } == 0 {
                args_len = n;
            }
        }
    }
    r.ev.args_len = args_len as u32;

    // The filename as passed to exec, from the tracepoint's __data_loc field.
    let loc = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
    let fname = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);
    let at = args_len & (ARGS_MAX * 2 - 1);
    let n = unsafe { bpf_probe_read_kernel_str(tail.wrapping_add(at).cast(), FILENAME_MAX as u32, fname.cast()) };
    let filename_len = if n > 0 { (n as usize) & (FILENAME_MAX * 2 - 1) } else { 0 };
    r.ev.filename_len = filename_len as u32;

    // The executable's absolute path, from mm->exe_file.
    let start = args_len + filename_len;
    let walked = match mm.and_then(|mm| read_ptr(mm, off!(mm_exe_file))) {
        Ok(exe) => walk(exe.wrapping_add(off!(file_f_path)), tail, start),
        Err(_) => crate::path::Walked { len: 0, flags: path_flag::TRUNCATED },
    };
    if walked.flags & path_flag::TRUNCATED != 0 {
        count(stat::PATH_TRUNCATED, 1);
    }
    r.ev.path_len = walked.len;
    r.ev.path_flags = walked.flags;
    r.ev._pad0 = 0;
    let len = size_of_val(&r.ev) + start + walked.len as usize;
    output(EventKind::ProcessExec, rec.cast(), len, size_of::<ExecRecord>());
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    if is_self() {
        return 0;
    }
    let child: *const u8 = ctx.arg(1);
    let (Ok(pid), Ok(tgid)) = (read::<i32>(child, off!(task_pid)), read::<i32>(child, off!(task_tgid))) else {
        count(stat::READ_FAILED, 1);
        return 0;
    };
    if pid != tgid {
        return 0; // a new thread, not a new process
    }
    // Device fds are inherited: so is the ioctl watch.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PROC_DEVICES.get_ptr(parent).is_some() && PROC_DEVICES.insert(tgid as u32, 1u32, 0).is_err() {
        count(stat::IOCTL_GATE_FULL, 1);
    }
    runtime_fork(parent, tgid as u32);
    let mut ev = ProcessForkEvent::default();
    fill_header(&mut ev.header, EventKind::ProcessFork);
    ev.child_tgid = tgid as u32;
    ev.child_start_boottime_ns = read(child, off!(task_start_boottime)).unwrap_or(0);
    let size = size_of::<ProcessForkEvent>();
    output(EventKind::ProcessFork, (&raw mut ev).cast(), size, size);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if is_self() {
        return 0;
    }
    let task = current_task();
    let group_dead = match config!(exit_group_dead_off) {
        // Kernels before 6.16: signal->live read after the fact. Two last threads exiting
        // together can both see zero; the collector drops the second record.
        0 => read_ptr(task, off!(task_signal))
            .and_then(|signal| read::<i32>(signal, off!(signal_live)))
            .map(|live| live == 0),
        // Exact: the result of the decrement that took signal->live to zero.
        at => unsafe { ctx.read_at::<u8>(at as usize) }.map(|dead| dead != 0).map_err(|_| ReadError),
    };
    let Ok(group_dead) = group_dead else {
        count(stat::READ_FAILED, 1);
        return 0;
    };
    if !group_dead {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = PROC_DEVICES.remove(tgid);
    let _ = READERS.remove(tgid);
    runtime_gone(tgid);
    // A process that was never held back leaves nothing to report; the others' drops stay
    // until the collector has reported them.
    if let Some(r) = RATE.get_ptr(tgid)
        && unsafe { (*r).dropped } == 0
    {
        let _ = RATE.remove(tgid);
    }
    let mut ev = ProcessExitEvent::default();
    fill_header(&mut ev.header, EventKind::ProcessExit);
    ev.exit_code = read::<i32>(task, off!(task_exit_code)).unwrap_or(0) as u32;
    ev.ppid = parent_tgid(task);
    let size = size_of::<ProcessExitEvent>();
    output(EventKind::ProcessExit, (&raw mut ev).cast(), size, size);
    0
}
