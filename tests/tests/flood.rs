//! A flood of model-named opens by one unprivileged user does not starve anyone else: while
//! the flood fills the collector's queues, a model another user opens is still identified, and
//! the loss report names the process and user that flooded.

use std::{ffi::CString, os::unix::fs::PermissionsExt as _, path::Path};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, check, kind, open_close, real, tiny_gguf, u64_of};

/// Distinct model-named files the flooder opens.
const FLOOD: usize = 6000;
const NOBODY: u32 = 65534;

#[test]
fn a_flood_by_one_user_does_not_keep_another_users_model_from_being_identified() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let flood_dir = dir.path().join("flood");
    std::fs::create_dir(&flood_dir).unwrap();
    std::fs::set_permissions(&flood_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let names: Vec<CString> = (0..FLOOD)
        .map(|i| {
            let p = flood_dir.join(format!("f{i}.gguf"));
            std::fs::write(&p, b"not a model").unwrap();
            CString::new(p.to_str().unwrap()).unwrap()
        })
        .collect();
    let model = dir.path().join("root-model.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let model_path = real(&model);

    let sensor = RunningSensor::start("[sensor]\nring_buffer_kib = 32768\n");
    let signal = |sig| {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid() as i32, sig) }, 0, "{}", std::io::Error::last_os_error());
    };
    // The collector is stopped while the kernel queues the flood and, behind it, root's open:
    // when it resumes, it meets them in that order, as it would under a flood it cannot keep
    // up with.
    signal(libc::SIGSTOP);
    // SAFETY: the child only makes async-signal-safe calls (setgid, setuid, open, close,
    // _exit) on memory prepared before the fork.
    let flooder = unsafe {
        let child = libc::fork();
        if child == 0 {
            if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                libc::_exit(2);
            }
            for name in &names {
                let fd = libc::open(name.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            libc::_exit(0);
        }
        child
    };
    check(i64::from(flooder), "fork");
    let mut status = 0;
    // SAFETY: waiting for our own child.
    check(i64::from(unsafe { libc::waitpid(flooder, &mut status, 0) }), "waitpid");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "flooder status {status:#x}");
    open_close(&model);
    signal(libc::SIGCONT);
    let mut sensor = sensor;

    let ident = sensor.wait_for("root's model identified despite the flood", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && e["artifact_identified"]["file"]["path"] == model_path.as_str()
    });
    assert_eq!(ident["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF");
    assert_eq!(ident["process"]["uid"].as_u64().unwrap_or(0), 0);
    let lost = sensor.wait_for("the analyzer's loss naming the flooder", EVENT_TIMEOUT, |e| {
        kind(e) == "events_lost"
            && e["events_lost"]["source"] == "LOSS_SOURCE_ANALYZER"
            && e["events_lost"]["culprits"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["pid"].as_u64() == Some(flooder as u64)))
    });
    let culprits = lost["events_lost"]["culprits"].as_array().unwrap();
    assert!(culprits.len() <= 5, "{culprits:#?}");
    let c = culprits.iter().find(|c| c["pid"].as_u64() == Some(flooder as u64)).unwrap();
    assert_eq!(c["uid"].as_u64(), Some(u64::from(NOBODY)), "{c:#}");
    assert_eq!(c["user"], "nobody");
    assert_eq!(c["entity_id"].as_str().map(str::len), Some(32));
    let count = u64_of(&c["count"]);
    assert!(count > 0 && count <= u64_of(&lost["events_lost"]["count"]), "{lost:#}");
    assert!(Path::new(&model_path).exists());
    sensor.stop();
}
