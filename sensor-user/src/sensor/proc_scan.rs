//! Walks of /proc for what the kernel probes could not see happen.
//!
//! - **At start** ([`Walk::AtStart`]): a process that opened or mapped a model while the sensor
//!   was down or starting is never reported by the probes. Once, right after they attach, every
//!   process's descriptors (`/proc/<pid>/fd`) and mappings (`/proc/<pid>/maps`) are walked and
//!   selected as the kernel would select them (model extension, size threshold, mapping length,
//!   model directory, executable mapping of a runtime library); each is reported as already
//!   loaded at sensor start.
//! - **Holders** ([`Walk::Holders`], every housekeeping tick while models are known): a
//!   descriptor passed over a Unix socket (SCM_RIGHTS), or inherited from a process that opened
//!   the file before it was known, is never opened by the process that holds it. The walk finds
//!   the descriptors of files identified as models; the sensor reports those it never saw the
//!   process open or map ([`Attributions`]).
//!
//! The walks run on their own thread at low priority, bounded in processes, descriptors and
//! mappings per process, items and time; `stat`s use cached attributes (`AT_STATX_DONT_SYNC`),
//! so a hung network filesystem delays a walk without blocking it on the server. What a walk
//! finds reaches the event loop as messages; a walk cut short says so in its [`Summary`].

use std::{
    collections::{HashMap, HashSet},
    ffi::{CString, OsStr},
    num::NonZeroUsize,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lru::LruCache;
use sensor_ebpf::{EventHeader, FileMmapEvent, FileOpenEvent, reason};

use crate::{
    decode::{FileMmap, FileOpen, KernelPath},
    mounts::MountDevs,
    process::ProcessInfo,
};

/// Processes walked at most.
const MAX_PROCESSES: usize = 32_768;
/// Descriptors looked at per process at most.
const MAX_FDS: usize = 4096;
/// Lines of a process's maps read at most.
const MAX_MAPS_LINES: usize = 16_384;
/// Items one walk reports at most.
const MAX_FOUND: usize = 8192;
/// How long a walk may take.
const AT_START_TIME: Duration = Duration::from_secs(30);
const HOLDERS_TIME: Duration = Duration::from_secs(10);
/// Findings waiting for the event loop.
const FOUND_QUEUE: usize = 256;
/// (process, file) pairs remembered as seen.
const MAX_ATTRIBUTIONS: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// How the walk at start selects files: the kernel's rules, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Model extensions, lower case, with their dot.
    pub extensions: Vec<String>,
    pub size_threshold: u64,
    pub model_dirs: Vec<PathBuf>,
    /// File-name prefixes of runtime libraries.
    pub runtime_libraries: Vec<String>,
}

impl Rules {
    pub fn new(extensions: &[String], size_threshold: u64, model_dirs: Vec<PathBuf>, libraries: &[String]) -> Self {
        Self {
            extensions: extensions.iter().map(|e| e.to_ascii_lowercase()).collect(),
            size_threshold,
            model_dirs,
            runtime_libraries: libraries.to_vec(),
        }
    }

    /// The kernel's reason bits for a file by its name: extension, model directory.
    fn by_name(&self, path: &[u8]) -> u32 {
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        let mut bits = 0;
        if self
            .extensions
            .iter()
            .any(|e| name.len() > e.len() && name[name.len() - e.len()..].eq_ignore_ascii_case(e.as_bytes()))
        {
            bits |= reason::EXTENSION;
        }
        if self.model_dirs.iter().any(|d| Path::new(OsStr::from_bytes(path)).starts_with(d)) {
            bits |= reason::MODEL_DIR;
        }
        bits
    }

    fn is_runtime_library(&self, path: &[u8]) -> bool {
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        self.runtime_libraries.iter().any(|l| name.starts_with(l.as_bytes()))
    }
}

/// A walk to make.
#[derive(Debug, Clone)]
pub enum Walk {
    /// Every descriptor and mapping the kernel would have reported.
    AtStart(Arc<Rules>),
    /// Descriptors of these files (kernel dev, inode): known models.
    Holders(Arc<HashSet<(u32, u64)>>),
}

/// The process a finding is about: pid and start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subject {
    pub pid: u32,
    pub start_ticks: u64,
}

