//! The sensor's own log lines (stderr, which systemd hands to journald): no terminal colour
//! codes when stderr is not a terminal, one JSON object per line with `--log-format json`,
//! and the fatal error in the chosen format.

use std::process::Command;

use modelwatch_tests::{RunningSensor, binary};

/// Piped stderr (the journal) gets plain text: colour escapes would be stored as garbage.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let mut sensor = RunningSensor::start_env("", &[("MODELWATCH_LOG", "info")]);
    sensor.wait_for_log("the start-up lines", modelwatch_tests::EVENT_TIMEOUT, |s| s.contains("API listening"));
    let log = sensor.stderr();
    assert!(!log.contains('\x1b'), "colour codes in piped logs:\n{log:?}");
    sensor.stop();
}

/// `--log-format json`: every line is one JSON object with a level and a message, and
/// structured fields stay fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let mut sensor = RunningSensor::start_env("", &[("MODELWATCH_LOG", "info"), ("MODELWATCH_LOG_FORMAT", "json")]);
    sensor.wait_for_log("the start-up lines", modelwatch_tests::EVENT_TIMEOUT, |s| s.contains("API listening"));
    let log = sensor.stop_and_stderr();
    let mut listening = false;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(), "{line}");
        if v["message"] == "API listening" {
            assert!(v["socket"].as_str().is_some_and(|s| s.ends_with("api.sock")), "{line}");
            listening = true;
        }
    }
    assert!(listening, "no `API listening` line:\n{log}");
}

/// A fatal error is one line in the log format: a JSON object when JSON was asked for.
#[test]
fn a_fatal_error_is_one_json_line_in_json_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[files]\nsize_threshold = 0\n").unwrap();
    let out = Command::new(binary())
        .args(["--log-format", "json", "run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run modelwatch");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["level"], "ERROR", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("files.size_threshold")), "{v}");
}
