//! The schema as a product: every payload kind survives protobuf and proto3-JSON round trips
//! unchanged, and its JSON form matches a reviewed golden file (tests/golden/<kind>.json).
//! Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1`. The OCSF form
//! of the same samples is checked in `schema/ocsf.rs`.

use std::{collections::BTreeMap, path::PathBuf};

use modelwatch::{
    proto::v1::*,
    proto::{PAYLOAD_NAMES, kind_name},
};
use pbjson_types::Timestamp;
use prost::Message as _;

/// The OCSF mapping of every sample (a submodule, so it shares `samples()`).
#[path = "schema/ocsf.rs"]
mod ocsf;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 123_456_789 })
}

fn file() -> FileRef {
    FileRef {
        path: "/home/alice/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B/blobs/9f1c".into(),
        path_truncated: false,
        requested_path: "snapshots/abc/model.safetensors".into(),
        inode: 1_234_567,
        device: 0x801,
        size: 16_060_522_496,
        mode: 0o100644,
        path_bytes: Vec::new(),
    }
}

fn device() -> Accelerator {
    Accelerator {
        path: "/dev/nvidia0".into(),
        major: 195,
        minor: 0,
        vendor: "nvidia".into(),
        driver: "nvidia".into(),
        kind: AcceleratorKind::Gpu as i32,
        pci_slot: "0000:01:00.0".into(),
        model: "NVIDIA H100 80GB HBM3".into(),
        index: 0,
    }
}

fn artifact() -> ArtifactSummary {
    ArtifactSummary {
        artifact_id: "sha256:9f1c00000000000000000000000000000000000000000000000000000000abcd".into(),
        format: ArtifactFormat::Safetensors as i32,
        name: "Llama-3.1-8B-Instruct".into(),
        sha256: "9f1c00000000000000000000000000000000000000000000000000000000abcd".into(),
        digest_state: DigestState::Verified as i32,
        approval: ApprovalVerdict::Unapproved as i32,
        pickle: PickleVerdict::Unspecified as i32,
        license: "llama3.1".into(),
        digest_skipped_reason: String::new(),
        signature: SignatureVerdict::Unspecified as i32,
    }
}

fn usage() -> SessionUsage {
    SessionUsage {
        gpu_sm_percent_avg: 71.5,
        gpu_sm_percent_max: 98.0,
        gpu_memory_bytes: 6_549_825_126,
        gpu_memory_peak_bytes: 6_600_000_000,
        engine_busy_ns: 0,
        ioctls: vec![CategoryCount { category: IoctlCategory::Submit as i32, count: 40 }],
        ioctl_rate: 4.0,
        cpu_time_ns: 2_500_000_000,
        cpu_percent: 25.0,
        model_bytes_mapped: 16_060_522_496,
        interval_ns: 10_000_000_000,
    }
}

