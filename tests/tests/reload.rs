//! SIGHUP reloads the configuration file: live settings change in the running sensor (here
//! the kernel's extension filter), the others keep their running value and are named; an
//! invalid file changes nothing and says why in a `sensor_health` event; `modelwatch config
//! --effective` shows what is in force.

use std::{path::Path, process::Command};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, binary, kind, make_file, open_close, pid, real};
use serde_json::Value;

/// Empty files reported (`report_non_models`) at once (`fold_window_ms = 0`), every open of
/// them (no kernel verdict filters a second open), and only by name: no model directories,
/// no widening to every file of this process.
const CONFIG: &str = "[files]\nextensions = [\".mwreload1\"]\nreport_non_models = true\nfold_window_ms = 0\n\
                      suppress_known_non_models = false\nmodel_dirs = []\nruntime_process_opens_per_sec = 0\n\
                      [sensor]\nfile_events_burst = 4000\n";

fn opened(e: &Value, path: &str) -> bool {
    kind(e) == "model_file_opened"
        && pid(e) == Some(std::process::id())
        && e["model_file_opened"]["file"]["path"].as_str() == Some(path)
}

fn touch(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    make_file(&p, b"", 0);
    real(&p)
}

fn sighup(sensor: &RunningSensor) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) }, 0);
}

fn health_with(sensor: &mut RunningSensor, what: &str, needle: &str) -> Value {
    let e = sensor.wait_for(what, EVENT_TIMEOUT, |e| {
        kind(e) == "sensor_health" && e["sensor_health"]["message"].as_str().is_some_and(|m| m.contains(needle))
    });
    e["sensor_health"].clone()
}

fn effective(sensor: &RunningSensor) -> String {
    let out = Command::new(binary())
        .args(["config", "--effective", "--socket"])
        .arg(sensor.socket())
        .env("MODELWATCH_LOG", "error")
        .output()
        .expect("run modelwatch config --effective");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn sighup_applies_the_new_extension_list_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let before = touch(dir.path(), "a.mwreload1");
    open_close(Path::new(&before));
    sensor.wait_for("open of a.mwreload1", EVENT_TIMEOUT, |e| opened(e, &before));
    assert!(effective(&sensor).contains("extensions = [\".mwreload1\"]"));

    let cfg = sensor.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(".mwreload1", ".mwreload2").replace("file_events_burst = 4000", "file_events_burst = 4001");
    std::fs::write(&cfg, text).unwrap();
    sighup(&sensor);
    let h = health_with(&mut sensor, "the reload's health event", "reloaded");
    assert_eq!(h["state"], "HEALTH_STATE_OK", "{h:#}");
    let msg = h["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "configuration {} reloaded: applied files.extensions; restart to apply: sensor.file_events_burst",
            cfg.display()
        )),
        "{msg}"
    );

    // Opened after the reload: the new extension is reported, the old one no longer. The
    // second open comes after the first, so once its event is in, the first's would be too.
    let old = touch(dir.path(), "b.mwreload1");
    let new = touch(dir.path(), "c.mwreload2");
    open_close(Path::new(&old));
    open_close(Path::new(&new));
    sensor.wait_for("open of c.mwreload2", EVENT_TIMEOUT, |e| opened(e, &new));
    assert!(sensor.matching(|e| opened(e, &old)).is_empty(), "b.mwreload1 still reported");

    // The API shows the reloaded value, and the setting that needs a restart at its running one.
    let shown = effective(&sensor);
    assert!(shown.contains("extensions = [\".mwreload2\"]"), "{shown}");
    assert!(shown.contains("file_events_burst = 4000"), "{shown}");
    assert!(shown.contains("until a restart: sensor.file_events_burst"), "{shown}");
    sensor.stop();
}

#[test]
fn an_invalid_file_on_sighup_keeps_the_running_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let cfg = sensor.config_path();
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace(".mwreload1", ".mwreload2").replace("[files]", "[files")).unwrap();
    sighup(&sensor);
    let h = health_with(&mut sensor, "the failed reload's health event", "not reloaded");
    assert_eq!(h["state"], "HEALTH_STATE_DEGRADED", "{h:#}");
    let msg = h["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "configuration not reloaded: config {}, line 1, column 7: unclosed table, expected `]`\n1 | [files\n",
            cfg.display()
        )),
        "{msg}"
    );

    // The running configuration is untouched: .mwreload1 is reported, .mwreload2 is not.
    let new = touch(dir.path(), "d.mwreload2");
    let old = touch(dir.path(), "e.mwreload1");
    open_close(Path::new(&new));
    open_close(Path::new(&old));
    sensor.wait_for("open of e.mwreload1", EVENT_TIMEOUT, |e| opened(e, &old));
    assert!(sensor.matching(|e| opened(e, &new)).is_empty(), "d.mwreload2 reported");
    let shown = effective(&sensor);
    assert!(shown.contains("extensions = [\".mwreload1\"]"), "{shown}");

    // A missing file is an error too (the sensor was started with it named), not the defaults.
    std::fs::remove_file(&cfg).unwrap();
    sighup(&sensor);
    let h = health_with(&mut sensor, "the missing file's health event", "cannot read config");
    assert_eq!(
        h["message"].as_str().unwrap().split("; ").next().unwrap(),
        format!(
            "configuration not reloaded: cannot read config {}: No such file or directory (os error 2)",
            cfg.display()
        )
    );
    sensor.stop();
}
