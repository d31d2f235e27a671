//! The kernel/user ABI of modelwatch: every type that crosses the boundary between the BPF
//! programs (this crate's binary) and the collector (`sensor-user`).
//!
//! Rules that keep both sides honest:
//! - every type is `#[repr(C)]`, has no `bool` and no implicit padding (explicit `_pad` fields,
//!   checked by the `size_of` assertions at the bottom);
//! - every ring-buffer record starts with [`EventHeader`], whose `size` is the total record
//!   length, so the decoder can reject short or oversized records before touching the payload;
//! - event kinds are one table (`event_kinds!`): stable numbers in ranges ([`EventKind`]), never
//!   reused, with their names, record types and counter slots generated from it;
//! - variable-length data (paths, names, arguments) travels in a tail after the fixed part, with
//!   its segment lengths in the fixed part.
//!
//! The `user` feature adds `aya::Pod` impls so the collector can put these types into maps and
//! read-only globals.
#![no_std]

#[cfg(test)]
extern crate std;

/// Bumped whenever a fixed layout below changes. Each BPF object carries the version it was
/// built with (section `modelwatch_abi`); the collector refuses to load one that differs.
pub const ABI_VERSION: u32 = 5;

pub const TASK_COMM_LEN: usize = 16;

/// Longest absolute path the kernel reconstructs (bytes of component data, NULs included).
pub const PATH_MAX_BYTES: usize = 4096;
/// Most dentries (and mount crossings) walked per path; deeper paths are flagged truncated.
pub const PATH_MAX_COMPONENTS: u32 = 48;
/// Bytes read per path component: NAME_MAX (255) plus its NUL.
pub const COMPONENT_MAX: usize = 256;
/// Longest name as passed by the caller to open(2) that is captured.
pub const REQUESTED_NAME_MAX: usize = 4096;
/// Longest argument block (NUL-separated argv) captured at exec.
pub const ARGS_MAX: usize = 2048;
/// Longest exec filename captured.
pub const FILENAME_MAX: usize = 1024;
/// Longest file extension (without the dot) the kernel compares.
pub const EXT_MAX: usize = 16;
/// Bytes of a shared-library file name compared against the runtime-library prefixes.
pub const LIB_PREFIX_MAX: usize = 32;
/// Size of the tail scratch area: two path-sized regions plus one component of slack, so a
/// masked offset plus one component write always stays inside.
pub const TAIL_MAX: usize = 2 * PATH_MAX_BYTES + COMPONENT_MAX;
/// Mask applied to offsets into the tail so the verifier sees them bounded.
pub const TAIL_OFFSET_MASK: usize = 2 * PATH_MAX_BYTES - 1;

/// Generates everything about event kinds from one table, so a new kind is one row.
///
/// Each row is `Variant = number => RecordType, "name";` and yields: the [`EventKind`] variant
/// with its stable wire number; its place in [`EventKind::ALL`] and its dense
/// [`EventKind::index`] (both the row's position); [`EventKind::from_u16`]; [`EventKind::name`];
/// [`fixed_size`] (the record type's size); and [`Record::KIND`] on the record type, so code that
/// holds a record knows its kind. Everything is `const` and a plain `match`, so the BPF programs
/// see constants.
///
/// The compiler checks the table: a reused number is a duplicate discriminant, a record type
/// used for two kinds a conflicting `Record` impl, a record that does not start with its
/// [`EventHeader`] fails the layout assertion below, as do more kinds than
/// [`stat::KIND_SLOTS`], a repeated name or a record size that is not a multiple of 8.
macro_rules! event_kinds {
    ($( $(#[$meta:meta])* $kind:ident = $num:literal => $record:ty, $name:literal; )+) => {
        /// Stable event numbers, grouped in ranges: 1xx process lifecycle, 2xx files,
        /// 3xx accelerators. A number is never reused.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $( $(#[$meta])* $kind = $num, )+
        }

        /// The rows' positions: the compiler numbers these variants 0, 1, 2 … in table order.
        #[repr(u32)]
        enum KindPosition {
            $( $kind, )+
        }

        impl EventKind {
            /// Number of kinds in the table.
            pub const COUNT: usize = [$( KindPosition::$kind ),+].len();

            /// Every kind, in table order (`ALL[k.index()] == k`).
            pub const ALL: [EventKind; Self::COUNT] = [$( EventKind::$kind ),+];

            pub const fn from_u16(v: u16) -> Option<Self> {
                match v {
                    $( $num => Some(Self::$kind), )+
                    _ => None,
                }
            }

            /// Dense index (the row's position in the table), used for the per-kind counters in
            /// [`stat`].
            pub const fn index(self) -> u32 {
                match self {
                    $( Self::$kind => KindPosition::$kind as u32, )+
                }
            }

            /// The kind's name in counters and status output.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$kind => $name, )+
                }
            }
        }

        /// Size of the fixed part of each kind's record.
        pub const fn fixed_size(kind: EventKind) -> usize {
            match kind {
                $( EventKind::$kind => size_of::<$record>(), )+
            }
        }

        $(
            impl Record for $record {
                const KIND: EventKind = EventKind::$kind;
            }
            const _: () = assert!(
                core::mem::offset_of!($record, header) == 0,
                concat!("a ", stringify!($record), " must start with its EventHeader"),
            );
        )+
    };
}

