//! Builds the empty BPF programs (sensor-ebpf's `baseline` feature) that `mw-bench baseline`
//! attaches to the probes' attach points: the benchmarks' measure of the kernel's own cost.
//! They are bench-only, so the product binary does not carry them.

include!("../sensor-ebpf/build_bpf.rs");

fn main() -> anyhow::Result<()> {
    build_bpf(&["modelwatch-empty-probes"])
}
