//! Least privilege: the sensor runs as the unprivileged user `modelwatch` with exactly the
//! capabilities of the packaged unit (`packaging/modelwatch.service`), attaches every probe and
//! reports and identifies what only those capabilities let it see; with any one of them
//! missing it refuses to start and names it. The kernel-level test shows what each capability
//! is for: without it, the kernel refuses the very access the sensor makes.

use std::{
    ffi::CString,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, binary, check, kind, pid, require_root, service_user, tiny_gguf};
use serde_json::Value;

/// The unit's capability set, as `setpriv` names them (`bpf`, `sys_ptrace`, ...).
fn unit_capabilities() -> Vec<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/modelwatch.service");
    let text = std::fs::read_to_string(&unit).unwrap_or_else(|e| panic!("{}: {e}", unit.display()));
    let set = |key: &str| -> Vec<String> {
        let line = text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in the unit"));
        line.split_whitespace().map(|c| c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase()).collect()
    };
    let bounding = set("CapabilityBoundingSet=");
    assert_eq!(bounding, set("AmbientCapabilities="), "the unit's bounding and ambient sets differ");
    bounding
}

/// `setpriv` that runs its command as `uid`:`gid` with exactly `caps` (bounding, inheritable
/// and ambient), and no way to gain more (no_new_privs), as the unit does.
fn setpriv(uid: u32, gid: u32, caps: &[String]) -> Vec<String> {
    let list = if caps.is_empty() { "-all".to_owned() } else { format!("-all,+{}", caps.join(",+")) };
    [
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--init-groups".into(),
        "--no-new-privs".into(),
        format!("--inh-caps={list}"),
        format!("--ambient-caps={list}"),
        format!("--bounding-set={list}"),
        "--".into(),
    ]
    .into()
}

/// A root-only model: mode 0600 in a directory of mode 0700, both root's.
fn root_only_model(dir: &Path, name: &str) -> PathBuf {
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let model = private.join(name);
    std::fs::write(&model, tiny_gguf()).unwrap();
    std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o600)).unwrap();
    model
}

fn open_fd(path: &Path) -> i32 {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    check(i64::from(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }), "open") as i32
}

/// A memfd holding a GGUF, mapped (64 MiB, so the size filter selects it) and closed: only
/// the mapping keeps it. Returns the mapping's range.
fn memfd_model(name: &str) -> (usize, usize) {
    let len = 64usize << 20;
    let content = tiny_gguf();
    let cname = CString::new(name).unwrap();
    // SAFETY: plain syscalls on an fd this test owns; content is readable for its length.
    unsafe {
        let fd = check(i64::from(libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC)), "memfd_create") as i32;
        assert_eq!(libc::write(fd, content.as_ptr().cast(), content.len()), content.len() as isize);
        check(i64::from(libc::ftruncate(fd, len as i64)), "ftruncate");
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        assert_ne!(addr, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        libc::close(fd);
        (addr as usize, addr as usize + len)
    }
}

fn identified(sensor: &mut RunningSensor, what: &str, path: &str) -> Value {
    sensor.wait_for(what, EVENT_TIMEOUT, |e| {
        kind(e) == "artifact_identified"
            && pid(e) == Some(std::process::id())
            && e["artifact_identified"]["file"]["path"] == path
    })
}

/// The process status line `key` of `pid` (e.g. `Uid:`, `CapEff:`).
fn proc_status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_owned()
}

#[test]
fn the_sensor_runs_unprivileged_with_exactly_the_units_capabilities() {
    require_root();
    let caps = unit_capabilities();
    assert_eq!(caps, ["bpf", "perfmon", "dac_read_search", "sys_ptrace", "checkpoint_restore"]);
    let (uid, gid) = service_user();
    let dir = tempfile::tempdir().unwrap();
    let model = root_only_model(dir.path(), "root-only.gguf");
    let path = model.to_str().unwrap().to_owned();

    let mut sensor = RunningSensor::start_wrapped("", &setpriv(uid, gid, &caps), uid, gid, &[]);
    // It is who the unit says, with nothing more.
    let me = sensor.pid();
    assert_eq!(
        proc_status(me, "Uid:").split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
        vec![uid.to_string(); 4]
    );
    assert_eq!(
        proc_status(me, "CapEff:"),
        "000001c000080004",
        "CAP_BPF PERFMON DAC_READ_SEARCH SYS_PTRACE CHECKPOINT_RESTORE"
    );
    assert_eq!(proc_status(me, "CapBnd:"), "000001c000080004");
    assert_eq!(proc_status(me, "NoNewPrivs:"), "1");
    // Every probe attached (start_wrapped already required the health state OK).
    let health = sensor.events().into_iter().find(|e| kind(e) == "sensor_health").unwrap();
    assert!(health["sensor_health"]["probes_skipped"].as_array().is_none_or(Vec::is_empty), "{health:#}");
    assert!(health["sensor_health"]["probes_attached"].as_array().is_some_and(|a| a.len() >= 9), "{health:#}");

    // A root-only model opened by root: reported and identified (CAP_DAC_READ_SEARCH).
    let fd = open_fd(&model);
    sensor.wait_for("the open of the root-only model", EVENT_TIMEOUT, |e| {
        kind(e) == "model_file_opened"
            && pid(e) == Some(std::process::id())
            && e["model_file_opened"]["file"]["path"] == path.as_str()
    });
    let id = identified(&mut sensor, "the root-only model's identification", &path);
    assert_eq!(id["artifact_identified"]["artifact"]["name"], "tiny-test-model", "{id:#}");
    // SAFETY: our fd.
    unsafe { libc::close(fd) };

    // Unlinked after its open: only root's descriptor reaches it (CAP_SYS_PTRACE).
    let vanishing = root_only_model(dir.path(), "vanishing.gguf");
    let fd = open_fd(&vanishing);
    std::fs::remove_file(&vanishing).unwrap();
    let id = identified(&mut sensor, "the unlinked model's identification", vanishing.to_str().unwrap());
    assert_eq!(id["artifact_identified"]["artifact"]["format"], "ARTIFACT_FORMAT_GGUF", "{id:#}");
    // SAFETY: our fd.
    unsafe { libc::close(fd) };

    // Held only as a mapping: read through /proc/<pid>/map_files (CAP_CHECKPOINT_RESTORE).
    let (start, end) = memfd_model("mw-privileges.gguf");
    let id = identified(&mut sensor, "the memfd model's identification", "memfd:mw-privileges.gguf");
    assert_eq!(id["artifact_identified"]["artifact"]["name"], "tiny-test-model", "{id:#}");
    // SAFETY: unmapping the mapping memfd_model made.
    unsafe { libc::munmap(start as *mut libc::c_void, end - start) };
    sensor.stop();
}

