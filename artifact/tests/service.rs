//! The live analyzer: once-per-version analysis, claimed then verified digests, the persistent
//! digest cache, bounded queues, manifest reloads and identity checks.

mod generated;

use std::{path::Path, sync::Arc, time::Duration};

use generated::*;
use modelwatch_artifact::{
    ArtifactConfig, ArtifactReport, DigestState, FileIdentity, Format, PolicyVerdict, codes,
    digest::sha256_bytes,
    service::{Analyzer, AnalyzerHandle, ArtifactRequest, ArtifactUpdate, StartOptions},
};
use std::sync::mpsc::Receiver;

/// Waits (generously; this bounds a hang, it does not measure anything) for the next update
/// that `pick` accepts, skipping others.
fn next<T>(rx: &mut Receiver<ArtifactUpdate>, mut pick: impl FnMut(ArtifactUpdate) -> Option<T>) -> T {
    loop {
        let u = rx.recv_timeout(Duration::from_secs(120)).expect("no update within the hang guard");
        if let Some(t) = pick(u) {
            return t;
        }
    }
}

fn request(path: &Path) -> ArtifactRequest {
    let m = std::fs::metadata(path).expect("stat");
    ArtifactRequest { path: path.to_owned(), identity: FileIdentity::from_metadata(&m) }
}

fn identified(u: ArtifactUpdate) -> Option<(FileIdentity, Arc<ArtifactReport>)> {
    match u {
        ArtifactUpdate::Identified { identity, report } => Some((identity, report)),
        _ => None,
    }
}

fn digested(u: ArtifactUpdate) -> Option<(FileIdentity, Arc<ArtifactReport>)> {
    match u {
        ArtifactUpdate::Digest { identity, report } => Some((identity, report)),
        _ => None,
    }
}

fn start(cfg: &ArtifactConfig, state: &Path) -> (AnalyzerHandle, Receiver<ArtifactUpdate>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    (Analyzer::start(cfg, state, tx).expect("start analyzer"), rx)
}

#[test]
fn identifies_once_then_hashes_and_remembers_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let model = dir.path().join("llama.gguf");
    let bytes = llama_gguf();
    std::fs::write(&model, &bytes).expect("write");
    let cfg = ArtifactConfig::default();

    let (h, mut rx) = start(&cfg, &state);
    let req = request(&model);
    h.submit(req.clone());
    let (id, r) = next(&mut rx, identified);
    assert_eq!(id, req.identity);
    assert_eq!(
        (r.format, r.metadata.name.as_deref(), r.digest.clone()),
        (Format::Gguf, Some("Llama-3.1-8B-Instruct"), None)
    );
    let (id, r) = next(&mut rx, digested);
    assert_eq!(id, req.identity);
    let d = r.digest.as_ref().expect("digest");
    assert_eq!((d.sha256_hex.clone(), d.state), (sha256_bytes(&bytes), DigestState::Verified));
    // The pipeline can attach the result synchronously from now on.
    assert_eq!(h.lookup(&req.identity).as_deref(), Some(&*r));
    // Same version again: not analysed twice.
    h.submit(req.clone());
    h.submit(req.clone());
    let s = h.stats();
    assert_eq!(
        (s.submitted, s.duplicates, s.identified, s.hashed, s.hashed_bytes, s.cache_hits),
        (3, 2, 1, 1, bytes.len() as u64, 0)
    );
    h.shutdown();
    assert!(state.join(&cfg.cache_file).exists(), "cache written at shutdown");

    // A new analyzer (a sensor restart) knows the digest without hashing.
    let (h, mut rx) = start(&cfg, &state);
    h.submit(req.clone());
    let (_, r) = next(&mut rx, identified);
    assert_eq!(
        r.digest.as_ref().map(|d| (d.sha256_hex.clone(), d.state)),
        Some((sha256_bytes(&bytes), DigestState::Verified))
    );
    let s = h.stats();
    assert_eq!((s.cache_hits, s.hashed), (1, 0));

    // Touching the file (new mtime/ctime) is a new version: analysed and hashed again.
    let f = std::fs::OpenOptions::new().append(true).open(&model).expect("open");
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10)).expect("set mtime");
    drop(f);
    let req2 = request(&model);
    assert_ne!(req2.identity, req.identity);
    h.submit(req2.clone());
    let (id, _) = next(&mut rx, digested);
    assert_eq!(id, req2.identity);
    h.shutdown();
}

