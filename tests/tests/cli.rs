//! The binary's edges: clear one-line errors and the right exit codes.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::Command,
};

use modelwatch_tests::{binary, require_root};

fn run(args: &[&str], envs: &[(&str, &str)], uid: Option<u32>) -> (i32, String, String) {
    // Another user may not reach the build tree (a checkout under a 0700 home): it runs a copy
    // from a directory anyone can enter.
    let copy = uid.map(|_| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::copy(binary(), dir.path().join("modelwatch")).expect("copy the binary");
        dir
    });
    let mut cmd = Command::new(copy.as_ref().map_or_else(binary, |d| d.path().join("modelwatch")));
    cmd.args(args).env("MODELWATCH_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("run modelwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[files]\nsize_threshold = \"lots\"\n").unwrap();
    let (code, _, err) = run(&["run", "--config", cfg.to_str().unwrap()], &[], None);
    assert_eq!(code, 2, "{err}");
    // The message's line, then the offending line of the file and a caret under the value.
    assert!(err.contains("size_threshold") && err.lines().count() == 3, "{err}");
    std::fs::write(&cfg, "[sensor]\nring_buffer_kib = 100\n").unwrap();
    let (code, _, err) = run(&["config", "--check", cfg.to_str().unwrap()], &[], None);
    assert_eq!(code, 2);
    assert!(err.contains("sensor.ring_buffer_kib"), "{err}");
    let (code, _, err) = run(&["run", "--config", "/nonexistent/modelwatch.toml"], &[], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/modelwatch.toml"), "{err}");
}

/// What `run --config` and `config --check` print for a bad file: TOML's line and column and
/// the offending line with a caret under the spot, the OS error once.
#[test]
fn config_errors_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let cases = [
        ("syntax.toml", "[files\n", "line 1, column 7: unclosed table, expected `]`\n1 | [files\n  |       ^\n"),
        (
            "unknown.toml",
            "[files]\nbogus = 1\n",
            "line 2, column 1: unknown key `bogus`, expected one of `extensions`, `size_threshold`, \
             `model_dirs`, `runtime_libraries`, `suppress_known_non_models`, `report_non_models`, \
             `fold_window_ms`, `runtime_process_opens_per_sec`\n2 | bogus = 1\n  | ^^^^^\n",
        ),
        (
            "value.toml",
            "[files]\nfold_window_ms = \"soon\"\n",
            "line 2, column 18: invalid type: string \"soon\", expected a whole number\n\
             2 | fold_window_ms = \"soon\"\n  |                  ^^^^^^\n",
        ),
        (
            "range.toml",
            "[sensor]\nring_buffer_kib = 1000\n",
            "key `sensor.ring_buffer_kib`: 1000 must be a power of two between 64 and 1048576\n",
        ),
    ];
    for (name, text, expected) in cases {
        std::fs::write(p(name), text).unwrap();
        let sep = if expected.starts_with("line") { ", " } else { ": " };
        let want = format!("modelwatch: config {}{sep}{expected}", p(name));
        for args in [["run", "--config"], ["config", "--check"]] {
            let (code, _, err) = run(&[args[0], args[1], &p(name)], &[], None);
            assert_eq!((code, err.as_str()), (2, want.as_str()), "{args:?} {name}");
        }
    }
    let want = format!("modelwatch: cannot read config {}: No such file or directory (os error 2)\n", p("absent.toml"));
    for args in [["run", "--config"], ["config", "--check"]] {
        let (code, _, err) = run(&[args[0], args[1], &p("absent.toml")], &[], None);
        assert_eq!((code, err.as_str()), (2, want.as_str()), "{args:?}");
    }
}

#[test]
fn default_config_prints_and_validates() {
    let (code, out, _) = run(&["config", "--default"], &[], None);
    assert_eq!(code, 0);
    assert!(out.contains("size_threshold = \"32MiB\"") && out.contains("[api]"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("default.toml");
    std::fs::write(&cfg, out).unwrap();
    let (code, out, err) = run(&["config", "--check", cfg.to_str().unwrap()], &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(": ok\n"));
}

#[test]
fn missing_privileges_and_btf_are_one_line_errors() {
    require_root();
    // An unprivileged user.
    let (code, _, err) = run(&["run"], &[], Some(65534));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("must run as root") && err.contains("uid 65534"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // No BTF where the kernel's should be.
    let (code, _, err) = run(&["run"], &[("MODELWATCH_BTF", "/nonexistent/vmlinux")], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("kernel BTF not found at /nonexistent/vmlinux"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn clients_explain_a_missing_or_forbidden_socket() {
    require_root();
    let (code, _, err) = run(&["status", "--socket", "/nonexistent/modelwatch.sock"], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("is the sensor running?"), "{err}");
    // A socket the user may not open.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (code, _, err) = run(&["tail", "--socket", sock.to_str().unwrap()], &[], Some(65534));
    assert_eq!(code, 1);
    assert!(err.contains("modelwatch group"), "{err}");
}
