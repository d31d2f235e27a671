//! ioctl command decoding tables for accelerator drivers (being written; see the module owner's
//! task). Interface only for now.

/// Driver families whose ioctls can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// What an ioctl does, coarse enough to tell compute from display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A decoded command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoctlInfo {
    pub name: &'static str,
    pub category: IoctlCategory,
}
