//! modelwatch's BPF programs (tracepoint backend). Built only for `bpfel-unknown-none` with the
//! `ebpf` feature; the collector embeds the object and loads it.
//!
//! Layout: `kernel` reads kernel structures through offsets resolved from BTF by userspace;
//! `maps` declares every map; `emit` fills headers and writes records; `path` rebuilds paths;
//! `file` holds the per-`struct file` logic (filter, fill, count) that any attach point can
//! reuse; `probes/*` are the tracepoint entry points, one file per topic.
#![no_std]
#![no_main]

mod emit;
mod file;
mod kernel;
mod maps;
mod path;
mod probes;
mod runtime;