/// A regular file a process holds or maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFound {
    pub path: KernelPath,
    /// Kernel-encoded device.
    pub dev: u32,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    /// The inode's ctime: with size, the content version the kernel's records carry, so what
    /// a walk finds is looked up under the same key as what the kernel reported.
    pub ctime: (i64, u32),
    /// The kernel's reason bits.
    pub reasons: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A descriptor (and its open flags). `at_start`: found by the walk at start (else by a
    /// holders walk).
    Open { who: Subject, file: FileFound, fd: i32, flags: u32, at_start: bool },
    /// A mapping (only the walk at start looks at mappings).
    Map { who: Subject, file: FileFound, addr: u64, len: u64, offset: u64, prot: u32, flags: u32, at_start: bool },
    /// A walk ended.
    Done(Summary),
}

/// How a walk went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub at_start: bool,
    pub processes: usize,
    pub found: usize,
    /// Why it did not look at everything, if it did not.
    pub cut_short: Option<String>,
    pub elapsed: Duration,
}

fn header(p: &ProcessInfo, ktime_ns: u64) -> EventHeader {
    let mut comm = [0u8; sensor_ebpf::TASK_COMM_LEN];
    let n = p.comm.len().min(comm.len() - 1);
    comm[..n].copy_from_slice(&p.comm.as_bytes()[..n]);
    EventHeader {
        ktime_ns,
        start_boottime_ns: p.start_boottime_ns,
        cgroup_id: p.cgroup_id,
        pid: p.pid,
        tgid: p.pid,
        uid: p.uid,
        gid: p.gid,
        comm,
        ..Default::default()
    }
}

/// The open record the kernel would have written for a descriptor found held by `p`.
pub fn open_record(p: &ProcessInfo, file: &FileFound, fd: i32, flags: u32, ktime_ns: u64) -> FileOpen {
    FileOpen {
        raw: FileOpenEvent {
            header: header(p, ktime_ns),
            ino: file.ino,
            size: file.size,
            dev: file.dev,
            flags,
            mode: file.mode,
            fd,
            reasons: file.reasons,
            ctime_sec: file.ctime.0,
            ctime_nsec: file.ctime.1,
            ..Default::default()
        },
        path: file.path.clone(),
        requested: String::new(),
    }
}

/// The mmap record the kernel would have written for a mapping found in `p`.
#[allow(clippy::too_many_arguments)]
pub fn mmap_record(
    p: &ProcessInfo,
    file: &FileFound,
    addr: u64,
    len: u64,
    offset: u64,
    prot: u32,
    flags: u32,
    ktime_ns: u64,
) -> FileMmap {
    FileMmap {
        raw: FileMmapEvent {
            header: header(p, ktime_ns),
            ino: file.ino,
            size: file.size,
            len,
            offset,
            addr,
            dev: file.dev,
            prot,
            flags,
            fd: -1,
            reasons: file.reasons,
            ctime_sec: file.ctime.0,
            ctime_nsec: file.ctime.1,
            ..Default::default()
        },
        path: file.path.clone(),
    }
}

/// The walking thread's handle.
pub struct Scanner {
    jobs: std::sync::mpsc::SyncSender<Walk>,
    busy: Arc<AtomicBool>,
}

impl Scanner {
    /// Starts the thread; findings arrive on the returned receiver. `self_pid` is never walked.
    pub fn start(self_pid: u32) -> std::io::Result<(Self, tokio::sync::mpsc::Receiver<Found>)> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Walk>(1);
        let (tx, found) = tokio::sync::mpsc::channel(FOUND_QUEUE);
        let busy = Arc::new(AtomicBool::new(false));
        let busy_in = busy.clone();
        std::thread::Builder::new().name("proc walks".into()).spawn(move || {
            modelwatch_artifact::service::lower_thread_priority(true, 10);
            let mut mounts = MountDevs::default();
            for walk in rx {
                let ok =
                    walk_all(Path::new("/proc"), self_pid, &walk, &mut mounts, &mut |f| tx.blocking_send(f).is_ok());
                busy_in.store(false, Ordering::Release);
                if !ok {
                    return; // the sensor stopped
                }
            }
        })?;
        Ok((Self { jobs, busy }, found))
    }

    /// Starts `walk` unless one is running; false when one is.
    pub fn request(&self, walk: Walk) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.jobs.try_send(walk).is_err() {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }
}

