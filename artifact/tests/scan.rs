//! `modelwatch scan`'s library entry point (the binary's own tests are in the collector).

mod generated;

use std::path::Path;

use generated::*;
use modelwatch_artifact::{
    ArtifactConfig, Format, Severity,
    digest::sha256_bytes,
    scan::{ScanOptions, execute},
};

fn names(out: &modelwatch_artifact::scan::ScanOutput, root: &Path) -> Vec<(String, Format)> {
    out.artifacts
        .iter()
        .map(|a| (a.path.strip_prefix(root).unwrap_or(&a.path).to_string_lossy().into_owned(), a.format))
        .collect()
}

#[test]
fn walks_directories_reports_models_and_sets_the_exit_code() {
    let t = scan_tree();
    let out = execute(&ScanOptions::new(vec![t.path().to_path_buf()]), &ArtifactConfig::default()).expect("scan");
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
    let mut all = ScanOptions::new(vec![t.path().to_path_buf()]);
    all.all = true;
    assert_eq!(execute(&all, &ArtifactConfig::default()).expect("scan").summary.files, 5);
    // A named symlink is followed (the user asked for it).
    let named =
        execute(&ScanOptions::new(vec![t.path().join("sub/link.pt")]), &ArtifactConfig::default()).expect("scan");
    assert_eq!(named.artifacts[0].pickle.as_ref().map(|p| p.offending.clone()), Some(vec!["os.system".to_string()]));
}

#[test]
fn clean_scan_fail_on_and_errors() {
    let t = scan_tree();
    let weights = t.path().join("sub/weights");
    let out = execute(&ScanOptions::new(vec![weights.clone()]), &ArtifactConfig::default()).expect("scan");
    assert_eq!(out.summary.exit_code, 0, "{:?}", out.artifacts[0].findings);

    // Approval is required once a manifest is configured.
    let manifest = t.path().join("m.toml");
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64))).expect("write");
    let mut args = ScanOptions::new(vec![weights.clone()]);
    args.manifest = Some(manifest.clone());
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 1);
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", sha256_bytes(&tiny_safetensors(Some("MIT")))))
        .expect("write");
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 0);

    // --fail-on raises the bar: the llama licence finding is medium.
    let mut args = ScanOptions::new(vec![t.path().join("llama.gguf")]);
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 1);
    args.fail_on = Severity::High;
    assert_eq!(execute(&args, &ArtifactConfig::default()).expect("scan").summary.exit_code, 0);

    // --no-digest: nothing hashed.
    let mut args = ScanOptions::new(vec![weights]);
    args.digest = false;
    assert!(execute(&args, &ArtifactConfig::default()).expect("scan").artifacts[0].digest.is_none());

    // A missing path is an error (2), reported alongside the other results.
    let out = execute(
        &ScanOptions::new(vec![t.path().join("llama.gguf"), t.path().join("missing.gguf")]),
        &ArtifactConfig::default(),
    )
    .expect("scan");
    assert_eq!((out.summary.exit_code, out.errors.len(), out.artifacts.len()), (2, 1, 1));

    // A broken manifest stops the scan before it starts.
    std::fs::write(&manifest, "[[model]]\nsha256 = 1\n").expect("write");
    let mut args = ScanOptions::new(vec![t.path().to_path_buf()]);
    args.manifest = Some(manifest);
    assert!(execute(&args, &ArtifactConfig::default()).is_err());
}