fn samples() -> Vec<Event> {
    use event::Payload as P;
    let payloads = vec![
        P::ProcessExec(ProcessExec { filename: "/usr/bin/python3".into(), old_pid: 4242 }),
        P::ProcessFork(ProcessFork { child_entity_id: "0123456789abcdef0123456789abcdef".into(), child_pid: 4243 }),
        P::ProcessExit(ProcessExit {
            exit_code: 0,
            signal: 9,
            core_dumped: false,
            raw_status: 9,
            duration_ns: 1_740_000_000_000,
        }),
        P::ModelFileOpened(ModelFileOpened {
            file: Some(file()),
            flags: 0o2000000,
            access: "read".into(),
            reasons: vec![MatchReason::RequestedExtension as i32, MatchReason::ModelDir as i32],
            fd: 7,
            syscall: "openat".into(),
            artifact: Some(artifact()),
            repeats: 3,
        }),
        P::ModelMapped(ModelMapped {
            file: Some(file()),
            length: 16_060_522_496,
            offset: 0,
            address: 0x7f00_0000_0000,
            prot: 1,
            flags: 2,
            reasons: vec![MatchReason::KnownModel as i32, MatchReason::MappingLength as i32],
            runtime_library: String::new(),
            artifact: Some(artifact()),
        }),
        P::ArtifactIdentified(ArtifactIdentified {
            file: Some(file()),
            artifact: Some(artifact()),
            metadata: Some(ModelMetadata {
                name: "Llama-3.1-8B-Instruct".into(),
                architecture: "llama".into(),
                license: "llama3.1".into(),
                quantization: "BF16".into(),
                parameter_count: 8_030_261_248,
                context_length: 131_072,
                tensor_count: 291,
                dtypes: vec!["BF16".into()],
                chat_template: true,
                shard_count: 4,
                format_version: 0,
                extra: BTreeMap::from([("format".to_owned(), "pt".to_owned())]),
                variant: String::new(),
                node_count: 0,
                ..Default::default()
            }),
            claimed_sha256: "9f1c00000000000000000000000000000000000000000000000000000000abcd".into(),
            pickle_globals: vec![],
            pickle_offending: vec![],
            manifest_entry: None,
            license_state: LicenseState::NotAllowed as i32,
            findings: vec![Finding {
                code: "unapproved_model".into(),
                message: "not on the approved model list".into(),
                severity: Severity::Medium as i32,
            }],
            pickle_streams: vec![],
            pickle_complete: false,
            signature: None,
        }),
        P::PolicyFinding(PolicyFinding {
            file: Some(FileRef { path: "/tmp/evil.pt".into(), size: 1024, ..Default::default() }),
            artifact: Some(ArtifactSummary {
                format: ArtifactFormat::PytorchZip as i32,
                pickle: PickleVerdict::Malicious as i32,
                ..Default::default()
            }),
            finding: Some(Finding {
                code: "pickle_malicious".into(),
                message: "imports posix.system".into(),
                severity: Severity::Critical as i32,
            }),
        }),
        P::AcceleratorOpened(AcceleratorOpened { device: Some(device()), flags: 0o2, fd: 9 }),
        P::AcceleratorActivity(AcceleratorActivity {
            device: Some(device()),
            first_use: false,
            ioctls: vec![IoctlCount {
                cmd: 0xc020_462a,
                name: "NV_ESC_RM_CONTROL".into(),
                category: IoctlCategory::Query as i32,
                count: 12,
            }],
            categories: vec![CategoryCount { category: IoctlCategory::Query as i32, count: 12 }],
            interval_ns: 1_000_000_000,
            total: 12,
            first_command: None,
        }),
        P::SessionStarted(InferenceSessionStarted {
            session_id: "01a21660-0000-7000-8000-000000000001".into(),
            engine: SessionEngine::Accelerator as i32,
            accelerators: vec![device()],
            models: vec![SessionModel { file: Some(file()), artifact: Some(artifact()), bytes_mapped: 16_060_522_496 }],
            evidence: vec![SessionEvidence {
                kind: EvidenceKind::ModelMapped as i32,
                detail: "model.safetensors".into(),
                time: ts(1_795_000_000),
            }],
            confidence: 0.9,
            parent_session_id: String::new(),
            runtime: "pytorch".into(),
        }),
        P::SessionUpdated(InferenceSessionUpdated {
            session_id: "01a21660-0000-7000-8000-000000000001".into(),
            interval: Some(usage()),
            total: Some(usage()),
            elapsed_ns: 60_000_000_000,
            models: vec![],
        }),
        P::SessionEnded(InferenceSessionEnded {
            session_id: "01a21660-0000-7000-8000-000000000001".into(),
            reason: SessionEndReason::ProcessExit as i32,
            start_time: ts(1_795_000_000),
            duration_ns: 1_740_000_000_000,
            total: Some(usage()),
            models: vec![SessionModel { file: Some(file()), artifact: Some(artifact()), bytes_mapped: 1 }],
            accelerators: vec![device()],
        }),
        P::SensorHealth(SensorHealth {
            state: HealthState::Ok as i32,
            message: String::new(),
            backend: "tracepoint".into(),
            probes_attached: vec!["syscalls/sys_enter_openat".into()],
            probes_skipped: vec![],
            kernel: Some(KernelCounters {
                produced: 10,
                dropped: 0,
                produced_by_kind: BTreeMap::from([("file_open".to_owned(), 10)]),
                dropped_by_kind: BTreeMap::new(),
                ..Default::default()
            }),
            nvml: "unavailable: libnvidia-ml.so.1 not found".into(),
            decode_errors: 0,
            rss_bytes: 20 << 20,
            devices_watched: 3,
            artifacts_queued: 1,
            accelerators: vec![device()],
        }),
        P::EventsLost(EventsLost {
            count: 17,
            source: LossSource::Kernel as i32,
            detail: "the kernel ring buffer was full".into(),
            by_kind: BTreeMap::from([("file_open".to_owned(), 17)]),
            culprits: vec![],
        }),
        P::ModelRead(ModelRead {
            file: Some(file()),
            bytes: 1 << 30,
            interval_ns: 1_000_000_000,
            via: "io_uring".into(),
            artifact: Some(artifact()),
        }),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| Event {
            schema_version: 1,
            event_id: format!("01a21660-0000-7000-8000-{i:012}"),
            seq: i as u64 + 1,
            run_id: "01a215f0-0000-7000-8000-0000000c0ffe".into(),
            event_time: ts(1_795_000_000 + i as i64),
            observed_time: ts(1_795_000_001 + i as i64),
            host: Some(Host {
                host_id: "3d1219c7c4c5404aaa1f6d2a48adfda4".into(),
                hostname: "workstation-17".into(),
                boot_id: "486a1073-a277-49a4-b9e2-c5912f6821c6".into(),
                agent_version: "0.1.0".into(),
                kernel: "6.18.44".into(),
            }),
            process: Some(Process {
                entity_id: "5d4e9ed6455fd79d60b140d531f3a408".into(),
                pid: 4242,
                ppid: 1,
                uid: 1000,
                user: "alice".into(),
                exe: "/usr/bin/python3.11".into(),
                cmdline: vec!["python3".into(), "serve.py".into()],
                cgroup_id: 77,
                container_id: String::new(),
                start_time: ts(1_794_999_000),
                parent_entity_id: "385120b27c76e5fb637266d346a862d7".into(),
                comm: "python3".into(),
                tid: 0,
                gid: 1000,
                cmdline_truncated: false,
            }),
            severity: Severity::Info as i32,
            payload: Some(p),
        })
        .collect()
}

