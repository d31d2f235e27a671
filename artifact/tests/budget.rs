//! The bounds on what one artifact may cost: the time budget enforced inside the parsers, the
//! identification queue's lanes and workers, the hashing size policy (too large, sparse) and a
//! shutdown that does not wait for an analysis.
//!
//! The hostile file is a 2 MB `torch.save` zip whose `data.pkl` inflates to about 2 GB of
//! valid opcodes (`NONE POP`, over and over): without a time budget it keeps a worker busy for
//! as long as the inflate ratio and the pickle budget allow (tens of seconds, minutes in a
//! debug build).

mod generated;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::AtomicBool,
        mpsc::{Receiver, sync_channel},
    },
    time::{Duration, Instant},
};

use generated::*;
use modelwatch_artifact::{
    AnalyzeOptions, ArtifactConfig, ArtifactReport, ByteSize, DigestSkipReason, FileIdentity, Format, Limits,
    PolicyVerdict, Safety, analyze_path, codes,
    formats::identify_until,
    io::Deadline,
    pickle_scan::PicklePolicy,
    scan,
    service::{Analyzer, AnalyzerHandle, ArtifactRequest, ArtifactUpdate, StartOptions},
};

/// Bounds a hang; measures nothing.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn request(path: &Path) -> ArtifactRequest {
    let m = std::fs::metadata(path).expect("stat");
    ArtifactRequest { path: path.to_owned(), identity: FileIdentity::from_metadata(&m) }
}

fn start(cfg: &ArtifactConfig, state: &Path, paused: bool) -> (AnalyzerHandle, Receiver<ArtifactUpdate>) {
    let (tx, rx) = sync_channel(1024);
    (Analyzer::start_with(cfg, state, tx, StartOptions { paused }).expect("start analyzer"), rx)
}

/// The next `Identified` update.
fn identified(rx: &Receiver<ArtifactUpdate>) -> (FileIdentity, Arc<ArtifactReport>) {
    loop {
        match rx.recv_timeout(HANG_GUARD).expect("no update within the hang guard") {
            ArtifactUpdate::Identified { identity, report } => return (identity, report),
            ArtifactUpdate::Failed { path, error, .. } => panic!("{} failed: {error}", path.display()),
            _ => {}
        }
    }
}

fn has(r: &ArtifactReport, code: &str) -> bool {
    r.findings.iter().any(|f| f.code == code)
}

fn write_bomb(dir: &Path) -> std::path::PathBuf {
    let bomb = dir.join("bomb.pt");
    let (bytes, inflated) = torch_zip_bomb(2 << 20);
    assert!(bytes.len() < 3 << 20 && inflated > 2_000_000_000, "{} bytes inflating to {inflated}", bytes.len());
    std::fs::write(&bomb, bytes).expect("write");
    bomb
}

#[test]
fn a_zip_bomb_ends_at_its_time_budget_incomplete_and_not_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bomb = write_bomb(dir.path());
    let cfg = ArtifactConfig { max_analysis_ms: 300, ..Default::default() };
    let t = Instant::now();
    let r = analyze_path(&bomb, &AnalyzeOptions::from_config(&cfg).expect("options")).expect("analysis");
    eprintln!("bomb analysed in {:?}", t.elapsed());
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pytorch, Some("zip")));
    let incomplete = r.findings.iter().find(|f| f.code == codes::ANALYSIS_INCOMPLETE).expect("analysis_incomplete");
    assert!(incomplete.message.contains("time budget (300 ms) ran out"), "{}", incomplete.message);
    let walk = r.findings.iter().find(|f| f.code == codes::PICKLE_INCOMPLETE).expect("pickle_incomplete");
    assert!(walk.message.contains("archive/data.pkl") && walk.message.contains("time budget"), "{}", walk.message);
    let p = r.pickle.as_ref().expect("pickle verdict");
    assert_eq!((p.verdict, p.complete), (Safety::Suspicious, false));
    // The cut is reported once, not as a string of malformed entries after it.
    assert!(!has(&r, codes::MALFORMED) && !has(&r, codes::LIMIT_EXCEEDED), "{:#?}", r.findings);
}

