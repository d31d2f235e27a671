//! The loader: loading and attaching the BPF programs (the probes, built from `sensor-ebpf`),
//! and the collector's handles on their maps.
//!
//! This module owns the preconditions (privileges, tracefs, BTF offsets), the list of attach
//! points, and every userspace read or write of a kernel map. It knows nothing about what the
//! events mean.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap, RingBuf, lpm_trie::Key},
    programs::{ProgramError, RawTracePoint, TracePoint},
};
use sensor_ebpf::{
    ABI_VERSION, DeviceUseKey, EventKind, ExtKey, FileId, InodeMark, IoctlKey, LIB_PREFIX_MAX, ProbeConfig, RateState,
    ReadKey, RuntimeProc, WatchedDevice, stat,
};

use crate::offsets::{self, OffsetError};

static PROBES_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/modelwatch-probes"));

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(transparent)]
    NotPrivileged(#[from] crate::privileges::MissingCapabilities),
    #[error(
        "tracefs is not mounted and mounting it failed ({0}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    Tracefs(std::io::Error),
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error("cannot load the probe object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused probe {program}: {detail}")]
    Verify { program: &'static str, detail: String },
    #[error("cannot attach probe {program} to {target}: {detail}")]
    Attach { program: &'static str, target: String, detail: String },
    #[error("probe object lacks map or program {0}")]
    Missing(&'static str),
    #[error(
        "the embedded probe object was built for ABI {object}, this collector speaks ABI {collector}: rebuild both together"
    )]
    Abi { object: String, collector: u32 },
    #[error("kernel map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
enum Target {
    TracePoint { category: &'static str },
    RawTracePoint,
}

struct Spec {
    /// Program name in the object.
    program: &'static str,
    /// Needed only where syscall arguments must be stashed at entry (not x86_64).
    stash_only: bool,
    /// Tracepoint name (for raw tracepoints, the raw tracepoint name).
    name: &'static str,
    target: Target,
    /// Optional programs are skipped (and reported) when their tracepoint does not exist, e.g.
    /// `open`/`creat`, which arm64 does not have.
    required: bool,
    /// Needs the io_uring members in the kernel's BTF.
    io_uring: bool,
    /// Reads syscall arguments at exit from the saved registers, and does nothing where they
    /// are not there (then it is not attached).
    regs_only: bool,
}

const fn tp(program: &'static str, name: &'static str, required: bool) -> Spec {
    Spec {
        program,
        name,
        target: Target::TracePoint { category: "syscalls" },
        required,
        stash_only: false,
        io_uring: false,
        regs_only: false,
    }
}

const fn enter(program: &'static str, required: bool) -> Spec {
    Spec {
        program,
        name: program,
        target: Target::TracePoint { category: "syscalls" },
        required,
        stash_only: true,
        io_uring: false,
        regs_only: false,
    }
}

/// The exit of a read syscall: how much of a model file a process read.
const fn read(name: &'static str) -> Spec {
    Spec {
        program: "sys_exit_read_any",
        name,
        target: Target::TracePoint { category: "syscalls" },
        required: false,
        stash_only: false,
        io_uring: false,
        regs_only: true,
    }
}

const fn sched(name: &'static str) -> Spec {
    Spec {
        program: name,
        name,
        target: Target::TracePoint { category: "sched" },
        required: true,
        stash_only: false,
        io_uring: false,
        regs_only: false,
    }
}

/// Attach points, in load order. A program listed twice is loaded once and attached to both.
const SPECS: &[Spec] = &[
    enter("sys_enter_openat", true),
    tp("sys_exit_open_any", "sys_exit_openat", true),
    enter("sys_enter_openat2", false),
    tp("sys_exit_open_any", "sys_exit_openat2", false),
    enter("sys_enter_open", false),
    tp("sys_exit_open_any", "sys_exit_open", false),
    enter("sys_enter_creat", false),
    tp("sys_exit_open_any", "sys_exit_creat", false),
    enter("sys_enter_open_by_handle_at", false),
    tp("sys_exit_open_any", "sys_exit_open_by_handle_at", false),
    enter("sys_enter_mmap", true),
    tp("sys_exit_mmap", "sys_exit_mmap", true),
    tp("sys_enter_ioctl", "sys_enter_ioctl", true),
    read("sys_exit_read"),
    read("sys_exit_pread64"),
    read("sys_exit_readv"),
    read("sys_exit_preadv"),
    read("sys_exit_preadv2"),
    sched("sched_process_exec"),
    sched("sched_process_exit"),
    Spec {
        program: "sched_process_fork",
        name: "sched_process_fork",
        target: Target::RawTracePoint,
        required: true,
        stash_only: false,
        io_uring: false,
        regs_only: false,
    },
    Spec {
        program: "io_uring_complete",
        name: "io_uring_complete",
        target: Target::TracePoint { category: "io_uring" },
        required: false,
        stash_only: false,
        io_uring: true,
        regs_only: false,
    },
];

/// What the collector asks of the probes.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub size_threshold: u64,
    /// Candidate opens per second of a runtime process (0: no widening).
    pub runtime_budget: u32,
    /// File records per second per process, and the burst above that (0: no limit).
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub ring_buffer_bytes: u32,
    pub self_tgid: u32,
    pub btf_path: PathBuf,
}

/// Loaded and attached probes. Dropping this detaches everything.
pub struct Probes {
    _ebpf: Ebpf,
    /// `category/name` of every attached program.
    pub attached: Vec<String>,
    /// Optional programs whose tracepoint this kernel lacks.
    pub skipped: Vec<String>,
}

/// The collector's handles on the kernel maps.
pub struct KernelMaps {
    extensions: HashMap<MapData, ExtKey, u8>,
    runtime_libs: LpmTrie<MapData, [u8; LIB_PREFIX_MAX], u8>,
    model_dirs: HashMap<MapData, FileId, u8>,
    dir_verdict: HashMap<MapData, FileId, u8>,
    inode_marks: HashMap<MapData, FileId, InodeMark>,
    model_reads: PerCpuHashMap<MapData, ReadKey, u64>,
    read_skip: HashMap<MapData, FileId, u8>,
    runtime_procs: HashMap<MapData, u32, RuntimeProc>,
    runtime_present: aya::maps::Array<MapData, u32>,
    rate: HashMap<MapData, u32, RateState>,
    watched: HashMap<MapData, u32, WatchedDevice>,
    ioctl_counts: PerCpuHashMap<MapData, IoctlKey, u64>,
    device_seen: HashMap<MapData, DeviceUseKey, u8>,
    stats: PerCpuArray<MapData, u64>,
    proc_devices: HashMap<MapData, u32, u32>,
    model_dirs_present: aya::maps::Array<MapData, u32>,
    model_dir_count: u32,
}

/// Checks privileges, mounts tracefs if needed, resolves offsets, loads and attaches.
/// Returns the probes, the map handles and the event ring buffer.
pub fn load(settings: &LoadSettings) -> Result<(Probes, KernelMaps, RingBuf<MapData>), LoaderError> {
    check_privileges()?;
    ensure_tracefs()?;
    raise_memlock();
    check_abi(PROBES_OBJECT)?;
    let offsets = offsets::resolve(&settings.btf_path)?;
    let from_regs = args_from_regs(&offsets);
    let rate_interval_ns = match settings.rate_per_sec {
        0 => 0,
        r => 1_000_000_000 / u64::from(r),
    };
    let config = ProbeConfig {
        exit_group_dead_off: exit_group_dead_offset(),
        self_tgid: settings.self_tgid,
        size_threshold: settings.size_threshold,
        args_from_regs: u32::from(from_regs),
        nr_openat: syscall_nr(Sys::Openat),
        nr_openat2: syscall_nr(Sys::Openat2),
        nr_open: syscall_nr(Sys::Open),
        nr_creat: syscall_nr(Sys::Creat),
        nr_open_by_handle_at: syscall_nr(Sys::OpenByHandleAt),
        io_uring_fixed: u32::from(offsets::has_io_uring_fixed_files(&offsets)),
        runtime_budget: settings.runtime_budget,
        rate_interval_ns,
        rate_burst_ns: rate_interval_ns.saturating_mul(u64::from(settings.rate_burst.saturating_sub(1))),
    };
    let mut ebpf = EbpfLoader::new()
        .override_global("KERNEL_OFFSETS", &offsets, true)
        .override_global("PROBE_CONFIG", &config, true)
        .map_max_entries("EVENTS", settings.ring_buffer_bytes)
        .load(PROBES_OBJECT)
        .map_err(LoaderError::Load)?;

    let io_uring = offsets::has_io_uring(&offsets) && io_uring_complete_layout_known();
    let (attached, skipped) = attach_all(&mut ebpf, from_regs, io_uring)?;

    let maps = KernelMaps::take(&mut ebpf)?;
    let events = take(&mut ebpf, "EVENTS", RingBuf::try_from)?;
    Ok((Probes { _ebpf: ebpf, attached, skipped }, maps, events))
}

/// Loads and attaches every program of `ebpf` to its attach points. Returns the attached and
/// the skipped (optional, absent on this kernel) attach points.
fn attach_all(ebpf: &mut Ebpf, from_regs: bool, io_uring: bool) -> Result<(Vec<String>, Vec<String>), LoaderError> {
    let mut attached = Vec::new();
    let mut skipped = Vec::new();
    let started = std::time::Instant::now();
    for spec in SPECS.iter().filter(|s| if from_regs { !s.stash_only } else { !s.regs_only }) {
        let target = match spec.target {
            Target::TracePoint { category } => format!("{category}/{}", spec.name),
            Target::RawTracePoint => format!("raw_tracepoint/{}", spec.name),
        };
        if spec.io_uring && !io_uring {
            tracing::warn!(tracepoint = %target, "this kernel's io_uring (BTF members or record layout) is not the one the probe reads; probe skipped");
            skipped.push(target);
            continue;
        }
        if let Target::TracePoint { category } = spec.target
            && !tracepoint_exists(category, spec.name)
        {
            if spec.required {
                return Err(LoaderError::Attach {
                    program: spec.program,
                    target,
                    detail: "this kernel has no such tracepoint".into(),
                });
            }
            tracing::warn!(tracepoint = %target, "tracepoint missing on this kernel; probe skipped");
            skipped.push(target);
            continue;
        }
        let program = ebpf.program_mut(spec.program).ok_or(LoaderError::Missing(spec.program))?;
        let attach_err = |e: ProgramError| LoaderError::Attach {
            program: spec.program,
            target: target.clone(),
            detail: e.to_string(),
        };
        match spec.target {
            Target::TracePoint { category } => {
                let p: &mut TracePoint = program.try_into().map_err(|_| LoaderError::Missing(spec.program))?;
                if p.fd().is_err() {
                    p.load().map_err(|e| verify_err(spec.program, e))?;
                }
                p.attach(category, spec.name).map_err(attach_err)?;
            }
            Target::RawTracePoint => {
                let p: &mut RawTracePoint = program.try_into().map_err(|_| LoaderError::Missing(spec.program))?;
                if p.fd().is_err() {
                    p.load().map_err(|e| verify_err(spec.program, e))?;
                }
                p.attach(spec.name).map_err(attach_err)?;
            }
        }
        tracing::debug!(
            program = spec.program,
            tracepoint = spec.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "attached"
        );
        attached.push(target);
    }
    Ok((attached, skipped))
}

/// Loads another object's programs (named like the probes) on the probes' attach points: the
/// benchmarks attach empty programs this way to measure the kernel's own cost of them.
pub fn load_on_probe_points(object: &[u8], btf: &Path) -> Result<(Ebpf, Vec<String>), LoaderError> {
    check_privileges()?;
    ensure_tracefs()?;
    raise_memlock();
    check_abi(object)?;
    let offsets = offsets::resolve(btf)?;
    let from_regs = args_from_regs(&offsets);
    let mut ebpf = EbpfLoader::new().load(object).map_err(LoaderError::Load)?;
    let io_uring = offsets::has_io_uring(&offsets) && io_uring_complete_layout_known();
    let (attached, _) = attach_all(&mut ebpf, from_regs, io_uring)?;
    Ok((ebpf, attached))
}

/// Whether the open programs read syscall arguments from the saved registers at exit.
/// MODELWATCH_ARGS=stash forces the entry-stash path (what non-x86_64 kernels get), so it is
/// exercised on x86_64 too.
fn args_from_regs(offsets: &sensor_ebpf::KernelOffsets) -> bool {
    let forced_stash = std::env::var_os("MODELWATCH_ARGS").is_some_and(|v| v == "stash");
    offsets.regs_arg != [0; 6] && !forced_stash
}

/// Where the exit record says whether the group died (0: not there, read signal->live).
/// MODELWATCH_EXIT=live forces the older kernels' path, so it is exercised here too.
fn exit_group_dead_offset() -> u32 {
    if std::env::var_os("MODELWATCH_EXIT").is_some_and(|v| v == "live") {
        return 0;
    }
    tracepoint_field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0)
}

