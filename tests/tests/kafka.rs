//! The Kafka sink against a real Kafka-protocol broker (tansu, started here on 127.0.0.1): the
//! topic is read back by partition assignment and every message decoded as
//! `modelwatch.v1.Event`. Each scenario asserts exact counts by `event_id` and `seq`: a steady
//! stream, a broker outage (a fresh broker, the topic recreated), a SIGKILL mid-stream, a full
//! spool, a spool on a full tmpfs and a corrupt spool segment at start-up.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use modelwatch::proto::v1::{Event, LossSource, event::Payload};
use modelwatch_tests::{
    RunningSensor,
    delivery::{Broker, Consumed, free_port, read_spool, read_topic, spool_record_offsets},
    kind, make_file, open_close, real, u64_of,
};
use serde_json::Value;

const TOPIC: &str = "modelwatch.events";
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// Only opens of the test's own extension are reported (other activity on the machine still
/// makes process events): the tests of this file run at once, and one test's stream must not
/// flow into another's sink.
fn config(ext: &str, broker: &str, extra: &str) -> String {
    format!(
        "[files]\nextensions = [\"{ext}\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\n\
         report_non_models = true\nfold_window_ms = 0\n\
         [output.kafka]\nbrokers = [\"{broker}\"]\ntopic = \"{TOPIC}\"\ndelivery_timeout_ms = 3000\n{extra}"
    )
}

