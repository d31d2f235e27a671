//! The Prometheus endpoint of the real sensor: model-file opens this test makes show up as
//! exact counts, every probe's gauge says attached, the sinks' counters are there (a syslog
//! sink whose receiver is down: nothing delivered, everything pending), the scrape passes
//! `promtool check metrics`, and other paths and methods are refused.
//!
//! Alone in its own test binary so no other test's events share the sensor's counters.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use modelwatch_tests::{RunningSensor, delivery::free_port, kind, make_file, open_close, pid, real};

const OPENS: usize = 7;

/// One request on its own connection (the endpoint closes after each): (status line, body).
fn http(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

/// The samples of a scrape: `name{labels}` to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("malformed sample line: {l}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: `cargo xtask setup` installs it (Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\nscrape:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_endpoint_shows_exact_counts_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.mwmetrics");
    make_file(&file, b"not a model, reported anyway", 4096);
    let port = free_port();
    // Nobody listens there: the syslog sink spools and retries.
    let syslog_port = free_port();
    // Only our extension is reportable; every open is its own event, content or not.
    let mut sensor = RunningSensor::start(&format!(
        "[files]\nextensions = [\".mwmetrics\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\n\
         suppress_known_non_models = false\nreport_non_models = true\nfold_window_ms = 0\n\
         runtime_process_opens_per_sec = 0\n\
         [output.syslog]\naddress = \"127.0.0.1:{syslog_port}\"\nkinds = [\"model_file_opened\"]\n\
         [metrics]\naddress = \"127.0.0.1:{port}\"\n"
    ));
    let me = std::process::id();
    let path = real(&file);
    let mine = |e: &serde_json::Value| {
        kind(e) == "model_file_opened" && pid(e) == Some(me) && e["model_file_opened"]["file"]["path"] == path.as_str()
    };
    for _ in 0..OPENS {
        open_close(&file);
    }
    sensor.wait_until("our opens", Duration::from_secs(30), |evs| evs.iter().filter(|e| mine(e)).count() >= OPENS);

    let (status, text) = http(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    let m = samples(&text);
    let get = |series: &str| -> f64 { *m.get(series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}")) };

    // Every model-file open the sensor published was one of ours (only our extension is
    // reportable); anyone else's would be named here.
    let others: Vec<_> =
        sensor.matching(|e| kind(e) == "model_file_opened" && !mine(e)).iter().map(ToString::to_string).collect();
    assert_eq!(get("modelwatch_events_total{kind=\"model_file_opened\"}"), OPENS as f64, "others: {others:?}");

    // Every probe is attached, and they are the ones the API names.
    let st = sensor.status();
    let attached: BTreeSet<&str> =
        st["probes_attached"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(!attached.is_empty(), "{st:#}");
    let gauges: BTreeMap<&str, f64> = m
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("modelwatch_probe_attached{probe=\"")?.strip_suffix("\"}")?, *v)))
        .collect();
    assert_eq!(gauges.keys().copied().collect::<BTreeSet<_>>(), attached);
    assert!(gauges.values().all(|v| *v == 1.0), "{gauges:?}");

    let info = format!(
        "modelwatch_build_info{{version=\"{}\",schema=\"modelwatch.v1\",backend=\"tracepoint\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&info), 1.0);
    assert_eq!(get("modelwatch_sessions_active"), 0.0);
    assert!(get("modelwatch_process_resident_memory_bytes") > 0.0);
    assert!(get("modelwatch_process_cpu_seconds_total") > 0.0, "loading the probes takes CPU");
    assert_eq!(get("modelwatch_sink_failed_total{sink=\"stdout\"}"), 0.0);
    assert!(get("modelwatch_sink_written_total{sink=\"stdout\"}") >= OPENS as f64);
    // The syslog receiver is down: nothing delivered, our opens wait in the spool.
    assert_eq!(get("modelwatch_sink_delivered_total{sink=\"syslog\"}"), 0.0);
    assert!(get("modelwatch_sink_pending_events{sink=\"syslog\"}") >= OPENS as f64, "{text}");
    assert!(get("modelwatch_sink_spool_bytes{sink=\"syslog\"}") > 0.0, "{text}");
    assert_eq!(get("modelwatch_sink_dropped_total{sink=\"syslog\",reason=\"spool_full\"}"), 0.0);
    // Every family a dashboard relies on is there from the start.
    for family in [
        "modelwatch_events_lost_total{source=\"kernel\",reason=\"file_open\"}",
        "modelwatch_events_lost_total{source=\"analyzer\",reason=\"lookup_dropped\"}",
        "modelwatch_kernel_ring_dropped_total{kind=\"file_open\"}",
        "modelwatch_analyzer_queue_depth",
        "modelwatch_start_time_seconds",
    ] {
        get(family);
    }
    promtool_check(&text);

    // OpenMetrics when asked for it.
    let (status, om) =
        http(port, "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.lines().any(|l| l == "# TYPE modelwatch_events counter"), "{om}");

    let (status, _) = http(port, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(port, "DELETE /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _) = http(port, "\u{1}\u{2} not http\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    let events = sensor.stop();
    assert_eq!(events.iter().filter(|e| mine(e)).count(), OPENS);
}

#[test]
fn a_taken_address_stops_the_start_with_a_clear_error() {
    modelwatch_tests::require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("modelwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nstate_dir = \"{}\"\n[api]\nsocket = \"{}\"\n[metrics]\naddress = \"127.0.0.1:{port}\"\n",
            dir.path().join("state").display(),
            dir.path().join("api.sock").display()
        ),
    )
    .unwrap();
    let out = Command::new(modelwatch_tests::binary()).args(["run", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("metrics endpoint: cannot listen on 127.0.0.1:{port}")) && stderr.contains("in use"),
        "{stderr}"
    );
}
