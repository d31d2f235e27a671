//! Accelerators: which device nodes are accelerators ([`discovery`]) and what their ioctls mean
//! ([`ioctls`]).
pub mod discovery;
pub mod ioctls;
