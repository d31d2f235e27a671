//! Per-`struct file` logic: inspect an open file, decide whether it is reportable, fill the
//! records, count accelerator ioctls. Every function takes the `struct file *` and plain
//! values, never a tracepoint context, so an LSM/fentry backend that receives the file pointer
//! directly can call the same code.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    },
    maps::lpm_trie::Key,
};
use sensor_ebpf::{
    DeviceIoctlEvent, DeviceUseKey, EXT_MAX, EventKind, ExtKey, FileId, IoctlKey, LIB_PREFIX_MAX, REQUESTED_NAME_MAX,
    ReadKey, RuntimeProc, TAIL_MAX, content, mark, path_flag, reason, runtime, stat,
};

use crate::{
    emit::{admit_file_record, fill_header, output},
    kernel::{ReadError, Window, config, file_from_fd, off, read, read_ptr, size_threshold},
    maps::{
        DEVICE_SEEN, DIR_VERDICT, EXTENSIONS, INODE_MARKS, IOCTL_COUNTS, MODEL_DIRS, MODEL_DIRS_PRESENT, MODEL_READS,
        MmapRecord, NOCMTIME, NOCMTIME_PRESENT, OPEN_SCRATCH, OpenRecord, PROC_DEVICES, PendingMmap, PendingOpen,
        READ_SKIP, READERS, RUNTIME_LIBS, RUNTIME_PRESENT, RUNTIME_PROCS, WATCHED_DEVICES, count,
    },
    path::walk,
};

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const PROT_EXEC: u32 = 4;
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_TRUNC: u32 = 0o1000;
/// Multigrain timestamps (6.13+) keep a "ctime was queried" flag in the top bit of
/// `i_ctime_nsec`; it is no part of the time.
const I_CTIME_QUERIED: u32 = 1 << 31;
/// Ancestors inspected when looking for a configured model directory.
const MODEL_DIR_DEPTH: u32 = 16;

/// What the probes need to know about an open file. Read with two window copies (the start
/// of `struct file` and of `struct inode`); the superblock's device is read only when needed.
/// `repr(C)`: global BPF functions take it by pointer, described by its BTF.
#[repr(C)]
pub struct FileFacts {
    pub inode: *const u8,
    pub dentry: *const u8,
    sb: *const u8,
    pub mode: u32,
    pub ino: u64,
    pub size: u64,
    pub rdev: u32,
    pub ctime_nsec: u32,
    pub ctime_sec: i64,
}

impl FileFacts {
    #[inline(always)]
    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    #[inline(always)]
    pub fn is_char_device(&self) -> bool {
        self.mode & S_IFMT == S_IFCHR
    }
    /// The superblock's device (kernel encoding).
    #[inline(always)]
    pub fn dev(&self) -> u32 {
        read(self.sb, off!(sb_s_dev)).unwrap_or(0)
    }
    #[inline(always)]
    pub fn id(&self) -> FileId {
        FileId { dev: self.dev(), _pad0: 0, ino: self.ino }
    }
    /// Open file descriptions with write access to the inode now (negative: writes denied,
    /// as for a running executable). A failed read counts as a writer: nothing is vouched for.
    #[inline(always)]
    fn writers(&self) -> i32 {
        read(self.inode, off!(inode_i_writecount)).unwrap_or(1)
    }
}

/// Bytes of `struct file` copied at once, from the lower of f_inode and f_path.dentry: they
/// are within 48 bytes of each other in 6.x layouts (f_path first up to 6.11, f_inode first
/// since). A layout where they are further apart still works, with one extra read.
const FILE_WINDOW: usize = 48;
/// Bytes of `struct inode` copied at once (mode, sb, ino, rdev, size, ctime).
const INODE_WINDOW: usize = 128;

/// Reads the facts of `file`.
#[inline(always)]
pub fn inspect(file: *const u8) -> Result<FileFacts, ReadError> {
    // Uninitialised on purpose: zeroing it would be a byte-wise memset call in BPF.
    let mut facts = core::mem::MaybeUninit::<FileFacts>::uninit();
    if inspect_into(file, facts.as_mut_ptr()) == 0 {
        // SAFETY: inspect_into wrote every field when it returned 0.
        Ok(unsafe { facts.assume_init() })
    } else {
        Err(ReadError)
    }
}

