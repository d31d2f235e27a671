//! A verdict is bound to the content it was about. "Not a model" (the kernel's filter) and
//! "this pickle is safe" (the collector's per-file cache) must not outlive an in-place rewrite
//! of the same size, however the rewrite was done: a fresh write open within the same
//! timestamp tick, a write fd held open from before the verdict, or a write that changes no
//! timestamp at all (XFS's open-by-handle, which sets FMODE_NOCMTIME: the only way to get
//! O_NOCMTIME semantics from user space).

use std::{
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use modelwatch_tests::{
    EVENT_TIMEOUT, RunningSensor, benign_pickle, ctime, evil_pickle, kind, open_close, overwrite, plain_text, real,
    require_root, write_at_second_start,
};
use serde_json::Value;

/// Attempts per test: a slow analysis can push the rewrite into the next second, which would
/// not test the same-tick case; the attempt is then repeated with a fresh file.
const ATTEMPTS: usize = 5;

/// Only `.pkl` files are reportable, so the analyzer is not kept busy by large files of other
/// work on the machine (build products) and verdicts come within milliseconds. The benign
/// pickles are no models: `report_non_models` makes their verdict an event to wait for.
const FILES: &str =
    "[files]\nextensions = [\".pkl\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nreport_non_models = true\n";

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

fn read_opens(events: &[Value], path: &Path) -> usize {
    events.iter().filter(|e| about(e, "model_file_opened", path) && e["model_file_opened"]["access"] == "read").count()
}

/// Waits for the collector's verdict that `path` holds no model (the kernel filters its later
/// opens from then on), and returns when it was published: the open, held until the verdict,
/// goes out with it (no `artifact_identified` is announced for what is not a model).
fn wait_not_a_model(sensor: &mut RunningSensor, path: &Path) {
    sensor.wait_for("the 'not a model' verdict", EVENT_TIMEOUT, |e| {
        about(e, "model_file_opened", path)
            && matches!(
                e["model_file_opened"]["artifact"]["format"].as_str(),
                Some("ARTIFACT_FORMAT_NOT_A_MODEL" | "ARTIFACT_FORMAT_UNKNOWN")
            )
    });
}

/// After the rewrite: the next read open is reported, and the new content is identified.
fn expect_new_content_seen(sensor: &mut RunningSensor, path: &Path, opens_before: usize) {
    sensor.wait_until("the open after the rewrite", EVENT_TIMEOUT, |evs| read_opens(evs, path) > opens_before);
    let finding = sensor.wait_for("the rewritten file's malicious pickle finding", EVENT_TIMEOUT, |e| {
        about(e, "policy_finding", path) && e["policy_finding"]["finding"]["code"] == "pickle_malicious"
    });
    assert_eq!(finding["policy_finding"]["artifact"]["pickle"], "PICKLE_VERDICT_MALICIOUS");
}

fn files(dir: &Path, name: &str, content: &[u8]) -> Vec<PathBuf> {
    (0..ATTEMPTS)
        .map(|i| {
            let p = dir.join(format!("{i}-{name}"));
            std::fs::write(&p, content).unwrap();
            p
        })
        .collect()
}

/// Text, judged "not a model", then rewritten in place with a malicious pickle of the same
/// size within the same second (fresh write opens, as an editor or `cp` over it would).
#[test]
fn a_same_size_rewrite_within_one_second_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let paths = files(dir.path(), "notes.pkl", &plain_text());
    let mut sensor = RunningSensor::start(FILES);
    for path in &paths {
        let write = || std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let before = write_at_second_start(path, || overwrite(&write(), &plain_text()));
        open_close(path);
        wait_not_a_model(&mut sensor, path);
        let opens = read_opens(&sensor.events(), path);
        overwrite(&write(), &evil_pickle());
        if ctime(path).0 != before.0 {
            eprintln!("the analysis took us into the next second; again with a fresh file");
            continue;
        }
        open_close(path);
        expect_new_content_seen(&mut sensor, path, opens);
        return;
    }
    panic!("no attempt rewrote the file within the second of its verdict");
}

/// The writer opened its fd before the verdict and keeps it: nothing about the rewrite is an
/// open the kernel could see.
#[test]
fn a_rewrite_through_a_write_fd_held_from_before_the_verdict_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let paths = files(dir.path(), "held.pkl", &plain_text());
    let writers: Vec<std::fs::File> =
        paths.iter().map(|p| std::fs::OpenOptions::new().write(true).open(p).unwrap()).collect();
    let mut sensor = RunningSensor::start(FILES);
    for (path, writer) in paths.iter().zip(&writers) {
        let before = write_at_second_start(path, || overwrite(writer, &plain_text()));
        open_close(path);
        wait_not_a_model(&mut sensor, path);
        let opens = read_opens(&sensor.events(), path);
        overwrite(writer, &evil_pickle());
        if ctime(path).0 != before.0 {
            eprintln!("the analysis took us into the next second; again with a fresh file");
            continue;
        }
        open_close(path);
        expect_new_content_seen(&mut sensor, path, opens);
        return;
    }
    panic!("no attempt rewrote the file within the second of its verdict");
}

