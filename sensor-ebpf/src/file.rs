//! Per-`struct file` logic: inspect an open file, decide whether it is reportable, fill the
//! records, count accelerator ioctls. Every function takes the `struct file *` and plain
//! values, never a tracepoint context, so an LSM/fentry backend that receives the file pointer
//! directly can call the same code.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    maps::lpm_trie::Key,
};
use sensor_ebpf::{
    DeviceIoctlEvent, DeviceUseKey, EXT_MAX, EventKind, ExtKey, FileId, IoctlKey, LIB_PREFIX_MAX, REQUESTED_NAME_MAX,
    mark, path_flag, reason, stat,
};

use crate::{
    emit::{fill_header, output},
    kernel::{ReadError, Window, off, read, read_ptr, size_threshold},
    maps::{
        DEVICE_SEEN, DIR_VERDICT, EXTENSIONS, INODE_MARKS, IOCTL_COUNTS, MODEL_DIRS, MODEL_DIRS_PRESENT, MmapRecord,
        OpenRecord, PendingMmap, RUNTIME_LIBS, WATCHED_DEVICES, count,
    },
    path::walk,
};

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const PROT_EXEC: u32 = 4;
/// Ancestors inspected when looking for a configured model directory.
const MODEL_DIR_DEPTH: u32 = 16;

/// What the probes need to know about an open file. Read with two window copies (the start
/// of `struct file` and of `struct inode`); the superblock's device is read only when needed.
pub struct FileFacts {
    pub inode: *const u8,
    pub dentry: *const u8,
    sb: *const u8,
    pub mode: u32,
    pub ino: u64,
    pub size: u64,
    pub rdev: u32,
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
    fn id(&self) -> FileId {
        FileId { dev: self.dev(), _pad0: 0, ino: self.ino }
    }
}

/// Bytes of `struct file` copied at once, from the lower of f_inode and f_path.dentry: they
/// are within 48 bytes of each other in 6.x layouts (f_path first up to 6.11, f_inode first
/// since). A layout where they are further apart still works, with one extra read.
const FILE_WINDOW: usize = 48;
/// Bytes of `struct inode` copied at once (mode, sb, ino, rdev, size).
const INODE_WINDOW: usize = 88;

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
    let facts =
        FileFacts { inode, dentry, sb, mode: u32::from(mode), ino, size: if size < 0 { 0 } else { size as u64 }, rdev };
    // SAFETY: out points to the caller's FileFacts slot.
    unsafe { out.write(facts) };
    0
}

/// The collector's mark for this inode: `Some(true)` model, `Some(false)` vetted non-model whose
/// size and ctime still match, `None` unknown.
#[inline(always)]
fn marked(facts: &FileFacts) -> Option<bool> {
    let m = INODE_MARKS.get_ptr(facts.id())?;
    let m = unsafe { *m };
    if m.verdict == mark::MODEL {
        return Some(true);
    }
    if m.verdict == mark::NOT_MODEL && m.size == facts.size {
        let ctime: i64 = read(facts.inode, off!(inode_i_ctime_sec)).unwrap_or(-1);
        if ctime == m.ctime_sec {
            return Some(false);
        }
    }
    None
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
#[inline(always)]
pub fn open_reasons(
    facts: &FileFacts,
    requested: u64,
    tail: *mut u8,
    name_len: &mut usize,
    path_flags: &mut u32,
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
    // The caller's name matters when it can differ in kind from the real one: content-addressed
    // stores link model-named paths to blobs whose names have no extension at all. A real name
    // with an ordinary extension (.so, .py, .json) is taken as the truth, which saves the read
    // of user memory on most opens.
    let real_has_ext = final_tail.as_ref().is_some_and(NameTail::has_dot);
    if reasons == 0 && real_has_ext {
        return 0;
    }
    let n = unsafe { bpf_probe_read_user_str(tail.cast(), REQUESTED_NAME_MAX as u32, requested as *const _) };
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
            reasons |= reason::REQUESTED_EXTENSION;
        }
    }
    if reasons == 0 {
        return 0;
    }
    // Only now the collector's verdict matters: a vetted non-model stays quiet.
    match marked(facts) {
        Some(true) => reasons | reason::MARKED_MODEL,
        Some(false) => 0,
        None => reasons,
    }
}

/// The open call a record is about: its new fd and the arguments the caller passed.
pub struct OpenCall<'a> {
    pub fd: i64,
    pub args: &'a crate::maps::PendingOpen,
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

/// Reasons to report a mapping of `file`.
#[inline(always)]
pub fn mmap_reasons(facts: &FileFacts, len: u64, prot: u32) -> u32 {
    if !facts.is_regular() {
        return 0;
    }
    let mut reasons = 0;
    match marked(facts) {
        Some(true) => reasons |= reason::MARKED_MODEL,
        Some(false) => return 0,
        None => {}
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
    let file = p.file as *const u8;
    let walked = walk(file.wrapping_add(off!(file_f_path)), r.tail.as_mut_ptr(), 0);
    if walked.flags & path_flag::TRUNCATED != 0 {
        count(stat::PATH_TRUNCATED, 1);
    }
    r.ev.path_flags = walked.flags;
    r.ev.path_len = walked.len;
    r.ev._pad0 = 0;
    let len = size_of_val(&r.ev) + walked.len as usize;
    output(EventKind::FileMmap, rec.cast(), len, size_of::<MmapRecord>());
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