/// Refuses an object built against another ABI than this collector's (a stale build product).
fn check_abi(object: &[u8]) -> Result<(), LoaderError> {
    use object::{Object as _, ObjectSection as _};
    let found = object::File::parse(object)
        .ok()
        .and_then(|elf| elf.section_by_name("modelwatch_abi")?.data().ok()?.get(..4)?.try_into().ok())
        .map(u32::from_le_bytes);
    match found {
        Some(v) if v == ABI_VERSION => Ok(()),
        other => Err(LoaderError::Abi {
            object: other.map_or_else(|| "none (no modelwatch_abi section)".to_owned(), |v| v.to_string()),
            collector: ABI_VERSION,
        }),
    }
}

/// Whether the io_uring_complete record has `ctx`, `req` and `res` where the probe reads them
/// (offsets 8, 16, 32: every kernel since 5.19; older ones have no `req`).
fn io_uring_complete_layout_known() -> bool {
    let f = |name| tracepoint_field_offset("io_uring", "io_uring_complete", name);
    (f("ctx"), f("req"), f("res")) == (Some(8), Some(16), Some(32))
}

/// Byte offset of `field` in a tracepoint's record, from its tracefs format description.
fn tracepoint_field_offset(category: &str, name: &str, field: &str) -> Option<u32> {
    let path = tracefs_root()?.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path).ok()?;
    format_field_offset(&text, field)
}

