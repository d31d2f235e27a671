//! On btrfs, stat(2) reports a per-subvolume device while the kernel knows files by their
//! superblock's: model directories, artifact identification and inode marks must still meet.
//! The test formats and loop-mounts a small btrfs image (btrfs-progs comes with
//! `cargo xtask test`) and works inside a subvolume.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, make_file, open_close, real, require_root};
use serde_json::Value;

/// A loop-mounted btrfs filesystem, unmounted on drop.
struct Btrfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Btrfs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
        sh(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        sh(Command::new("mount").args(["-t", "btrfs", "-o", "loop"]).arg(&img).arg(&mnt));
        Self { mnt, _dir: dir }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

#[test]
fn subvolume_files_are_matched_with_the_kernels_device() {
    require_root();
    let fs = Btrfs::new();
    let vol = fs.mnt.join("vol");
    sh(Command::new("btrfs").args(["-q", "subvolume", "create"]).arg(&vol));
    let models = vol.join("models");
    // Content-addressed: no extension, small, identified by its GGUF header.
    let blob = models.join("blobs/sha256-0123");
    let mut gguf = b"GGUF\x03\x00\x00\x00".to_vec();
    gguf.extend([0u8; 16]); // no tensors, no metadata
    make_file(&blob, &gguf, gguf.len() as u64);
    let big = vol.join("disk.img");
    make_file(&big, b"", 40 << 20);
    let marker = vol.join("marker.gguf");
    make_file(&marker, &gguf, gguf.len() as u64);
    // The premise: stat's device is not the superblock's here.
    let mounted = Command::new("findmnt").args(["-n", "-o", "MAJ:MIN"]).arg(&fs.mnt).output().unwrap();
    let sb_dev = String::from_utf8_lossy(&mounted.stdout).trim().to_owned();
    let st = std::fs::metadata(&blob).unwrap();
    assert_ne!(format!("{}:{}", libc::major(st.dev()), libc::minor(st.dev())), sb_dev);

    // The candidate gate logs what it does not report: how the image's judgement is seen.
    let mut sensor = RunningSensor::start_with(
        &format!("[files]\nmodel_dirs = [\"{}\"]\n", real(&models)),
        &["--log", "warn,modelwatch::sensor::candidates=debug"],
    );
    open_close(&blob);
    let opened = sensor.wait_for("the blob's open", EVENT_TIMEOUT, |e| about(e, "model_file_opened", &blob));
    assert_eq!(opened["model_file_opened"]["reasons"], serde_json::json!(["MATCH_REASON_MODEL_DIR"]));
    let ident = sensor.wait_for("the blob's identification", EVENT_TIMEOUT, |e| about(e, "artifact_identified", &blob));
    assert_eq!(ident["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");

    // Known not to be a model (judged, not reported): the second open is filtered in the
    // kernel, which needs the mark under the kernel's device number.
    let big_path = real(&big);
    let judged =
        |log: &str| log.lines().filter(|l| l.contains("not reported") && l.contains(big_path.as_str())).count();
    open_close(&big);
    sensor.wait_for_log("the image judged", EVENT_TIMEOUT, |log| judged(log) == 1);
    open_close(&big);
    open_close(&marker);
    sensor.wait_for("marker", EVENT_TIMEOUT, |e| about(e, "model_file_opened", &marker));
    let log = sensor.stderr();
    let events = sensor.stop();
    assert_eq!(judged(&log), 1, "the mark must reach the kernel under its device number");
    assert!(!events.iter().any(|e| about(e, "model_file_opened", &big)), "not a model: not reported");
}
