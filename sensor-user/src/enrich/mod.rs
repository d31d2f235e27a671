//! Enrichment: turns decoded kernel records plus process-table entries into schema events
//! ([`artifact`] does the same for artifact reports).
//! Pure functions of their inputs; the sensor loop decides what to emit.

pub mod artifact;

use sensor_ebpf::{EventKind, reason, syscall, user_dev_from_kernel};

use crate::{
    accel::{
        discovery::DeviceInfo,
        ioctls::{self, IoctlCategory as Cat},
    },
    decode::{FileMmap, FileOpen, KernelPath},
    host::BootClock,
    loader::KernelStats,
    process::ProcessInfo,
    proto::v1::{
        Event, FileRef, Host, IoctlCategory, IoctlCount, KernelCounters, MatchReason, ModelFileOpened, ModelMapped,
        Process, ProcessExit, event::Payload,
    },
};

/// Builds envelopes: host block, process block and times.
#[derive(Debug, Clone)]
pub struct Enricher {
    pub clock: BootClock,
    pub host: Host,
}

impl Enricher {
    pub fn new(host: Host) -> Self {
        Self { clock: BootClock::new(), host }
    }

    /// An event at kernel time `ktime_ns` about `process` (thread `tid`).
    pub fn event(&self, ktime_ns: u64, process: Option<(&ProcessInfo, u32)>, payload: Payload) -> Event {
        Event {
            event_time: Some(self.clock.to_timestamp(ktime_ns)),
            host: Some(self.host.clone()),
            process: process.map(|(p, tid)| self.process(p, tid)),
            payload: Some(payload),
            ..Default::default()
        }
    }

    pub fn process(&self, p: &ProcessInfo, tid: u32) -> Process {
        Process {
            entity_id: p.entity_id.clone(),
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            user: p.user.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            cgroup_id: p.cgroup_id,
            container_id: p.container_id.clone(),
            start_time: Some(self.clock.to_timestamp(p.start_boottime_ns)),
            parent_entity_id: p.parent_entity_id.clone(),
            comm: p.comm.clone(),
            tid: if tid != p.pid { tid } else { 0 },
            gid: p.gid,
            cmdline_truncated: p.cmdline_truncated,
        }
    }
}

pub fn match_reasons(bits: u32) -> Vec<i32> {
    const MAP: [(u32, MatchReason); 8] = [
        (reason::EXTENSION, MatchReason::Extension),
        (reason::REQUESTED_EXTENSION, MatchReason::RequestedExtension),
        (reason::SIZE, MatchReason::Size),
        (reason::MODEL_DIR, MatchReason::ModelDir),
        (reason::MARKED_MODEL, MatchReason::KnownModel),
        (reason::MAPPING_LEN, MatchReason::MappingLength),
        (reason::RUNTIME_LIBRARY, MatchReason::RuntimeLibrary),
        (reason::RUNTIME_PROCESS, MatchReason::RuntimeProcess),
    ];
    MAP.iter().filter(|(b, _)| bits & b != 0).map(|(_, r)| *r as i32).collect()
}

/// How the sensor learnt of an open or a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The kernel reported the syscall.
    Kernel,
    /// The walk of /proc at start found it already there.
    PresentAtStart,
    /// The periodic walk of /proc found a process holding a known model it was never seen
    /// opening.
    HeldDescriptor,
}

impl Origin {
    fn reason(self) -> Option<MatchReason> {
        match self {
            Self::Kernel => None,
            Self::PresentAtStart => Some(MatchReason::PresentAtStart),
            Self::HeldDescriptor => Some(MatchReason::HeldDescriptor),
        }
    }
}

/// The reasons of an event: the kernel's bits, then how the sensor learnt of it.
fn reasons_of(bits: u32, origin: Origin) -> Vec<i32> {
    let mut r = match_reasons(bits);
    r.extend(origin.reason().map(|x| x as i32));
    r
}

/// "read", "write" or "read_write" from open flags; "path" for O_PATH, which grants neither.
pub fn access(flags: u32) -> &'static str {
    if flags & libc::O_PATH as u32 != 0 {
        return "path";
    }
    match flags & 0o3 {
        0 => "read",
        1 => "write",
        _ => "read_write",
    }
}

fn syscall_name(s: u32) -> &'static str {
    match s {
        syscall::OPENAT => "openat",
        syscall::OPENAT2 => "openat2",
        syscall::OPEN => "open",
        syscall::CREAT => "creat",
        syscall::IO_URING => "io_uring",
        syscall::OPEN_BY_HANDLE_AT => "open_by_handle_at",
        _ => "unknown",
    }
}

pub fn file_ref(path: &KernelPath, requested: &str, ino: u64, dev: u32, size: u64, mode: u32) -> FileRef {
    FileRef {
        path: path.path.clone(),
        path_bytes: path.raw.clone().unwrap_or_default(),
        path_truncated: path.truncated,
        requested_path: if requested == path.path { String::new() } else { requested.to_owned() },
        inode: ino,
        device: user_dev_from_kernel(dev),
        size,
        mode,
    }
}

pub fn open_payload(o: &FileOpen, origin: Origin) -> ModelFileOpened {
    let e = &o.raw;
    ModelFileOpened {
        file: Some(file_ref(&o.path, &o.requested, e.ino, e.dev, e.size, e.mode)),
        flags: e.flags,
        access: access(e.flags).into(),
        reasons: reasons_of(e.reasons, origin),
        fd: e.fd,
        syscall: if origin == Origin::Kernel { syscall_name(e.syscall).into() } else { String::new() },
        artifact: None,
        repeats: 0,
    }
}