/// Which processes the sensor has reported opening (holding) or mapping which files, so a walk
/// reports only what nothing else did.
pub struct Attributions {
    /// (process, kernel dev, inode, mapped).
    seen: LruCache<(Subject, u32, u64, bool), ()>,
}

impl Default for Attributions {
    fn default() -> Self {
        Self { seen: LruCache::new(MAX_ATTRIBUTIONS) }
    }
}

impl Attributions {
    /// Remembers that `who` was reported opening (`mapped`: mapping) the file (kernel dev, ino).
    pub fn note(&mut self, who: Subject, dev: u32, ino: u64, mapped: bool) {
        self.seen.put((who, dev, ino, mapped), ());
    }

    pub fn knows(&self, who: Subject, dev: u32, ino: u64, mapped: bool) -> bool {
        self.seen.contains(&(who, dev, ino, mapped))
    }
}

/// Walks every process under `proc_root`; `emit` returns false when nobody listens any more.
/// Returns false then.
fn walk_all(
    proc_root: &Path,
    self_pid: u32,
    walk: &Walk,
    mounts: &mut MountDevs,
    emit: &mut dyn FnMut(Found) -> bool,
) -> bool {
    let started = Instant::now();
    let deadline = started + if matches!(walk, Walk::AtStart(_)) { AT_START_TIME } else { HOLDERS_TIME };
    let mut pids: Vec<u32> = match std::fs::read_dir(proc_root) {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(e) => {
            tracing::warn!("cannot list {}: {e}", proc_root.display());
            Vec::new()
        }
    };
    pids.sort_unstable();
    let mut cut_short = None;
    if pids.len() > MAX_PROCESSES {
        cut_short = Some(format!("{} processes, {MAX_PROCESSES} walked", pids.len()));
        pids.truncate(MAX_PROCESSES);
    }
    let mut w = Walker { proc_root, walk, mounts, stats: HashMap::new(), found: 0 };
    let mut processes = 0;
    for pid in pids {
        if pid == self_pid {
            continue;
        }
        if Instant::now() > deadline {
            cut_short = Some(format!("out of time after {processes} processes"));
            break;
        }
        if w.found >= MAX_FOUND {
            cut_short = Some(format!("{MAX_FOUND} items found"));
            break;
        }
        processes += 1;
        for f in w.process(pid) {
            w.found += 1;
            if !emit(f) {
                return false;
            }
        }
    }
    let summary = Summary {
        at_start: matches!(walk, Walk::AtStart(_)),
        processes,
        found: w.found,
        cut_short,
        elapsed: started.elapsed(),
    };
    emit(Found::Done(summary))
}

/// stat(2) of a file through a /proc link, from cached attributes.
#[derive(Debug, Clone, Copy)]
struct Stat {
    /// Kernel-encoded device.
    kdev: u32,
    ino: u64,
    size: u64,
    mode: u32,
    ctime: (i64, u32),
}

struct Walker<'a> {
    proc_root: &'a Path,
    walk: &'a Walk,
    mounts: &'a mut MountDevs,
    /// Stats of mapped files by (maps device, inode): the same libraries are mapped everywhere.
    stats: HashMap<(u32, u64), Option<Stat>>,
    found: usize,
}

