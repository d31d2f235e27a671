//! The OCSF form of every sample event: the class, activity and attribute values the mapping
//! table (docs/ocsf.md) promises, numbers as numbers, nothing dropped, and every event valid
//! OCSF 1.8.0 by the validator kit in `../shared/ocsf/` (beside the repository).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch::{
    ocsf,
    proto::{
        kind_name,
        v1::{Event, MatchReason, Severity, event::Payload},
    },
};
use serde_json::{Value, json};

use super::samples;

fn sample(kind: &str) -> Event {
    samples().into_iter().find(|e| kind_name(e) == kind).unwrap_or_else(|| panic!("no sample {kind}"))
}

/// The OCSF form of the sample of payload `kind`.
fn of(kind: &str) -> Value {
    ocsf::to_value(&sample(kind))
}

/// Runs the kit's validate.py over `events` (one per line) and returns its report; fails the
/// test when the kit, Python or its `jsonschema` package is missing, or any event is invalid.
pub fn validate(events: &[Value]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kit = root.join("../shared/ocsf/validate.py");
    assert!(
        kit.exists(),
        "the OCSF validator kit is missing: {} (the shared/ folder sits beside the repository)",
        kit.display()
    );
    let venv = root.join("target/tools/ocsf-venv/bin/python3");
    let python = if venv.exists() { venv } else { PathBuf::from("python3") };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = Command::new(&python)
        .arg(&kit)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e} (`cargo xtask setup` installs it)", python.display()));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let hint = if out.status.code() == Some(2) {
        "\n(exit status 2: a usage error, or Python lacks the jsonschema package: `cargo xtask setup` \
         installs it into target/tools/ocsf-venv)"
    } else {
        ""
    };
    assert_eq!(out.status.code(), Some(0), "OCSF validation failed ({}):\n{report}{hint}", python.display());
    report
}

#[test]
fn every_sample_is_valid_ocsf() {
    let events: Vec<Value> = samples().iter().map(ocsf::to_value).collect();
    let report = validate(&events);
    assert_eq!(report.trim_end(), format!("ocsf: {} valid, 0 invalid, 0 unknown class", events.len()), "{report}");
}

/// `modelwatch tail --from CAPTURE --format ocsf`, the real binary: a JSON-lines capture
/// (`--format json`) comes out as the same OCSF events the mapping gives, all valid.
#[test]
fn tail_replays_a_capture_as_ocsf() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let text: String = samples().iter().map(|e| format!("{}\n", modelwatch::output::json_line(e))).collect();
    std::fs::write(&capture, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modelwatch"))
        .args(["tail", "--format", "ocsf", "--from"])
        .arg(&capture)
        .output()
        .expect("run modelwatch");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let expected: Vec<Value> = samples().iter().map(ocsf::to_value).collect();
    assert_eq!(lines, expected);
    validate(&lines);
}

/// What the sensor never sends but a hand-made or newer event may be: no host, no process, no
/// payload this build knows. Still valid OCSF, with placeholders only where OCSF requires one.
#[test]
fn sparse_events_are_valid_too() {
    let bare = Event::default();
    let o = ocsf::to_value(&bare);
    assert_eq!((o["class_uid"].as_u64(), o["activity_id"].as_u64()), (Some(5001), Some(0)));
    assert_eq!(o["device"]["name"], "unknown");
    assert_eq!(o["time"], 0);
    let exit = Event {
        payload: Some(Payload::ProcessExit(modelwatch::proto::v1::ProcessExit { exit_code: 3, ..Default::default() })),
        ..Default::default()
    };
    let e = ocsf::to_value(&exit);
    assert_eq!((e["class_uid"].as_u64(), e["exit_code"].as_i64()), (Some(1007), Some(3)));
    assert_eq!(e["actor"], json!({"app_name": "modelwatch"}));
    let mut all = vec![o, e];
    // Every kind without host and process, and with an empty payload too.
    for ev in samples() {
        let kind = kind_name(&ev);
        let bare = Event { host: None, process: None, ..ev };
        all.push(ocsf::to_value(&bare));
        let empty: Event = serde_json::from_value(json!({ kind: {} })).unwrap();
        assert_eq!(kind_name(&empty), kind);
        all.push(ocsf::to_value(&empty));
    }
    validate(&all);
}