/// Not inlined, so its window copies live in a stack frame of their own; returns 0 on
/// success (a BPF function may not return a pointer into its stack, hence the out-parameter).
#[inline(never)]
fn inspect_into(file: *const u8, out: *mut FileFacts) -> i64 {
    let (inode_at, dentry_at) = (off!(file_f_inode), off!(file_f_path) + off!(path_dentry));
    let Ok(fw) = Window::<FILE_WINDOW>::read_from(file, inode_at.min(dentry_at)) else { return -1 };
    let (Ok(inode), Ok(dentry)) = (fw.ptr(inode_at), fw.ptr(dentry_at)) else {
        return -1;
    };
    let Ok(iw) = Window::<INODE_WINDOW>::read(inode) else { return -1 };
    let (Ok(mode), Ok(size), Ok(sb), Ok(ino), Ok(rdev)) = (
        iw.get::<u16>(off!(inode_i_mode)),
        iw.get::<i64>(off!(inode_i_size)),
        iw.ptr(off!(inode_i_sb)),
        iw.get::<u64>(off!(inode_i_ino)),
        iw.get::<u32>(off!(inode_i_rdev)),
    ) else {
        return -1;
    };
    let (Ok(ctime_sec), Ok(ctime_nsec)) =
        (iw.get::<i64>(off!(inode_i_ctime_sec)), iw.get::<u32>(off!(inode_i_ctime_nsec)))
    else {
        return -1;
    };
    let facts = FileFacts {
        inode,
        dentry,
        sb,
        mode: u32::from(mode),
        ino,
        size: if size < 0 { 0 } else { size as u64 },
        rdev,
        ctime_nsec: ctime_nsec & !I_CTIME_QUERIED,
        ctime_sec,
    };
    // SAFETY: out points to the caller's FileFacts slot.
    unsafe { out.write(facts) };
    0
}

/// The collector's mark still valid for this content version of the file, 0 for none. A mark
/// about another version (size or ctime differ) is left for the collector to replace. One
/// whose file has a writer now, or was written without timestamps, is dropped: the content
/// it vouched for may be gone, and a writer that closes later leaves no trace a later check
/// could see (coarse timestamps repeat within a tick, and writes through an already dirty
/// shared page change no timestamp at all).
///
/// `own_write`: the open being judged has write access itself (it counts among the writers,
/// and is judged by the verdict about the content it is about to change; the mark goes after).
#[inline(always)]
pub fn valid_mark(facts: &FileFacts, own_write: bool) -> u32 {
    mw_valid_mark(facts, u64::from(own_write)) as u32
}

/// A global BPF function, verified once (see [`mw_ext_known`]): the callers' many paths share
/// its map lookups and comparisons instead of multiplying them.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_valid_mark(facts: *const FileFacts, own_write: u64) -> u64 {
    if facts.is_null() {
        return 0;
    }
    // SAFETY: the caller's FileFacts on its stack.
    let facts = unsafe { &*facts };
    let id = facts.id();
    let Some(m) = INODE_MARKS.get_ptr(id) else { return 0 };
    let m = unsafe { *m };
    if m.size != facts.size || m.ctime_sec != facts.ctime_sec || m.ctime_nsec != facts.ctime_nsec {
        return 0;
    }
    if facts.writers() > own_write as i32 || written_invisibly(&id) {
        forget_mark(id);
        return 0;
    }
    u64::from(m.verdict)
}

/// Whether `id` was opened for writes that change no timestamp (or the record of those
/// overflowed, which counts for every inode).
#[inline(always)]
fn written_invisibly(id: &FileId) -> bool {
    match NOCMTIME_PRESENT.get(0).copied().unwrap_or(0) {
        0 => false,
        1 => NOCMTIME.get_ptr(*id).is_some(),
        _ => true,
    }
}

#[inline(always)]
fn forget_mark(id: FileId) {
    if INODE_MARKS.get_ptr(id).is_some() && INODE_MARKS.remove(id).is_ok() {
        count(stat::MARKS_INVALIDATED, 1);
    }
}

/// What a record says about the content version it describes ([`content`] bits).
#[inline(always)]
pub fn content_flags(facts: &FileFacts, own_write: bool) -> u32 {
    mw_content_flags(facts, u64::from(own_write)) as u32
}

/// A global BPF function, verified once (see [`mw_valid_mark`]).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_content_flags(facts: *const FileFacts, own_write: u64) -> u64 {
    if facts.is_null() {
        return 0;
    }
    // SAFETY: the caller's FileFacts on its stack.
    let facts = unsafe { &*facts };
    let mut flags = 0;
    if facts.is_regular() {
        if facts.writers() > own_write as i32 {
            flags |= content::WRITER;
        }
        if written_invisibly(&facts.id()) {
            flags |= content::NOCMTIME;
        }
    }
    u64::from(flags)
}

/// Whether open flags change the content (write access, or truncation).
#[inline(always)]
pub fn writes(flags: u32) -> bool {
    write_access(flags) || flags & O_TRUNC != 0
}

/// Whether an open with these flags counts among the inode's writers (`i_writecount`).
#[inline(always)]
fn write_access(flags: u32) -> bool {
    flags & O_ACCMODE != 0
}

