//! Every map the probes use. Names are part of the contract with the collector
//! (`sensor-user/src/loader.rs` looks them up by these names).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use sensor_ebpf::{
    DeviceUseKey, ExtKey, FileId, FileMmapEvent, FileOpenEvent, InodeMark, IoctlKey, LIB_PREFIX_MAX, ProcessExecEvent,
    RateState, ReadKey, RuntimeProc, TAIL_MAX, WatchedDevice, stat,
};

/// Records to the collector. The size is set by the collector at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters, see `sensor_ebpf::stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Model file extensions (lower case, no dot).
#[map]
pub static EXTENSIONS: HashMap<ExtKey, u8> = HashMap::with_max_entries(128, 0);

/// Inference-runtime library name prefixes, matched against the file name of `PROT_EXEC`
/// mappings.
#[map]
pub static RUNTIME_LIBS: LpmTrie<[u8; LIB_PREFIX_MAX], u8> = LpmTrie::with_max_entries(128, 0);

/// Configured model directories by (device, inode).
#[map]
pub static MODEL_DIRS: HashMap<FileId, u8> = HashMap::with_max_entries(256, 0);

/// Number of entries in MODEL_DIRS (slot 0): when zero the directory check is skipped.
#[map]
pub static MODEL_DIRS_PRESENT: Array<u32> = Array::with_max_entries(1, 0);

/// Thread groups that hold a watched device open (or inherited one). ioctls of every other
/// process leave after this one lookup. Filled on opens and forks in the kernel, seeded from
/// /proc by the collector for processes older than the sensor.
#[map]
pub static PROC_DEVICES: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Cache: does this directory lie under a model directory? 1 yes, 0 no. Filled by the probes,
/// cleared by the collector when the model directory set changes.
#[map]
pub static DIR_VERDICT: LruHashMap<FileId, u8> = LruHashMap::with_max_entries(16384, 0);

/// Inodes the collector identified by content.
#[map]
pub static INODE_MARKS: LruHashMap<FileId, InodeMark> = LruHashMap::with_max_entries(65536, 0);

/// Inodes opened for writes that change no timestamp (XFS open-by-handle): no mark about them
/// is trusted again. Plain hash: a full map must not forget one (then slot 0 of
/// NOCMTIME_PRESENT says so and no mark is trusted at all).
#[map]
pub static NOCMTIME: HashMap<FileId, u8> = HashMap::with_max_entries(4096, 0);

/// Slot 0: 0 no entry in NOCMTIME (the lookup is skipped), 1 some, 2 the map overflowed.
#[map]
pub static NOCMTIME_PRESENT: Array<u32> = Array::with_max_entries(1, 0);

/// Processes that opened a regular file the probes reported: only their read(2)s are looked
/// at (every other process's reads leave after this one lookup). LRU: the oldest are forgotten
/// first; an exiting process removes itself.
#[map]
pub static READERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Bytes read per (process, model file, way of reading); the collector drains them.
#[map]
pub static MODEL_READS: PerCpuHashMap<ReadKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Files found not to be model candidates at an io_uring read (no model mark, extension or
/// directory): their later reads leave after this lookup. The collector deletes an entry when
/// it marks the file a model.
#[map]
pub static READ_SKIP: LruHashMap<FileId, u8> = LruHashMap::with_max_entries(16384, 0);

/// Processes that showed inference-runtime evidence, by tgid: their opens of regular files are
/// identification candidates (within a budget). Filled by the mmap probe (runtime libraries),
/// at fork (inherited) and by the collector (runtime executables, loaded models); entries go at
/// exec and exit.
#[map]
pub static RUNTIME_PROCS: HashMap<u32, RuntimeProc> = HashMap::with_max_entries(8192, 0);

/// Slot 0: non-zero while RUNTIME_PROCS may hold an entry. Set after every insert; the
/// collector clears it when it finds the map empty (and sets it again if an insert raced).
/// While zero, an ordinary open pays one array lookup for the widening.
#[map]
pub static RUNTIME_PRESENT: Array<u32> = Array::with_max_entries(1, 0);

/// Per-process rate limit of file records. An entry whose process dropped nothing goes at
/// exit; the others stay until the collector has reported their drops.
#[map]
pub static RATE: HashMap<u32, RateState> = HashMap::with_max_entries(16384, 0);

/// Accelerator devices by `i_rdev` (kernel encoding).
#[map]
pub static WATCHED_DEVICES: HashMap<u32, WatchedDevice> = HashMap::with_max_entries(1024, 0);

/// ioctl counts per (tgid, device, command); the collector drains them on an interval.
#[map]
pub static IOCTL_COUNTS: PerCpuHashMap<IoctlKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// (tgid, device) pairs that already produced their first-ioctl event.
#[map]
pub static DEVICE_SEEN: LruHashMap<DeviceUseKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// Arguments of an open in flight, by pid_tgid, from sys_enter to sys_exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingOpen {
    pub filename: u64,
    pub flags: u32,
    pub syscall: u32,
}

#[map]
// Plain hashes, not LRU: a full map must fail the insert (counted as PENDING_FULL), never
// evict another call in flight. Entries cannot pile up: every exit removes its own, and a
// stale one (a call in flight while the probes attached) is replaced when its thread id
// comes back.
pub static PENDING_OPENS: HashMap<u64, PendingOpen> = HashMap::with_max_entries(16384, 0);

/// A reportable mmap in flight, by pid_tgid.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingMmap {
    pub file: u64,
    pub ino: u64,
    pub size: u64,
    pub len: u64,
    pub offset: u64,
    pub dev: u32,
    pub prot: u32,
    pub flags: u32,
    pub fd: i32,
    pub reasons: u32,
    pub ctime_nsec: u32,
    pub ctime_sec: i64,
    pub mark: u32,
    pub content: u32,
}

#[map]
pub static PENDING_MMAPS: HashMap<u64, PendingMmap> = HashMap::with_max_entries(16384, 0);

/// Per-CPU assembly areas: a record is built here, then copied into the ring buffer with its
/// real length (ring-buffer reservations must have a constant size).
#[repr(C)]
pub struct OpenRecord {
    pub ev: FileOpenEvent,
    pub tail: [u8; TAIL_MAX],
}

#[repr(C)]
pub struct MmapRecord {
    pub ev: FileMmapEvent,
    pub tail: [u8; TAIL_MAX],
}

#[repr(C)]
pub struct ExecRecord {
    pub ev: ProcessExecEvent,
    pub tail: [u8; TAIL_MAX],
}

#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static MMAP_SCRATCH: PerCpuArray<MmapRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// Adds `n` to a per-CPU counter.
#[inline(always)]
pub fn count(slot: u32, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(slot) {
        unsafe { *p += n };
    }
}
