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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects reachable infinite loops, so a reachable panic fails the load
    // instead of hanging: exactly what we want for a bug.
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";