/// The class and activity of each kind (docs/ocsf.md, "Event kinds").
#[test]
fn every_kind_has_its_class_and_activity() {
    let table = [
        ("process_exec", 1007, 1, "Launch"),
        ("process_fork", 1007, 1, "Launch"),
        ("process_exit", 1007, 2, "Terminate"),
        ("model_file_opened", 1001, 14, "Open"),
        ("model_mapped", 1004, 9, "Map View"),
        ("model_read", 1001, 2, "Read"),
        ("artifact_identified", 1001, 99, "Identify"),
        ("policy_finding", 2004, 1, "Create"),
        ("accelerator_opened", 1001, 14, "Open"),
        ("accelerator_activity", 1001, 99, "Ioctl"),
        ("session_started", 1007, 99, "Inference Session Start"),
        ("session_updated", 1007, 99, "Inference Session Update"),
        ("session_ended", 1007, 99, "Inference Session End"),
        ("sensor_health", 5001, 2, "Collect"),
        ("events_lost", 2004, 1, "Create"),
    ];
    assert_eq!(table.len(), samples().len(), "a kind without its row");
    for (kind, class, activity, name) in table {
        let o = of(kind);
        assert_eq!((o["class_uid"].as_u64(), o["activity_id"].as_u64()), (Some(class), Some(activity)), "{kind}");
        assert_eq!(o["activity_name"], name, "{kind}");
        assert_eq!(o["type_uid"], class * 100 + activity, "{kind}");
        assert_eq!(o["metadata"]["event_code"], kind);
        assert_eq!(o["metadata"]["version"], "1.8.0");
    }
}

/// What every event carries the same way: metadata, time, severity, device, the process.
#[test]
fn envelope_and_process_block() {
    let o = of("model_file_opened");
    assert_eq!(
        o["metadata"],
        json!({
            "version": "1.8.0",
            "product": {"name": "modelwatch", "vendor_name": "modelwatch", "version": "0.1.0"},
            "uid": "01a21660-0000-7000-8000-000000000003",
            "correlation_uid": "sha256:9f1c00000000000000000000000000000000000000000000000000000000abcd",
            "event_code": "model_file_opened",
            "sequence": 4,
            "processed_time": 1_795_000_004_123_i64,
            "log_version": "1",
            "profiles": ["host"]
        })
    );
    assert_eq!(o["time"], 1_795_000_003_123_i64);
    assert_eq!((o["severity_id"].as_u64(), o["severity"].as_str()), (Some(1), Some("Informational")));
    assert_eq!(
        o["device"],
        json!({
            "type_id": 0, "type": "Unknown",
            "hostname": "workstation-17",
            "uid": "3d1219c7c4c5404aaa1f6d2a48adfda4",
            "boot_uid": "486a1073-a277-49a4-b9e2-c5912f6821c6",
            "os": {"name": "Linux", "type_id": 200, "type": "Linux", "kernel_release": "6.18.44"}
        })
    );
    let process = json!({
        "pid": 4242,
        "uid": "5d4e9ed6455fd79d60b140d531f3a408",
        "name": "python3",
        "cmd_line": "python3 serve.py",
        "file": {"name": "python3.11", "type_id": 1, "type": "Regular File", "path": "/usr/bin/python3.11",
                 "parent_folder": "/usr/bin"},
        "user": {"uid": "1000", "name": "alice"},
        "created_time": 1_794_999_000_123_i64,
        "parent_process": {"pid": 1, "uid": "385120b27c76e5fb637266d346a862d7"}
    });
    assert_eq!(o["actor"], json!({"process": process, "user": {"uid": "1000", "name": "alice"}}));
    // What OCSF has no attribute for, with the proto's names and as numbers.
    assert_eq!(o["unmapped"]["process"], json!({"cgroup_id": 77, "gid": 1000}));
    assert!(o["observables"].as_array().unwrap().contains(&json!(
        {"name": "device.hostname", "type_id": 1, "type": "Hostname", "value": "workstation-17"}
    )));

    // Severity levels map one to one; a container puts the process into the container profile.
    let mut ev = sample("model_file_opened");
    ev.severity = Severity::Critical as i32;
    if let Some(p) = &mut ev.process {
        p.container_id = "3f2e1d0c9b8a".into();
    }
    let o = ocsf::to_value(&ev);
    assert_eq!((o["severity_id"].as_u64(), o["severity"].as_str()), (Some(5), Some("Critical")));
    assert_eq!(o["actor"]["process"]["container"], json!({"uid": "3f2e1d0c9b8a"}));
    assert_eq!(o["metadata"]["profiles"], json!(["host", "container"]));
    validate(&[o]);
}

