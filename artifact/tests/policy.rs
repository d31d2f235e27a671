//! Provenance and compliance through `analyze_path`: claimed and verified digests, the
//! approved-model manifest, the licence policy, and the serialised shape of a report.

mod generated;

use std::{path::Path, sync::Arc};

use generated::*;
use modelwatch_artifact::{
    AnalyzeOptions, ArtifactConfig, DigestState, LicensePolicy, LicenseProblem, Manifest, PolicyVerdict, Severity,
    analyze_path, codes, digest::sha256_bytes,
};

fn with_manifest(toml: &str) -> AnalyzeOptions {
    AnalyzeOptions {
        manifest: Some(Arc::new(Manifest::parse(toml, Some("toml")).expect("manifest"))),
        ..Default::default()
    }
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn approved_unapproved_denied_and_no_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = llama_gguf();
    let sha = sha256_bytes(&gguf);
    let p = write(dir.path(), "llama.gguf", &gguf);

    let opts = with_manifest(&format!(
        "[[model]]\nsha256 = \"{sha}\"\nname = \"Llama-3.1-8B-Instruct\"\nversion = \"Q4_K_M\"\nlicense = \"llama3.1\"\nnotes = \"hub pin\"\n"
    ));
    let r = analyze_path(&p, &opts).expect("analyze");
    assert_eq!(r.policy, PolicyVerdict::Approved);
    let e = r.manifest_entry.as_ref().expect("entry");
    assert_eq!(
        (e.name.as_deref(), e.version.as_deref(), e.notes.as_deref()),
        (Some("Llama-3.1-8B-Instruct"), Some("Q4_K_M"), Some("hub pin"))
    );
    // Approved, but llama3.1 is not an allowed licence by default.
    let lf = r.license_finding.as_ref().expect("licence finding");
    assert_eq!(
        (lf.problem, lf.license.as_deref(), lf.source.as_deref()),
        (LicenseProblem::NotAllowed, Some("llama3.1"), Some("content"))
    );
    assert_eq!(r.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(), [codes::LICENSE_NOT_ALLOWED]);

    let allow = AnalyzeOptions { license: LicensePolicy::new(&["llama3.1".into()], true), ..opts.clone() };
    let r = analyze_path(&p, &allow).expect("analyze");
    assert!(r.findings.is_empty() && r.license_finding.is_none(), "{:?}", r.findings);

    let other = with_manifest(&format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64)));
    let r = analyze_path(&p, &other).expect("analyze");
    assert_eq!(r.policy, PolicyVerdict::Unapproved);
    assert!(r.findings.iter().any(|f| f.code == codes::MODEL_UNAPPROVED && f.severity == Severity::Medium));

    let deny = with_manifest(&format!("[[deny]]\nsha256 = \"{sha}\"\nnotes = \"backdoored upload\"\n"));
    let r = analyze_path(&p, &deny).expect("analyze");
    assert_eq!(r.policy, PolicyVerdict::Denied);
    let f = r.findings.iter().find(|f| f.code == codes::MODEL_DENIED).expect("denied finding");
    assert_eq!(f.severity, Severity::High);
    assert!(f.message.contains("backdoored upload"));

    let r = analyze_path(&p, &AnalyzeOptions::default()).expect("analyze");
    assert_eq!((r.policy, r.manifest_entry.is_none()), (PolicyVerdict::NoManifest, true));

    // Without a digest there is nothing to match: unknown.
    let nodigest = AnalyzeOptions { digest: false, ..other };
    assert_eq!(analyze_path(&p, &nodigest).expect("analyze").policy, PolicyVerdict::Unknown);
}

#[test]
fn manifest_licence_covers_formats_that_carry_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pt = torch_zip(&torch_state_dict_pickle());
    let p = write(dir.path(), "m.pt", &pt);
    let r = analyze_path(&p, &AnalyzeOptions::default()).expect("analyze");
    assert_eq!(r.license_finding.as_ref().map(|l| l.problem), Some(LicenseProblem::Missing));
    assert!(r.findings.iter().any(|f| f.code == codes::LICENSE_MISSING && f.severity == Severity::Low));

    let opts = with_manifest(&format!("[[model]]\nsha256 = \"{}\"\nlicense = \"MIT\"\n", sha256_bytes(&pt)));
    let r = analyze_path(&p, &opts).expect("analyze");
    assert_eq!((r.policy, r.license_finding.clone(), r.findings.len()), (PolicyVerdict::Approved, None, 0));

    let opts = with_manifest(&format!("[[model]]\nsha256 = \"{}\"\nlicense = \"cc-by-nc-4.0\"\n", sha256_bytes(&pt)));
    let r = analyze_path(&p, &opts).expect("analyze");
    let lf = r.license_finding.expect("finding");
    assert_eq!((lf.problem, lf.source.as_deref()), (LicenseProblem::NotAllowed, Some("manifest")));

    // Not a model: no licence or approval findings at all.
    let t = write(dir.path(), "notes.gguf", b"just some text\n");
    let r = analyze_path(&t, &opts).expect("analyze");
    assert!(r.license_finding.is_none() && !r.findings.iter().any(|f| codes::POLICY.contains(&f.code.as_str())));
}

