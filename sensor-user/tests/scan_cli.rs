//! `modelwatch scan`, the real binary: output formats, exit codes, `--config` and `--manifest`.

// The artifact library's sample generators (valid and hostile model files, byte by byte).
#[path = "../../artifact/tests/generated.rs"]
mod generated;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use generated::*;
use modelwatch_artifact::digest::sha256_bytes;

fn modelwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelwatch")).args(args).output().expect("run modelwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn binary_json_output_and_exit_codes() {
    let t = scan_tree();
    let (code, stdout, stderr) = modelwatch(&["scan", "--format", "json", s(t.path())]);
    assert_eq!(code, 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let arts = v["artifacts"].as_array().expect("artifacts");
    assert_eq!(arts.len(), 4);
    let evil = arts.iter().find(|a| a["path"].as_str().is_some_and(|p| p.ends_with("evil.pt"))).expect("evil.pt");
    assert_eq!(evil["format"], "pytorch");
    assert_eq!(evil["pickle"]["verdict"], "malicious");
    assert_eq!(evil["pickle"]["globals"], serde_json::json!(["os.system"]));
    assert_eq!(evil["digest"]["sha256_hex"], sha256_bytes(&torch_zip(&os_system_pickle())));
    let llama = arts.iter().find(|a| a["format"] == "gguf").expect("gguf");
    assert_eq!(llama["metadata"]["quantization"], "Q4_K_M");
    assert_eq!(llama["license_finding"]["problem"], "not_allowed");
    assert_eq!(v["summary"]["exit_code"], 1);

    let (code, _, _) = modelwatch(&["scan", s(&t.path().join("sub/weights"))]);
    assert_eq!(code, 0);
    let (code, _, stderr) = modelwatch(&["scan", s(&t.path().join("nope"))]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn binary_text_output_config_and_manifest_errors() {
    let t = scan_tree();
    let (code, stdout, _) = modelwatch(&["scan", s(&t.path().join("evil.pt")), s(&t.path().join("llama.gguf"))]);
    assert_eq!(code, 1);
    assert!(stdout.contains("format    pytorch (zip)"), "{stdout}");
    assert!(stdout.contains("pickle    malicious: os.system"), "{stdout}");
    assert!(stdout.contains("CRITICAL  pickle_malicious"), "{stdout}");
    assert!(
        stdout.contains("model     Llama-3.1-8B-Instruct · arch llama · Q4_K_M · 96 params · ctx 131072 · 2 tensors"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("sha256    {} (verified)", sha256_bytes(&llama_gguf()))), "{stdout}");
    assert!(stdout.contains("2 files, 2 models, 2 with findings, 0 errors"), "{stdout}");

    // The [artifact] table of --config applies: allow the llama licence.
    let cfg: PathBuf = t.path().join("modelwatch.toml");
    std::fs::write(&cfg, "[artifact]\nallowed_licenses = [\"llama3.1\", \"MIT\"]\n").expect("write");
    let (code, stdout, stderr) = modelwatch(&["scan", "--config", s(&cfg), s(&t.path().join("llama.gguf"))]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, "[[model]]\nsha256 = \"zz\"\n").expect("write");
    let (code, _, stderr) = modelwatch(&["scan", "--manifest", s(&bad), s(t.path())]);
    assert_eq!(code, 2);
    assert!(stderr.contains("model[0].sha256"), "{stderr}");
}
