//! Process lifecycle: exec, fork and exit of real children.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, pid, u64_of};

#[test]
fn exec_fork_and_exit_of_a_child_are_exact() {
    let mut sensor = RunningSensor::start("");
    let me = std::process::id();
    let status = Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
    let child = status.id();
    let out = Command::new("/bin/sh").args(["-c", "kill -9 $$"]).spawn().unwrap();
    let killed = out.id();
    let mut a = status;
    let mut b = out;
    assert_eq!(a.wait().unwrap().code(), Some(7));
    assert!(b.wait().unwrap().code().is_none());

    let exit = sensor
        .wait_for("exit of sh -c 'exit 7'", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(child));
    assert_eq!(exit["process_exit"]["exit_code"], 7);
    assert!(exit["process_exit"]["signal"].is_null(), "{exit}");
    let exec =
        sensor.wait_for("exec of /bin/sh", EVENT_TIMEOUT, |e| kind(e) == "process_exec" && pid(e) == Some(child));
    let p = &exec["process"];
    assert_eq!(p["exe"].as_str().unwrap(), std::fs::canonicalize("/bin/sh").unwrap().to_str().unwrap());
    assert_eq!(p["cmdline"], serde_json::json!(["/bin/sh", "-c", "exit 7"]));
    assert_eq!(p["ppid"], me);
    assert_eq!(exec["process_exec"]["filename"], "/bin/sh");
    let fork = sensor.wait_for("fork of the child", EVENT_TIMEOUT, |e| {
        kind(e) == "process_fork" && e["process_fork"]["child_pid"] == child
    });
    assert_eq!(pid(&fork), Some(me));
    // The child's entity id is the same in the fork, exec and exit events, and its parent is us.
    let child_entity = fork["process_fork"]["child_entity_id"].as_str().unwrap();
    assert_eq!(p["entity_id"], child_entity);
    assert_eq!(exit["process"]["entity_id"], child_entity);
    assert_eq!(p["parent_entity_id"], fork["process"]["entity_id"]);
    assert!(u64_of(&exit["process_exit"]["duration_ns"]) > 0);

    let killed_exit =
        sensor.wait_for("exit by SIGKILL", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(killed));
    assert_eq!(killed_exit["process_exit"]["signal"], 9);
    assert!(killed_exit["process_exit"]["exit_code"].is_null());
    let events = sensor.stop();
    // One exec and one exit per child, no more.
    for c in [child, killed] {
        for k in ["process_exec", "process_exit"] {
            let n = events.iter().filter(|e| kind(e) == k && pid(e) == Some(c)).count();
            assert_eq!(n, 1, "{k} events for {c}");
        }
    }
}

/// A process whose threads all exit together is reported exiting once, with its exit code:
/// from the tracepoint's `group_dead`, and from `signal->live` as on kernels before 6.16.
#[test]
fn a_thread_group_exits_once() {
    thread_group_exits_once("group_dead");
    thread_group_exits_once("live");
}

fn thread_group_exits_once(mode: &str) {
    let mut sensor = RunningSensor::start_env("", &[("MODELWATCH_EXIT", mode)]);
    let mut children = Vec::new();
    for _ in 0..5 {
        let c = Command::new(env!("CARGO_BIN_EXE_mw-worker")).args(["--threads", "8", "3"]).spawn().unwrap();
        children.push(c);
    }
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(3));
    }
    for p in &pids {
        let e = sensor.wait_for("the group's exit", EVENT_TIMEOUT, |e| kind(e) == "process_exit" && pid(e) == Some(*p));
        assert_eq!(e["process_exit"]["exit_code"], 3);
    }
    let events = sensor.stop();
    for p in pids {
        let n = events.iter().filter(|e| kind(e) == "process_exit" && pid(e) == Some(p)).count();
        assert_eq!(n, 1, "{mode}: exit events for {p}");
    }
}

/// A user record only the name service knows (a systemd-userdb drop-in under /run/userdb, read
/// by nss-systemd: no line in /etc/passwd, as with LDAP or SSSD users); removed when dropped.
struct DirectoryUser {
    files: [PathBuf; 2],
}

impl DirectoryUser {
    fn create(uid: u32, name: &str) -> Self {
        let dir = Path::new("/run/userdb");
        std::fs::create_dir_all(dir).unwrap();
        let record = dir.join(format!("{name}.user"));
        let by_uid = dir.join(format!("{uid}.user"));
        let json = serde_json::json!({
            "userName": name, "uid": uid, "gid": uid,
            "homeDirectory": "/nonexistent", "shell": "/usr/sbin/nologin", "disposition": "regular",
        });
        std::fs::write(&record, json.to_string()).unwrap();
        let _ = std::fs::remove_file(&by_uid);
        std::os::unix::fs::symlink(record.file_name().unwrap(), &by_uid).unwrap();
        Self { files: [record, by_uid] }
    }
}

impl Drop for DirectoryUser {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn a_user_only_the_name_service_knows_is_named() {
    let uid = 61_000 + std::process::id() % 1000;
    let name = format!("mwdir{uid}");
    let _user = DirectoryUser::create(uid, &name);
    assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains(&name));
    let getent = Command::new("getent").args(["passwd", &uid.to_string()]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&getent.stdout).starts_with(&format!("{name}:")),
        "the machine's name service (nsswitch.conf: passwd: files systemd) does not know the test user: {getent:?}"
    );
    let mut sensor = RunningSensor::start("");
    let run_as =
        |script: &str| Command::new("/bin/sh").args(["-c", script]).uid(uid).gid(uid).current_dir("/").spawn().unwrap();
    // The first process of the user may be reported before the name service has answered; it
    // has its name by the time it exits.
    let mut first = run_as("sleep 1; exit 3");
    let first_pid = first.id();
    assert_eq!(first.wait().unwrap().code(), Some(3));
    let exit = sensor.wait_for("exit of the user's first process", EVENT_TIMEOUT, |e| {
        kind(e) == "process_exit" && pid(e) == Some(first_pid)
    });
    assert_eq!(exit["process"]["uid"], uid);
    assert_eq!(exit["process"]["user"], name.as_str(), "{exit}");
    // Later processes are named from the cache at once.
    let mut second = run_as("exit 4");
    let second_pid = second.id();
    assert_eq!(second.wait().unwrap().code(), Some(4));
    let exec = sensor.wait_for("exec of the user's second process", EVENT_TIMEOUT, |e| {
        kind(e) == "process_exec" && pid(e) == Some(second_pid)
    });
    assert_eq!(exec["process"]["user"], name.as_str(), "{exec}");
    sensor.stop();
}