#[test]
fn a_walk_cut_short_never_comes_out_safe() {
    // Safe content of every kind that carries pickles, analysed with no time left or stopped
    // at once: each is incomplete and none is judged safe.
    let samples: Vec<(&str, Vec<u8>)> = vec![
        ("torch zip", torch_zip(&torch_state_dict_pickle())),
        ("deflated torch zip", deflated_zip(&[("archive/data.pkl", &torch_state_dict_pickle())])),
        ("legacy torch tar", torch_legacy_tar(&torch_state_dict_pickle())),
        ("legacy torch stream", torch_legacy_stream(&torch_state_dict_pickle())),
        ("plain pickle", torch_state_dict_pickle()),
        ("object npy", npy("|O", "(1,)", &torch_state_dict_pickle())),
    ];
    let limits = Limits::default();
    let policy = PicklePolicy::default();
    let stopped = Arc::new(AtomicBool::new(true));
    for (what, bytes) in &samples {
        let whole =
            identify_until(&mut std::io::Cursor::new(bytes), bytes.len() as u64, &limits, &policy, Deadline::never());
        assert_eq!(whole.pickle.as_ref().map(|p| p.verdict), Some(Safety::Safe), "{what}: {:#?}", whole.findings);
        for (deadline, why) in [
            (Deadline::after(Duration::ZERO, None), "time budget"),
            (Deadline::after(Duration::from_secs(60), Some(stopped.clone())), "stopped"),
        ] {
            let cut = identify_until(&mut std::io::Cursor::new(bytes), bytes.len() as u64, &limits, &policy, deadline);
            let p = cut.pickle.as_ref().unwrap_or_else(|| panic!("{what}: no pickle verdict: {:#?}", cut.findings));
            assert_eq!((p.verdict, p.complete), (Safety::Suspicious, false), "{what}");
            let f = cut.findings.iter().find(|f| f.code == codes::ANALYSIS_INCOMPLETE).expect("analysis_incomplete");
            assert!(f.message.contains(why), "{what}: {}", f.message);
        }
    }
}

#[test]
fn a_malicious_pickle_after_a_bomb_is_judged_while_the_bomb_is_analysed_and_shutdown_does_not_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bomb = write_bomb(dir.path());
    let evil = dir.path().join("evil.pkl");
    std::fs::write(&evil, os_system_pickle()).expect("write");
    // A budget long enough that the bomb is surely still being walked at the end.
    let cfg = ArtifactConfig { max_analysis_ms: 120_000, ..Default::default() };
    let (h, rx) = start(&cfg, dir.path(), false);
    let (bomb_req, evil_req) = (request(&bomb), request(&evil));
    h.submit(bomb_req.clone());
    h.submit(evil_req.clone());
    let t = Instant::now();
    let (id, r) = identified(&rx);
    eprintln!("malicious pickle judged {:?} after it was submitted", t.elapsed());
    assert_eq!(id, evil_req.identity, "the bomb was not the first answer: {:?}", r.path);
    assert_eq!(r.pickle.as_ref().map(|p| p.verdict), Some(Safety::Malicious));
    assert!(has(&r, codes::PICKLE_MALICIOUS));
    // The bomb is still being analysed: nothing about it has come back.
    assert_eq!(h.stats().identified, 1);
    assert!(h.lookup(&bomb_req.identity).is_none());

    let t = Instant::now();
    h.shutdown();
    let took = t.elapsed();
    eprintln!("shutdown took {took:?}");
    assert!(took < Duration::from_millis(1500), "shutdown waited {took:?} for the analysis");
    // The abandoned analysis is not reported as the bomb's verdict.
    while let Ok(u) = rx.try_recv() {
        assert!(!matches!(u, ArtifactUpdate::Identified { identity, .. } if identity == bomb_req.identity));
    }
}

#[test]
fn small_and_code_bearing_files_are_identified_before_large_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A large GGUF (a name that carries no code, over the small-file size) queued first,
    // then a large pickle-named file and a small file named like a GGUF.
    let big = dir.path().join("big.gguf");
    let mut g = llama_gguf();
    g.resize(100 << 20, 0);
    std::fs::write(&big, &g).expect("write");
    let big_pickle = dir.path().join("big.pkl");
    let mut p = os_system_pickle();
    p.resize(100 << 20, 0);
    std::fs::write(&big_pickle, &p).expect("write");
    let small = dir.path().join("small.gguf");
    std::fs::write(&small, os_system_pickle()).expect("write");
    let cfg = ArtifactConfig { analysis_workers: 1, ..Default::default() };
    let (h, rx) = start(&cfg, dir.path(), true);
    let reqs = [request(&big), request(&big_pickle), request(&small)];
    for r in &reqs {
        h.submit(r.clone());
    }
    h.resume();
    let order: Vec<FileIdentity> = (0..3).map(|_| identified(&rx).0).collect();
    assert_eq!(order, [reqs[1].identity, reqs[2].identity, reqs[0].identity]);
    h.shutdown();
}

