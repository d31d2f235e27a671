//! Accelerators: device discovery and ioctl decoding.
pub mod ioctls;
