//! modelwatch collector library.
pub mod accel;
pub mod config;
pub mod offsets;
pub mod probes;
