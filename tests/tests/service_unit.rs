//! The unit's sandbox against what the sensor really does. systemd cannot run services here,
//! so its seccomp filters and device policy cannot be tried; instead the sensor runs under
//! strace as the unit runs it (user modelwatch, the unit's capabilities, no new privileges,
//! sd_notify with a watchdog) while it attaches its probes, serves its API, identifies models
//! by path, through a descriptor and through a mapping, and stops. Then, in what it did:
//! every system call is in the unit's `SystemCallFilter=` allow-list (another one would fail
//! with EPERM in production), every socket family in `RestrictAddressFamilies=`, no memory
//! both writable and executable nor made executable later (`MemoryDenyWriteExecute=`), and
//! no device opened that `DevicePolicy=closed` would refuse.

use std::{
    collections::{BTreeSet, HashMap},
    ffi::CString,
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use modelwatch_tests::{binary, check, kind, require_root, service_user, tiny_gguf};
use serde_json::Value;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/modelwatch.service");

/// `Key=` values of the unit (every line of that key).
fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).unwrap();
    text.lines().filter_map(|l| l.strip_prefix(key)).map(str::to_owned).collect()
}

/// systemd's syscall groups (`systemd-analyze syscall-filter`): group → members (calls and
/// groups).
fn syscall_groups() -> HashMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze").arg("syscall-filter").output().expect("systemd-analyze");
    assert!(out.status.success(), "systemd-analyze syscall-filter failed (`cargo xtask setup` installs systemd)");
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{}", name.trim()));
            groups.insert(format!("@{}", name.trim()), Vec::new());
        } else if line.trim().is_empty() || line.starts_with(|c: char| !c.is_whitespace()) {
            current = None;
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    groups
}

fn expand(item: &str, groups: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    if item.starts_with('@') {
        for m in groups.get(item).unwrap_or_else(|| panic!("unknown syscall group {item}")) {
            expand(m, groups, out);
        }
    } else {
        out.insert(item.to_owned());
    }
}

/// The unit's allow-list: its first `SystemCallFilter=` line (an allow-list, no `~`), expanded.
fn allowed() -> BTreeSet<String> {
    let lines = unit_values("SystemCallFilter=");
    assert_eq!(lines.len(), 1, "one SystemCallFilter= allow-list: {lines:?}");
    assert!(!lines[0].starts_with('~'), "{lines:?}");
    let groups = syscall_groups();
    let mut set = BTreeSet::new();
    for item in lines[0].split_whitespace() {
        expand(item, &groups, &mut set);
    }
    set
}

/// System call names in an `strace -f` log, from the line where the process ran `exe`
/// (what setpriv did before is not the sensor's).
fn called(trace: &str, exe: &str) -> BTreeSet<String> {
    let start = trace
        .lines()
        .position(|l| l.contains(&format!("execve(\"{exe}\"")) && l.trim_end().ends_with("= 0"))
        .unwrap_or_else(|| panic!("no execve of {exe} in the trace"));
    trace
        .lines()
        .skip(start + 1)
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (!name.is_empty() && rest[name.len()..].starts_with('(')).then_some(name)
        })
        .collect()
}

fn caps() -> String {
    let set = unit_values("CapabilityBoundingSet=");
    let caps: Vec<String> =
        set[0].split_whitespace().map(|c| format!("+{}", c.strip_prefix("CAP_").unwrap().to_lowercase())).collect();
    format!("-all,{}", caps.join(","))
}