#[test]
fn every_payload_kind_has_a_sample() {
    let kinds: Vec<&str> = samples().iter().map(kind_name).collect();
    let mut expected = PAYLOAD_NAMES.to_vec();
    expected.sort();
    let mut got = kinds.clone();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn protobuf_round_trip_is_lossless() {
    for ev in samples() {
        let bytes = ev.encode_to_vec();
        assert_eq!(Event::decode(bytes.as_slice()).unwrap(), ev, "{}", kind_name(&ev));
    }
}

#[test]
fn json_round_trip_is_lossless_and_matches_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for ev in samples() {
        let json = serde_json::to_string_pretty(&ev).unwrap();
        // The sensor's own writer gives serde_json's text, byte for byte.
        assert_eq!(modelwatch::output::json_line(&ev), serde_json::to_string(&ev).unwrap(), "{}", kind_name(&ev));
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev, "{}", kind_name(&ev));
        let path = dir.join(format!("{}.json", kind_name(&ev)));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, format!("{json}\n")).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1 and review it", path.display()));
        assert_eq!(json.trim_end(), golden.trim_end(), "{} differs from the golden file", kind_name(&ev));
        // The golden file itself parses back to the same event.
        assert_eq!(serde_json::from_str::<Event>(&golden).unwrap(), ev);
    }
    // Rewriting is not checking: review the new files, then run again without the variable.
    assert!(!update, "golden files rewritten in {}; review the diff and rerun without UPDATE_GOLDEN", dir.display());
}
