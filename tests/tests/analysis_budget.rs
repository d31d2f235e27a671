//! A hostile artifact must not stall the analysis of the files after it, nor the sensor's
//! shutdown: a 2 MB `torch.save` zip whose `data.pkl` inflates to about 2 GB of pickle opcodes
//! is opened, then a small malicious pickle; the pickle's verdict must come while the bomb is
//! still being analysed, and SIGTERM must end the sensor within seconds all the same.
//!
//! The two bounds below are the property under test (the time a verdict may wait, the time a
//! shutdown may take), not a guess at how fast this machine is: before the fix the verdict
//! waited for the whole bomb (minutes in a debug build) and SIGTERM waited for it too.
//!
//! The files carry a private extension, not `.pt`/`.pkl`, and stay below the default size
//! threshold, so that the sensors of other tests running on this machine do not analyse the
//! bomb too.

// The artifact library's sample generators (valid and hostile model files, byte by byte).
#[path = "../../artifact/tests/generated.rs"]
mod generated;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use generated::{llama_gguf, os_system_pickle, torch_zip_bomb};
use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, open_close, pid, real};
use serde_json::Value;

/// How long the malicious pickle's verdict may take while the bomb is analysed.
const VERDICT_BOUND: Duration = Duration::from_secs(10);
/// How long the sensor may take to exit on SIGTERM while the bomb is analysed.
const STOP_BOUND: Duration = Duration::from_secs(5);

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

#[test]
fn a_zip_bomb_delays_neither_the_next_verdict_nor_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.mwbudget");
    let (bytes, inflated) = torch_zip_bomb(2 << 20);
    assert!(bytes.len() < 3 << 20 && inflated > 2_000_000_000);
    std::fs::write(&bomb, &bytes).unwrap();
    let evil = dir.path().join("evil.mwbudget");
    std::fs::write(&evil, os_system_pickle()).unwrap();

    // A time budget far longer than the test, so the bomb is surely still being analysed
    // when the pickle is judged and when SIGTERM comes: the shutdown must not wait for it.
    let mut sensor = RunningSensor::start(
        "[files]\nextensions = [\".mwbudget\"]\nmodel_dirs = []\n[artifact]\nmax_analysis_ms = 120000\n",
    );
    let me = std::process::id();

    open_close(&bomb);
    // The bomb's open is reported only with its verdict, which is what must not come first:
    // give its analysis a moment to start (its budget is minutes; the assertion below checks
    // it had not ended when the pickle's verdict came).
    std::thread::sleep(Duration::from_secs(1));
    open_close(&evil);
    let opened = Instant::now();
    let finding = sensor.wait_for("the malicious pickle's finding, while the bomb is analysed", VERDICT_BOUND, |e| {
        about(e, "policy_finding", &evil) && e["policy_finding"]["finding"]["code"] == "pickle_malicious"
    });
    eprintln!("pickle_malicious {:?} after the open", opened.elapsed());
    assert_eq!(finding["severity"], "SEVERITY_CRITICAL");
    assert_eq!(finding["policy_finding"]["artifact"]["pickle"], "PICKLE_VERDICT_MALICIOUS");
    assert_eq!(pid(&finding), Some(me));
    assert!(
        sensor.matching(|e| about(e, "artifact_identified", &bomb)).is_empty(),
        "the bomb was analysed to its end before the pickle: the test proves nothing"
    );

    let stopping = Instant::now();
    let events = sensor.stop();
    let took = stopping.elapsed();
    eprintln!("the sensor exited {took:?} after SIGTERM");
    assert!(took < STOP_BOUND, "SIGTERM took {took:?} while the bomb was analysed");
    assert!(
        !events.iter().any(|e| about(e, "artifact_identified", &bomb)),
        "an analysis abandoned at shutdown is not published as the bomb's verdict"
    );
    let last = events.last().expect("events");
    assert_eq!(last["sensor_health"]["state"], "HEALTH_STATE_STOPPING", "{last:#}");
}

/// The bomb's analysis ends at its time budget, incomplete, and says so. (A one-second budget:
/// shorter than what the pickle budget takes to walk on any machine, so it is the time that
/// ends the walk.)
#[test]
fn a_zip_bomb_is_reported_incomplete_within_its_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.mwbudget");
    std::fs::write(&bomb, torch_zip_bomb(2 << 20).0).unwrap();
    let mut sensor = RunningSensor::start(
        "[files]\nextensions = [\".mwbudget\"]\nmodel_dirs = []\n[artifact]\nmax_analysis_ms = 1000\n",
    );
    open_close(&bomb);
    let ident = sensor.wait_for("the bomb's identification", EVENT_TIMEOUT, |e| about(e, "artifact_identified", &bomb));
    let a = &ident["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_PYTORCH_ZIP");
    assert_eq!(a["artifact"]["pickle"], "PICKLE_VERDICT_SUSPICIOUS");
    assert_ne!(a["pickle_complete"], Value::Bool(true), "{a:#}");
    let codes: Vec<&str> = a["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"analysis_incomplete") && codes.contains(&"pickle_incomplete"), "{codes:?}");
    let incomplete = sensor.wait_for("the analysis_incomplete finding", EVENT_TIMEOUT, |e| {
        about(e, "policy_finding", &bomb) && e["policy_finding"]["finding"]["code"] == "analysis_incomplete"
    });
    let message = incomplete["policy_finding"]["finding"]["message"].as_str().unwrap();
    assert!(message.contains("time budget (1000 ms) ran out"), "{message}");
    sensor.stop();
}

/// A file over `max_hash_bytes` is not hashed, and the event says so: digest state SKIPPED with
/// its reason, a `digest_skipped` finding, and no approval. (Sparse files take the same path;
/// the artifact library's tests cover their detection: a 64 GiB sparse file here would be
/// hashed by the other sensors running on this machine.)
#[test]
fn a_file_too_large_to_hash_is_reported_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.mwbudget");
    let mut bytes = llama_gguf();
    bytes.resize(2 << 20, 0);
    std::fs::write(&big, &bytes).unwrap();
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64))).unwrap();
    let mut sensor = RunningSensor::start(&format!(
        "[files]\nextensions = [\".mwbudget\"]\nmodel_dirs = []\n[artifact]\nmax_hash_bytes = \"1MiB\"\nmanifest = \"{}\"\n",
        manifest.display()
    ));
    open_close(&big);
    let ident = sensor.wait_for("the identification", EVENT_TIMEOUT, |e| about(e, "artifact_identified", &big));
    let a = &ident["artifact_identified"]["artifact"];
    assert_eq!(a["digest_state"], "DIGEST_STATE_SKIPPED", "{ident:#}");
    assert_eq!(a["digest_skipped_reason"], "too_large");
    assert_eq!(a["approval"], "APPROVAL_VERDICT_UNKNOWN");
    let finding = sensor.wait_for("the digest_skipped finding", EVENT_TIMEOUT, |e| {
        about(e, "policy_finding", &big) && e["policy_finding"]["finding"]["code"] == "digest_skipped"
    });
    let message = finding["policy_finding"]["finding"]["message"].as_str().unwrap();
    assert!(message.starts_with("digest skipped (too_large): 2.0 MiB is over max_hash_bytes (1.0 MiB)"), "{message}");
    let events = sensor.stop();
    assert!(
        !events.iter().any(|e| about(e, "artifact_identified", &big)
            && e["artifact_identified"]["artifact"]["digest_state"] == "DIGEST_STATE_VERIFIED"),
        "it was hashed after all"
    );
}
