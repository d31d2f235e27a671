//! Nothing is lost silently: the collector is stopped while a burst overflows a deliberately
//! small ring buffer, and every reportable open is then either delivered or counted as dropped
//! (by the ring, or by the process's rate limit).
//!
//! Alone in its own test binary so no other test's events share the sensor's counters.

use modelwatch_tests::{RunningSensor, kind, make_file, open_close, real, u64_of};

const OPENS: usize = 10_000;

#[test]
fn burst_of_model_opens_is_delivered_or_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.mwburst");
    make_file(&file, b"", 16);
    // Only our extension is reportable, and the ring holds only a few hundred records.
    let sensor = RunningSensor::start(
        "[files]\nextensions = [\".mwburst\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\nreport_non_models = true\n\
         [sensor]\nring_buffer_kib = 64\n",
    );
    // Stopped, the collector cannot drain: the ring fills after a few hundred records and the
    // rest must show up in the kernel's drop counters.
    let stop = |sig| {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid() as i32, sig) }, 0, "{}", std::io::Error::last_os_error());
    };
    stop(libc::SIGSTOP);
    for _ in 0..OPENS {
        open_close(&file);
    }
    stop(libc::SIGCONT);
    let path = real(&file);
    let events = sensor.stop();
    // Opens of one file by one process close together are folded into one event (`repeats`).
    let delivered: u64 = events
        .iter()
        .filter(|e| kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == path.as_str())
        .map(|e| 1 + u64_of(&e["model_file_opened"]["repeats"]))
        .sum();
    let kernel_lost = |what: &str| -> u64 {
        events
            .iter()
            .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_KERNEL")
            .map(|e| u64_of(&e["events_lost"]["by_kind"][what]))
            .sum()
    };
    let (dropped, limited) = (kernel_lost("file_open"), kernel_lost("rate_limited"));
    assert!(dropped > 0 && delivered > 0, "the ring must have overflowed: delivered {delivered}, dropped {dropped}");
    // The rate limit holds this process back too (other processes' drops would be charged to
    // them, but only this test's opens are reportable here).
    assert_eq!(
        delivered + dropped + limited,
        OPENS as u64,
        "delivered {delivered}, dropped {dropped}, limited {limited}"
    );
    // The stream's sequence numbers have no gaps: loss happened in the kernel, and was counted.
    let seqs: Vec<u64> = events.iter().map(|e| u64_of(&e["seq"])).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
}
