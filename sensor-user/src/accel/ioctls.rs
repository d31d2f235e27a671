//! ioctl command decoding for accelerator device nodes.
//!
//! The kernel side of modelwatch counts `ioctl(2)` calls per (process, device node, command
//! number). This module turns a raw command number into a name (the uapi macro name, e.g.
//! `DRM_IOCTL_AMDGPU_CS`, `NV_ESC_RM_ALLOC`, `UVM_MAP_EXTERNAL_ALLOCATION`) and a coarse
//! [`IoctlCategory`], and offers a small heuristic, [`looks_like_compute`], over a category mix.
//!
//! # Command encoding
//!
//! Most drivers build their numbers with the kernel's `_IOC(dir, type, nr, size)` macro. In the
//! asm-generic layout (x86, x86_64, arm64, riscv, loongarch) the 32 bits are:
//!
//! ```text
//!  31 30 | 29 ........ 16 | 15 ..... 8 | 7 ...... 0
//!   dir  |  size (14 bit)  | type (8 b) |  nr (8 b)
//! ```
//!
//! with `dir` = [`IOC_NONE`] (0), [`IOC_WRITE`] (1, user to kernel), [`IOC_READ`] (2, kernel to
//! user), or both (3). [`io`], [`ior`], [`iow`], [`iowr`] and [`ioc`] build numbers and
//! [`ioc_dir`], [`ioc_type`], [`ioc_nr`], [`ioc_size`] take them apart, so the tables below are
//! written straight from the uapi definitions. powerpc, mips, sparc and alpha use a 13-bit size
//! and 3-bit direction; there only `type` and `nr` (the low 16 bits, identical on every
//! architecture) are meaningful to this module, which is all the decoder needs except for the
//! three i915 pairs noted below.
//!
//! ## Decoding rule (size tolerance)
//!
//! A command is identified by its **type and nr**, the same key the drivers themselves dispatch
//! on: DRM's `drm_ioctl()` and amdkfd's `kfd_ioctl()` index their tables by `_IOC_NR(cmd)` and
//! then copy `min(user size, kernel size)` bytes, zero-filling the rest; NVIDIA's `nvidia_ioctl()`
//! switches on `_IOC_NR(cmd)` and validates the size separately. Structs grow across releases
//! (KFD's `CREATE_QUEUE` argument went from 0x58 to 0x60 bytes; NVIDIA's `RM_ALLOC` accepts both
//! the 0x20-byte `NVOS21` and the 0x30-byte `NVOS64` parameter blocks), so the size and
//! direction encoded by an older or newer userspace must not stop a command from decoding.
//!
//! Where one `nr` carries more than one uapi name (i915 only: `GEM_EXECBUFFER2` vs
//! `GEM_EXECBUFFER2_WR` differ in direction; `GEM_CONTEXT_CREATE` vs `GEM_CONTEXT_CREATE_EXT` and
//! `GEM_MMAP_GTT` vs `GEM_MMAP_OFFSET` differ in size) the entries carry that distinguishing
//! direction or size. The rule is: among the table entries with the command's type and nr, the
//! first whose recorded direction/size matches wins; if none matches, the first listed (the
//! canonical, current name) is returned. Both names of a pair share a category, so a fallback
//! can only ever pick the less precise name, never the wrong category.
//!
//! ## DRM
//!
//! All DRM and DRM-accel nodes (`/dev/dri/card*`, `/dev/dri/renderD*`, `/dev/accel/accel*`) use
//! type `'d'`. `nr` in `0x00..0x40` and in `0xA0..=0xFF` is the DRM core range (drm.h: "the
//! device specific ioctl range is from 0x40 to 0x9f. Generic IOCTLS restart at 0xA0") and is
//! decoded through the DRM core table whatever the driver; `0x40..0xA0` (`DRM_COMMAND_BASE` ..
//! `DRM_COMMAND_END`) is decoded through the driver's own table. [`Driver::Drm`] (a DRM node
//! whose driver is not known) decodes the core range only.
//!
//! ## NVIDIA caveats
//!
//! * `/dev/nvidiactl` and `/dev/nvidia[0-9]*` take RM "escape" ioctls with type `'F'`
//!   (`NV_IOCTL_MAGIC`). Resource-manager escapes use nr `0x27..=0x5F`; the driver's own
//!   escapes start at `NV_IOCTL_BASE` = 200. The kernel keys on nr only.
//! * **Kernel launches are not ioctls.** CUDA writes methods into user-mapped pushbuffers /
//!   GPFIFO rings and rings a user-mapped doorbell (USERD / work-submit token), so a busy CUDA
//!   process can issue almost no ioctls while the GPU is saturated. No NVIDIA command is
//!   categorised [`IoctlCategory::Submit`]. What is visible is setup (object allocation, channel
//!   and VA-space creation, UVM registration) and memory traffic (heap allocation, GPU/CPU
//!   mappings, UVM migrations and external mappings). AMD KFD (AQL user queues) and amdgpu user
//!   queues (`DRM_IOCTL_AMDGPU_USERQ`) work the same way.
//! * `NV_ESC_RM_CONTROL` is a multiplexer: the control command id (`NVOS54_PARAMETERS.cmd`) lives
//!   in the argument struct and is not visible in the ioctl number. Most controls a CUDA or NVML
//!   client issues read state (GPU info, capabilities, clocks), so it is categorised
//!   [`IoctlCategory::Query`]; some controls configure channels or memory, which this module
//!   cannot see. Likewise `NV_ESC_RM_ALLOC` allocates RM objects of any class (clients, devices,
//!   channels, VA spaces, events and memory); the class is in the argument, so it is
//!   [`IoctlCategory::Setup`]. `NV_ESC_IOCTL_XFER_CMD` wraps another escape whose number is in
//!   the argument; it is [`IoctlCategory::Other`].
//! * `/dev/nvidia-uvm` (and `/dev/nvidia-uvm-tools`) do **not** use `_IOC` encoding: the command
//!   is a plain integer (`UVM_IOCTL_BASE(i)` is `i` on Linux, plus `UVM_INITIALIZE` =
//!   0x3000_0001 and `UVM_DEINITIALIZE` = 0x3000_0002), matched exactly. UVM test ioctls
//!   (`uvm_test_ioctl.h`, numbers from 200, served only when the module's built-in tests are
//!   enabled) are not decoded.
//!
//! # Categories
//!
//! * [`Setup`](IoctlCategory::Setup): contexts, queues, channels, VM/VA spaces, device
//!   registration, session handshakes and their teardown.
//! * [`Memory`](IoctlCategory::Memory): buffer allocation and freeing, GPU and CPU mappings,
//!   userptr, migration and placement hints, cache/domain transitions, dma-buf/PRIME import and
//!   export, GEM handle naming and closing.
//! * [`Submit`](IoctlCategory::Submit): command submission / kernel launch through the kernel.
//! * [`Sync`](IoctlCategory::Sync): waiting on or manipulating fences, syncobjs, events, user
//!   fences, BO idleness.
//! * [`Query`](IoctlCategory::Query): reading device or driver state, including profiling and
//!   observability streams (perf/OA, metric streamers, SMI events), and NVIDIA `RM_CONTROL`.
//! * [`Other`](IoctlCategory::Other): known but none of the above. This is chiefly **display**
//!   work (KMS `MODE_*`, vblank, CRTC sequences, leases, DRM master ownership, dumb buffers, which
//!   exist only for scanout) plus legacy DRI1/AGP ioctls, debugger and checkpoint interfaces.
//! * [`Unknown`](IoctlCategory::Unknown): not in the tables.
//!
//! # Compute vs display heuristic
//!
//! [`looks_like_compute`] takes counts per category over an interval (`Unknown` is ignored) and
//! answers whether the mix is *shaped like* compute. With S, M, Y, O the Submit, Memory, Sync and
//! Other counts:
//!
//! 1. **Evidence of GPU work**: `S > 0 && (M > 0 || Y > 0)` (submissions with buffer or fence
//!    traffic), or `M > 0 && Y > 0` (user-queue drivers: memory plus waits, no visible submit),
//!    or `M >= MEMORY_ONLY_MIN` (NVIDIA style: sustained allocation/mapping, launches invisible).
//! 2. **Display veto**: `O * DISPLAY_VETO_RATIO > S + M + Y` means not compute. Inference never
//!    modesets; a compositor issues at least one atomic commit / page flip per frame for every
//!    few submits.
//! 3. Everything else (empty mix, setup/query only such as `nvidia-smi` or `vulkaninfo`,
//!    sync only, a lone submit) is not compute.
//!
//! Limits, which callers must design around:
//!
//! * Categories cannot tell a shader from a matmul. A GPU-accelerated browser or video player on
//!   a render node submits, allocates and waits exactly like a compute client and **is reported
//!   compute-shaped**. Combine the answer with the node kind ([`Driver::is_compute_only`]: KFD,
//!   UVM and DRM-accel nodes are compute by construction), the process identity and volume.
//! * Evaluate a process's mix across **all** its accelerator nodes: a compositor's KMS traffic is
//!   on `card0` while its rendering is on `renderD128`; per node, the render node alone looks
//!   like compute.
//! * Drivers with user-mode submission (NVIDIA, KFD, amdgpu user queues) can go quiet in steady
//!   state (a few waits, no allocation). Treat a positive answer as sticky for the session rather
//!   than re-deciding every interval.
//! * On NVIDIA the same RM escapes serve graphics (Vulkan/GL) and CUDA; `/dev/nvidia-uvm`, which
//!   in normal use only the CUDA/OpenCL stack opens, is the stronger signal.
//!
//! # Sources
//!
//! Each table cites the header it was written from. Numbers that could not be checked against a
//! primary source (the header itself, or the driver's dispatch code) are left out. Encodings in
//! the tests were computed independently (by hand from the struct layouts, by compiling against
//! the Debian `linux-libc-dev` 6.1 headers, and against strace's generated ioctl list for Linux
//! v7.2, `strace/strace` `src/linux/64/ioctls_inc.h`).

/// Driver families whose ioctls can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Driver {
    /// /dev/nvidia[0-9]*, /dev/nvidiactl: NVIDIA resource manager escapes.
    NvidiaRm,
    /// /dev/nvidia-uvm, /dev/nvidia-uvm-tools.
    NvidiaUvm,
    /// DRM node of any driver (core ioctls only).
    Drm,
    Amdgpu,
    /// /dev/kfd.
    AmdKfd,
    I915,
    Xe,
    Nouveau,
    Habanalabs,
    Ivpu,
    AmdXdna,
    Qaic,
    Unknown,
}

impl Driver {
    /// Every variant, in declaration order.
    pub const ALL: [Driver; 13] = [
        Driver::NvidiaRm,
        Driver::NvidiaUvm,
        Driver::Drm,
        Driver::Amdgpu,
        Driver::AmdKfd,
        Driver::I915,
        Driver::Xe,
        Driver::Nouveau,
        Driver::Habanalabs,
        Driver::Ivpu,
        Driver::AmdXdna,
        Driver::Qaic,
        Driver::Unknown,
    ];

    /// Stable lowercase identifier, suitable for events and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Driver::NvidiaRm => "nvidia_rm",
            Driver::NvidiaUvm => "nvidia_uvm",
            Driver::Drm => "drm",
            Driver::Amdgpu => "amdgpu",
            Driver::AmdKfd => "amd_kfd",
            Driver::I915 => "i915",
            Driver::Xe => "xe",
            Driver::Nouveau => "nouveau",
            Driver::Habanalabs => "habanalabs",
            Driver::Ivpu => "ivpu",
            Driver::AmdXdna => "amdxdna",
            Driver::Qaic => "qaic",
            Driver::Unknown => "unknown",
        }
    }

    /// Whether the node exists only for compute, so that any submit/memory activity on it is
    /// compute rather than graphics: `/dev/kfd` (ROCm), `/dev/nvidia-uvm` (opened by the
    /// CUDA/OpenCL stack, not by NVIDIA's graphics drivers) and the DRM accel drivers (Gaudi,
    /// Intel NPU, AMD NPU, Qualcomm Cloud AI). GPU render/primary nodes and the NVIDIA RM nodes
    /// serve graphics and compute alike and return `false`.
    pub const fn is_compute_only(self) -> bool {
        matches!(
            self,
            Driver::NvidiaUvm | Driver::AmdKfd | Driver::Habanalabs | Driver::Ivpu | Driver::AmdXdna | Driver::Qaic
        )
    }
}