#[test]
fn exec_fork_and_exit_are_process_activity() {
    let o = of("process_exec");
    assert_eq!((o["launch_type_id"].as_u64(), o["launch_type"].as_str()), (Some(3), Some("Exec")));
    assert_eq!(o["process"]["pid"], 4242);
    assert_eq!(o["process"]["cmd_line"], "python3 serve.py");
    // The parent launched it.
    assert_eq!(o["actor"], json!({"process": {"pid": 1, "uid": "385120b27c76e5fb637266d346a862d7"}}));
    assert_eq!(o["unmapped"]["process_exec"], json!({"filename": "/usr/bin/python3", "old_pid": 4242}));

    let o = of("process_fork");
    assert_eq!((o["launch_type_id"].as_u64(), o["launch_type"].as_str()), (Some(2), Some("Fork")));
    assert_eq!(o["process"]["pid"], 4243);
    assert_eq!(o["process"]["uid"], "0123456789abcdef0123456789abcdef");
    assert_eq!(o["process"]["parent_process"]["pid"], 4242);
    assert_eq!(o["actor"]["process"]["pid"], 4242);
    assert_eq!(o["unmapped"].get("process_fork"), None, "every fork field is mapped");

    // Killed by a signal: no exit code, the signal is kept.
    let o = of("process_exit");
    assert_eq!(o.get("exit_code"), None);
    assert_eq!(o["duration"], 1_740_000);
    assert_eq!(o["process"]["terminated_time"], o["time"]);
    assert_eq!(o["unmapped"]["process_exit"], json!({"signal": 9, "raw_status": 9}));
    let mut ev = sample("process_exit");
    if let Some(Payload::ProcessExit(x)) = &mut ev.payload {
        (x.exit_code, x.signal, x.raw_status) = (0, 0, 0);
    }
    let o = ocsf::to_value(&ev);
    assert_eq!(o["exit_code"], 0, "a clean exit has exit code 0, not none");
    assert_eq!(o["message"], "python3 exited with code 0");
    validate(&[o]);
}

#[test]
fn model_open_is_file_activity_open() {
    let o = of("model_file_opened");
    assert_eq!(
        o["file"],
        json!({
            "name": "9f1c",
            "type_id": 1,
            "type": "Regular File",
            "path": "/home/alice/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B/blobs/9f1c",
            "parent_folder": "/home/alice/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B/blobs",
            "size": 16_060_522_496_u64,
            "uid": "1234567",
            "hashes": [{"algorithm_id": 3, "algorithm": "SHA-256",
                        "value": "9f1c00000000000000000000000000000000000000000000000000000000abcd"}]
        })
    );
    assert_eq!(o["access_mask"], 0o2_000_000);
    assert_eq!(o["count"], 4, "the open and its 3 folded repeats");
    let left = &o["unmapped"]["model_file_opened"];
    assert_eq!(
        left["file"],
        json!({"requested_path": "snapshots/abc/model.safetensors", "device": 2049, "mode": 33188})
    );
    assert_eq!(
        (left["access"].as_str(), left["fd"].as_u64(), left["syscall"].as_str()),
        (Some("read"), Some(7), Some("openat"))
    );
    assert_eq!(left["reasons"], json!(["MATCH_REASON_REQUESTED_EXTENSION", "MATCH_REASON_MODEL_DIR"]));
    assert_eq!(left["artifact"]["name"], "Llama-3.1-8B-Instruct");
    assert_eq!(left["artifact"]["approval"], "APPROVAL_VERDICT_UNAPPROVED");
    let paths: Vec<&str> = o["observables"].as_array().unwrap().iter().filter_map(|x| x["name"].as_str()).collect();
    assert!(paths.contains(&"file.path") && paths.contains(&"file.hashes.value"), "{paths:?}");

    // A digest a store only claims is not the file's hash.
    let mut ev = sample("model_file_opened");
    if let Some(Payload::ModelFileOpened(x)) = &mut ev.payload {
        x.artifact.as_mut().unwrap().digest_state = modelwatch::proto::v1::DigestState::Claimed as i32;
    }
    let o = ocsf::to_value(&ev);
    assert_eq!(o["file"].get("hashes"), None);
    assert_eq!(o["unmapped"]["model_file_opened"]["artifact"]["digest_state"], "DIGEST_STATE_CLAIMED");
    validate(&[o]);
}

