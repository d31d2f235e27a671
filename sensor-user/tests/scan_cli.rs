//! `modelwatch scan`, the real binary: output formats, exit codes, `--config` and `--manifest`.

// The artifact library's sample generators (valid and hostile model files, byte by byte).
#[path = "../../artifact/tests/generated.rs"]
mod generated;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use generated::*;
use modelwatch::proto::v1::{ArtifactFormat, ArtifactIdentified, LicenseState, PickleVerdict, Severity};
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

/// `--format json`: one line per file, each the `artifact_identified` payload the sensor
/// streams; sharded models, errors and the summary on stderr, the summary agreeing with the lines.
#[test]
fn binary_json_output_and_exit_codes() {
    let t = scan_tree();
    let (code, stdout, stderr) = modelwatch(&["scan", "--format", "json", s(t.path())]);
    assert_eq!(code, 1, "{stderr}");
    let arts: Vec<ArtifactIdentified> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an artifact_identified payload: {e}: {l}")))
        .collect();
    assert_eq!(arts.len(), 4, "{stdout}");
    let path = |a: &ArtifactIdentified| a.file.as_ref().map(|f| f.path.clone()).unwrap_or_default();
    let evil = arts.iter().find(|a| path(a).ends_with("evil.pt")).expect("evil.pt");
    let summary = |a: &ArtifactIdentified| a.artifact.clone().unwrap_or_default();
    assert_eq!(summary(evil).format, ArtifactFormat::PytorchZip as i32);
    assert_eq!(summary(evil).pickle, PickleVerdict::Malicious as i32);
    assert_eq!(evil.pickle_globals, ["os.system"]);
    assert_eq!(summary(evil).sha256, sha256_bytes(&torch_zip(&os_system_pickle())));
    assert!(evil.claimed_sha256.is_empty(), "no store claimed a digest");
    let llama = arts.iter().find(|a| summary(a).format == ArtifactFormat::Gguf as i32).expect("gguf");
    assert_eq!(llama.metadata.as_ref().map(|m| m.quantization.as_str()), Some("Q4_K_M"));
    assert_eq!(llama.license_state, LicenseState::NotAllowed as i32);

    // The summary line counts what the lines show.
    let failing = |a: &&ArtifactIdentified| a.findings.iter().any(|f| f.severity >= Severity::Low as i32);
    let models = arts
        .iter()
        .filter(|a| {
            let f = summary(a).format;
            ![ArtifactFormat::Unknown, ArtifactFormat::NotAModel, ArtifactFormat::Hdf5, ArtifactFormat::Numpy]
                .iter()
                .any(|x| *x as i32 == f)
        })
        .count();
    let expected = format!(
        "{} files, {models} models, {} with findings, 0 errors",
        arts.len(),
        arts.iter().filter(failing).count()
    );
    assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");

    let (code, _, _) = modelwatch(&["scan", s(&t.path().join("sub/weights"))]);
    assert_eq!(code, 0);
    let (code, _, stderr) = modelwatch(&["scan", "--format", "json", s(&t.path().join("nope"))]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("0 files, 0 models, 0 with findings, 1 errors"), "{stderr}");
}

/// A clean pickle and a GGUF that declares no licence pass unless a licence is asked for; a
/// digest is "verified" only where a store's file name claimed one.
#[test]
fn no_licence_is_no_failure_unless_asked_and_verified_means_compared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkl = dir.path().join("state.pkl");
    std::fs::write(&pkl, torch_state_dict_pickle()).expect("write");
    let gg = dir.path().join("tiny.gguf");
    std::fs::write(
        &gg,
        gguf(
            3,
            &[("general.architecture", GVal::Str("llama")), ("general.name", GVal::Str("tiny"))],
            &[("w", &[4], 0)],
        ),
    )
    .expect("write");
    for f in [&pkl, &gg] {
        let (code, stdout, stderr) = modelwatch(&["scan", s(f)]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("(computed)") && !stdout.contains("verified"), "{stdout}");
        let (code, stdout, _) = modelwatch(&["scan", "--require-license", s(f)]);
        assert_eq!(code, 1, "{stdout}");
        assert!(stdout.contains("license_missing"), "{stdout}");
    }
    let blobs = dir.path().join("models/blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let blob = blobs.join(format!("sha256-{}", sha256_bytes(&std::fs::read(&gg).expect("read"))));
    std::fs::copy(&gg, &blob).expect("copy");
    let (code, stdout, _) = modelwatch(&["scan", s(&blob)]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("(verified: the store's claim)"), "{stdout}");
    let (_, stdout, _) = modelwatch(&["scan", "--format", "json", s(&blob)]);
    let a: ArtifactIdentified = serde_json::from_str(stdout.trim()).expect("one line");
    assert_eq!(a.license_state, LicenseState::Missing as i32, "no finding, but no licence either");
    assert_eq!(a.claimed_sha256, a.artifact.expect("summary").sha256);
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
    assert!(stdout.contains(&format!("sha256    {} (computed)", sha256_bytes(&llama_gguf()))), "{stdout}");
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