/// Parses `field:bool group_dead;\toffset:32;\tsize:1;...` lines of a tracefs format file.
fn format_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        if decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()? != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:"))?.parse().ok()
    })
}

enum Sys {
    Openat,
    Openat2,
    Open,
    Creat,
    OpenByHandleAt,
}

/// This architecture's number for a syscall (`u32::MAX` where it does not exist).
fn syscall_nr(s: Sys) -> u32 {
    let nr: i64 = match s {
        Sys::Openat => libc::SYS_openat,
        Sys::Openat2 => libc::SYS_openat2,
        Sys::OpenByHandleAt => libc::SYS_open_by_handle_at,
        #[cfg(target_arch = "x86_64")]
        Sys::Open => libc::SYS_open,
        #[cfg(target_arch = "x86_64")]
        Sys::Creat => libc::SYS_creat,
        #[cfg(not(target_arch = "x86_64"))]
        Sys::Open | Sys::Creat => return u32::MAX,
    };
    nr as u32
}

fn verify_err(program: &'static str, e: ProgramError) -> LoaderError {
    let detail = match &e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            // The last lines of the verifier log say why; the rest is a trace.
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if io_error.raw_os_error() == Some(libc::EPERM) {
                format!("{io_error} (program type not permitted here)\n{}", tail.join("\n"))
            } else {
                format!("{io_error}\n{}", tail.join("\n"))
            }
        }
        other => other.to_string(),
    };
    LoaderError::Verify { program, detail }
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, LoaderError> {
    let map = ebpf.take_map(name).ok_or(LoaderError::Missing(name))?;
    convert(map).map_err(|source| LoaderError::Map { map: name, source })
}