/// An open with write access: whatever the collector concluded about the file's content no
/// longer holds.
#[inline(always)]
pub fn invalidate(facts: &FileFacts) {
    mw_invalidate(facts);
}

/// A global BPF function, verified once (see [`mw_valid_mark`]).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_invalidate(facts: *const FileFacts) -> u64 {
    if facts.is_null() {
        return 0;
    }
    // SAFETY: the caller's FileFacts on its stack.
    let facts = unsafe { &*facts };
    if facts.is_regular() {
        forget_mark(facts.id());
    }
    0
}

/// XFS_IOC_OPEN_BY_HANDLE hands out an fd whose writes change no timestamp (FMODE_NOCMTIME):
/// `req` is the caller's `struct xfs_fsop_handlereq`, `fd` the file the ioctl was issued on
/// (on the same filesystem as the handle's inode). The inode is remembered for good, and its
/// mark dropped. Noted at the ioctl's entry, whether or not the call then succeeds: a refused
/// call only costs that inode its marks.
#[inline(always)]
pub fn note_invisible_writer(fd: i64, req: u64) {
    // struct xfs_fsop_handlereq { u32 fd; void *path; u32 oflags; void *ihandle; u32 ihandlen; ... }
    // SAFETY: reads of user memory, checked by the helper.
    let fields = unsafe {
        (
            bpf_probe_read_user((req + 16) as *const u32),
            bpf_probe_read_user((req + 24) as *const u64),
            bpf_probe_read_user((req + 32) as *const u32),
        )
    };
    let (Ok(oflags), Ok(handle), Ok(handle_len)) = fields else {
        return;
    };
    // The handle: an 8-byte fsid, then struct xfs_fid { u16 len; u16 pad; u32 gen; u64 ino; }.
    if !writes(oflags) || handle_len < 24 {
        return;
    }
    let Ok(ino) = (unsafe { bpf_probe_read_user((handle + 16) as *const u64) }) else { return };
    let Ok(file) = file_from_fd(fd) else { return };
    let Ok(facts) = inspect(file) else { return };
    let id = FileId { dev: facts.dev(), _pad0: 0, ino };
    let overflow = NOCMTIME.insert(id, 1u8, 0).is_err();
    if overflow {
        count(stat::NOCMTIME_FULL, 1);
    }
    if let Some(p) = NOCMTIME_PRESENT.get_ptr_mut(0) {
        unsafe { *p = if overflow { 2 } else { (*p).max(1) } };
    }
    forget_mark(id);
}

/// Looks up the extension of the string in `buf[..n-1]` (`n` counts the NUL, as returned by the
/// `*_str` helpers).
#[inline(always)]
fn ext_known(buf: &[u8; EXT_MAX + 1], n: i64) -> bool {
    mw_ext_known(buf, n) != 0
}

/// A global BPF function: the verifier checks it once, on its own, instead of once per path
/// into every caller (the byte loops would otherwise multiply the caller's states).
/// Scans backwards from the end, so a typical name costs a few iterations.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_ext_known(buf: *const [u8; EXT_MAX + 1], n: i64) -> u64 {
    if buf.is_null() || n <= 1 {
        return 0;
    }
    let buf = unsafe { &*buf };
    let end = ((n - 1) as usize).min(EXT_MAX);
    let mut dot = usize::MAX;
    let mut i = end;
    while i > 0 {
        i -= 1;
        // SAFETY: i < end <= EXT_MAX < buf.len().
        let c = unsafe { *buf.get_unchecked(i) };
        if c == b'.' {
            dot = i;
            break;
        }
        if c == b'/' {
            return 0;
        }
    }
    if dot == usize::MAX || dot + 1 >= end {
        return 0;
    }
    // Zeroed as two words: a `[0u8; 16]` would become a byte-wise memset call.
    let mut key = [0u64; 2];
    let k = key.as_mut_ptr().cast::<u8>();
    let mut j = 0;
    while j < EXT_MAX - 1 {
        let idx = dot + 1 + j;
        if idx >= end {
            break;
        }
        // The barrier keeps the mask on the register the verifier bounds-checks.
        let idx = core::hint::black_box(idx) & (EXT_MAX - 1);
        // SAFETY: idx < EXT_MAX < buf.len(); j < EXT_MAX - 1 < 16.
        let c = unsafe { *buf.get_unchecked(idx) };
        unsafe { *k.add(j) = if c.is_ascii_uppercase() { c + 32 } else { c } };
        j += 1;
    }
    let key: ExtKey = unsafe { core::mem::transmute(key) };
    u64::from(EXTENSIONS.get_ptr(key).is_some())
}

/// Bytes of `struct dentry` copied at once (d_parent, d_name, d_inode).
const DENTRY_WINDOW: usize = 56;

