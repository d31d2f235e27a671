//! Decoding of ring-buffer records into owned Rust values.
//!
//! Records come from the kernel but are still treated as untrusted input: every length is
//! checked against the record before it is used, unknown kinds and short records are errors
//! (counted by the caller), and nothing here panics.
//!
//! A decoded value embeds its record's fixed part as the kernel wrote it (`raw`, the ABI's
//! `#[repr(C)]` type) and adds only what needed decoding: the tail (paths, names, arguments).
//! Header fields are read from `raw.header` ([`KernelEvent::header`]; [`comm`] decodes the
//! command name).

use sensor_ebpf::{
    DeviceIoctlEvent, EventHeader, EventKind, FileMmapEvent, FileOpenEvent, ProcessExecEvent, ProcessExitEvent,
    ProcessForkEvent, Record, path_flag, read_plain,
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

/// A path rebuilt in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelPath {
    /// Absolute when `complete`; otherwise the suffix that was recovered. Lossy when the name
    /// is not UTF-8 (then `raw` holds the exact bytes).
    pub path: String,
    /// The exact bytes of the path, only when they are not valid UTF-8.
    pub raw: Option<Vec<u8>>,
    pub complete: bool,
    pub truncated: bool,
    /// The walk ended at a filesystem root that is not mounted (pseudo filesystems).
    pub disconnected: bool,
}

/// A decoded record: its fixed part plus what its tail holds.
trait Decode: Sized {
    /// The record's fixed part; its [`Record::KIND`] is the kind this type decodes.
    type Raw: Record;

    /// Decodes the tail that follows `raw`; `tail` is exactly the rest of the record.
    fn from_parts(raw: Self::Raw, tail: &[u8]) -> Result<Self, DecodeError>;
}

/// The decode table, one row per kind: `Variant(DecodedType) <= EventKind`. It generates
/// [`KernelEvent`], its header accessor and the dispatch by kind. The dispatch matches every
/// [`EventKind`], so a kind added to the ABI table does not compile until it has a row here,
/// and a row whose decoded type reads another kind's record fails a constant assertion.
macro_rules! kernel_events {
    ($( $(#[$meta:meta])* $variant:ident($decoded:ident) <= $kind:ident, )+) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum KernelEvent {
            $( $(#[$meta])* $variant($decoded), )+
        }

        impl KernelEvent {
            /// The record's header, as the kernel wrote it (its size and kind were checked).
            pub fn header(&self) -> &EventHeader {
                match self {
                    $( Self::$variant(e) => &e.raw.header, )+
                }
            }
        }

        /// Decodes a record whose header says `kind` and whose length matches the header.
        fn decode_kind(kind: EventKind, record: &[u8]) -> Result<KernelEvent, DecodeError> {
            match kind {
                $(
                    EventKind::$kind => decode_as::<$decoded>(record).map(KernelEvent::$variant),
                )+
            }
        }

        $(
            const _: () = assert!(
                <<$decoded as Decode>::Raw as Record>::KIND as u16 == EventKind::$kind as u16,
                concat!(stringify!($decoded), " does not decode ", stringify!($kind), " records"),
            );
        )+
    };
}

kernel_events! {
    Exec(ProcessExec) <= ProcessExec,
    Fork(ProcessFork) <= ProcessFork,
    Exit(ProcessExit) <= ProcessExit,
    Open(FileOpen) <= FileOpen,
    Mmap(FileMmap) <= FileMmap,
    DeviceIoctl(DeviceIoctl) <= DeviceFirstIoctl,
}

/// An open of a file the kernel judged reportable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpen {
    pub raw: FileOpenEvent,
    pub path: KernelPath,
    /// The name as passed by the caller.
    pub requested: String,
}

impl FileOpen {
    /// The caller's name filled the capture buffer (see [`path_flag::NAME_TRUNCATED`]).
    pub fn requested_truncated(&self) -> bool {
        self.raw.path_flags & path_flag::NAME_TRUNCATED != 0
    }
}

impl Decode for FileOpen {
    type Raw = FileOpenEvent;

    fn from_parts(raw: FileOpenEvent, tail: &[u8]) -> Result<Self, DecodeError> {
        let [name, path] = segments(FileOpenEvent::KIND, tail, [raw.name_len, raw.path_len])?;
        Ok(Self { path: kernel_path(path, raw.path_flags), requested: c_string(name), raw })
    }
}

/// A file-backed mapping the kernel judged reportable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMmap {
    pub raw: FileMmapEvent,
    pub path: KernelPath,
}

impl Decode for FileMmap {
    type Raw = FileMmapEvent;

    fn from_parts(raw: FileMmapEvent, tail: &[u8]) -> Result<Self, DecodeError> {
        let [path] = segments(FileMmapEvent::KIND, tail, [raw.path_len])?;
        Ok(Self { path: kernel_path(path, raw.path_flags), raw })
    }
}

/// The first ioctl of a thread group on a watched device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIoctl {
    pub raw: DeviceIoctlEvent,
}

