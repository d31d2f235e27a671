//! A model loaded while the sensor was down is still reported when it starts: the start-up
//! walk of /proc finds the process holding and mapping it, reports both as "already loaded at
//! sensor start", identifies the model, and the session tracker starts a session once the
//! process shows activity.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use modelwatch_tests::{
    EVENT_TIMEOUT, RunningSensor, kind, make_file, pid, real, reasons, replay_session_config, tiny_gguf, u64_of,
};

/// DRM_IOCTL_AMDGPU_CS, DRM_IOCTL_AMDGPU_GEM_CREATE and DRM_IOCTL_AMDGPU_WAIT_CS.
const AMDGPU: [&str; 3] = ["c0186444", "c0206440", "c0206449"];

#[test]
fn a_model_loaded_before_the_sensor_started_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("preloaded.gguf");
    make_file(&model, &tiny_gguf(), 64 << 20);
    let model_path = real(&model);
    let replay = dir.path().join("gpu-samples.jsonl");
    std::fs::write(&replay, "").unwrap();

    // The worker opens and maps the model, and opens the "accelerator", before any sensor runs.
    let mut worker = Command::new(env!("CARGO_BIN_EXE_mw-worker"))
        .arg(&model)
        .arg("/dev/null")
        .args(AMDGPU)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wpid = worker.id();
    let mut to_worker = worker.stdin.take().unwrap();
    let mut from_worker = BufReader::new(worker.stdout.take().unwrap());
    let mut line = String::new();
    from_worker.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let mut sensor = RunningSensor::start(&replay_session_config(&replay));
    let present = |e: &serde_json::Value, payload: &str| {
        kind(e) == payload
            && pid(e) == Some(wpid)
            && e[payload]["file"]["path"] == model_path.as_str()
            && reasons(e, payload).iter().any(|r| r == "MATCH_REASON_PRESENT_AT_START")
    };
    let mapped = sensor.wait_for("the mapping found at start", EVENT_TIMEOUT, |e| present(e, "model_mapped"));
    assert_eq!(u64_of(&mapped["model_mapped"]["length"]), 64 << 20, "{mapped:#}");
    assert_eq!(u64_of(&mapped["model_mapped"]["file"]["size"]), 64 << 20);
    assert!(reasons(&mapped, "model_mapped").contains(&"MATCH_REASON_MAPPING_LENGTH".to_owned()), "{mapped:#}");
    let opened =
        sensor.wait_for("the open descriptor found at start", EVENT_TIMEOUT, |e| present(e, "model_file_opened"));
    let o = &opened["model_file_opened"];
    assert!(reasons(&opened, "model_file_opened").contains(&"MATCH_REASON_EXTENSION".to_owned()), "{o:#}");
    assert_eq!(o["access"], "read");
    assert!(o["fd"].as_i64().is_some_and(|fd| fd > 2), "{o:#}");
    assert_eq!(opened["process"]["exe"].as_str().unwrap(), real(std::path::Path::new(env!("CARGO_BIN_EXE_mw-worker"))));
    let ident = sensor.wait_for("the preloaded model's identification", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && e["artifact_identified"]["file"]["path"] == model_path.as_str()
    });
    assert_eq!(ident["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(pid(&ident), Some(wpid));

    // Activity after the start: the model evidence from the walk makes it a session.
    let mut command = |cmd: &str| {
        writeln!(to_worker, "{cmd}").unwrap();
        let mut reply = String::new();
        from_worker.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), "ok");
    };
    command("ioctl 20");
    let mut samples = std::fs::OpenOptions::new().append(true).open(&replay).unwrap();
    writeln!(samples, "{{\"pid\":{wpid},\"device\":\"/dev/null\",\"sm_percent\":40.0,\"memory_bytes\":1073741824}}")
        .unwrap();
    let started = sensor.wait_for("the session of the preloaded worker", EVENT_TIMEOUT, |e| {
        kind(e) == "session_started" && pid(e) == Some(wpid)
    });
    let models = started["session_started"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{models:#?}");
    assert_eq!(models[0]["file"]["path"], model_path.as_str());
    command("exit");
    assert!(worker.wait().unwrap().success());
    sensor.stop();
}