/// The last bytes of a name (at most [`EXT_MAX`]), NUL-terminated: all an extension check
/// needs. 8-byte aligned so two tails compare with two loads.
#[repr(C, align(8))]
struct NameTail {
    /// Bytes; words so that zeroing is three stores, not a byte-wise memset call.
    b: [u64; 3],
    /// Bytes of name in `b` (the NUL sits at `b[len]`).
    len: usize,
}

impl NameTail {
    #[inline(always)]
    fn same(&self, other: &NameTail) -> bool {
        self.len == other.len && self.b[0] == other.b[0] && self.b[1] == other.b[1]
    }

    /// Whether the name (its last bytes) has a '.' after its last '/'.
    #[inline(always)]
    fn has_dot(&self) -> bool {
        let b = self.b.as_ptr().cast::<u8>();
        let mut i = 0;
        let mut dot = false;
        while i < EXT_MAX {
            if i < self.len {
                // SAFETY: i < EXT_MAX < 24.
                let c = unsafe { *b.add(i) };
                if c == b'.' {
                    dot = true;
                } else if c == b'/' {
                    dot = false;
                }
            }
            i += 1;
        }
        dot
    }

    #[inline(always)]
    fn ext_known(&self) -> bool {
        ext_known(unsafe { &*self.b.as_ptr().cast::<[u8; EXT_MAX + 1]>() }, self.len as i64 + 1)
    }

    #[inline(always)]
    fn bytes(&mut self) -> *mut u8 {
        self.b.as_mut_ptr().cast()
    }
}

/// The tail of the final dentry's name: one fixed 16-byte copy (short names live inline in
/// the dentry, long ones in an allocation at least as long), no byte-by-byte string read.
#[inline(always)]
fn dentry_tail(dentry: *const u8) -> Option<NameTail> {
    let dw = Window::<DENTRY_WINDOW>::read(dentry).ok()?;
    let len: u32 = dw.get(off!(dentry_d_name) + off!(qstr_len)).ok()?;
    let name = dw.ptr(off!(dentry_d_name) + off!(qstr_name)).ok()?;
    let len = len as usize;
    let k = if len > EXT_MAX { EXT_MAX } else { len };
    let words: [u64; 2] =
        unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(name.wrapping_add(len - k).cast::<[u64; 2]>()) }.ok()?;
    let mut t = NameTail { b: [words[0], words[1], 0], len: k };
    // Bytes past the name (when it is shorter than the copy) are not part of it.
    let b = t.bytes();
    let mut i = 0;
    while i < EXT_MAX {
        if i >= k {
            // SAFETY: i < EXT_MAX < 24.
            unsafe { *b.add(i) = 0 };
        }
        i += 1;
    }
    Some(t)
}

/// The tail of the caller's name, captured in `tail[..n]` (`n` counts the NUL).
#[inline(always)]
fn captured_tail(tail: *const u8, n: usize) -> NameTail {
    let len = n.saturating_sub(1);
    let k = if len > EXT_MAX { EXT_MAX } else { len };
    // Without the barrier LLVM folds the mask into the subtraction and leaves an offset the
    // verifier cannot bound.
    let start = core::hint::black_box(len - k) & (REQUESTED_NAME_MAX - 1);
    let mut t = NameTail { b: [0; 3], len: k };
    let b = t.bytes();
    let mut i = 0;
    while i < EXT_MAX {
        if i < k {
            // SAFETY: i < EXT_MAX < 24; the caller's tail holds at least REQUESTED_NAME_MAX + 16.
            unsafe { *b.add(i) = *tail.add(start + i) };
        }
        i += 1;
    }
    t
}

/// Is the directory holding the file under a configured model directory? Cached per
/// directory; free when no model directory exists.
#[inline(always)]
fn under_model_dir(facts: &FileFacts) -> bool {
    if MODEL_DIRS_PRESENT.get(0).is_none_or(|n| *n == 0) {
        return false;
    }
    mw_under_model_dir(facts.dentry as u64, u64::from(facts.dev())) != 0
}

/// A global BPF function, verified once (see [`mw_ext_known`]).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_under_model_dir(dentry: u64, dev: u64) -> u64 {
    u64::from(try_under_model_dir(dentry as *const u8, dev as u32).unwrap_or(false))
}

