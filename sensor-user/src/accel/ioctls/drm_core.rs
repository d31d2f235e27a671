//! DRM core ioctls: the `0x00..0x40` and `0xA0..=0xFF` range of type `'d'` that every DRM and
//! DRM-accel node serves whatever its driver, and [`Driver::Drm`](super::Driver::Drm), a DRM
//! node whose driver has no table of its own.
//!
//! Source: torvalds/linux `include/uapi/drm/drm.h`, see [`DRM_CORE`].

use super::{DriverSpec, Entry, IoctlCategory as C, Tables, at};

/// A DRM or accel node of a driver without its own table: the core range decodes.
pub(super) static DRM_DRIVER: DriverSpec = DriverSpec {
    id: "drm",
    // Discovery falls back to this driver for any node under /dev/dri or /dev/accel.
    kernel_names: &[],
    vendor: "",
    compute_only: false,
    tables: Tables::Drm { private: &[], legacy: None },
};

// Source: torvalds/linux include/uapi/drm/drm.h (read at c87866ede44a, which defines everything
// through 0xCE MODE_GETFB2). 0xCF SYNCOBJ_EVENTFD, 0xD0 MODE_CLOSEFB, 0xD1 SET_CLIENT_NAME and
// 0xD2 GEM_CHANGE_HANDLE were checked against the upstream patches adding them and against the
// list strace generates from Linux v7.2 (strace/strace src/linux/64/ioctls_inc.h). Proposed
// additions not in v7.2 (e.g. SYNCOBJ_QUERY_ERROR) are left out.
pub(super) static DRM_CORE: &[Entry] = &[
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

#[cfg(test)]
mod tests {
    use super::super::{Driver, check};
    use super::*;

    #[test]
    fn known_encodings_decode() {
        // Sizes: struct layouts on LP64 from drm.h; all agree with the Linux v7.2 list
        // generated by strace.
        check::decodes(&[
            // struct drm_version: 3 ints + pad, then 3 (size_t, char *) pairs = 0x40.
            (Driver::Drm, 0xc040_6400, "DRM_IOCTL_VERSION", C::Query),
            // struct drm_gem_close: handle, pad.
            (Driver::Amdgpu, 0x4008_6409, "DRM_IOCTL_GEM_CLOSE", C::Memory),
            // struct drm_syncobj_create: handle, flags.
            (Driver::Xe, 0xc008_64bf, "DRM_IOCTL_SYNCOBJ_CREATE", C::Sync),
            (Driver::Xe, 0xc038_64bc, "DRM_IOCTL_MODE_ATOMIC", C::Other),
        ]);
    }

    #[test]
    fn names_are_drm_core_names() {
        check::names_start_with(DRM_CORE, "DRM_IOCTL_");
    }
}
