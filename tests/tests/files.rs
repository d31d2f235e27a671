//! Model-file opens and mappings, end to end: real probes, real syscalls, exact events.

use std::{os::unix::fs::MetadataExt as _, path::Path, time::Duration};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, make_file, open_close, pid, real, u64_of};
use serde_json::Value;

/// These tests check the kernel's match rules, so the collector's verdicts must not feed back
/// into the kernel: a file of no known format would otherwise be filtered as soon as it is
/// identified, which can land between a test's open and its mmap. That filter has its own test
/// in `artifacts.rs`. For the same reason they report candidates whatever their content
/// (`report_non_models`), and without the widening to every file of a process that loaded a
/// model (this test process loads some): that content and processes decide what is reported
/// is the subject of `workday.rs`, `engines.rs` and `runtime.rs`.
const CONFIG: &str = "[files]\nsize_threshold = \"32MiB\"\nsuppress_known_non_models = false\nreport_non_models = true\nruntime_process_opens_per_sec = 0\n";

fn opened_path(e: &Value) -> &str {
    e["model_file_opened"]["file"]["path"].as_str().unwrap_or("")
}

fn reasons(e: &Value, payload: &str) -> Vec<String> {
    e[payload]["reasons"]
        .as_array()
        .map(|a| a.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn model_file_opens_are_reported_with_absolute_path_pid_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("x.gguf");
    make_file(&gguf, b"GGUF\x03\x00\x00\x00", 8192);
    let gguf_real = real(&gguf);
    let small = dir.path().join("notes.txt");
    make_file(&small, b"just text", 9);
    let sparse = dir.path().join("blob-without-extension");
    make_file(&sparse, b"", 64 << 20);
    let marker = dir.path().join("marker.onnx");
    make_file(&marker, b"", 1);

    let mut sensor = RunningSensor::start(CONFIG);
    let me = std::process::id();

    // By absolute path.
    open_close(&gguf);
    let abs = sensor.wait_for("open of x.gguf by absolute path", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened" && pid(e) == Some(me) && opened_path(e) == gguf_real
    });
    let file = &abs["model_file_opened"]["file"];
    assert_eq!(u64_of(&file["size"]), 8192);
    assert_eq!(u64_of(&file["inode"]), std::fs::metadata(&gguf).unwrap().ino());
    assert_eq!(u64_of(&file["device"]), std::fs::metadata(&gguf).unwrap().dev());
    assert_eq!(abs["model_file_opened"]["access"], "read");
    assert_eq!(abs["model_file_opened"]["syscall"], "openat");
    assert!(reasons(&abs, "model_file_opened").contains(&"MATCH_REASON_EXTENSION".to_owned()), "{abs}");
    assert_eq!(abs["process"]["exe"].as_str().unwrap(), real(&std::env::current_exe().unwrap()));
    assert!(abs["process"]["entity_id"].as_str().unwrap().len() == 32);

    // By a name relative to a directory fd: the event still carries the absolute path, and
    // the name as passed.
    let dirc = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let dfd = unsafe { libc::open(dirc.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(dfd >= 0);
    let name = std::ffi::CString::new("x.gguf").unwrap();
    let fd = unsafe { libc::openat(dfd, name.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    unsafe {
        libc::close(fd);
        libc::close(dfd);
    }
    let rel = sensor.wait_for("open of x.gguf by relative path", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened"
            && pid(e) == Some(me)
            && e["model_file_opened"]["file"]["requested_path"] == "x.gguf"
    });
    assert_eq!(opened_path(&rel), gguf_real);
    assert_eq!(u64_of(&rel["model_file_opened"]["fd"]), fd as u64);

    // Extensionless, sparse, above the threshold.
    open_close(&sparse);
    let big = sensor.wait_for("open of a large extensionless file", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened" && pid(e) == Some(me) && opened_path(e) == real(&sparse)
    });
    assert_eq!(u64_of(&big["model_file_opened"]["file"]["size"]), 64 << 20);
    assert_eq!(reasons(&big, "model_file_opened"), ["MATCH_REASON_SIZE"]);

    // A small non-model file, then a marker: once the marker arrives, anything about the
    // small file would have arrived before it (the ring buffer is ordered).
    open_close(&small);
    open_close(&marker);
    sensor
        .wait_for("marker open", EVENT_TIMEOUT, |e| kind(e) == "model_file_opened" && opened_path(e) == real(&marker));
    let events = sensor.stop();
    assert!(events.iter().all(|e| opened_path(e) != real(&small)), "small text file was reported");
    // Exactly one event per open of x.gguf (two opens).
    let mine: Vec<&Value> = events
        .iter()
        // Other tests' sensors (this binary runs tests side by side) open the file too, to
        // analyse it: only this process's opens count.
        .filter(|e| {
            kind(e) == "model_file_opened"
                && pid(e) == Some(me)
                && e["model_file_opened"]["file"]["inode"] == abs["model_file_opened"]["file"]["inode"]
        })
        .collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert!(mine.iter().all(|e| opened_path(e) == gguf_real), "{mine:#?}");
}

#[test]
fn symlinked_content_addressed_store_reports_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub/models--acme--tiny");
    let digest = "4f1d2c3b".repeat(8);
    let blob = hub.join("blobs").join(&digest);
    make_file(&blob, b"{\"__metadata__\":{}}", 4096);
    let snap = hub.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    let link = snap.join("model.safetensors");
    std::os::unix::fs::symlink(format!("../../blobs/{digest}"), &link).unwrap();

    let mut sensor = RunningSensor::start(CONFIG);
    open_close(&link);
    let e = sensor.wait_for("open through the snapshot symlink", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened" && opened_path(e) == real(&blob)
    });
    assert_eq!(e["model_file_opened"]["file"]["requested_path"].as_str().unwrap(), link.to_str().unwrap());
    assert_eq!(reasons(&e, "model_file_opened"), ["MATCH_REASON_REQUESTED_EXTENSION"]);
    sensor.stop();
}

