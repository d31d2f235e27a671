//! The live sensor in OCSF mode (`modelwatch run --format ocsf`): the events this test causes
//! (a model opened, identified and mapped, a malicious pickle, a program executed and exiting,
//! an inference session on a configured accelerator) arrive as the OCSF classes and activities
//! docs/ocsf.md names, and every line the sensor printed, other processes' included, is valid
//! OCSF 1.8.0 by the validator kit in `../shared/ocsf/`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use modelwatch_tests::{
    EVENT_TIMEOUT, EVIL_PICKLE, RunningSensor, open_close, real, replay_session_config, tiny_gguf, validate_ocsf,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// DRM_IOCTL_AMDGPU_CS and DRM_IOCTL_AMDGPU_GEM_CREATE (include/uapi/drm/amdgpu_drm.h).
const AMDGPU_CS: &str = "c0186444";
const AMDGPU_GEM_CREATE: &str = "c0206440";

fn is(e: &Value, class: u64, activity: u64) -> bool {
    e["class_uid"] == class && e["activity_id"] == activity
}

fn code(e: &Value) -> &str {
    e["metadata"]["event_code"].as_str().unwrap_or("")
}

fn about_file(e: &Value, path: &Path) -> bool {
    e["file"]["path"] == real(path).as_str()
}

