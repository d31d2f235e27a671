//! ioctl command decoding for accelerator device nodes: the shared machinery and the driver
//! registry.
//!
//! The kernel side of modelwatch counts `ioctl(2)` calls per (process, device node, command
//! number). This module turns a raw command number into a name (the uapi macro name, e.g.
//! `DRM_IOCTL_AMDGPU_CS`, `NV_ESC_RM_ALLOC`, `UVM_MAP_EXTERNAL_ALLOCATION`) and a coarse
//! [`IoctlCategory`], and offers a small heuristic, [`looks_like_compute`], over a category mix.
//!
//! This file owns the `_IOC` helpers, the table types, the registry of drivers ([`Driver`], one
//! descriptor per driver), [`decode`], [`category_of`] and the heuristic. Each driver family's
//! tables and descriptors are in their own file, with the sources they were written from:
//!
//! * `drm_core.rs`: the DRM core ioctls every DRM and DRM-accel node serves, and [`Driver::Drm`]
//!   (a DRM node whose driver has no table of its own);
//! * `amd.rs`: amdgpu and KFD (`/dev/kfd`);
//! * `intel.rs`: i915 and xe;
//! * `nvidia.rs`: the proprietary driver's RM escapes and UVM, and nouveau;
//! * `habana.rs`: habanalabs (Gaudi), DRM accel plus its older character-device interface;
//! * `drm_accel.rs`: the other DRM accel drivers (Intel NPU, AMD NPU, Qualcomm Cloud AI).
//!
//! What adding a driver takes is in the [`crate::accel`] module documentation.
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
//! [`ioc_dir`], [`ioc_type`], [`ioc_nr`], [`ioc_size`] take them apart, so the tables are
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
//! ## Commands that are not `_IOC`-encoded
//!
//! NVIDIA UVM (`/dev/nvidia-uvm`) numbers its commands with plain integers, matched exactly;
//! `nvidia.rs` documents this and the other NVIDIA caveats (multiplexed `RM_CONTROL`/`RM_ALLOC`).
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
//! **Kernel launches are not always ioctls.** CUDA writes methods into user-mapped pushbuffers /
//! GPFIFO rings and rings a user-mapped doorbell, so a busy CUDA process can issue almost no
//! ioctls while the GPU is saturated, and no NVIDIA command is categorised
//! [`IoctlCategory::Submit`]. AMD KFD (AQL user queues) and amdgpu user queues
//! (`DRM_IOCTL_AMDGPU_USERQ`) work the same way. What is visible there is setup and memory
//! traffic, which is why the heuristic below accepts memory traffic alone.
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

mod amd;
mod drm_accel;
mod drm_core;
mod habana;
mod intel;
mod nvidia;

pub use amd::KFD_IOCTL_TYPE;
pub use habana::HL_LEGACY_IOCTL_TYPE;
pub use nvidia::{NV_IOCTL_BASE, NV_IOCTL_TYPE};

// ---------------------------------------------------------------------------------------------
// Driver registry
// ---------------------------------------------------------------------------------------------