impl Walker<'_> {
    fn process(&mut self, pid: u32) -> Vec<Found> {
        let dir = self.proc_root.join(pid.to_string());
        let Some(start_ticks) = std::fs::read_to_string(dir.join("stat")).ok().and_then(|s| start_ticks(&s)) else {
            return Vec::new(); // gone
        };
        let who = Subject { pid, start_ticks };
        let mut out = self.descriptors(&dir, who);
        if let Walk::AtStart(rules) = self.walk {
            let rules = rules.clone();
            out.extend(self.mappings(&dir, who, &rules));
        }
        out
    }

    fn descriptors(&mut self, dir: &Path, who: Subject) -> Vec<Found> {
        let Ok(entries) = std::fs::read_dir(dir.join("fd")) else { return Vec::new() };
        let mut out = Vec::new();
        // One report per file: a process may hold one file on several descriptors.
        let mut files = HashSet::new();
        for entry in entries.take(MAX_FDS) {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let link = entry.path();
            let Ok(target) = std::fs::read_link(&link) else { continue };
            let target = target.as_os_str().as_bytes();
            // Sockets, pipes and anonymous inodes name no file.
            if !target.starts_with(b"/") {
                continue;
            }
            let reasons = match self.walk {
                Walk::AtStart(rules) => rules.by_name(displayed(target).0),
                Walk::Holders(_) => 0,
            };
            let Some(st) = stat_link(&link) else { continue };
            if st.mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            let (reasons, st) = match self.walk {
                Walk::AtStart(rules) => {
                    let size = if st.size >= rules.size_threshold { reason::SIZE } else { 0 };
                    if reasons | size == 0 {
                        continue;
                    }
                    (reasons | size, self.with_kernel_dev(&link, st))
                }
                Walk::Holders(models) => {
                    // Cheap test first: the device only matters for inodes that are models.
                    if !models.iter().any(|(_, ino)| *ino == st.ino) {
                        continue;
                    }
                    let st = self.with_kernel_dev(&link, st);
                    if !models.contains(&(st.kdev, st.ino)) {
                        continue;
                    }
                    (reason::MARKED_MODEL, st)
                }
            };
            if !files.insert((st.kdev, st.ino)) {
                continue;
            }
            let flags = fd_flags(&dir.join("fdinfo").join(fd.to_string())).unwrap_or(0);
            let at_start = matches!(self.walk, Walk::AtStart(_));
            out.push(Found::Open { who, file: file_found(target, st, reasons), fd, flags, at_start });
        }
        out
    }

    fn with_kernel_dev(&mut self, link: &Path, mut st: Stat) -> Stat {
        st.kdev = self.mounts.kernel_dev(link, user_dev(st.kdev));
        st
    }

    fn mappings(&mut self, dir: &Path, who: Subject, rules: &Rules) -> Vec<Found> {
        let Ok(text) = std::fs::read(dir.join("maps")) else { return Vec::new() };
        // (dev, ino) → the index in `out` of the mapping reported for that file.
        let mut by_file: HashMap<(u32, u64), usize> = HashMap::new();
        let mut out = Vec::new();
        for line in text.split(|b| *b == b'\n').take(MAX_MAPS_LINES) {
            let Some(m) = parse_maps_line(line) else { continue };
            if m.ino == 0 || !m.path.starts_with(b"/") {
                continue;
            }
            let executable = m.perms.get(2) == Some(&b'x');
            let mut reasons = rules.by_name(&m.path);
            let len = m.end - m.start;
            if len >= rules.size_threshold {
                reasons |= reason::MAPPING_LEN;
            }
            if executable && rules.is_runtime_library(&m.path) {
                reasons = reason::RUNTIME_LIBRARY;
            }
            let link = dir.join("map_files").join(format!("{:x}-{:x}", m.start, m.end));
            let stat = *self.stats.entry((m.dev, m.ino)).or_insert_with(|| stat_link(&link));
            let Some(mut st) = stat else { continue };
            if st.mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            if reasons & reason::RUNTIME_LIBRARY == 0 && st.size >= rules.size_threshold {
                reasons |= reason::SIZE;
            }
            if reasons == 0 {
                continue;
            }
            // /proc/<pid>/maps prints the superblock's device: the kernel's own.
            st.kdev = m.dev;
            let bit = |at: usize, ch: u8, b: i32| if m.perms.get(at) == Some(&ch) { b as u32 } else { 0 };
            let prot = bit(0, b'r', libc::PROT_READ) | bit(1, b'w', libc::PROT_WRITE) | bit(2, b'x', libc::PROT_EXEC);
            let flags = if m.perms.get(3) == Some(&b's') { libc::MAP_SHARED } else { libc::MAP_PRIVATE } as u32;
            let found = Found::Map {
                who,
                file: file_found(&m.path, st, reasons),
                addr: m.start,
                len,
                offset: m.offset,
                prot,
                flags,
                at_start: true,
            };
            // One report per file: the largest mapping of a model, the executable one of a
            // library.
            match by_file.get(&(m.dev, m.ino)) {
                Some(&i) => {
                    if let Found::Map { len: had, .. } = &out[i]
                        && reasons & reason::RUNTIME_LIBRARY == 0
                        && len > *had
                    {
                        out[i] = found;
                    }
                }
                None => {
                    by_file.insert((m.dev, m.ino), out.len());
                    out.push(found);
                }
            }
        }
        out
    }
}

