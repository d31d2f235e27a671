//! The local API end to end: `modelwatch tail` (the real binary) with server-side filters, a
//! stalled subscriber that must not slow anyone else, the JSON-lines sink, `status` counts and
//! replay of a capture with `tail --from`.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, binary, kind, make_file, open_close, pid, u64_of};
use serde_json::Value;

const FLOOD: usize = 20_000;
const MATCHING: usize = 50;
const CHUNK: usize = 500;

fn status(sock: &Path) -> Value {
    let out = Command::new(binary()).args(["status", "--format", "json", "--socket"]).arg(sock).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `modelwatch tail` child whose output lines are collected by a thread.
fn tail(sock: &Path, args: &[&str]) -> (Child, Arc<Mutex<Vec<Value>>>) {
    let mut child = Command::new(binary())
        .args(["tail", "--format", "json", "--socket"])
        .arg(sock)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(serde_json::from_str::<Value>(&l).expect("tail printed JSON"));
        }
    });
    (child, lines)
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tail_filters_stalled_subscribers_lose_alone_and_status_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let jsonl = dir.path().join("events.jsonl");
    let file = dir.path().join("w.mwapi");
    make_file(&file, b"", 8);
    // This process floods opens on purpose: the kernel's per-process rate limit is off, so that
    // every open reaches the subscribers under test.
    let sensor = RunningSensor::start(&format!(
        "[files]\nextensions = [\".mwapi\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\n\
         report_non_models = true\nfold_window_ms = 0\n\
         [output.jsonl]\npath = \"{}\"\n\
         [api]\nsocket = \"{}\"\nsubscriber_queue = 1024\n\
         [sensor]\nfile_events_per_sec = 0\n",
        jsonl.display(),
        sock.display()
    ));
    let me = std::process::id();
    let me_s = me.to_string();

    // A: filtered to model opens of this process. B: everything, and never read (stalled).
    let (mut a, a_lines) = tail(&sock, &["--kind", "model_file_opened", "--pid", &me_s]);
    let mut b = Command::new(binary())
        .args(["tail", "--format", "json", "--socket"])
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait("both subscribers connected", || status(&sock)["subscribers"].as_array().is_some_and(|s| s.len() == 2));

    // Another process opens one matching file: A must not print it (wrong pid).
    let cat = Command::new("cat").arg(&file).stdout(Stdio::null()).status().unwrap();
    assert!(cat.success());
    let started = Instant::now();
    for _ in 0..MATCHING {
        open_close(&file);
    }
    // The flood goes in chunks, each waited for on A: A is never more than a chunk behind,
    // while B (which never reads) overflows its queue many times over.
    let mut sent = MATCHING;
    for _ in 0..FLOOD / CHUNK {
        for _ in 0..CHUNK {
            open_close(&file);
        }
        sent += CHUNK;
        wait("A to keep up with the flood", || a_lines.lock().unwrap().len() >= sent);
    }
    let mine = MATCHING + FLOOD;
    wait("A to receive every matching event", || a_lines.lock().unwrap().len() >= mine);
    let a_latency = started.elapsed();

    // The JSONL sink has everything, in order, with no gap.
    let total_opens = mine + 1;
    wait("JSONL sink to catch up", || {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        text.lines().filter(|l| l.contains("\"model_file_opened\"")).count() >= total_opens
    });
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let recorded: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = recorded.iter().map(|e| u64_of(&e["seq"])).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "JSONL has a gap");
    let lost: Vec<&Value> = recorded.iter().filter(|e| kind(e) == "events_lost").collect();
    assert!(lost.is_empty(), "the JSONL sink lost events: {lost:?}; stderr:\n{}", sensor.stderr());

    // A printed exactly the events the sink recorded for this pid and kind, same seqs.
    let expected: Vec<u64> = recorded
        .iter()
        .filter(|e| kind(e) == "model_file_opened" && pid(e) == Some(me))
        .map(|e| u64_of(&e["seq"]))
        .collect();
    let got: Vec<u64> = a_lines.lock().unwrap().iter().map(|e| u64_of(&e["seq"])).collect();
    assert_eq!(got, expected);
    assert_eq!(got.len(), mine);

    // Status: counts match what was triggered; B is the one that lost events.
    let st = status(&sock);
    assert_eq!(u64_of(&st["events_by_kind"]["model_file_opened"]), total_opens as u64);
    let subs = st["subscribers"].as_array().unwrap();
    let dropped: Vec<u64> = subs.iter().map(|s| u64_of(&s["dropped"])).collect();
    assert!(dropped.iter().filter(|d| **d > 0).count() == 1, "exactly one subscriber dropped: {dropped:?}");
    assert!(st["sinks"].as_array().unwrap().iter().any(|s| s["name"].as_str().unwrap().starts_with("jsonl:")));

    // Now B reads: it has a prefix of the stream, then is told what it lost. The report rides
    // on the first event B's queue accepts after the gap, so events keep coming until it shows.
    let b_lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let b_sink = b_lines.clone();
    let b_out = b.stdout.take().unwrap();
    let b_reader = std::thread::spawn(move || {
        for line in BufReader::new(b_out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                b_sink.lock().unwrap().push(v);
            }
        }
    });
    wait("B to be told it lost events", || {
        open_close(&file);
        b_lines.lock().unwrap().iter().any(|e| kind(e) == "events_lost")
    });
    let _ = b.kill();
    let _ = b.wait();
    b_reader.join().unwrap();
    let b_events = std::mem::take(&mut *b_lines.lock().unwrap());
    let lost: u64 = b_events
        .iter()
        .filter(|e| kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_SUBSCRIBER")
        .map(|e| u64_of(&e["events_lost"]["count"]))
        .sum();
    assert!(lost > 0, "B was never told it lost events");
    let b_delivered = b_events.iter().filter(|e| kind(e) != "events_lost").count() as u64;
    let b_dropped = u64_of(&subs.iter().find(|s| u64_of(&s["dropped"]) > 0).unwrap()["dropped"]);
    assert!(b_delivered + b_dropped >= (total_opens as u64), "B: {b_delivered} delivered + {b_dropped} dropped");

    let _ = a.kill();
    let _ = a.wait();
    let events = sensor.stop();
    assert!(!events.is_empty());
    eprintln!("A received {mine} events {a_latency:?} after the first trigger while B was stalled");

    // Replay the capture: only the cat's open matches this filter.
    let cat_pid = recorded
        .iter()
        .find(|e| kind(e) == "model_file_opened" && e["process"]["comm"] == "cat")
        .and_then(pid)
        .expect("cat's open recorded");
    let out = Command::new(binary())
        .args(["tail", "--format", "json", "--kind", "model_file_opened", "--pid", &cat_pid.to_string(), "--from"])
        .arg(&jsonl)
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["process"]["comm"], "cat");
}

#[test]
fn replay_reports_lines_that_are_not_events() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    std::fs::write(
        &capture,
        "{\"seq\":\"1\",\"process_exit\":{\"exit_code\":3}}\nnot json at all\n{\"seq\":[1,2]}\n{\"seq\":\"4\",\"payload_from_the_future\":{}}\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["tail", "--format", "compact", "--color", "never", "--from"])
        .arg(&capture)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exit") && stdout.contains("code=3"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("capture.jsonl line 2: not a modelwatch event"), "{stderr}");
    assert!(stderr.contains("capture.jsonl line 3: not a modelwatch event"), "{stderr}");
    // An event of a kind a newer schema added is skipped and said so, not an error.
    assert!(stderr.contains("capture.jsonl line 4: an event of a kind this build does not know"), "{stderr}");
    assert!(stderr.contains("2 of 4 non-empty lines were not modelwatch events"), "{stderr}");
}