#[test]
fn live_events_are_the_promised_ocsf_classes_and_all_valid() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let bytes = tiny_gguf();
    std::fs::write(&model, &bytes).unwrap();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let evil = dir.path().join("evil.pkl");
    std::fs::write(&evil, EVIL_PICKLE).unwrap();
    let replay = dir.path().join("gpu-samples.jsonl");
    std::fs::write(&replay, "").unwrap();
    let mut sensor = RunningSensor::start_ocsf(&replay_session_config(&replay));
    let me = std::process::id();

    // The accelerator inventory at start: the configured device is the one accelerator.
    let health = sensor.wait_for("the start inventory", EVENT_TIMEOUT, |e| code(e) == "sensor_health");
    assert!(is(&health, 5001, 2), "{health:#}");
    assert_eq!(health["device"]["hw_info"]["gpu_count"], 1, "{health:#}");
    assert_eq!(health["unmapped"]["sensor_health"]["accelerators"][0]["path"], "/dev/null", "{health:#}");

    // A model opened: File System Activity, Open; then identified by content.
    open_close(&model);
    let open = sensor.wait_for("the open of the model", EVENT_TIMEOUT, |e| {
        is(e, 1001, 14) && about_file(e, &model) && e["actor"]["process"]["pid"] == me
    });
    assert_eq!(code(&open), "model_file_opened");
    assert_eq!(open["file"]["size"], bytes.len() as u64, "{open:#}");
    assert_eq!(open["file"]["ext"], "gguf");
    assert!(open["access_mask"].is_u64(), "{open:#}");
    assert!(open["metadata"]["sequence"].is_u64() && open["time"].is_i64(), "{open:#}");
    // The digest may come in a later identification: hashing queues behind other work (other
    // tests' sensors and files), so the digest is checked on every identification that has it,
    // at the end.
    let identified = sensor.wait_for("the model's identification", EVENT_TIMEOUT, |e| {
        is(e, 1001, 99) && about_file(e, &model) && e["actor"]["process"]["pid"] == me
    });
    assert_eq!(code(&identified), "artifact_identified");
    assert_eq!(identified["unmapped"]["artifact_identified"]["metadata"]["name"], "tiny-test-model", "{identified:#}");
    assert_eq!(identified["unmapped"]["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");

    // A malicious pickle: a Detection Finding.
    open_close(&evil);
    let finding = sensor.wait_for("the malicious pickle's finding", EVENT_TIMEOUT, |e| {
        is(e, 2004, 1) && e["evidences"][0]["file"]["path"] == real(&evil).as_str()
    });
    assert_eq!(code(&finding), "policy_finding");
    assert_eq!(finding["finding_info"]["analytic"]["uid"], "pickle_malicious", "{finding:#}");
    assert_eq!((finding["severity_id"].as_u64(), finding["is_alert"].as_bool()), (Some(5), Some(true)));
    assert_eq!(finding["malware"][0]["files"][0]["path"], real(&evil).as_str());

    // A program executed and exiting: Process Activity, Launch (fork, exec) and Terminate.
    let mut sh = Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
    let child = sh.id();
    assert_eq!(sh.wait().unwrap().code(), Some(7));
    let fork = sensor.wait_for("the fork", EVENT_TIMEOUT, |e| {
        is(e, 1007, 1) && e["launch_type_id"] == 2 && e["process"]["pid"] == child
    });
    assert_eq!(fork["actor"]["process"]["pid"], me);
    let exec = sensor.wait_for("the exec of /bin/sh", EVENT_TIMEOUT, |e| {
        is(e, 1007, 1) && e["launch_type_id"] == 3 && e["process"]["pid"] == child
    });
    let sh_path = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(exec["process"]["file"]["path"], sh_path.to_str().unwrap());
    assert_eq!(exec["process"]["cmd_line"], "/bin/sh -c 'exit 7'");
    assert_eq!(exec["actor"]["process"]["pid"], me, "the parent launched it");
    assert_eq!(exec["process"]["uid"], fork["process"]["uid"], "one entity id from fork to exec");
    let exit = sensor.wait_for("the exit", EVENT_TIMEOUT, |e| is(e, 1007, 2) && e["process"]["pid"] == child);
    assert_eq!(exit["exit_code"], 7);

    // An inference session: the worker maps the identified model and submits work on the
    // configured accelerator while replayed telemetry shows GPU use.
    let mut worker = Command::new(env!("CARGO_BIN_EXE_mw-worker"))
        .args([model.to_str().unwrap(), "/dev/null", AMDGPU_CS, AMDGPU_GEM_CREATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wpid = worker.id();
    let mut to_worker = worker.stdin.take().unwrap();
    let mut from_worker = BufReader::new(worker.stdout.take().unwrap());
    let mut command = |cmd: &str| {
        if !cmd.is_empty() {
            writeln!(to_worker, "{cmd}").unwrap();
        }
        let mut reply = String::new();
        from_worker.read_line(&mut reply).unwrap();
        assert!(matches!(reply.trim(), "ok" | "ready"), "worker said {reply:?}");
    };
    command(""); // ready
    command("ioctl 20");
    let mut samples = std::fs::OpenOptions::new().append(true).open(&replay).unwrap();
    writeln!(samples, "{{\"pid\":{wpid},\"device\":\"/dev/null\",\"sm_percent\":63.0,\"memory_bytes\":1073741824}}")
        .unwrap();
    let mapped = sensor.wait_for("the worker's mapping of the model", EVENT_TIMEOUT, |e| {
        is(e, 1004, 9) && e["process"]["pid"] == wpid
    });
    assert_eq!(mapped["size"], bytes.len() as u64, "{mapped:#}");
    assert_eq!(mapped["unmapped"]["model_mapped"]["file"]["path"], real(&model).as_str());
    let dev_open = sensor.wait_for("the worker's open of the accelerator", EVENT_TIMEOUT, |e| {
        is(e, 1001, 14) && e["file"]["path"] == "/dev/null" && e["actor"]["process"]["pid"] == wpid
    });
    assert_eq!((dev_open["file"]["type_id"].as_u64(), code(&dev_open)), (Some(3), "accelerator_opened"));
    let ioctls = sensor.wait_for("the worker's ioctls", EVENT_TIMEOUT, |e| {
        is(e, 1001, 99)
            && code(e) == "accelerator_activity"
            && e["actor"]["process"]["pid"] == wpid
            && e["count"].is_u64()
    });
    assert_eq!(ioctls["file"]["path"], "/dev/null");
    let started = sensor.wait_for("the session start", EVENT_TIMEOUT, |e| {
        is(e, 1007, 99) && code(e) == "session_started" && e["process"]["pid"] == wpid
    });
    assert_eq!(started["activity_name"], "Inference Session Start");
    assert_eq!(started["ai_model"]["name"], "tiny-test-model", "{started:#}");
    let model_uid = started["ai_model"]["uid"].as_str().unwrap_or_default();
    assert!(model_uid == format!("sha256:{sha}") || model_uid.starts_with("file:"), "{started:#}");
    assert!(started["metadata"]["profiles"].as_array().unwrap().contains(&"ai_operation".into()));
    let session = started["message_context"]["uid"].as_str().unwrap().to_owned();
    command("exit");
    assert!(worker.wait().unwrap().success());
    let ended = sensor.wait_for("the session end", EVENT_TIMEOUT, |e| {
        is(e, 1007, 99) && code(e) == "session_ended" && e["message_context"]["uid"] == session.as_str()
    });
    assert!(ended["duration"].is_u64() && ended["start_time"].is_i64(), "{ended:#}");
    assert_eq!(ended["unmapped"]["session_ended"]["reason"], "SESSION_END_REASON_PROCESS_EXIT");

    // Everything the sensor printed, whoever caused it, is valid OCSF, and no number in it is a
    // string (the proto3 JSON mapping writes 64-bit integers as strings; OCSF must not).
    let events = sensor.stop();
    let digests: Vec<&Value> =
        events.iter().filter(|e| about_file(e, &model)).filter_map(|e| e["file"]["hashes"].get(0)).collect();
    for d in &digests {
        assert_eq!((d["algorithm_id"].as_u64(), d["value"].as_str()), (Some(3), Some(sha.as_str())), "{d}");
    }
    for e in &events {
        let mut bad = Vec::new();
        digit_strings("", e, &mut bad);
        assert!(bad.is_empty(), "numbers as strings {bad:?} in {e:#}");
    }
    let report = validate_ocsf(&events);
    assert_eq!(report.trim_end(), format!("ocsf: {} valid, 0 invalid, 0 unknown class", events.len()), "{report}");
    let mut seen = std::collections::BTreeMap::new();
    for e in &events {
        *seen.entry(format!("{} {}/{}", code(e), e["class_uid"], e["activity_id"])).or_insert(0) += 1;
    }
    print!("{report}");
    seen.iter().for_each(|(what, n)| println!("  {what}: {n}"));
}

/// Strings of digits outside the attributes OCSF types as strings (uids, the schema version,
/// observable values, free text).
fn digit_strings(key: &str, v: &Value, out: &mut Vec<String>) {
    const STRINGS: [&str; 6] = ["uid", "log_version", "value", "message", "desc", "name"];
    match v {
        Value::Object(o) => o.iter().for_each(|(k, v)| digit_strings(k, v, out)),
        Value::Array(a) => a.iter().for_each(|v| digit_strings(key, v, out)),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !STRINGS.contains(&key) => {
            out.push(format!("{key} = \"{s}\""));
        }
        _ => {}
    }
}
