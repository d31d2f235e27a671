//! Decoding of ring-buffer records into owned Rust values.
//!
//! Records come from the kernel but are still treated as untrusted input: every length is
//! checked against the record before it is used, unknown kinds and short records are errors
//! (counted by the caller), and nothing here panics.

use sensor_ebpf::{
    DeviceIoctlEvent, EventHeader, EventKind, FileMmapEvent, FileOpenEvent, Plain, ProcessExecEvent, ProcessExitEvent,
    ProcessForkEvent, fixed_size, path_flag, read_plain,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than a header")]
    NoHeader(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("{kind} record: header says {declared} bytes, ring buffer gave {actual}")]
    SizeMismatch { kind: &'static str, declared: usize, actual: usize },
    #[error("{kind} record of {actual} bytes is shorter than its fixed part ({need})")]
    Short { kind: &'static str, need: usize, actual: usize },
    #[error("{kind} record: tail segments of {segments} bytes overflow the {available} available")]
    TailOverflow { kind: &'static str, segments: usize, available: usize },
}

/// Header fields common to every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: EventKind,
    pub ktime_ns: u64,
    pub start_boottime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
}

/// A path rebuilt in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelPath {
    /// Absolute when `complete`; otherwise the suffix that was recovered.
    pub path: String,
    pub complete: bool,
    pub truncated: bool,
    /// The walk ended at a filesystem root that is not mounted (pseudo filesystems).
    pub disconnected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpen {
    pub header: Header,
    pub ino: u64,
    pub size: u64,
    pub dev: u32,
    pub rdev: u32,
    pub flags: u32,
    pub mode: u32,
    pub fd: i32,
    pub reasons: u32,
    pub syscall: u32,
    pub path: KernelPath,
    /// The name as passed by the caller.
    pub requested: String,
    pub requested_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMmap {
    pub header: Header,
    pub ino: u64,
    pub size: u64,
    pub len: u64,
    pub offset: u64,
    pub addr: u64,
    pub dev: u32,
    pub prot: u32,
    pub flags: u32,
    pub fd: i32,
    pub reasons: u32,
    pub path: KernelPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIoctl {
    pub header: Header,
    pub rdev: u32,
    pub cmd: u32,
    pub fd: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExec {
    pub header: Header,
    pub ppid: u32,
    pub old_pid: u32,
    pub args: Vec<String>,
    pub args_truncated: bool,
    pub filename: String,
    pub exe: KernelPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFork {
    pub header: Header,
    pub child_tgid: u32,
    pub child_start_boottime_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    pub header: Header,
    pub exit_code: u32,
    pub ppid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Exec(ProcessExec),
    Fork(ProcessFork),
    Exit(ProcessExit),
    Open(FileOpen),
    Mmap(FileMmap),
    DeviceIoctl(DeviceIoctl),
}

impl KernelEvent {
    pub fn header(&self) -> &Header {
        match self {
            KernelEvent::Exec(e) => &e.header,
            KernelEvent::Fork(e) => &e.header,
            KernelEvent::Exit(e) => &e.header,
            KernelEvent::Open(e) => &e.header,
            KernelEvent::Mmap(e) => &e.header,
            KernelEvent::DeviceIoctl(e) => &e.header,
        }
    }
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read_plain(record).ok_or(DecodeError::NoHeader(record.len()))?;
    let kind = EventKind::from_u16(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
    let name = kind.name();
    let declared = raw.size as usize;
    if declared != record.len() {
        return Err(DecodeError::SizeMismatch { kind: name, declared, actual: record.len() });
    }
    let need = fixed_size(kind);
    if record.len() < need {
        return Err(DecodeError::Short { kind: name, need, actual: record.len() });
    }
    let header = header(kind, &raw);
    let tail = &record[need..];
    Ok(match kind {
        EventKind::FileOpen => {
            let e: FileOpenEvent = fixed(record)?;
            let [name_bytes, path_bytes] = segments(name, tail, [e.name_len as usize, e.path_len as usize])?;
            KernelEvent::Open(FileOpen {
                header,
                ino: e.ino,
                size: e.size,
                dev: e.dev,
                rdev: e.rdev,
                flags: e.flags,
                mode: e.mode,
                fd: e.fd,
                reasons: e.reasons,
                syscall: e.syscall,
                path: kernel_path(path_bytes, e.path_flags),
                requested: c_string(name_bytes),
                requested_truncated: e.path_flags & path_flag::NAME_TRUNCATED != 0,
            })
        }
        EventKind::FileMmap => {
            let e: FileMmapEvent = fixed(record)?;
            let [path_bytes] = segments(name, tail, [e.path_len as usize])?;
            KernelEvent::Mmap(FileMmap {
                header,
                ino: e.ino,
                size: e.size,
                len: e.len,
                offset: e.offset,
                addr: e.addr,
                dev: e.dev,
                prot: e.prot,
                flags: e.flags,
                fd: e.fd,
                reasons: e.reasons,
                path: kernel_path(path_bytes, e.path_flags),
            })
        }
        EventKind::DeviceFirstIoctl => {
            let e: DeviceIoctlEvent = fixed(record)?;
            KernelEvent::DeviceIoctl(DeviceIoctl { header, rdev: e.rdev, cmd: e.cmd, fd: e.fd })
        }
        EventKind::ProcessExec => {
            let e: ProcessExecEvent = fixed(record)?;
            let [args, filename, path] =
                segments(name, tail, [e.args_len as usize, e.filename_len as usize, e.path_len as usize])?;
            KernelEvent::Exec(ProcessExec {
                header,
                ppid: e.ppid,
                old_pid: e.old_pid,
                args: split_args(args),
                args_truncated: e.args_truncated != 0,
                filename: c_string(filename),
                exe: kernel_path(path, e.path_flags),
            })
        }
        EventKind::ProcessFork => {
            let e: ProcessForkEvent = fixed(record)?;
            KernelEvent::Fork(ProcessFork {
                header,
                child_tgid: e.child_tgid,
                child_start_boottime_ns: e.child_start_boottime_ns,
            })
        }
        EventKind::ProcessExit => {
            let e: ProcessExitEvent = fixed(record)?;
            KernelEvent::Exit(ProcessExit { header, exit_code: e.exit_code, ppid: e.ppid })
        }
    })
}

fn fixed<T: Plain>(record: &[u8]) -> Result<T, DecodeError> {
    // The caller checked the length against `fixed_size`; this cannot fail, but must not panic.
    read_plain(record).ok_or(DecodeError::NoHeader(record.len()))
}

/// Splits the tail into consecutive segments of the given lengths.
fn segments<'a, const N: usize>(
    kind: &'static str,
    tail: &'a [u8],
    lens: [usize; N],
) -> Result<[&'a [u8]; N], DecodeError> {
    let total = lens.iter().try_fold(0usize, |acc, l| acc.checked_add(*l));
    match total {
        Some(t) if t <= tail.len() => {}
        _ => {
            return Err(DecodeError::TailOverflow {
                kind,
                segments: lens.iter().fold(0usize, |a, l| a.saturating_add(*l)),
                available: tail.len(),
            });
        }
    }
    let mut out = [&tail[..0]; N];
    let mut at = 0;
    for (slot, len) in out.iter_mut().zip(lens) {
        *slot = &tail[at..at + len];
        at += len;
    }
    Ok(out)
}

fn header(kind: EventKind, h: &EventHeader) -> Header {
    Header {
        kind,
        ktime_ns: h.ktime_ns,
        start_boottime_ns: h.start_boottime_ns,
        cgroup_id: h.cgroup_id,
        pid: h.pid,
        tgid: h.tgid,
        uid: h.uid,
        gid: h.gid,
        comm: c_string(&h.comm),
    }
}

/// Bytes up to the first NUL, lossily as UTF-8 (file names are bytes; the stream is text).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn split_args(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Rebuilds a path from NUL-terminated components written leaf first, in one allocation.
fn kernel_path(bytes: &[u8], flags: u32) -> KernelPath {
    let complete = flags & path_flag::COMPLETE != 0;
    let truncated = flags & path_flag::TRUNCATED != 0;
    let disconnected = flags & path_flag::DISCONNECTED != 0;
    // The last component is followed by a NUL; without it the pieces are the components.
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    let mut path = String::with_capacity(bytes.len() + 1);
    if complete {
        path.push('/');
    }
    if !body.is_empty() {
        for (i, component) in body.rsplit(|b| *b == 0).enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&String::from_utf8_lossy(component));
        }
    }
    KernelPath { path, complete, truncated, disconnected }
}

#[cfg(test)]
mod tests {
    use sensor_ebpf::{plain_bytes, reason};

    use super::*;

    fn header(kind: EventKind, size: usize) -> EventHeader {
        EventHeader {
            kind: kind as u16,
            size: size as u32,
            ktime_ns: 1_000,
            start_boottime_ns: 500,
            cgroup_id: 7,
            pid: 11,
            tgid: 10,
            uid: 1000,
            gid: 1000,
            comm: *b"llama-server\0\0\0\0",
            ..Default::default()
        }
    }

    fn open_record(name: &[u8], path: &[u8], flags: u32) -> Vec<u8> {
        let size = fixed_size(EventKind::FileOpen) + name.len() + path.len();
        let ev = FileOpenEvent {
            header: header(EventKind::FileOpen, size),
            ino: 42,
            size: 4 << 30,
            dev: 0x80_0001,
            flags: 0,
            mode: 0o100644,
            fd: 3,
            reasons: reason::EXTENSION | reason::SIZE,
            syscall: sensor_ebpf::syscall::OPENAT,
            path_flags: flags,
            name_len: name.len() as u32,
            path_len: path.len() as u32,
            ..Default::default()
        };
        let mut v = plain_bytes(&ev).to_vec();
        v.extend_from_slice(name);
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn open_record_decodes_with_reversed_path() {
        let rec = open_record(b"x.gguf\0", b"x.gguf\0models\0home\0", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!("not an open") };
        assert_eq!(o.path.path, "/home/models/x.gguf");
        assert!(o.path.complete && !o.path.truncated);
        assert_eq!(o.requested, "x.gguf");
        assert_eq!(o.header.comm, "llama-server");
        assert_eq!(o.header.tgid, 10);
        assert_eq!(o.size, 4 << 30);
        assert_eq!(o.reasons, reason::EXTENSION | reason::SIZE);
    }

    #[test]
    fn root_and_truncated_paths() {
        let rec = open_record(b"/\0", b"", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.path, "/");
        let rec = open_record(b"", b"c\0b\0", path_flag::TRUNCATED);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.path, "b/c");
        assert!(o.path.truncated && !o.path.complete);
    }

    #[test]
    fn hostile_records_are_errors_not_panics() {
        let good = open_record(b"a.gguf\0", b"a.gguf\0tmp\0", path_flag::COMPLETE);
        // Every truncation of a good record is rejected.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        // A header whose size disagrees with the record.
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&(good.len() as u32 + 1).to_ne_bytes());
        assert!(matches!(decode(&bad), Err(DecodeError::SizeMismatch { .. })));
        // Unknown kind.
        let mut bad = good.clone();
        bad[0..2].copy_from_slice(&999u16.to_ne_bytes());
        assert_eq!(decode(&bad), Err(DecodeError::UnknownKind(999)));
        // Segment lengths that overflow the tail, including u32::MAX.
        for len in [1000u32, u32::MAX] {
            let mut bad = good.clone();
            let off = std::mem::offset_of!(FileOpenEvent, path_len);
            bad[off..off + 4].copy_from_slice(&len.to_ne_bytes());
            assert!(matches!(decode(&bad), Err(DecodeError::TailOverflow { .. })), "{len}");
        }
    }

    #[test]
    fn exec_record_splits_args_and_path() {
        let args = b"python3\0serve.py\0--port\08080\0";
        let filename = b"/usr/bin/python3\0";
        let path = b"python3.11\0bin\0usr\0";
        let size = fixed_size(EventKind::ProcessExec) + args.len() + filename.len() + path.len();
        let ev = ProcessExecEvent {
            header: header(EventKind::ProcessExec, size),
            ppid: 1,
            old_pid: 10,
            args_len: args.len() as u32,
            args_truncated: 0,
            filename_len: filename.len() as u32,
            path_len: path.len() as u32,
            path_flags: path_flag::COMPLETE,
            _pad0: 0,
        };
        let mut rec = plain_bytes(&ev).to_vec();
        rec.extend_from_slice(args);
        rec.extend_from_slice(filename);
        rec.extend_from_slice(path);
        let KernelEvent::Exec(e) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(e.args, ["python3", "serve.py", "--port", "8080"]);
        assert_eq!(e.filename, "/usr/bin/python3");
        assert_eq!(e.exe.path, "/usr/bin/python3.11");
        assert_eq!(e.ppid, 1);
    }

    #[test]
    fn fixed_only_records_decode() {
        let size = fixed_size(EventKind::ProcessExit);
        let ev = ProcessExitEvent { header: header(EventKind::ProcessExit, size), exit_code: 3 << 8, ppid: 1 };
        let KernelEvent::Exit(e) = decode(plain_bytes(&ev)).unwrap() else { panic!() };
        assert_eq!(e.exit_code, 768);
        let size = fixed_size(EventKind::DeviceFirstIoctl);
        let ev = DeviceIoctlEvent {
            header: header(EventKind::DeviceFirstIoctl, size),
            rdev: 0x10_0003,
            cmd: 0x5401,
            fd: 4,
            _pad0: 0,
        };
        let KernelEvent::DeviceIoctl(d) = decode(plain_bytes(&ev)).unwrap() else { panic!() };
        assert_eq!((d.rdev, d.cmd, d.fd), (0x10_0003, 0x5401, 4));
        let size = fixed_size(EventKind::ProcessFork);
        let ev = ProcessForkEvent {
            header: header(EventKind::ProcessFork, size),
            child_tgid: 99,
            _pad0: 0,
            child_start_boottime_ns: 12345,
        };
        let KernelEvent::Fork(f) = decode(plain_bytes(&ev)).unwrap() else { panic!() };
        assert_eq!((f.child_tgid, f.child_start_boottime_ns), (99, 12345));
    }
}
