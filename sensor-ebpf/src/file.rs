//! Per-`struct file` logic: inspect an open file, decide whether it is reportable, fill the
//! records, count accelerator ioctls. Every function takes the `struct file *` and plain
//! values, never a tracepoint context, so an LSM/fentry backend that receives the file pointer
//! directly can call the same code.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    maps::lpm_trie::Key,
};
use sensor_ebpf::{
    DeviceIoctlEvent, DeviceUseKey, EXT_MAX, EventKind, FileId, IoctlKey, LIB_PREFIX_MAX,
    REQUESTED_NAME_MAX, mark, path_flag, reason, stat,
};

use crate::{
    emit::{fill_header, output},
    kernel::{ReadError, off, read, read_ptr, size_threshold},
    maps::{
        DEVICE_SEEN, DIR_VERDICT, EXTENSIONS, INODE_MARKS, IOCTL_COUNTS, MODEL_DIRS, MmapRecord,
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

/// What the probes need to know about an open file.
pub struct FileFacts {
    pub inode: *const u8,
    pub mode: u32,
    pub ino: u64,
    pub size: u64,
    pub dev: u32,
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
    #[inline(always)]
    fn id(&self) -> FileId {
        FileId { dev: self.dev, _pad0: 0, ino: self.ino }
    }
}

/// Reads the inode facts of `file`. Only regular files get size/ino/dev; device nodes get rdev.
#[inline(always)]
pub fn inspect(file: *const u8) -> Result<FileFacts, ReadError> {
    let inode = read_ptr(file, off!(file_f_inode))?;
    let mode: u16 = read(inode, off!(inode_i_mode))?;
    let mut facts = FileFacts { inode, mode: mode as u32, ino: 0, size: 0, dev: 0, rdev: 0 };
    if facts.is_char_device() {
        facts.rdev = read(inode, off!(inode_i_rdev))?;
        facts.ino = read(inode, off!(inode_i_ino))?;
        let sb = read_ptr(inode, off!(inode_i_sb))?;
        facts.dev = read(sb, off!(sb_s_dev))?;
    } else if facts.is_regular() {
        facts.ino = read(inode, off!(inode_i_ino))?;
        let size: i64 = read(inode, off!(inode_i_size))?;
        facts.size = if size < 0 { 0 } else { size as u64 };
        let sb = read_ptr(inode, off!(inode_i_sb))?;
        facts.dev = read(sb, off!(sb_s_dev))?;
    }
    Ok(facts)
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
    if n <= 1 {
        return false;
    }
    let end = (n - 1) as usize;
    let mut dot = usize::MAX;
    let mut i = 0;
    while i < EXT_MAX {
        if i < end {
            let c = buf[i];
            if c == b'.' {
                dot = i;
            } else if c == b'/' {
                dot = usize::MAX;
            }
        }
        i += 1;
    }
    if dot == usize::MAX || dot + 1 >= end {
        return false;
    }
    let mut key = [0u8; EXT_MAX];
    let mut j = 0;
    while j < EXT_MAX - 1 {
        let idx = dot + 1 + j;
        if idx < end {
            let c = buf[idx & (EXT_MAX - 1)];
            key[j] = if c.is_ascii_uppercase() { c + 32 } else { c };
        }
        j += 1;
    }
    EXTENSIONS.get_ptr(key).is_some()
}

/// Does the final dentry name of `file` end in a model extension?
#[inline(always)]
fn dentry_ext_known(file: *const u8) -> bool {
    let Ok(dentry) = read_ptr(file, off!(file_f_path) + off!(path_dentry)) else {
        return false;
    };
    let len: u32 = read(dentry, off!(dentry_d_name) + off!(qstr_len)).unwrap_or(0);
    let Ok(name) = read_ptr(dentry, off!(dentry_d_name) + off!(qstr_name)) else {
        return false;
    };
    let start = if len as usize > EXT_MAX { len as usize - EXT_MAX } else { 0 };
    let mut buf = [0u8; EXT_MAX + 1];
    let n = unsafe {
        bpf_probe_read_kernel_str(
            buf.as_mut_ptr().cast(),
            (EXT_MAX + 1) as u32,
            name.wrapping_add(start).cast(),
        )
    };
    ext_known(&buf, n)
}

/// Does the caller's name (`n` bytes with its NUL, already measured) end in a model extension?
/// Re-reads just the last bytes from user memory: cheaper for the verifier than indexing the
/// captured copy at a variable offset.
#[inline(always)]
fn requested_ext_known(requested: u64, n: usize) -> bool {
    let start = if n > EXT_MAX + 1 { n - (EXT_MAX + 1) } else { 0 };
    let mut buf = [0u8; EXT_MAX + 1];
    let got = unsafe {
        bpf_probe_read_user_str(
            buf.as_mut_ptr().cast(),
            (EXT_MAX + 1) as u32,
            (requested as *const u8).wrapping_add(start).cast(),
        )
    };
    ext_known(&buf, got)
}

/// Is the directory holding `file` under a configured model directory? Cached per directory.
#[inline(always)]
fn under_model_dir(file: *const u8, dev: u32) -> bool {
    match try_under_model_dir(file, dev) {
        Ok(v) => v,
        Err(_) => false,
    }
}

#[inline(always)]
fn try_under_model_dir(file: *const u8, dev: u32) -> Result<bool, ReadError> {
    let dentry = read_ptr(file, off!(file_f_path) + off!(path_dentry))?;
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

/// Reasons to report an open of `file`. For regular files the caller's name is captured into
/// `tail[..*name_len]` (it is needed for the decision and, when reporting, for the record).
#[inline(always)]
pub fn open_reasons(
    file: *const u8,
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
    match marked(facts) {
        Some(true) => reasons |= reason::MARKED_MODEL,
        Some(false) => return 0,
        None => {}
    }
    if facts.size >= size_threshold() {
        reasons |= reason::SIZE;
    }
    if dentry_ext_known(file) {
        reasons |= reason::EXTENSION;
    }
    let n = unsafe {
        bpf_probe_read_user_str(tail.cast(), REQUESTED_NAME_MAX as u32, requested as *const _)
    };
    if n > 0 {
        let n = (n as usize) & (REQUESTED_NAME_MAX * 2 - 1);
        *name_len = n;
        if n >= REQUESTED_NAME_MAX {
            *path_flags |= path_flag::NAME_TRUNCATED;
        } else if requested_ext_known(requested, n) {
            reasons |= reason::REQUESTED_EXTENSION;
        }
    }
    if under_model_dir(file, facts.dev) {
        reasons |= reason::MODEL_DIR;
    }
    reasons
}

/// Completes and sends an open record whose tail already holds the caller's name.
#[inline(always)]
pub fn emit_open(
    rec: *mut OpenRecord,
    file: *const u8,
    facts: &FileFacts,
    fd: i64,
    flags: u32,
    syscall: u32,
    reasons: u32,
    name_len: usize,
    path_flags: u32,
) {
    let r = unsafe { &mut *rec };
    fill_header(&mut r.ev.header, EventKind::FileOpen);
    r.ev.ino = facts.ino;
    r.ev.size = facts.size;
    r.ev.dev = facts.dev;
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
    let len = core::mem::size_of_val(&r.ev) + name_len + walked.len as usize;
    output(EventKind::FileOpen, rec.cast(), len, core::mem::size_of::<OpenRecord>());
}

/// Does the file name of `file` start with a known inference-runtime library prefix?
#[inline(always)]
fn runtime_library(file: *const u8) -> bool {
    let Ok(name) = read_ptr(file, off!(file_f_path) + off!(path_dentry))
        .and_then(|d| read_ptr(d, off!(dentry_d_name) + off!(qstr_name)))
    else {
        return false;
    };
    let mut key = Key::new((LIB_PREFIX_MAX * 8) as u32, [0u8; LIB_PREFIX_MAX]);
    let n = unsafe {
        bpf_probe_read_kernel_str(
            (&raw mut key.data).cast(),
            LIB_PREFIX_MAX as u32,
            name.cast(),
        )
    };
    n > 0 && RUNTIME_LIBS.get(&key).is_some()
}

/// Reasons to report a mapping of `file`.
#[inline(always)]
pub fn mmap_reasons(file: *const u8, facts: &FileFacts, len: u64, prot: u32) -> u32 {
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
    if prot & PROT_EXEC != 0 && runtime_library(file) {
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
    let len = core::mem::size_of_val(&r.ev) + walked.len as usize;
    output(EventKind::FileMmap, rec.cast(), len, core::mem::size_of::<MmapRecord>());
}

/// Counts an ioctl on `file` when its device is watched; the first one per (process, device)
/// also produces a record. Unwatched devices cost one map lookup.
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
        unsafe { *c += 1 };
    } else if IOCTL_COUNTS.insert(key, 1u64, 0).is_err() {
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
    let size = core::mem::size_of::<DeviceIoctlEvent>();
    output(EventKind::DeviceFirstIoctl, (&raw mut ev).cast(), size, size);
}
