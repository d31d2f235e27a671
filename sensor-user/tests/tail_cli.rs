//! `modelwatch tail --from FILE`, the real binary, as a new user meets it: its options, what
//! it says about lines that are not events, its filters and the compact line. No root and no
//! sensor needed.

use std::process::Command;

fn modelwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelwatch"))
        .args(args)
        .env("MODELWATCH_LOG", "error")
        .output()
        .expect("run modelwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A capture: two processes, one inference session of process 7, times on 2020-12-04 (UTC), long before any run of this test.
fn capture(dir: &tempfile::TempDir, extra: &str) -> String {
    let p = |pid: u32, uid: u32, user: &str, cgroup: &str, container: &str| {
        serde_json::json!({
            "pid": pid, "entity_id": format!("e{pid}"), "comm": format!("proc{pid}"), "uid": uid,
            "user": user, "cgroup_id": cgroup, "container_id": container
        })
    };
    let alice = p(7, 1000, "alice", "4242", "");
    let bob = p(8, 1001, "bob", "5151", "c0ffee0123456789abcdef");
    let ev = |secs: u32, process: &serde_json::Value, payload: serde_json::Value| {
        let mut v = serde_json::json!({ "event_time": format!("2020-12-04T13:{:02}:{:02}.250Z", secs / 60, secs % 60), "process": process });
        for (k, x) in payload.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    };
    let lines = [
        ev(0, &alice, serde_json::json!({"model_file_opened": {"file": {"path": "/m/early.gguf"}, "access": "read"}})),
        ev(60, &alice, serde_json::json!({"session_started": {"session_id": "abc12345-0000", "confidence": 0.9}})),
        ev(61, &alice, serde_json::json!({"model_file_opened": {"file": {"path": "/m/alice.gguf"}, "access": "read"}})),
        ev(62, &bob, serde_json::json!({"model_file_opened": {"file": {"path": "/m/bob.gguf"}, "access": "read"}})),
        ev(120, &alice, serde_json::json!({"session_ended": {"session_id": "abc12345-0000"}})),
        ev(121, &alice, serde_json::json!({"process_exit": {"exit_code": 0}})),
    ];
    let path = dir.path().join("capture.jsonl");
    std::fs::write(&path, format!("{}\n{extra}", lines.join("\n"))).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn dash_f_is_not_format_and_text_is_compact() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(&dir, "");
    let (code, _, err) = modelwatch(&["tail", "-f", "json", "--from", &cap]);
    assert_eq!(code, 2, "-f is a usage error: {err}");
    let (code, text, err) = modelwatch(&["tail", "--format", "text", "--color", "never", "--from", &cap]);
    assert_eq!(code, 0, "{err}");
    let (_, compact, _) = modelwatch(&["tail", "--format", "compact", "--color", "never", "--from", &cap]);
    assert_eq!(text, compact);
    let (code, json, err) = modelwatch(&["tail", "--format", "json", "--from", &cap]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json.lines().count(), 6);
}

#[test]
fn kinds_are_listed_and_a_wrong_one_is_named() {
    let (code, help, _) = modelwatch(&["tail", "--help"]);
    assert_eq!(code, 0);
    for k in ["model_file_opened", "session_started", "accelerator_activity", "events_lost"] {
        assert!(help.contains(k), "{k} not in tail --help:\n{help}");
    }
    let (code, _, err) = modelwatch(&["tail", "--kind", "model_open", "--from", "/dev/null"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("model_open") && err.contains("model_file_opened"), "{err}");
}

#[test]
fn lines_that_are_not_events_are_named_counted_and_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(&dir, "{\"hello\":\"world\"}\n\nnot json\n");
    let (code, out, err) = modelwatch(&["tail", "--color", "never", "--from", &cap]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out.lines().count(), 6, "only the events are printed:\n{out}");
    assert!(err.contains("capture.jsonl line 7: not a modelwatch event: no event kind"), "{err}");
    assert!(err.contains("capture.jsonl line 9: not a modelwatch event: expected"), "{err}");
    assert!(err.contains("2 of 8 non-empty lines were not modelwatch events"), "{err}");
    let (_, help, _) = modelwatch(&["tail", "--help"]);
    assert!(help.contains("exit code 1"), "{help}");
}

fn shown(args: &[&str], cap: &str) -> Vec<String> {
    let mut a = vec!["tail", "--format", "json", "--from", cap];
    a.extend_from_slice(args);
    let (code, out, err) = modelwatch(&a);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kind = v.as_object().unwrap().keys().find(|k| k.contains('_') && *k != "event_time").unwrap().clone();
            format!("{}:{kind}", v["process"]["pid"])
        })
        .collect()
}

#[test]
fn since_user_session_and_container_filters() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(&dir, "");
    let all = shown(&[], &cap);
    assert_eq!(all.len(), 6);
    assert_eq!(shown(&["--since", "2020-12-04T13:02:00Z"], &cap), ["7:session_ended", "7:process_exit"]);
    assert_eq!(shown(&["--since", "1h"], &cap), Vec::<String>::new(), "the capture is older than an hour");
    assert_eq!(shown(&["--since", "100000d"], &cap), all);
    assert_eq!(shown(&["--user", "bob"], &cap), ["8:model_file_opened"]);
    assert_eq!(shown(&["--user", "1001"], &cap), ["8:model_file_opened"]);
    assert_eq!(shown(&["--container", "5151"], &cap), ["8:model_file_opened"]);
    assert_eq!(shown(&["--container", "c0ffee"], &cap), ["8:model_file_opened"]);
    assert_eq!(
        shown(&["--session", "abc12345"], &cap),
        ["7:session_started", "7:model_file_opened", "7:session_ended"],
        "the session's events and its process's between them"
    );
    assert_eq!(shown(&["--session", "abc1", "--kind", "model_file_opened"], &cap), ["7:model_file_opened"]);
    let (code, _, err) = modelwatch(&["tail", "--since", "yesterday", "--from", &cap]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn compact_lines_show_the_date_and_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(&dir, "");
    let (_, out, _) = modelwatch(&["tail", "--color", "never", "--from", &cap]);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("2020-12-04 13:00:00.250Z open "), "{first}");
}
