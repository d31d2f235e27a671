//! Smaller holes, each closed for its whole class: a process's own name decides nothing, text
//! that steers a terminal's direction is escaped, an `O_PATH` open is not a read, the API
//! socket is reachable by the group the README names, a daemon's parent is its real one, and a
//! model descriptor passed to another process is reported in that process's hands.

use std::{
    ffi::CString,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::MetadataExt as _, fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
};

use modelwatch_tests::{
    EVENT_TIMEOUT, Reaper, RunningSensor, binary, check, kind, make_file, pid, real, reasons, replay_session_config,
    tiny_gguf,
};
use serde_json::Value;

/// DRM_IOCTL_AMDGPU_CS, DRM_IOCTL_AMDGPU_GEM_CREATE and DRM_IOCTL_AMDGPU_WAIT_CS.
const AMDGPU: [&str; 3] = ["c0186444", "c0206440", "c0206449"];

fn opened_by(e: &Value, who: u32, path: &str) -> bool {
    kind(e) == "model_file_opened" && pid(e) == Some(who) && e["model_file_opened"]["file"]["path"] == path
}

/// A process that calls itself `cp` (argv[0]) while its executable is an inference worker is
/// judged by its executable: it maps a model and computes, so it gets a session.
#[test]
fn a_worker_that_calls_itself_cp_still_gets_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("disguised.gguf");
    make_file(&model, b"GGUF\x03\x00\x00\x00", 64 << 20);
    let replay = dir.path().join("gpu-samples.jsonl");
    std::fs::write(&replay, "").unwrap();
    let mut sensor = RunningSensor::start(&replay_session_config(&replay));
    let mut worker = Command::new(env!("CARGO_BIN_EXE_mw-worker"))
        .arg0("cp")
        .arg(&model)
        .arg("/dev/null")
        .args(AMDGPU)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wpid = worker.id();
    let mut to_worker = worker.stdin.take().unwrap();
    let mut from_worker = BufReader::new(worker.stdout.take().unwrap());
    let mut line = String::new();
    from_worker.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let exec =
        sensor.wait_for("the worker's exec", EVENT_TIMEOUT, |e| kind(e) == "process_exec" && pid(e) == Some(wpid));
    assert_eq!(exec["process"]["cmdline"][0], "cp", "{exec:#}");
    writeln!(to_worker, "ioctl 20").unwrap();
    from_worker.read_line(&mut line).unwrap();
    let mut samples = std::fs::OpenOptions::new().append(true).open(&replay).unwrap();
    writeln!(samples, "{{\"pid\":{wpid},\"device\":\"/dev/null\",\"sm_percent\":50.0,\"memory_bytes\":1073741824}}")
        .unwrap();
    let started = sensor.wait_for("a session for the worker named cp", EVENT_TIMEOUT, |e| {
        kind(e) == "session_started" && pid(e) == Some(wpid)
    });
    assert_eq!(started["session_started"]["models"][0]["file"]["path"], real(&model).as_str());
    writeln!(to_worker, "exit").unwrap();
    assert!(worker.wait().unwrap().success());
    sensor.stop();
}

/// Unicode bidirectional and format controls in any field reach the analyst's terminal
/// escaped, like control characters: a file name cannot reorder what the line shows. Also on
/// the error lines a replay prints about lines that are not events.
#[test]
fn bidi_controls_are_escaped_in_compact_output() {
    const BIDI: [char; 13] = [
        '\u{202e}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{200e}', '\u{200f}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{061c}', '\u{200b}',
    ];
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let all: String = BIDI.iter().collect();
    let open = serde_json::json!({
        "process": { "pid": 7, "comm": format!("x{all}y") },
        "model_file_opened": {
            "file": { "path": format!("/tmp/evil\u{202e}fdp.gguf{all}"), "size": "4096" },
            "access": "read",
            "reasons": ["MATCH_REASON_EXTENSION"]
        }
    });
    let bad = format!("{{\"severity\":\"SEVERITY_{all}\"}}");
    std::fs::write(&capture, format!("{open}\n{bad}\n")).unwrap();
    let out = Command::new(binary()).args(["tail", "--from"]).arg(&capture).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("/tmp/evil"), "{stdout}");
    for c in BIDI {
        assert!(!stdout.contains(c), "U+{:04X} reached the terminal raw: {stdout:?}", c as u32);
        assert!(!stderr.contains(c), "U+{:04X} reached the terminal raw: {stderr:?}", c as u32);
    }
    assert!(stdout.contains("\\u{202e}fdp"), "{stdout}");
    assert!(stderr.contains("not a modelwatch event"), "{stderr}");
}