#[test]
fn store_paths_claim_digests_that_are_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = tiny_safetensors(Some("MIT"));
    let sha = sha256_bytes(&st);
    let hf = write(dir.path(), &format!("hub/models--acme--tiny-model/blobs/{sha}"), &st);
    let r = analyze_path(&hf, &AnalyzeOptions::default()).expect("analyze");
    let d = r.digest.as_ref().expect("digest");
    assert_eq!(
        (d.sha256_hex.as_str(), d.state, d.claimed_sha256_hex.as_deref()),
        (sha.as_str(), DigestState::Verified, Some(sha.as_str()))
    );
    assert_eq!(r.metadata.properties.get("hf_repo").map(String::as_str), Some("acme/tiny-model"));

    // The blob was swapped: the claim no longer holds.
    let wrong = "f".repeat(64);
    let ol = write(dir.path(), &format!("ollama/models/blobs/sha256-{wrong}"), &st);
    let opts = with_manifest(&format!("[[model]]\nsha256 = \"{wrong}\"\n"));
    let r = analyze_path(&ol, &opts).expect("analyze");
    let d = r.digest.as_ref().expect("digest");
    assert_eq!(
        (d.sha256_hex.as_str(), d.state, d.claimed_sha256_hex.as_deref()),
        (sha.as_str(), DigestState::Mismatch, Some(wrong.as_str()))
    );
    let f = &r.findings[0];
    assert_eq!((f.code.as_str(), f.severity), (codes::DIGEST_MISMATCH, Severity::Critical));
    // The policy follows the content, not the claim.
    assert_eq!(r.policy, PolicyVerdict::Unapproved);

    // Without hashing the claim is reported, marked as such; anyone can name a file after an
    // approved digest, so a claim never approves...
    let r = analyze_path(&ol, &AnalyzeOptions { digest: false, ..opts }).expect("analyze");
    let d = r.digest.expect("claimed digest");
    assert_eq!((d.sha256_hex, d.state), (wrong.clone(), DigestState::Claimed));
    assert_eq!(r.policy, PolicyVerdict::Unknown);
    // ...but a claim of a denied digest is denied at once.
    let opts = with_manifest(&format!("[[deny]]\nsha256 = \"{wrong}\"\n"));
    let r = analyze_path(&ol, &AnalyzeOptions { digest: false, ..opts }).expect("analyze");
    assert_eq!(r.policy, PolicyVerdict::Denied);
}

#[test]
fn report_serialises_with_stable_lowercase_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "evil.pt", &torch_zip(&os_system_pickle()));
    let opts = with_manifest(&format!("[[model]]\nsha256 = \"{}\"\n", "1".repeat(64)));
    let r = analyze_path(&p, &opts).expect("analyze");
    let v = serde_json::to_value(&r).expect("json");
    assert_eq!(v["format"], "pytorch");
    assert_eq!(v["variant"], "zip");
    assert_eq!(v["policy"], "unapproved");
    assert_eq!(v["digest"]["state"], "verified");
    assert_eq!(v["pickle"]["verdict"], "malicious");
    assert_eq!(v["pickle"]["offending"][0], "os.system");
    assert_eq!(v["findings"][0]["severity"], "critical");
    assert_eq!(v["findings"][0]["code"], "pickle_malicious");
    assert_eq!(v["license_finding"]["problem"], "missing");
    // Every format name is lowercase snake_case and round-trips.
    for f in modelwatch_artifact::Format::ALL {
        let s = serde_json::to_value(f).expect("json");
        assert_eq!(s, f.as_str());
        assert_eq!(f.as_str(), f.as_str().to_lowercase());
    }
    let back: modelwatch_artifact::ArtifactReport = serde_json::from_value(v).expect("round trip");
    assert_eq!(back, r);
}

#[test]
fn options_from_config_load_the_manifest_and_report_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write(dir.path(), "m.json", format!("{{\"model\": [{{\"sha256\": \"{}\"}}]}}", "a".repeat(64)).as_bytes());
    let cfg = ArtifactConfig { manifest: Some(m), ..Default::default() };
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    assert_eq!(opts.manifest.as_ref().map(|m| m.approved_count()), Some(1));

    let bad = write(dir.path(), "bad.toml", b"[[model]]\nsha = 1\n");
    let cfg = ArtifactConfig { manifest: Some(bad), ..Default::default() };
    let e = AnalyzeOptions::from_config(&cfg).expect_err("malformed manifest");
    assert!(e.to_string().contains("bad.toml"), "{e}");

    let cfg = ArtifactConfig { hash_workers: 0, ..Default::default() };
    let e = AnalyzeOptions::from_config(&cfg).expect_err("invalid config");
    assert!(e.to_string().contains("hash_workers"), "{e}");
}

#[test]
fn non_regular_files_are_errors_not_hangs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.gguf");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstring");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = analyze_path(&fifo, &AnalyzeOptions::default()).expect_err("fifo");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = analyze_path(dir.path(), &AnalyzeOptions::default()).expect_err("dir");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = analyze_path(&dir.path().join("missing"), &AnalyzeOptions::default()).expect_err("missing");
    assert!(e.to_string().contains("cannot open"), "{e}");
}
