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

/// A running sensor whose stdout (JSON lines) is collected in the background.
pub struct RunningSensor {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Held for the sensor's life: one sensor at a time per test binary. Two sensors see each
    /// other's analysis opens (a sensor only ignores itself), which would make them the
    /// reported opener of the other test's files.
    _exclusive: MutexGuard<'static, ()>,
}

static ONE_SENSOR: Mutex<()> = Mutex::new(());

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

    fn start_full(config: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Self {
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
        let socket = format!("socket = \"{}\"\n", dir.path().join("api.sock").display());
        for (table, key, line) in [("[sensor]\n", "state_dir", state), ("[api]\n", "socket", socket)] {
            match config.find(table) {
                // A test's own table: the key goes in at its top unless the test set it.
                Some(at) if !config.contains(key) => config.insert_str(at + table.len(), &line),
                Some(_) => {}
                None => config.push_str(&format!("\n{table}{line}")),
            }
        }
        std::fs::write(&cfg_path, config).expect("write config");
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(&cfg_path)
            .args(["--format", "json"])
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
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = err_sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut sensor =
            RunningSensor { child, events, stderr, _dir: dir, reader: Some(reader), _exclusive: exclusive };
        // Every probe must attach: a skipped one (reported as degraded) fails the test here.
        let health =
            sensor.wait_for("the first health report", Duration::from_secs(60), |e| kind(e) == "sensor_health");
        assert_eq!(health["sensor_health"]["state"], "HEALTH_STATE_OK", "{health:#}");
        sensor
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
                "timed out after {timeout:?} waiting for {what}; {} events received; stderr:\n{}",
                self.events.lock().unwrap().len(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the sensor with SIGTERM and returns every event it emitted.
    pub fn stop(mut self) -> Vec<Value> {
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
        self.events()
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