/// A loop-mounted XFS filesystem (xfsprogs comes with `cargo xtask test`), unmounted on drop.
struct Xfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Xfs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        // mkfs.xfs wants at least 300 MiB; the image is sparse.
        std::fs::File::create(&img).unwrap().set_len(320 << 20).unwrap();
        sh(Command::new("mkfs.xfs").arg("-q").arg(&img));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        sh(Command::new("mount").args(["-t", "xfs", "-o", "loop"]).arg(&img).arg(&mnt));
        Self { mnt, _dir: dir }
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `struct xfs_fsop_handlereq` (xfs_fs.h).
#[repr(C)]
struct HandleReq {
    fd: u32,
    path: *const libc::c_char,
    oflags: u32,
    ihandle: *const u8,
    ihandlen: u32,
    ohandle: *mut u8,
    ohandlen: *mut u32,
}

const fn xfs_iowr(nr: u64) -> u64 {
    (3 << 30) | ((size_of::<HandleReq>() as u64) << 16) | ((b'X' as u64) << 8) | nr
}
const XFS_IOC_PATH_TO_HANDLE: u64 = xfs_iowr(105);
const XFS_IOC_OPEN_BY_HANDLE: u64 = xfs_iowr(107);

/// Opens `path` for writing through XFS's handle interface: the fd carries FMODE_NOCMTIME, so
/// its writes change neither ctime nor mtime (nor i_version).
fn open_invisible_writer(path: &Path) -> std::fs::File {
    use std::os::fd::FromRawFd as _;
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut handle = [0u8; 64];
    let mut len = handle.len() as u32;
    let mut req = HandleReq {
        fd: 0,
        path: c.as_ptr(),
        oflags: 0,
        ihandle: std::ptr::null(),
        ihandlen: 0,
        ohandle: handle.as_mut_ptr(),
        ohandlen: &raw mut len,
    };
    let dfd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    // SAFETY: req points to live buffers of the lengths given.
    let rc = unsafe { libc::ioctl(dfd, XFS_IOC_PATH_TO_HANDLE as _, &raw mut req) };
    assert_eq!(rc, 0, "XFS_IOC_PATH_TO_HANDLE: {}", std::io::Error::last_os_error());
    let mut req = HandleReq {
        fd: 0,
        path: std::ptr::null(),
        oflags: libc::O_RDWR as u32,
        ihandle: handle.as_ptr(),
        ihandlen: len,
        ohandle: std::ptr::null_mut(),
        ohandlen: std::ptr::null_mut(),
    };
    // SAFETY: as above; the ioctl returns a new fd.
    let fd = unsafe { libc::ioctl(dfd, XFS_IOC_OPEN_BY_HANDLE as _, &raw mut req) };
    assert!(fd >= 0, "XFS_IOC_OPEN_BY_HANDLE: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd we own.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// A rewrite that leaves every timestamp as it was: nothing the old cache compared changes.
#[test]
fn a_rewrite_that_changes_no_timestamp_is_seen() {
    require_root();
    let fs = Xfs::new();
    let path = fs.mnt.join("invisible.pkl");
    std::fs::write(&path, plain_text()).unwrap();
    let mut sensor = RunningSensor::start(FILES);
    open_close(&path);
    wait_not_a_model(&mut sensor, &path);
    let opens = read_opens(&sensor.events(), &path);
    let before = ctime(&path);
    let writer = open_invisible_writer(&path);
    overwrite(&writer, &evil_pickle());
    drop(writer);
    assert_eq!(ctime(&path), before, "the handle's writes must not touch ctime (FMODE_NOCMTIME)");
    assert_eq!(std::fs::read(&path).unwrap(), evil_pickle());
    open_close(&path);
    expect_new_content_seen(&mut sensor, &path, opens);
}

/// The collector's own cache: a benign pickle judged safe, then overwritten in place with a
/// malicious one of the same size, is judged again when opened (the kernel reports every open
/// here, so only the collector's reuse of its verdict is under test).
#[test]
fn a_pickle_swapped_in_place_is_judged_again() {
    let dir = tempfile::tempdir().unwrap();
    let paths = files(dir.path(), "weights.pkl", &benign_pickle());
    let mut sensor = RunningSensor::start(&format!("{FILES}suppress_known_non_models = false\n"));
    for path in &paths {
        open_close(path);
        sensor.wait_for("the benign pickle judged safe", EVENT_TIMEOUT, |e| {
            about(e, "artifact_identified", path)
                && e["artifact_identified"]["artifact"]["pickle"] == "PICKLE_VERDICT_SAFE"
        });
        let judged = Instant::now();
        let opens = read_opens(&sensor.events(), path);
        let writer = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(path).unwrap();
        overwrite(&writer, &evil_pickle());
        drop(writer);
        if judged.elapsed() > Duration::from_millis(1500) {
            eprintln!("the swap came late (the old cache trusted a verdict for 2 s); again with a fresh file");
            continue;
        }
        open_close(path);
        expect_new_content_seen(&mut sensor, path, opens);
        return;
    }
    panic!("no attempt swapped the pickle soon enough after its verdict");
}