#[test]
fn model_mapping_is_memory_activity_and_a_runtime_library_is_a_module_load() {
    let o = of("model_mapped");
    assert_eq!(o["base_address"], "0x7f0000000000");
    assert_eq!(o["size"], 16_060_522_496_u64);
    assert_eq!((o["requested_permissions"].as_u64(), o["actual_permissions"].as_u64()), (Some(1), Some(1)));
    assert_eq!(o["process"]["pid"], 4242);
    assert_eq!(o["actor"]["process"]["pid"], 4242);
    // Memory Activity has no file: the model's path stays in `unmapped`, whole.
    let left = &o["unmapped"]["model_mapped"];
    assert_eq!(left["file"]["path"], "/home/alice/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B/blobs/9f1c");
    assert_eq!(left["file"]["size"], 16_060_522_496_u64);
    assert_eq!(left["flags"], 2);
    assert_eq!(o["metadata"]["correlation_uid"], of("model_file_opened")["metadata"]["correlation_uid"]);

    let mut ev = sample("model_mapped");
    if let Some(Payload::ModelMapped(x)) = &mut ev.payload {
        x.file.as_mut().unwrap().path = "/usr/lib/libggml-cuda.so".into();
        x.reasons = vec![MatchReason::RuntimeLibrary as i32];
        x.runtime_library = "libggml-cuda.so".into();
        x.prot = 5;
        x.artifact = None;
    }
    let o = ocsf::to_value(&ev);
    assert_eq!((o["class_uid"].as_u64(), o["activity_id"].as_u64()), (Some(1005), Some(1)));
    assert_eq!(o["module"]["file"]["path"], "/usr/lib/libggml-cuda.so");
    assert_eq!(o["module"]["file"]["ext"], "so");
    assert_eq!(o["module"]["base_address"], "0x7f0000000000");
    assert_eq!((o["module"]["load_type_id"].as_u64(), o["module"]["type"].as_str()), (Some(1), Some("Shared Library")));
    assert_eq!(o["unmapped"]["model_mapped"]["prot"], 5);
    assert_eq!(o["unmapped"]["model_mapped"]["length"], 16_060_522_496_u64);
    validate(&[o]);
}

#[test]
fn identification_is_file_activity_with_the_analysis_in_unmapped() {
    let o = of("artifact_identified");
    assert_eq!(o["file"]["hashes"][0]["value"], "9f1c00000000000000000000000000000000000000000000000000000000abcd");
    assert_eq!(
        o["message"],
        format!("{} identified as safetensors model \"Llama-3.1-8B-Instruct\"", o["file"]["path"].as_str().unwrap())
    );
    let left = &o["unmapped"]["artifact_identified"];
    assert_eq!(left["metadata"]["parameter_count"], 8_030_261_248_u64);
    assert_eq!(left["metadata"]["context_length"], 131_072);
    assert_eq!(left["license_state"], "LICENSE_STATE_NOT_ALLOWED");
    // Findings are Detection Findings of their own (policy_finding); here they are context.
    assert_eq!(left["findings"][0]["code"], "unapproved_model");
    assert_eq!(o.get("finding_info"), None);
}

