//! Artifact intelligence in the live sensor: a model opened by this test is identified by
//! content, fingerprinted, judged, and the result is attached to later events; the kernel is
//! told which inodes are models (their mappings are reported) and which are not (their opens
//! are filtered).

use std::{os::unix::fs::MetadataExt as _, path::Path};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, make_file, open_close, pid, real, tiny_gguf, u64_of};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

fn mmap_small(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
    assert_ne!(addr, libc::MAP_FAILED);
    unsafe {
        libc::munmap(addr, 4096);
        libc::close(fd);
    }
}

#[test]
fn live_sensor_identifies_fingerprints_judges_and_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let bytes = tiny_gguf();
    std::fs::write(&model, &bytes).unwrap();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let evil = dir.path().join("evil.pkl");
    std::fs::write(&evil, b"cos\nsystem\n(S'echo pwned'\ntR.").unwrap();
    let blob = dir.path().join("blob-zeros");
    make_file(&blob, b"", 64 << 20);
    // A model opened last: once it is reported, everything opened before it has been handled.
    let marker = dir.path().join("marker.gguf");
    std::fs::write(&marker, &bytes).unwrap();

    // The candidate gate's decisions about files that are not models are logged at debug.
    let mut sensor = RunningSensor::start_with("", &["--log", "warn,modelwatch::sensor::candidates=debug"]);
    let me = std::process::id();

    // Identified by content, then fingerprinted.
    open_close(&model);
    let verified = sensor.wait_for("the GGUF's verified digest", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", &model)
            && e["artifact_identified"]["artifact"]["digest_state"] == "DIGEST_STATE_VERIFIED"
    });
    let a = &verified["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(a["artifact"]["sha256"], sha.as_str());
    assert_eq!(a["artifact"]["artifact_id"], format!("sha256:{sha}").as_str());
    assert_eq!(a["artifact"]["name"], "tiny-test-model");
    assert_eq!(a["metadata"]["architecture"], "llama");
    assert_eq!(a["metadata"]["license"], "apache-2.0");
    assert_eq!(u64_of(&a["metadata"]["context_length"]), 2048);
    assert_eq!(u64_of(&a["metadata"]["tensor_count"]), 1);
    assert_eq!(u64_of(&a["metadata"]["parameter_count"]), 32);
    assert_eq!(a["license_state"], "LICENSE_STATE_ALLOWED");
    assert_eq!(pid(&verified), Some(me), "the process that opened it is in the envelope");

    // Later events about the file carry the result.
    open_close(&model);
    let again = sensor.wait_for("a second open with the artifact attached", EVENT_TIMEOUT, |e| {
        about(e, "model_file_opened", &model) && e["model_file_opened"]["artifact"]["sha256"] == sha.as_str()
    });
    assert_eq!(again["model_file_opened"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    // The kernel now knows the inode is a model: even a small mapping of it is reported.
    mmap_small(&model);
    let mapped = sensor.wait_for("a mapping of the known model", EVENT_TIMEOUT, |e| about(e, "model_mapped", &model));
    assert_eq!(mapped["model_mapped"]["reasons"], serde_json::json!(["MATCH_REASON_KNOWN_MODEL"]));
    assert_eq!(mapped["model_mapped"]["artifact"]["sha256"], sha.as_str());

    // A pickle that runs os.system when loaded.
    open_close(&evil);
    let finding = sensor.wait_for("the malicious pickle finding", EVENT_TIMEOUT, |e| {
        about(e, "policy_finding", &evil) && e["policy_finding"]["finding"]["code"] == "pickle_malicious"
    });
    assert_eq!(finding["severity"], "SEVERITY_CRITICAL");
    assert_eq!(finding["policy_finding"]["artifact"]["pickle"], "PICKLE_VERDICT_MALICIOUS");
    assert_eq!(pid(&finding), Some(me));
    let ident =
        sensor.wait_for("the pickle's identification", EVENT_TIMEOUT, |e| about(e, "artifact_identified", &evil));
    let offending: Vec<&str> = ident["artifact_identified"]["pickle_offending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(offending.iter().any(|g| g.contains("system")), "{offending:?}");

    // A large file of no known format: a candidate (by size) that is not reported, then
    // filtered in the kernel.
    let blob_path = real(&blob);
    let not_reported =
        |log: &str| log.lines().filter(|l| l.contains("not reported") && l.contains(blob_path.as_str())).count();
    open_close(&blob);
    sensor.wait_for_log("the blob judged not a model", EVENT_TIMEOUT, |log| not_reported(log) == 1);
    open_close(&blob);
    // Until the file changes: this open for writing is still filtered, the open after the write
    // (new size, new ctime) is a candidate again.
    let mut f = std::fs::OpenOptions::new().append(true).open(&blob).unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    drop(f);
    open_close(&blob);
    sensor.wait_for_log("the changed blob judged again", EVENT_TIMEOUT, |log| not_reported(log) == 2);
    open_close(&marker);
    sensor.wait_for("marker", EVENT_TIMEOUT, |e| about(e, "model_file_opened", &marker));
    let log = sensor.stderr();
    let events = sensor.stop();
    // Judged twice (the first open, the open after the write); the open in between never left
    // the kernel. Never reported as a model event.
    assert_eq!(not_reported(&log), 2, "{log}");
    assert!(
        !events.iter().any(|e| about(e, "model_file_opened", &blob) || about(e, "artifact_identified", &blob)),
        "a file that is no model is no model event"
    );
}

/// A model that exists only in another mount namespace (a container's view) is read through
/// the opening process's root, not through the sensor's own view of the same path: here that
/// path holds a decoy, which must not be what gets identified.
#[test]
fn a_model_in_another_mount_namespace_is_read_through_the_process_root() {
    let dir = tempfile::tempdir().unwrap();
    let staged = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    std::fs::write(staged.path().join("model.data"), &bytes).unwrap();
    let model = dir.path().join("ns.gguf");
    std::fs::write(&model, b"a decoy in the sensor's namespace").unwrap();
    let decoy_ino = std::fs::metadata(&model).unwrap().ino();

    let mut sensor = RunningSensor::start("");
    // A private mount namespace with a tmpfs over `dir`: the model is copied in under a name
    // no probe matches and renamed, then the shell opens it and becomes `sleep` with the fd
    // still open, so its /proc root outlives the analysis.
    let script = format!(
        "mount -t tmpfs tmpfs {d} && cp {s}/model.data {d}/ns.data && mv {d}/ns.data {d}/ns.gguf && exec 3< {d}/ns.gguf && echo ready && exec sleep 60",
        d = dir.path().display(),
        s = staged.path().display()
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "the namespace was not set up");
    let opener = child.id();
    // stat(2), not a read: an open of the decoy would be reported and identified too.
    assert_eq!(std::fs::metadata(&model).unwrap().ino(), decoy_ino, "the mount leaked into this namespace");

    let ident = sensor.wait_for("the namespaced model's verified digest", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", &model)
            && e["artifact_identified"]["artifact"]["digest_state"] == "DIGEST_STATE_VERIFIED"
    });
    let _ = child.kill();
    let _ = child.wait();
    let a = &ident["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(a["artifact"]["sha256"], sha.as_str());
    assert_eq!(a["artifact"]["name"], "tiny-test-model");
    assert_eq!(pid(&ident), Some(opener), "the shell that opened it (unshare execs it in place)");
    let events = sensor.stop();
    // Other sensors of concurrent tests open it too, to analyse it: only the shell's counts.
    let opens: Vec<&Value> =
        events.iter().filter(|e| about(e, "model_file_opened", &model) && pid(e) == Some(opener)).collect();
    assert_eq!(opens.len(), 1, "one open by the namespaced shell: {opens:?}");
    assert_eq!(u64_of(&opens[0]["model_file_opened"]["file"]["size"]), bytes.len() as u64);
}

/// A model file gone before the collector could look it up is not analysed, and that is
/// reported as a loss of analysis rather than dropped silently. The collector is stopped so
/// the file is surely gone by the time it handles the open.
#[test]
fn a_model_gone_before_its_lookup_is_reported_as_not_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("short-lived.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let path = real(&model);
    let mut sensor = RunningSensor::start("");
    let signal = |sig| {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid() as i32, sig) }, 0, "{}", std::io::Error::last_os_error());
    };
    signal(libc::SIGSTOP);
    open_close(&model);
    std::fs::remove_file(&model).unwrap();
    signal(libc::SIGCONT);
    sensor.wait_for("the open", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened" && e["model_file_opened"]["file"]["path"] == path.as_str()
    });
    let lost = sensor.wait_for("the analysis reported as not done", EVENT_TIMEOUT, |e| {
        kind(e) == "events_lost" && e["events_lost"]["source"] == "LOSS_SOURCE_ANALYZER"
    });
    // Exactly this one file was not found (other processes on the machine may fail analyses
    // of their own at the same time: those are counted under other names).
    assert_eq!(lost["events_lost"]["by_kind"]["file_not_found"], "1", "{lost:#}");
    let events = sensor.stop();
    // Only for this process's open: another sensor on the machine may have held the file open
    // (to analyse it) when it was removed, and the file is then analysed through that process.
    let me = Some(std::process::id());
    assert!(
        !events.iter().any(|e| kind(e) == "artifact_identified"
            && e["artifact_identified"]["file"]["path"] == path.as_str()
            && pid(e) == me),
        "nothing was analysed"
    );
}