/// What an ioctl does, coarse enough to tell compute from display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IoctlCategory {
    /// Context, device, queue or VM setup and teardown.
    Setup,
    /// Memory allocation, mapping, import/export.
    Memory,
    /// Command submission, kernel launch.
    Submit,
    /// Waiting on fences, syncobjs, events.
    Sync,
    /// Queries of device or driver state.
    Query,
    /// Known, but none of the above (modesetting and other display work included).
    Other,
    /// Not in the tables.
    Unknown,
}

impl IoctlCategory {
    /// Stable lowercase identifier, suitable for events and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            IoctlCategory::Setup => "setup",
            IoctlCategory::Memory => "memory",
            IoctlCategory::Submit => "submit",
            IoctlCategory::Sync => "sync",
            IoctlCategory::Query => "query",
            IoctlCategory::Other => "other",
            IoctlCategory::Unknown => "unknown",
        }
    }
}

/// A decoded command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoctlInfo {
    pub name: &'static str,
    pub category: IoctlCategory,
}

// ---------------------------------------------------------------------------------------------
// ioctl number helpers (asm-generic layout, include/uapi/asm-generic/ioctl.h)
// ---------------------------------------------------------------------------------------------

/// Width of the `nr` field.
pub const IOC_NRBITS: u32 = 8;
/// Width of the `type` field.
pub const IOC_TYPEBITS: u32 = 8;
/// Width of the `size` field.
pub const IOC_SIZEBITS: u32 = 14;
/// Width of the `dir` field.
pub const IOC_DIRBITS: u32 = 2;

/// Bit offset of `nr`.
pub const IOC_NRSHIFT: u32 = 0;
/// Bit offset of `type`.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Bit offset of `size`.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Bit offset of `dir`.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

const IOC_NRMASK: u32 = (1 << IOC_NRBITS) - 1;
const IOC_TYPEMASK: u32 = (1 << IOC_TYPEBITS) - 1;
const IOC_SIZEMASK: u32 = (1 << IOC_SIZEBITS) - 1;
const IOC_DIRMASK: u32 = (1 << IOC_DIRBITS) - 1;

