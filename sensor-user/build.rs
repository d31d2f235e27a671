//! Build steps that need more than rustc:
//! - the BPF programs (sensor-ebpf's binary), built with the nightly toolchain for
//!   bpfel-unknown-none and embedded by `loader.rs`;
//! - the protobuf schema in `proto/`, compiled in-process with protox (no system `protoc`),
//!   then turned into prost types, proto3-JSON serde impls (pbjson) and the tonic service.
use prost::Message as _;

fn main() -> anyhow::Result<()> {
    build_probes()?;
    build_proto()
}

include!("../sensor-ebpf/build_bpf.rs");

fn build_probes() -> anyhow::Result<()> {
    build_bpf(&["modelwatch-probes"])
}

fn build_proto() -> anyhow::Result<()> {
    let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    println!("cargo:rerun-if-changed={proto_root}");
    let fds = protox::compile(["modelwatch/v1/envelope.proto", "modelwatch/v1/service.proto"], [proto_root])?;
    let descriptors = fds.encode_to_vec();
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("modelwatch_descriptor.bin"), &descriptors)?;
    // Well-known types come from pbjson-types, which carries their proto3 JSON mapping
    // (Timestamp as RFC 3339); prost's default mapping to prost-types has none.
    let mut config = prost_build::Config::new();
    config.compile_well_known_types();
    config.extern_path(".google.protobuf", "::pbjson_types");
    // Ordered maps: the same event always serialises to the same bytes (golden files, diffs).
    config.btree_map(["."]);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds_with_config(fds, config)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        // Captures from newer sensors stay readable: unknown fields are skipped, as the
        // schema's additive-only rule intends.
        .ignore_unknown_fields()
        .btree_map(["."])
        .build(&[".modelwatch"])?;
    Ok(())
}
