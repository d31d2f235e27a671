//! Inference sessions end to end: a worker process maps a model, issues compute ioctls on a
//! device configured as an amdgpu accelerator, and replayed telemetry attributes GPU use to it.
//! Exactly one session starts, updates flow, and it ends when the worker exits. A `cp` of the
//! same model is a file access, never a session.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
    time::Duration,
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, make_file, pid, real, replay_session_config, u64_of};
use serde_json::Value;

/// DRM_IOCTL_AMDGPU_CS and DRM_IOCTL_AMDGPU_GEM_CREATE (include/uapi/drm/amdgpu_drm.h).
const AMDGPU_CS: &str = "c0186444";
const AMDGPU_GEM_CREATE: &str = "c0206440";
const AMDGPU_WAIT_CS: &str = "c0206449";

fn session_id(e: &Value, payload: &str) -> String {
    e[payload]["session_id"].as_str().unwrap_or("").to_owned()
}

#[test]
fn worker_session_starts_updates_and_ends_and_cp_is_not_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    make_file(&model, b"GGUF\x03\x00\x00\x00", 64 << 20);
    let replay = dir.path().join("gpu-samples.jsonl");
    std::fs::write(&replay, "").unwrap();
    let mut sensor = RunningSensor::start(&replay_session_config(&replay));

    let worker_bin = env!("CARGO_BIN_EXE_mw-worker");
    let mut worker = Command::new(worker_bin)
        .args([model.to_str().unwrap(), "/dev/null", AMDGPU_CS, AMDGPU_GEM_CREATE, AMDGPU_WAIT_CS])
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
    let mut command = |cmd: &str| {
        writeln!(to_worker, "{cmd}").unwrap();
        let mut reply = String::new();
        from_worker.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), "ok");
    };
    command("ioctl 20");
    let mut samples = std::fs::OpenOptions::new().append(true).open(&replay).unwrap();
    writeln!(samples, "{{\"pid\":{wpid},\"device\":\"/dev/null\",\"sm_percent\":63.0,\"memory_bytes\":1073741824}}")
        .unwrap();

    let started = sensor.wait_for("session start for the worker", EVENT_TIMEOUT, |e| {
        kind(e) == "session_started" && pid(e) == Some(wpid)
    });
    let s = &started["session_started"];
    assert_eq!(s["engine"], "SESSION_ENGINE_ACCELERATOR");
    assert_eq!(s["accelerators"][0]["path"], "/dev/null");
    assert_eq!(s["accelerators"][0]["driver"], "amdgpu");
    let models = s["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{models:#?}");
    assert_eq!(models[0]["file"]["path"], real(&model).as_str());
    assert_eq!(u64_of(&models[0]["bytes_mapped"]), 64 << 20);
    let evidence: Vec<&str> = s["evidence"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(evidence.contains(&"EVIDENCE_KIND_MODEL_MAPPED"), "{evidence:?}");
    assert!(
        evidence.contains(&"EVIDENCE_KIND_ACCELERATOR_COMPUTE") || evidence.contains(&"EVIDENCE_KIND_GPU_UTILIZATION"),
        "{evidence:?}"
    );
    let confidence = s["confidence"].as_f64().unwrap();
    assert!((0.5..1.0).contains(&confidence), "{confidence}");
    let id = session_id(&started, "session_started");

    // Keep it busy: more ioctls and samples, so updates carry usage.
    for _ in 0..3 {
        command("ioctl 10");
        writeln!(
            samples,
            "{{\"pid\":{wpid},\"device\":\"/dev/null\",\"sm_percent\":63.0,\"memory_bytes\":1073741824}}"
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let update = sensor.wait_for("a session update with GPU use", EVENT_TIMEOUT, |e| {
        kind(e) == "session_updated"
            && session_id(e, "session_updated") == id
            && e["session_updated"]["interval"]["gpu_sm_percent_avg"].as_f64() == Some(63.0)
    });
    assert_eq!(u64_of(&update["session_updated"]["interval"]["gpu_memory_bytes"]), 1 << 30);

    command("exit");
    assert!(worker.wait().unwrap().success());
    let ended = sensor.wait_for("session end on exit", EVENT_TIMEOUT, |e| {
        kind(e) == "session_ended" && session_id(e, "session_ended") == id
    });
    let en = &ended["session_ended"];
    assert_eq!(en["reason"], "SESSION_END_REASON_PROCESS_EXIT");
    assert!(u64_of(&en["duration_ns"]) > 0);
    let total = &en["total"];
    // 20 + 3 × 10 of each command, counted in the kernel and drained by category.
    let mut by_category: Vec<(String, u64)> = total["ioctls"]
        .as_array()
        .unwrap_or_else(|| panic!("no ioctl totals: {total}"))
        .iter()
        .map(|c| (c["category"].as_str().unwrap_or("").to_owned(), u64_of(&c["count"])))
        .collect();
    by_category.sort();
    let expected = [("IOCTL_CATEGORY_MEMORY", 50), ("IOCTL_CATEGORY_SUBMIT", 50), ("IOCTL_CATEGORY_SYNC", 50)];
    assert_eq!(by_category, expected.map(|(c, n)| (c.to_owned(), n)), "{total}");
    assert_eq!(total["gpu_sm_percent_max"].as_f64(), Some(63.0));

    // A copy of the model: file accesses, no session.
    let copy = dir.path().join("copy-of-tiny-llama.gguf");
    let status = Command::new("cp").arg(&model).arg(&copy).status().unwrap();
    assert!(status.success());
    let cp_open = sensor.wait_for("cp's open of the model", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened"
            && e["process"]["comm"] == "cp"
            && e["model_file_opened"]["file"]["path"] == real(&model).as_str()
    });
    let cp_pid = pid(&cp_open).unwrap();
    // cp's exit comes after everything it did: once the sensor has seen it, a session for cp
    // would have been decided (it would have ended at that exit, too).
    sensor.wait_for("cp's exit", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(cp_pid));
    let events = sensor.stop();
    let starts: Vec<&Value> = events.iter().filter(|e| kind(e) == "session_started").collect();
    assert_eq!(starts.iter().filter(|e| pid(e) == Some(wpid)).count(), 1, "exactly one session for the worker");
    assert!(!starts.iter().any(|e| pid(e) == Some(cp_pid)), "cp started a session");
    // The session's events come in order: start, updates, end.
    let mine: Vec<&str> = events
        .iter()
        .filter(|e| ["session_started", "session_updated", "session_ended"].iter().any(|k| session_id(e, k) == id))
        .map(kind)
        .collect();
    assert_eq!(mine.first(), Some(&"session_started"));
    assert_eq!(mine.last(), Some(&"session_ended"));
    assert!(mine.iter().filter(|k| **k == "session_updated").count() >= 1);
}
