//! `cargo xtask`: the project's entry points.
//!
//! - `setup`  installs what the build and the tests need (nightly rust-src, bpf-linker, buf,
//!   cmake, rsyslog, the tansu broker, and the real inference engines under target/engines/),
//!   idempotently;
//! - `build`  builds the sensor;
//! - `run`    builds and runs the sensor as root with the built-in defaults;
//! - `test`   runs every test: unit, root integration, schema lint and breaking-change checks;
//! - `bench`  measures overhead, throughput and memory (see BENCHMARKS.md);
//! - `fuzz`   runs the parsers' fuzz targets for a while each;
//! - `package` builds the Debian package; `package-check` lints it and installs, upgrades and
//!   purges it (part of `test`);
//! - `gpu-check` runs a real CUDA inference with the sensor running and checks what it reports
//!   (needs an NVIDIA GPU; fails without one);
//! - `proto-docs` regenerates docs/proto.md from the schema;
//! - `proto-baseline` records the current schema as the one later schemas must stay
//!   compatible with (after a release).

mod bench;
mod engines;
mod gpu_check;
mod package;
mod proto_docs;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing build and test prerequisites (idempotent).
    Setup,
    /// Build the sensor.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and run the sensor (root) with the built-in default configuration.
    Run {
        /// Arguments for `modelwatch run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks (not part of the test suite): overhead, throughput, memory, hashing.
    Bench(bench::BenchArgs),
    /// Run each fuzz target for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Run a real CUDA inference (llama.cpp) with the sensor running and check the session,
    /// NVML attribution and ioctl categories it reports. Needs an NVIDIA GPU and driver.
    GpuCheck(gpu_check::GpuCheckArgs),
    /// Build the Debian package (target/debian/modelwatch_<version>_<arch>.deb).
    Package {
        /// The Debian revision (the part after the upstream version).
        #[arg(long, default_value_t = 1)]
        revision: u32,
    },
    /// Build the package, run lintian on it, install it, upgrade it over itself keeping a
    /// changed conffile, and purge it (root; part of `test`).
    PackageCheck,
    /// Regenerate docs/proto.md from proto/ (the test suite fails when it is stale).
    ProtoDocs,
    /// Record the current schema as the compatibility baseline (after a release).
    ProtoBaseline,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).context("entering the workspace root")?;
    match cli.cmd {
        Cmd::Setup => {
            setup::setup(&root)?;
            setup::setup_delivery(&root)?;
            setup::setup_metrics()
        }
        Cmd::Build { release } => build(release),
        Cmd::Run { args } => {
            setup::build_prerequisites(&root)?;
            build(true)?;
            require_root("cargo xtask run")?;
            let bin = root.join("target/release/modelwatch");
            let mut cmd = Command::new(&bin);
            cmd.arg("run").args(&args);
            // Replace this process so Ctrl-C and SIGTERM reach the sensor directly.
            use std::os::unix::process::CommandExt as _;
            Err(cmd.exec()).with_context(|| format!("running {}", bin.display()))
        }
        Cmd::Test { args } => test(&root, &args),
        Cmd::Bench(args) => {
            setup::build_prerequisites(&root)?;
            bench::run_bench(&root, args)
        }
        Cmd::Fuzz { seconds } => fuzz(&root, seconds),
        Cmd::GpuCheck(args) => gpu_check::gpu_check(&root, &args),
        Cmd::Package { revision } => {
            setup::build_prerequisites(&root)?;
            let deb = package::package(&root, revision)?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::PackageCheck => {
            setup::build_prerequisites(&root)?;
            package::check(&root)
        }
        Cmd::ProtoDocs => {
            let md = proto_docs::render(&root)?;
            std::fs::write(root.join(proto_docs::DOC_PATH), md).context("writing docs/proto.md")?;
            println!("wrote {}", proto_docs::DOC_PATH);
            Ok(())
        }
        Cmd::ProtoBaseline => {
            setup::build_prerequisites(&root)?;
            run(Command::new(setup::buf_path(&root)).args(["build", "proto", "-o", PROTO_BASELINE]))?;
            println!("wrote {PROTO_BASELINE}");
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub fn build(release: bool) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "modelwatch", "--bin", "modelwatch"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} loads kernel probes and must run as root (try `sudo -E cargo xtask ...`)");
    }
    Ok(())
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    setup::setup(root)?;
    require_root("cargo xtask test (the integration tests)")?;
    // The btrfs test formats a loop-mounted image, and so does the integrity test with XFS (the
    // one filesystem whose open-by-handle writes change no timestamp).
    setup::ensure_apt("mkfs.btrfs", "btrfs-progs")?;
    setup::ensure_apt("mkfs.xfs", "xfsprogs")?;
    // The network sinks' tests run a broker and rsyslog.
    setup::setup_delivery(root)?;
    // The metrics test checks the scrape with promtool.
    setup::setup_metrics()?;
    lint(root)?;
    // The integration tests run the real binary, target/debug/modelwatch: `cargo test` builds it
    // (the modelwatch package has integration tests), with the features unified over the whole
    // workspace. A `cargo build -p modelwatch` before it would resolve other features and build
    // every dependency a second time.
    // --workspace: the root integration tests (`tests/`) are not a default member, so that a
    // contributor's plain `cargo test` runs without root; here everything runs.
    run(cargo().args(["test", "--workspace"]).args(args))?;
    // Unit tests that need root are ignored in a plain `cargo test` and named `root_`.
    if args.is_empty() {
        run(cargo().args(["test", "--workspace", "--lib", "--", "--ignored", "root_"]))?;
    }
    proto_checks(root)?;
    // The Debian package: built, linted, installed, upgraded and purged.
    if args.is_empty() {
        package::check(root)?;
    }
    println!("all tests passed");
    Ok(())
}