fn mmap_file(path: &Path, len: usize, prot: i32, flags: i32) -> usize {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    assert_ne!(addr, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    unsafe {
        libc::munmap(addr, len);
        libc::close(fd);
    }
    addr as usize
}

#[test]
fn large_mappings_are_reported_small_and_anonymous_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.bin.part");
    make_file(&weights, b"", 1 << 30);
    let small = dir.path().join("small.dat");
    make_file(&small, b"x", 4096);
    let marker = dir.path().join("marker.pt");
    make_file(&marker, b"", 1);

    let mut sensor = RunningSensor::start(CONFIG);
    let me = std::process::id();
    let addr = mmap_file(&weights, 1 << 30, libc::PROT_READ, libc::MAP_PRIVATE);
    let e = sensor.wait_for("mmap of a 1 GiB file", EVENT_TIMEOUT, |e| {
        kind(e) == "model_mapped" && pid(e) == Some(me) && e["model_mapped"]["file"]["path"] == real(&weights).as_str()
    });
    let m = &e["model_mapped"];
    assert_eq!(u64_of(&m["length"]), 1 << 30);
    assert_eq!(u64_of(&m["address"]), addr as u64);
    assert_eq!(u64_of(&m["prot"]), libc::PROT_READ as u64);
    assert_eq!(u64_of(&m["flags"]), libc::MAP_PRIVATE as u64);
    assert_eq!(u64_of(&m["offset"]), 0);
    assert_eq!(reasons(&e, "model_mapped"), ["MATCH_REASON_SIZE", "MATCH_REASON_MAPPING_LENGTH"]);

    // Small file mapping and an anonymous mapping: nothing.
    mmap_file(&small, 4096, libc::PROT_READ, libc::MAP_SHARED);
    let anon = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            64 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(anon, libc::MAP_FAILED);
    unsafe { libc::munmap(anon, 64 << 20) };
    open_close(&marker);
    sensor.wait_for("marker", EVENT_TIMEOUT, |e| opened_path(e) == real(&marker));
    let events = sensor.stop();
    // Tests run as threads of one process: only mappings of this test's files count.
    let ours = [real(&weights), real(&small)];
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "model_mapped" && ours.iter().any(|p| e["model_mapped"]["file"]["path"] == p.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
}

#[test]
fn the_sensor_never_reports_itself() {
    let mut sensor = RunningSensor::start(CONFIG);
    let sensor_pid = sensor.pid();
    // Give it time to do its own work (seeding /proc, draining, rescans).
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("m.gguf");
    make_file(&marker, b"", 1);
    std::thread::sleep(Duration::from_millis(1500));
    open_close(&marker);
    sensor.wait_for("marker", EVENT_TIMEOUT, |e| opened_path(e) == real(&marker));
    let events = sensor.stop();
    assert!(!events.is_empty());
    let own: Vec<&Value> = events.iter().filter(|e| pid(e) == Some(sensor_pid)).collect();
    assert!(own.is_empty(), "the sensor reported its own activity: {own:#?}");
}

/// The entry-stash path (what kernels whose syscall exit clobbers the argument registers get)
/// reports the same opens and mappings.
#[test]
fn stashed_arguments_path_reports_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("stash.gguf");
    make_file(&gguf, b"GGUF", 4096);
    let weights = dir.path().join("weights.raw");
    make_file(&weights, b"", 64 << 20);
    let mut sensor = RunningSensor::start_env(CONFIG, &[("MODELWATCH_ARGS", "stash")]);
    let me = std::process::id();
    let attached = sensor.events().into_iter().find(|e| kind(e) == "sensor_health").unwrap();
    let probes: Vec<&str> =
        attached["sensor_health"]["probes_attached"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(probes.contains(&"syscalls/sys_enter_openat"), "stash mode attaches the entry programs: {probes:?}");
    open_close(&gguf);
    let e = sensor.wait_for("open in stash mode", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened" && pid(e) == Some(me) && opened_path(e) == real(&gguf)
    });
    assert_eq!(e["model_file_opened"]["syscall"], "openat");
    assert_eq!(u64_of(&e["model_file_opened"]["file"]["size"]), 4096);
    mmap_file(&weights, 64 << 20, libc::PROT_READ, libc::MAP_SHARED);
    let m = sensor.wait_for("mmap in stash mode", EVENT_TIMEOUT, |e| {
        kind(e) == "model_mapped" && pid(e) == Some(me) && e["model_mapped"]["file"]["path"] == real(&weights).as_str()
    });
    assert_eq!(u64_of(&m["model_mapped"]["length"]), 64 << 20);
    assert_eq!(u64_of(&m["model_mapped"]["flags"]), libc::MAP_SHARED as u64);
    sensor.stop();
}

