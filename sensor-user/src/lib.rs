//! modelwatch collector library.
pub mod config;
pub mod offsets;
pub mod probes;