#[test]
fn every_system_call_the_sensor_makes_is_in_the_units_filter() {
    require_root();
    let allowed = allowed();
    for must in ["bpf", "perf_event_open", "openat", "ioctl"] {
        assert!(allowed.contains(must), "{must} is not allowed by the unit");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("modelwatch");
    std::fs::copy(binary(), &bin).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (uid, gid) = service_user();
    let owner = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    owner(&state);
    let cfg = dir.path().join("modelwatch.toml");
    std::fs::write(&cfg, format!("[sensor]\nstate_dir = \"{0}\"\n[api]\nsocket = \"{0}/api.sock\"\n", state.display()))
        .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    owner(&notify_path);
    notify.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let trace = dir.path().join("strace.log");
    let caps = caps();
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args(["setpriv", "--reuid=modelwatch", "--regid=modelwatch", "--init-groups", "--no-new-privs"])
        .args([format!("--inh-caps={caps}"), format!("--ambient-caps={caps}"), format!("--bounding-set={caps}")])
        .arg("--")
        .arg(&bin)
        .args(["run", "--format", "json", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("MODELWATCH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (`cargo xtask setup` installs it)");
    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = events.clone();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("the sensor did not notify within 60 s");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"));

    // The paths the sensor has: a model by path, through a descriptor, through a mapping.
    let models = tempfile::tempdir().unwrap();
    let model = models.path().join("traced.gguf");
    std::fs::write(&model, tiny_gguf()).unwrap();
    let c = CString::new(model.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid path.
    let fd = check(i64::from(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }), "open") as i32;
    std::fs::remove_file(&model).unwrap();
    let len = 64usize << 20;
    let name = CString::new("mw-traced.gguf").unwrap();
    let content = tiny_gguf();
    // SAFETY: plain syscalls on descriptors and a mapping this test owns.
    let addr = unsafe {
        let mfd = check(i64::from(libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC)), "memfd") as i32;
        assert_eq!(libc::write(mfd, content.as_ptr().cast(), content.len()), content.len() as isize);
        check(i64::from(libc::ftruncate(mfd, len as i64)), "ftruncate");
        let a = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, mfd, 0);
        assert_ne!(a, libc::MAP_FAILED);
        libc::close(mfd);
        a
    };
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| kind(e) == "artifact_identified" && e["process"]["pid"] == me)
            .filter_map(|e| e["artifact_identified"]["file"]["path"].as_str().map(str::to_owned))
            .collect();
        if got.iter().any(|p| p.ends_with("traced.gguf")) && got.iter().any(|p| p == "memfd:mw-traced.gguf") {
            break;
        }
        assert!(Instant::now() < deadline, "the models were not identified; got {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A watchdog ping (the loop answered under strace too), then the stop: the sensor's pid is
    // strace's child.
    loop {
        let n = notify.recv(&mut buf).expect("no watchdog ping within 60 s");
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "WATCHDOG=1") {
            break;
        }
    }
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let sensor: i32 = children.split_whitespace().next().expect("the sensor under strace").parse().unwrap();
    // SAFETY: signalling the sensor this test started; closing our fd and mapping.
    unsafe {
        libc::kill(sensor, libc::SIGTERM);
        libc::close(fd);
        libc::munmap(addr, len);
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "the sensor under strace exited with {status}");

    let trace = std::fs::read_to_string(&trace).unwrap();
    let called = called(&trace, bin.to_str().unwrap());
    assert!(called.contains("bpf") && called.contains("perf_event_open"), "{called:?}");
    let refused: Vec<&String> = called.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(refused.is_empty(), "the unit's SystemCallFilter would refuse {refused:?} (called: {called:?})");

    let sensor_lines = sensor_part(&trace, bin.to_str().unwrap());
    let families = unit_values("RestrictAddressFamilies=").join(" ");
    for l in sensor_lines.iter().filter(|l| l.contains(" socket(")) {
        let family = l.split_once(" socket(").unwrap().1.split(',').next().unwrap();
        assert!(families.split_whitespace().any(|f| f == family), "RestrictAddressFamilies refuses {l}");
    }
    if unit_values("MemoryDenyWriteExecute=").first().is_some_and(|v| v == "yes") {
        for l in &sensor_lines {
            let wx = l.contains(" mmap(") && l.contains("PROT_WRITE") && l.contains("PROT_EXEC");
            let x_later = (l.contains(" mprotect(") || l.contains(" pkey_mprotect(")) && l.contains("PROT_EXEC");
            assert!(!wx && !x_later, "MemoryDenyWriteExecute refuses {l}");
        }
    }
    if unit_values("DevicePolicy=").first().is_some_and(|v| v == "closed") {
        // What `closed` allows (systemd.resource-control(5)), and the unit's DeviceAllow=.
        let allowed_devices =
            ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"];
        for l in sensor_lines.iter().filter(|l| l.contains("open") && l.contains("\"/dev/")) {
            let opened = l.rsplit_once(") = ").is_some_and(|(_, rc)| !rc.starts_with('-'));
            let path = l.split('"').nth(1).unwrap_or_default();
            let ok =
                allowed_devices.contains(&path) || path.starts_with("/dev/nvidia") || path.starts_with("/dev/pts/");
            assert!(!opened || ok || !is_char_device(path), "DevicePolicy=closed refuses {l}");
        }
    }
}

/// The trace's lines from the sensor's start on.
fn sensor_part<'a>(trace: &'a str, exe: &str) -> Vec<&'a str> {
    let start = trace
        .lines()
        .position(|l| l.contains(&format!("execve(\"{exe}\"")) && l.trim_end().ends_with("= 0"))
        .expect("the sensor's execve");
    trace.lines().skip(start + 1).collect()
}

fn is_char_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
}