/// A ring-buffer record type: a fixed part that starts with [`EventHeader`], of exactly one
/// [`EventKind`]. Implemented from the kinds table only, so the pairing cannot drift.
pub trait Record: Plain {
    const KIND: EventKind;
}

event_kinds! {
    ProcessExec = 100 => ProcessExecEvent, "process_exec";
    ProcessFork = 101 => ProcessForkEvent, "process_fork";
    ProcessExit = 102 => ProcessExitEvent, "process_exit";
    FileOpen = 200 => FileOpenEvent, "file_open";
    FileMmap = 201 => FileMmapEvent, "file_mmap";
    DeviceFirstIoctl = 300 => DeviceIoctlEvent, "device_first_ioctl";
}

/// Byte-wise string equality, usable in constants.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Table guards: the per-kind counters have room for every kind, names tell kinds apart in
// counters and status output, and records stay 8-byte aligned in the ring buffer.
const _: () = {
    assert!(EventKind::COUNT <= stat::KIND_SLOTS as usize, "more event kinds than stat::KIND_SLOTS");
    let mut i = 0;
    while i < EventKind::COUNT {
        let kind = EventKind::ALL[i];
        assert!(kind.index() as usize == i);
        assert!(fixed_size(kind).is_multiple_of(8), "record sizes must be multiples of 8");
        let mut j = i + 1;
        while j < EventKind::COUNT {
            assert!(!str_eq(kind.name(), EventKind::ALL[j].name()), "two event kinds share a name");
            j += 1;
        }
        i += 1;
    }
};

