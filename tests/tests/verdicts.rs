//! A "not a model" verdict survives a sensor restart: it is persisted in the state directory
//! with the file's content version, so the next sensor answers the same version's open from
//! it without reading the file (and marks the kernel as for a fresh verdict), while a rewrite
//! — same size, new content — is a new version, analysed afresh.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, open_close, u64_of};
use serde_json::Value;

/// Only this test's extension is a candidate, and only by name: nothing else on the machine
/// reaches the candidate gate, so its counters are this test's.
fn config(state_dir: &Path) -> String {
    format!(
        "[sensor]\nstate_dir = \"{}\"\n\
         [files]\nextensions = [\".mwverdict\"]\nmodel_dirs = []\nsize_threshold = \"1024GiB\"\n",
        state_dir.display()
    )
}

/// (candidates rejected by extension, verdicts served from the persisted cache).
fn counts(st: &Value) -> (u64, u64) {
    (u64_of(&st["candidates_rejected"]["extension"]), u64_of(&st["verdicts_from_cache"]))
}

/// Polls the sensor's status until `done` holds (the status view is refreshed at each drain
/// tick); panics with the last status after [`EVENT_TIMEOUT`].
fn wait_status(sensor: &RunningSensor, what: &str, done: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let st = sensor.status();
        let c = counts(&st);
        if done(c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: (rejected, from cache) = {c:?}; status {st:#}\nstderr:\n{}",
            sensor.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_not_a_model_verdict_survives_a_restart_until_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let notes = dir.path().join("notes.mwverdict");
    std::fs::write(&notes, "meeting notes, not a model\n").unwrap();

    let sensor = RunningSensor::start(&config(&state));
    open_close(&notes);
    let c = wait_status(&sensor, "the text file rejected", |(rejected, _)| rejected >= 1);
    assert_eq!(c, (1, 0), "judged by reading it: nothing to serve from a cache yet");
    sensor.stop();

    // A new sensor on the same state directory: its kernel holds no mark, so the open is a
    // candidate again, and the verdict comes from the persisted cache.
    let sensor = RunningSensor::start(&config(&state));
    open_close(&notes);
    let c = wait_status(&sensor, "the verdict served from the persisted cache", |(rejected, _)| rejected >= 1);
    assert_eq!(c, (1, 1), "rejected on the persisted verdict");
    // The cached verdict marked the kernel: the next open of this version is filtered there.
    open_close(&notes);

    // Same size, new content: another version (its ctime moved), so it is read and judged again.
    std::fs::write(&notes, "meeting notes, not a modem\n").unwrap();
    open_close(&notes);
    let c = wait_status(&sensor, "the rewritten file rejected", |(rejected, _)| rejected >= 2);
    assert_eq!(c, (2, 1), "analysed afresh, not served from the cache");
    sensor.stop();
}
