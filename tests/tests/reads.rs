//! Reads of a model file (read(2) and its kin) are counted in the kernel per process and file,
//! and reported as `model_read` (`via: "read"`): the evidence of a model loaded into memory
//! without a mapping. Reads of a file that is no model are not reported.

use std::io::Read as _;

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, pid, real, tiny_gguf, u64_of};
use serde_json::Value;

fn read_all_in_chunks(path: &std::path::Path) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = [0u8; 7];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).unwrap();
        if got == 0 {
            return n;
        }
        n += got as u64;
    }
}

#[test]
fn reads_of_a_model_are_counted_and_reads_of_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("read-me.gguf");
    let bytes = tiny_gguf();
    std::fs::write(&model, &bytes).unwrap();
    // Named like a model, but text: judged not a model, so its reads are not model events.
    let fake = dir.path().join("notes.gguf");
    std::fs::write(&fake, "not a model at all, just some notes\n".repeat(20)).unwrap();
    let mut sensor = RunningSensor::start("[devices]\ndrain_interval_ms = 100\n");
    let me = std::process::id();

    assert_eq!(read_all_in_chunks(&model), bytes.len() as u64);
    assert_eq!(read_all_in_chunks(&fake), 20 * 36);
    let path = real(&model);
    let about =
        |e: &Value, p: &str| kind(e) == "model_read" && e["model_read"]["file"]["path"] == p && pid(e) == Some(me);
    sensor.wait_until("every byte of the model read", EVENT_TIMEOUT, |evs| {
        evs.iter().filter(|e| about(e, &path)).map(|e| u64_of(&e["model_read"]["bytes"])).sum::<u64>()
            == bytes.len() as u64
    });
    // The model's identification is also what lets the fake's verdict be in by now.
    sensor.wait_for("the model's identification", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && e["artifact_identified"]["file"]["path"] == path.as_str()
    });
    let events = sensor.stop();
    let reads: Vec<&Value> = events.iter().filter(|e| about(e, &path)).collect();
    assert!(reads.iter().all(|e| e["model_read"]["via"] == "read"), "{reads:#?}");
    assert_eq!(reads[0]["model_read"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF", "{:#}", reads[0]);
    let fake_path = real(&fake);
    assert!(!events.iter().any(|e| about(e, &fake_path)), "no model_read for a file that is no model");
}