/// Slots of the per-CPU `STATS` array. Per-kind counters are indexed by [`EventKind::index`].
pub mod stat {
    /// Slots reserved per counter family (room for kinds added later).
    pub const KIND_SLOTS: u32 = 8;
    /// Records written to the ring buffer, per kind.
    pub const PRODUCED: u32 = 0;
    /// Records that did not fit into the ring buffer, per kind.
    pub const DROPPED: u32 = KIND_SLOTS;
    /// A syscall's arguments could not be stashed between enter and exit (map full).
    pub const PENDING_FULL: u32 = 2 * KIND_SLOTS;
    /// An ioctl could not be counted because the count map was full.
    pub const IOCTL_COUNTS_FULL: u32 = 2 * KIND_SLOTS + 1;
    /// Paths reported with the truncated flag.
    pub const PATH_TRUNCATED: u32 = 2 * KIND_SLOTS + 2;
    /// Kernel memory reads that failed (a sign of wrong offsets or a racing free).
    pub const READ_FAILED: u32 = 2 * KIND_SLOTS + 3;
    /// Ioctls counted on watched devices (all commands, all processes).
    pub const IOCTLS_COUNTED: u32 = 2 * KIND_SLOTS + 4;
    /// A process that opened or inherited a watched device could not be added to the ioctl
    /// gate (map full): its ioctls go uncounted until the collector's next /proc scan adds it.
    pub const IOCTL_GATE_FULL: u32 = 2 * KIND_SLOTS + 5;
    /// File records (open, mmap) dropped because their process exceeded its rate
    /// ([`crate::RateState`]); also counted per process in the rate map.
    pub const RATE_LIMITED: u32 = 2 * KIND_SLOTS + 6;
    /// Processes the rate limiter had no room for: their records are not limited.
    pub const RATE_MAP_FULL: u32 = 2 * KIND_SLOTS + 7;
    /// Opens of runtime processes not inspected because the process spent its candidate
    /// budget for the current second ([`crate::RuntimeProc`]).
    pub const RUNTIME_BUDGET: u32 = 2 * KIND_SLOTS + 8;
    /// Processes that showed runtime evidence but could not be added to the runtime map.
    pub const RUNTIME_MAP_FULL: u32 = 2 * KIND_SLOTS + 9;
    /// io_uring reads of model files not counted because the read map was full.
    pub const MODEL_READS_FULL: u32 = 2 * KIND_SLOTS + 10;
    /// io_uring opens whose file could not be found (a fixed-file slot on a kernel whose
    /// ring file table the probes cannot read, or a fd closed before the completion).
    pub const IO_URING_UNRESOLVED: u32 = 2 * KIND_SLOTS + 11;
    /// Inode marks dropped because the file was opened for writing, had a writer when
    /// consulted, or was written without timestamps.
    pub const MARKS_INVALIDATED: u32 = 2 * KIND_SLOTS + 12;
    /// Inodes written without timestamps that did not fit the map: from then on no mark is
    /// trusted and every record is flagged [`crate::content::NOCMTIME`].
    pub const NOCMTIME_FULL: u32 = 2 * KIND_SLOTS + 13;
    pub const COUNT: u32 = 32;

    pub const fn produced(kind: super::EventKind) -> u32 {
        PRODUCED + kind.index()
    }
    pub const fn dropped(kind: super::EventKind) -> u32 {
        DROPPED + kind.index()
    }
}

/// Why an open or mmap was reported (bit set).
pub mod reason {
    /// The final dentry name ends in a model extension.
    pub const EXTENSION: u32 = 1 << 0;
    /// The name the caller passed ends in a model extension (symlinked stores).
    pub const REQUESTED_EXTENSION: u32 = 1 << 1;
    /// Regular file at or above the size threshold.
    pub const SIZE: u32 = 1 << 2;
    /// The file lies under a configured model directory.
    pub const MODEL_DIR: u32 = 1 << 3;
    /// The inode is a watched accelerator device.
    pub const DEVICE: u32 = 1 << 4;
    /// Userspace marked the inode as a model.
    pub const MARKED_MODEL: u32 = 1 << 5;
    /// mmap: the mapping length is at or above the size threshold.
    pub const MAPPING_LEN: u32 = 1 << 6;
    /// mmap: executable mapping of a known inference-runtime library.
    pub const RUNTIME_LIBRARY: u32 = 1 << 7;
    /// open: a regular file opened by a process that showed inference-runtime evidence.
    pub const RUNTIME_PROCESS: u32 = 1 << 8;
}

/// What the kernel knows about the content version a file record describes (bit set).
pub mod content {
    /// The file was open for writing (by anyone, this open included) when the record was made:
    /// its content may change without the size or ctime showing it yet.
    pub const WRITER: u32 = 1 << 0;
    /// The inode was opened for writes that change no timestamp (XFS open-by-handle sets
    /// FMODE_NOCMTIME): its (size, ctime) is no content version at all.
    pub const NOCMTIME: u32 = 1 << 1;
}

