//! The Debian package: `cargo xtask package` builds it (cargo-deb, metadata in
//! `sensor-user/Cargo.toml`, service files in `packaging/`); `cargo xtask package-check`
//! (part of `cargo xtask test`) lints it and installs, upgrades and purges it on this machine.
//!
//! The generated files come from the release binary itself, so they cannot drift from it: the
//! conffile is `modelwatch config --default`, the man pages and completions come from the CLI
//! definition.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail, ensure};

use crate::{run, setup};

/// Where the generated package files are staged (the metadata's assets name them; cargo-deb
/// resolves `target/release/` to the build's target directory).
const STAGE: &str = "target/release/package";
/// Where the packages are written.
const OUT: &str = "target/debian";
/// The highest `systemd-analyze security` exposure the unit may reach (README "Deploy"): a
/// change to the unit that raises it fails the check.
const MAX_EXPOSURE: f64 = 2.8;

/// Builds the package (Debian revision `revision`) and returns its path.
pub fn package(root: &Path, revision: u32) -> anyhow::Result<PathBuf> {
    let cargo_deb = setup::ensure_cargo_deb(root)?;
    crate::build(true)?;
    stage(root)?;
    // One directory per revision: cargo-deb replaces other versions of the package in its
    // output directory.
    let out = root.join(OUT).join(format!("revision-{revision}"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let output = Command::new(&cargo_deb)
        .args(["--package", "modelwatch", "--no-build", "--strip", "--deb-revision", &revision.to_string(), "--output"])
        .arg(&out)
        .current_dir(root)
        .output()
        .with_context(|| format!("running {}", cargo_deb.display()))?;
    if !output.status.success() {
        bail!("cargo-deb failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    // cargo-deb prints the package's path last.
    let path = String::from_utf8_lossy(&output.stdout).lines().last().map(str::trim).map(PathBuf::from);
    match path {
        Some(p) if p.exists() => Ok(p),
        _ => bail!("cargo-deb did not say where the package is: {}", String::from_utf8_lossy(&output.stdout)),
    }
}

/// Generates the conffile, the man pages and the completions from the release binary.
fn stage(root: &Path) -> anyhow::Result<()> {
    let bin = root.join("target/release/modelwatch");
    let stage = root.join(STAGE);
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {STAGE}"))?;
    }
    std::fs::create_dir_all(stage.join("completions")).with_context(|| format!("creating {STAGE}"))?;
    let stdout = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let out = Command::new(&bin).args(args).stderr(Stdio::inherit()).output().context("running modelwatch")?;
        ensure!(out.status.success(), "modelwatch {} failed", args.join(" "));
        Ok(out.stdout)
    };
    std::fs::write(stage.join("modelwatch.toml"), stdout(&["config", "--default"])?)?;
    run(Command::new(&bin).arg("manpages").arg(stage.join("man")))?;
    // Debian installs man pages compressed (-n: no name or time inside, reproducible).
    for page in std::fs::read_dir(stage.join("man"))? {
        run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(page?.path()))?;
    }
    for (shell, file) in [("bash", "modelwatch.bash"), ("zsh", "_modelwatch"), ("fish", "modelwatch.fish")] {
        std::fs::write(stage.join("completions").join(file), stdout(&["completions", shell])?)?;
    }
    Ok(())
}

/// Builds the package, lints it, and installs, upgrades (keeping a changed conffile) and
/// purges it on this machine (root). Also checks the installed unit with systemd-analyze.
pub fn check(root: &Path) -> anyhow::Result<()> {
    crate::require_root("cargo xtask package-check (it installs the package)")?;
    setup::ensure_package_tools()?;
    let first = package(root, 1)?;
    let second = package(root, 2)?;
    lintian(&first)?;
    if present() {
        println!("package-check: a modelwatch package is on this machine; purging it first");
        dpkg(&["--purge", "modelwatch"])?;
    }

    dpkg_install(&first).context("installing the package")?;
    let result = installed_checks(root).and_then(|()| upgrade_checks(&second));
    // Purged whatever happened, so a failed check leaves no package behind.
    let purge = dpkg(&["--purge", "modelwatch"]);
    result?;
    purge?;
    purged_checks()?;
    println!("package-check: install, upgrade over itself keeping a changed conffile, and purge: ok");
    Ok(())
}

const CONFFILE: &str = "/etc/modelwatch/modelwatch.toml";
const UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/system", "/lib/systemd/system"];

fn unit_path() -> Option<PathBuf> {
    UNIT_DIRS.iter().map(|d| Path::new(d).join("modelwatch.service")).find(|p| p.exists())
}

fn lintian(deb: &Path) -> anyhow::Result<()> {
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("running lintian")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("lintian {}:\n{}", deb.display(), if text.trim().is_empty() { "(no tags)" } else { text.trim_end() });
    ensure!(out.status.success(), "lintian reports errors on {}", deb.display());
    Ok(())
}

fn dpkg(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("dpkg").args(args).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn dpkg_install(deb: &Path) -> anyhow::Result<()> {
    // --force-confold: a conffile the administrator changed is kept without asking.
    run(Command::new("dpkg").args(["--install", "--force-confold"]).arg(deb).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", "modelwatch"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"installed"))
}

/// Whether dpkg knows the package in any state but not-installed (half-installed, config
/// files left, ...).
fn present() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", "modelwatch"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty() && o.stdout != b"not-installed")
}

fn installed_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "modelwatch"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What the installed package must provide.
fn installed_checks(root: &Path) -> anyhow::Result<()> {
    ensure!(installed(), "dpkg does not list modelwatch as installed");
    let version = Command::new("/usr/bin/modelwatch").arg("--version").output().context("/usr/bin/modelwatch")?;
    ensure!(version.status.success(), "/usr/bin/modelwatch --version failed");
    // The conffile is the binary's own documented defaults, and dpkg knows it as a conffile.
    let defaults = Command::new("/usr/bin/modelwatch").args(["config", "--default"]).output()?.stdout;
    let conffile = std::fs::read(CONFFILE).with_context(|| format!("reading {CONFFILE}"))?;
    ensure!(conffile == defaults, "{CONFFILE} differs from `modelwatch config --default`");
    let conffiles = Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "modelwatch"]).output()?.stdout;
    ensure!(String::from_utf8_lossy(&conffiles).contains(CONFFILE), "{CONFFILE} is not a conffile");
    run(Command::new("/usr/bin/modelwatch").args(["config", "--check", CONFFILE]))?;
    // sysusers.d made the user and group; tmpfiles.d the socket directory.
    let id = Command::new("id").arg("modelwatch").output()?;
    ensure!(id.status.success(), "the modelwatch user was not created");
    let run_dir = std::fs::metadata("/run/modelwatch").context("/run/modelwatch was not created")?;
    use std::os::unix::fs::MetadataExt as _;
    ensure!(run_dir.mode() & 0o7777 == 0o750, "/run/modelwatch has mode {:o}", run_dir.mode() & 0o7777);
    for f in [
        "/usr/share/man/man1/modelwatch.1.gz",
        "/usr/share/man/man1/modelwatch-run.1.gz",
        "/usr/share/bash-completion/completions/modelwatch",
        "/usr/share/zsh/vendor-completions/_modelwatch",
        "/usr/share/fish/vendor_completions.d/modelwatch.fish",
        "/usr/share/doc/modelwatch/copyright",
        "/usr/lib/sysusers.d/modelwatch.conf",
        "/usr/lib/tmpfiles.d/modelwatch.conf",
    ] {
        ensure!(Path::new(f).exists(), "{f} is not installed");
    }
    let unit = unit_path().context("the modelwatch.service unit is not installed")?;
    let installed_unit = std::fs::read(&unit)?;
    ensure!(
        installed_unit == std::fs::read(root.join("packaging/modelwatch.service"))?,
        "{} is not packaging/modelwatch.service",
        unit.display()
    );
    // The unit against the installed binary and man pages.
    run(Command::new("systemd-analyze").arg("verify").arg(&unit))?;
    smoke_run()?;
    let exposure = exposure(&unit)?;
    println!("package-check: systemd-analyze security exposure of modelwatch.service: {exposure:.1}");
    ensure!(exposure <= MAX_EXPOSURE, "the unit's exposure rose to {exposure:.1} (at most {MAX_EXPOSURE:.1})");
    Ok(())
}