/// An `O_PATH` descriptor cannot read the file: the open is reported with access `path`.
#[test]
fn an_o_path_open_is_reported_as_path_access() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("opath.gguf");
    make_file(&model, b"GGUF", 4096);
    let path = real(&model);
    let mut sensor = RunningSensor::start("");
    let c = CString::new(path.as_str()).unwrap();
    // SAFETY: c is a valid path.
    let fd = check(i64::from(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) }), "open") as i32;
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    let e = sensor.wait_for("the O_PATH open", EVENT_TIMEOUT, |e| opened_by(e, std::process::id(), &path));
    assert_ne!(e["model_file_opened"]["flags"].as_u64().unwrap() & libc::O_PATH as u64, 0);
    assert_eq!(e["model_file_opened"]["access"], "path", "{e:#}");
    sensor.stop();
}

fn group_id(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group").ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The directory the sensor creates for its socket lets members of the `modelwatch` group
/// through: `modelwatch status` works for an unprivileged member.
#[test]
fn members_of_the_modelwatch_group_reach_the_socket_in_a_directory_the_sensor_created() {
    if group_id("modelwatch").is_none() {
        let st = Command::new("groupadd").args(["--system", "modelwatch"]).status().expect("groupadd");
        assert!(st.success() || group_id("modelwatch").is_some(), "groupadd modelwatch failed");
    }
    let gid = group_id("modelwatch").expect("the modelwatch group");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket_dir = dir.path().join("run").join("modelwatch");
    let socket = socket_dir.join("modelwatch.sock");
    let sensor = RunningSensor::start(&format!("[api]\nsocket = \"{}\"\n", socket.display()));
    let md = std::fs::metadata(&socket_dir).unwrap();
    let sock_md = std::fs::metadata(&socket).unwrap();
    // A copy of the binary anyone can run (the build tree may sit under a 0700 home).
    std::fs::copy(binary(), dir.path().join("modelwatch")).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--groups", &gid.to_string(), "--"])
        .arg(dir.path().join("modelwatch"))
        .args(["status", "--socket"])
        .arg(&socket)
        .env("MODELWATCH_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a member of modelwatch could not query the sensor ({}): {stderr}\ndir {:o} {}:{}, socket {:o} {}:{}",
        out.status,
        md.mode(),
        md.uid(),
        md.gid(),
        sock_md.mode(),
        sock_md.uid(),
        sock_md.gid()
    );
    assert!(stdout.contains("probes attached"), "{stdout}");
    assert_eq!((md.gid(), md.mode() & 0o7777), (gid, 0o750), "the socket directory");
    assert_eq!((sock_md.gid(), sock_md.mode() & 0o777), (gid, 0o660), "the socket");
    // Others stay out.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
        .arg(dir.path().join("modelwatch"))
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a non-member reached the socket");
    sensor.stop();
}

/// A daemon double-forks: its parent at fork time exits and it is reparented (here to this
/// test, a subreaper). Its events name the parent it has, not the one that is gone.
#[test]
fn a_double_forked_daemon_reports_its_new_parent() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("daemon.gguf");
    make_file(&model, b"GGUF", 4096);
    let path = real(&model);
    let c = CString::new(path.as_str()).unwrap();
    let mut sensor = RunningSensor::start("");
    let me = std::process::id();
    let (mut go, mut report) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain syscalls; the children only make async-signal-safe calls (fork, read,
    // write, open, close, _exit) on memory prepared before the fork.
    let (middle, daemon) = unsafe {
        check(i64::from(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)), "prctl");
        check(i64::from(libc::pipe(go.as_mut_ptr())), "pipe");
        check(i64::from(libc::pipe(report.as_mut_ptr())), "pipe");
        let middle = check(i64::from(libc::fork()), "fork") as i32;
        if middle == 0 {
            let daemon = libc::fork();
            if daemon == 0 {
                let mut b = 0u8;
                libc::read(go[0], (&raw mut b).cast(), 1);
                let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
                libc::close(fd);
                libc::read(go[0], (&raw mut b).cast(), 1);
                libc::_exit(0);
            }
            libc::write(report[1], (&raw const daemon).cast(), 4);
            libc::_exit(0);
        }
        let mut daemon = 0i32;
        assert_eq!(libc::read(report[0], (&raw mut daemon).cast(), 4), 4);
        let mut status = 0;
        check(i64::from(libc::waitpid(middle, &mut status, 0)), "waitpid middle");
        (middle as u32, daemon as u32)
    };
    let _reap = Reaper(daemon as i32);
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let ppid: u32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, me, "the daemon was reparented to this subreaper");
    // SAFETY: our pipe; the daemon waits on it.
    unsafe { libc::write(go[1], b"x".as_ptr().cast(), 1) };
    let opened = sensor.wait_for("the daemon's open", EVENT_TIMEOUT, |e| opened_by(e, daemon, &path));
    // SAFETY: as above; then reap the daemon and stop being a subreaper.
    unsafe {
        libc::write(go[1], b"x".as_ptr().cast(), 1);
        let mut status = 0;
        libc::waitpid(daemon as i32, &mut status, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        for fd in go.into_iter().chain(report) {
            libc::close(fd);
        }
    }
    assert_eq!(opened["process"]["ppid"].as_u64(), Some(u64::from(me)), "not the exited middle {middle}: {opened:#}");
    let exit =
        sensor.wait_for("the daemon's exit", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(daemon));
    assert_eq!(exit["process"]["ppid"].as_u64(), Some(u64::from(me)), "{exit:#}");
    sensor.stop();
}