/// Why a process is in the runtime-process map (bit set).
pub mod runtime {
    /// It mapped an inference-runtime library executable (the kernel saw it).
    pub const LIBRARY: u32 = 1 << 0;
    /// Its executable is a known inference runtime (the collector decided).
    pub const EXECUTABLE: u32 = 1 << 1;
    /// It opened or mapped a file the collector identified as a model.
    pub const MODEL: u32 = 1 << 2;
    /// Inherited from its parent at fork.
    pub const INHERITED: u32 = 1 << 3;
}

/// State of a reconstructed path (bit set).
pub mod path_flag {
    /// The walk reached the root of the mount namespace: the path is absolute and complete.
    pub const COMPLETE: u32 = 1 << 0;
    /// The walk ran out of depth or buffer; the path is a suffix of the real one.
    pub const TRUNCATED: u32 = 1 << 1;
    /// The caller's name filled the capture buffer (only possible when the caller rewrote it
    /// during the call: a name the open accepted always fits).
    pub const NAME_TRUNCATED: u32 = 1 << 2;
    /// The walk ended at a dentry that is its own parent but not a mount root (pseudo files
    /// such as memfd, or a tree cut off from its mount): the path is that dentry's name and
    /// what lies below it. (An unlinked file keeps its parent and reports its old path.)
    pub const DISCONNECTED: u32 = 1 << 3;
}

/// Which syscall produced a file-open record.
pub mod syscall {
    pub const OPENAT: u32 = 1;
    pub const OPENAT2: u32 = 2;
    pub const OPEN: u32 = 3;
    pub const CREAT: u32 = 4;
    /// An `IORING_OP_OPENAT`/`OPENAT2` completion.
    pub const IO_URING: u32 = 5;
    pub const OPEN_BY_HANDLE_AT: u32 = 6;
}

/// io_uring opcodes (uapi, stable).
pub mod io_uring_op {
    pub const READV: u8 = 1;
    pub const READ_FIXED: u8 = 4;
    pub const OPENAT: u8 = 18;
    pub const READ: u8 = 22;
    pub const OPENAT2: u8 = 28;
    pub const READ_MULTISHOT: u8 = 49;
}

/// Verdicts userspace stores in the `INODE_MARKS` map. A mark is about one content version:
/// the kernel drops it when the file is opened for writing, has a writer when the mark is
/// consulted, or is written without timestamps; a record's `mark` field says which mark was
/// still valid for the version it describes (0: none).
pub mod mark {
    /// Identified as a model: its mappings are reported whatever their size.
    pub const MODEL: u32 = 1;
    /// Not a model: its opens and mappings are filtered.
    pub const NOT_MODEL: u32 = 2;
    /// Identified, and neither: the mark only vouches that the content did not change.
    pub const KNOWN: u32 = 3;
}

/// First field of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// [`EventKind`] as a number.
    pub kind: u16,
    pub _pad0: u16,
    /// Total record length in bytes, fixed part plus tail.
    pub size: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds when the event happened.
    pub ktime_ns: u64,
    /// Start time (`start_boottime`, ns) of the thread-group leader: with the tgid and the boot
    /// id it names the process across pid reuse.
    pub start_boottime_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id (thread-group id).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

/// An open of a file the kernel judged reportable.
/// Tail: `name_len` bytes of the caller's name, then `path_len` bytes of path components,
/// each NUL-terminated, **leaf first**.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    pub ino: u64,
    /// `i_size` at open time.
    pub size: u64,
    /// Superblock device (kernel encoding, see [`kernel_dev`]).
    pub dev: u32,
    /// `i_rdev` for device nodes (kernel encoding), 0 otherwise.
    pub rdev: u32,
    /// Open flags as passed.
    pub flags: u32,
    /// `i_mode`.
    pub mode: u32,
    /// The new file descriptor.
    pub fd: i32,
    /// [`reason`] bits.
    pub reasons: u32,
    /// [`syscall`] number.
    pub syscall: u32,
    /// [`path_flag`] bits.
    pub path_flags: u32,
    pub name_len: u32,
    pub path_len: u32,
    /// The inode's ctime (seconds), with `ctime_nsec` the content version together with size.
    pub ctime_sec: i64,
    /// Nanoseconds of the ctime (the multigrain "queried" flag masked off).
    pub ctime_nsec: u32,
    /// The [`mark`] still valid for this version (0: none).
    pub mark: u32,
    /// [`content`] bits.
    pub content: u32,
    pub _pad0: u32,
}