impl Decode for DeviceIoctl {
    type Raw = DeviceIoctlEvent;

    fn from_parts(raw: DeviceIoctlEvent, _tail: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self { raw })
    }
}

/// A successful exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExec {
    pub raw: ProcessExecEvent,
    pub args: Vec<String>,
    /// The filename as passed to exec.
    pub filename: String,
    pub exe: KernelPath,
}

impl ProcessExec {
    /// argv was longer than the kernel captures ([`sensor_ebpf::ARGS_MAX`]).
    pub fn args_truncated(&self) -> bool {
        self.raw.args_truncated != 0
    }
}

impl Decode for ProcessExec {
    type Raw = ProcessExecEvent;

    fn from_parts(raw: ProcessExecEvent, tail: &[u8]) -> Result<Self, DecodeError> {
        let [args, filename, path] =
            segments(ProcessExecEvent::KIND, tail, [raw.args_len, raw.filename_len, raw.path_len])?;
        Ok(Self { args: split_args(args), filename: c_string(filename), exe: kernel_path(path, raw.path_flags), raw })
    }
}

/// A new process; the header describes the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFork {
    pub raw: ProcessForkEvent,
}

impl Decode for ProcessFork {
    type Raw = ProcessForkEvent;

    fn from_parts(raw: ProcessForkEvent, _tail: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self { raw })
    }
}

/// The last thread of a process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    pub raw: ProcessExitEvent,
}

impl Decode for ProcessExit {
    type Raw = ProcessExitEvent;

    fn from_parts(raw: ProcessExitEvent, _tail: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self { raw })
    }
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<KernelEvent, DecodeError> {
    let header: EventHeader = read_plain(record).ok_or(DecodeError::NoHeader(record.len()))?;
    let kind = EventKind::from_u16(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let declared = header.size as usize;
    if declared != record.len() {
        return Err(DecodeError::SizeMismatch { kind: kind.name(), declared, actual: record.len() });
    }
    decode_kind(kind, record)
}

/// Splits `record` into `T`'s fixed part and the tail, and decodes the tail.
fn decode_as<T: Decode>(record: &[u8]) -> Result<T, DecodeError> {
    let kind = T::Raw::KIND;
    let need = size_of::<T::Raw>();
    let short = || DecodeError::Short { kind: kind.name(), need, actual: record.len() };
    let (fixed, tail) = record.split_at_checked(need).ok_or_else(short)?;
    let raw = read_plain(fixed).ok_or_else(short)?;
    T::from_parts(raw, tail)
}

/// The command name of the task the record is about (lossy UTF-8: `comm` is bytes).
pub fn comm(header: &EventHeader) -> String {
    c_string(&header.comm)
}

/// Splits the tail into consecutive segments of the given lengths (the record's own fields).
fn segments<const N: usize>(kind: EventKind, tail: &[u8], lens: [u32; N]) -> Result<[&[u8]; N], DecodeError> {
    let lens = lens.map(|l| l as usize);
    let total = lens.iter().try_fold(0usize, |acc, l| acc.checked_add(*l));
    match total {
        Some(t) if t <= tail.len() => {}
        _ => {
            return Err(DecodeError::TailOverflow {
                kind: kind.name(),
                segments: lens.iter().fold(0usize, |a, l| a.saturating_add(*l)),
                available: tail.len(),
            });
        }
    }
    let mut out = [&tail[..0]; N];
    let mut rest = tail;
    for (slot, len) in out.iter_mut().zip(lens) {
        // Within bounds: the lengths' sum was checked against the tail above.
        let (segment, after) = rest.split_at(len);
        *slot = segment;
        rest = after;
    }
    Ok(out)
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
    let mut path = Vec::with_capacity(bytes.len() + 1);
    if complete {
        path.push(b'/');
    }
    if !body.is_empty() {
        for (i, component) in body.rsplit(|b| *b == 0).enumerate() {
            if i > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(component);
        }
    }
    // File names are bytes: keep them exactly when they are not text.
    let (path, raw) = match String::from_utf8(path) {
        Ok(text) => (text, None),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(e.into_bytes())),
    };
    KernelPath { path, raw, complete, truncated, disconnected }
}

