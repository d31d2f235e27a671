//! The real inference engines `cargo xtask setup` installs under `target/engines/` (a Python
//! venv with ONNX Runtime, NumPy, safetensors, gguf; npm node-llama-cpp with llama.cpp
//! prebuilt), the model generators and engine drivers in `tests/engines/`, and the bookkeeping
//! the engine and precision tests share: what a process did in the stream, and a list of
//! checks that is reported whole when one fails (so a failing run shows every result).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{kind, pid};

/// `target/engines` of this workspace, or `MODELWATCH_ENGINES`.
pub fn engines_dir() -> PathBuf {
    let dir = std::env::var_os("MODELWATCH_ENGINES")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engines"), PathBuf::from);
    assert!(
        dir.join("installed.txt").exists(),
        "the test engines are not installed in {}: run `cargo xtask setup` (cargo xtask test does)",
        dir.display()
    );
    dir
}

/// The venv's Python (ONNX Runtime, NumPy, safetensors, gguf).
pub fn python() -> PathBuf {
    engines_dir().join("venv/bin/python")
}

/// A program the venv installed (`gguf-dump`, ...).
pub fn venv_bin(name: &str) -> PathBuf {
    engines_dir().join("venv/bin").join(name)
}

/// node_modules with node-llama-cpp and llama.cpp's CPU build.
pub fn node_modules() -> PathBuf {
    engines_dir().join("node/node_modules")
}

/// A file of `tests/engines/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engines").join(name)
}

/// The names `tests/engines/models.py` writes into the models.
pub const GGUF_NAME: &str = "modelwatch-tiny-llama";
pub const ONNX_GRAPH: &str = "modelwatch-tiny-onnx";
pub const SAFETENSORS_NAME: &str = "modelwatch-tiny-mlp";

/// Writes a model with `tests/engines/models.py` (`gguf`, `onnx` or `safetensors`).
pub fn make_model(format: &str, path: &Path) {
    let out = Command::new(python()).arg(script("models.py")).arg(format).arg(path).output().expect("run models.py");
    assert!(out.status.success(), "models.py {format} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs a command to its exit; returns its pid and output, failing the test when it fails.
pub fn run_to_exit(cmd: &mut Command) -> (u32, Output) {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let id = child.id();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (id, out)
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open for hashing");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    format!("{:x}", h.finalize())
}

/// The file path an event is about, for the kinds that name one.
pub fn file_of(e: &Value) -> Option<&str> {
    let k = kind(e);
    e[k]["file"]["path"].as_str()
}

/// One line per event of process `who` (kind, file, and the fields that matter), for failure
/// messages and reports.
pub fn describe(events: &[Value], who: u32) -> String {
    let mut s = String::new();
    for e in events.iter().filter(|e| pid(e) == Some(who)) {
        let k = kind(e);
        let _ = write!(s, "  {k}");
        if let Some(f) = file_of(e) {
            let _ = write!(s, " {f}");
        }
        match k {
            "session_started" => {
                let p = &e[k];
                let models: Vec<&str> = p["models"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["file"]["path"].as_str()).collect())
                    .unwrap_or_default();
                let evidence: Vec<&str> = p["evidence"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["kind"].as_str()).collect())
                    .unwrap_or_default();
                let _ = write!(s, " {} runtime={} models={models:?} evidence={evidence:?}", p["engine"], p["runtime"]);
            }
            "session_ended" => {
                let _ = write!(s, " {}", e[k]["reason"]);
            }
            "model_file_opened" | "model_mapped" => {
                let _ = write!(s, " reasons={}", e[k]["reasons"]);
            }
            "policy_finding" => {
                let _ = write!(s, " {}", e[k]["finding"]["code"]);
            }
            "artifact_identified" => {
                let _ = write!(s, " {} name={}", e[k]["artifact"]["format"], e[k]["artifact"]["name"]);
            }
            _ => {}
        }
        s.push('\n');
    }
    if s.is_empty() {
        s.push_str("  (nothing)\n");
    }
    s
}

/// Named checks, all evaluated, reported together: a failing test shows every result, not
/// only the first that failed.
#[derive(Default)]
pub struct Checks {
    rows: Vec<(bool, String, String)>,
}

impl Checks {
    pub fn check(&mut self, what: &str, ok: bool, observed: impl Into<String>) {
        self.rows.push((ok, what.to_owned(), observed.into()));
    }

    pub fn report(&self) -> String {
        let mut s = String::new();
        for (ok, what, seen) in &self.rows {
            let _ = writeln!(s, "  [{}] {what}: {seen}", if *ok { "pass" } else { "FAIL" });
        }
        s
    }

    /// Panics listing every check when one failed; `context` follows the list. A passing run
    /// prints them (shown with `--nocapture`).
    pub fn assert_all(&self, title: &str, context: &str) {
        let failed = self.rows.iter().filter(|(ok, ..)| !ok).count();
        assert!(failed == 0, "{title}: {failed} of {} checks failed:\n{}{context}", self.rows.len(), self.report());
        println!("{title}: all {} checks passed\n{}{context}", self.rows.len(), self.report());
    }
}

/// The pids of `root` and of every process it started, directly or not, as far as the stream
/// shows them: by entity id (`parent_entity_id`) and, for events whose parent entity is not
/// known, by `ppid`. Iterated to a fixpoint, so the order of events does not matter.
pub fn descendants(events: &[Value], root: u32) -> std::collections::BTreeSet<u32> {
    use std::collections::BTreeSet;
    let mut pids: BTreeSet<u32> = BTreeSet::from([root]);
    let mut entities: BTreeSet<String> = BTreeSet::new();
    loop {
        let before = (pids.len(), entities.len());
        for e in events {
            let p = &e["process"];
            let (Some(pid), entity) = (p["pid"].as_u64().map(|v| v as u32), p["entity_id"].as_str()) else {
                continue;
            };
            let parent_entity = p["parent_entity_id"].as_str().filter(|s| !s.is_empty());
            let ppid = p["ppid"].as_u64().map(|v| v as u32);
            let ours = pids.contains(&pid)
                || parent_entity.is_some_and(|pe| entities.contains(pe))
                || ppid.is_some_and(|pp| pids.contains(&pp));
            if ours {
                pids.insert(pid);
                if let Some(en) = entity.filter(|s| !s.is_empty()) {
                    entities.insert(en.to_owned());
                }
            }
        }
        if (pids.len(), entities.len()) == before {
            return pids;
        }
    }
}
