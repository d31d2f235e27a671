//! Floods starve no one: a process opening model-named files as fast as it can gets a fair
//! share of the kernel's ring buffer, beyond which its records are dropped and counted against
//! it by name, so another user's model opened meanwhile is still reported and identified.
//!
//! Alone in its own test binary: its loss counters must not see other tests' floods.

use std::{os::unix::fs::PermissionsExt as _, path::Path};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, Worker, kind, pid, real, tiny_gguf, u64_of};
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_mw-worker");
const NOBODY: u32 = 65534;
/// More records than the default 8 MiB ring holds while the collector is stopped.
const FLOOD: usize = 100_000;

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

#[test]
fn a_flooding_process_does_not_starve_another_users_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = dir.path().join("victim.gguf");
    std::fs::write(&victim, tiny_gguf()).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let flood: Vec<String> = (0..64)
        .map(|i| {
            let p = dir.path().join(format!("flood-{i}.gguf"));
            std::fs::write(&p, b"x").unwrap();
            p.to_str().unwrap().to_owned()
        })
        .collect();
    // The flood's files hold no model: reported anyway, one event per open (not folded), so
    // that every open is delivered or counted.
    let sensor = RunningSensor::start(
        "[files]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nreport_non_models = true\nfold_window_ms = 0\n",
    );
    let mut flooder = Worker::spawn(WORKER, None);
    let mut other = Worker::spawn(WORKER, Some(NOBODY));
    let signal = |sig| {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid() as i32, sig) }, 0, "{}", std::io::Error::last_os_error());
    };
    // The collector is stopped: whatever the kernel lets through waits in the ring.
    signal(libc::SIGSTOP);
    flooder.run(&format!("flood {FLOOD} {}", flood.join(" ")));
    other.run(&format!("open {}", victim.to_str().unwrap()));
    signal(libc::SIGCONT);
    let mut sensor = sensor;
    let who = other.pid();
    let open = sensor.wait_for("the other user's open", EVENT_TIMEOUT, |e| {
        about(e, "model_file_opened", &victim) && pid(e) == Some(who)
    });
    assert_eq!(u64_of(&open["process"]["uid"]), u64::from(NOBODY));
    sensor.wait_for("the other user's model identified", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", &victim)
            && e["artifact_identified"]["artifact"]["format"] == "ARTIFACT_FORMAT_GGUF"
    });
    let flooding = flooder.pid();
    let lost = sensor.wait_for("the flood's drops, naming the flooder", EVENT_TIMEOUT, |e| {
        kind(e) == "events_lost"
            && e["events_lost"]["culprits"].as_array().is_some_and(|c| c.iter().any(|c| c["pid"] == flooding))
    });
    let l = &lost["events_lost"];
    assert_eq!(l["source"], "LOSS_SOURCE_KERNEL", "{lost:#}");
    let culprit = l["culprits"].as_array().unwrap().iter().find(|c| c["pid"] == flooding).unwrap();
    assert_eq!(culprit["comm"], "mw-worker", "{lost:#}");
    assert!(u64_of(&culprit["count"]) > 0 && u64_of(&l["by_kind"]["rate_limited"]) >= u64_of(&culprit["count"]));
    assert!(culprit["entity_id"].as_str().is_some_and(|id| !id.is_empty()), "{lost:#}");
    other.exit();
    flooder.exit();
    let events = sensor.stop();
    // Every flood open is delivered or counted: against the flooder, or as ring drops.
    let delivered = events.iter().filter(|e| kind(e) == "model_file_opened" && pid(e) == Some(flooding)).count() as u64;
    let counted: u64 = events
        .iter()
        .filter(|e| kind(e) == "events_lost")
        .flat_map(|e| e["events_lost"]["culprits"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["pid"] == flooding)
        .map(|c| u64_of(&c["count"]))
        .sum();
    let ring: u64 = events
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_KERNEL")
        .map(|e| u64_of(&e["events_lost"]["by_kind"]["file_open"]))
        .sum();
    assert!(delivered + counted + ring >= FLOOD as u64, "delivered {delivered}, rate-limited {counted}, ring {ring}");
}