/// A file-backed mapping the kernel judged reportable.
/// Tail: `path_len` bytes of path components, leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileMmapEvent {
    pub header: EventHeader,
    pub ino: u64,
    /// File size at mmap time.
    pub size: u64,
    /// Mapping length requested.
    pub len: u64,
    /// File offset of the mapping in bytes.
    pub offset: u64,
    /// Address returned by mmap.
    pub addr: u64,
    pub dev: u32,
    pub prot: u32,
    pub flags: u32,
    pub fd: i32,
    pub reasons: u32,
    pub path_flags: u32,
    pub path_len: u32,
    pub ctime_nsec: u32,
    pub ctime_sec: i64,
    /// The [`mark`] still valid for this version (0: none).
    pub mark: u32,
    /// [`content`] bits.
    pub content: u32,
}

/// The first ioctl a thread group issues on a watched device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceIoctlEvent {
    pub header: EventHeader,
    /// `i_rdev` of the device (kernel encoding).
    pub rdev: u32,
    /// The ioctl command of that first call.
    pub cmd: u32,
    pub fd: i32,
    pub _pad0: u32,
}

/// A successful exec. Tail: `args_len` bytes of argv (NUL-separated), `filename_len` bytes of
/// the filename as passed to exec, then `path_len` bytes of the executable's path components,
/// leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessExecEvent {
    pub header: EventHeader,
    /// Parent's thread-group id.
    pub ppid: u32,
    /// pid before exec (differs when a non-leader thread exec'd).
    pub old_pid: u32,
    pub args_len: u32,
    /// Set when argv was longer than [`ARGS_MAX`].
    pub args_truncated: u32,
    pub filename_len: u32,
    pub path_len: u32,
    pub path_flags: u32,
    pub _pad0: u32,
}

/// A new process (not a new thread). The header describes the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessForkEvent {
    pub header: EventHeader,
    pub child_tgid: u32,
    pub _pad0: u32,
    pub child_start_boottime_ns: u64,
}

/// The last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessExitEvent {
    pub header: EventHeader,
    /// `task->exit_code`: wait(2) status encoding (exit status << 8, or the signal number).
    pub exit_code: u32,
    pub ppid: u32,
}

/// Key for per-inode maps. `dev` is the superblock device in kernel encoding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u32,
    pub _pad0: u32,
    pub ino: u64,
}

/// Value of the `INODE_MARKS` map: a verdict about one content version, (size, full ctime).
/// It holds only while the inode's size and ctime still match and nobody holds the file open
/// for writing; a write open drops it (see [`mark`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeMark {
    /// [`mark`] verdict.
    pub verdict: u32,
    pub ctime_nsec: u32,
    pub size: u64,
    pub ctime_sec: i64,
}

/// Key of the per-CPU model read map: bytes read per process, file and way of reading.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub tgid: u32,
    pub dev: u32,
    pub ino: u64,
    /// [`read_via`]: how the bytes were read.
    pub via: u32,
    pub _pad0: u32,
}

/// How a model file was read (in [`ReadKey`]).
pub mod read_via {
    /// read(2), pread64(2), readv(2), preadv(2), preadv2(2).
    pub const SYSCALL: u32 = 0;
    /// An io_uring read completion.
    pub const IO_URING: u32 = 1;
}

/// Value of the runtime-process map (key: tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeProc {
    /// [`runtime`] bits.
    pub flags: u32,
    /// Candidate opens in the current one-second window.
    pub window_opens: u32,
    /// Start of the current window (`bpf_ktime_get_ns`).
    pub window_start_ns: u64,
}

/// Value of the rate map (key: tgid): a GCRA token bucket for the process's file records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// Theoretical arrival time of the next record (`bpf_ktime_get_ns`).
    pub tat_ns: u64,
    /// Records of this process dropped by the limit, cumulative.
    pub dropped: u64,
}