#[test]
fn corrupt_cache_is_ignored_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ArtifactConfig::default();
    std::fs::write(dir.path().join(&cfg.cache_file), b"{\"version\": 1, \"entries\": [garbage").expect("write");
    let model = dir.path().join("m.safetensors");
    std::fs::write(&model, tiny_safetensors(Some("MIT"))).expect("write");
    let (h, mut rx) = start(&cfg, dir.path());
    h.submit(request(&model));
    let (_, r) = next(&mut rx, digested);
    assert_eq!(r.digest.as_ref().map(|d| d.state), Some(DigestState::Verified));
    h.shutdown();
    let text = std::fs::read_to_string(dir.path().join(&cfg.cache_file)).expect("cache");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON now");
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(1));
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn claimed_digest_first_then_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let claimed = "e".repeat(64);
    let blob = dir.path().join(format!("hub/models--acme--m/blobs/{claimed}"));
    std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
    let bytes = torch_zip(&os_system_pickle());
    std::fs::write(&blob, &bytes).expect("write");
    let (h, mut rx) = start(&ArtifactConfig::default(), dir.path());
    h.submit(request(&blob));
    let (_, r) = next(&mut rx, identified);
    let d = r.digest.as_ref().expect("claimed digest at once");
    assert_eq!((d.sha256_hex.as_str(), d.state), (claimed.as_str(), DigestState::Claimed));
    assert_eq!(r.pickle.as_ref().map(|p| p.offending.clone()), Some(vec!["os.system".to_string()]));
    let (_, r) = next(&mut rx, digested);
    let d = r.digest.as_ref().expect("digest");
    assert_eq!((d.sha256_hex.clone(), d.state), (sha256_bytes(&bytes), DigestState::Mismatch));
    assert!(r.findings.iter().any(|f| f.code == codes::DIGEST_MISMATCH));
    h.shutdown();
}

#[test]
fn full_queue_is_counted_not_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ArtifactConfig { analysis_queue: 2, ..Default::default() };
    let (h, mut rx) = {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        (Analyzer::start_with(&cfg, dir.path(), tx, StartOptions { paused: true }).expect("start"), rx)
    };
    let mut reqs = Vec::new();
    for i in 0..5 {
        let p = dir.path().join(format!("m{i}.npy"));
        std::fs::write(&p, npy("<f4", &format!("({},)", i + 1), &vec![0u8; 4 * (i + 1)])).expect("write");
        reqs.push(request(&p));
    }
    for r in &reqs {
        h.submit(r.clone());
    }
    let s = h.stats();
    assert_eq!((s.submitted, s.dropped), (5, 3));
    h.resume();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (id, r) = next(&mut rx, identified);
        assert_eq!(r.format, Format::Numpy);
        seen.push(id);
    }
    // Two workers: either may finish first.
    seen.sort_by_key(|id| id.ino);
    let mut queued = [reqs[0].identity, reqs[1].identity];
    queued.sort_by_key(|id| id.ino);
    assert_eq!(seen, queued);
    // A dropped version is accepted again later.
    h.submit(reqs[4].clone());
    let (id, _) = next(&mut rx, identified);
    assert_eq!(id, reqs[4].identity);
    h.shutdown();
}

#[test]
fn identity_is_checked_against_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, llama_gguf()).expect("write");
    let (h, mut rx) = start(&ArtifactConfig::default(), dir.path());
    let mut req = request(&p);
    req.identity.ino += 1;
    h.submit(req.clone());
    let (id, err) = next(&mut rx, |u| match u {
        ArtifactUpdate::Failed { identity, error, .. } => Some((identity, error)),
        _ => None,
    });
    assert_eq!(id, req.identity);
    assert!(err.contains("another file"), "{err}");
    let mut gone = request(&p);
    gone.path = dir.path().join("vanished.gguf");
    h.submit(gone);
    let err = next(&mut rx, |u| match u {
        ArtifactUpdate::Failed { error, .. } => Some(error),
        _ => None,
    });
    assert!(err.contains("cannot open"), "{err}");
    assert_eq!(h.stats().failed, 2);
    h.shutdown();
}

#[test]
fn manifest_reloads_on_change_and_keeps_the_previous_one_when_malformed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.gguf");
    let bytes = llama_gguf();
    std::fs::write(&model, &bytes).expect("write");
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64))).expect("write");
    let cfg = ArtifactConfig { manifest: Some(manifest.clone()), manifest_poll_secs: 1, ..Default::default() };
    let (h, mut rx) = start(&cfg, dir.path());
    let req = request(&model);
    h.submit(req.clone());
    let (_, r) = next(&mut rx, digested);
    assert_eq!(r.policy, PolicyVerdict::Unapproved);

    // The hub approves the model: the poll notices, the verdict changes and is announced.
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\nname = \"llama\"\n", sha256_bytes(&bytes)))
        .expect("write");
    bump_mtime(&manifest);
    let (approved, _) = next(&mut rx, |u| match u {
        ArtifactUpdate::ManifestReloaded { approved, denied, .. } => Some((approved, denied)),
        _ => None,
    });
    assert_eq!(approved, 1);
    let (id, r) = next(&mut rx, |u| match u {
        ArtifactUpdate::PolicyChanged { identity, report } => Some((identity, report)),
        _ => None,
    });
    assert_eq!((id, r.policy), (req.identity, PolicyVerdict::Approved));
    assert_eq!(h.lookup(&req.identity).map(|r| r.policy), Some(PolicyVerdict::Approved));

    // A broken edit: reported, and the previous manifest stays in force.
    std::fs::write(&manifest, "[[model]]\nsha256 = \"not hex\"\n").expect("write");
    bump_mtime(&manifest);
    let err = next(&mut rx, |u| match u {
        ArtifactUpdate::ManifestError(e) => Some(e),
        _ => None,
    });
    assert!(err.contains("model[0].sha256"), "{err}");
    // An explicit reload (what SIGHUP does) of the same broken file: same answer.
    h.reload_manifest();
    next(&mut rx, |u| matches!(u, ArtifactUpdate::ManifestError(_)).then_some(()));
    assert_eq!(h.lookup(&req.identity).map(|r| r.policy), Some(PolicyVerdict::Approved));
    assert!(h.stats().manifest_errors >= 2);
    h.shutdown();
}