/// The name as the kernel's walk reports it, from what /proc prints: without the
/// " (deleted)" of an unlinked file, and a memfd as `memfd:<name>` (not under `/`).
/// Returns (name, is the path of a mounted filesystem).
fn displayed(target: &[u8]) -> (&[u8], bool) {
    let name = target.strip_suffix(b" (deleted)").unwrap_or(target);
    match name.strip_prefix(b"/") {
        Some(rest) if rest.starts_with(b"memfd:") => (rest, false),
        _ => (name, true),
    }
}

fn file_found(target: &[u8], st: Stat, reasons: u32) -> FileFound {
    let (name, complete) = displayed(target);
    let (path, raw) = match std::str::from_utf8(name) {
        Ok(t) => (t.to_owned(), None),
        Err(_) => (String::from_utf8_lossy(name).into_owned(), Some(name.to_vec())),
    };
    FileFound {
        path: KernelPath { path, raw, complete, truncated: false, disconnected: !complete },
        dev: st.kdev,
        ino: st.ino,
        size: st.size,
        mode: st.mode,
        ctime: st.ctime,
        reasons,
    }
}

/// One line of /proc/<pid>/maps.
#[derive(Debug, PartialEq, Eq)]
struct MapsLine {
    start: u64,
    end: u64,
    perms: Vec<u8>,
    offset: u64,
    /// Kernel-encoded device.
    dev: u32,
    ino: u64,
    /// The path, with the kernel's `\012` escape of a newline undone.
    path: Vec<u8>,
}

/// `7f00-7f80 r--s 00001000 08:01 1234   /path/with spaces (deleted)`
fn parse_maps_line(line: &[u8]) -> Option<MapsLine> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_ascii_start();
        let end = trimmed.iter().position(|b| *b == b' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        std::str::from_utf8(f).ok()
    };
    let (start, end) = field()?.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    let perms = field()?.as_bytes().to_vec();
    let offset = u64::from_str_radix(field()?, 16).ok()?;
    let (major, minor) = field()?.split_once(':')?;
    let dev = (u32::from_str_radix(major, 16).ok()? << 20) | u32::from_str_radix(minor, 16).ok()?;
    let ino = field()?.parse().ok()?;
    let path = rest.trim_ascii_start();
    let mut unescaped = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i..].starts_with(b"\\012") {
            unescaped.push(b'\n');
            i += 4;
        } else {
            unescaped.push(path[i]);
            i += 1;
        }
    }
    (end > start).then_some(MapsLine { start, end, perms, offset, dev, ino, path: unescaped })
}

/// Field 22 of /proc/<pid>/stat (the comm in field 2 may hold spaces and parentheses).
fn start_ticks(stat: &str) -> Option<u64> {
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(19)?.parse().ok()
}

/// The open flags of a descriptor, from its fdinfo (`flags:\t0100000`, octal).
fn fd_flags(fdinfo: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(fdinfo).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    u32::from_str_radix(v, 8).ok()
}

/// st_dev encoding of a kernel-encoded device (for the mount table's fallback).
fn user_dev(kdev: u32) -> u64 {
    libc::makedev(kdev >> 20, kdev & 0xf_ffff)
}

