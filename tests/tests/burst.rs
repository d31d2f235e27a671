//! Nothing is lost silently: under a burst that overflows a deliberately small ring buffer,
//! every reportable open is either delivered or counted as dropped.
//!
//! Alone in its own test binary so no other test's events share the sensor's counters.

use modelwatch_tests::{Sensor, kind, make_file, open_close, real, u64_of};

const OPENS: usize = 10_000;

#[test]
fn burst_of_model_opens_is_delivered_or_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.mwburst");
    make_file(&file, b"", 16);
    // Only our extension is reportable, and the ring holds only a few hundred records.
    let sensor = Sensor::start(
        "[files]\nextensions = [\".mwburst\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\n\
         [sensor]\nring_buffer_kib = 64\nstate_dir = \"/tmp/modelwatch-burst-state\"\n",
    );
    for _ in 0..OPENS {
        open_close(&file);
    }
    let path = real(&file);
    let events = sensor.stop();
    let delivered = events
        .iter()
        .filter(|e| kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == path.as_str())
        .count() as u64;
    let dropped: u64 = events
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_KERNEL")
        .map(|e| u64_of(&e["events_lost"]["by_kind"]["file_open"]))
        .sum();
    assert_eq!(delivered + dropped, OPENS as u64, "delivered {delivered}, dropped {dropped}");
    // The stream's sequence numbers have no gaps: loss happened in the kernel, and was counted.
    let seqs: Vec<u64> = events.iter().map(|e| u64_of(&e["seq"])).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
}
