//! The syslog sink against rsyslog (started here on 127.0.0.1, writing what it receives to a
//! file): RFC 5424 over TCP with octet counting, an outage of the receiver while events keep
//! coming, TLS with a client certificate (certificates made by the test), and OCSF messages.
//! Exact by `event_id`.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use modelwatch_tests::{
    RunningSensor,
    delivery::{Certs, Rsyslog},
    kind, make_file, open_close, real, u64_of, validate_ocsf,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Only opens of our own extension, and only opens go to syslog (health and losses always
/// pass): nothing else is in flight when the receiver is stopped.
fn config(address: &str, extra: &str) -> String {
    format!(
        "[files]\nextensions = [\".mwsyslog\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\n\
         report_non_models = true\nfold_window_ms = 0\n\
         [output.syslog]\naddress = \"{address}\"\nkinds = [\"model_file_opened\"]\n{extra}"
    )
}

fn opens(file: &Path, n: usize) {
    for i in 0..n {
        open_close(file);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The events received by rsyslog, parsed: every line must be ours and well formed.
fn received(r: &Rsyslog) -> Vec<Value> {
    r.received()
        .into_iter()
        .map(|(app, msgid, sd, msg)| {
            assert_eq!(app, "modelwatch");
            let ev: Value = serde_json::from_str(&msg).unwrap_or_else(|e| panic!("message is not JSON ({e}): {msg}"));
            assert_eq!(msgid, kind(&ev), "MSGID is the kind");
            let id = ev["event_id"].as_str().unwrap();
            let severity = ev["severity"].as_str().unwrap().trim_start_matches("SEVERITY_").to_ascii_lowercase();
            let expected = format!(
                "[modelwatch@32473 kind=\"{}\" severity=\"{severity}\" event_id=\"{id}\" run_id=\"{}\" seq=\"{}\"]",
                kind(&ev),
                ev["run_id"].as_str().unwrap(),
                u64_of(&ev["seq"])
            );
            assert_eq!(sd, expected);
            ev
        })
        .collect()
}

fn opens_of(events: &[Value], path: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == path)
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the sink sends: every event the filter selects, health and losses.
fn selected(stdout: &[Value]) -> BTreeSet<String> {
    stdout
        .iter()
        .filter(|e| ["model_file_opened", "sensor_health", "events_lost"].contains(&kind(e)))
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn syslog_over_tcp_delivers_every_event_through_an_outage_of_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::start(dir.path(), None);
    let files: Vec<_> = ["a", "b", "c"].iter().map(|n| dir.path().join(format!("{n}.mwsyslog"))).collect();
    for f in &files {
        make_file(f, b"", 16);
    }
    let paths: Vec<String> = files.iter().map(|f| real(f)).collect();
    let sensor = RunningSensor::start(&config(&format!("127.0.0.1:{}", rsyslog.port), "transport = \"tcp\"\n"));
    opens(&files[0], 300);
    wait("the first opens at rsyslog", || opens_of(&received(&rsyslog), &paths[0]).len() == 300);
    rsyslog.stop();
    opens(&files[1], 300);
    wait("a failed delivery", || {
        let st = sensor.status();
        st["sinks"].as_array().unwrap().iter().any(|s| s["name"] == "syslog" && u64_of(&s["retries"]) > 0)
    });
    rsyslog.restart();
    opens(&files[2], 300);
    wait("every open at rsyslog", || {
        let got = received(&rsyslog);
        opens_of(&got, &paths[1]).len() == 300 && opens_of(&got, &paths[2]).len() == 300
    });
    let stdout = sensor.stop();
    let expected = selected(&stdout);
    wait("the whole stream at rsyslog", || {
        let got: BTreeSet<String> =
            received(&rsyslog).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
        got.is_superset(&expected)
    });
    let got = received(&rsyslog);
    for p in &paths {
        assert_eq!(opens_of(&got, p), opens_of(&stdout, p), "{p}");
    }
    let ids: BTreeSet<String> = got.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, expected, "exactly the selected stream");
}

#[test]
fn syslog_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let rsyslog = Rsyslog::start(dir.path(), Some(&certs));
    let file = dir.path().join("tls.mwsyslog");
    make_file(&file, b"", 16);
    let path = real(&file);
    let tls = format!(
        "transport = \"tls\"\n[output.syslog.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let sensor = RunningSensor::start(&config(&format!("127.0.0.1:{}", rsyslog.port), &tls));
    opens(&file, 500);
    wait("every open at rsyslog over TLS", || opens_of(&received(&rsyslog), &path).len() == 500);
    let stdout = sensor.stop();
    let expected = selected(&stdout);
    wait("the whole stream at rsyslog", || {
        let got: BTreeSet<String> =
            received(&rsyslog).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
        got.is_superset(&expected)
    });
    let got = received(&rsyslog);
    assert_eq!(opens_of(&got, &path), opens_of(&stdout, &path));
    assert_eq!(got.len(), expected.len(), "nothing twice");
}

#[test]
fn syslog_carries_valid_ocsf_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let file = dir.path().join("ocsf.mwsyslog");
    make_file(&file, b"", 16);
    let path = real(&file);
    let sensor = RunningSensor::start(&config(
        &format!("127.0.0.1:{}", rsyslog.port),
        "transport = \"tcp\"\nformat = \"ocsf\"\n",
    ));
    opens(&file, 50);
    // In OCSF the event id is `metadata.uid` and the file is `file.path`; the structured data
    // still names the modelwatch kind and id, so a receiver can route without parsing the body.
    let ocsf_opens = |r: &Rsyslog| -> BTreeSet<String> {
        r.received()
            .into_iter()
            .filter(|(_, msgid, _, _)| msgid == "model_file_opened")
            .filter_map(|(_, _, sd, msg)| {
                let ev: Value = serde_json::from_str(&msg).unwrap_or_else(|e| panic!("not JSON ({e}): {msg}"));
                let id = ev["metadata"]["uid"].as_str().unwrap().to_owned();
                assert!(sd.contains(&format!("event_id=\"{id}\"")), "{sd} names {id}");
                (ev["file"]["path"] == path.as_str()).then_some(id)
            })
            .collect()
    };
    wait("every open at rsyslog, in OCSF", || ocsf_opens(&rsyslog).len() == 50);
    let stdout = sensor.stop();
    assert_eq!(ocsf_opens(&rsyslog), opens_of(&stdout, &path), "the same events, by id");
    let bodies: Vec<Value> =
        rsyslog.received().into_iter().map(|(_, _, _, msg)| serde_json::from_str(&msg).unwrap()).collect();
    let report = validate_ocsf(&bodies);
    assert_eq!(report.trim_end(), format!("ocsf: {} valid, 0 invalid, 0 unknown class", bodies.len()), "{report}");
}
