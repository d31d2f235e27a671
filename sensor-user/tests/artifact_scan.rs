//! `modelwatch scan`: the library entry point and the real binary.

#[path = "artifact_gen.rs"]
mod generated;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use generated::*;
use modelwatch::artifact::{
    ArtifactConfig, Format, Severity,
    digest::sha256_bytes,
    scan::{ScanArgs, ScanFormat, execute},
};

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("llama.gguf"), llama_gguf()).expect("write");
    std::fs::write(d.join("evil.pt"), torch_zip(&os_system_pickle())).expect("write");
    std::fs::write(d.join("notes.txt"), "just notes\n").expect("write");
    std::fs::write(d.join("fake.gguf"), "<html>404</html>\n").expect("write");
    std::fs::create_dir(d.join("sub")).expect("mkdir");
    std::fs::write(d.join("sub/weights"), tiny_safetensors(Some("MIT"))).expect("write");
    // A loop and a link to a model: neither is followed during the walk.
    std::os::unix::fs::symlink(d, d.join("sub/loop")).expect("symlink");
    std::os::unix::fs::symlink(d.join("evil.pt"), d.join("sub/link.pt")).expect("symlink");
    dir
}

fn names(out: &modelwatch::artifact::scan::ScanOutput, root: &Path) -> Vec<(String, Format)> {
    out.artifacts
        .iter()
        .map(|a| (a.path.strip_prefix(root).unwrap_or(&a.path).to_string_lossy().into_owned(), a.format))
        .collect()
}

#[test]
fn walks_directories_reports_models_and_sets_the_exit_code() {
    let t = tree();
    let out = execute(&ScanArgs::new(vec![t.path().to_path_buf()]), &ArtifactConfig::default()).expect("scan");
    assert_eq!(
        names(&out, t.path()),
        [
            ("evil.pt".to_string(), Format::Pytorch),
            ("fake.gguf".to_string(), Format::NotAModel),
            ("llama.gguf".to_string(), Format::Gguf),
            ("sub/weights".to_string(), Format::Safetensors),
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s = &out.summary;
    assert_eq!((s.files, s.models, s.exit_code), (4, 3, 1));
    // evil.pt (malicious) and llama.gguf (licence) have findings at `low` or above.
    assert_eq!(s.with_findings, 2);
    for a in &out.artifacts {
        assert!(a.digest.is_some(), "{} hashed", a.path.display());
    }
    // --all also reports the text file.
    let mut all = ScanArgs::new(vec![t.path().to_path_buf()]);
    all.all = true;
    assert_eq!(execute(&all, &ArtifactConfig::default()).expect("scan").summary.files, 5);
    // A named symlink is followed (the user asked for it).
    let named = execute(&ScanArgs::new(vec![t.path().join("sub/link.pt")]), &ArtifactConfig::default()).expect("scan");
    assert_eq!(named.artifacts[0].pickle.as_ref().map(|p| p.offending.clone()), Some(vec!["os.system".to_string()]));
}

#[test]
fn clean_scan_fail_on_and_errors() {
    let t = tree();
    let weights = t.path().join("sub/weights");
    let out = execute(&ScanArgs::new(vec![weights.clone()]), &ArtifactConfig::default()).expect("scan");
    assert_eq!(out.summary.exit_code, 0, "{:?}", out.artifacts[0].findings);

    // Approval is required once a manifest is configured.
    let manifest = t.path().join("m.toml");
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64))).expect("write");
    let mut args = ScanArgs::new(vec![weights.clone()]);
    args.manifest = Some(manifest.clone());
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 1);
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", sha256_bytes(&tiny_safetensors(Some("MIT")))))
        .expect("write");
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 0);

    // --fail-on raises the bar: the llama licence finding is medium.
    let mut args = ScanArgs::new(vec![t.path().join("llama.gguf")]);
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 1);
    args.fail_on = Severity::High;
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 0);

    // --no-digest: nothing hashed.
    let mut args = ScanArgs::new(vec![weights]);
    args.no_digest = true;
    assert!(execute(&args, &ArtifactConfig::default()).expect("scan").artifacts[0].digest.is_none());

    // A missing path is an error (2), reported alongside the other results.
    let out = execute(
        &ScanArgs::new(vec![t.path().join("llama.gguf"), t.path().join("missing.gguf")]),
        &ArtifactConfig::default(),
    )
    .expect("scan");
    assert_eq!((out.summary.exit_code, out.errors.len(), out.artifacts.len()), (2, 1, 1));

    // A broken manifest stops the scan before it starts.
    std::fs::write(&manifest, "[[model]]\nsha256 = 1\n").expect("write");
    let mut args = ScanArgs::new(vec![t.path().to_path_buf()]);
    args.manifest = Some(manifest);
    assert!(execute(&args, &ArtifactConfig::default()).is_err());
}

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
    let t = tree();
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
    let t = tree();
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

#[test]
fn scan_args_parse_as_a_clap_subcommand() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scan: ScanArgs,
    }
    let c = Cli::try_parse_from([
        "x",
        "--format",
        "json",
        "--no-digest",
        "--fail-on",
        "high",
        "--all",
        "--max-depth",
        "3",
        "a",
        "b",
    ])
    .expect("parse");
    assert_eq!(c.scan.format, ScanFormat::Json);
    assert!(c.scan.no_digest && c.scan.all);
    assert_eq!((c.scan.fail_on, c.scan.max_depth, c.scan.paths.len()), (Severity::High, 3, 2));
    assert!(Cli::try_parse_from(["x"]).is_err(), "a path is required");
}