pub fn mmap_payload(m: &FileMmap, origin: Origin) -> ModelMapped {
    let e = &m.raw;
    let runtime_library = if e.reasons & reason::RUNTIME_LIBRARY != 0 {
        m.path.path.rsplit('/').next().unwrap_or("").to_owned()
    } else {
        String::new()
    };
    ModelMapped {
        file: Some(file_ref(&m.path, "", e.ino, e.dev, e.size, 0)),
        length: e.len,
        offset: e.offset,
        address: e.addr,
        prot: e.prot,
        flags: e.flags,
        reasons: reasons_of(e.reasons, origin),
        runtime_library,
        artifact: None,
    }
}

/// Kernel counters as the schema reports them.
pub fn kernel_counters(s: &KernelStats) -> KernelCounters {
    let by_kind = |v: &[u64]| EventKind::ALL.iter().map(|k| (k.name().to_owned(), v[k.index() as usize])).collect();
    KernelCounters {
        produced: s.produced_total(),
        dropped: s.dropped_total(),
        produced_by_kind: by_kind(&s.produced),
        dropped_by_kind: by_kind(&s.dropped),
        pending_full: s.pending_full,
        ioctl_counts_full: s.ioctl_counts_full,
        ioctl_gate_full: s.ioctl_gate_full,
        paths_truncated: s.path_truncated,
        read_failures: s.read_failed,
        ioctls_counted: s.ioctls_counted,
        rate_limited: s.rate_limited,
        rate_map_full: s.rate_map_full,
        runtime_budget: s.runtime_budget,
        runtime_map_full: s.runtime_map_full,
        model_reads_full: s.model_reads_full,
        io_uring_unresolved: s.io_uring_unresolved,
        marks_invalidated: s.marks_invalidated,
        nocmtime_full: s.nocmtime_full,
    }
}

/// Decodes a `wait(2)` status.
pub fn exit_payload(raw: u32, duration_ns: u64) -> ProcessExit {
    let signal = (raw & 0x7f) as i32;
    ProcessExit {
        exit_code: if signal == 0 { ((raw >> 8) & 0xff) as i32 } else { 0 },
        signal,
        core_dumped: signal != 0 && raw & 0x80 != 0,
        raw_status: raw,
        duration_ns,
    }
}

pub fn category(c: Cat) -> IoctlCategory {
    match c {
        Cat::Setup => IoctlCategory::Setup,
        Cat::Memory => IoctlCategory::Memory,
        Cat::Submit => IoctlCategory::Submit,
        Cat::Sync => IoctlCategory::Sync,
        Cat::Query => IoctlCategory::Query,
        Cat::Other => IoctlCategory::Other,
        Cat::Unknown => IoctlCategory::Unknown,
    }
}

/// A decoded count of `cmd` on `device`.
pub fn ioctl_count(device: Option<&DeviceInfo>, cmd: u32, count: u64) -> IoctlCount {
    let info = device.and_then(|d| ioctls::decode(d.driver, cmd));
    IoctlCount {
        cmd,
        name: info.map(|i| i.name.to_owned()).unwrap_or_default(),
        category: category(info.map_or(Cat::Unknown, |i| i.category)) as i32,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        let x = exit_payload(3 << 8, 5);
        assert_eq!((x.exit_code, x.signal, x.core_dumped), (3, 0, false));
        let x = exit_payload(9, 0);
        assert_eq!((x.exit_code, x.signal, x.core_dumped), (0, 9, false));
        let x = exit_payload(11 | 0x80, 0);
        assert_eq!((x.signal, x.core_dumped), (11, true));
    }

    #[test]
    fn reasons_and_access() {
        assert_eq!(
            match_reasons(reason::EXTENSION | reason::SIZE),
            vec![MatchReason::Extension as i32, MatchReason::Size as i32]
        );
        assert_eq!(access(0), "read");
        assert_eq!(access(0o1 | 0o100), "write");
        assert_eq!(access(0o2), "read_write");
        assert_eq!(access(libc::O_PATH as u32), "path");
        assert_eq!(access(libc::O_PATH as u32 | libc::O_CLOEXEC as u32), "path");
        assert_eq!(
            reasons_of(reason::EXTENSION, Origin::PresentAtStart),
            vec![MatchReason::Extension as i32, MatchReason::PresentAtStart as i32]
        );
    }

    #[test]
    fn file_ref_omits_identical_requested_path_and_converts_dev() {
        let p = KernelPath { path: "/m/x.gguf".into(), complete: true, ..Default::default() };
        let f = file_ref(&p, "/m/x.gguf", 1, 0x80_0001, 2, 0o100644);
        assert_eq!(f.requested_path, "");
        assert_eq!(f.device, 0x801);
        assert_eq!(file_ref(&p, "x.gguf", 1, 0, 2, 0).requested_path, "x.gguf");
        assert!(f.path_bytes.is_empty());
        let raw = KernelPath { path: "/m/\u{fffd}".into(), raw: Some(b"/m/\xff".to_vec()), ..Default::default() };
        assert_eq!(file_ref(&raw, "", 1, 0, 2, 0).path_bytes, b"/m/\xff");
    }
}