fn check_privileges() -> Result<(), LoaderError> {
    Ok(crate::privileges::require(crate::privileges::PROBES)?)
}

const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn tracefs_root() -> Option<&'static Path> {
    TRACEFS.iter().map(Path::new).find(|p| p.join("events").is_dir())
}

fn tracepoint_exists(category: &str, name: &str) -> bool {
    tracefs_root().is_some_and(|root| root.join("events").join(category).join(name).is_dir())
}

fn ensure_tracefs() -> Result<(), LoaderError> {
    if tracefs_root().is_some() {
        return Ok(());
    }
    let c = |s: &str| CString::new(s).expect("static string");
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS[0]), c("tracefs"));
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(LoaderError::Tracefs(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted tracefs at {}", TRACEFS[0]);
    Ok(())
}

fn raise_memlock() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones use memcg and ignore it.
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: rlim is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Records written to the ring buffer, by [`EventKind::index`].
    pub produced: [u64; EventKind::COUNT],
    /// Records the ring buffer had no room for, by [`EventKind::index`].
    pub dropped: [u64; EventKind::COUNT],
    pub pending_full: u64,
    pub ioctl_counts_full: u64,
    pub ioctl_gate_full: u64,
    pub path_truncated: u64,
    pub read_failed: u64,
    pub ioctls_counted: u64,
    pub rate_limited: u64,
    pub rate_map_full: u64,
    pub runtime_budget: u64,
    pub runtime_map_full: u64,
    pub model_reads_full: u64,
    pub io_uring_unresolved: u64,
    pub marks_invalidated: u64,
    pub nocmtime_full: u64,
}

