//! AMD GPUs: amdgpu's DRM driver-private ioctls (`/dev/dri/*`) and the ROCm compute interface
//! KFD (`/dev/kfd`, its own ioctl type `'K'`).
//!
//! Sources: torvalds/linux `include/uapi/drm/amdgpu_drm.h` and `include/uapi/linux/kfd_ioctl.h`,
//! revisions at each table. The AMD NPU (amdxdna) is a DRM accel driver, in `drm_accel.rs`.

use super::{DriverSpec, Entry, IoctlCategory as C, Tables, TypedTable, at, drv};

/// `AMDKFD_IOCTL_BASE`.
pub const KFD_IOCTL_TYPE: u8 = b'K';

pub(super) static AMDGPU_DRIVER: DriverSpec = DriverSpec {
    id: "amdgpu",
    kernel_names: &["amdgpu"],
    vendor: "amd",
    // Render nodes serve graphics as well.
    compute_only: false,
    tables: Tables::Drm { private: AMDGPU, legacy: None },
};

pub(super) static KFD_DRIVER: DriverSpec = DriverSpec {
    id: "amd_kfd",
    // The name discovery gives /dev/kfd.
    kernel_names: &["amdkfd"],
    // Discovery sets it from the node name.
    vendor: "",
    compute_only: true,
    tables: Tables::Typed(TypedTable { ty: KFD_IOCTL_TYPE, entries: AMD_KFD }),
};

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

// Source: torvalds/linux include/uapi/linux/kfd_ioctl.h (read at 100c85421b52: nr 0x01..=0x26,
// DBG_TRAP last) and the Debian linux-libc-dev 6.1 copy (0x01..=0x23). 0x27 CREATE_PROCESS and
// 0x28 PROFILER are taken from the v7.2 header as listed by strace (see the ioctls module docs); the
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

#[cfg(test)]
mod tests {
    use super::super::{Driver, check};
    use super::*;

    #[test]
    fn known_encodings_decode() {
        // Sizes: struct layouts on LP64 from the cited headers; KFD values were also printed by a
        // C program built against the linux-libc-dev 6.1 headers, and all agree with the Linux
        // v7.2 list generated by strace.
        check::decodes(&[
            // union drm_amdgpu_cs: in = 4 x u32 + u64 chunks = 0x18.
            (Driver::Amdgpu, 0xc018_6444, "DRM_IOCTL_AMDGPU_CS", C::Submit),
            (Driver::Amdgpu, 0xc020_6440, "DRM_IOCTL_AMDGPU_GEM_CREATE", C::Memory),
            (Driver::Amdgpu, 0x4040_6448, "DRM_IOCTL_AMDGPU_GEM_VA", C::Memory),
            (Driver::AmdKfd, 0x8008_4b01, "AMDKFD_IOC_GET_VERSION", C::Query),
            (Driver::AmdKfd, 0xc028_4b16, "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", C::Memory),
            (Driver::AmdKfd, 0xc018_4b18, "AMDKFD_IOC_MAP_MEMORY_TO_GPU", C::Memory),
            (Driver::AmdKfd, 0xc018_4b0c, "AMDKFD_IOC_WAIT_EVENTS", C::Sync),
            (Driver::AmdKfd, 0x4008_4b17, "AMDKFD_IOC_FREE_MEMORY_OF_GPU", C::Memory),
        ]);
    }

    #[test]
    fn names_are_of_their_family() {
        check::names_start_with(AMDGPU, "DRM_IOCTL_AMDGPU_");
        check::names_start_with(AMD_KFD, "AMDKFD_IOC_");
    }
}