#[cfg(test)]
mod tests {
    use sensor_ebpf::{fixed_size, plain_bytes, reason};

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

    /// `ev` with its header filled in for its kind and a record length that includes `tail`.
    fn with_header<R: Record>(ev: R, tail: &[u8]) -> (R, Vec<u8>) {
        let h = header(R::KIND, size_of::<R>() + tail.len());
        // Every record starts with its header (the ABI checks that at compile time).
        let mut bytes = plain_bytes(&ev).to_vec();
        bytes[..size_of::<EventHeader>()].copy_from_slice(plain_bytes(&h));
        let ev = read_plain(&bytes).unwrap();
        bytes.extend_from_slice(tail);
        (ev, bytes)
    }

    fn open_record(name: &[u8], path: &[u8], flags: u32) -> (FileOpenEvent, Vec<u8>) {
        let ev = FileOpenEvent {
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
        with_header(ev, &[name, path].concat())
    }

    fn exec_record() -> (ProcessExecEvent, Vec<u8>) {
        let args = b"python3\0serve.py\0--port\08080\0";
        let filename = b"/usr/bin/python3\0";
        let path = b"python3.11\0bin\0usr\0";
        let ev = ProcessExecEvent {
            ppid: 1,
            old_pid: 10,
            args_len: args.len() as u32,
            filename_len: filename.len() as u32,
            path_len: path.len() as u32,
            path_flags: path_flag::COMPLETE,
            ..Default::default()
        };
        with_header(ev, &[&args[..], filename, path].concat())
    }

    /// One good record of every kind.
    fn one_of_each() -> Vec<Vec<u8>> {
        let mmap = FileMmapEvent {
            ino: 42,
            len: 1 << 20,
            path_len: 7,
            path_flags: path_flag::TRUNCATED,
            ..Default::default()
        };
        let ioctl = DeviceIoctlEvent { rdev: 0x10_0003, cmd: 0x5401, fd: 4, ..Default::default() };
        let fork = ProcessForkEvent { child_tgid: 99, child_start_boottime_ns: 12345, ..Default::default() };
        let exit = ProcessExitEvent { exit_code: 3 << 8, ppid: 1, ..Default::default() };
        vec![
            exec_record().1,
            with_header(fork, b"").1,
            with_header(exit, b"").1,
            open_record(b"a.gguf\0", b"a.gguf\0tmp\0", path_flag::COMPLETE).1,
            with_header(mmap, b"a.gguf\0").1,
            with_header(ioctl, b"").1,
        ]
    }

    #[test]
    fn open_record_decodes_with_reversed_path() {
        let (ev, rec) = open_record(b"x.gguf\0", b"x.gguf\0models\0home\0", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!("not an open") };
        assert_eq!(o.raw, ev, "the fixed part is the record as written");
        assert_eq!(o.path.path, "/home/models/x.gguf");
        assert!(o.path.complete && !o.path.truncated);
        assert_eq!(o.requested, "x.gguf");
        assert!(!o.requested_truncated());
        assert_eq!(comm(&o.raw.header), "llama-server");
        assert_eq!(o.raw.header.tgid, 10);
        assert_eq!(o.raw.size, 4 << 30);
        assert_eq!(o.raw.reasons, reason::EXTENSION | reason::SIZE);
    }

    #[test]
    fn paths_that_are_not_utf8_keep_their_exact_bytes() {
        let (_, rec) = open_record(b"m\xff.gguf\0", b"m\xff.gguf\0tmp\0", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.path, "/tmp/m\u{fffd}.gguf");
        assert_eq!(o.path.raw.as_deref(), Some(&b"/tmp/m\xff.gguf"[..]));
        let (_, rec) = open_record(b"m.gguf\0", b"m.gguf\0tmp\0", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.raw, None, "set only when needed");
    }

    #[test]
    fn root_and_truncated_paths() {
        let (_, rec) = open_record(b"/\0", b"", path_flag::COMPLETE);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.path, "/");
        let (_, rec) = open_record(b"", b"c\0b\0", path_flag::TRUNCATED | path_flag::NAME_TRUNCATED);
        let KernelEvent::Open(o) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(o.path.path, "b/c");
        assert!(o.path.truncated && !o.path.complete);
        assert!(o.requested_truncated());
    }