#[test]
fn a_sparse_64_gib_file_is_not_hashed_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sparse = dir.path().join("huge.gguf");
    let f = std::fs::File::create(&sparse).expect("create");
    std::io::Write::write_all(&mut &f, &llama_gguf()).expect("write");
    f.set_len(64 << 30).expect("a 64 GiB sparse file");
    drop(f);
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(&manifest, format!("[[model]]\nsha256 = \"{}\"\n", "0".repeat(64))).expect("write");
    let cfg = ArtifactConfig { manifest: Some(manifest), ..Default::default() };
    let (h, rx) = start(&cfg, dir.path(), false);
    h.submit(request(&sparse));
    let (_, r) = identified(&rx);
    assert_eq!(r.format, Format::Gguf);
    let skipped = r.digest_skipped.as_ref().expect("digest skipped");
    assert_eq!(skipped.reason, DigestSkipReason::Sparse);
    assert!(skipped.detail.contains("of 64.0 GiB"), "{}", skipped.detail);
    assert!(r.digest.is_none());
    let f = r.findings.iter().find(|f| f.code == codes::DIGEST_SKIPPED).expect("digest_skipped finding");
    assert!(f.message.starts_with("digest skipped (sparse)"), "{}", f.message);
    // Not hashed, so not approved: unknown.
    assert_eq!(r.policy, PolicyVerdict::Unknown);
    h.shutdown();
    let s = h.stats();
    assert_eq!((s.digest_skipped, s.hashed, s.hashed_bytes), (1, 0, 0));
    assert!(!rx.try_iter().any(|u| matches!(u, ArtifactUpdate::Digest { .. })), "no digest update");

    // The offline scan applies the same policy, and says so.
    let r = analyze_path(&sparse, &AnalyzeOptions::default()).expect("scan");
    assert_eq!(r.digest_skipped.map(|s| s.reason), Some(DigestSkipReason::Sparse));
    let out = scan::execute(&scan::ScanOptions::new(vec![sparse.clone()]), &ArtifactConfig::default()).expect("scan");
    let mut text = Vec::new();
    scan::write_text(&mut text, &out).expect("text");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(text.contains("  sha256    (not computed: sparse: "), "{text}");
    assert!(text.contains("LOW       digest_skipped: digest skipped (sparse)"), "{text}");
    let json = serde_json::to_value(&out.artifacts[0]).expect("json");
    assert_eq!(json["digest_skipped"]["reason"], "sparse");
    // Unless sparse files are hashed on purpose (not done here: 64 GiB of zeros); a small
    // limit makes the same file too large instead.
    let opts = AnalyzeOptions::from_config(&ArtifactConfig {
        hash_sparse_files: true,
        max_hash_bytes: ByteSize(1 << 30),
        ..Default::default()
    })
    .expect("options");
    let r = analyze_path(&sparse, &opts).expect("scan");
    let skipped = r.digest_skipped.expect("skipped");
    assert_eq!(skipped.reason, DigestSkipReason::TooLarge);
    assert_eq!(skipped.detail, "64.0 GiB is over max_hash_bytes (1.0 GiB)");
}

#[test]
fn a_claimed_digest_of_a_skipped_file_can_deny_but_never_approve() {
    // An Ollama-style blob whose name claims a digest; too large to hash here.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = llama_gguf();
    bytes.resize(2 << 20, 0);
    let claimed = modelwatch_artifact::digest::sha256_bytes(&bytes);
    let blob = dir.path().join(format!("blobs/sha256-{claimed}"));
    std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
    std::fs::write(&blob, &bytes).expect("write");
    let manifest = dir.path().join("m.toml");
    let cfg =
        ArtifactConfig { manifest: Some(manifest.clone()), max_hash_bytes: ByteSize(1 << 20), ..Default::default() };
    for (table, verdict) in [("model", PolicyVerdict::Unknown), ("deny", PolicyVerdict::Denied)] {
        std::fs::write(&manifest, format!("[[{table}]]\nsha256 = \"{claimed}\"\n")).expect("write manifest");
        let r = analyze_path(&blob, &AnalyzeOptions::from_config(&cfg).expect("options")).expect("analysis");
        assert_eq!(r.digest_skipped.as_ref().map(|s| s.reason), Some(DigestSkipReason::TooLarge));
        assert_eq!(r.digest.as_ref().map(|d| d.state), Some(modelwatch_artifact::DigestState::Claimed));
        assert_eq!(r.policy, verdict, "listed as [[{table}]]");
    }
}

#[test]
fn shutdown_during_a_long_digest_does_not_wait_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 8 GiB of holes, hashed on purpose: minutes of SHA-256, so it is surely in progress.
    let sparse = dir.path().join("holes.bin");
    std::fs::File::create(&sparse).expect("create").set_len(8 << 30).expect("set_len");
    let cfg = ArtifactConfig { hash_sparse_files: true, ..Default::default() };
    let (h, rx) = start(&cfg, dir.path(), false);
    h.submit(request(&sparse));
    let _ = identified(&rx);
    let t = Instant::now();
    h.shutdown();
    let took = t.elapsed();
    eprintln!("shutdown took {took:?}");
    assert!(took < Duration::from_millis(1500), "shutdown waited {took:?} for the digest");
    assert_eq!(h.stats().hashed, 0);
}