/// Key of the per-CPU ioctl count map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IoctlKey {
    pub tgid: u32,
    /// `i_rdev` (kernel encoding).
    pub rdev: u32,
    pub cmd: u32,
    pub _pad0: u32,
}

/// Value of the watched-device map (key: `i_rdev`, kernel encoding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedDevice {
    /// Accelerator class chosen by userspace; echoed nowhere in the kernel, kept for dumps.
    pub class: u32,
    pub _pad0: u32,
}

/// Key of the "first ioctl seen" map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceUseKey {
    pub tgid: u32,
    pub rdev: u32,
}

/// Extension key: lower-case ASCII without the dot, zero padded.
pub type ExtKey = [u8; EXT_MAX];

/// Builds the extension key for `ext` (with or without the leading dot); `None` when empty,
/// too long or not ASCII.
pub fn ext_key(ext: &str) -> Option<ExtKey> {
    let ext = ext.strip_prefix('.').unwrap_or(ext);
    if ext.is_empty() || ext.len() >= EXT_MAX || !ext.is_ascii() || ext.contains('.') {
        return None;
    }
    let mut key = [0u8; EXT_MAX];
    for (dst, src) in key.iter_mut().zip(ext.bytes()) {
        *dst = src.to_ascii_lowercase();
    }
    Some(key)
}

/// Read-only configuration the collector writes into the probes' `.rodata` before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Offset of `group_dead` in the sched_process_exit record (kernels since 6.16 report
    /// whether the exiting thread was the group's last); 0 where the field does not exist.
    pub exit_group_dead_off: u32,
    /// The collector's own tgid: its activity is never reported.
    pub self_tgid: u32,
    /// Regular files at least this large are reported on open and mmap.
    pub size_threshold: u64,
    /// 1: syscall arguments are read at sys_exit from the task's saved user registers
    /// (`KernelOffsets::regs_arg`), so no sys_enter program and no per-call map update is
    /// needed. 0: they are stashed at sys_enter (architectures whose exit clobbers them).
    pub args_from_regs: u32,
    /// This architecture's syscall numbers, to tell the open syscalls apart at sys_exit.
    pub nr_openat: u32,
    pub nr_openat2: u32,
    pub nr_open: u32,
    pub nr_creat: u32,
    pub nr_open_by_handle_at: u32,
    /// 1: the probes can read the io_uring ring's fixed-file table (`KernelOffsets::ring_*`).
    pub io_uring_fixed: u32,
    /// Candidate opens per second a runtime process may make beyond the other reasons
    /// (0: processes are never widened).
    pub runtime_budget: u32,
    /// File records per second per process: the spacing of the rate limit in ns (0: none).
    pub rate_interval_ns: u64,
    /// How far ahead of now a process's bucket may run: (burst - 1) × interval.
    pub rate_burst_ns: u64,
}

/// Member offsets of kernel structures, resolved from BTF at start-up (no CO-RE in Rust BPF).
/// Each field is a byte offset; names follow `struct_member`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub task_mm: u32,
    pub task_group_leader: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    pub inode_i_mode: u32,
    pub inode_i_ino: u32,
    pub inode_i_size: u32,
    pub inode_i_rdev: u32,
    pub inode_i_sb: u32,
    pub inode_i_ctime_sec: u32,
    pub sb_s_dev: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub dentry_d_inode: u32,
    /// The ctime's nanoseconds (`i_ctime_nsec`, or `tv_nsec` of the older timespec).
    pub inode_i_ctime_nsec: u32,
    pub inode_i_writecount: u32,
    /// `io_kiocb.opcode`, `.file` and `.cmd` (the per-opcode command area).
    pub io_kiocb_opcode: u32,
    pub io_kiocb_file: u32,
    pub io_kiocb_cmd: u32,
    /// `io_open.file_slot` and `io_open.how.flags`, inside the command area.
    pub io_open_file_slot: u32,
    pub io_open_how_flags: u32,
    /// `io_ring_ctx.file_table.data.nr` and `.nodes`, `io_rsrc_node.file_ptr`; 0 where the
    /// kernel's layout differs (`ProbeConfig::io_uring_fixed` is then 0).
    pub ring_files_nr: u32,
    pub ring_files_nodes: u32,
    pub rsrc_node_file_ptr: u32,
    /// Offsets in `struct pt_regs` of syscall arguments 0..6 (x86_64: di, si, dx, r10, r8, r9).
    pub regs_arg: [u32; 6],
}

