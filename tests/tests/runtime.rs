//! Small or renamed code-bearing files: once a process shows it is an inference runtime (it
//! mapped a runtime library, or loaded a model), the files it opens afterwards are candidates
//! for identification whatever their name and size; other processes' ordinary files are not.

use std::path::Path;

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, Worker, evil_pickle, kind, pid, real, tiny_gguf, u64_of};
use serde_json::Value;

/// Model extensions and the default runtime libraries; nothing large of other work on the
/// machine keeps the analyzer busy.
const CONFIG: &str = "[files]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\n";

const WORKER: &str = env!("CARGO_BIN_EXE_mw-worker");

fn about(e: &Value, path: &Path) -> bool {
    let k = kind(e);
    !k.is_empty() && e[k]["file"]["path"] == real(path).as_str()
}

fn malicious(e: &Value, path: &Path) -> bool {
    kind(e) == "policy_finding" && about(e, path) && e["policy_finding"]["finding"]["code"] == "pickle_malicious"
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A process that mapped an inference-runtime library opens `weights.dat`, a small malicious
/// pickle under an ordinary name: it is identified and judged. The same kind of file opened by
/// a process that is no runtime stays unreported.
#[test]
fn a_small_renamed_pickle_opened_by_a_runtime_process_is_judged() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libllama-test.so");
    std::fs::write(&lib, vec![0u8; 4096]).unwrap();
    let weights = dir.path().join("weights.dat");
    std::fs::write(&weights, evil_pickle()).unwrap();
    let control = dir.path().join("control.dat");
    std::fs::write(&control, evil_pickle()).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);

    // First, a process that is no runtime opens its pickle.
    let mut plain = Worker::spawn(WORKER, None);
    plain.run(&format!("open {}", s(&control)));

    let mut runtime = Worker::spawn(WORKER, None);
    runtime.run(&format!("maplib {}", s(&lib)));
    let who = runtime.pid();
    sensor.wait_for("the runtime library mapping", EVENT_TIMEOUT, |e| {
        kind(e) == "model_mapped" && pid(e) == Some(who) && e["model_mapped"]["runtime_library"] == "libllama-test.so"
    });
    runtime.run(&format!("open {}", s(&weights)));
    let finding = sensor.wait_for("the renamed pickle's finding", EVENT_TIMEOUT, |e| malicious(e, &weights));
    assert_eq!(pid(&finding), Some(who), "{finding:#}");
    let ident = sensor
        .wait_for("its identification", EVENT_TIMEOUT, |e| kind(e) == "artifact_identified" && about(e, &weights));
    assert_eq!(ident["artifact_identified"]["artifact"]["pickle"], "PICKLE_VERDICT_MALICIOUS");
    // Lookups and identifications run in order (one thread each): the control pickle, opened
    // first, would have been judged before the runtime's.
    let events = sensor.events();
    let noise: Vec<&Value> = events.iter().filter(|e| about(e, &control)).collect();
    assert!(noise.is_empty(), "a process that is no runtime widened nothing: {noise:#?}");
    runtime.exit();
    plain.exit();
    sensor.stop();
}

/// A process that loaded a model (identified by content) is a runtime from then on.
#[test]
fn a_process_that_loaded_a_model_is_a_runtime_process() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let weights = dir.path().join("extra-state.dat");
    std::fs::write(&weights, evil_pickle()).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let mut worker = Worker::spawn(WORKER, None);
    let who = worker.pid();
    worker.run(&format!("open {}", s(&model)));
    sensor.wait_for("the model's identification", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && about(e, &model) && pid(e) == Some(who)
    });
    worker.run(&format!("open {}", s(&weights)));
    let finding = sensor.wait_for("the pickle's finding", EVENT_TIMEOUT, |e| malicious(e, &weights));
    assert_eq!(pid(&finding), Some(who), "{finding:#}");
    worker.exit();
    sensor.stop();
}

/// The widening is bounded: beyond its per-second budget a runtime process's ordinary opens are
/// not inspected, and that is counted and reported.
#[test]
fn the_candidate_budget_of_a_runtime_process_is_bounded_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libggml-test.so");
    std::fs::write(&lib, vec![0u8; 4096]).unwrap();
    let junk: Vec<String> = (0..2000)
        .map(|i| {
            let p = dir.path().join(format!("junk-{i}.txt"));
            std::fs::write(&p, format!("file {i}\n")).unwrap();
            p.to_str().unwrap().to_owned()
        })
        .collect();
    let mut sensor = RunningSensor::start(CONFIG);
    let mut runtime = Worker::spawn(WORKER, None);
    runtime.run(&format!("maplib {}", s(&lib)));
    for chunk in junk.chunks(200) {
        runtime.run(&format!("open {}", chunk.join(" ")));
    }
    let lost = sensor.wait_for("the budget's drops reported", EVENT_TIMEOUT, |e| {
        kind(e) == "events_lost" && !e["events_lost"]["by_kind"]["runtime_budget"].is_null()
    });
    assert_eq!(lost["events_lost"]["source"], "LOSS_SOURCE_KERNEL", "{lost:#}");
    assert!(u64_of(&lost["events_lost"]["by_kind"]["runtime_budget"]) > 0, "{lost:#}");
    runtime.exit();
    sensor.stop();
}
