//! Real inference engines on the CPU, on models the test generates: llama.cpp (node-llama-cpp,
//! the model mapped), ONNX Runtime (the model read into memory) and a safetensors file mapped
//! and used for a forward pass with NumPy. Each is an inference session of the engine's
//! process, with its model's name and digest, that ends at the process's exit.
//!
//! Decoys touch the same model without running it, or run hot over a large file that is no
//! model: `cp`, `sha256sum`, `gguf-dump` (a header dump that maps the file), and NumPy
//! using a memory-mapped data file as a matrix, as hot as inference. None is a session.
//!
//! The engines are installed by `cargo xtask setup` under `target/engines/`.

use std::{path::Path, process::Command, time::Duration};

use modelwatch_tests::{
    EVENT_TIMEOUT, RunningSensor,
    engines::{
        Checks, GGUF_NAME, ONNX_GRAPH, SAFETENSORS_NAME, describe, file_of, make_model, node_modules, python,
        run_to_exit, script, sha256_file, venv_bin,
    },
    kind, pid, real,
};
use serde_json::Value;

/// CPU use sampled every second (the default: what a deployment sees), session updates every
/// second instead of ten so that a run of a few seconds has some, and a CPU-busy threshold of a
/// quarter core instead of half: this machine's two cores are shared, and a one-thread engine
/// gets less than half a core when the machine is loaded. The outcome must not depend on that.
const CONFIG: &str = "[sessions]\nupdate_interval_ms = 1000\ncpu_busy_percent = 25.0\n";

/// How long each engine and decoy works: several CPU samples, whatever the machine's speed.
const SECONDS: &str = "5";

fn session_id<'a>(e: &'a Value, payload: &str) -> &'a str {
    e[payload]["session_id"].as_str().unwrap_or("")
}

/// Waits until the sensor has seen `who` exit: everything the process did is then in the
/// stream, and a session would have started and ended by then.
fn wait_exit(sensor: &mut RunningSensor, who: u32) {
    sensor.wait_for("the process's exit", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(who));
}

/// The first event matching `pred` within the event timeout, or None (recorded as a check
/// result rather than failing the test on the spot).
fn wait_matching(sensor: &RunningSensor, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        if let Some(e) = sensor.matching(&pred).into_iter().next() {
            return Some(e);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The end of session `id`, if it comes within the event timeout.
fn wait_end(sensor: &RunningSensor, id: &str) -> Option<Value> {
    wait_matching(sensor, |e| kind(e) == "session_ended" && session_id(e, "session_ended") == id)
}

/// The identification of `model` in a session's models, where it carries one.
fn artifact_in<'a>(payload: &'a Value, model: &str) -> Option<&'a Value> {
    payload["models"]
        .as_array()?
        .iter()
        .find(|m| m["file"]["path"] == model && m["artifact"].is_object())
        .map(|m| &m["artifact"])
}

/// Runs `engine` (already configured) against `model` with the sensor running and checks the
/// session the issue asks for: its process, its model with name and digest, its end.
fn engine_is_a_session(title: &str, model: &Path, name: &str, engine: &mut Command) {
    let model_path = real(model);
    let sha = sha256_file(model);
    let mut sensor = RunningSensor::start(CONFIG);
    let (who, out) = run_to_exit(engine);
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    wait_exit(&mut sensor, who);
    let started: Vec<Value> = sensor.matching(|e| kind(e) == "session_started" && pid(e) == Some(who));
    let id = started.first().map(|s| session_id(s, "session_started").to_owned()).unwrap_or_default();
    let ended = started.first().and_then(|_| wait_end(&sensor, &id));
    // The digest is computed off the event path; it is reported once per file version, by
    // whichever process opened it first (the engine here, or the model writer before the
    // sensor started, in which case the identification is repeated for the engine).
    let verified = wait_matching(&sensor, |e| {
        kind(e) == "artifact_identified"
            && file_of(e) == Some(model_path.as_str())
            && e["artifact_identified"]["artifact"]["digest_state"] == "DIGEST_STATE_VERIFIED"
    });
    let events = sensor.stop();

    let mut c = Checks::default();
    let touched: Vec<&str> = events
        .iter()
        .filter(|e| pid(e) == Some(who) && ["model_file_opened", "model_mapped"].contains(&kind(e)))
        .filter(|e| file_of(e) == Some(model_path.as_str()))
        .map(kind)
        .collect();
    c.check("the sensor saw the engine open or map the model", !touched.is_empty(), format!("{touched:?}"));
    c.check("exactly one session_started for the engine's pid", started.len() == 1, format!("{}", started.len()));
    let s = started.first().map(|e| &e["session_started"]);
    let models: Vec<&str> = s
        .and_then(|s| s["models"].as_array())
        .map(|m| m.iter().filter_map(|m| m["file"]["path"].as_str()).collect())
        .unwrap_or_default();
    c.check(
        "the session's models include the model file",
        models.contains(&model_path.as_str()),
        format!("{models:?}"),
    );
    c.check("the session's models are the model file alone", models == [model_path.as_str()], format!("{models:?}"));
    c.check(
        "the session runs on the CPU",
        s.is_some_and(|s| s["engine"] == "SESSION_ENGINE_CPU"),
        format!("{}", s.map_or(Value::Null, |s| s["engine"].clone())),
    );
    // The name and digest, on the start, an update or (the digest takes a moment) the end.
    let end_payload = ended.as_ref().map(|e| &e["session_ended"]);
    let updates: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "session_updated" && session_id(e, "session_updated") == id)
        .map(|e| &e["session_updated"])
        .collect();
    let ident: Vec<&Value> = [s, end_payload]
        .into_iter()
        .flatten()
        .chain(updates.iter().copied())
        .filter_map(|p| artifact_in(p, &model_path))
        .collect();
    let names: Vec<&str> = ident.iter().filter_map(|a| a["name"].as_str()).collect();
    c.check("the session names the model", names.contains(&name), format!("{names:?}"));
    c.check(
        "the sensor fingerprinted the model (verified SHA-256)",
        verified.as_ref().is_some_and(|v| v["artifact_identified"]["artifact"]["sha256"] == sha.as_str()),
        verified.as_ref().map_or("no verified digest".into(), |v| {
            format!("{} by pid {:?}", v["artifact_identified"]["artifact"]["sha256"], pid(v))
        }),
    );
    let digests: Vec<&str> = ident.iter().filter_map(|a| a["sha256"].as_str()).collect();
    c.check("the session carries the model's SHA-256", digests.contains(&sha.as_str()), format!("{digests:?}"));
    c.check(
        "session_ended at the engine's exit",
        end_payload.is_some_and(|e| e["reason"] == "SESSION_END_REASON_PROCESS_EXIT"),
        format!("{}", end_payload.map_or(Value::Null, |e| e["reason"].clone())),
    );
    let seq = |e: Option<&Value>| e.map_or("-".to_owned(), |e| e["seq"].to_string());
    let context = format!(
        "engine pid {who} said: {said}\nsession started at seq {}, ended at seq {}; digest verified at seq {}\n\
         what the sensor emitted for that pid:\n{}",
        seq(started.first()),
        seq(ended.as_ref()),
        seq(verified.as_ref()),
        describe(&events, who)
    );
    c.assert_all(title, &context);
}

