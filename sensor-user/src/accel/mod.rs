//! Accelerators: which device nodes are accelerators ([`discovery`]) and what their ioctls mean
//! ([`ioctls`]).
//!
//! # Adding an accelerator driver
//!
//! A driver is described once, by a descriptor next to its ioctl tables in `ioctls/`; discovery,
//! decoding, the compute-only flag and the configuration's list of driver ids all read it.
//!
//! 1. **Tables and descriptor**, in the driver family's file (`ioctls/amd.rs`, `intel.rs`,
//!    `nvidia.rs`, `habana.rs`, `drm_accel.rs`; a new family gets a new file, declared with `mod`
//!    in `ioctls/mod.rs`). Write the table from the driver's uapi header, citing the header and
//!    the revision read: for a DRM or DRM-accel driver its private commands as
//!    `drv(offset, "DRM_IOCTL_…", category)`, `offset` being the header's `DRM_<DRIVER>_*` value.
//!    Then a `static <NAME>_DRIVER: DriverSpec` with the stable id (events, metrics labels,
//!    `devices.extra[].driver`), the driver name(s) as sysfs reports them
//!    (`/sys/class/{drm,accel}/<node>/device/driver`), the vendor to report when the PCI vendor id
//!    does not say, whether its nodes exist only for compute, and how it decodes
//!    (`Tables::Drm { private, legacy: None }` for a DRM or accel driver).
//! 2. **Registry**: one line `Variant => family::<NAME>_DRIVER,` in the `drivers!` list in
//!    `ioctls/mod.rs`, before `Unknown`. That line creates the [`ioctls::Driver`] variant.
//! 3. **Tests**, next to the table: its `known_encodings_decode` cases (numbers computed
//!    independently of the table) and its name prefix. The registry-wide tests in
//!    `ioctls/mod.rs` cover the new table by themselves: one entry per (type, nr) unless shapes
//!    tell them apart, names unique, DRM private range respected, every entry categorised, driver
//!    names owned by one descriptor.
//!
//! Nothing else changes for a driver of `/dev/dri/*` or `/dev/accel/*` nodes: discovery already
//! finds those nodes and picks the descriptor by sysfs driver name. Two cases take more:
//!
//! * A driver with its own character device (like `/dev/kfd` or `/dev/nvidia*`) must also be
//!   recognised by node name in `discovery::classify`, which gives the node the driver name that
//!   the descriptor lists.
//! * A vendor whose PCI vendor id is new goes into discovery's vendor table (`fill_from_sysfs`).
pub mod discovery;
pub mod ioctls;