/// Runs the installed (stripped) binary as the unit would, but with a scratch state directory
/// and socket: as the user modelwatch with the unit's capabilities and no new privileges,
/// until it notifies READY=1 (every probe attached) on a socket standing in for systemd's.
fn smoke_run() -> anyhow::Result<()> {
    use std::os::unix::{fs::PermissionsExt as _, net::UnixDatagram};
    let dir = std::env::temp_dir().join(format!("modelwatch-package-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state"))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    run(Command::new("chown").arg("modelwatch:modelwatch").arg(dir.join("state")))?;
    let config = dir.join("modelwatch.toml");
    let state = dir.join("state");
    std::fs::write(
        &config,
        format!("[sensor]\nstate_dir = \"{0}\"\n[api]\nsocket = \"{0}/api.sock\"\n", state.display()),
    )?;
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    run(Command::new("chown").arg("modelwatch:modelwatch").arg(&notify_path))?;
    notify.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let caps = "-all,+bpf,+perfmon,+dac_read_search,+sys_ptrace,+checkpoint_restore";
    let mut child = Command::new("setpriv")
        .args(["--reuid=modelwatch", "--regid=modelwatch", "--init-groups", "--no-new-privs"])
        .args([format!("--inh-caps={caps}"), format!("--ambient-caps={caps}"), format!("--bounding-set={caps}")])
        .args(["--", "/usr/bin/modelwatch", "run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("MODELWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the installed modelwatch")?;
    let mut buf = [0u8; 4096];
    let ready = notify.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    let ready = ready.context("the installed sensor sent no notification within 60 s")?;
    ensure!(ready.lines().any(|l| l == "READY=1"), "the installed sensor did not get ready: {ready}");
    ensure!(status.success(), "the installed sensor exited with {status}");
    let ready: Vec<&str> = ready.lines().collect();
    println!(
        "package-check: the installed binary ran as modelwatch with the unit's capabilities: {}",
        ready.join("; ")
    );
    Ok(())
}

/// `systemd-analyze security --offline=true`'s overall exposure of `unit`.
pub fn exposure(unit: &Path) -> anyhow::Result<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .context("running systemd-analyze security")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once("Overall exposure level for ")?.1.split_once(": ")?.1.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no exposure level in systemd-analyze's output:\n{text}"))
}

/// Installs the next revision over the first, after changing the conffile: the change stays.
fn upgrade_checks(second: &Path) -> anyhow::Result<()> {
    let original = std::fs::read_to_string(CONFFILE)?;
    let changed =
        original.replacen("\nidle_timeout_ms = 300000\n", "\nidle_timeout_ms = 60000 # the administrator's\n", 1);
    ensure!(changed != original, "no `idle_timeout_ms = 300000` line in {CONFFILE} to change");
    std::fs::write(CONFFILE, &changed)?;
    run(Command::new("/usr/bin/modelwatch").args(["config", "--check", CONFFILE]))?;
    dpkg_install(second).context("upgrading the package")?;
    ensure!(installed_version().ends_with("-2"), "the upgrade installed {}", installed_version());
    let after = std::fs::read_to_string(CONFFILE)?;
    ensure!(after == changed, "the upgrade replaced the changed {CONFFILE}");
    ensure!(!Path::new(&format!("{CONFFILE}.dpkg-new")).exists(), "the upgrade left {CONFFILE}.dpkg-new");
    Ok(())
}

/// Nothing of the package is left after a purge.
fn purged_checks() -> anyhow::Result<()> {
    ensure!(!present(), "dpkg still knows modelwatch after the purge");
    for p in ["/usr/bin/modelwatch", "/etc/modelwatch", "/var/lib/modelwatch", "/var/log/modelwatch", "/run/modelwatch"]
    {
        ensure!(!Path::new(p).exists(), "{p} is left after the purge");
    }
    ensure!(unit_path().is_none(), "the unit is left after the purge");
    Ok(())
}