/// Declares [`Driver`] from the registry list: one variant per descriptor, in list order. The
/// list is the only place a driver is named, so `Driver::ALL` and the descriptor lookup cannot
/// drift from the enum.
macro_rules! drivers {
    ($($(#[$doc:meta])* $variant:ident => $spec:path,)+) => {
        /// Driver families whose ioctls can be decoded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Driver {
            $($(#[$doc])* $variant,)+
        }

        impl Driver {
            /// Every variant, in declaration order.
            pub const ALL: [Driver; [$(Driver::$variant),+].len()] = [$(Driver::$variant),+];

            /// This driver's descriptor.
            const fn spec(self) -> &'static DriverSpec {
                match self {
                    $(Driver::$variant => &$spec,)+
                }
            }
        }
    };
}

// The order is `Driver::ALL`'s, which configuration errors list: new drivers go before `Unknown`.
drivers! {
    /// /dev/nvidia[0-9]*, /dev/nvidiactl: NVIDIA resource manager escapes.
    NvidiaRm => nvidia::NVIDIA_RM_DRIVER,
    /// /dev/nvidia-uvm, /dev/nvidia-uvm-tools.
    NvidiaUvm => nvidia::NVIDIA_UVM_DRIVER,
    /// DRM node of any driver (core ioctls only).
    Drm => drm_core::DRM_DRIVER,
    Amdgpu => amd::AMDGPU_DRIVER,
    /// /dev/kfd.
    AmdKfd => amd::KFD_DRIVER,
    I915 => intel::I915_DRIVER,
    Xe => intel::XE_DRIVER,
    Nouveau => nvidia::NOUVEAU_DRIVER,
    Habanalabs => habana::HABANALABS_DRIVER,
    Ivpu => drm_accel::IVPU_DRIVER,
    AmdXdna => drm_accel::AMDXDNA_DRIVER,
    Qaic => drm_accel::QAIC_DRIVER,
    Unknown => UNKNOWN_DRIVER,
}

/// Everything discovery and decoding need to know about one driver.
#[derive(Debug)]
struct DriverSpec {
    /// Stable lowercase identifier, see [`Driver::as_str`].
    id: &'static str,
    /// Driver names as discovery reports them in `Accelerator.driver`: the sysfs driver of a DRM
    /// or accel node (`/sys/class/{drm,accel}/<node>/device/driver`), or the name discovery gives
    /// a character device it recognises by node name (`nvidia`, `amdkfd`, ...).
    kernel_names: &'static [&'static str],
    /// See [`Driver::vendor`].
    vendor: &'static str,
    /// See [`Driver::is_compute_only`].
    compute_only: bool,
    /// How its commands decode.
    tables: Tables,
}

/// A node whose driver is not known: nothing decodes, not even the DRM core.
static UNKNOWN_DRIVER: DriverSpec =
    DriverSpec { id: "unknown", kernel_names: &[], vendor: "", compute_only: false, tables: Tables::Undecoded };

impl Driver {
    /// Stable lowercase identifier, suitable for events and metrics labels (and accepted as
    /// `devices.extra[].driver` in the configuration).
    pub const fn as_str(self) -> &'static str {
        self.spec().id
    }

    /// Whether the node exists only for compute, so that any submit/memory activity on it is
    /// compute rather than graphics: `/dev/kfd` (ROCm), `/dev/nvidia-uvm` (opened by the
    /// CUDA/OpenCL stack, not by NVIDIA's graphics drivers) and the DRM accel drivers (Gaudi,
    /// Intel NPU, AMD NPU, Qualcomm Cloud AI). GPU render/primary nodes and the NVIDIA RM nodes
    /// serve graphics and compute alike and return `false`.
    pub const fn is_compute_only(self) -> bool {
        self.spec().compute_only
    }

    /// Vendor of a DRM or accel node of this driver, for when its PCI vendor id is missing or
    /// not recognised; empty when the descriptor does not say (the drivers of character devices,
    /// which discovery names by node, vendor included).
    pub const fn vendor(self) -> &'static str {
        self.spec().vendor
    }

    /// The driver whose descriptor lists `name` (a driver name as discovery reports it).
    pub fn from_kernel_name(name: &str) -> Option<Driver> {
        Driver::ALL.into_iter().find(|d| d.spec().kernel_names.contains(&name))
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
    driver.spec().tables.decode(cmd)
}

/// Category of `cmd` on `driver`; [`IoctlCategory::Unknown`] when [`decode`] returns `None`.
pub fn category_of(driver: Driver, cmd: u32) -> IoctlCategory {
    decode(driver, cmd).map_or(IoctlCategory::Unknown, |info| info.category)
}