/// Kernel `dev_t` encoding (`MKDEV`): 12-bit major above a 20-bit minor. `stat(2)` uses a
/// different encoding; convert with [`kernel_dev_from_user`].
pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

pub const fn kernel_dev_major(dev: u32) -> u32 {
    dev >> 20
}

pub const fn kernel_dev_minor(dev: u32) -> u32 {
    dev & 0xfffff
}

/// Converts a glibc/`stat(2)` `dev_t` (`st_dev`, `st_rdev`) to the kernel encoding.
pub const fn kernel_dev_from_user(dev: u64) -> u32 {
    let major = (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32;
    let minor = (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32;
    kernel_dev(major, minor)
}

/// Converts a kernel-encoded device number to the glibc/`stat(2)` encoding.
pub const fn user_dev_from_kernel(dev: u32) -> u64 {
    let major = kernel_dev_major(dev) as u64;
    let minor = kernel_dev_minor(dev) as u64;
    ((major & 0xffff_f000) << 32) | ((major & 0x0000_0fff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0x0000_00ff)
}

/// Plain-old-data marker for the ABI types: `#[repr(C)]`, no padding, every bit pattern valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` without implicit padding and valid for any bit pattern.
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {
        $(
            unsafe impl Plain for $t {}
            #[cfg(feature = "user")]
            unsafe impl aya::Pod for $t {}
        )*
    };
}

plain!(
    EventHeader,
    FileOpenEvent,
    FileMmapEvent,
    DeviceIoctlEvent,
    ProcessExecEvent,
    ProcessForkEvent,
    ProcessExitEvent,
    FileId,
    InodeMark,
    ReadKey,
    RuntimeProc,
    RateState,
    IoctlKey,
    WatchedDevice,
    DeviceUseKey,
    ProbeConfig,
    KernelOffsets,
);

/// Reads a `Plain` value from the start of `bytes`; `None` when too short. Unaligned input is
/// fine (ring-buffer records are 8-byte aligned, test buffers may not be).
pub fn read_plain<T: Plain>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; `Plain` guarantees any bit pattern is a valid `T`.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of a `Plain` value (for tests and for building records in userspace).
pub fn plain_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `Plain` types have no padding, so every byte is initialised.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

// Layout guards: a change here is an ABI change (bump ABI_VERSION) and must keep every size a
// multiple of 8 so records stay aligned and padding-free.
const _: () = {
    use size_of;
    assert!(size_of::<EventHeader>() == 64);
    assert!(size_of::<FileOpenEvent>() == 64 + 80);
    assert!(size_of::<FileMmapEvent>() == 64 + 88);
    assert!(size_of::<DeviceIoctlEvent>() == 64 + 16);
    assert!(size_of::<ProcessExecEvent>() == 64 + 32);
    assert!(size_of::<ProcessForkEvent>() == 64 + 16);
    assert!(size_of::<ProcessExitEvent>() == 64 + 8);
    assert!(size_of::<FileId>() == 16);
    assert!(size_of::<InodeMark>() == 24);
    assert!(size_of::<ReadKey>() == 24);
    assert!(size_of::<RuntimeProc>() == 16);
    assert!(size_of::<RateState>() == 16);
    assert!(size_of::<IoctlKey>() == 16);
    assert!(size_of::<DeviceUseKey>() == 8);
    assert!(size_of::<ProbeConfig>() == 64);
    assert!(size_of::<KernelOffsets>() == 52 * 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers and names are on the wire and in status output: this pins them.
    #[test]
    fn kind_numbers_and_names_are_stable() {
        let table: std::vec::Vec<(u16, &str)> = EventKind::ALL.iter().map(|k| (*k as u16, k.name())).collect();
        assert_eq!(
            table,
            [
                (100, "process_exec"),
                (101, "process_fork"),
                (102, "process_exit"),
                (200, "file_open"),
                (201, "file_mmap"),
                (300, "device_first_ioctl"),
            ]
        );
    }

    #[test]
    fn kinds_round_trip_and_have_dense_indices() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(EventKind::from_u16(kind as u16), Some(kind));
            assert_eq!(kind.index() as usize, i, "{kind:?}");
            assert!(stat::dropped(kind) < stat::PENDING_FULL, "{kind:?} overflows its counter slots");
        }
        for v in [0, 1, 99, 103, 199, 202, 299, 301, u16::MAX] {
            assert_eq!(EventKind::from_u16(v), None, "{v}");
        }
    }

    /// Each record type belongs to the kind the probes write it for, and is its fixed size.
    #[test]
    fn records_know_their_kind_and_size() {
        fn kind_of<R: Record>() -> EventKind {
            assert_eq!(fixed_size(R::KIND), size_of::<R>(), "{:?}", R::KIND);
            R::KIND
        }
        assert_eq!(kind_of::<ProcessExecEvent>(), EventKind::ProcessExec);
        assert_eq!(kind_of::<ProcessForkEvent>(), EventKind::ProcessFork);
        assert_eq!(kind_of::<ProcessExitEvent>(), EventKind::ProcessExit);
        assert_eq!(kind_of::<FileOpenEvent>(), EventKind::FileOpen);
        assert_eq!(kind_of::<FileMmapEvent>(), EventKind::FileMmap);
        assert_eq!(kind_of::<DeviceIoctlEvent>(), EventKind::DeviceFirstIoctl);
    }

    #[test]
    fn device_encodings_round_trip() {
        // /dev/null is 1:3: kernel 0x100003, glibc 0x103.
        assert_eq!(kernel_dev(1, 3), 0x10_0003);
        assert_eq!(kernel_dev_from_user(0x103), 0x10_0003);
        assert_eq!(user_dev_from_kernel(0x10_0003), 0x103);
        for (major, minor) in [(195u32, 255u32), (226, 128), (259, 1), (4095, 1_048_575), (511, 70000)] {
            let user = user_dev_from_kernel(kernel_dev(major, minor));
            assert_eq!(kernel_dev_from_user(user), kernel_dev(major, minor));
            assert_eq!(kernel_dev_major(kernel_dev(major, minor)), major);
            assert_eq!(kernel_dev_minor(kernel_dev(major, minor)), minor);
        }
    }

    #[test]
    fn ext_keys_are_normalised() {
        assert_eq!(ext_key(".GGUF"), ext_key("gguf"));
        assert_eq!(&ext_key("safetensors").unwrap()[..12], b"safetensors\0");
        assert_eq!(ext_key(""), None);
        assert_eq!(ext_key("."), None);
        assert_eq!(ext_key("tar.gz"), None);
        assert_eq!(ext_key("averyveryverylongext"), None);
    }

    #[test]
    fn records_round_trip_through_bytes() {
        let ev = FileOpenEvent {
            header: EventHeader {
                kind: EventKind::FileOpen as u16,
                size: 123,
                ktime_ns: 42,
                pid: 7,
                tgid: 7,
                comm: *b"python3\0\0\0\0\0\0\0\0\0",
                ..Default::default()
            },
            ino: 99,
            size: 1 << 30,
            reasons: reason::EXTENSION | reason::SIZE,
            name_len: 5,
            path_len: 10,
            ..Default::default()
        };
        let bytes = plain_bytes(&ev);
        assert_eq!(bytes.len(), fixed_size(EventKind::FileOpen));
        // Unaligned source must work too.
        let mut shifted = std::vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(read_plain::<FileOpenEvent>(&shifted[1..]), Some(ev));
        assert_eq!(read_plain::<FileOpenEvent>(&bytes[..bytes.len() - 1]), None);
    }
}