#[test]
fn with_one_capability_fewer_the_sensor_names_what_is_missing() {
    require_root();
    let caps = unit_capabilities();
    let (uid, gid) = service_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("modelwatch");
    std::fs::copy(binary(), &bin).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    let cfg = dir.path().join("modelwatch.toml");
    std::fs::write(&cfg, format!("[sensor]\nstate_dir = \"{0}\"\n[api]\nsocket = \"{0}/api.sock\"\n", state.display()))
        .unwrap();
    for gone in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != gone).cloned().collect();
        let wrapper = setpriv(uid, gid, &fewer);
        let out = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg(&bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .expect("run the sensor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = format!("CAP_{}", gone.to_uppercase());
        assert_eq!(out.status.code(), Some(1), "without {name}: {stderr}");
        assert!(stderr.contains(&format!("without {name} (")), "without {name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        // The one missing, not the others.
        for other in &fewer {
            assert!(!stderr.contains(&format!("without CAP_{}", other.to_uppercase())), "{stderr}");
        }
    }
}

/// What each capability is for, shown on the kernel itself: the access the sensor makes, as
/// the service user with all of the unit's capabilities, then without the one it needs.
#[test]
fn each_capability_is_what_the_kernel_asks_for_that_access() {
    require_root();
    let caps = unit_capabilities();
    let (uid, gid) = service_user();
    let dir = tempfile::tempdir().unwrap();
    let model = root_only_model(dir.path(), "kernel.gguf");
    let fd = open_fd(&model);
    let (start, end) = memfd_model("mw-kernel.gguf");
    let me = std::process::id();
    let cases: [(&str, String); 4] = [
        ("dac_read_search", "/sys/kernel/tracing/events/syscalls/sys_enter_openat/id".into()),
        ("dac_read_search", model.to_str().unwrap().to_owned()),
        ("sys_ptrace", format!("/proc/{me}/fd/{fd}")),
        ("checkpoint_restore", format!("/proc/{me}/map_files/{start:x}-{end:x}")),
    ];
    for (cap, file) in &cases {
        let read = |caps: &[String]| {
            let w = setpriv(uid, gid, caps);
            Command::new(&w[0]).args(&w[1..]).args(["head", "-c", "4"]).arg(file).output().expect("head")
        };
        let with = read(&caps);
        assert!(with.status.success(), "{file} with {caps:?}: {}", String::from_utf8_lossy(&with.stderr));
        let fewer: Vec<String> = caps.iter().filter(|c| c != cap).cloned().collect();
        let without = read(&fewer);
        assert!(!without.status.success(), "{file} was readable without {cap}");
        let err = String::from_utf8_lossy(&without.stderr);
        assert!(err.contains("Permission denied") || err.contains("Operation not permitted"), "{file}: {err}");
    }
    // Loading BPF and attaching to tracepoints need CAP_BPF and CAP_PERFMON wherever
    // unprivileged BPF is off and perf events are restricted, as here.
    let sysctl = |p: &str| std::fs::read_to_string(p).unwrap().trim().parse::<i32>().unwrap();
    assert!(sysctl("/proc/sys/kernel/unprivileged_bpf_disabled") > 0);
    assert!(sysctl("/proc/sys/kernel/perf_event_paranoid") > 1);
    assert_eq!(std::fs::metadata("/sys/kernel/tracing").unwrap().mode() & 0o077, 0, "tracefs is root-only");
    // SAFETY: our fd and mapping.
    unsafe {
        libc::close(fd);
        libc::munmap(start as *mut libc::c_void, end - start);
    }
}