#[test]
fn llama_cpp_through_node_llama_cpp_is_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    make_model("gguf", &model);
    engine_is_a_session(
        "llama.cpp (node-llama-cpp, CPU, model mapped)",
        &model,
        GGUF_NAME,
        Command::new("node").arg(script("llama.mjs")).arg(node_modules()).arg(&model).arg(SECONDS).arg("cpu"),
    );
}

#[test]
fn onnx_runtime_on_the_cpu_is_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.onnx");
    make_model("onnx", &model);
    engine_is_a_session(
        "ONNX Runtime (CPU execution provider, model read)",
        &model,
        ONNX_GRAPH,
        Command::new(python()).arg(script("run.py")).arg("onnx").arg(&model).arg(SECONDS),
    );
}

#[test]
fn safetensors_mapped_with_a_numpy_forward_pass_is_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-mlp.safetensors");
    make_model("safetensors", &model);
    engine_is_a_session(
        "safetensors (safe_open, framework=numpy) and a NumPy forward pass",
        &model,
        SAFETENSORS_NAME,
        Command::new(python()).arg(script("run.py")).arg("safetensors").arg(&model).arg(SECONDS),
    );
}

/// A large file that is no model, 96 MiB of non-zero data (a sparse file would cost no reads).
fn write_data_file(path: &Path) {
    use std::io::Write as _;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..96 {
        for chunk in block.chunks_mut(8) {
            // xorshift: cheap, and no format's magic by accident.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn decoys_that_touch_a_model_or_map_a_large_file_are_not_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("decoy-llama.gguf");
    make_model("gguf", &model);
    let data = dir.path().join("measurements.dat");
    write_data_file(&data);
    let model_path = real(&model);

    let mut sensor = RunningSensor::start(CONFIG);
    let decoys: Vec<(&str, Command)> = vec![
        ("cp of the model", {
            let mut c = Command::new("cp");
            c.arg(&model).arg(dir.path().join("copy-of-decoy-llama.gguf"));
            c
        }),
        ("sha256sum of the model", {
            let mut c = Command::new("sha256sum");
            c.arg(&model);
            c
        }),
        ("gguf-dump of the model's header", {
            let mut c = Command::new(venv_bin("gguf-dump"));
            c.arg("--no-tensors").arg(&model);
            c
        }),
        ("NumPy multiplying with a memory-mapped 96 MiB data file", {
            let mut c = Command::new(python());
            c.arg(script("run.py")).arg("memmap").arg(&data).arg(SECONDS);
            c
        }),
    ];
    let mut ran = Vec::new();
    for (what, mut cmd) in decoys {
        let (who, _) = run_to_exit(&mut cmd);
        wait_exit(&mut sensor, who);
        ran.push((what, who));
    }
    let events = sensor.stop();

    let mut c = Checks::default();
    let mut context = String::new();
    for (what, who) in &ran {
        let sessions = events.iter().filter(|e| kind(e) == "session_started" && pid(e) == Some(*who)).count();
        c.check(&format!("{what}: no session"), sessions == 0, format!("{sessions} session_started"));
        context.push_str(&format!("{what} (pid {who}):\n{}", describe(&events, *who)));
    }
    // The decoys were seen: the model-touching ones as accesses to the model.
    for (what, who) in ran.iter().take(3) {
        let seen = events.iter().any(|e| pid(e) == Some(*who) && file_of(e) == Some(model_path.as_str()));
        c.check(&format!("{what}: its access to the model was reported"), seen, format!("{seen}"));
    }
    c.assert_all("decoys", &context);
}