/// The format and lint gate: rustfmt on every crate (the fuzz crate too), clippy with warnings
/// as errors on every host crate and target, and on the BPF programs for their own target.
fn lint(root: &Path) -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    for fuzz in FUZZ_CRATES {
        run(cargo().args(["fmt", "--check", "--manifest-path"]).arg(root.join(fuzz).join("Cargo.toml")))?;
    }
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    // The BPF binary is built by modelwatch's build script, which clippy does not see.
    run(Command::new("cargo")
        .args(["+nightly", "clippy", "--features", "ebpf", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--bins", "--target-dir"])
        .arg(root.join("target/bpf-clippy"))
        .args(["--", "-D", "warnings"])
        .current_dir(root.join("sensor-ebpf")))?;
    println!("fmt and clippy: clean");
    Ok(())
}

/// The schema as released (a `buf build` image): every later schema must stay compatible
/// with it. Refreshed with `cargo xtask proto-baseline` when a release adds to the schema.
const PROTO_BASELINE: &str = "proto/baseline/modelwatch-v1.binpb";

/// buf lint, buf breaking, and the reference docs drift check.
fn proto_checks(root: &Path) -> anyhow::Result<()> {
    let buf = setup::buf_path(root);
    run(Command::new(&buf).arg("lint").current_dir(root.join("proto")))?;
    // Against the committed baseline: needs no git history, so it runs on any clone.
    if !root.join(PROTO_BASELINE).exists() {
        bail!("{PROTO_BASELINE} is missing: the breaking-change check needs it (`cargo xtask proto-baseline`)");
    }
    run(Command::new(&buf).args(["breaking", "proto", "--against", PROTO_BASELINE]).current_dir(root))?;
    println!("buf breaking: no breaking change against {PROTO_BASELINE}");
    // Also against the previous commit, which catches a field added since the baseline and
    // removed again. Uncommitted schema changes are compared with HEAD.
    let dirty = !Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", "proto"])
        .current_dir(root)
        .status()
        .context("running git")?
        .success();
    let against = if dirty { "HEAD" } else { "HEAD~1" };
    let has_previous = Command::new("git")
        .args(["cat-file", "-e", &format!("{against}:proto/buf.yaml")])
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_previous {
        run(Command::new(&buf)
            .args(["breaking", "proto", "--against", &format!(".git#ref={against},subdir=proto")])
            .current_dir(root))?;
        println!("buf breaking: no breaking change against {against}");
    } else {
        println!("buf breaking: {against} is not in this clone's history; checked against the baseline only");
    }
    let expected = proto_docs::render(root)?;
    let actual = std::fs::read_to_string(root.join(proto_docs::DOC_PATH)).unwrap_or_default();
    if expected != actual {
        bail!("{} is stale: run `cargo xtask proto-docs` and commit it", proto_docs::DOC_PATH);
    }
    Ok(())
}

/// The fuzz crates: the artifact parsers', and the collector's other outside inputs.
const FUZZ_CRATES: [&str; 2] = ["artifact/fuzz", "sensor-user/fuzz"];

fn fuzz(root: &Path, seconds: u64) -> anyhow::Result<()> {
    setup::ensure_cargo_fuzz()?;
    for krate in FUZZ_CRATES {
        let dir = root.join(krate).parent().map(Path::to_path_buf).context("fuzz crate path")?;
        if !root.join(krate).join("Cargo.toml").exists() {
            bail!("no fuzz crate at {krate}");
        }
        let out = Command::new("cargo")
            .args(["+nightly", "fuzz", "list"])
            .current_dir(&dir)
            .output()
            .context("cargo fuzz list")?;
        if !out.status.success() {
            bail!("cargo fuzz list failed in {krate}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let targets = String::from_utf8_lossy(&out.stdout).to_string();
        let targets: Vec<&str> = targets.lines().map(str::trim).filter(|t| !t.is_empty()).collect();
        if targets.is_empty() {
            bail!("cargo fuzz list found no targets in {krate}");
        }
        for target in targets {
            println!("fuzzing {krate} {target} for {seconds}s");
            run(Command::new("cargo")
                .args(["+nightly", "fuzz", "run", target, "--", &format!("-max_total_time={seconds}")])
                .current_dir(&dir))?;
        }
    }
    Ok(())
}