#[inline(always)]
fn try_under_model_dir(dentry: *const u8, dev: u32) -> Result<bool, ReadError> {
    let mut dir = read_ptr(dentry, off!(dentry_d_parent))?;
    let dir_inode = read_ptr(dir, off!(dentry_d_inode))?;
    let dir_id = FileId { dev, _pad0: 0, ino: read(dir_inode, off!(inode_i_ino))? };
    if let Some(v) = DIR_VERDICT.get_ptr(dir_id) {
        return Ok(unsafe { *v } == 1);
    }
    let mut verdict = 0u8;
    let mut id = dir_id;
    let mut i = 0;
    while i < MODEL_DIR_DEPTH {
        i += 1;
        if MODEL_DIRS.get_ptr(id).is_some() {
            verdict = 1;
            break;
        }
        let parent = read_ptr(dir, off!(dentry_d_parent))?;
        if parent == dir {
            break;
        }
        dir = parent;
        let inode = read_ptr(dir, off!(dentry_d_inode))?;
        id = FileId { dev, _pad0: 0, ino: read(inode, off!(inode_i_ino))? };
    }
    let _ = DIR_VERDICT.insert(dir_id, verdict, 0);
    Ok(verdict == 1)
}

/// Reasons to report an open. For regular files the caller's name is captured into
/// `tail[..*name_len]` (it is needed for the decision and, when reporting, for the record).
/// The common case, a small file with an ordinary name outside model directories, costs no
/// map update and no lookup beyond the extension map. So the collector's *model* mark is only
/// consulted once another reason holds: a small known model reopened under an ordinary name
/// (a renamed hard link) is not reported on open, only when mapped.
///
/// `call` is what the caller passed: the name (`filename` 0 when there is none, as for io_uring
/// and open_by_handle_at) and the flags. The collector's mark still valid for this version is
/// written to `mark`.
#[inline(always)]
pub fn open_reasons(
    facts: &FileFacts,
    call: &PendingOpen,
    tail: *mut u8,
    name_len: &mut usize,
    path_flags: &mut u32,
    mark: &mut u32,
) -> u32 {
    let mut out = OpenVerdict { name_len: 0, path_flags: 0, mark: 0 };
    let reasons = mw_open_reasons(facts, call, tail.cast(), &mut out) as u32;
    *name_len = out.name_len as usize;
    *path_flags = out.path_flags;
    *mark = out.mark;
    reasons
}

/// What [`open_reasons`] found besides the reasons.
#[repr(C)]
pub struct OpenVerdict {
    pub name_len: u64,
    pub path_flags: u32,
    pub mark: u32,
}

/// A global BPF function, verified once (see [`mw_ext_known`]): the name capture's byte loops
/// make many verifier states, which would otherwise all walk through the rest of every opener.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_open_reasons(
    facts: *const FileFacts,
    call: *const PendingOpen,
    tail: *mut [u8; TAIL_MAX],
    out: *mut OpenVerdict,
) -> u64 {
    if facts.is_null() || call.is_null() || tail.is_null() || out.is_null() {
        return 0;
    }
    // SAFETY: the caller's values on its stack, and its per-CPU record's tail.
    let (facts, call, out) = unsafe { (&*facts, &*call, &mut *out) };
    let mut name_len = 0usize;
    let reasons = judge_open(facts, call, tail.cast(), &mut name_len, &mut out.path_flags, &mut out.mark);
    out.name_len = name_len as u64;
    u64::from(reasons)
}

#[inline(always)]
fn judge_open(
    facts: &FileFacts,
    call: &PendingOpen,
    tail: *mut u8,
    name_len: &mut usize,
    path_flags: &mut u32,
    mark: &mut u32,
) -> u32 {
    if facts.is_char_device() {
        return if WATCHED_DEVICES.get_ptr(facts.rdev).is_some() { reason::DEVICE } else { 0 };
    }
    if !facts.is_regular() {
        return 0;
    }
    let mut reasons = 0;
    if facts.size >= size_threshold() {
        reasons |= reason::SIZE;
    }
    let final_tail = dentry_tail(facts.dentry);
    if final_tail.as_ref().is_some_and(NameTail::ext_known) {
        reasons |= reason::EXTENSION;
    }
    if under_model_dir(facts) {
        reasons |= reason::MODEL_DIR;
    }
    // A runtime process loads what it opens whatever the name: a pickle can be called
    // anything. Write-only opens load nothing, empty files hold nothing. The reason is only
    // given when no other selects the file: it is what widened the selection.
    if reasons == 0 && facts.size > 0 && call.flags & O_ACCMODE != O_WRONLY && mw_runtime(RUNTIME_IS) != 0 {
        reasons = reason::RUNTIME_PROCESS;
    }
    // The caller's name matters when it can differ in kind from the real one: content-addressed
    // stores link model-named paths to blobs whose names have no extension at all. A real name
    // with an ordinary extension (.so, .py, .json) is taken as the truth, which saves the read
    // of user memory on most opens.
    let real_has_ext = final_tail.as_ref().is_some_and(NameTail::has_dot);
    if reasons == 0 && real_has_ext {
        return 0;
    }
    let requested = call.filename;
    let n = if requested == 0 {
        0
    } else {
        unsafe { bpf_probe_read_user_str(tail.cast(), REQUESTED_NAME_MAX as u32, requested as *const _) }
    };
    if n > 0 {
        let n = (n as usize) & (REQUESTED_NAME_MAX * 2 - 1);
        *name_len = n;
        // A successful open's name fits (PATH_MAX counts the NUL); a full buffer means the
        // caller rewrote its buffer during the call. Flagged, and its tail still checked.
        if n >= REQUESTED_NAME_MAX {
            *path_flags |= path_flag::NAME_TRUNCATED;
        }
        let asked = captured_tail(tail, n);
        // The common case: no symlink at the end, same name, same verdict.
        let known = match &final_tail {
            Some(f) if f.same(&asked) => reasons & reason::EXTENSION != 0,
            _ => asked.ext_known(),
        };
        if known {
            reasons = (reasons & !reason::RUNTIME_PROCESS) | reason::REQUESTED_EXTENSION;
        }
    }
    if reasons == 0 {
        return 0;
    }
    // Only now the collector's verdict matters: a vetted non-model stays quiet.
    *mark = valid_mark(facts, write_access(call.flags));
    let reasons = match *mark {
        mark::MODEL => reasons | reason::MARKED_MODEL,
        mark::NOT_MODEL => return 0,
        _ => reasons,
    };
    // Opens that only the widening selected spend the process's budget.
    if reasons == reason::RUNTIME_PROCESS && mw_runtime(RUNTIME_SPEND) == 0 {
        return 0;
    }
    reasons
}