/// Sends `fd` over a Unix socket (SCM_RIGHTS).
fn send_fd(sock: i32, fd: i32) {
    let mut byte = [b'f'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE of a constant.
    let space = unsafe { libc::CMSG_SPACE(size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: an all-zero msghdr is valid; its pointers are set below to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header and one fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        check(libc::sendmsg(sock, &msg, 0) as i64, "sendmsg");
    }
}

/// A process that receives a model's descriptor over a Unix socket never opens it, so the
/// kernel sees no open; the sensor's /proc scan finds the model in its hands and reports it.
#[test]
fn a_model_descriptor_received_over_a_unix_socket_is_reported_for_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("passed.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let path = real(&model);
    let mut sensor = RunningSensor::start("[sensor]\nhousekeeping_ms = 500\n");
    let mut pair = [0i32; 2];
    // SAFETY: plain syscalls on buffers prepared before the fork; the child only makes
    // async-signal-safe calls (recvmsg, read, write, _exit).
    let receiver = unsafe {
        check(i64::from(libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr())), "socketpair");
        let space = libc::CMSG_SPACE(size_of::<i32>() as u32) as usize;
        let mut control = vec![0u8; space];
        let mut byte = [0u8];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let child = check(i64::from(libc::fork()), "fork") as i32;
        if child == 0 {
            if libc::recvmsg(pair[1], &mut msg, 0) != 1 {
                libc::_exit(2);
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                libc::_exit(3);
            }
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
            // It reads the weights, then tells which descriptor it holds and waits.
            let mut head = [0u8; 4];
            libc::pread(fd, head.as_mut_ptr().cast(), 4, 0);
            libc::write(pair[1], (&raw const fd).cast(), 4);
            libc::read(pair[1], head.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
        child as u32
    };
    let _reap = Reaper(receiver as i32);
    // This process opens the model: the sensor identifies it.
    let fd = {
        let c = CString::new(path.as_str()).unwrap();
        // SAFETY: c is a valid path.
        check(i64::from(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }), "open") as i32
    };
    sensor.wait_for("the model identified", EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified" && e["artifact_identified"]["file"]["path"] == path.as_str()
    });
    send_fd(pair[0], fd);
    // SAFETY: our fd; the receiver holds its own copy now.
    unsafe { libc::close(fd) };
    let mut held = 0i32;
    // SAFETY: reading 4 bytes into an i32.
    assert_eq!(unsafe { libc::read(pair[0], (&raw mut held).cast(), 4) }, 4);
    let e = sensor.wait_for("the receiver holding the model", EVENT_TIMEOUT, |e| opened_by(e, receiver, &path));
    // SAFETY: releasing the receiver and reaping it.
    unsafe {
        libc::write(pair[0], b"x".as_ptr().cast(), 1);
        let mut status = 0;
        libc::waitpid(receiver as i32, &mut status, 0);
        libc::close(pair[0]);
        libc::close(pair[1]);
    }
    let o = &e["model_file_opened"];
    assert_eq!(o["fd"].as_i64(), Some(i64::from(held)), "{e:#}");
    assert!(reasons(&e, "model_file_opened").contains(&"MATCH_REASON_HELD_DESCRIPTOR".to_owned()), "{e:#}");
    assert_eq!(o["artifact"]["format"], "ARTIFACT_FORMAT_GGUF", "{e:#}");
    let events = sensor.stop();
    let mine: Vec<&Value> = events.iter().filter(|e| opened_by(e, receiver, &path)).collect();
    assert_eq!(mine.len(), 1, "reported once: {mine:#?}");
}
