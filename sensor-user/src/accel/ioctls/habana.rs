//! Habana Labs (Intel Gaudi): habanalabs' DRM accel driver-private ioctls (`/dev/accel/*`) and
//! the character-device interface (`/dev/hl*`, type `'H'`) it served before the accel move.
//! Kept apart from `drm_accel.rs` because it is the one driver with two interfaces.
//!
//! Sources: torvalds/linux `include/uapi/drm/habanalabs_accel.h`; `include/uapi/misc/habanalabs.h`
//! as shipped in Debian linux-libc-dev 6.1.

use super::{DriverSpec, Entry, IoctlCategory as C, Tables, TypedTable, at, drv};

/// Type of the pre-accel habanalabs character device (`/dev/hl*`, include/uapi/misc/habanalabs.h).
pub const HL_LEGACY_IOCTL_TYPE: u8 = b'H';

pub(super) static HABANALABS_DRIVER: DriverSpec = DriverSpec {
    id: "habanalabs",
    kernel_names: &["habanalabs"],
    vendor: "habana",
    compute_only: true,
    // The pre-accel `/dev/hl*` nodes (watched when configured with this driver) take the 'H'
    // commands.
    tables: Tables::Drm {
        private: HABANALABS,
        legacy: Some(TypedTable { ty: HL_LEGACY_IOCTL_TYPE, entries: HABANALABS_LEGACY }),
    },
};

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

#[cfg(test)]
mod tests {
    use super::super::{Driver, check};
    use super::*;

    #[test]
    fn known_encodings_decode() {
        // HL values were also printed by a C program built against the linux-libc-dev 6.1
        // headers.
        check::decodes(&[
            (Driver::Habanalabs, 0xc030_6442, "DRM_IOCTL_HL_CS", C::Submit),
            (Driver::Habanalabs, 0xc030_4803, "HL_IOCTL_CS", C::Submit),
        ]);
    }

    #[test]
    fn names_are_of_their_family() {
        check::names_start_with(HABANALABS, "DRM_IOCTL_HL_");
        check::names_start_with(HABANALABS_LEGACY, "HL_IOCTL_");
    }
}