/// statx of what a /proc link leads to, from cached attributes (no round trip to a network
/// filesystem's server). `kdev` is filled from stat's device, kernel-encoded.
fn stat_link(link: &Path) -> Option<Stat> {
    let c = CString::new(link.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_INO | libc::STATX_SIZE | libc::STATX_CTIME;
    // SAFETY: c is a NUL-terminated path and stx a writable statx buffer.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_STATX_DONT_SYNC, mask, &mut stx) };
    (rc == 0).then(|| Stat {
        kdev: (stx.stx_dev_major << 20) | stx.stx_dev_minor,
        ino: stx.stx_ino,
        size: stx.stx_size,
        mode: u32::from(stx.stx_mode),
        ctime: (stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec),
    })
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsRawFd as _, unix::fs::MetadataExt as _};

    use super::*;

    #[test]
    fn maps_lines_parse_with_spaces_newlines_and_deleted_files() {
        let m = parse_maps_line(b"7f00a000-7f00c000 r--s 00001000 fd:01 1234     /srv/my model\\012x.gguf (deleted)")
            .unwrap();
        assert_eq!((m.start, m.end, m.offset, m.ino), (0x7f00_a000, 0x7f00_c000, 0x1000, 1234));
        assert_eq!(m.perms, b"r--s");
        assert_eq!(m.dev, (0xfd << 20) | 1);
        assert_eq!(m.path, b"/srv/my model\nx.gguf (deleted)");
        let anon = parse_maps_line(b"7ffd0000-7ffd1000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!((anon.ino, anon.path.as_slice()), (0, &b""[..]));
        assert!(parse_maps_line(b"garbage").is_none());
        assert!(parse_maps_line(b"2000-1000 r--p 0 00:00 0").is_none());
        assert_eq!(displayed(b"/memfd:w.gguf (deleted)"), (&b"memfd:w.gguf"[..], false));
        assert_eq!(displayed(b"/tmp/m.gguf (deleted)"), (&b"/tmp/m.gguf"[..], true));
        assert_eq!(start_ticks("9 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 x"), Some(777));
    }

    #[test]
    fn rules_select_like_the_kernel() {
        let r = Rules::new(&[".GGUF".into(), ".pt".into()], 100, vec![PathBuf::from("/models")], &["libllama".into()]);
        assert_eq!(r.by_name(b"/tmp/x.gguf"), reason::EXTENSION);
        assert_eq!(r.by_name(b"/tmp/X.Pt"), reason::EXTENSION);
        assert_eq!(r.by_name(b"/tmp/.gguf"), 0, "a bare extension is no name");
        assert_eq!(r.by_name(b"/models/sub/weights.bin"), reason::MODEL_DIR);
        assert_eq!(r.by_name(b"/modelsx/weights.bin"), 0);
        assert!(r.is_runtime_library(b"/usr/lib/libllama.so"));
        assert!(!r.is_runtime_library(b"/usr/lib/libc.so.6"));
    }

    /// The walk finds this process's own descriptor and mapping of a model (walking a /proc
    /// with only this process in it), and the holders walk only the descriptor of a known
    /// model.
    #[test]
    fn walks_find_held_and_mapped_models() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("walk.gguf");
        std::fs::write(&model, vec![0u8; 8192]).unwrap();
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, b"text").unwrap();
        let f = std::fs::File::open(&model).unwrap();
        let _g = std::fs::File::open(&other).unwrap();
        // SAFETY: mapping a file this test holds.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        assert_ne!(addr, libc::MAP_FAILED);
        let fake = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::os::unix::fs::symlink(format!("/proc/{me}"), fake.path().join(me.to_string())).unwrap();
        let rules = Rules::new(&[".gguf".into()], 1 << 30, Vec::new(), &[]);
        let mut mounts = MountDevs::default();
        let mut found = Vec::new();
        walk_all(fake.path(), 0, &Walk::AtStart(Arc::new(rules)), &mut mounts, &mut |f| {
            found.push(f);
            true
        });
        let md = std::fs::metadata(&model).unwrap();
        let path = model.to_str().unwrap();
        let open = found
            .iter()
            .find_map(|f| match f {
                Found::Open { file, fd, .. } if file.path.path == path => Some((file.clone(), *fd)),
                _ => None,
            })
            .expect("the descriptor");
        assert_eq!(
            (open.0.ino, open.0.size, open.0.reasons, open.1),
            (md.ino(), 8192, reason::EXTENSION, f.as_raw_fd())
        );
        let map =
            found.iter().find(|f| matches!(f, Found::Map { addr: a, .. } if *a == addr as u64)).expect("the mapping");
        let Found::Map { file, len, flags, .. } = map else { unreachable!() };
        assert_eq!((file.ino, *len, *flags), (md.ino(), 8192, libc::MAP_SHARED as u32));
        assert!(!found.iter().any(|f| matches!(f, Found::Open { file, .. } if file.path.path.ends_with("notes.txt"))));
        let Some(Found::Done(summary)) = found.last() else { panic!("no summary") };
        assert_eq!((summary.processes, summary.cut_short.as_deref()), (1, None));

        // Holders: only files known as models, by the kernel's device and inode.
        let models = Arc::new(HashSet::from([(open.0.dev, open.0.ino)]));
        let mut held = Vec::new();
        walk_all(fake.path(), 0, &Walk::Holders(models), &mut mounts, &mut |f| {
            held.push(f);
            true
        });
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(matches!(&held[0], Found::Open { file, fd, .. } if file.ino == md.ino() && *fd == f.as_raw_fd()));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr, 8192) };
    }
}