/// openat2(2)'s argument block (not in every libc release, so declared here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// open(2), creat(2) and openat2(2), issued as raw syscalls (libc would route them through
/// openat), are reported with their own name and flags, with arguments from the saved
/// registers and from the entry stash alike.
#[test]
fn every_open_syscall_is_reported_with_its_name_and_flags() {
    for mode in ["regs", "stash"] {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("legacy.gguf");
        make_file(&legacy, b"GGUF", 64);
        let created = dir.path().join("created.safetensors");
        let two = dir.path().join("two.onnx");
        make_file(&two, b"", 64);
        let mut sensor = RunningSensor::start_env(CONFIG, &[("MODELWATCH_ARGS", mode)]);
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let (c_legacy, c_created, c_two) = (c(&legacy), c(&created), c(&two));
        let how = OpenHow { flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64, mode: 0, resolve: 0 };
        // SAFETY: valid NUL-terminated paths and a live open_how of the size passed.
        let fds = unsafe {
            [
                libc::syscall(libc::SYS_open, c_legacy.as_ptr(), libc::O_RDONLY),
                libc::syscall(libc::SYS_creat, c_created.as_ptr(), 0o600),
                libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, c_two.as_ptr(), &raw const how, size_of::<OpenHow>()),
            ]
        };
        for fd in fds {
            assert!(fd >= 0, "{mode}: {}", std::io::Error::last_os_error());
            // SAFETY: fd was just opened by us.
            unsafe { libc::close(fd as i32) };
        }
        let expected = [
            (real(&legacy), "open", libc::O_RDONLY as u64),
            (real(&created), "creat", (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64),
            (real(&two), "openat2", (libc::O_RDONLY | libc::O_CLOEXEC) as u64),
        ];
        for (path, syscall, flags) in expected {
            let e = sensor.wait_for(&format!("{syscall} in {mode} mode"), EVENT_TIMEOUT, |e| opened_path(e) == path);
            let o = &e["model_file_opened"];
            assert_eq!(o["syscall"], syscall, "{mode}: {path}");
            assert_eq!(u64_of(&o["flags"]), flags, "{mode}: {path}");
            assert_eq!(pid(&e), Some(std::process::id()));
        }
        sensor.stop();
    }
}

/// A model loaded into a memfd (no file on disk) is reported under the memfd's name, without a
/// leading slash: it lives on no mounted filesystem.
#[test]
fn memfd_mappings_are_reported_by_their_name() {
    let mut sensor = RunningSensor::start(CONFIG);
    let name = std::ffi::CString::new("mw-weights.gguf").unwrap();
    let len = 64usize << 20;
    // SAFETY: plain syscalls on an fd this test owns.
    let (fd, ptr) = unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        assert_eq!(libc::ftruncate(fd, len as i64), 0);
        let ptr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        assert_ne!(ptr, libc::MAP_FAILED);
        (fd, ptr)
    };
    let addr = ptr as u64;
    let e = sensor.wait_for("the memfd mapping", EVENT_TIMEOUT, |e| {
        kind(e) == "model_mapped" && u64_of(&e["model_mapped"]["address"]) == addr && pid(e) == Some(std::process::id())
    });
    // Kept open until it was judged: whether a closed memfd can still be read would be a race.
    // SAFETY: the mapping and the fd made above.
    unsafe {
        libc::munmap(ptr, len);
        libc::close(fd);
    }
    let m = &e["model_mapped"];
    assert_eq!(m["file"]["path"], "memfd:mw-weights.gguf", "{m:#}");
    assert_eq!(u64_of(&m["length"]), len as u64);
    // Its content (zeros) was read and is of no known format: reported as it is
    // (`report_non_models`), not as unidentified.
    assert_eq!(reasons(&e, "model_mapped"), ["MATCH_REASON_SIZE", "MATCH_REASON_MAPPING_LENGTH"]);
    sensor.stop();
}