const RUNTIME_IS: u64 = 0;
const RUNTIME_SPEND: u64 = 1;

/// A global BPF function, verified once (see [`mw_valid_mark`]). For the current process:
/// `RUNTIME_IS`: 1 if it is a runtime process (free, one array lookup, while none is);
/// `RUNTIME_SPEND`: 1 if one more candidate open fits its budget for the current second.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_runtime(op: u64) -> u64 {
    if config!(runtime_budget) == 0 || RUNTIME_PRESENT.get(0).is_none_or(|n| *n == 0) {
        return 0;
    }
    let Some(p) = RUNTIME_PROCS.get_ptr_mut((bpf_get_current_pid_tgid() >> 32) as u32) else {
        return 0;
    };
    match op {
        RUNTIME_IS => 1,
        _ => u64::from(within_budget(p)),
    }
}

/// Spends one candidate open of the process's budget for the current second.
#[inline(always)]
fn within_budget(p: *mut RuntimeProc) -> bool {
    // SAFETY: a pointer into the map's value, valid for this program run. Updates from other
    // CPUs may race; the budget is a bound, not an exact count.
    let p = unsafe { &mut *p };
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(p.window_start_ns) >= 1_000_000_000 {
        p.window_start_ns = now;
        p.window_opens = 0;
    }
    if p.window_opens >= config!(runtime_budget) {
        count(stat::RUNTIME_BUDGET, 1);
        return false;
    }
    p.window_opens += 1;
    true
}

/// Records that `tgid` showed inference-runtime evidence (`flags`: [`runtime`] bits).
#[inline(always)]
pub fn note_runtime(tgid: u32, flags: u32) {
    if config!(runtime_budget) == 0 {
        return;
    }
    if let Some(p) = RUNTIME_PROCS.get_ptr_mut(tgid) {
        unsafe { (*p).flags |= flags };
        return;
    }
    let entry = RuntimeProc { flags, window_opens: 0, window_start_ns: 0 };
    if RUNTIME_PROCS.insert(tgid, entry, 0).is_err() {
        count(stat::RUNTIME_MAP_FULL, 1);
        return;
    }
    // After the insert: the collector clears the flag only when it finds the map empty.
    if let Some(p) = RUNTIME_PRESENT.get_ptr_mut(0) {
        unsafe { *p = 1 };
    }
}

/// Fork: a runtime's child is a runtime (data-loader workers load pickles). Exec: the new
/// program starts without the old one's libraries. Exit: gone.
#[inline(always)]
pub fn runtime_fork(parent: u32, child: u32) {
    if RUNTIME_PRESENT.get(0).is_none_or(|n| *n == 0) {
        return;
    }
    if let Some(p) = RUNTIME_PROCS.get_ptr(parent) {
        let flags = unsafe { (*p).flags };
        note_runtime(child, flags | runtime::INHERITED);
    }
}

#[inline(always)]
pub fn runtime_gone(tgid: u32) {
    if RUNTIME_PRESENT.get(0).is_none_or(|n| *n == 0) {
        return;
    }
    if RUNTIME_PROCS.get_ptr(tgid).is_some() {
        let _ = RUNTIME_PROCS.remove(tgid);
    }
}

