//! Precision on a developer's workday with no model anywhere: interpreters starting with their
//! usual imports (`site-packages/*.pth`), a C build, git over hundreds of files, Node, archives,
//! grep, SQLite, a 300 MB log and its copy, NumPy arrays saved and loaded memory-mapped, `.bin`
//! files from the system, the node binary read whole (`tests/engines/workday.sh`).
//!
//! None of it is a model: the sensor should report no model file opened or mapped, identify
//! no model, and start no session for these processes. Only the processes the workday started
//! count (other tests and engineers run on this machine too).

use std::{collections::BTreeMap, process::Command};

use modelwatch_tests::{
    EVENT_TIMEOUT, RunningSensor,
    engines::{Checks, descendants, file_of, python, run_to_exit, script},
    kind, make_file, pid, real,
};
use serde_json::Value;

/// Identification results that are not models.
const NOT_MODELS: [&str; 3] = ["ARTIFACT_FORMAT_UNKNOWN", "ARTIFACT_FORMAT_NOT_A_MODEL", "ARTIFACT_FORMAT_UNSPECIFIED"];

#[test]
fn a_developer_workday_without_models_reports_no_model_and_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("workday");
    std::fs::create_dir(&work).unwrap();
    // A CPU-busy threshold of a quarter core, as in the engine tests: a hot process on a large
    // mapping must not escape because the machine happened to be loaded.
    let mut sensor = RunningSensor::start("[sessions]\ncpu_busy_percent = 25.0\n");
    let (root, out) =
        run_to_exit(Command::new("bash").arg(script("workday.sh")).arg(&work).arg(python()).current_dir(&work));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "workday done");
    sensor.wait_for("the workday's exit", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(root));
    // The analyzer works off the event path: a file opened after the workday and identified
    // means the workday's files, opened before it, have been looked at too.
    let marker = dir.path().join("zz-after-the-workday.onnx");
    make_file(&marker, b"not a model", 11);
    std::fs::read(&marker).unwrap();
    let marker_path = real(&marker);
    sensor.wait_for("the marker's identification", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && file_of(e) == Some(marker_path.as_str())
    });
    let events = sensor.stop();

    let ours = descendants(&events, root);
    let mine: Vec<&Value> = events.iter().filter(|e| pid(e).is_some_and(|p| ours.contains(&p))).collect();
    // kind -> file -> count, and the processes behind them.
    let mut by_kind: BTreeMap<String, BTreeMap<String, (u32, Vec<String>)>> = BTreeMap::new();
    for e in &mine {
        let k = kind(e);
        let label = match k {
            "artifact_identified" => {
                let fmt = e[k]["artifact"]["format"].as_str().unwrap_or("");
                let key = if NOT_MODELS.contains(&fmt) { "artifact_identified (not a model)" } else { k };
                format!("{key}\t{fmt}")
            }
            "policy_finding" => format!("{k}\t{}", e[k]["finding"]["code"].as_str().unwrap_or("")),
            _ => k.to_owned(),
        };
        if !["model_file_opened", "model_mapped", "artifact_identified", "policy_finding", "session_started"]
            .contains(&k)
        {
            continue;
        }
        let file = match k {
            "session_started" => e[k]["models"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["file"]["path"].as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            _ => file_of(e).unwrap_or("").to_owned(),
        };
        let (kind_label, fmt) = label.split_once('\t').unwrap_or((label.as_str(), ""));
        let entry = by_kind.entry(kind_label.to_owned()).or_default().entry(format!("{file} {fmt}")).or_default();
        entry.0 += 1;
        let comm = e["process"]["comm"].as_str().unwrap_or("?").to_owned();
        if !entry.1.contains(&comm) {
            entry.1.push(comm);
        }
    }
    let mut context = format!("{} processes in the workday, {} events of theirs\n", ours.len(), mine.len());
    for (k, files) in &by_kind {
        let n: u32 = files.values().map(|(n, _)| n).sum();
        context.push_str(&format!("{k}: {n}\n"));
        for (f, (n, comms)) in files {
            context.push_str(&format!("  {n} x {f} by {}\n", comms.join(",")));
        }
    }
    let count = |k: &str| by_kind.get(k).map_or(0, |f| f.values().map(|(n, _)| *n).sum::<u32>());
    let mut c = Checks::default();
    c.check("the workday's processes were seen", ours.len() > 20, format!("{} processes", ours.len()));
    for k in ["model_file_opened", "model_mapped", "artifact_identified", "session_started"] {
        let label = if k == "artifact_identified" { "artifact_identified (a model format)" } else { k };
        c.check(&format!("no {label}"), count(k) == 0, format!("{}", count(k)));
    }
    c.assert_all("developer workday", &context);
}
