//! io_uring: a side door to files that is not a syscall of the open family. Every completion
//! passes the `io_uring:io_uring_complete` tracepoint, in the submitting process's thread group
//! (inline, from its task work, or from one of its io-wq workers, which share its file table).
//! Completed opens are reported like syscall opens (no requested name: the kernel freed its copy
//! before the completion); completed reads of model files are counted per (process, file).

use aya_ebpf::{EbpfContext as _, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use sensor_ebpf::{io_uring_op as op, stat, syscall};

use crate::{
    file::{count_read, opened},
    kernel::{ReadError, Window, config, file_from_fd, off, read, read_ptr, self_tgid},
    maps::{PendingOpen, count},
};

/// Bytes of `struct io_kiocb` copied at once: the file pointer and the opcode.
const REQ_WINDOW: usize = 16;

/// `IORING_FILE_INDEX_ALLOC`: the kernel picks the fixed slot and returns it as the result.
const FILE_INDEX_ALLOC: u32 = u32::MAX;
/// Low bits of `io_rsrc_node.file_ptr` that are flags, not pointer (FFS_NOWAIT, FFS_ISREG).
const FFS_MASK: u64 = 3;

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == self_tgid() {
        return 0;
    }
    let (req, res): (u64, i32) = (record(&ctx, REQ_AT), record(&ctx, RES_AT));
    // Auxiliary completions (no request) and failures open and read nothing.
    if req == 0 || res < 0 {
        return 0;
    }
    let req = req as *const u8;
    // One copy for the opcode and the file pointer (next to each other at the start of
    // io_kiocb; the window reads them separately on a layout where they are not).
    let Ok(head) = Window::<REQ_WINDOW>::read(req) else {
        count(stat::READ_FAILED, 1);
        return 0;
    };
    let Ok(opcode) = head.get::<u8>(off!(io_kiocb_opcode)) else {
        count(stat::READ_FAILED, 1);
        return 0;
    };
    match opcode {
        op::OPENAT | op::OPENAT2 => {
            on_open(record::<u64>(&ctx, CTX_AT) as *const u8, req, res);
        }
        op::READ | op::READV | op::READ_FIXED | op::READ_MULTISHOT if res > 0 => {
            if let Ok(file) = head.ptr(off!(io_kiocb_file)) {
                count_read(file, res as u64, tgid, sensor_ebpf::read_via::IO_URING);
            }
        }
        _ => {}
    }
    0
}

/// Offsets of `ctx`, `req` and `res` in the tracepoint's record, as they have been since 5.19
/// (the collector checks the record's tracefs format and does not attach where they differ):
/// the verifier accepts context loads at constant offsets only, and a load is a nanosecond
/// where a helper call is tens.
const CTX_AT: usize = 8;
const REQ_AT: usize = 16;
const RES_AT: usize = 32;

#[inline(always)]
fn record<T: Copy>(ctx: &TracePointContext, at: usize) -> T {
    // SAFETY: inside the record, whose layout the collector checked before attaching.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(at).cast::<T>()) }
}

#[inline(always)]
fn on_open(ring: *const u8, req: *const u8, res: i32) {
    let cmd = req.wrapping_add(off!(io_kiocb_cmd));
    let (Ok(slot), Ok(flags)) = (read::<u32>(cmd, off!(io_open_file_slot)), read::<u64>(cmd, off!(io_open_how_flags)))
    else {
        count(stat::READ_FAILED, 1);
        return;
    };
    // file_slot 0: an fd in the process's table; otherwise the slot + 1 in the ring's own
    // file table (a fixed file), or "allocate one" with the slot as the result.
    let (file, fd) = if slot == 0 {
        (file_from_fd(i64::from(res)), i64::from(res))
    } else {
        let index = if slot == FILE_INDEX_ALLOC { res as u32 } else { slot - 1 };
        (fixed_file(ring, index), -1)
    };
    let Ok(file) = file else {
        count(stat::IO_URING_UNRESOLVED, 1);
        return;
    };
    opened(file, fd, &PendingOpen { filename: 0, flags: flags as u32, syscall: syscall::IO_URING });
}

/// `ring->file_table.data.nodes[index]`'s file, where this kernel's layout is known.
#[inline(always)]
fn fixed_file(ring: *const u8, index: u32) -> Result<*const u8, ReadError> {
    if config!(io_uring_fixed) == 0 || ring.is_null() {
        return Err(ReadError);
    }
    let nr: u32 = read(ring, off!(ring_files_nr))?;
    if index >= nr {
        return Err(ReadError);
    }
    let nodes = read_ptr(ring, off!(ring_files_nodes))?;
    let node = read_ptr(nodes, (index as usize) * size_of::<u64>())?;
    let ptr: u64 = read(node, off!(rsrc_node_file_ptr))?;
    let file = (ptr & !FFS_MASK) as *const u8;
    if file.is_null() { Err(ReadError) } else { Ok(file) }
}