impl KernelStats {
    pub fn produced_total(&self) -> u64 {
        self.produced.iter().sum()
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl KernelMaps {
    fn take(ebpf: &mut Ebpf) -> Result<Self, LoaderError> {
        Ok(Self {
            extensions: take(ebpf, "EXTENSIONS", HashMap::try_from)?,
            runtime_libs: take(ebpf, "RUNTIME_LIBS", LpmTrie::try_from)?,
            model_dirs: take(ebpf, "MODEL_DIRS", HashMap::try_from)?,
            dir_verdict: take(ebpf, "DIR_VERDICT", HashMap::try_from)?,
            inode_marks: take(ebpf, "INODE_MARKS", HashMap::try_from)?,
            model_reads: take(ebpf, "MODEL_READS", PerCpuHashMap::try_from)?,
            read_skip: take(ebpf, "READ_SKIP", HashMap::try_from)?,
            runtime_procs: take(ebpf, "RUNTIME_PROCS", HashMap::try_from)?,
            runtime_present: take(ebpf, "RUNTIME_PRESENT", aya::maps::Array::try_from)?,
            rate: take(ebpf, "RATE", HashMap::try_from)?,
            watched: take(ebpf, "WATCHED_DEVICES", HashMap::try_from)?,
            ioctl_counts: take(ebpf, "IOCTL_COUNTS", PerCpuHashMap::try_from)?,
            device_seen: take(ebpf, "DEVICE_SEEN", HashMap::try_from)?,
            stats: take(ebpf, "STATS", PerCpuArray::try_from)?,
            proc_devices: take(ebpf, "PROC_DEVICES", HashMap::try_from)?,
            model_dirs_present: take(ebpf, "MODEL_DIRS_PRESENT", aya::maps::Array::try_from)?,
            model_dir_count: 0,
        })
    }

    /// Makes the kernel's extension filter exactly `exts`: new ones are added first, then those
    /// no longer listed removed (a configuration reload), so no listed extension is ever out.
    pub fn set_extensions<'a>(&mut self, exts: impl IntoIterator<Item = &'a str>) -> Result<(), LoaderError> {
        let wanted: Vec<ExtKey> = exts.into_iter().filter_map(sensor_ebpf::ext_key).collect();
        for key in &wanted {
            self.extensions.insert(key, 1, 0).map_err(|source| LoaderError::Map { map: "EXTENSIONS", source })?;
        }
        let stale: Vec<ExtKey> =
            self.extensions.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for key in stale {
            self.extensions.remove(&key).map_err(|source| LoaderError::Map { map: "EXTENSIONS", source })?;
        }
        Ok(())
    }

    pub fn set_runtime_libraries<'a>(
        &mut self,
        prefixes: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), LoaderError> {
        let wanted: Vec<(u32, [u8; LIB_PREFIX_MAX])> = prefixes
            .into_iter()
            .map(|prefix| {
                let bytes = prefix.as_bytes();
                let n = bytes.len().min(LIB_PREFIX_MAX);
                let mut data = [0u8; LIB_PREFIX_MAX];
                data[..n].copy_from_slice(&bytes[..n]);
                ((n * 8) as u32, data)
            })
            .collect();
        for &(bits, data) in &wanted {
            let key = Key::new(bits, data);
            self.runtime_libs.insert(&key, 1, 0).map_err(|source| LoaderError::Map { map: "RUNTIME_LIBS", source })?;
        }
        // Those no longer listed (a configuration reload) go after the new ones are in.
        let stale: Vec<Key<[u8; LIB_PREFIX_MAX]>> = self
            .runtime_libs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.iter().any(|&(bits, data)| k.prefix_len() == bits && k.data() == data))
            .collect();
        for key in stale {
            self.runtime_libs.remove(&key).map_err(|source| LoaderError::Map { map: "RUNTIME_LIBS", source })?;
        }
        Ok(())
    }

    /// Adds model directories and forgets cached per-directory verdicts, which may now be
    /// wrong. Returns how many of `dirs` (a prefix) are in force: on an error, the ones before
    /// it are, and the caller retries the rest later.
    pub fn add_model_dirs(&mut self, dirs: &[FileId]) -> (usize, Result<(), LoaderError>) {
        let mut added = 0;
        let mut result = Ok(());
        for id in dirs {
            if let Err(source) = self.model_dirs.insert(*id, 1, 0) {
                result = Err(LoaderError::Map { map: "MODEL_DIRS", source });
                break;
            }
            added += 1;
        }
        if added == 0 {
            return (0, result);
        }
        let keys: Vec<FileId> = self.dir_verdict.keys().filter_map(Result::ok).collect();
        for k in keys {
            // Entries may vanish under us (LRU); that is the outcome we want anyway.
            let _ = self.dir_verdict.remove(&k);
        }
        self.model_dir_count += added as u32;
        if let Err(source) = self.model_dirs_present.set(0, self.model_dir_count, 0) {
            // The count gates the lookups: without it none of the directories is in force.
            self.model_dir_count -= added as u32;
            return (0, Err(LoaderError::Map { map: "MODEL_DIRS_PRESENT", source }));
        }
        (added, result)
    }

    /// Takes model directories out of the filter (a configuration reload dropped them) and
    /// forgets cached per-directory verdicts, which may now be wrong. Returns how many were in
    /// the map.
    pub fn remove_model_dirs(&mut self, dirs: &[FileId]) -> Result<usize, LoaderError> {
        let mut removed = 0u32;
        for id in dirs {
            if self.model_dirs.remove(id).is_ok() {
                removed += 1;
            }
        }
        let keys: Vec<FileId> = self.dir_verdict.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.dir_verdict.remove(&k);
        }
        self.model_dir_count = self.model_dir_count.saturating_sub(removed);
        self.model_dirs_present
            .set(0, self.model_dir_count, 0)
            .map_err(|source| LoaderError::Map { map: "MODEL_DIRS_PRESENT", source })?;
        Ok(removed as usize)
    }

    /// Marks a process as holding a watched device (found in /proc at start): its ioctls are
    /// counted from now on.
    pub fn add_device_user(&mut self, tgid: u32) -> Result<(), LoaderError> {
        self.proc_devices.insert(tgid, 1, 0).map_err(|source| LoaderError::Map { map: "PROC_DEVICES", source })
    }

    pub fn mark_inode(&mut self, id: FileId, mark: InodeMark) -> Result<(), LoaderError> {
        if mark.verdict == sensor_ebpf::mark::MODEL {
            // Its io_uring reads count from now on, even if one was judged before it was known.
            let _ = self.read_skip.remove(&id);
        }
        self.inode_marks.insert(id, mark, 0).map_err(|source| LoaderError::Map { map: "INODE_MARKS", source })
    }

    /// Makes `tgid` a runtime process (its opens become identification candidates); `flags`
    /// are `sensor_ebpf::runtime` bits, added to what the kernel knows.
    pub fn add_runtime_process(&mut self, tgid: u32, flags: u32) -> Result<(), LoaderError> {
        let map = |source| LoaderError::Map { map: "RUNTIME_PROCS", source };
        let mut entry = self.runtime_procs.get(&tgid, 0).unwrap_or_default();
        entry.flags |= flags;
        self.runtime_procs.insert(tgid, entry, 0).map_err(map)?;
        // After the insert, as the kernel does (see refresh_runtime_present).
        self.runtime_present.set(0, 1, 0).map_err(|source| LoaderError::Map { map: "RUNTIME_PRESENT", source })
    }

    /// Clears the runtime-process gate when no process is one, so that ordinary opens skip the
    /// lookup again. The kernel sets the gate after each insert, so a check after the clear
    /// catches an insert that raced with it.
    pub fn refresh_runtime_present(&mut self) {
        let empty = |m: &HashMap<MapData, u32, RuntimeProc>| m.keys().next().is_none();
        if !empty(&self.runtime_procs) || self.runtime_present.get(&0, 0).is_ok_and(|v| v == 0) {
            return;
        }
        let _ = self.runtime_present.set(0, 0, 0);
        if !empty(&self.runtime_procs) {
            let _ = self.runtime_present.set(0, 1, 0);
        }
    }

    /// Cumulative bytes read through io_uring per (process, model file), summed over CPUs.
    pub fn model_reads(&self) -> Vec<(ReadKey, u64)> {
        self.model_reads.iter().filter_map(Result::ok).map(|(k, per_cpu)| (k, per_cpu.iter().sum())).collect()
    }

    /// Cumulative rate-limited records per process.
    pub fn rate_drops(&self) -> Vec<(u32, u64)> {
        self.rate.iter().filter_map(Result::ok).filter(|(_, s)| s.dropped > 0).map(|(t, s)| (t, s.dropped)).collect()
    }

    pub fn watch_device(&mut self, rdev: u32, class: u32) -> Result<(), LoaderError> {
        self.watched
            .insert(rdev, WatchedDevice { class, _pad0: 0 }, 0)
            .map_err(|source| LoaderError::Map { map: "WATCHED_DEVICES", source })
    }

    /// Current cumulative ioctl counts, summed over CPUs.
    pub fn ioctl_counts(&self) -> Vec<(IoctlKey, u64)> {
        self.ioctl_counts.iter().filter_map(Result::ok).map(|(k, per_cpu)| (k, per_cpu.iter().sum())).collect()
    }

    /// Forgets processes that exited: their counters and first-use flags (pids get reused).
    /// One pass over each map for the whole batch.
    pub fn forget_processes(&mut self, tgids: &std::collections::HashSet<u32>) {
        let keys: Vec<IoctlKey> =
            self.ioctl_counts.keys().filter_map(Result::ok).filter(|k| tgids.contains(&k.tgid)).collect();
        for k in keys {
            let _ = self.ioctl_counts.remove(&k);
        }
        let keys: Vec<DeviceUseKey> =
            self.device_seen.keys().filter_map(Result::ok).filter(|k| tgids.contains(&k.tgid)).collect();
        for k in keys {
            let _ = self.device_seen.remove(&k);
        }
    }

    /// Forgets the io_uring read counts of processes that exited (after their last drain).
    pub fn forget_reads(&mut self, tgids: &std::collections::HashSet<u32>) {
        let keys: Vec<ReadKey> =
            self.model_reads.keys().filter_map(Result::ok).filter(|k| tgids.contains(&k.tgid)).collect();
        for k in keys {
            let _ = self.model_reads.remove(&k);
        }
    }

    /// Forgets the rate state of processes that exited: the kernel leaves the entry of a
    /// process it held back, so that its drops can be reported first.
    pub fn forget_rate(&mut self, tgids: &std::collections::HashSet<u32>) {
        for tgid in tgids {
            let _ = self.rate.remove(tgid);
        }
    }

    pub fn stats(&self) -> KernelStats {
        let slot = |i: u32| -> u64 { self.stats.get(&i, 0).map_or(0, |v| v.iter().sum()) };
        let mut s = KernelStats::default();
        for kind in EventKind::ALL {
            let i = kind.index() as usize;
            s.produced[i] = slot(stat::produced(kind));
            s.dropped[i] = slot(stat::dropped(kind));
        }
        s.pending_full = slot(stat::PENDING_FULL);
        s.ioctl_counts_full = slot(stat::IOCTL_COUNTS_FULL);
        s.ioctl_gate_full = slot(stat::IOCTL_GATE_FULL);
        s.path_truncated = slot(stat::PATH_TRUNCATED);
        s.read_failed = slot(stat::READ_FAILED);
        s.ioctls_counted = slot(stat::IOCTLS_COUNTED);
        s.rate_limited = slot(stat::RATE_LIMITED);
        s.rate_map_full = slot(stat::RATE_MAP_FULL);
        s.runtime_budget = slot(stat::RUNTIME_BUDGET);
        s.runtime_map_full = slot(stat::RUNTIME_MAP_FULL);
        s.model_reads_full = slot(stat::MODEL_READS_FULL);
        s.io_uring_unresolved = slot(stat::IO_URING_UNRESOLVED);
        s.marks_invalidated = slot(stat::MARKS_INVALIDATED);
        s.nocmtime_full = slot(stat::NOCMTIME_FULL);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_objects_carry_this_abi_and_others_are_refused() {
        check_abi(PROBES_OBJECT).unwrap();
        let err = check_abi(b"not an ELF file").unwrap_err().to_string();
        assert!(err.contains("none (no modelwatch_abi section)") && err.contains(&ABI_VERSION.to_string()), "{err}");
    }

    #[test]
    fn tracepoint_format_fields() {
        let format = "name: sched_process_exit\nID: 369\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n\n\
            print fmt: \"comm=%s pid=%d group_dead=%s\"";
        assert_eq!(format_field_offset(format, "group_dead"), Some(32));
        assert_eq!(format_field_offset(format, "pid"), Some(24));
        assert_eq!(format_field_offset(format, "dead"), None, "whole names only");
        assert_eq!(format_field_offset("field:bool group_dead;\toffset:lots;", "group_dead"), None);
        assert_eq!(format_field_offset("\u{0}garbage;;;\nfield:;offset:", "group_dead"), None);
    }

    /// Against this machine's tracefs: the field the exit probe relies on where the kernel
    /// has it (6.16+), absent before.
    #[test]
    #[ignore = "needs root (tracefs is root-only): `cargo xtask test` runs the root_ unit tests"]
    fn root_real_exit_tracepoint_format() {
        let Some(root) = tracefs_root() else {
            panic!("tracefs is not mounted: these tests run as root on a kernel with tracefs");
        };
        let text = std::fs::read_to_string(root.join("events/sched/sched_process_exit/format")).unwrap();
        assert_eq!(
            tracepoint_field_offset("sched", "sched_process_exit", "group_dead"),
            format_field_offset(&text, "group_dead")
        );
        assert_eq!(tracepoint_field_offset("sched", "sched_process_exit", "pid"), Some(24));
    }

    /// This kernel (6.18) has the io_uring completion record the probe reads at fixed offsets.
    #[test]
    fn real_io_uring_complete_format() {
        assert!(io_uring_complete_layout_known());
        assert_eq!(tracepoint_field_offset("io_uring", "io_uring_complete", "user_data"), Some(24));
    }
}
