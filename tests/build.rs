//! Builds the empty BPF programs (sensor-ebpf's `baseline` feature) that `mw-bench baseline`
//! attaches to the probes' attach points: the benchmarks' measure of the kernel's own cost.
//! They are bench-only, so the product binary does not carry them.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    aya_build::build_ebpf(
        [aya_build::Package { name: "sensor-ebpf", root_dir: root, features: &["baseline"], ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