#[test]
fn a_policy_finding_is_a_detection_finding() {
    let o = of("policy_finding");
    assert_eq!(
        (o["severity_id"].as_u64(), o["severity"].as_str()),
        (Some(5), Some("Critical")),
        "the finding's severity"
    );
    assert_eq!(
        o["finding_info"],
        json!({
            "uid": "01a21660-0000-7000-8000-000000000006",
            "title": "Malicious pickle in model file",
            "desc": "imports posix.system",
            "types": ["pickle_malicious"],
            "analytic": {"uid": "pickle_malicious", "name": "pickle_malicious", "type_id": 1, "type": "Rule"},
            "created_time": 1_795_000_006_123_i64
        })
    );
    assert_eq!(o["evidences"][0]["file"]["path"], "/tmp/evil.pt");
    assert_eq!(o["evidences"][0]["process"]["pid"], 4242);
    assert_eq!(o["malware"][0]["classification_ids"], json!([99]));
    assert_eq!(o["malware"][0]["files"][0]["path"], "/tmp/evil.pt");
    assert_eq!(o["is_alert"], true);
    assert_eq!((o["action_id"].as_u64(), o["disposition_id"].as_u64()), (Some(3), Some(15)), "observed, not blocked");
    assert_eq!(o["metadata"]["profiles"], json!(["host", "security_control"]));
    assert_eq!(o["unmapped"]["policy_finding"]["artifact"]["pickle"], "PICKLE_VERDICT_MALICIOUS");

    // With an artifact id, the same finding on the same file version has the same uid.
    let mut ev = sample("policy_finding");
    if let Some(Payload::PolicyFinding(x)) = &mut ev.payload {
        x.artifact.as_mut().unwrap().artifact_id = "sha256:00ff".into();
        x.finding.as_mut().unwrap().code = "license_not_allowed".into();
    }
    let o = ocsf::to_value(&ev);
    assert_eq!(o["finding_info"]["uid"], "license_not_allowed:sha256:00ff");
    assert_eq!(o["finding_info"]["title"], "Model licence not allowed");
    assert_eq!(o.get("malware"), None);
    validate(&[o]);
}

#[test]
fn accelerator_use_is_file_activity_on_the_device_node() {
    let o = of("accelerator_opened");
    assert_eq!(
        o["file"],
        json!({"name": "nvidia0", "type_id": 3, "type": "Character Device", "path": "/dev/nvidia0", "parent_folder": "/dev"})
    );
    assert_eq!(o["access_mask"], 2);
    assert_eq!(
        o["device"]["hw_info"]["gpu_info_list"],
        json!([{"model": "NVIDIA H100 80GB HBM3", "vendor_name": "NVIDIA"}])
    );
    assert_eq!(o["unmapped"]["accelerator_opened"]["fd"], 9);
    assert_eq!(o["unmapped"]["accelerator_opened"]["device"]["pci_slot"], "0000:01:00.0");

    let o = of("accelerator_activity");
    assert_eq!(o["count"], 12);
    assert_eq!((o["start_time"].as_i64(), o["end_time"].as_i64()), (Some(1_795_000_007_123), Some(1_795_000_008_123)));
    assert_eq!(
        o["unmapped"]["accelerator_activity"]["ioctls"][0],
        json!({"cmd": 0xc020_462a_u32, "name": "NV_ESC_RM_CONTROL", "category": "IOCTL_CATEGORY_QUERY", "count": 12})
    );
}

#[test]
fn sessions_are_process_activity_with_the_ai_operation_profile() {
    let o = of("session_started");
    assert_eq!(o["metadata"]["profiles"], json!(["host", "ai_operation"]));
    assert_eq!(
        o["ai_model"],
        json!({"name": "Llama-3.1-8B-Instruct", "ai_provider": "Unknown",
               "uid": "sha256:9f1c00000000000000000000000000000000000000000000000000000000abcd"})
    );
    assert_eq!(
        o["message_context"],
        json!({"uid": "01a21660-0000-7000-8000-000000000001", "application": {"name": "python3"}})
    );
    assert_eq!(o["metadata"]["correlation_uid"], "01a21660-0000-7000-8000-000000000001");
    assert_eq!(o["device"]["hw_info"]["gpu_info_list"][0]["model"], "NVIDIA H100 80GB HBM3");
    assert_eq!(o["start_time"], o["time"]);
    let left = &o["unmapped"]["session_started"];
    assert_eq!((left["runtime"].as_str(), left["confidence"].as_f64()), (Some("pytorch"), Some(0.9)));
    assert_eq!(left["evidence"][0]["time"], 1_795_000_000_123_i64, "times in unmapped are epoch ms");
    assert_eq!(left["models"][0]["bytes_mapped"], 16_060_522_496_u64);

    let o = of("session_updated");
    assert_eq!(o.get("ai_model"), None, "no model change, no model");
    assert_eq!(o["duration"], 60_000);
    assert_eq!(o["unmapped"]["session_updated"]["interval"]["gpu_memory_bytes"], 6_549_825_126_u64);
    assert_eq!(o["metadata"]["correlation_uid"], "01a21660-0000-7000-8000-000000000001");

    let o = of("session_ended");
    assert_eq!((o["start_time"].as_i64(), o["duration"].as_u64()), (Some(1_795_000_000_123), Some(1_740_000)));
    assert_eq!(o["end_time"], o["time"]);
    assert_eq!(o["ai_model"]["name"], "Llama-3.1-8B-Instruct");
    assert_eq!(o["unmapped"]["session_ended"]["reason"], "SESSION_END_REASON_PROCESS_EXIT");
}

