//! Builds the BPF programs (sensor-ebpf's binary) with the nightly toolchain for
//! bpfel-unknown-none; the object is embedded by `probes.rs`.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sensor-ebpf",
            root_dir: root,
            features: &["ebpf"],
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