/// No data transfer (`_IO`).
pub const IOC_NONE: u32 = 0;
/// Userspace writes, the kernel reads (`_IOW`).
pub const IOC_WRITE: u32 = 1;
/// The kernel writes, userspace reads (`_IOR`).
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`. Out-of-range `dir` and `size` are masked to their field widths
/// (the C macro rejects them at compile time instead).
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
    ((dir & IOC_DIRMASK) << IOC_DIRSHIFT)
        | ((size & IOC_SIZEMASK) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IO(type, nr)`.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, size)`; `size` is `sizeof` the argument type.
pub const fn ior(ty: u8, nr: u8, size: u32) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, size)`; `size` is `sizeof` the argument type.
pub const fn iow(ty: u8, nr: u8, size: u32) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, size)`; `size` is `sizeof` the argument type.
pub const fn iowr(ty: u8, nr: u8, size: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `_IOC_DIR(cmd)`.
pub const fn ioc_dir(cmd: u32) -> u32 {
    (cmd >> IOC_DIRSHIFT) & IOC_DIRMASK
}

/// `_IOC_TYPE(cmd)`.
pub const fn ioc_type(cmd: u32) -> u8 {
    ((cmd >> IOC_TYPESHIFT) & IOC_TYPEMASK) as u8
}

/// `_IOC_NR(cmd)`.
pub const fn ioc_nr(cmd: u32) -> u8 {
    ((cmd >> IOC_NRSHIFT) & IOC_NRMASK) as u8
}

/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> u32 {
    (cmd >> IOC_SIZESHIFT) & IOC_SIZEMASK
}

/// `DRM_IOCTL_BASE`.
pub const DRM_IOCTL_TYPE: u8 = b'd';
/// `DRM_COMMAND_BASE`: first driver-private nr.
pub const DRM_COMMAND_BASE: u8 = 0x40;
/// `DRM_COMMAND_END`: first nr after the driver-private range (generic ioctls resume here).
pub const DRM_COMMAND_END: u8 = 0xA0;
/// `AMDKFD_IOCTL_BASE`.
pub const KFD_IOCTL_TYPE: u8 = b'K';
/// `NV_IOCTL_MAGIC`.
pub const NV_IOCTL_TYPE: u8 = b'F';
/// `NV_IOCTL_BASE`: first nr of the nvidia.ko-level escapes.
pub const NV_IOCTL_BASE: u8 = 200;
/// Type of the pre-accel habanalabs character device (`/dev/hl*`, include/uapi/misc/habanalabs.h).
pub const HL_LEGACY_IOCTL_TYPE: u8 = b'H';

/// Whether `nr` on a DRM node belongs to the DRM core (not driver-private) range.
pub const fn is_drm_core_nr(nr: u8) -> bool {
    nr < DRM_COMMAND_BASE || nr >= DRM_COMMAND_END
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Name and category of `cmd` issued on a node of `driver`, or `None` when the tables do not
/// know it. Never panics. See the module documentation for the matching rule.
pub fn decode(driver: Driver, cmd: u32) -> Option<IoctlInfo> {
    let entry = match driver {
        Driver::NvidiaUvm => return lookup_plain(NVIDIA_UVM, cmd),
        Driver::NvidiaRm => lookup_typed(NVIDIA_RM, NV_IOCTL_TYPE, cmd),
        Driver::AmdKfd => lookup_typed(AMD_KFD, KFD_IOCTL_TYPE, cmd),
        Driver::Habanalabs if ioc_type(cmd) == HL_LEGACY_IOCTL_TYPE => {
            lookup_typed(HABANALABS_LEGACY, HL_LEGACY_IOCTL_TYPE, cmd)
        }
        Driver::Unknown => None,
        drm => {
            if ioc_type(cmd) != DRM_IOCTL_TYPE {
                None
            } else if is_drm_core_nr(ioc_nr(cmd)) {
                lookup(DRM_CORE, cmd)
            } else {
                lookup(drm_private_table(drm), cmd)
            }
        }
    }?;
    Some(entry.info())
}

/// Category of `cmd` on `driver`; [`IoctlCategory::Unknown`] when [`decode`] returns `None`.
pub fn category_of(driver: Driver, cmd: u32) -> IoctlCategory {
    decode(driver, cmd).map_or(IoctlCategory::Unknown, |info| info.category)
}

/// Driver-private (`0x40..0xA0`) table of a DRM driver; empty for non-DRM drivers and for
/// [`Driver::Drm`].
fn drm_private_table(driver: Driver) -> &'static [Entry] {
    match driver {
        Driver::Amdgpu => AMDGPU,
        Driver::I915 => I915,
        Driver::Xe => XE,
        Driver::Nouveau => NOUVEAU,
        Driver::Habanalabs => HABANALABS,
        Driver::Ivpu => IVPU,
        Driver::AmdXdna => AMDXDNA,
        Driver::Qaic => QAIC,
        Driver::Drm | Driver::NvidiaRm | Driver::NvidiaUvm | Driver::AmdKfd | Driver::Unknown => &[],
    }
}

fn lookup_typed(table: &'static [Entry], ty: u8, cmd: u32) -> Option<&'static Entry> {
    if ioc_type(cmd) == ty { lookup(table, cmd) } else { None }
}

/// First entry with the command's nr whose shape matches; else the first entry with that nr.
fn lookup(table: &'static [Entry], cmd: u32) -> Option<&'static Entry> {
    let nr = ioc_nr(cmd);
    let mut fallback = None;
    for entry in table.iter().filter(|e| e.nr == nr) {
        if entry.shape.matches(cmd) {
            return Some(entry);
        }
        if fallback.is_none() {
            fallback = Some(entry);
        }
    }
    fallback
}

fn lookup_plain(table: &'static [PlainEntry], cmd: u32) -> Option<IoctlInfo> {
    table.iter().find(|e| e.cmd == cmd).map(|e| IoctlInfo { name: e.name, category: e.category })
}

// ---------------------------------------------------------------------------------------------
// Compute vs display heuristic
// ---------------------------------------------------------------------------------------------

/// Memory-category count that, on its own (no visible submit, no waits), counts as evidence of
/// GPU work. Covers NVIDIA, whose launches never reach the kernel.
pub const MEMORY_ONLY_MIN: u64 = 4;

/// Display veto: the mix is display-dominated when `Other * DISPLAY_VETO_RATIO` exceeds
/// `Submit + Memory + Sync`, i.e. more than one display/other call per this many work calls.
pub const DISPLAY_VETO_RATIO: u64 = 4;

/// Whether a category mix (counts per category over an interval; repeated categories are
/// summed, `Unknown` is ignored) looks like compute rather than display or query-only activity.
/// The rule and its limits are in the module documentation. Never panics.
pub fn looks_like_compute(mix: &[(IoctlCategory, u64)]) -> bool {
    // u128 so that the sums and the veto product stay exact for any realistic input; the adds
    // still saturate so that no input can overflow.
    let mut submit = 0u128;
    let mut memory = 0u128;
    let mut sync = 0u128;
    let mut other = 0u128;
    for &(category, count) in mix {
        let slot = match category {
            IoctlCategory::Submit => &mut submit,
            IoctlCategory::Memory => &mut memory,
            IoctlCategory::Sync => &mut sync,
            IoctlCategory::Other => &mut other,
            IoctlCategory::Setup | IoctlCategory::Query | IoctlCategory::Unknown => continue,
        };
        *slot = slot.saturating_add(u128::from(count));
    }

    let evidence =
        (submit > 0 && (memory > 0 || sync > 0)) || (memory > 0 && sync > 0) || memory >= u128::from(MEMORY_ONLY_MIN);
    if !evidence {
        return false;
    }
    let work = submit.saturating_add(memory).saturating_add(sync);
    other.saturating_mul(u128::from(DISPLAY_VETO_RATIO)) <= work
}

// ---------------------------------------------------------------------------------------------
// Table machinery
// ---------------------------------------------------------------------------------------------

/// What, besides type and nr, an entry records about its encoding; used only to tell apart
/// entries that share an nr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The nr alone identifies the command.
    Any,
    /// This name is the one encoded with this `_IOC_DIR`.
    Dir(u32),
    /// This name is the one encoded with this `_IOC_SIZE`.
    Size(u32),
}

impl Shape {
    const fn matches(self, cmd: u32) -> bool {
        match self {
            Shape::Any => true,
            Shape::Dir(dir) => ioc_dir(cmd) == dir,
            Shape::Size(size) => ioc_size(cmd) == size,
        }
    }
}

/// An `_IOC`-encoded command, keyed by nr (the type is fixed per table).
#[derive(Debug, Clone, Copy)]
struct Entry {
    nr: u8,
    name: &'static str,
    category: IoctlCategory,
    shape: Shape,
}

impl Entry {
    const fn info(&self) -> IoctlInfo {
        IoctlInfo { name: self.name, category: self.category }
    }
}

/// A command matched on its full 32-bit value (NVIDIA UVM).
#[derive(Debug, Clone, Copy)]
struct PlainEntry {
    cmd: u32,
    name: &'static str,
    category: IoctlCategory,
}

use IoctlCategory as C;

/// Entry at an absolute nr.
const fn at(nr: u8, name: &'static str, category: IoctlCategory) -> Entry {
    Entry { nr, name, category, shape: Shape::Any }
}

/// Entry at an absolute nr that shares it with another name and is told apart by `shape`.
const fn at_shaped(nr: u8, name: &'static str, category: IoctlCategory, shape: Shape) -> Entry {
    Entry { nr, name, category, shape }
}

/// DRM driver-private entry: `off` is the driver's `DRM_<DRIVER>_*` offset, the nr is
/// `DRM_COMMAND_BASE + off`.
const fn drv(off: u8, name: &'static str, category: IoctlCategory) -> Entry {
    at(DRM_COMMAND_BASE + off, name, category)
}

const fn drv_shaped(off: u8, name: &'static str, category: IoctlCategory, shape: Shape) -> Entry {
    at_shaped(DRM_COMMAND_BASE + off, name, category, shape)
}

/// NVIDIA nvidia.ko-level escape: nr is `NV_IOCTL_BASE + off`.
const fn nv(off: u8, name: &'static str, category: IoctlCategory) -> Entry {
    at(NV_IOCTL_BASE + off, name, category)
}

const fn plain(cmd: u32, name: &'static str, category: IoctlCategory) -> PlainEntry {
    PlainEntry { cmd, name, category }
}

// ---------------------------------------------------------------------------------------------
// DRM core
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/drm/drm.h (read at c87866ede44a, which defines everything
// through 0xCE MODE_GETFB2). 0xCF SYNCOBJ_EVENTFD, 0xD0 MODE_CLOSEFB, 0xD1 SET_CLIENT_NAME and
// 0xD2 GEM_CHANGE_HANDLE were checked against the upstream patches adding them and against the
// list strace generates from Linux v7.2 (strace/strace src/linux/64/ioctls_inc.h). Proposed
// additions not in v7.2 (e.g. SYNCOBJ_QUERY_ERROR) are left out.
static DRM_CORE: &[Entry] = &[
    at(0x00, "DRM_IOCTL_VERSION", C::Query),
    at(0x01, "DRM_IOCTL_GET_UNIQUE", C::Query),
    at(0x02, "DRM_IOCTL_GET_MAGIC", C::Setup),
    at(0x03, "DRM_IOCTL_IRQ_BUSID", C::Query),
    at(0x04, "DRM_IOCTL_GET_MAP", C::Other),
    at(0x05, "DRM_IOCTL_GET_CLIENT", C::Query),
    at(0x06, "DRM_IOCTL_GET_STATS", C::Query),
    at(0x07, "DRM_IOCTL_SET_VERSION", C::Setup),
    at(0x08, "DRM_IOCTL_MODESET_CTL", C::Other),
    at(0x09, "DRM_IOCTL_GEM_CLOSE", C::Memory),
    at(0x0a, "DRM_IOCTL_GEM_FLINK", C::Memory),
    at(0x0b, "DRM_IOCTL_GEM_OPEN", C::Memory),
    at(0x0c, "DRM_IOCTL_GET_CAP", C::Query),
    at(0x0d, "DRM_IOCTL_SET_CLIENT_CAP", C::Setup),
    at(0x10, "DRM_IOCTL_SET_UNIQUE", C::Other),
    at(0x11, "DRM_IOCTL_AUTH_MAGIC", C::Setup),
    // 0x12..=0x1d and 0x20..=0x2c: DRI1-era buffer, map, context and lock management.
    at(0x12, "DRM_IOCTL_BLOCK", C::Other),
    at(0x13, "DRM_IOCTL_UNBLOCK", C::Other),
    at(0x14, "DRM_IOCTL_CONTROL", C::Other),
    at(0x15, "DRM_IOCTL_ADD_MAP", C::Other),
    at(0x16, "DRM_IOCTL_ADD_BUFS", C::Other),
    at(0x17, "DRM_IOCTL_MARK_BUFS", C::Other),
    at(0x18, "DRM_IOCTL_INFO_BUFS", C::Other),
    at(0x19, "DRM_IOCTL_MAP_BUFS", C::Other),
    at(0x1a, "DRM_IOCTL_FREE_BUFS", C::Other),
    at(0x1b, "DRM_IOCTL_RM_MAP", C::Other),
    at(0x1c, "DRM_IOCTL_SET_SAREA_CTX", C::Other),
    at(0x1d, "DRM_IOCTL_GET_SAREA_CTX", C::Other),
    // Master = ownership of modesetting: display servers only.
    at(0x1e, "DRM_IOCTL_SET_MASTER", C::Other),
    at(0x1f, "DRM_IOCTL_DROP_MASTER", C::Other),
    at(0x20, "DRM_IOCTL_ADD_CTX", C::Other),
    at(0x21, "DRM_IOCTL_RM_CTX", C::Other),
    at(0x22, "DRM_IOCTL_MOD_CTX", C::Other),
    at(0x23, "DRM_IOCTL_GET_CTX", C::Other),
    at(0x24, "DRM_IOCTL_SWITCH_CTX", C::Other),
    at(0x25, "DRM_IOCTL_NEW_CTX", C::Other),
    at(0x26, "DRM_IOCTL_RES_CTX", C::Other),
    at(0x27, "DRM_IOCTL_ADD_DRAW", C::Other),
    at(0x28, "DRM_IOCTL_RM_DRAW", C::Other),
    at(0x29, "DRM_IOCTL_DMA", C::Other),
    at(0x2a, "DRM_IOCTL_LOCK", C::Other),
    at(0x2b, "DRM_IOCTL_UNLOCK", C::Other),
    at(0x2c, "DRM_IOCTL_FINISH", C::Other),
    at(0x2d, "DRM_IOCTL_PRIME_HANDLE_TO_FD", C::Memory),
    at(0x2e, "DRM_IOCTL_PRIME_FD_TO_HANDLE", C::Memory),
    at(0x30, "DRM_IOCTL_AGP_ACQUIRE", C::Other),
    at(0x31, "DRM_IOCTL_AGP_RELEASE", C::Other),
    at(0x32, "DRM_IOCTL_AGP_ENABLE", C::Other),
    at(0x33, "DRM_IOCTL_AGP_INFO", C::Other),
    at(0x34, "DRM_IOCTL_AGP_ALLOC", C::Other),
    at(0x35, "DRM_IOCTL_AGP_FREE", C::Other),
    at(0x36, "DRM_IOCTL_AGP_BIND", C::Other),
    at(0x37, "DRM_IOCTL_AGP_UNBIND", C::Other),
    at(0x38, "DRM_IOCTL_SG_ALLOC", C::Other),
    at(0x39, "DRM_IOCTL_SG_FREE", C::Other),
    at(0x3a, "DRM_IOCTL_WAIT_VBLANK", C::Other),
    at(0x3b, "DRM_IOCTL_CRTC_GET_SEQUENCE", C::Other),
    at(0x3c, "DRM_IOCTL_CRTC_QUEUE_SEQUENCE", C::Other),
    at(0x3f, "DRM_IOCTL_UPDATE_DRAW", C::Other),
    // 0xA0..: KMS. Dumb buffers exist only to be scanned out, so they are display, not memory.
    at(0xa0, "DRM_IOCTL_MODE_GETRESOURCES", C::Other),
    at(0xa1, "DRM_IOCTL_MODE_GETCRTC", C::Other),
    at(0xa2, "DRM_IOCTL_MODE_SETCRTC", C::Other),
    at(0xa3, "DRM_IOCTL_MODE_CURSOR", C::Other),
    at(0xa4, "DRM_IOCTL_MODE_GETGAMMA", C::Other),
    at(0xa5, "DRM_IOCTL_MODE_SETGAMMA", C::Other),
    at(0xa6, "DRM_IOCTL_MODE_GETENCODER", C::Other),
    at(0xa7, "DRM_IOCTL_MODE_GETCONNECTOR", C::Other),
    at(0xa8, "DRM_IOCTL_MODE_ATTACHMODE", C::Other),
    at(0xa9, "DRM_IOCTL_MODE_DETACHMODE", C::Other),
    at(0xaa, "DRM_IOCTL_MODE_GETPROPERTY", C::Other),
    at(0xab, "DRM_IOCTL_MODE_SETPROPERTY", C::Other),
    at(0xac, "DRM_IOCTL_MODE_GETPROPBLOB", C::Other),
    at(0xad, "DRM_IOCTL_MODE_GETFB", C::Other),
    at(0xae, "DRM_IOCTL_MODE_ADDFB", C::Other),
    at(0xaf, "DRM_IOCTL_MODE_RMFB", C::Other),
    at(0xb0, "DRM_IOCTL_MODE_PAGE_FLIP", C::Other),
    at(0xb1, "DRM_IOCTL_MODE_DIRTYFB", C::Other),
    at(0xb2, "DRM_IOCTL_MODE_CREATE_DUMB", C::Other),
    at(0xb3, "DRM_IOCTL_MODE_MAP_DUMB", C::Other),
    at(0xb4, "DRM_IOCTL_MODE_DESTROY_DUMB", C::Other),
    at(0xb5, "DRM_IOCTL_MODE_GETPLANERESOURCES", C::Other),
    at(0xb6, "DRM_IOCTL_MODE_GETPLANE", C::Other),
    at(0xb7, "DRM_IOCTL_MODE_SETPLANE", C::Other),
    at(0xb8, "DRM_IOCTL_MODE_ADDFB2", C::Other),
    at(0xb9, "DRM_IOCTL_MODE_OBJ_GETPROPERTIES", C::Other),
    at(0xba, "DRM_IOCTL_MODE_OBJ_SETPROPERTY", C::Other),
    at(0xbb, "DRM_IOCTL_MODE_CURSOR2", C::Other),
    at(0xbc, "DRM_IOCTL_MODE_ATOMIC", C::Other),
    at(0xbd, "DRM_IOCTL_MODE_CREATEPROPBLOB", C::Other),
    at(0xbe, "DRM_IOCTL_MODE_DESTROYPROPBLOB", C::Other),
    at(0xbf, "DRM_IOCTL_SYNCOBJ_CREATE", C::Sync),
    at(0xc0, "DRM_IOCTL_SYNCOBJ_DESTROY", C::Sync),
    at(0xc1, "DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD", C::Sync),
    at(0xc2, "DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE", C::Sync),
    at(0xc3, "DRM_IOCTL_SYNCOBJ_WAIT", C::Sync),
    at(0xc4, "DRM_IOCTL_SYNCOBJ_RESET", C::Sync),
    at(0xc5, "DRM_IOCTL_SYNCOBJ_SIGNAL", C::Sync),
    at(0xc6, "DRM_IOCTL_MODE_CREATE_LEASE", C::Other),
    at(0xc7, "DRM_IOCTL_MODE_LIST_LESSEES", C::Other),
    at(0xc8, "DRM_IOCTL_MODE_GET_LEASE", C::Other),
    at(0xc9, "DRM_IOCTL_MODE_REVOKE_LEASE", C::Other),
    at(0xca, "DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT", C::Sync),
    at(0xcb, "DRM_IOCTL_SYNCOBJ_QUERY", C::Sync),
    at(0xcc, "DRM_IOCTL_SYNCOBJ_TRANSFER", C::Sync),
    at(0xcd, "DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL", C::Sync),
    at(0xce, "DRM_IOCTL_MODE_GETFB2", C::Other),
    at(0xcf, "DRM_IOCTL_SYNCOBJ_EVENTFD", C::Sync),
    at(0xd0, "DRM_IOCTL_MODE_CLOSEFB", C::Other),
    at(0xd1, "DRM_IOCTL_SET_CLIENT_NAME", C::Setup),
    at(0xd2, "DRM_IOCTL_GEM_CHANGE_HANDLE", C::Memory),
];

// ---------------------------------------------------------------------------------------------
// amdgpu
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/drm/amdgpu_drm.h (read at 0030595c3e8b; defines offsets
// 0x00..=0x09 and 0x10..=0x19, the last being GEM_LIST_HANDLES). With user queues (USERQ, 0x16)
// submission moves to a user-mapped ring and doorbell, as on KFD.
static AMDGPU: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_AMDGPU_GEM_CREATE", C::Memory),
    drv(0x01, "DRM_IOCTL_AMDGPU_GEM_MMAP", C::Memory),
    drv(0x02, "DRM_IOCTL_AMDGPU_CTX", C::Setup),
    drv(0x03, "DRM_IOCTL_AMDGPU_BO_LIST", C::Setup),
    drv(0x04, "DRM_IOCTL_AMDGPU_CS", C::Submit),
    drv(0x05, "DRM_IOCTL_AMDGPU_INFO", C::Query),
    drv(0x06, "DRM_IOCTL_AMDGPU_GEM_METADATA", C::Memory),
    drv(0x07, "DRM_IOCTL_AMDGPU_GEM_WAIT_IDLE", C::Sync),
    drv(0x08, "DRM_IOCTL_AMDGPU_GEM_VA", C::Memory),
    drv(0x09, "DRM_IOCTL_AMDGPU_WAIT_CS", C::Sync),
    drv(0x10, "DRM_IOCTL_AMDGPU_GEM_OP", C::Memory),
    drv(0x11, "DRM_IOCTL_AMDGPU_GEM_USERPTR", C::Memory),
    drv(0x12, "DRM_IOCTL_AMDGPU_WAIT_FENCES", C::Sync),
    drv(0x13, "DRM_IOCTL_AMDGPU_VM", C::Setup),
    drv(0x14, "DRM_IOCTL_AMDGPU_FENCE_TO_HANDLE", C::Sync),
    drv(0x15, "DRM_IOCTL_AMDGPU_SCHED", C::Setup),
    drv(0x16, "DRM_IOCTL_AMDGPU_USERQ", C::Setup),
    drv(0x17, "DRM_IOCTL_AMDGPU_USERQ_SIGNAL", C::Sync),
    drv(0x18, "DRM_IOCTL_AMDGPU_USERQ_WAIT", C::Sync),
    drv(0x19, "DRM_IOCTL_AMDGPU_GEM_LIST_HANDLES", C::Query),
];

// ---------------------------------------------------------------------------------------------
// AMD KFD (/dev/kfd, type 'K')
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/linux/kfd_ioctl.h (read at 100c85421b52: nr 0x01..=0x26,
// DBG_TRAP last) and the Debian linux-libc-dev 6.1 copy (0x01..=0x23). 0x27 CREATE_PROCESS and
// 0x28 PROFILER are taken from the v7.2 header as listed by strace (see module docs); the
// ROCm-DKMS-only numbers 0x80.. (ROCm/ROCK-Kernel-Driver) are left out. ROCm submits through
// user-mode AQL queues: no KFD ioctl is a submit.
static AMD_KFD: &[Entry] = &[
    at(0x01, "AMDKFD_IOC_GET_VERSION", C::Query),
    at(0x02, "AMDKFD_IOC_CREATE_QUEUE", C::Setup),
    at(0x03, "AMDKFD_IOC_DESTROY_QUEUE", C::Setup),
    at(0x04, "AMDKFD_IOC_SET_MEMORY_POLICY", C::Memory),
    at(0x05, "AMDKFD_IOC_GET_CLOCK_COUNTERS", C::Query),
    at(0x06, "AMDKFD_IOC_GET_PROCESS_APERTURES", C::Query),
    at(0x07, "AMDKFD_IOC_UPDATE_QUEUE", C::Setup),
    at(0x08, "AMDKFD_IOC_CREATE_EVENT", C::Sync),
    at(0x09, "AMDKFD_IOC_DESTROY_EVENT", C::Sync),
    at(0x0a, "AMDKFD_IOC_SET_EVENT", C::Sync),
    at(0x0b, "AMDKFD_IOC_RESET_EVENT", C::Sync),
    at(0x0c, "AMDKFD_IOC_WAIT_EVENTS", C::Sync),
    at(0x0d, "AMDKFD_IOC_DBG_REGISTER_DEPRECATED", C::Other),
    at(0x0e, "AMDKFD_IOC_DBG_UNREGISTER_DEPRECATED", C::Other),
    at(0x0f, "AMDKFD_IOC_DBG_ADDRESS_WATCH_DEPRECATED", C::Other),
    at(0x10, "AMDKFD_IOC_DBG_WAVE_CONTROL_DEPRECATED", C::Other),
    at(0x11, "AMDKFD_IOC_SET_SCRATCH_BACKING_VA", C::Memory),
    at(0x12, "AMDKFD_IOC_GET_TILE_CONFIG", C::Query),
    at(0x13, "AMDKFD_IOC_SET_TRAP_HANDLER", C::Setup),
    at(0x14, "AMDKFD_IOC_GET_PROCESS_APERTURES_NEW", C::Query),
    at(0x15, "AMDKFD_IOC_ACQUIRE_VM", C::Setup),
    at(0x16, "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", C::Memory),
    at(0x17, "AMDKFD_IOC_FREE_MEMORY_OF_GPU", C::Memory),
    at(0x18, "AMDKFD_IOC_MAP_MEMORY_TO_GPU", C::Memory),
    at(0x19, "AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU", C::Memory),
    at(0x1a, "AMDKFD_IOC_SET_CU_MASK", C::Setup),
    at(0x1b, "AMDKFD_IOC_GET_QUEUE_WAVE_STATE", C::Query),
    at(0x1c, "AMDKFD_IOC_GET_DMABUF_INFO", C::Query),
    at(0x1d, "AMDKFD_IOC_IMPORT_DMABUF", C::Memory),
    at(0x1e, "AMDKFD_IOC_ALLOC_QUEUE_GWS", C::Setup),
    at(0x1f, "AMDKFD_IOC_SMI_EVENTS", C::Query),
    at(0x20, "AMDKFD_IOC_SVM", C::Memory),
    at(0x21, "AMDKFD_IOC_SET_XNACK_MODE", C::Setup),
    at(0x22, "AMDKFD_IOC_CRIU_OP", C::Other),
    at(0x23, "AMDKFD_IOC_AVAILABLE_MEMORY", C::Query),
    at(0x24, "AMDKFD_IOC_EXPORT_DMABUF", C::Memory),
    at(0x25, "AMDKFD_IOC_RUNTIME_ENABLE", C::Setup),
    at(0x26, "AMDKFD_IOC_DBG_TRAP", C::Other),
    at(0x27, "AMDKFD_IOC_CREATE_PROCESS", C::Setup),
    at(0x28, "AMDKFD_IOC_PROFILER", C::Query),
];

// ---------------------------------------------------------------------------------------------
// i915
// ---------------------------------------------------------------------------------------------

/// `_IOC_SIZE` of `struct drm_i915_gem_context_create` (ctx_id, pad).
const I915_CONTEXT_CREATE_SIZE: u32 = 8;
/// `_IOC_SIZE` of `struct drm_i915_gem_context_create_ext` (ctx_id, flags, extensions).
const I915_CONTEXT_CREATE_EXT_SIZE: u32 = 16;
/// `_IOC_SIZE` of `struct drm_i915_gem_mmap_gtt` (handle, pad, offset).
const I915_MMAP_GTT_SIZE: u32 = 16;
/// `_IOC_SIZE` of `struct drm_i915_gem_mmap_offset` (handle, pad, offset, flags, extensions).
const I915_MMAP_OFFSET_SIZE: u32 = 32;

// Source: torvalds/linux include/uapi/drm/i915_drm.h (offsets 0x00..=0x3c, "must be kept compact",
// GEM_CREATE_EXT last), cross-checked against the v7.2 list generated by strace. The proposed
// GEM_VM_BIND/UNBIND (0x3d/0x3e) never landed and are left out. DRI1-era commands (INIT .. GEM_INIT,
// pinning, VT switching, overlays, sprite colour keys) are kept as Other; the kernel rejects most.
static I915: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_I915_INIT", C::Other),
    drv(0x01, "DRM_IOCTL_I915_FLUSH", C::Other),
    drv(0x02, "DRM_IOCTL_I915_FLIP", C::Other),
    drv(0x03, "DRM_IOCTL_I915_BATCHBUFFER", C::Other),
    drv(0x04, "DRM_IOCTL_I915_IRQ_EMIT", C::Other),
    drv(0x05, "DRM_IOCTL_I915_IRQ_WAIT", C::Other),
    drv(0x06, "DRM_IOCTL_I915_GETPARAM", C::Query),
    drv(0x07, "DRM_IOCTL_I915_SETPARAM", C::Setup),
    drv(0x08, "DRM_IOCTL_I915_ALLOC", C::Other),
    drv(0x09, "DRM_IOCTL_I915_FREE", C::Other),
    drv(0x0a, "DRM_IOCTL_I915_INIT_HEAP", C::Other),
    drv(0x0b, "DRM_IOCTL_I915_CMDBUFFER", C::Other),
    drv(0x0c, "DRM_IOCTL_I915_DESTROY_HEAP", C::Other),
    drv(0x0d, "DRM_IOCTL_I915_SET_VBLANK_PIPE", C::Other),
    drv(0x0e, "DRM_IOCTL_I915_GET_VBLANK_PIPE", C::Other),
    drv(0x0f, "DRM_IOCTL_I915_VBLANK_SWAP", C::Other),
    drv(0x11, "DRM_IOCTL_I915_HWS_ADDR", C::Other),
    drv(0x13, "DRM_IOCTL_I915_GEM_INIT", C::Other),
    drv(0x14, "DRM_IOCTL_I915_GEM_EXECBUFFER", C::Submit),
    drv(0x15, "DRM_IOCTL_I915_GEM_PIN", C::Memory),
    drv(0x16, "DRM_IOCTL_I915_GEM_UNPIN", C::Memory),
    drv(0x17, "DRM_IOCTL_I915_GEM_BUSY", C::Sync),
    drv(0x18, "DRM_IOCTL_I915_GEM_THROTTLE", C::Sync),
    drv(0x19, "DRM_IOCTL_I915_GEM_ENTERVT", C::Other),
    drv(0x1a, "DRM_IOCTL_I915_GEM_LEAVEVT", C::Other),
    drv(0x1b, "DRM_IOCTL_I915_GEM_CREATE", C::Memory),
    drv(0x1c, "DRM_IOCTL_I915_GEM_PREAD", C::Memory),
    drv(0x1d, "DRM_IOCTL_I915_GEM_PWRITE", C::Memory),
    drv(0x1e, "DRM_IOCTL_I915_GEM_MMAP", C::Memory),
    drv(0x1f, "DRM_IOCTL_I915_GEM_SET_DOMAIN", C::Memory),
    drv(0x20, "DRM_IOCTL_I915_GEM_SW_FINISH", C::Memory),
    drv(0x21, "DRM_IOCTL_I915_GEM_SET_TILING", C::Memory),
    drv(0x22, "DRM_IOCTL_I915_GEM_GET_TILING", C::Memory),
    drv(0x23, "DRM_IOCTL_I915_GEM_GET_APERTURE", C::Query),
    // 0x24 is served by the same handler under both names; MMAP_OFFSET is the current one.
    drv_shaped(0x24, "DRM_IOCTL_I915_GEM_MMAP_OFFSET", C::Memory, Shape::Size(I915_MMAP_OFFSET_SIZE)),
    drv_shaped(0x24, "DRM_IOCTL_I915_GEM_MMAP_GTT", C::Memory, Shape::Size(I915_MMAP_GTT_SIZE)),
    drv(0x25, "DRM_IOCTL_I915_GET_PIPE_FROM_CRTC_ID", C::Other),
    drv(0x26, "DRM_IOCTL_I915_GEM_MADVISE", C::Memory),
    drv(0x27, "DRM_IOCTL_I915_OVERLAY_PUT_IMAGE", C::Other),
    drv(0x28, "DRM_IOCTL_I915_OVERLAY_ATTRS", C::Other),
    // DRM_I915_GEM_EXECBUFFER2_WR is the same nr encoded _IOWR (returns an out-fence).
    drv_shaped(0x29, "DRM_IOCTL_I915_GEM_EXECBUFFER2", C::Submit, Shape::Dir(IOC_WRITE)),
    drv_shaped(0x29, "DRM_IOCTL_I915_GEM_EXECBUFFER2_WR", C::Submit, Shape::Dir(IOC_READ | IOC_WRITE)),
    drv(0x2a, "DRM_IOCTL_I915_GET_SPRITE_COLORKEY", C::Other),
    drv(0x2b, "DRM_IOCTL_I915_SET_SPRITE_COLORKEY", C::Other),
    drv(0x2c, "DRM_IOCTL_I915_GEM_WAIT", C::Sync),
    drv_shaped(0x2d, "DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT", C::Setup, Shape::Size(I915_CONTEXT_CREATE_EXT_SIZE)),
    drv_shaped(0x2d, "DRM_IOCTL_I915_GEM_CONTEXT_CREATE", C::Setup, Shape::Size(I915_CONTEXT_CREATE_SIZE)),
    drv(0x2e, "DRM_IOCTL_I915_GEM_CONTEXT_DESTROY", C::Setup),
    drv(0x2f, "DRM_IOCTL_I915_GEM_SET_CACHING", C::Memory),
    drv(0x30, "DRM_IOCTL_I915_GEM_GET_CACHING", C::Memory),
    drv(0x31, "DRM_IOCTL_I915_REG_READ", C::Query),
    drv(0x32, "DRM_IOCTL_I915_GET_RESET_STATS", C::Query),
    drv(0x33, "DRM_IOCTL_I915_GEM_USERPTR", C::Memory),
    drv(0x34, "DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM", C::Query),
    drv(0x35, "DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM", C::Setup),
    drv(0x36, "DRM_IOCTL_I915_PERF_OPEN", C::Query),
    drv(0x37, "DRM_IOCTL_I915_PERF_ADD_CONFIG", C::Query),
    drv(0x38, "DRM_IOCTL_I915_PERF_REMOVE_CONFIG", C::Query),
    drv(0x39, "DRM_IOCTL_I915_QUERY", C::Query),
    drv(0x3a, "DRM_IOCTL_I915_GEM_VM_CREATE", C::Setup),
    drv(0x3b, "DRM_IOCTL_I915_GEM_VM_DESTROY", C::Setup),
    drv(0x3c, "DRM_IOCTL_I915_GEM_CREATE_EXT", C::Memory),
];

// ---------------------------------------------------------------------------------------------
// xe
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/drm/xe_drm.h (offsets 0x00..=0x0b as read; "must be kept
// compact -- no holes"). 0x0c MADVISE, 0x0d VM_QUERY_MEM_RANGE_ATTRS, 0x0e
// EXEC_QUEUE_SET_PROPERTY and 0x0f VM_GET_PROPERTY are as in the v7.2 header (strace's generated
// list; the patch series show VM_GET_PROPERTY rebased from 0x0e to 0x0f before it landed).
// Observation-stream ioctls (type 'i') act on the stream fd, not the device node.
static XE: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_XE_DEVICE_QUERY", C::Query),
    drv(0x01, "DRM_IOCTL_XE_GEM_CREATE", C::Memory),
    drv(0x02, "DRM_IOCTL_XE_GEM_MMAP_OFFSET", C::Memory),
    drv(0x03, "DRM_IOCTL_XE_VM_CREATE", C::Setup),
    drv(0x04, "DRM_IOCTL_XE_VM_DESTROY", C::Setup),
    drv(0x05, "DRM_IOCTL_XE_VM_BIND", C::Memory),
    drv(0x06, "DRM_IOCTL_XE_EXEC_QUEUE_CREATE", C::Setup),
    drv(0x07, "DRM_IOCTL_XE_EXEC_QUEUE_DESTROY", C::Setup),
    drv(0x08, "DRM_IOCTL_XE_EXEC_QUEUE_GET_PROPERTY", C::Query),
    drv(0x09, "DRM_IOCTL_XE_EXEC", C::Submit),
    drv(0x0a, "DRM_IOCTL_XE_WAIT_USER_FENCE", C::Sync),
    drv(0x0b, "DRM_IOCTL_XE_OBSERVATION", C::Query),
    drv(0x0c, "DRM_IOCTL_XE_MADVISE", C::Memory),
    drv(0x0d, "DRM_IOCTL_XE_VM_QUERY_MEM_RANGE_ATTRS", C::Query),
    drv(0x0e, "DRM_IOCTL_XE_EXEC_QUEUE_SET_PROPERTY", C::Setup),
    drv(0x0f, "DRM_IOCTL_XE_VM_GET_PROPERTY", C::Query),
];

// ---------------------------------------------------------------------------------------------
// nouveau
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/drm/nouveau_drm.h (DRM_NOUVEAU_* offsets; GEM_* sit at
// offset 0x40, i.e. nr 0x80..=0x84) and drivers/gpu/drm/nouveau/nouveau_drm.c, which routes
// offset 0x07 (NVIF, variable size, no uapi DRM_IOCTL_ macro) to its object interface.
// Deprecated offsets without a uapi DRM_IOCTL_ macro (SETPARAM, GROBJ_ALLOC, NOTIFIEROBJ_ALLOC,
// GPUOBJ_FREE) and the unmerged SET_ZCULL_CTXSW_BUFFER are left out.
static NOUVEAU: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_NOUVEAU_GETPARAM", C::Query),
    drv(0x02, "DRM_IOCTL_NOUVEAU_CHANNEL_ALLOC", C::Setup),
    drv(0x03, "DRM_IOCTL_NOUVEAU_CHANNEL_FREE", C::Setup),
    drv(0x07, "DRM_IOCTL_NOUVEAU_NVIF", C::Setup),
    drv(0x08, "DRM_IOCTL_NOUVEAU_SVM_INIT", C::Setup),
    drv(0x09, "DRM_IOCTL_NOUVEAU_SVM_BIND", C::Memory),
    drv(0x10, "DRM_IOCTL_NOUVEAU_VM_INIT", C::Setup),
    drv(0x11, "DRM_IOCTL_NOUVEAU_VM_BIND", C::Memory),
    drv(0x12, "DRM_IOCTL_NOUVEAU_EXEC", C::Submit),
    drv(0x13, "DRM_IOCTL_NOUVEAU_GET_ZCULL_INFO", C::Query),
    drv(0x40, "DRM_IOCTL_NOUVEAU_GEM_NEW", C::Memory),
    drv(0x41, "DRM_IOCTL_NOUVEAU_GEM_PUSHBUF", C::Submit),
    drv(0x42, "DRM_IOCTL_NOUVEAU_GEM_CPU_PREP", C::Sync),
    drv(0x43, "DRM_IOCTL_NOUVEAU_GEM_CPU_FINI", C::Sync),
    drv(0x44, "DRM_IOCTL_NOUVEAU_GEM_INFO", C::Query),
];

// ---------------------------------------------------------------------------------------------
// DRM accel drivers
// ---------------------------------------------------------------------------------------------

// Source: torvalds/linux include/uapi/drm/habanalabs_accel.h (HL_IOCTL_* offsets 0x00..=0x05).
static HABANALABS: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_HL_INFO", C::Query),
    drv(0x01, "DRM_IOCTL_HL_CB", C::Memory),
    drv(0x02, "DRM_IOCTL_HL_CS", C::Submit),
    drv(0x03, "DRM_IOCTL_HL_WAIT_CS", C::Sync),
    drv(0x04, "DRM_IOCTL_HL_MEMORY", C::Memory),
    drv(0x05, "DRM_IOCTL_HL_DEBUG", C::Query),
];

// Source: include/uapi/misc/habanalabs.h as shipped in Debian linux-libc-dev 6.1 (type 'H',
// nr 0x01..=0x06), the character-device interface (/dev/hl*) used before the accel move.
static HABANALABS_LEGACY: &[Entry] = &[
    at(0x01, "HL_IOCTL_INFO", C::Query),
    at(0x02, "HL_IOCTL_CB", C::Memory),
    at(0x03, "HL_IOCTL_CS", C::Submit),
    at(0x04, "HL_IOCTL_WAIT_CS", C::Sync),
    at(0x05, "HL_IOCTL_MEMORY", C::Memory),
    at(0x06, "HL_IOCTL_DEBUG", C::Query),
];

// Source: torvalds/linux include/uapi/drm/ivpu_accel.h (2025 revision: offsets 0x00..=0x03,
// 0x05..=0x0d; 0x04 is unused). 0x0e BO_CREATE_FROM_USERPTR from the upstream patch adding it
// and the v7.2 list generated by strace.
static IVPU: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_IVPU_GET_PARAM", C::Query),
    drv(0x01, "DRM_IOCTL_IVPU_SET_PARAM", C::Setup),
    drv(0x02, "DRM_IOCTL_IVPU_BO_CREATE", C::Memory),
    drv(0x03, "DRM_IOCTL_IVPU_BO_INFO", C::Memory),
    drv(0x05, "DRM_IOCTL_IVPU_SUBMIT", C::Submit),
    drv(0x06, "DRM_IOCTL_IVPU_BO_WAIT", C::Sync),
    drv(0x07, "DRM_IOCTL_IVPU_METRIC_STREAMER_START", C::Query),
    drv(0x08, "DRM_IOCTL_IVPU_METRIC_STREAMER_STOP", C::Query),
    drv(0x09, "DRM_IOCTL_IVPU_METRIC_STREAMER_GET_DATA", C::Query),
    drv(0x0a, "DRM_IOCTL_IVPU_METRIC_STREAMER_GET_INFO", C::Query),
    drv(0x0b, "DRM_IOCTL_IVPU_CMDQ_CREATE", C::Setup),
    drv(0x0c, "DRM_IOCTL_IVPU_CMDQ_DESTROY", C::Setup),
    drv(0x0d, "DRM_IOCTL_IVPU_CMDQ_SUBMIT", C::Submit),
    drv(0x0e, "DRM_IOCTL_IVPU_BO_CREATE_FROM_USERPTR", C::Memory),
];

// Source: torvalds/linux include/uapi/drm/amdxdna_accel.h (enum amdxdna_drm_ioctl_id, 0..=8 as
// read). WAIT_CMD (9) and GET_ARRAY (10) as in the v7.2 header (strace's generated list); the
// out-of-tree amd/xdna-driver has encoded WAIT_CMD both _IOW and _IOWR, which decode the same.
static AMDXDNA: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_AMDXDNA_CREATE_HWCTX", C::Setup),
    drv(0x01, "DRM_IOCTL_AMDXDNA_DESTROY_HWCTX", C::Setup),
    drv(0x02, "DRM_IOCTL_AMDXDNA_CONFIG_HWCTX", C::Setup),
    drv(0x03, "DRM_IOCTL_AMDXDNA_CREATE_BO", C::Memory),
    drv(0x04, "DRM_IOCTL_AMDXDNA_GET_BO_INFO", C::Memory),
    drv(0x05, "DRM_IOCTL_AMDXDNA_SYNC_BO", C::Memory),
    drv(0x06, "DRM_IOCTL_AMDXDNA_EXEC_CMD", C::Submit),
    drv(0x07, "DRM_IOCTL_AMDXDNA_GET_INFO", C::Query),
    drv(0x08, "DRM_IOCTL_AMDXDNA_SET_STATE", C::Setup),
    drv(0x09, "DRM_IOCTL_AMDXDNA_WAIT_CMD", C::Sync),
    drv(0x0a, "DRM_IOCTL_AMDXDNA_GET_ARRAY", C::Query),
];

// Source: torvalds/linux include/uapi/drm/qaic_accel.h (DRM_QAIC_* offsets 0x00..=0x08).
static QAIC: &[Entry] = &[
    drv(0x00, "DRM_IOCTL_QAIC_MANAGE", C::Setup),
    drv(0x01, "DRM_IOCTL_QAIC_CREATE_BO", C::Memory),
    drv(0x02, "DRM_IOCTL_QAIC_MMAP_BO", C::Memory),
    drv(0x03, "DRM_IOCTL_QAIC_ATTACH_SLICE_BO", C::Memory),
    drv(0x04, "DRM_IOCTL_QAIC_EXECUTE_BO", C::Submit),
    drv(0x05, "DRM_IOCTL_QAIC_PARTIAL_EXECUTE_BO", C::Submit),
    drv(0x06, "DRM_IOCTL_QAIC_WAIT_BO", C::Sync),
    drv(0x07, "DRM_IOCTL_QAIC_PERF_STATS_BO", C::Query),
    drv(0x08, "DRM_IOCTL_QAIC_DETACH_SLICE_BO", C::Memory),
];

// ---------------------------------------------------------------------------------------------
// NVIDIA resource manager (/dev/nvidiactl, /dev/nvidia[0-9]*, type 'F')
// ---------------------------------------------------------------------------------------------

// Sources: NVIDIA/open-gpu-kernel-modules 595.45.04 (df1c9a3de2be):
//  * src/nvidia/arch/nvalloc/unix/include/nv_escape.h: RM escapes (nr 0x27..=0x5f), validated
//    and dispatched in src/nvidia/arch/nvalloc/unix/src/escape.c;
//  * kernel-open/common/inc/nv-ioctl-numbers.h and nv-ioctl-numa.h: NV_IOCTL_BASE (200) + n,
//    dispatched in kernel-open/nvidia/nv.c, which keys on _IOC_NR(cmd) only.
static NVIDIA_RM: &[Entry] = &[
    at(0x27, "NV_ESC_RM_ALLOC_MEMORY", C::Memory),
    at(0x28, "NV_ESC_RM_ALLOC_OBJECT", C::Setup),
    at(0x29, "NV_ESC_RM_FREE", C::Setup),
    // Multiplexed: the control id is in the argument. See module docs.
    at(0x2a, "NV_ESC_RM_CONTROL", C::Query),
    // Any RM class (channels, VA spaces, memory, ...). See module docs.
    at(0x2b, "NV_ESC_RM_ALLOC", C::Setup),
    at(0x34, "NV_ESC_RM_DUP_OBJECT", C::Setup),
    at(0x35, "NV_ESC_RM_SHARE", C::Setup),
    at(0x39, "NV_ESC_RM_I2C_ACCESS", C::Other),
    at(0x41, "NV_ESC_RM_IDLE_CHANNELS", C::Sync),
    at(0x4a, "NV_ESC_RM_VID_HEAP_CONTROL", C::Memory),
    at(0x4d, "NV_ESC_RM_ACCESS_REGISTRY", C::Query),
    at(0x4e, "NV_ESC_RM_MAP_MEMORY", C::Memory),
    at(0x4f, "NV_ESC_RM_UNMAP_MEMORY", C::Memory),
    at(0x52, "NV_ESC_RM_GET_EVENT_DATA", C::Sync),
    at(0x54, "NV_ESC_RM_ALLOC_CONTEXT_DMA2", C::Memory),
    at(0x56, "NV_ESC_RM_ADD_VBLANK_CALLBACK", C::Other),
    at(0x57, "NV_ESC_RM_MAP_MEMORY_DMA", C::Memory),
    at(0x58, "NV_ESC_RM_UNMAP_MEMORY_DMA", C::Memory),
    at(0x59, "NV_ESC_RM_BIND_CONTEXT_DMA", C::Memory),
    at(0x5c, "NV_ESC_RM_EXPORT_OBJECT_TO_FD", C::Memory),
    at(0x5d, "NV_ESC_RM_IMPORT_OBJECT_FROM_FD", C::Memory),
    at(0x5e, "NV_ESC_RM_UPDATE_DEVICE_MAPPING_INFO", C::Memory),
    at(0x5f, "NV_ESC_RM_LOCKLESS_DIAGNOSTIC", C::Query),
    nv(0, "NV_ESC_CARD_INFO", C::Query),
    nv(1, "NV_ESC_REGISTER_FD", C::Setup),
    nv(6, "NV_ESC_ALLOC_OS_EVENT", C::Sync),
    nv(7, "NV_ESC_FREE_OS_EVENT", C::Sync),
    nv(9, "NV_ESC_STATUS_CODE", C::Query),
    nv(10, "NV_ESC_CHECK_VERSION_STR", C::Setup),
    // Wrapper for large arguments: the real escape number is inside.
    nv(11, "NV_ESC_IOCTL_XFER_CMD", C::Other),
    nv(12, "NV_ESC_ATTACH_GPUS_TO_FD", C::Setup),
    nv(13, "NV_ESC_QUERY_DEVICE_INTR", C::Query),
    nv(14, "NV_ESC_SYS_PARAMS", C::Setup),
    nv(15, "NV_ESC_NUMA_INFO", C::Query),
    nv(16, "NV_ESC_SET_NUMA_STATUS", C::Setup),
    nv(17, "NV_ESC_EXPORT_TO_DMABUF_FD", C::Memory),
    nv(18, "NV_ESC_WAIT_OPEN_COMPLETE", C::Setup),
];

// ---------------------------------------------------------------------------------------------
// NVIDIA UVM (/dev/nvidia-uvm, /dev/nvidia-uvm-tools): plain numbers
// ---------------------------------------------------------------------------------------------

// Sources: NVIDIA/open-gpu-kernel-modules 595.45.04: kernel-open/nvidia-uvm/uvm_linux_ioctl.h
// (INITIALIZE, DEINITIALIZE) and uvm_ioctl.h (UVM_IOCTL_BASE(i) == i on Linux). Numbers 1..=22
// are defined in the header but no longer routed by uvm.c / uvm_tools.c (the pre-UVM8 API); they
// are kept because the header still defines them. The UVM_TOOLS_* commands are served on
// /dev/nvidia-uvm-tools.
static NVIDIA_UVM: &[PlainEntry] = &[
    plain(0x3000_0001, "UVM_INITIALIZE", C::Setup),
    plain(0x3000_0002, "UVM_DEINITIALIZE", C::Setup),
    plain(1, "UVM_RESERVE_VA", C::Memory),
    plain(2, "UVM_RELEASE_VA", C::Memory),
    plain(3, "UVM_REGION_COMMIT", C::Memory),
    plain(4, "UVM_REGION_DECOMMIT", C::Memory),
    plain(5, "UVM_REGION_SET_STREAM", C::Setup),
    plain(6, "UVM_SET_STREAM_RUNNING", C::Setup),
    plain(7, "UVM_SET_STREAM_STOPPED", C::Setup),
    plain(10, "UVM_ADD_SESSION", C::Query),
    plain(12, "UVM_ENABLE_COUNTERS", C::Query),
    plain(13, "UVM_MAP_COUNTER", C::Query),
    plain(14, "UVM_CREATE_EVENT_QUEUE", C::Query),
    plain(15, "UVM_REMOVE_EVENT_QUEUE", C::Query),
    plain(16, "UVM_MAP_EVENT_QUEUE", C::Query),
    plain(17, "UVM_EVENT_CTRL", C::Query),
    plain(20, "UVM_GET_GPU_UUID_TABLE", C::Query),
    plain(21, "UVM_REGION_SET_BACKING", C::Memory),
    plain(22, "UVM_REGION_UNSET_BACKING", C::Memory),
    plain(23, "UVM_CREATE_RANGE_GROUP", C::Memory),
    plain(24, "UVM_DESTROY_RANGE_GROUP", C::Memory),
    plain(25, "UVM_REGISTER_GPU_VASPACE", C::Setup),
    plain(26, "UVM_UNREGISTER_GPU_VASPACE", C::Setup),
    plain(27, "UVM_REGISTER_CHANNEL", C::Setup),
    plain(28, "UVM_UNREGISTER_CHANNEL", C::Setup),
    plain(29, "UVM_ENABLE_PEER_ACCESS", C::Setup),
    plain(30, "UVM_DISABLE_PEER_ACCESS", C::Setup),
    plain(31, "UVM_SET_RANGE_GROUP", C::Memory),
    plain(33, "UVM_MAP_EXTERNAL_ALLOCATION", C::Memory),
    plain(34, "UVM_FREE", C::Memory),
    plain(35, "UVM_MEM_MAP", C::Memory),
    plain(37, "UVM_REGISTER_GPU", C::Setup),
    plain(38, "UVM_UNREGISTER_GPU", C::Setup),
    plain(39, "UVM_PAGEABLE_MEM_ACCESS", C::Query),
    plain(40, "UVM_PREVENT_MIGRATION_RANGE_GROUPS", C::Memory),
    plain(41, "UVM_ALLOW_MIGRATION_RANGE_GROUPS", C::Memory),
    plain(42, "UVM_SET_PREFERRED_LOCATION", C::Memory),
    plain(43, "UVM_UNSET_PREFERRED_LOCATION", C::Memory),
    plain(44, "UVM_ENABLE_READ_DUPLICATION", C::Memory),
    plain(45, "UVM_DISABLE_READ_DUPLICATION", C::Memory),
    plain(46, "UVM_SET_ACCESSED_BY", C::Memory),
    plain(47, "UVM_UNSET_ACCESSED_BY", C::Memory),
    plain(51, "UVM_MIGRATE", C::Memory),
    plain(53, "UVM_MIGRATE_RANGE_GROUP", C::Memory),
    plain(56, "UVM_TOOLS_INIT_EVENT_TRACKER", C::Query),
    plain(57, "UVM_TOOLS_SET_NOTIFICATION_THRESHOLD", C::Query),
    plain(58, "UVM_TOOLS_EVENT_QUEUE_ENABLE_EVENTS", C::Query),
    plain(59, "UVM_TOOLS_EVENT_QUEUE_DISABLE_EVENTS", C::Query),
    plain(60, "UVM_TOOLS_ENABLE_COUNTERS", C::Query),
    plain(61, "UVM_TOOLS_DISABLE_COUNTERS", C::Query),
    plain(62, "UVM_TOOLS_READ_PROCESS_MEMORY", C::Other),
    plain(63, "UVM_TOOLS_WRITE_PROCESS_MEMORY", C::Other),
    plain(64, "UVM_TOOLS_GET_PROCESSOR_UUID_TABLE", C::Query),
    plain(65, "UVM_MAP_DYNAMIC_PARALLELISM_REGION", C::Memory),
    plain(66, "UVM_UNMAP_EXTERNAL", C::Memory),
    plain(67, "UVM_TOOLS_FLUSH_EVENTS", C::Query),
    plain(68, "UVM_ALLOC_SEMAPHORE_POOL", C::Memory),
    plain(69, "UVM_CLEAN_UP_ZOMBIE_RESOURCES", C::Setup),
    plain(70, "UVM_PAGEABLE_MEM_ACCESS_ON_GPU", C::Query),
    plain(71, "UVM_POPULATE_PAGEABLE", C::Memory),
    plain(72, "UVM_VALIDATE_VA_RANGE", C::Query),
    plain(73, "UVM_CREATE_EXTERNAL_RANGE", C::Memory),
    plain(74, "UVM_MAP_EXTERNAL_SPARSE", C::Memory),
    plain(75, "UVM_MM_INITIALIZE", C::Setup),
    plain(76, "UVM_TOOLS_INIT_EVENT_TRACKER_V2", C::Query),
    plain(77, "UVM_TOOLS_GET_PROCESSOR_UUID_TABLE_V2", C::Query),
    plain(78, "UVM_ALLOC_DEVICE_P2P", C::Memory),
    plain(79, "UVM_CLEAR_ALL_ACCESS_COUNTERS", C::Setup),
    plain(80, "UVM_DISCARD", C::Memory),
    plain(2047, "UVM_IS_8_SUPPORTED", C::Query),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// Every table a driver can reach, for whole-table checks.
    fn reachable_names(driver: Driver) -> Vec<&'static str> {
        let typed: Vec<&'static [Entry]> = match driver {
            Driver::NvidiaUvm => return NVIDIA_UVM.iter().map(|e| e.name).collect(),
            Driver::NvidiaRm => vec![NVIDIA_RM],
            Driver::AmdKfd => vec![AMD_KFD],
            Driver::Unknown => vec![],
            Driver::Habanalabs => vec![DRM_CORE, HABANALABS, HABANALABS_LEGACY],
            drm => vec![DRM_CORE, drm_private_table(drm)],
        };
        typed.iter().flat_map(|t| t.iter().map(|e| e.name)).collect()
    }

    fn all_typed_tables() -> [(&'static str, &'static [Entry]); 13] {
        [
            ("drm_core", DRM_CORE),
            ("amdgpu", AMDGPU),
            ("amd_kfd", AMD_KFD),
            ("i915", I915),
            ("xe", XE),
            ("nouveau", NOUVEAU),
            ("habanalabs", HABANALABS),
            ("habanalabs_legacy", HABANALABS_LEGACY),
            ("ivpu", IVPU),
            ("amdxdna", AMDXDNA),
            ("qaic", QAIC),
            ("nvidia_rm", NVIDIA_RM),
            ("drm_private_of_drm", drm_private_table(Driver::Drm)),
        ]
    }

    fn name(driver: Driver, cmd: u32) -> Option<&'static str> {
        decode(driver, cmd).map(|i| i.name)
    }

    // ----- number helpers -------------------------------------------------------------------

    #[test]
    fn helpers_match_kernel_layout() {
        // Values worked out by hand from include/uapi/asm-generic/ioctl.h.
        assert_eq!(io(b'd', 0x1e), 0x0000_641e);
        assert_eq!(ior(b'K', 0x01, 8), 0x8008_4b01);
        assert_eq!(iow(b'd', 0x09, 8), 0x4008_6409);
        assert_eq!(iowr(b'd', 0x44, 0x18), 0xc018_6444);
        assert_eq!(ioc(IOC_READ | IOC_WRITE, b'F', 0x2a, 0x20), 0xc020_462a);

        let cmd = 0xc018_6444;
        assert_eq!(ioc_dir(cmd), IOC_READ | IOC_WRITE);
        assert_eq!(ioc_type(cmd), b'd');
        assert_eq!(ioc_nr(cmd), 0x44);
        assert_eq!(ioc_size(cmd), 0x18);

        // Round trip over the full field ranges.
        for dir in 0..4 {
            for size in [0u32, 1, 0x40, 0x3fff] {
                let cmd = ioc(dir, 0xab, 0xcd, size);
                assert_eq!((ioc_dir(cmd), ioc_type(cmd), ioc_nr(cmd), ioc_size(cmd)), (dir, 0xab, 0xcd, size));
            }
        }
        // Oversized fields are masked, not carried into neighbouring fields.
        assert_eq!(ioc(7, 0, 0, 0x4000), ioc(3, 0, 0, 0));
    }

    // ----- known encodings ------------------------------------------------------------------

    #[test]
    fn known_encodings_decode() {
        // (driver, independently computed command, expected name, category). Sizes: struct
        // layouts on LP64 from the cited headers; KFD/HL values were also printed by a C program
        // built against the linux-libc-dev 6.1 headers, and all DRM/KFD values agree with the
        // Linux v7.2 list generated by strace.
        let cases: &[(Driver, u32, &str, IoctlCategory)] = &[
            // struct drm_version: 3 ints + pad, then 3 (size_t, char *) pairs = 0x40.
            (Driver::Drm, 0xc040_6400, "DRM_IOCTL_VERSION", C::Query),
            // struct drm_gem_close: handle, pad.
            (Driver::Amdgpu, 0x4008_6409, "DRM_IOCTL_GEM_CLOSE", C::Memory),
            // union drm_amdgpu_cs: in = 4 x u32 + u64 chunks = 0x18.
            (Driver::Amdgpu, 0xc018_6444, "DRM_IOCTL_AMDGPU_CS", C::Submit),
            (Driver::Amdgpu, 0xc020_6440, "DRM_IOCTL_AMDGPU_GEM_CREATE", C::Memory),
            (Driver::Amdgpu, 0x4040_6448, "DRM_IOCTL_AMDGPU_GEM_VA", C::Memory),
            // struct drm_syncobj_create: handle, flags.
            (Driver::Xe, 0xc008_64bf, "DRM_IOCTL_SYNCOBJ_CREATE", C::Sync),
            (Driver::Xe, 0xc038_64bc, "DRM_IOCTL_MODE_ATOMIC", C::Other),
            (Driver::AmdKfd, 0x8008_4b01, "AMDKFD_IOC_GET_VERSION", C::Query),
            (Driver::AmdKfd, 0xc028_4b16, "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", C::Memory),
            (Driver::AmdKfd, 0xc018_4b18, "AMDKFD_IOC_MAP_MEMORY_TO_GPU", C::Memory),
            (Driver::AmdKfd, 0xc018_4b0c, "AMDKFD_IOC_WAIT_EVENTS", C::Sync),
            (Driver::AmdKfd, 0x4008_4b17, "AMDKFD_IOC_FREE_MEMORY_OF_GPU", C::Memory),
            // struct drm_i915_gem_execbuffer2 = 0x40 bytes, _IOW and _IOWR.
            (Driver::I915, 0x4040_6469, "DRM_IOCTL_I915_GEM_EXECBUFFER2", C::Submit),
            (Driver::I915, 0xc040_6469, "DRM_IOCTL_I915_GEM_EXECBUFFER2_WR", C::Submit),
            (Driver::I915, 0xc010_6446, "DRM_IOCTL_I915_GETPARAM", C::Query),
            // struct drm_xe_exec = 0x38, _IOW.
            (Driver::Xe, 0x4038_6449, "DRM_IOCTL_XE_EXEC", C::Submit),
            (Driver::Xe, 0x4088_6445, "DRM_IOCTL_XE_VM_BIND", C::Memory),
            (Driver::Nouveau, 0xc040_6481, "DRM_IOCTL_NOUVEAU_GEM_PUSHBUF", C::Submit),
            (Driver::Nouveau, 0xc028_6452, "DRM_IOCTL_NOUVEAU_EXEC", C::Submit),
            (Driver::Habanalabs, 0xc030_6442, "DRM_IOCTL_HL_CS", C::Submit),
            (Driver::Habanalabs, 0xc030_4803, "HL_IOCTL_CS", C::Submit),
            // struct drm_ivpu_submit: u64 + 5 x u32, padded to 0x20; _IOW.
            (Driver::Ivpu, 0x4020_6445, "DRM_IOCTL_IVPU_SUBMIT", C::Submit),
            // struct amdxdna_drm_exec_cmd = 0x38.
            (Driver::AmdXdna, 0xc038_6446, "DRM_IOCTL_AMDXDNA_EXEC_CMD", C::Submit),
            // struct qaic_execute: hdr (2 x u32) + u64 = 0x10, _IOW.
            (Driver::Qaic, 0x4010_6444, "DRM_IOCTL_QAIC_EXECUTE_BO", C::Submit),
            // NVOS54_PARAMETERS: 4 x u32 + NvP64 + 2 x u32 = 0x20.
            (Driver::NvidiaRm, 0xc020_462a, "NV_ESC_RM_CONTROL", C::Query),
            // NVOS21_PARAMETERS = 0x20; NVOS00_PARAMETERS = 4 x u32.
            (Driver::NvidiaRm, 0xc020_462b, "NV_ESC_RM_ALLOC", C::Setup),
            (Driver::NvidiaRm, 0xc010_4629, "NV_ESC_RM_FREE", C::Setup),
            (Driver::NvidiaRm, iowr(b'F', 200, 0x48), "NV_ESC_CARD_INFO", C::Query),
            (Driver::NvidiaRm, iowr(b'F', 218, 8), "NV_ESC_WAIT_OPEN_COMPLETE", C::Setup),
        ];
        for &(driver, cmd, want, category) in cases {
            let got = decode(driver, cmd);
            assert_eq!(got, Some(IoctlInfo { name: want, category }), "{driver:?} {cmd:#010x}");
            assert_eq!(category_of(driver, cmd), category);
        }
    }

    #[test]
    fn hand_computed_constants_agree_with_helpers() {
        assert_eq!(iowr(DRM_IOCTL_TYPE, 0x00, 0x40), 0xc040_6400);
        assert_eq!(iow(DRM_IOCTL_TYPE, 0x09, 8), 0x4008_6409);
        assert_eq!(iowr(DRM_IOCTL_TYPE, DRM_COMMAND_BASE + 0x04, 0x18), 0xc018_6444);
        assert_eq!(iowr(DRM_IOCTL_TYPE, 0xbf, 8), 0xc008_64bf);
        assert_eq!(iowr(KFD_IOCTL_TYPE, 0x16, 0x28), 0xc028_4b16);
        assert_eq!(iowr(NV_IOCTL_TYPE, 0x2a, 0x20), 0xc020_462a);
        assert_eq!(iow(DRM_IOCTL_TYPE, DRM_COMMAND_BASE + 0x29, 0x40), 0x4040_6469);
        assert_eq!(iowr(HL_LEGACY_IOCTL_TYPE, 0x03, 0x30), 0xc030_4803);
    }

    // ----- table integrity ------------------------------------------------------------------

    #[test]
    fn names_unique_per_driver() {
        for driver in Driver::ALL {
            let names = reachable_names(driver);
            let mut seen = HashSet::new();
            for n in &names {
                assert!(seen.insert(*n), "{n} appears twice for {driver:?}");
            }
            if driver != Driver::Unknown {
                assert!(!names.is_empty(), "{driver:?} has no table");
            }
        }
    }

    #[test]
    fn no_ambiguous_entries() {
        // Two entries may share an nr only if their shapes tell them apart.
        for (table_name, table) in all_typed_tables() {
            let mut by_nr: HashMap<u8, Vec<Shape>> = HashMap::new();
            for e in table {
                by_nr.entry(e.nr).or_default().push(e.shape);
            }
            for (nr, shapes) in by_nr {
                if shapes.len() > 1 {
                    assert!(
                        shapes.iter().all(|s| *s != Shape::Any),
                        "{table_name}: nr {nr:#x} shared by an unshaped entry"
                    );
                    let distinct: HashSet<_> = shapes.iter().map(|s| format!("{s:?}")).collect();
                    assert_eq!(distinct.len(), shapes.len(), "{table_name}: nr {nr:#x}");
                }
            }
        }
        let mut cmds = HashSet::new();
        for e in NVIDIA_UVM {
            assert!(cmds.insert(e.cmd), "UVM command {} listed twice", e.cmd);
        }
    }

    #[test]
    fn entries_are_categorised_and_named_by_family() {
        let prefixes: [(&[Entry], &str); 11] = [
            (DRM_CORE, "DRM_IOCTL_"),
            (AMDGPU, "DRM_IOCTL_AMDGPU_"),
            (AMD_KFD, "AMDKFD_IOC_"),
            (I915, "DRM_IOCTL_I915_"),
            (XE, "DRM_IOCTL_XE_"),
            (NOUVEAU, "DRM_IOCTL_NOUVEAU_"),
            (HABANALABS, "DRM_IOCTL_HL_"),
            (HABANALABS_LEGACY, "HL_IOCTL_"),
            (IVPU, "DRM_IOCTL_IVPU_"),
            (AMDXDNA, "DRM_IOCTL_AMDXDNA_"),
            (QAIC, "DRM_IOCTL_QAIC_"),
        ];
        for (table, prefix) in prefixes {
            for e in table {
                assert!(e.name.starts_with(prefix), "{} lacks {prefix}", e.name);
                assert_ne!(e.category, C::Unknown, "{}", e.name);
            }
        }
        for e in NVIDIA_RM {
            assert!(e.name.starts_with("NV_ESC_"), "{}", e.name);
            assert_ne!(e.category, C::Unknown);
        }
        for e in NVIDIA_UVM {
            assert!(e.name.starts_with("UVM_"), "{}", e.name);
            assert_ne!(e.category, C::Unknown);
        }
    }

    #[test]
    fn drm_tables_respect_core_and_private_ranges() {
        for e in DRM_CORE {
            assert!(is_drm_core_nr(e.nr), "{} at {:#x}", e.name, e.nr);
        }
        for table in [AMDGPU, I915, XE, NOUVEAU, HABANALABS, IVPU, AMDXDNA, QAIC] {
            for e in table {
                assert!((DRM_COMMAND_BASE..DRM_COMMAND_END).contains(&e.nr), "{} at {:#x}", e.name, e.nr);
            }
        }
        assert!(is_drm_core_nr(0x3f) && is_drm_core_nr(0xa0) && is_drm_core_nr(0xff));
        assert!(!is_drm_core_nr(0x40) && !is_drm_core_nr(0x9f));
    }

    // ----- core vs driver-private routing --------------------------------------------------

    #[test]
    fn core_range_decodes_through_drm_core_for_every_drm_driver() {
        let drm_drivers = [
            Driver::Drm,
            Driver::Amdgpu,
            Driver::I915,
            Driver::Xe,
            Driver::Nouveau,
            Driver::Habanalabs,
            Driver::Ivpu,
            Driver::AmdXdna,
            Driver::Qaic,
        ];
        for driver in drm_drivers {
            assert_eq!(name(driver, 0x4008_6409), Some("DRM_IOCTL_GEM_CLOSE"));
            assert_eq!(name(driver, 0xc00c_642e), Some("DRM_IOCTL_PRIME_FD_TO_HANDLE"));
            assert_eq!(name(driver, iowr(b'd', 0xc3, 0x28)), Some("DRM_IOCTL_SYNCOBJ_WAIT"));
            assert_eq!(name(driver, iowr(b'd', 0xb0, 0x18)), Some("DRM_IOCTL_MODE_PAGE_FLIP"));
        }
    }

    #[test]
    fn private_range_depends_on_driver() {
        let nr44 = iowr(b'd', 0x44, 0x18);
        assert_eq!(name(Driver::Amdgpu, nr44), Some("DRM_IOCTL_AMDGPU_CS"));
        assert_eq!(name(Driver::I915, nr44), Some("DRM_IOCTL_I915_IRQ_EMIT"));
        assert_eq!(name(Driver::Xe, nr44), Some("DRM_IOCTL_XE_VM_DESTROY"));
        assert_eq!(name(Driver::Habanalabs, nr44), Some("DRM_IOCTL_HL_MEMORY"));
        assert_eq!(name(Driver::Qaic, nr44), Some("DRM_IOCTL_QAIC_EXECUTE_BO"));
        // A generic DRM node knows no private commands.
        assert_eq!(decode(Driver::Drm, nr44), None);
        assert_eq!(category_of(Driver::Drm, nr44), C::Unknown);
        // Same nr, different driver, different category.
        assert_eq!(category_of(Driver::Amdgpu, nr44), C::Submit);
        assert_eq!(category_of(Driver::I915, nr44), C::Other);
    }

    // ----- size / direction tolerance ------------------------------------------------------

    #[test]
    fn grown_or_shrunk_structs_still_decode() {
        // AMDGPU_CS with a hypothetical larger argument and with a different direction.
        assert_eq!(name(Driver::Amdgpu, iowr(b'd', 0x44, 0x40)), Some("DRM_IOCTL_AMDGPU_CS"));
        assert_eq!(name(Driver::Amdgpu, iow(b'd', 0x44, 0x18)), Some("DRM_IOCTL_AMDGPU_CS"));
        // KFD CREATE_QUEUE: 0x58 bytes in the 6.1 header, 0x60 in v7.2.
        assert_eq!(name(Driver::AmdKfd, 0xc058_4b02), Some("AMDKFD_IOC_CREATE_QUEUE"));
        assert_eq!(name(Driver::AmdKfd, 0xc060_4b02), Some("AMDKFD_IOC_CREATE_QUEUE"));
        // NVIDIA RM_ALLOC: NVOS21 (0x20) and NVOS64 (0x30) parameter blocks.
        assert_eq!(name(Driver::NvidiaRm, 0xc030_462b), Some("NV_ESC_RM_ALLOC"));
        // DRM core: drm_version of a 32-bit process (0x24 bytes).
        assert_eq!(name(Driver::Drm, iowr(b'd', 0x00, 0x24)), Some("DRM_IOCTL_VERSION"));
    }

    #[test]
    fn shared_nr_prefers_exact_shape_then_canonical() {
        let ctx = |size| name(Driver::I915, iowr(b'd', 0x6d, size));
        assert_eq!(ctx(8), Some("DRM_IOCTL_I915_GEM_CONTEXT_CREATE"));
        assert_eq!(ctx(16), Some("DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT"));
        assert_eq!(ctx(24), Some("DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT"));

        let mmap = |size| name(Driver::I915, iowr(b'd', 0x64, size));
        assert_eq!(mmap(16), Some("DRM_IOCTL_I915_GEM_MMAP_GTT"));
        assert_eq!(mmap(32), Some("DRM_IOCTL_I915_GEM_MMAP_OFFSET"));
        assert_eq!(mmap(48), Some("DRM_IOCTL_I915_GEM_MMAP_OFFSET"));

        // Direction none/read-only is neither encoding: canonical name, same category.
        let exec = ioc(IOC_NONE, b'd', 0x69, 0x40);
        assert_eq!(name(Driver::I915, exec), Some("DRM_IOCTL_I915_GEM_EXECBUFFER2"));
        assert_eq!(category_of(Driver::I915, exec), C::Submit);
    }

    // ----- UVM ------------------------------------------------------------------------------

    #[test]
    fn uvm_uses_plain_numbers() {
        assert_eq!(name(Driver::NvidiaUvm, 0x3000_0001), Some("UVM_INITIALIZE"));
        assert_eq!(name(Driver::NvidiaUvm, 0x3000_0002), Some("UVM_DEINITIALIZE"));
        assert_eq!(name(Driver::NvidiaUvm, 23), Some("UVM_CREATE_RANGE_GROUP"));
        assert_eq!(name(Driver::NvidiaUvm, 27), Some("UVM_REGISTER_CHANNEL"));
        assert_eq!(name(Driver::NvidiaUvm, 33), Some("UVM_MAP_EXTERNAL_ALLOCATION"));
        assert_eq!(name(Driver::NvidiaUvm, 37), Some("UVM_REGISTER_GPU"));
        assert_eq!(name(Driver::NvidiaUvm, 51), Some("UVM_MIGRATE"));
        assert_eq!(name(Driver::NvidiaUvm, 68), Some("UVM_ALLOC_SEMAPHORE_POOL"));
        assert_eq!(name(Driver::NvidiaUvm, 2047), Some("UVM_IS_8_SUPPORTED"));
        assert_eq!(category_of(Driver::NvidiaUvm, 33), C::Memory);
        assert_eq!(category_of(Driver::NvidiaUvm, 56), C::Query);
        // Gaps, neighbours and _IOC-style encodings of a valid number are not UVM commands.
        for cmd in [0, 8, 32, 36, 81, 2046, 2048, 0x3000_0000, 0x3000_0003, iowr(b'F', 33, 8)] {
            assert_eq!(decode(Driver::NvidiaUvm, cmd), None, "{cmd:#x}");
        }
        // And UVM numbers mean nothing on the RM node.
        assert_eq!(decode(Driver::NvidiaRm, 33), None);
    }

    // ----- unknown input --------------------------------------------------------------------

    #[test]
    fn unknown_commands_are_none() {
        // Wrong ioctl type for the driver.
        assert_eq!(decode(Driver::Amdgpu, iowr(b'K', 0x04, 0x18)), None);
        assert_eq!(decode(Driver::AmdKfd, iowr(b'd', 0x16, 0x28)), None);
        assert_eq!(decode(Driver::NvidiaRm, iowr(b'd', 0x2a, 0x20)), None);
        assert_eq!(decode(Driver::I915, iowr(b'H', 0x03, 0x30)), None);
        // Holes in the tables.
        assert_eq!(decode(Driver::Drm, iowr(b'd', 0x0e, 8)), None);
        assert_eq!(decode(Driver::Drm, iowr(b'd', 0xfe, 8)), None);
        assert_eq!(decode(Driver::Amdgpu, iowr(b'd', 0x4a, 8)), None);
        assert_eq!(decode(Driver::AmdKfd, iowr(b'K', 0x00, 8)), None);
        assert_eq!(decode(Driver::AmdKfd, iowr(b'K', 0x82, 8)), None);
        assert_eq!(decode(Driver::NvidiaRm, iowr(b'F', 0x00, 8)), None);
        assert_eq!(decode(Driver::NvidiaRm, iowr(b'F', 202, 8)), None);
        assert_eq!(decode(Driver::Ivpu, iowr(b'd', 0x44, 8)), None);
        // Unknown driver knows nothing, not even the DRM core.
        assert_eq!(decode(Driver::Unknown, 0x4008_6409), None);
        assert_eq!(category_of(Driver::Unknown, 0x4008_6409), C::Unknown);
        assert_eq!(category_of(Driver::Xe, 0xffff_ffff), C::Unknown);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // Every (type, nr) pair with extreme dir/size fields, plus a stride over all u32.
        let mut decoded = 0u32;
        for driver in Driver::ALL {
            for ty in 0..=255u8 {
                for nr in 0..=255u8 {
                    if decode(driver, ioc(3, ty, nr, 0x3fff)).is_some() {
                        decoded += 1;
                    }
                }
            }
            let mut cmd = 0u32;
            loop {
                let _ = category_of(driver, cmd);
                match cmd.checked_add(0x0001_0f0f) {
                    Some(next) => cmd = next,
                    None => break,
                }
            }
            let _ = category_of(driver, u32::MAX);
        }
        assert!(decoded > 0);
    }

    // ----- heuristic ------------------------------------------------------------------------

    #[test]
    fn heuristic_compute_mixes() {
        // amdgpu/xe/i915 style inference loop: submits, waits, some buffer traffic.
        assert!(looks_like_compute(&[
            (C::Submit, 500),
            (C::Sync, 480),
            (C::Memory, 40),
            (C::Query, 10),
            (C::Setup, 3),
        ]));
        // NVIDIA: no visible submit, memory mapping plus lots of RM_CONTROL.
        assert!(looks_like_compute(&[(C::Query, 200), (C::Setup, 30), (C::Memory, 12)]));
        // KFD steady state with some allocation: memory plus event waits.
        assert!(looks_like_compute(&[(C::Sync, 90), (C::Memory, 2)]));
        // Repeated categories are summed.
        assert!(looks_like_compute(&[(C::Memory, 2), (C::Memory, 2)]));
    }

    #[test]
    fn heuristic_display_and_query_mixes() {
        // Compositor: one atomic commit (plus property and vblank traffic) per frame around its
        // rendering submits and fence waits.
        assert!(!looks_like_compute(&[(C::Other, 180), (C::Submit, 60), (C::Sync, 120), (C::Memory, 6),]));
        // nvidia-smi / vulkaninfo / clinfo: setup and queries only.
        assert!(!looks_like_compute(&[(C::Setup, 40), (C::Query, 400)]));
        // Waits only, a lone submit, a couple of buffer closes.
        assert!(!looks_like_compute(&[(C::Sync, 1000)]));
        assert!(!looks_like_compute(&[(C::Submit, 1)]));
        assert!(!looks_like_compute(&[(C::Memory, MEMORY_ONLY_MIN - 1)]));
    }

    #[test]
    fn heuristic_empty_and_unknown_mixes() {
        assert!(!looks_like_compute(&[]));
        assert!(!looks_like_compute(&[(C::Unknown, 1_000_000)]));
        assert!(!looks_like_compute(&[(C::Submit, 0), (C::Memory, 0), (C::Sync, 0)]));
    }

    #[test]
    fn heuristic_documented_limit_render_node_graphics() {
        // A browser GPU process on a render node is indistinguishable by category: it is
        // reported compute-shaped, as the module docs warn.
        assert!(looks_like_compute(&[(C::Submit, 60), (C::Memory, 20), (C::Sync, 60)]));
    }

    #[test]
    fn heuristic_saturates_instead_of_overflowing() {
        assert!(looks_like_compute(&[(C::Submit, u64::MAX), (C::Submit, u64::MAX), (C::Sync, 1)]));
        assert!(!looks_like_compute(&[(C::Submit, u64::MAX), (C::Sync, u64::MAX), (C::Other, u64::MAX),]));
    }

    // ----- enums ----------------------------------------------------------------------------

    #[test]
    fn as_str_is_stable_lowercase_and_unique() {
        let drivers: HashSet<_> = Driver::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(drivers.len(), Driver::ALL.len());
        let all = [C::Setup, C::Memory, C::Submit, C::Sync, C::Query, C::Other, C::Unknown];
        let cats: HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(cats.len(), all.len());
        for s in drivers.iter().chain(cats.iter()) {
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
        assert_eq!(Driver::AmdKfd.as_str(), "amd_kfd");
        assert_eq!(IoctlCategory::Submit.as_str(), "submit");
    }

    #[test]
    fn compute_only_nodes() {
        assert!(Driver::AmdKfd.is_compute_only());
        assert!(Driver::NvidiaUvm.is_compute_only());
        assert!(Driver::Qaic.is_compute_only());
        assert!(!Driver::Amdgpu.is_compute_only());
        assert!(!Driver::NvidiaRm.is_compute_only());
        assert!(!Driver::Drm.is_compute_only());
    }
}
