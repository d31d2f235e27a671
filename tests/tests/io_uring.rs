//! io_uring and open_by_handle_at are doors to a file that are not the open(2) family: opens
//! through them are reported like syscall opens, and reads of model files through io_uring
//! are counted as model reads.

use std::{ffi::CString, path::Path};

use io_uring::{IoUring, opcode, squeue, types};
use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, pid, real, require_root, tiny_gguf, u64_of};
use serde_json::Value;

/// Model extensions only: nothing else on the machine (large build products of other work)
/// keeps the analyzer busy.
const CONFIG: &str = "[files]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\n";

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

/// Submits one entry and returns its completion's result.
fn complete(ring: &mut IoUring, entry: &squeue::Entry) -> i32 {
    // SAFETY: every buffer and path the entry points to outlives this call, which waits for
    // the completion.
    unsafe { ring.submission().push(entry).expect("submission queue full") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    cqe.result()
}

/// Bytes of io_uring reads of `path` by this process, over every model_read event so far.
fn read_bytes(events: &[Value], path: &Path) -> u64 {
    events
        .iter()
        .filter(|e| about(e, "model_read", path) && pid(e) == Some(std::process::id()))
        .map(|e| u64_of(&e["model_read"]["bytes"]))
        .sum()
}

fn expect_open_and_read(sensor: &mut RunningSensor, path: &Path, syscall: &str, read: u64) {
    let me = std::process::id();
    let open = sensor.wait_for("the io_uring open", EVENT_TIMEOUT, |e| {
        about(e, "model_file_opened", path) && pid(e) == Some(me) && e["model_file_opened"]["syscall"] == syscall
    });
    let o = &open["model_file_opened"];
    assert_eq!(o["access"], "read", "{open:#}");
    assert_eq!(o["reasons"], serde_json::json!(["MATCH_REASON_EXTENSION"]), "{open:#}");
    sensor.wait_for("the model's identification", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", path)
            && e["artifact_identified"]["artifact"]["format"] == "ARTIFACT_FORMAT_GGUF"
    });
    sensor.wait_until("the io_uring reads counted", EVENT_TIMEOUT, |evs| read_bytes(evs, path) >= read);
    let events = sensor.events();
    let reads: Vec<&Value> = events.iter().filter(|e| about(e, "model_read", path)).collect();
    assert!(reads.iter().all(|e| e["model_read"]["via"] == "io_uring"), "{reads:#?}");
}

/// IORING_OP_OPENAT into the process's fd table, then IORING_OP_READ of the whole model.
#[test]
fn io_uring_opens_and_reads_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ring.gguf");
    let bytes = tiny_gguf();
    std::fs::write(&model, &bytes).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let c = CString::new(model.as_os_str().as_encoded_bytes()).unwrap();
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build()
        .user_data(1);
    let fd = complete(&mut ring, &open);
    assert!(fd >= 0, "IORING_OP_OPENAT: {}", std::io::Error::from_raw_os_error(-fd));
    let mut buf = vec![0u8; bytes.len()];
    let read = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build().user_data(2);
    let n = complete(&mut ring, &read);
    assert_eq!(n, bytes.len() as i32, "IORING_OP_READ");
    assert_eq!(buf, bytes);
    // SAFETY: the fd the ring opened for us.
    unsafe { libc::close(fd) };
    expect_open_and_read(&mut sensor, &model, "io_uring", n as u64);
    sensor.stop();
}

/// An open into the ring's own file table (a fixed file: no fd in the process's table), then
/// a read through that fixed file.
#[test]
fn io_uring_fixed_file_opens_and_reads_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("fixed.gguf");
    let bytes = tiny_gguf();
    std::fs::write(&model, &bytes).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    ring.submitter().register_files_sparse(4).expect("IORING_REGISTER_FILES_SPARSE");
    let c = CString::new(model.as_os_str().as_encoded_bytes()).unwrap();
    let slot = types::DestinationSlot::try_from_slot_target(2).expect("slot");
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_RDONLY)
        .file_index(Some(slot))
        .build()
        .user_data(1);
    let rc = complete(&mut ring, &open);
    assert_eq!(rc, 0, "IORING_OP_OPENAT into a fixed slot: {}", std::io::Error::from_raw_os_error(-rc));
    let mut buf = vec![0u8; bytes.len()];
    let read = opcode::Read::new(types::Fixed(2), buf.as_mut_ptr(), buf.len() as u32).build().user_data(2);
    let n = complete(&mut ring, &read);
    assert_eq!(n, bytes.len() as i32, "IORING_OP_READ of a fixed file");
    expect_open_and_read(&mut sensor, &model, "io_uring", n as u64);
    sensor.stop();
}