fn bump_mtime(p: &Path) {
    let f = std::fs::OpenOptions::new().append(true).open(p).expect("open");
    let now = std::time::SystemTime::now();
    let m = std::fs::metadata(p).expect("stat").modified().expect("mtime");
    f.set_modified(now.max(m) + Duration::from_secs(1)).expect("set mtime");
}

#[test]
fn start_fails_on_a_malformed_manifest_and_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m.toml");
    std::fs::write(&m, "[[model]]\nsha256 = 5\n").expect("write");
    let cfg = ArtifactConfig { manifest: Some(m), ..Default::default() };
    let e = Analyzer::start(&cfg, dir.path(), std::sync::mpsc::channel().0).err().expect("malformed manifest refused");
    assert!(e.to_string().contains("m.toml"), "{e}");
    let cfg = ArtifactConfig { cache_file: "../escape".into(), ..Default::default() };
    let e = Analyzer::start(&cfg, dir.path(), std::sync::mpsc::channel().0).err().expect("bad config refused");
    assert!(e.to_string().contains("cache_file"), "{e}");
}

#[test]
fn reports_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, onnx_clean()).expect("write");
    let (h, rx) = start(&ArtifactConfig::default(), dir.path());
    h.submit(request(&p));
    let first = rx.recv().expect("update");
    let second = rx.recv().expect("update");
    assert!(matches!(first, ArtifactUpdate::Identified { .. }));
    match second {
        ArtifactUpdate::Digest { report, .. } => assert_eq!(report.format, Format::Onnx),
        other => panic!("expected a digest, got {other:?}"),
    }
    h.shutdown();
}

/// A version the caller forgot (its content may have changed under the same identity) is
/// analysed again on its next submission, digest included: neither the report nor the cached
/// digest of the old content is reused.
#[test]
fn a_forgotten_version_is_analysed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("llama.gguf");
    let bytes = llama_gguf();
    std::fs::write(&model, &bytes).expect("write");
    let (h, mut rx) = start(&ArtifactConfig::default(), &dir.path().join("state"));
    let req = request(&model);
    h.submit(req.clone());
    next(&mut rx, digested);
    h.forget(&req.identity);
    assert!(h.lookup(&req.identity).is_none());
    h.submit(req.clone());
    let (id, r) = next(&mut rx, identified);
    assert_eq!(id, req.identity);
    assert!(r.digest.is_none(), "the cached digest of the old content is not reused");
    next(&mut rx, digested);
    let s = h.stats();
    assert_eq!((s.duplicates, s.identified, s.hashed, s.cache_hits), (0, 2, 2, 0));
    h.shutdown();
}

/// After a restart, a text file's "not a model" verdict comes from the verdict cache, without
/// the file being read; a model is identified afresh, and a rewritten text file too.
#[test]
fn not_a_model_verdicts_survive_a_restart_and_models_are_identified_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let text = dir.path().join("notes.bin");
    std::fs::write(&text, "just notes, not a model\n").expect("write");
    let model = dir.path().join("m.safetensors");
    std::fs::write(&model, tiny_safetensors(Some("MIT"))).expect("write");
    let cfg = ArtifactConfig::default();

    let (h, mut rx) = start(&cfg, &state);
    for p in [&text, &model] {
        h.submit(request(p));
        let (_, r) = next(&mut rx, identified);
        assert!(!r.from_verdict_cache);
    }
    h.shutdown();
    assert!(state.join(&cfg.verdict_cache_file).exists(), "verdicts written at shutdown");

    let (h, mut rx) = start(&cfg, &state);
    h.submit(request(&text));
    let (_, r) = next(&mut rx, identified);
    assert_eq!((r.format, r.from_verdict_cache), (Format::NotAModel, true));
    assert!(r.findings.iter().any(|f| f.code == codes::NOT_A_MODEL), "{:?}", r.findings);
    h.submit(request(&model));
    let (_, r) = next(&mut rx, identified);
    assert_eq!((r.format, r.from_verdict_cache), (Format::Safetensors, false));
    let s = h.stats();
    assert_eq!((s.verdict_cache_hits, s.identified), (1, 2));

    // Rewritten with other text of the same size: a new version, judged afresh.
    std::fs::write(&text, "other notes, still text\n").expect("rewrite");
    h.submit(request(&text));
    let (_, r) = next(&mut rx, identified);
    assert_eq!((r.format, r.from_verdict_cache), (Format::NotAModel, false));
    assert_eq!(h.stats().verdict_cache_hits, 1);
    h.shutdown();
}
