//! NVIDIA GPUs: the proprietary driver's resource-manager escapes (`/dev/nvidiactl`,
//! `/dev/nvidia[0-9]*`) and UVM (`/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`), and nouveau's DRM
//! driver-private ioctls.
//!
//! Sources: NVIDIA/open-gpu-kernel-modules 595.45.04 for the proprietary driver, torvalds/linux
//! `include/uapi/drm/nouveau_drm.h` for nouveau; files at each table.
//!
//! # Caveats
//!
//! * `/dev/nvidiactl` and `/dev/nvidia[0-9]*` take RM "escape" ioctls with type `'F'`
//!   (`NV_IOCTL_MAGIC`). Resource-manager escapes use nr `0x27..=0x5F`; the driver's own
//!   escapes start at `NV_IOCTL_BASE` = 200. The kernel keys on nr only.
//! * **Kernel launches are not ioctls.** CUDA writes methods into user-mapped pushbuffers /
//!   GPFIFO rings and rings a user-mapped doorbell (USERD / work-submit token), so a busy CUDA
//!   process can issue almost no ioctls while the GPU is saturated. No NVIDIA command is
//!   categorised [`Submit`](C::Submit). What is visible is setup (object allocation, channel
//!   and VA-space creation, UVM registration) and memory traffic (heap allocation, GPU/CPU
//!   mappings, UVM migrations and external mappings).
//! * `NV_ESC_RM_CONTROL` is a multiplexer: the control command id (`NVOS54_PARAMETERS.cmd`) lives
//!   in the argument struct and is not visible in the ioctl number. Most controls a CUDA or NVML
//!   client issues read state (GPU info, capabilities, clocks), so it is categorised
//!   [`Query`](C::Query); some controls configure channels or memory, which this module
//!   cannot see. Likewise `NV_ESC_RM_ALLOC` allocates RM objects of any class (clients, devices,
//!   channels, VA spaces, events and memory); the class is in the argument, so it is
//!   [`Setup`](C::Setup). `NV_ESC_IOCTL_XFER_CMD` wraps another escape whose number is in
//!   the argument; it is [`Other`](C::Other).
//! * `/dev/nvidia-uvm` (and `/dev/nvidia-uvm-tools`) do **not** use `_IOC` encoding: the command
//!   is a plain integer (`UVM_IOCTL_BASE(i)` is `i` on Linux, plus `UVM_INITIALIZE` =
//!   0x3000_0001 and `UVM_DEINITIALIZE` = 0x3000_0002), matched exactly. UVM test ioctls
//!   (`uvm_test_ioctl.h`, numbers from 200, served only when the module's built-in tests are
//!   enabled) are not decoded.

use super::{DriverSpec, Entry, IoctlCategory as C, PlainEntry, Tables, TypedTable, at, drv, plain};

/// `NV_IOCTL_MAGIC`.
pub const NV_IOCTL_TYPE: u8 = b'F';
/// `NV_IOCTL_BASE`: first nr of the nvidia.ko-level escapes.
pub const NV_IOCTL_BASE: u8 = 200;

pub(super) static NVIDIA_RM_DRIVER: DriverSpec = DriverSpec {
    id: "nvidia_rm",
    // The names discovery gives the control, GPU, capability and modeset nodes.
    kernel_names: &["nvidia", "nvidia-caps", "nvidia-modeset"],
    // Discovery sets it from the node name.
    vendor: "",
    // The same escapes serve Vulkan/GL and CUDA.
    compute_only: false,
    tables: Tables::Typed(TypedTable { ty: NV_IOCTL_TYPE, entries: NVIDIA_RM }),
};

pub(super) static NVIDIA_UVM_DRIVER: DriverSpec = DriverSpec {
    id: "nvidia_uvm",
    kernel_names: &["nvidia-uvm"],
    vendor: "",
    // Only the CUDA/OpenCL stack opens it.
    compute_only: true,
    tables: Tables::Plain(NVIDIA_UVM),
};

pub(super) static NOUVEAU_DRIVER: DriverSpec = DriverSpec {
    id: "nouveau",
    kernel_names: &["nouveau"],
    vendor: "nvidia",
    compute_only: false,
    tables: Tables::Drm { private: NOUVEAU, legacy: None },
};

/// NVIDIA nvidia.ko-level escape: nr is `NV_IOCTL_BASE + off`.
const fn nv(off: u8, name: &'static str, category: C) -> Entry {
    at(NV_IOCTL_BASE + off, name, category)
}

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

#[cfg(test)]
mod tests {
    use super::super::{Driver, category_of, check, decode, iowr};
    use super::*;

    fn name(driver: Driver, cmd: u32) -> Option<&'static str> {
        decode(driver, cmd).map(|i| i.name)
    }

    #[test]
    fn known_encodings_decode() {
        // Sizes: struct layouts on LP64 from the cited headers; the nouveau values agree with
        // the Linux v7.2 list generated by strace.
        check::decodes(&[
            (Driver::Nouveau, 0xc040_6481, "DRM_IOCTL_NOUVEAU_GEM_PUSHBUF", C::Submit),
            (Driver::Nouveau, 0xc028_6452, "DRM_IOCTL_NOUVEAU_EXEC", C::Submit),
            // NVOS54_PARAMETERS: 4 x u32 + NvP64 + 2 x u32 = 0x20.
            (Driver::NvidiaRm, 0xc020_462a, "NV_ESC_RM_CONTROL", C::Query),
            // NVOS21_PARAMETERS = 0x20; NVOS00_PARAMETERS = 4 x u32.
            (Driver::NvidiaRm, 0xc020_462b, "NV_ESC_RM_ALLOC", C::Setup),
            (Driver::NvidiaRm, 0xc010_4629, "NV_ESC_RM_FREE", C::Setup),
            (Driver::NvidiaRm, iowr(b'F', 200, 0x48), "NV_ESC_CARD_INFO", C::Query),
            (Driver::NvidiaRm, iowr(b'F', 218, 8), "NV_ESC_WAIT_OPEN_COMPLETE", C::Setup),
        ]);
    }

    #[test]
    fn names_are_of_their_family() {
        check::names_start_with(NOUVEAU, "DRM_IOCTL_NOUVEAU_");
        check::names_start_with(NVIDIA_RM, "NV_ESC_");
        for e in NVIDIA_UVM {
            assert!(e.name.starts_with("UVM_"), "{}", e.name);
        }
    }

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
}