    #[test]
    fn every_kind_decodes_and_keeps_its_header() {
        let records = one_of_each();
        assert_eq!(records.len(), EventKind::COUNT);
        for (rec, kind) in records.iter().zip(EventKind::ALL) {
            let ev = decode(rec).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let h = ev.header();
            assert_eq!((h.kind, h.size as usize), (kind as u16, rec.len()), "{kind:?}");
            assert_eq!(plain_bytes(h), &rec[..size_of::<EventHeader>()], "{kind:?}");
        }
    }

    #[test]
    fn hostile_records_are_errors_not_panics() {
        for good in one_of_each() {
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
        }
        // A record that claims a kind with a larger fixed part than it has.
        let (_, small) = with_header(ProcessExitEvent::default(), b"");
        let mut bad = small.clone();
        bad[0..2].copy_from_slice(&(EventKind::FileMmap as u16).to_ne_bytes());
        let need = fixed_size(EventKind::FileMmap);
        assert_eq!(decode(&bad), Err(DecodeError::Short { kind: "file_mmap", need, actual: small.len() }));
        // Segment lengths that overflow the tail, including u32::MAX.
        let (_, good) = open_record(b"a.gguf\0", b"a.gguf\0tmp\0", path_flag::COMPLETE);
        for len in [1000u32, u32::MAX] {
            let mut bad = good.clone();
            let off = std::mem::offset_of!(FileOpenEvent, path_len);
            bad[off..off + 4].copy_from_slice(&len.to_ne_bytes());
            assert!(matches!(decode(&bad), Err(DecodeError::TailOverflow { .. })), "{len}");
        }
    }

    #[test]
    fn exec_record_splits_args_and_path() {
        let (ev, rec) = exec_record();
        let KernelEvent::Exec(e) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(e.raw, ev);
        assert_eq!(e.args, ["python3", "serve.py", "--port", "8080"]);
        assert!(!e.args_truncated());
        assert_eq!(e.filename, "/usr/bin/python3");
        assert_eq!(e.exe.path, "/usr/bin/python3.11");
        assert_eq!(e.raw.ppid, 1);
    }

    #[test]
    fn fixed_only_records_decode() {
        let (ev, rec) = with_header(ProcessExitEvent { exit_code: 3 << 8, ppid: 1, ..Default::default() }, b"");
        let KernelEvent::Exit(e) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(e.raw, ev);
        assert_eq!(e.raw.exit_code, 768);
        let (ev, rec) =
            with_header(DeviceIoctlEvent { rdev: 0x10_0003, cmd: 0x5401, fd: 4, ..Default::default() }, b"");
        let KernelEvent::DeviceIoctl(d) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(d.raw, ev);
        assert_eq!((d.raw.rdev, d.raw.cmd, d.raw.fd), (0x10_0003, 0x5401, 4));
        let fork = ProcessForkEvent { child_tgid: 99, child_start_boottime_ns: 12345, ..Default::default() };
        let (ev, rec) = with_header(fork, b"");
        let KernelEvent::Fork(f) = decode(&rec).unwrap() else { panic!() };
        assert_eq!(f.raw, ev);
        assert_eq!((f.raw.child_tgid, f.raw.child_start_boottime_ns), (99, 12345));
    }
}