/// How a driver's commands decode.
#[derive(Debug, Clone, Copy)]
enum Tables {
    /// Nothing decodes.
    Undecoded,
    /// Commands matched on their full 32-bit value.
    Plain(&'static [PlainEntry]),
    /// `_IOC` commands of one type.
    Typed(TypedTable),
    /// A DRM or DRM-accel node: type `'d'`, the core range through the DRM core table and the
    /// driver-private range through `private`. `legacy` is an older interface of the same driver
    /// (another ioctl type) that its nodes may still be driven through.
    Drm { private: &'static [Entry], legacy: Option<TypedTable> },
}

impl Tables {
    fn decode(self, cmd: u32) -> Option<IoctlInfo> {
        let entry = match self {
            Tables::Undecoded => None,
            Tables::Plain(table) => return table.iter().find(|e| e.cmd == cmd).map(PlainEntry::info),
            Tables::Typed(table) => table.lookup(cmd),
            Tables::Drm { private, legacy } => {
                if ioc_type(cmd) != DRM_IOCTL_TYPE {
                    legacy.and_then(|table| table.lookup(cmd))
                } else if is_drm_core_nr(ioc_nr(cmd)) {
                    lookup(drm_core::DRM_CORE, cmd)
                } else {
                    lookup(private, cmd)
                }
            }
        }?;
        Some(entry.info())
    }
}

/// A table of `_IOC` commands that all carry the ioctl type `ty`.
#[derive(Debug, Clone, Copy)]
struct TypedTable {
    ty: u8,
    entries: &'static [Entry],
}

impl TypedTable {
    fn lookup(self, cmd: u32) -> Option<&'static Entry> {
        if ioc_type(cmd) == self.ty { lookup(self.entries, cmd) } else { None }
    }
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
// Table entries (used by the driver files)
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

impl PlainEntry {
    const fn info(&self) -> IoctlInfo {
        IoctlInfo { name: self.name, category: self.category }
    }
}

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

const fn plain(cmd: u32, name: &'static str, category: IoctlCategory) -> PlainEntry {
    PlainEntry { cmd, name, category }
}

/// Checks the driver files' tests share.
#[cfg(test)]
mod check {
    use super::{Driver, Entry, IoctlCategory, IoctlInfo, category_of, decode};

    /// Each (driver, command) decodes to exactly (name, category).
    pub(super) fn decodes(cases: &[(Driver, u32, &'static str, IoctlCategory)]) {
        for &(driver, cmd, want, category) in cases {
            let got = decode(driver, cmd);
            assert_eq!(got, Some(IoctlInfo { name: want, category }), "{driver:?} {cmd:#010x}");
            assert_eq!(category_of(driver, cmd), category);
        }
    }

    /// Every name in `table` is of the family `prefix` says (catches an entry pasted into the
    /// wrong table).
    pub(super) fn names_start_with(table: &[Entry], prefix: &str) {
        for e in table {
            assert!(e.name.starts_with(prefix), "{} lacks {prefix}", e.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    use IoctlCategory as C;

    /// Every `_IOC` table a driver can reach, with the type it is keyed under.
    fn typed_tables(driver: Driver) -> Vec<(u8, &'static [Entry])> {
        match driver.spec().tables {
            Tables::Undecoded | Tables::Plain(_) => vec![],
            Tables::Typed(t) => vec![(t.ty, t.entries)],
            Tables::Drm { private, legacy } => {
                let mut v = vec![(DRM_IOCTL_TYPE, drm_core::DRM_CORE), (DRM_IOCTL_TYPE, private)];
                v.extend(legacy.map(|t| (t.ty, t.entries)));
                v
            }
        }
    }

    fn plain_table(driver: Driver) -> &'static [PlainEntry] {
        match driver.spec().tables {
            Tables::Plain(t) => t,
            _ => &[],
        }
    }

    /// Every name a driver can decode to.
    fn reachable_names(driver: Driver) -> Vec<&'static str> {
        let typed = typed_tables(driver).into_iter().flat_map(|(_, t)| t.iter().map(|e| e.name));
        typed.chain(plain_table(driver).iter().map(|e| e.name)).collect()
    }

    fn drm_drivers() -> Vec<Driver> {
        Driver::ALL.into_iter().filter(|d| matches!(d.spec().tables, Tables::Drm { .. })).collect()
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

    // ----- registry and table integrity -----------------------------------------------------

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
        // Within everything one driver decodes, a (type, nr) is one entry, or several that
        // their distinct shapes tell apart; a plain number is one entry.
        for driver in Driver::ALL {
            let mut by_key: HashMap<(u8, u8), Vec<Shape>> = HashMap::new();
            for (ty, table) in typed_tables(driver) {
                for e in table {
                    by_key.entry((ty, e.nr)).or_default().push(e.shape);
                }
            }
            for ((ty, nr), shapes) in by_key {
                if shapes.len() > 1 {
                    assert!(
                        shapes.iter().all(|s| *s != Shape::Any),
                        "{driver:?}: type {ty:#x} nr {nr:#x} shared by an unshaped entry"
                    );
                    let distinct: HashSet<_> = shapes.iter().map(|s| format!("{s:?}")).collect();
                    assert_eq!(distinct.len(), shapes.len(), "{driver:?}: type {ty:#x} nr {nr:#x}");
                }
            }
            let mut cmds = HashSet::new();
            for e in plain_table(driver) {
                assert!(cmds.insert(e.cmd), "{driver:?}: command {} listed twice", e.cmd);
            }
        }
    }

    #[test]
    fn every_entry_is_categorised() {
        for driver in Driver::ALL {
            for (_, table) in typed_tables(driver) {
                for e in table {
                    assert_ne!(e.category, C::Unknown, "{}", e.name);
                }
            }
            for e in plain_table(driver) {
                assert_ne!(e.category, C::Unknown, "{}", e.name);
            }
        }
    }

    #[test]
    fn drm_tables_respect_core_and_private_ranges() {
        for e in drm_core::DRM_CORE {
            assert!(is_drm_core_nr(e.nr), "{} at {:#x}", e.name, e.nr);
        }
        for driver in drm_drivers() {
            let Tables::Drm { private, .. } = driver.spec().tables else { unreachable!() };
            for e in private {
                assert!((DRM_COMMAND_BASE..DRM_COMMAND_END).contains(&e.nr), "{} at {:#x}", e.name, e.nr);
            }
        }
        assert!(is_drm_core_nr(0x3f) && is_drm_core_nr(0xa0) && is_drm_core_nr(0xff));
        assert!(!is_drm_core_nr(0x40) && !is_drm_core_nr(0x9f));
    }

    #[test]
    fn kernel_names_resolve_to_one_driver() {
        let mut seen = HashSet::new();
        for driver in Driver::ALL {
            for &kernel_name in driver.spec().kernel_names {
                assert!(seen.insert(kernel_name), "{kernel_name} listed by two drivers");
                assert_eq!(Driver::from_kernel_name(kernel_name), Some(driver));
            }
        }
        assert_eq!(Driver::from_kernel_name("intel_vpu"), Some(Driver::Ivpu));
        assert_eq!(Driver::from_kernel_name("nvidia-modeset"), Some(Driver::NvidiaRm));
        assert_eq!(Driver::from_kernel_name("radeon"), None);
        assert_eq!(Driver::from_kernel_name(""), None);
    }

    // ----- core vs driver-private routing --------------------------------------------------

    #[test]
    fn core_range_decodes_through_drm_core_for_every_drm_driver() {
        let drm_drivers = drm_drivers();
        assert!(drm_drivers.contains(&Driver::Drm) && drm_drivers.contains(&Driver::Qaic));
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
    fn registry_lists_unknown_last() {
        // `Unknown` is the fallback, and configuration errors list the ids in `ALL` order.
        assert_eq!(Driver::ALL.last(), Some(&Driver::Unknown));
        assert!(Driver::ALL.is_sorted());
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