/// `struct file_handle` with room for any filesystem's handle (MAX_HANDLE_SZ is 128).
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

/// name_to_handle_at, then open_by_handle_at (root: it needs CAP_DAC_READ_SEARCH).
#[test]
fn open_by_handle_at_is_reported() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("handle.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let c = CString::new(model.as_os_str().as_encoded_bytes()).unwrap();
    let mut handle = FileHandle { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id = 0i32;
    // SAFETY: a valid path, a handle buffer of the size it declares, a live mount id.
    let rc = unsafe {
        libc::syscall(libc::SYS_name_to_handle_at, libc::AT_FDCWD, c.as_ptr(), &raw mut handle, &raw mut mount_id, 0)
    };
    assert_eq!(rc, 0, "name_to_handle_at: {}", std::io::Error::last_os_error());
    let mount = std::fs::File::open(dir.path()).unwrap();
    // SAFETY: a directory fd on the same filesystem and the handle the kernel gave us.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            std::os::fd::AsRawFd::as_raw_fd(&mount),
            &raw const handle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    assert!(fd >= 0, "open_by_handle_at: {}", std::io::Error::last_os_error());
    // SAFETY: the fd we just got.
    unsafe { libc::close(fd as i32) };
    let me = std::process::id();
    let open = sensor
        .wait_for("the open by handle", EVENT_TIMEOUT, |e| about(e, "model_file_opened", &model) && pid(e) == Some(me));
    assert_eq!(open["model_file_opened"]["syscall"], "open_by_handle_at", "{open:#}");
    assert_eq!(u64_of(&open["model_file_opened"]["fd"]), fd as u64);
    sensor.wait_for("the model's identification", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", &model)
            && e["artifact_identified"]["artifact"]["format"] == "ARTIFACT_FORMAT_GGUF"
    });
    sensor.stop();
}

/// A model known only by its content (no extension, no model directory) is not a read
/// candidate until the sensor identifies it; from then on its io_uring reads count, even
/// through an fd whose earlier reads were judged before it was known.
#[test]
fn io_uring_reads_of_a_model_identified_later_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob-0123");
    let bytes = tiny_gguf();
    std::fs::write(&blob, &bytes).unwrap();
    let link = dir.path().join("model.gguf");
    std::os::unix::fs::symlink(&blob, &link).unwrap();
    let mut sensor = RunningSensor::start(CONFIG);
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let c = CString::new(blob.as_os_str().as_encoded_bytes()).unwrap();
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr()).flags(libc::O_RDONLY).build();
    let fd = complete(&mut ring, &open);
    assert!(fd >= 0, "IORING_OP_OPENAT: {}", std::io::Error::from_raw_os_error(-fd));
    let mut buf = vec![0u8; bytes.len()];
    let read = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).offset(0).build();
    assert_eq!(complete(&mut ring, &read), bytes.len() as i32);
    // Opened under a model name: reported, identified, marked a model.
    modelwatch_tests::open_close(&link);
    sensor.wait_for("the blob identified by content", EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", &blob)
            && e["artifact_identified"]["artifact"]["format"] == "ARTIFACT_FORMAT_GGUF"
    });
    assert_eq!(complete(&mut ring, &read), bytes.len() as i32);
    sensor.wait_until("the read after the identification counted", EVENT_TIMEOUT, |evs| {
        read_bytes(evs, &blob) >= bytes.len() as u64
    });
    // SAFETY: the fd the ring opened for us.
    unsafe { libc::close(fd) };
    let events = sensor.stop();
    assert_eq!(read_bytes(&events, &blob), bytes.len() as u64, "the read before it was known is not counted");
}
