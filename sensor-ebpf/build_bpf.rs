// Builds the BPF programs for a build script (`include!`d by sensor-user's and the tests'
// build.rs, so both share one copy of this logic).
//
// Why not `aya_build::build_ebpf`: it builds into a target directory inside the calling build
// script's OUT_DIR, so every build-script run — clippy's check, the debug build, the test
// build with other features, the release build, and the bench driver's build — compiled
// `core` and the programs again from nothing (a clean `cargo xtask test` built them seven
// times). Here every run shares one target directory next to the workspace's, so the programs
// are compiled once per change; cargo's own lock serialises concurrent builds into it. The
// command is the one aya-build runs (nightly, `-Z build-std=core`, BTF, `bpf_target_arch`).
//
// One build with the `baseline` feature makes both binaries: the feature only adds the empty
// programs' binary and changes nothing in the real ones.

/// Builds sensor-ebpf's binaries (release, for the BPF target of the host's endianness) and
/// copies those named in `bins` into OUT_DIR.
fn build_bpf(bins: &[&str]) -> anyhow::Result<()> {
    use anyhow::{Context as _, bail};
    use std::{env, path::PathBuf, process::Command};

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    println!("cargo:rerun-if-changed={root}/build_bpf.rs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target_root = out_dir.ancestors().nth(4).context("OUT_DIR has no target directory above it")?;
    let target_dir = target_root.join("bpf");
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").context("CARGO_CFG_TARGET_ENDIAN not set")?;
    let target = match endian.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported endianness {other}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    // The names the BPF helpers' headers use (as aya-build maps them).
    let arch = match arch.as_str() {
        "riscv64gc" => "riscv64",
        "powerpc64" => "powerpc",
        other => other,
    };
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package", "sensor-ebpf", "--bins", "--release"])
        .args(["--target", target, "-Z", "build-std=core", "--features", "baseline", "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"))
        .current_dir(root);
    // The outer build's compiler would be used otherwise (stable, no build-std).
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(key);
    }
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("cargo:warning={line}");
        }
        bail!("building the BPF programs failed ({}): {cmd:?}", out.status);
    }
    for bin in bins {
        let built = target_dir.join(target).join("release").join(bin);
        let copy = out_dir.join(bin);
        std::fs::copy(&built, &copy).with_context(|| format!("copying {} to {}", built.display(), copy.display()))?;
    }
    Ok(())
}