fn opens(file: &Path, n: usize) {
    for i in 0..n {
        open_close(file);
        if i % 50 == 49 {
            // A steady stream rather than one burst.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn opened_path(ev: &Event) -> Option<&str> {
    match &ev.payload {
        Some(Payload::ModelFileOpened(o)) => o.file.as_ref().map(|f| f.path.as_str()),
        _ => None,
    }
}

fn count_opens(msgs: &[Consumed], path: &str) -> usize {
    msgs.iter().filter(|m| opened_path(&m.event) == Some(path)).count()
}

fn ids(msgs: &[Consumed]) -> BTreeSet<String> {
    msgs.iter().map(|m| m.event.event_id.clone()).collect()
}

fn json_ids(events: &[Value]) -> BTreeSet<String> {
    events.iter().map(|e| e["event_id"].as_str().unwrap_or_default().to_owned()).collect()
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every loss the sink counted for `reason` has been reported in the stream and
/// everything the spool held by then is delivered or dropped; says what it saw when it gives
/// up. The spool is never empty for long: the sensor's own process events (the `status` calls
/// of this wait among them) keep arriving, so "drained" means drained up to a point.
fn wait_drained_and_reported(sensor: &RunningSensor, reason: &str) {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut written_when_reported = None;
    loop {
        let st = kafka_status(sensor);
        let reported = sink_losses(&sensor.events(), reason);
        let counted = u64_of(&st["spool_dropped"][reason]);
        if written_when_reported.is_none() && reported == counted {
            written_when_reported = Some(u64_of(&st["written"]));
        }
        // Records that never reached the spool (`spool_unwritable`) are not in `written`.
        let out = u64_of(&st["delivered"])
            + st["spool_dropped"]
                .as_object()
                .map_or(0, |m| m.iter().filter(|(r, _)| *r != "spool_unwritable").map(|(_, n)| u64_of(n)).sum());
        if written_when_reported.is_some_and(|w| out >= w)
            && st["spool_error"].as_str().unwrap_or_default().is_empty()
            && reported == counted
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the spool to drain and its {reason} losses to be reported: reported {reported}, status {st:#}\nstderr:\n{}",
            sensor.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The kafka sink's block of `status`.
fn kafka_status(sensor: &RunningSensor) -> Value {
    let st = sensor.status();
    st["sinks"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "kafka").cloned()).expect("kafka sink in status")
}

/// Sum of a reason over the stream's `events_lost` of source SINK.
fn sink_losses(events: &[Value], reason: &str) -> u64 {
    events
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_SINK")
        .map(|e| u64_of(&e["events_lost"]["by_kind"][reason]))
        .sum()
}

#[test]
fn a_steady_stream_is_delivered_whole_and_every_message_decodes() {
    let broker = Broker::start();
    broker.create_topic(TOPIC);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steady.mwksteady");
    make_file(&file, b"", 16);
    let path = real(&file);
    let sensor = RunningSensor::start(&config(".mwksteady", &broker.address(), ""));
    opens(&file, 2000);
    read_topic(broker.port, TOPIC, READ_TIMEOUT, |m| count_opens(m, &path) == 2000);
    let stdout = sensor.stop();
    let expected = json_ids(&stdout);
    let msgs = read_topic(broker.port, TOPIC, READ_TIMEOUT, |m| ids(m).is_superset(&expected));
    // Exactly the sensor's stream: nothing missing, nothing extra, nothing twice.
    assert_eq!(ids(&msgs), expected);
    assert_eq!(msgs.len(), expected.len(), "duplicates in a run without failures");
    assert_eq!(count_opens(&msgs, &path), 2000);
    let run_ids: BTreeSet<&str> = msgs.iter().map(|m| m.event.run_id.as_str()).collect();
    assert_eq!(run_ids.len(), 1, "{run_ids:?}");
    let seqs: Vec<u64> = msgs.iter().map(|m| m.event.seq).collect();
    assert_eq!(seqs, (1..=msgs.len() as u64).collect::<Vec<_>>(), "in order, dense");
    for m in &msgs {
        let host_id = &m.event.host.as_ref().expect("host").host_id;
        assert!(!host_id.is_empty());
        assert_eq!(m.key, host_id.as_bytes(), "key = host id");
        assert_eq!(m.headers["content-type"], "application/x-protobuf");
        assert_eq!(m.headers["modelwatch-schema"], "modelwatch.v1.Event");
        assert_eq!(m.headers["modelwatch-schema-version"], "1");
        assert_eq!(m.headers["modelwatch-event-id"], m.event.event_id);
        assert_eq!(m.headers["modelwatch-kind"], modelwatch::proto::kind_name(&m.event));
    }
    // The last event is the clean end of the run.
    let last = &msgs.last().unwrap().event;
    assert!(matches!(&last.payload, Some(Payload::SensorHealth(h)) if h.state == 4), "{last:?}");
}

#[test]
fn a_broker_outage_delays_delivery_and_loses_nothing() {
    let broker = Broker::start();
    let port = broker.port;
    broker.create_topic(TOPIC);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir.path().join(format!("{n}.mwkoutage"))).collect();
    for f in &files {
        make_file(f, b"", 16);
    }
    let paths: Vec<String> = files.iter().map(|f| real(f)).collect();
    // Only the opens (health and losses always pass): nothing else is in flight when the
    // broker goes, so what the test read before is what the old broker had.
    let sensor = RunningSensor::start(&config(".mwkoutage", &broker.address(), "kinds = [\"model_file_opened\"]\n"));
    opens(&files[0], 300);
    let before = read_topic(port, TOPIC, READ_TIMEOUT, |m| count_opens(m, &paths[0]) == 300);
    broker.stop();
    opens(&files[1], 300);
    wait("a failed delivery", READ_TIMEOUT, || u64_of(&kafka_status(&sensor)["retries"]) > 0);
    let st = kafka_status(&sensor);
    assert!(u64_of(&st["pending_events"]) >= 300, "{st:#}");
    assert!(!st["last_error"].as_str().unwrap_or_default().is_empty(), "{st:#}");
    // A fresh broker on the same address, the topic created again, while events keep coming.
    let broker = Broker::start_on(port);
    broker.create_topic(TOPIC);
    opens(&files[2], 300);
    let after =
        read_topic(port, TOPIC, READ_TIMEOUT, |m| count_opens(m, &paths[1]) >= 300 && count_opens(m, &paths[2]) >= 300);
    let stdout = sensor.stop();
    let all: Vec<Consumed> = before.into_iter().chain(after).collect();
    for p in &paths {
        let reported: BTreeSet<String> = stdout
            .iter()
            .filter(|e| kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == p.as_str())
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reported.len(), 300);
        let delivered: BTreeSet<String> = all
            .iter()
            .filter(|m| opened_path(&m.event) == Some(p.as_str()))
            .map(|m| m.event.event_id.clone())
            .collect();
        assert_eq!(delivered, reported, "{p}: every open delivered");
    }
}

#[test]
fn a_sigkill_mid_stream_loses_nothing_spooled_and_repeats_only_the_unacknowledged() {
    let broker = Broker::start();
    broker.create_topic(TOPIC);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("k.mwkkill");
    make_file(&file, b"", 16);
    let path = real(&file);
    let cfg = format!("{}[sensor]\nstate_dir = \"{}\"\n", config(".mwkkill", &broker.address(), ""), state.display());
    let sensor = RunningSensor::start(&cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let opener = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                open_close(&file);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    read_topic(broker.port, TOPIC, READ_TIMEOUT, |m| count_opens(m, &path) >= 500);
    let stdout_a = sensor.kill();
    let run_a = stdout_a[0]["run_id"].as_str().unwrap().to_owned();
    let (spooled, position) = read_spool(&state.join("spool/kafka"));
    let spooled_a: Vec<_> = spooled.iter().filter(|r| r.event.run_id == run_a).collect();
    let m = spooled_a.iter().map(|r| r.event.seq).max().expect("run A records in the spool");
    // The restarted sensor sends what the spool holds beyond the saved position.
    let sensor = RunningSensor::start(&cfg);
    let wanted: BTreeSet<String> = spooled_a.iter().map(|r| r.event.event_id.clone()).collect();
    read_topic(broker.port, TOPIC, READ_TIMEOUT, |msgs| ids(msgs).is_superset(&wanted));
    stop.store(true, Ordering::SeqCst);
    opener.join().unwrap();
    let stdout_b = sensor.stop();
    let expected_b = json_ids(&stdout_b);
    let msgs = read_topic(broker.port, TOPIC, READ_TIMEOUT, |msgs| ids(msgs).is_superset(&expected_b));
    // Run A: every spooled event arrived, and the run's sequence has no hole up to the last
    // spooled one.
    let seqs_a: BTreeSet<u64> = msgs.iter().filter(|c| c.event.run_id == run_a).map(|c| c.event.seq).collect();
    assert_eq!(seqs_a, (1..=m).collect::<BTreeSet<_>>(), "run A delivered 1..={m} without holes");
    // Duplicates come only from the window the killed sensor had not saved as delivered.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in &msgs {
        *seen.entry(c.event.event_id.as_str()).or_default() += 1;
    }
    let window: BTreeSet<&str> =
        spooled.iter().filter(|r| r.number >= position).map(|r| r.event.event_id.as_str()).collect();
    let dups: Vec<&str> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    assert!(dups.iter().all(|d| window.contains(d)), "duplicates outside the unacknowledged window: {dups:?}");
    let printed_a = stdout_a.iter().map(|e| u64_of(&e["seq"])).max().unwrap_or(0);
    eprintln!(
        "killed at seq {printed_a} printed, {m} spooled; {} duplicates (window {} records from position {position})",
        dups.len(),
        window.len()
    );
    assert!(ids(&msgs).is_superset(&expected_b), "run B delivered whole");
}

#[test]
fn a_full_spool_drops_the_oldest_and_reports_exactly_how_many() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cap.mwkcap");
    make_file(&file, b"", 16);
    let path = real(&file);
    // No broker yet: everything waits in a spool of 64 KiB (about 150 events).
    let cfg = config(".mwkcap", &format!("127.0.0.1:{port}"), "[output.kafka.spool]\nmax_size = \"64KiB\"\n");
    let mut sensor = RunningSensor::start(&cfg);
    opens(&file, 3000);
    sensor.wait_until("the opens on stdout", READ_TIMEOUT, |evs| {
        evs.iter()
            .filter(|e| kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == path.as_str())
            .count()
            == 3000
    });
    wait("spool evictions", READ_TIMEOUT, || u64_of(&kafka_status(&sensor)["spool_dropped"]["spool_full"]) > 0);
    let broker = Broker::start_on(port);
    broker.create_topic(TOPIC);
    // Everything left is delivered, and every eviction has been reported in the stream.
    wait_drained_and_reported(&sensor, "spool_full");
    let stdout = sensor.events();
    let reported = sink_losses(&stdout, "spool_full");
    let run = stdout[0]["run_id"].as_str().unwrap().to_owned();
    // The stream up to the last report (which reached Kafka too).
    let last_report = stdout
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_SINK")
        .map(|e| u64_of(&e["seq"]))
        .max()
        .unwrap();
    let msgs = read_topic(port, TOPIC, READ_TIMEOUT, |m| m.iter().any(|c| c.event.seq >= last_report));
    let delivered: BTreeSet<u64> = msgs.iter().filter(|c| c.event.run_id == run).map(|c| c.event.seq).collect();
    let missing: Vec<u64> = (1..=last_report).filter(|s| !delivered.contains(s)).collect();
    let subscriber_lost: u64 = msgs
        .iter()
        .filter_map(|c| match &c.event.payload {
            Some(Payload::EventsLost(l)) if l.source == LossSource::Subscriber as i32 => Some(l.count),
            _ => None,
        })
        .sum();
    assert!(reported > 0);
    assert_eq!(
        missing.len() as u64,
        reported + subscriber_lost,
        "missing seqs {}..{}",
        missing[0],
        missing[missing.len() - 1]
    );
    // The oldest went: what was dropped precedes what the spool still held at the end.
    let newest_missing = *missing.last().unwrap();
    let opens_delivered: Vec<u64> =
        msgs.iter().filter(|c| opened_path(&c.event) == Some(path.as_str())).map(|c| c.event.seq).collect();
    assert!(opens_delivered.iter().rev().take(100).all(|s| *s > newest_missing), "the newest opens were kept");
    sensor.stop();
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0750"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_spool_on_a_full_disk_degrades_health_counts_losses_and_the_sensor_keeps_running() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool, "96k");
    let file = dir.path().join("full.mwkfull");
    make_file(&file, b"", 16);
    let later = dir.path().join("later.mwkfull");
    make_file(&later, b"", 16);
    // Only the opens (with health and losses) go to this sink: once the test stops opening, the
    // spool stops growing, so the disk stays usable after the broker is back (a disk smaller than
    // one segment fills again under a steady stream).
    let cfg = config(
        ".mwkfull",
        &format!("127.0.0.1:{port}"),
        &format!("kinds = [\"model_file_opened\"]\n[output.kafka.spool]\ndir = \"{}\"\n", spool.display()),
    );
    let mut sensor = RunningSensor::start(&cfg);
    let mut n = 0;
    while kafka_status(&sensor)["spool_error"].as_str().unwrap_or_default().is_empty() {
        assert!(n < 20_000, "the spool never filled the tmpfs");
        opens(&file, 200);
        n += 200;
    }
    let degraded = sensor.wait_for("a health event about the spool", READ_TIMEOUT, |e| {
        kind(e) == "sensor_health"
            && e["sensor_health"]["state"] == "HEALTH_STATE_DEGRADED"
            && e["sensor_health"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sink kafka: spool") && m.contains("unwritable"))
    });
    assert!(degraded["sensor_health"]["message"].as_str().unwrap().contains("No space left on device"), "{degraded:#}");
    sensor.wait_for("the losses reported", READ_TIMEOUT, |e| {
        kind(e) == "events_lost" && u64_of(&e["events_lost"]["by_kind"]["spool_unwritable"]) > 0
    });
    // Still running, still reporting.
    opens(&later, 50);
    let later_path = real(&later);
    sensor.wait_until("opens after the disk filled", READ_TIMEOUT, |evs| {
        evs.iter().filter(|e| e["model_file_opened"]["file"]["path"] == later_path.as_str()).count() == 50
    });
    // The destination comes: delivery frees the spool and writing resumes.
    let broker = Broker::start_on(port);
    broker.create_topic(TOPIC);
    sensor.wait_for("the spool writable again", READ_TIMEOUT, |e| {
        kind(e) == "sensor_health"
            && e["sensor_health"]["message"].as_str().is_some_and(|m| m.contains("writable again"))
    });
    wait_drained_and_reported(&sensor, "spool_unwritable");
    let stdout = sensor.events();
    let run = stdout[0]["run_id"].as_str().unwrap().to_owned();
    let last_report = stdout
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_SINK")
        .map(|e| u64_of(&e["seq"]))
        .max()
        .unwrap();
    let msgs = read_topic(port, TOPIC, READ_TIMEOUT, |m| m.iter().any(|c| c.event.seq >= last_report));
    let delivered: BTreeSet<String> =
        msgs.iter().filter(|c| c.event.run_id == run).map(|c| c.event.event_id.clone()).collect();
    // What the sink selects, up to the last report: each event delivered or counted.
    let selected: Vec<&Value> = stdout
        .iter()
        .filter(|e| {
            ["model_file_opened", "sensor_health", "events_lost"].contains(&kind(e)) && u64_of(&e["seq"]) <= last_report
        })
        .collect();
    let missing = selected.iter().filter(|e| !delivered.contains(e["event_id"].as_str().unwrap())).count() as u64;
    assert!(missing > 0);
    assert_eq!(missing, sink_losses(&stdout, "spool_unwritable"), "every event not delivered was counted");
    sensor.stop();
}

#[test]
fn a_corrupt_spool_segment_is_cut_at_the_last_good_record_and_counted() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("c.mwkcorrupt");
    make_file(&file, b"", 16);
    let path = real(&file);
    let cfg = format!(
        "{}[sensor]\nstate_dir = \"{}\"\n",
        config(".mwkcorrupt", &format!("127.0.0.1:{port}"), ""),
        state.display()
    );
    // Run A spools while the broker is away, and stops.
    let mut sensor = RunningSensor::start(&cfg);
    opens(&file, 200);
    sensor.wait_until("the opens on stdout", READ_TIMEOUT, |evs| {
        evs.iter().filter(|e| e["model_file_opened"]["file"]["path"] == path.as_str()).count() == 200
    });
    sensor.stop();
    let spool = state.join("spool/kafka");
    let (records, _) = read_spool(&spool);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let offsets = spool_record_offsets(last);
    let first_number: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // Flip a byte in the payload of a record in the middle of the newest segment.
    let k = offsets.len() / 2;
    let mut bytes = std::fs::read(last).unwrap();
    bytes[offsets[k].0 + 16 + 1] ^= 0x20;
    std::fs::write(last, &bytes).unwrap();
    let cut = (offsets.len() - k) as u64;
    let good: BTreeSet<String> =
        records.iter().filter(|r| r.number < first_number + k as u64).map(|r| r.event.event_id.clone()).collect();
    let bad: BTreeSet<String> =
        records.iter().filter(|r| r.number >= first_number + k as u64).map(|r| r.event.event_id.clone()).collect();
    assert_eq!(bad.len() as u64, cut);
    // Run B finds it at start, cuts it, counts it, and delivers the rest.
    let broker = Broker::start_on(port);
    broker.create_topic(TOPIC);
    let mut sensor = RunningSensor::start(&cfg);
    let lost = sensor.wait_for("the corrupt records reported", READ_TIMEOUT, |e| {
        kind(e) == "events_lost" && e["events_lost"]["by_kind"]["spool_corrupt"].is_string()
    });
    assert_eq!(u64_of(&lost["events_lost"]["by_kind"]["spool_corrupt"]), cut, "{lost:#}");
    assert_eq!(lost["events_lost"]["source"], "LOSS_SOURCE_SINK");
    let lost_id = lost["event_id"].as_str().unwrap().to_owned();
    let msgs = read_topic(port, TOPIC, READ_TIMEOUT, |m| ids(m).is_superset(&good) && ids(m).contains(&lost_id));
    let got = ids(&msgs);
    assert!(got.is_disjoint(&bad), "cut records must not be sent");
    sensor.stop();
    let counts: BTreeMap<&str, usize> = BTreeMap::from([("good", good.len()), ("cut", bad.len())]);
    eprintln!("spool records: {counts:?}");
}
