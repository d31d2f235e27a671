//! Harness for the root integration tests: runs the real `modelwatch` binary with a test
//! configuration, collects its JSON event stream, and lets tests wait for exact events.
//!
//! Tests trigger the syscalls themselves and then look for the events they caused, filtering
//! by their own pid and their own temporary paths: other tests (and the machine) run at the
//! same time and produce events too.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod delivery;
pub mod engines;

/// How long a test waits for an event it caused before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The `modelwatch` binary of this build (`cargo xtask test` builds it before the tests).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MODELWATCH_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/modelwatch
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("modelwatch");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo xtask test` does), or set MODELWATCH_BIN",
        bin.display()
    );
    bin
}

/// Fails the test with a clear reason when not root: these tests load BPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the integration tests load kernel probes and must run as root (CI does)");
}

/// The `modelwatch` system user (what the package's sysusers.d creates): (uid, gid).
pub fn service_user() -> (u32, u32) {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).arg("modelwatch").output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"]).is_none() {
        if Command::new("getent").args(["group", "modelwatch"]).output().is_ok_and(|o| !o.status.success()) {
            let st = Command::new("groupadd").args(["--system", "modelwatch"]).status().expect("groupadd");
            assert!(st.success(), "groupadd modelwatch");
        }
        let st = Command::new("useradd")
            .args(["--system", "--gid", "modelwatch", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", "modelwatch"])
            .status()
            .expect("useradd");
        assert!(st.success() || id(&["-u"]).is_some(), "useradd modelwatch");
    }
    (id(&["-u"]).expect("uid of modelwatch"), id(&["-g"]).expect("gid of modelwatch"))
}

/// A running sensor whose stdout (JSON lines) is collected in the background.
pub struct RunningSensor {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
    reader: Option<std::thread::JoinHandle<()>>,
    err_reader: Option<std::thread::JoinHandle<()>>,
    /// Held for the sensor's life: one sensor at a time per test binary. Two sensors see each
    /// other's analysis opens (a sensor only ignores itself), which would make them the
    /// reported opener of the other test's files.
    _exclusive: MutexGuard<'static, ()>,
}

static ONE_SENSOR: Mutex<()> = Mutex::new(());

/// A command the sensor runs under, and the user it runs as.
struct Wrapper<'a> {
    command: &'a [String],
    uid: u32,
    gid: u32,
}

impl RunningSensor {
    /// Starts `modelwatch run --format json` with `config` (TOML) and waits until it reports
    /// healthy. Extra arguments follow `run`.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &str, extra_args: &[&str]) -> Self {
        Self::start_full(config, extra_args, &[])
    }

    /// Starts with extra environment variables for the sensor.
    pub fn start_env(config: &str, envs: &[(&str, &str)]) -> Self {
        Self::start_full(config, &[], envs)
    }

    /// Starts `modelwatch run --format ocsf`: the collected events are OCSF events.
    pub fn start_ocsf(config: &str) -> Self {
        Self::launch(config, "ocsf", &[], &[], None)
    }

    fn start_full(config: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::launch(config, "json", extra_args, envs, None)
    }

    /// Starts the sensor through `wrapper` (e.g. `setpriv` with its options, ending in `--`),
    /// for the user `uid`:`gid`: its directory (config, state, socket, and a copy of the
    /// binary, since the build tree may be closed to other users) is theirs to use.
    pub fn start_wrapped(config: &str, wrapper: &[String], uid: u32, gid: u32, envs: &[(&str, &str)]) -> Self {
        Self::launch(config, "json", &[], envs, Some(Wrapper { command: wrapper, uid, gid }))
    }

    fn launch(
        config: &str,
        format: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        wrapper: Option<Wrapper<'_>>,
    ) -> Self {
        require_root();
        // A test that failed while holding it poisons it; that is no reason to fail the next.
        let exclusive = ONE_SENSOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("modelwatch.toml");
        let state_dir = dir.path().join("state");
        let config = format!("{config}\n");
        // Each sensor gets its own state directory and API socket: tests run side by side.
        let mut config = config;
        let state = format!("state_dir = \"{}\"\n", state_dir.display());
        // Another user cannot create it in this directory, only in the state directory.
        let socket_dir = if wrapper.is_some() { state_dir.clone() } else { dir.path().to_owned() };
        let socket = format!("socket = \"{}\"\n", socket_dir.join("api.sock").display());
        for (table, key, line) in [("[sensor]\n", "state_dir", state), ("[api]\n", "socket", socket)] {
            match config.find(table) {
                // A test's own table: the key goes in at its top unless the test set it.
                Some(at) if !config.contains(key) => config.insert_str(at + table.len(), &line),
                Some(_) => {}
                None => config.push_str(&format!("\n{table}{line}")),
            }
        }
        std::fs::write(&cfg_path, config).expect("write config");
        let mut command = match &wrapper {
            None => Command::new(binary()),
            Some(w) => {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
                std::fs::create_dir(&state_dir).expect("state dir");
                std::os::unix::fs::chown(&state_dir, Some(w.uid), Some(w.gid)).expect("chown state dir");
                let bin = dir.path().join("modelwatch");
                std::fs::copy(binary(), &bin).expect("copy the binary");
                let mut c = Command::new(&w.command[0]);
                c.args(&w.command[1..]).arg(bin);
                c
            }
        };
        let mut child = command
            .args(["run", "--config"])
            .arg(&cfg_path)
            .args(["--format", format])
            .args(extra_args)
            // Quiet by default; MODELWATCH_TEST_LOG raises it to debug a failing test.
            .env("MODELWATCH_LOG", std::env::var("MODELWATCH_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn modelwatch");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("sensor printed a non-JSON line ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let err_sink = stderr.clone();
        // Line by line, so a test failing while the sensor still runs can show what it logged.
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = err_sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut sensor = RunningSensor {
            child,
            events,
            stderr,
            _dir: dir,
            reader: Some(reader),
            err_reader: Some(err_reader),
            _exclusive: exclusive,
        };
        // Every probe must attach: a skipped one (reported as degraded) fails the test here.
        let health = sensor.wait_for("the first health report", Duration::from_secs(60), |e| {
            kind(e) == "sensor_health" || e["metadata"]["event_code"] == "sensor_health"
        });
        let state = if format == "ocsf" { &health["unmapped"]["sensor_health"] } else { &health["sensor_health"] };
        assert_eq!(state["state"], "HEALTH_STATE_OK", "{health:#}");
        sensor
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file the sensor was started with (a test may rewrite it and send
    /// SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("modelwatch.toml")
    }

    /// The API socket (unless the test's configuration named another).
    pub fn socket(&self) -> PathBuf {
        self._dir.path().join("api.sock")
    }

    /// `modelwatch status --format json` of this sensor.
    pub fn status(&self) -> Value {
        let out = Command::new(binary())
            .args(["status", "--format", "json", "--socket"])
            .arg(self.socket())
            .output()
            .expect("run modelwatch status");
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Kills the sensor with SIGKILL and returns every event it had written to stdout.
    pub fn kill(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.events()
    }

    /// A snapshot of every event received so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|e| pred(e)).cloned().collect()
    }

    /// Waits for the first event matching `pred`; panics with context on timeout or when the
    /// sensor dies.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sensor exited ({status}) while waiting for {what}; stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; {} events received (kept in {}); stderr:\n{}",
                self.events.lock().unwrap().len(),
                self.keep_events().display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes the events received so far to a file that outlives the test (one JSON object
    /// per line), for the message of a test that failed waiting.
    fn keep_events(&self) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("modelwatch-test-events-{}-{}.jsonl", std::process::id(), self.pid()));
        let text: String = self.events.lock().map(|e| e.iter().map(|v| format!("{v}\n")).collect()).unwrap_or_default();
        let _ = std::fs::write(&path, text);
        path
    }

    /// Waits until `pred` holds over the events received so far.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events.lock().unwrap()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sensor exited ({status}) while waiting for {what}; stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the sensor's log (its stderr) satisfies `pred`.
    pub fn wait_for_log(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.stderr.lock().unwrap()) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sensor exited ({status}) while waiting for {what}; stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the sensor with SIGTERM and returns every event it emitted.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with_log().0
    }

    /// Stops the sensor with SIGTERM and returns everything it logged (its whole stderr).
    pub fn stop_and_stderr(self) -> String {
        self.stop_with_log().1
    }

    fn stop_with_log(mut self) -> (Vec<Value>, String) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "sensor exited with {status}; stderr:\n{}", self.stderr());
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    panic!("sensor did not stop on SIGTERM; stderr:\n{}", self.stderr());
                }
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(r) = self.err_reader.take() {
            let _ = r.join();
        }
        (self.events(), self.stderr())
    }
}

impl Drop for RunningSensor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The payload name of an event (the one key that is not an envelope field).
pub fn kind(e: &Value) -> &str {
    const ENVELOPE: [&str; 9] =
        ["schema_version", "event_id", "seq", "event_time", "observed_time", "host", "process", "severity", "run_id"];
    e.as_object().and_then(|o| o.keys().find(|k| !ENVELOPE.contains(&k.as_str()))).map_or("", String::as_str)
}

/// The process pid of an event, if it has a process block.
pub fn pid(e: &Value) -> Option<u32> {
    e["process"]["pid"].as_u64().map(|p| p as u32)
}

/// A proto3-JSON uint64 (a string) or a plain number, as u64.
pub fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("not a u64: {n}")),
        Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}

/// Every ioctl count in the stream's accelerator_activity events: (pid of the event, command,
/// count). The kernel counts per interval, so one command shows up in several events.
pub fn ioctl_counts(events: &[Value]) -> impl Iterator<Item = (Option<u32>, u64, u64)> + '_ {
    events.iter().filter(|e| kind(e) == "accelerator_activity").flat_map(|e| {
        let counts = e["accelerator_activity"]["ioctls"].as_array().cloned().unwrap_or_default();
        counts.into_iter().map(move |c| (pid(e), u64_of(&c["cmd"]), u64_of(&c["count"])))
    })
}

/// The ioctls with command `cmd` counted for process `who`, summed over the stream.
pub fn ioctl_count(events: &[Value], who: u32, cmd: u64) -> u64 {
    ioctl_counts(events).filter(|(p, c, _)| *p == Some(who) && *c == cmd).map(|(_, _, n)| n).sum()
}

/// Creates a file of `len` bytes with `content` at the start (sparse beyond).
pub fn make_file(path: &Path, content: &[u8], len: u64) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    f.set_len(len.max(content.len() as u64)).expect("set_len");
}

/// open(2)s `path` read-only from this thread and closes it. Returns the fd number it got.
pub fn open_close(path: &Path) -> i32 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}: {}", path.display(), std::io::Error::last_os_error());
    // SAFETY: fd was just opened by us.
    unsafe { libc::close(fd) };
    fd
}

/// Canonical path as the kernel reports it (tempdirs may sit behind symlinks).
pub fn real(path: &Path) -> String {
    std::fs::canonicalize(path).expect("canonicalize").to_string_lossy().into_owned()
}

/// A sensor configuration for session tests: `/dev/null` watched as an amdgpu device (the
/// worker's ioctls on it are accelerator work), GPU samples replayed from `replay` (the test
/// appends lines), fast drains, samples and session updates, no idle end.
pub fn replay_session_config(replay: &Path) -> String {
    format!(
        "[devices]\nextra = [{{ path = \"/dev/null\", driver = \"amdgpu\" }}]\ndrain_interval_ms = 100\n\
         [telemetry]\nreplay = \"{}\"\ninterval_ms = 100\n\
         [sessions]\nupdate_interval_ms = 300\nidle_timeout_ms = 60000\n",
        replay.display()
    )
}

/// A small, valid GGUF v3 file: three string and two integer metadata keys and one 4x8 F32
/// tensor (model name `tiny-test-model`).
pub fn tiny_gguf() -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }
    let mut b = Vec::new();
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(5u64.to_le_bytes()); // metadata keys
    for (k, v) in
        [("general.architecture", "llama"), ("general.name", "tiny-test-model"), ("general.license", "apache-2.0")]
    {
        s(&mut b, k);
        b.extend(8u32.to_le_bytes()); // string
        s(&mut b, v);
    }
    for (k, v) in [("general.file_type", 0u32), ("llama.context_length", 2048u32)] {
        s(&mut b, k);
        b.extend(4u32.to_le_bytes()); // uint32
        b.extend(v.to_le_bytes());
    }
    s(&mut b, "token_embd.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(8u64.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset in the data section
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(std::iter::repeat_n(0u8, 4 * 8 * 4));
    b
}

/// A protocol-0 pickle that runs `os.system` when loaded.
pub const EVIL_PICKLE: &[u8] = b"cos\nsystem\n(S'echo pwned'\ntR.";

/// The match reasons of a file event (`payload` is `model_file_opened` or `model_mapped`).
pub fn reasons(e: &Value, payload: &str) -> Vec<String> {
    e[payload]["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Standard base64 (the proto3 JSON mapping of `bytes`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Fails the test with the OS error when a libc call returned a negative value.
pub fn check(rc: i64, what: &str) -> i64 {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
    rc
}

/// Kills and reaps a child process when dropped, so a failing test leaves nothing behind.
pub struct Reaper(pub i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child (harmless when it is gone already).
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// Runs the OCSF validator kit (`../shared/ocsf/validate.py`, beside the repository) over
/// `events`, one per line, and returns its report. Fails the test when the kit, Python or its
/// `jsonschema` package is missing (`cargo xtask setup` installs it into target/tools), or when
/// any event is invalid.
pub fn validate_ocsf(events: &[Value]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kit = root.join("../shared/ocsf/validate.py");
    assert!(
        kit.exists(),
        "the OCSF validator kit is missing: {} (the shared/ folder sits beside the repository)",
        kit.display()
    );
    let venv = root.join("target/tools/ocsf-venv/bin/python3");
    let python = if venv.exists() { venv } else { PathBuf::from("python3") };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).expect("write events");
    let out = Command::new(&python)
        .arg(&kit)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e} (`cargo xtask setup` installs it)", python.display()));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let hint = if out.status.code() == Some(2) {
        "\n(exit status 2: a usage error, or Python lacks the jsonschema package: `cargo xtask setup` \
         installs it into target/tools/ocsf-venv)"
    } else {
        ""
    };
    assert_eq!(out.status.code(), Some(0), "OCSF validation failed ({}):\n{report}{hint}", python.display());
    report
}
/// Length of [`benign_pickle`] and [`evil_pickle`]: the same, so one can replace the other in
/// place without changing the file's size.
pub const PICKLE_LEN: usize = 64;

/// A protocol-0 pickle of a plain string: safe to load.
pub fn benign_pickle() -> Vec<u8> {
    let mut b = b"S'".to_vec();
    b.extend(std::iter::repeat_n(b'a', PICKLE_LEN - 5));
    b.extend(b"'\n.");
    assert_eq!(b.len(), PICKLE_LEN);
    b
}

/// A protocol-0 pickle that runs `os.system` when loaded.
pub fn evil_pickle() -> Vec<u8> {
    let mut b = b"cos\nsystem\n(S'echo ".to_vec();
    b.extend(std::iter::repeat_n(b'x', PICKLE_LEN - b.len() - 5));
    b.extend(b"'\ntR.");
    assert_eq!(b.len(), PICKLE_LEN);
    b
}

/// Text of [`PICKLE_LEN`] bytes: no model of any format.
pub fn plain_text() -> Vec<u8> {
    let mut b = b"just some notes, not a model\n".to_vec();
    b.resize(PICKLE_LEN - 1, b'.');
    b.push(b'\n');
    b
}

/// Writes `content` at offset 0 of the open file `f` (in place: same inode, same size).
pub fn overwrite(f: &std::fs::File, content: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    f.write_all_at(content, 0).expect("pwrite");
}

/// Whole-second part of the file's ctime (what a coarse comparison sees).
pub fn ctime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).expect("stat");
    (m.ctime(), m.ctime_nsec())
}

/// Rewrites `path` with `write` until its new ctime lies early in a second (the filesystem's
/// clock, which lags the wall clock by up to a few ticks), so that what follows within a few
/// hundred milliseconds shares one value of a whole-second timestamp. Returns that ctime.
pub fn write_at_second_start(path: &Path, write: impl Fn()) -> (i64, i64) {
    loop {
        write();
        let c = ctime(path);
        if c.1 < 200_000_000 {
            return c;
        }
        std::thread::sleep(Duration::from_millis((1_000_000_000 - c.1) as u64 / 1_000_000 + 5));
    }
}

/// A process driven by `mw-worker --script` (its path: `env!("CARGO_BIN_EXE_mw-worker")` in the
/// test): each command waits for the worker's `ok`. Killed on drop.
pub struct Worker {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Worker {
    /// Starts the worker, as `uid` when given.
    pub fn spawn(bin: &str, uid: Option<u32>) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg("--script").stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some(uid) = uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let mut child = cmd.spawn().expect("spawn mw-worker");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdin, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line and waits until the worker has carried it out.
    pub fn run(&mut self, line: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{line}").expect("worker stdin");
        self.stdin.flush().expect("worker stdin");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("worker stdout");
        assert_eq!(answer.trim(), "ok", "worker failed on `{line}`");
    }

    /// Tells the worker to exit and waits for it.
    pub fn exit(mut self) {
        self.run("exit");
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
