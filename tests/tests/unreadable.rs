//! What the sensor cannot read by name, it still analyses: a path deeper than the kernel's walk,
//! a name that is not UTF-8, a file unlinked right after its open, a memfd. Each is reached
//! through the descriptor or the mapping the event names (`/proc/<pid>/fd/<fd>`,
//! `/proc/<pid>/map_files/<start>-<end>`) or by its exact bytes, and identified by content.

use std::{
    ffi::{CString, OsStr},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use modelwatch_tests::{EVENT_TIMEOUT, EVIL_PICKLE, RunningSensor, base64, check, kind, pid, real, tiny_gguf, u64_of};
use serde_json::Value;

fn open_fd(path: &Path) -> i32 {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    check(i64::from(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }), "open") as i32
}

fn close(fd: i32) {
    // SAFETY: an fd this test opened.
    unsafe { libc::close(fd) };
}

fn identified_by_me(e: &Value) -> bool {
    kind(e) == "artifact_identified" && pid(e) == Some(std::process::id())
}

/// A path of 60 directories is deeper than the kernel rebuilds: the open is reported with a
/// truncated path, and the file is analysed through the descriptor the process holds.
#[test]
fn a_model_deeper_than_the_kernel_walk_is_identified_through_its_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = PathBuf::from(real(dir.path()));
    for i in 0..60 {
        deep.push(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let model = deep.join("deep-model.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let full = model.to_str().unwrap().to_owned();

    let mut sensor = RunningSensor::start("");
    let fd = open_fd(&model);
    let opened = sensor.wait_for("the open of the deep model", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened"
            && pid(e) == Some(std::process::id())
            && e["model_file_opened"]["fd"] == fd
            && e["model_file_opened"]["file"]["path"].as_str().is_some_and(|p| p.ends_with("d59/deep-model.gguf"))
    });
    assert_eq!(opened["model_file_opened"]["file"]["path_truncated"], true, "{opened:#}");
    let ident = sensor.wait_for("the deep model's identification", EVENT_TIMEOUT, |e| {
        identified_by_me(e)
            && e["artifact_identified"]["file"]["path"].as_str().is_some_and(|p| p.ends_with("deep-model.gguf"))
    });
    close(fd);
    let a = &ident["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(a["artifact"]["name"], "tiny-test-model");
    // The descriptor names the whole path: the identification carries it.
    assert_eq!(a["file"]["path"], full.as_str(), "{a:#}");
    assert_ne!(a["file"]["path_truncated"], true);
    sensor.stop();
}

/// A file name that is not UTF-8 is carried exactly (`path_bytes`), looked up by its exact
/// bytes, and identified.
#[test]
fn a_model_named_with_invalid_utf8_is_identified_and_its_name_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"model-\xff\xfe-\x1b.gguf");
    let model = PathBuf::from(real(dir.path())).join(name);
    std::fs::write(&model, tiny_gguf()).unwrap();
    let exact = base64(model.as_os_str().as_bytes());

    let mut sensor = RunningSensor::start("");
    modelwatch_tests::open_close(&model);
    let opened = sensor.wait_for("the open of the non-UTF-8 name", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened"
            && pid(e) == Some(std::process::id())
            && e["model_file_opened"]["file"]["path"].as_str().is_some_and(|p| p.contains("model-"))
    });
    assert_eq!(opened["model_file_opened"]["file"]["path_bytes"], exact.as_str(), "{opened:#}");
    let ident = sensor.wait_for("the identification", EVENT_TIMEOUT, |e| {
        identified_by_me(e) && e["artifact_identified"]["file"]["path"].as_str().is_some_and(|p| p.contains("model-"))
    });
    let a = &ident["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(a["file"]["path_bytes"], exact.as_str(), "{a:#}");
    sensor.stop();
}

/// A model unlinked right after its open, while the process keeps the descriptor and reads
/// through it afterwards, is analysed through that descriptor.
#[test]
fn a_model_unlinked_after_its_open_is_identified_through_the_open_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("vanishing.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let path = real(&model);

    let mut sensor = RunningSensor::start("");
    let fd = open_fd(&model);
    std::fs::remove_file(&model).unwrap();
    let ident = sensor.wait_for("the unlinked model's identification", EVENT_TIMEOUT, |e| {
        identified_by_me(e) && e["artifact_identified"]["file"]["path"].as_str().is_some_and(|p| p.starts_with(&path))
    });
    // The process goes on to read the weights it holds.
    let mut buf = [0u8; 4];
    // SAFETY: buf is writable for 4 bytes; fd is ours.
    assert_eq!(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 4, 0) }, 4);
    assert_eq!(&buf, b"GGUF");
    close(fd);
    let a = &ident["artifact_identified"];
    assert_eq!(a["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(a["artifact"]["name"], "tiny-test-model");
    sensor.stop();
}

/// Fills a memfd with `content` padded to `len`, maps all of it and closes the descriptor:
/// only the mapping keeps the content alive. Returns the mapping's address.
fn memfd_mapping(name: &str, content: &[u8], len: usize) -> usize {
    let cname = CString::new(name).unwrap();
    // SAFETY: plain syscalls on an fd this test owns; content is readable for its length.
    unsafe {
        let fd = check(i64::from(libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC)), "memfd_create") as i32;
        assert_eq!(libc::write(fd, content.as_ptr().cast(), content.len()), content.len() as isize);
        check(i64::from(libc::ftruncate(fd, len as i64)), "ftruncate");
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        assert_ne!(addr, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        libc::close(fd);
        addr as usize
    }
}

/// A model that lives only in memory: a memfd holding a GGUF, and one holding a malicious
/// pickle, each mapped (the kernel reports a memfd by its mapping's size; its name is not a
/// path) and then closed. Both are identified through the mapping; the pickle is judged.
#[test]
fn models_in_a_memfd_are_identified_through_their_mapping() {
    let len = 64usize << 20;
    let mut sensor = RunningSensor::start("");
    let gguf_at = memfd_mapping("mw-weights.gguf", &tiny_gguf(), len);
    let pickle_at = memfd_mapping("mw-evil.pkl", EVIL_PICKLE, len);
    for (at, name) in [(gguf_at, "memfd:mw-weights.gguf"), (pickle_at, "memfd:mw-evil.pkl")] {
        let e = sensor.wait_for("the memfd mapping", EVENT_TIMEOUT, |e| {
            kind(e) == "model_mapped"
                && pid(e) == Some(std::process::id())
                && u64_of(&e["model_mapped"]["address"]) == at as u64
        });
        assert_eq!(e["model_mapped"]["file"]["path"], name, "{e:#}");
    }
    let ident = sensor.wait_for("the memfd GGUF's identification", EVENT_TIMEOUT, |e| {
        identified_by_me(e) && e["artifact_identified"]["file"]["path"] == "memfd:mw-weights.gguf"
    });
    assert_eq!(ident["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(ident["artifact_identified"]["artifact"]["name"], "tiny-test-model");
    let finding = sensor.wait_for("the memfd pickle's finding", EVENT_TIMEOUT, |e| {
        kind(e) == "policy_finding"
            && pid(e) == Some(std::process::id())
            && e["policy_finding"]["file"]["path"] == "memfd:mw-evil.pkl"
    });
    assert_eq!(finding["policy_finding"]["finding"]["code"], "pickle_malicious", "{finding:#}");
    // SAFETY: the mappings this test made.
    unsafe {
        libc::munmap(gguf_at as *mut libc::c_void, len);
        libc::munmap(pickle_at as *mut libc::c_void, len);
    }
    sensor.stop();
}