#[test]
fn health_is_the_device_inventory_and_a_loss_is_a_finding() {
    let o = of("sensor_health");
    assert_eq!(
        o["device"]["hw_info"],
        json!({"gpu_count": 1, "gpu_info_list": [{"model": "NVIDIA H100 80GB HBM3", "vendor_name": "NVIDIA"}]})
    );
    let left = &o["unmapped"]["sensor_health"];
    assert_eq!(left["state"], "HEALTH_STATE_OK");
    assert_eq!(left["kernel"]["produced_by_kind"]["file_open"], 10);
    assert_eq!(left["rss_bytes"], 20 << 20);

    let o = of("events_lost");
    assert_eq!(o["count"], 17);
    assert_eq!(o["finding_info"]["title"], "Sensor events lost");
    assert_eq!(o["finding_info"]["desc"], "the kernel ring buffer was full");
    assert_eq!(o["unmapped"]["events_lost"], json!({"source": "LOSS_SOURCE_KERNEL", "by_kind": {"file_open": 17}}));
}

/// Every value of the source event shows up in its OCSF form: as an attribute (possibly
/// converted: ns to ms, RFC 3339 to epoch ms, an address in hex) or in `unmapped`.
#[test]
fn nothing_is_dropped() {
    // Fields whose value is converted on the way (checked by the tests above).
    const CONVERTED: [&str; 6] = ["severity", "duration_ns", "interval_ns", "elapsed_ns", "address", "mode"];
    for ev in samples() {
        let o = ocsf::to_value(&ev);
        let mut have = Vec::new();
        leaves(&o, &mut have);
        // The messages repeat values for people; they do not count as keeping them.
        have.retain(|(k, _)| k != "message");
        let mut source = Vec::new();
        leaves(&serde_json::to_value(&ev).unwrap(), &mut source);
        for (key, value) in source {
            if CONVERTED.contains(&last(&key)) {
                continue;
            }
            let want = match serde_json::from_value::<pbjson_types::Timestamp>(Value::String(value.clone())) {
                Ok(ts) if value.contains('T') => (ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000).to_string(),
                _ => value,
            };
            assert!(
                have.iter().any(|(k, v)| v == &want || (last(k) == "cmd_line" && v.contains(&want))),
                "{}: {key} = {want} is in neither an OCSF attribute nor `unmapped`:\n{o:#}",
                kind_name(&ev)
            );
        }
    }
}

/// Every scalar of a JSON value as (path, text); the path's parts are joined by `.`.
fn leaves(v: &Value, out: &mut Vec<(String, String)>) {
    fn walk(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                o.iter()
                    .for_each(|(k, v)| walk(&if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(path, v, out)),
            Value::String(s) => out.push((path.to_owned(), s.clone())),
            Value::Null => {}
            other => out.push((path.to_owned(), other.to_string())),
        }
    }
    walk("", v, out);
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Numbers are numbers: no attribute of any sample's OCSF form is a string of digits, except
/// identifiers OCSF types as strings (uids, the schema version, observable values).
#[test]
fn numbers_are_not_strings() {
    const STRING_IDS: [&str; 3] = ["uid", "log_version", "value"];
    fn walk(key: &str, v: &Value, bad: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, v)| walk(k, v, bad)),
            Value::Array(a) => a.iter().for_each(|v| walk(key, v, bad)),
            Value::String(s)
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !STRING_IDS.contains(&key) =>
            {
                bad.push(format!("{key} = \"{s}\""));
            }
            _ => {}
        }
    }
    for ev in samples() {
        let mut bad = Vec::new();
        walk("", &ocsf::to_value(&ev), &mut bad);
        assert!(bad.is_empty(), "{}: {bad:?}", kind_name(&ev));
    }
}