/// An open that produced `file` (as `fd`, or -1 for an io_uring fixed file) with the caller's
/// arguments `call`: drops what a write open invalidates, decides, and reports. Every opener
/// (the open syscalls' exits, io_uring completions) ends here.
#[inline(always)]
pub fn opened(file: *const u8, fd: i64, call: &PendingOpen) {
    let Ok(facts) = inspect(file) else {
        count(stat::READ_FAILED, 1);
        return;
    };
    let Some(rec) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let tail = unsafe { (*rec).tail.as_mut_ptr() };
    let mut name_len = 0usize;
    let mut path_flags = 0u32;
    let mut mark = 0u32;
    let reasons = open_reasons(&facts, call, tail, &mut name_len, &mut path_flags, &mut mark);
    // Judged by the verdict about the content as it is; whatever comes next is a new version.
    if writes(call.flags) {
        invalidate(&facts);
    }
    if reasons == 0 {
        return;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if reasons & reason::DEVICE != 0 {
        // From now on this process's ioctls are looked at.
        if PROC_DEVICES.insert(tgid, 1u32, 0).is_err() {
            count(stat::IOCTL_GATE_FULL, 1);
        }
    }
    if !admit_file_record(tgid) {
        return;
    }
    if facts.is_regular() && READERS.insert(tgid, 1u8, 0).is_err() {
        // An LRU map: an insert fails only on a kernel error, never for room.
        count(stat::READ_FAILED, 1);
    }
    let call = OpenCall { fd, args: call, mark };
    emit_open(rec, file, &facts, &call, reasons, name_len, path_flags);
}

/// The open call a record is about: its new fd, the arguments the caller passed and the
/// collector's mark still valid for the file's version.
pub struct OpenCall<'a> {
    pub fd: i64,
    pub args: &'a PendingOpen,
    pub mark: u32,
}

/// Completes and sends an open record whose tail already holds the caller's name.
#[inline(always)]
pub fn emit_open(
    rec: *mut OpenRecord,
    file: *const u8,
    facts: &FileFacts,
    call: &OpenCall<'_>,
    reasons: u32,
    name_len: usize,
    path_flags: u32,
) {
    let (fd, flags, syscall) = (call.fd, call.args.flags, call.args.syscall);
    let r = unsafe { &mut *rec };
    fill_header(&mut r.ev.header, EventKind::FileOpen);
    r.ev.ino = facts.ino;
    r.ev.size = facts.size;
    r.ev.dev = facts.dev();
    r.ev.rdev = facts.rdev;
    r.ev.flags = flags;
    r.ev.mode = facts.mode;
    r.ev.fd = fd as i32;
    r.ev.reasons = reasons;
    r.ev.syscall = syscall;
    r.ev.ctime_sec = facts.ctime_sec;
    r.ev.ctime_nsec = facts.ctime_nsec;
    r.ev.mark = call.mark;
    r.ev.content = content_flags(facts, write_access(flags));
    r.ev._pad0 = 0;
    let name_len = name_len & (REQUESTED_NAME_MAX * 2 - 1);
    let walked = walk(file.wrapping_add(off!(file_f_path)), r.tail.as_mut_ptr(), name_len);
    if walked.flags & path_flag::TRUNCATED != 0 {
        count(stat::PATH_TRUNCATED, 1);
    }
    r.ev.path_flags = path_flags | walked.flags;
    r.ev.name_len = name_len as u32;
    r.ev.path_len = walked.len;
    let len = size_of_val(&r.ev) + name_len + walked.len as usize;
    output(EventKind::FileOpen, rec.cast(), len, size_of::<OpenRecord>());
}

/// Does the file name start with a known inference-runtime library prefix?
#[inline(always)]
fn runtime_library(dentry: *const u8) -> bool {
    let Ok(name) = read_ptr(dentry, off!(dentry_d_name) + off!(qstr_name)) else {
        return false;
    };
    let mut key = Key::new((LIB_PREFIX_MAX * 8) as u32, [0u8; LIB_PREFIX_MAX]);
    let n = unsafe { bpf_probe_read_kernel_str((&raw mut key.data).cast(), LIB_PREFIX_MAX as u32, name.cast()) };
    n > 0 && RUNTIME_LIBS.get(&key).is_some()
}

/// Reasons to report a mapping of `file`; the collector's mark still valid for the file's
/// version is written to `mark`.
#[inline(always)]
pub fn mmap_reasons(facts: &FileFacts, len: u64, prot: u32, mark: &mut u32) -> u32 {
    if !facts.is_regular() {
        return 0;
    }
    let mut reasons = 0;
    *mark = valid_mark(facts, false);
    match *mark {
        mark::MODEL => reasons |= reason::MARKED_MODEL,
        mark::NOT_MODEL => return 0,
        _ => {}
    }
    let threshold = size_threshold();
    if facts.size >= threshold {
        reasons |= reason::SIZE;
    }
    if len >= threshold {
        reasons |= reason::MAPPING_LEN;
    }
    if prot & PROT_EXEC != 0 && runtime_library(facts.dentry) {
        reasons |= reason::RUNTIME_LIBRARY;
    }
    reasons
}

/// Completes and sends a mmap record for a mapping stashed at sys_enter.
#[inline(always)]
pub fn emit_mmap(rec: *mut MmapRecord, p: &PendingMmap, addr: u64) {
    let r = unsafe { &mut *rec };
    fill_header(&mut r.ev.header, EventKind::FileMmap);
    r.ev.ino = p.ino;
    r.ev.size = p.size;
    r.ev.len = p.len;
    r.ev.offset = p.offset;
    r.ev.addr = addr;
    r.ev.dev = p.dev;
    r.ev.prot = p.prot;
    r.ev.flags = p.flags;
    r.ev.fd = p.fd;
    r.ev.reasons = p.reasons;
    r.ev.ctime_sec = p.ctime_sec;
    r.ev.ctime_nsec = p.ctime_nsec;
    r.ev.mark = p.mark;
    r.ev.content = p.content;
    let file = p.file as *const u8;
    let walked = walk(file.wrapping_add(off!(file_f_path)), r.tail.as_mut_ptr(), 0);
    if walked.flags & path_flag::TRUNCATED != 0 {
        count(stat::PATH_TRUNCATED, 1);
    }
    r.ev.path_flags = walked.flags;
    r.ev.path_len = walked.len;
    let len = size_of_val(&r.ev) + walked.len as usize;
    output(EventKind::FileMmap, rec.cast(), len, size_of::<MmapRecord>());
}

/// Counts `bytes` read (`via`: `sensor_ebpf::read_via`) from `file` when it is a model
/// candidate: marked a model, a model extension, or under a model directory. Size alone does
/// not make one here: databases read large files all day. Once a (process, file) is counted,
/// its later reads cost one per-CPU lookup.
#[inline(always)]
pub fn count_read(file: *const u8, bytes: u64, tgid: u32, via: u32) {
    let Ok(facts) = inspect(file) else { return };
    if !facts.is_regular() {
        return;
    }
    let id = facts.id();
    let key = ReadKey { tgid, dev: id.dev, ino: id.ino, via, _pad0: 0 };
    if let Some(v) = MODEL_READS.get_ptr_mut(key) {
        unsafe { *v += bytes };
        return;
    }
    if READ_SKIP.get_ptr(id).is_some() {
        return;
    }
    let candidate = match valid_mark(&facts, false) {
        mark::MODEL => true,
        mark::NOT_MODEL => false,
        _ => dentry_tail(facts.dentry).as_ref().is_some_and(NameTail::ext_known) || under_model_dir(&facts),
    };
    if !candidate {
        let _ = READ_SKIP.insert(id, 1u8, 0);
    } else if MODEL_READS.insert(key, bytes, 0).is_err() {
        count(stat::MODEL_READS_FULL, 1);
    }
}

/// Counts an ioctl on `file` when its device is watched; the first one per (process, device)
/// also produces a record.
#[inline(always)]
pub fn count_ioctl(file: *const u8, fd: i64, cmd: u32, tgid: u32) {
    let Ok(inode) = read_ptr(file, off!(file_f_inode)) else {
        return;
    };
    let Ok(rdev) = read::<u32>(inode, off!(inode_i_rdev)) else {
        return;
    };
    if WATCHED_DEVICES.get_ptr(rdev).is_none() {
        return;
    }
    count(stat::IOCTLS_COUNTED, 1);
    let key = IoctlKey { tgid, rdev, cmd, _pad0: 0 };
    if let Some(c) = IOCTL_COUNTS.get_ptr_mut(key) {
        // Counted before: this process has used the device already.
        unsafe { *c += 1 };
        return;
    }
    if IOCTL_COUNTS.insert(key, 1u64, 0).is_err() {
        count(stat::IOCTL_COUNTS_FULL, 1);
    }
    let seen = DeviceUseKey { tgid, rdev };
    if DEVICE_SEEN.get_ptr(seen).is_some() {
        return;
    }
    let _ = DEVICE_SEEN.insert(seen, 1u8, 0);
    let mut ev = DeviceIoctlEvent::default();
    fill_header(&mut ev.header, EventKind::DeviceFirstIoctl);
    ev.rdev = rdev;
    ev.cmd = cmd;
    ev.fd = fd as i32;
    let size = size_of::<DeviceIoctlEvent>();
    output(EventKind::DeviceFirstIoctl, (&raw mut ev).cast(), size, size);
}
