//! The sensor's configuration: a TOML file whose every key has a documented built-in default,
//! so an absent file means "defaults" and `modelwatch config --default` prints them all.
//!
//! Everything here is validated before any probe is loaded; a bad value is an error that names
//! its key (exit code 2 at the binary edge).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use modelwatch_artifact::ByteSize;

mod doc;
pub mod trace;

pub use doc::DocError;
mod delivery;
pub use delivery::{
    FACILITIES, KafkaConfig, PayloadFormat, RateLimitConfig, SEVERITIES, SaslConfig, Selection, SpoolConfig,
    SyslogConfig, TlsConfig, host_port,
};

pub const DEFAULT_PATH: &str = "/etc/modelwatch/modelwatch.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The OS error is part of this message, not a `source`: a chain printed with `{:#}` would
    // say it twice.
    #[error("cannot read config {path}: {reason}")]
    Read { path: PathBuf, reason: std::io::Error },
    /// A syntax error, an unknown key or a value of the wrong type: where it is, what is wrong,
    /// and the line with a caret under the spot (`snippet`, two lines; empty when TOML gave no
    /// position).
    #[error("config {path}{at}: {message}{snippet}", at = location(*line, *column), snippet = snippet_block(snippet))]
    Parse { path: PathBuf, line: usize, column: usize, message: String, snippet: String },
    #[error("config {path}: key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub files: FilesConfig,
    pub devices: DevicesConfig,
    pub sensor: SensorConfig,
    pub output: OutputConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub sessions: SessionsConfig,
    pub telemetry: TelemetryConfig,
    /// Model artifact analysis: identification, digests, pickle safety, approval, licences.
    pub artifact: modelwatch_artifact::ArtifactConfig,
}

/// Inference-session detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// How often a running session reports its usage, in milliseconds.
    pub update_interval_ms: u64,
    /// A session without activity for this long ends, in milliseconds.
    pub idle_timeout_ms: u64,
    /// CPU use (percent of one core) that counts as busy for CPU inference.
    pub cpu_busy_percent: f64,
    /// Executables (or interpreter scripts/modules) that are inference runtimes.
    pub runtime_executables: Vec<String>,
    /// Executables that touch model files but never run inference (copying, hashing,
    /// downloading): their accesses are reported as file accesses, never as sessions.
    pub non_inference_executables: Vec<String>,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect();
        Self {
            update_interval_ms: 10_000,
            idle_timeout_ms: 300_000,
            cpu_busy_percent: 50.0,
            runtime_executables: s(&[
                "ollama",
                "llama-server",
                "llama-cli",
                "llama-run",
                "llama-bench",
                "llamafile",
                "lms",
                "LM Studio",
                "lm-studio",
                "vllm",
                "text-generation-launcher",
                "text-generation-server",
                "text-generation-webui",
                "ComfyUI",
                "koboldcpp",
                "local-ai",
                "localai",
                "gpt4all",
                "jan",
                "mlc_llm",
                "sglang",
                "tabby",
                "whisper-cli",
                "whisper-server",
                "sd",
                "trtllm-serve",
                "tritonserver",
            ]),
            non_inference_executables: s(&[
                "cp",
                "mv",
                "rsync",
                "scp",
                "sftp",
                "dd",
                "cat",
                "pv",
                "tar",
                "gzip",
                "gunzip",
                "zstd",
                "xz",
                "bzip2",
                "zip",
                "unzip",
                "7z",
                "sha256sum",
                "sha1sum",
                "sha512sum",
                "md5sum",
                "b2sum",
                "b3sum",
                "cksum",
                "curl",
                "wget",
                "aria2c",
                "git",
                "git-lfs",
                "rclone",
                "aws",
                "gsutil",
                "azcopy",
                "file",
                "strings",
                "xxd",
                "od",
                "hexdump",
                "updatedb",
                "locate",
                "find",
                "du",
                "ls",
                "stat",
                "clamscan",
                "restic",
                "borg",
            ]),
        }
    }
}

/// GPU and accelerator utilisation sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Sample NVIDIA GPUs through NVML (libnvidia-ml.so.1, when present).
    pub nvml: bool,
    /// Sample DRM fdinfo of processes that hold accelerator fds.
    pub drm_fdinfo: bool,
    /// Replay recorded samples from this JSON-lines file (tests, demos).
    pub replay: Option<PathBuf>,
    /// Sampling interval, in milliseconds.
    pub interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { nvml: true, drm_fdinfo: true, replay: None, interval_ms: 1000 }
    }
}

/// Which files are model files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// File name extensions of model weights and serialised models (case-insensitive). The
    /// default is every extension of the artifact crate's format table.
    pub extensions: Vec<String>,
    /// Regular files at least this large are reported whatever their name. Bytes, or a string
    /// such as "32MiB".
    pub size_threshold: ByteSize,
    /// Directories whose files are models whatever their name or size. A leading `~/` is
    /// expanded for every local user's home directory. Directories that do not exist yet are
    /// picked up when they appear.
    pub model_dirs: Vec<String>,
    /// File-name prefixes of inference-runtime libraries; an executable mapping of one is
    /// reported.
    pub runtime_libraries: Vec<String>,
    /// Once a file's content shows it is not a model (or of no known format), filter its later
    /// opens and mappings in the kernel, until the file changes. `false` reports every open.
    pub suppress_known_non_models: bool,
    /// Also report candidates whose content is not a model (the kernel selected them by name,
    /// directory or size): for tuning the file filter. Off, they are only counted
    /// (`candidates_rejected` in status).
    pub report_non_models: bool,
    /// Opens (or mappings) of one file by one process within this many milliseconds of the
    /// first are reported as one event with a count (`repeats`): an engine's threads open a
    /// model at once. 0 reports each one.
    pub fold_window_ms: u64,
    /// Once a process shows it is an inference runtime (it mapped one of `runtime_libraries`,
    /// runs one of `sessions.runtime_executables`, or loaded a model), the regular files it opens
    /// for reading are identified whatever their name and size: a pickle can be called anything.
    /// This many such opens per process and second at most (the rest are counted and reported
    /// as `runtime_budget` losses); files found to be neither model nor code are filtered from
    /// then on. 0 turns the widening off.
    pub runtime_process_opens_per_sec: u32,
}

/// Accelerator devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Extra device nodes to watch as accelerators (besides the discovered ones): a path, or
    /// `{ path = "...", driver = "amdgpu" }` to decode its ioctls with a driver's table.
    pub extra: Vec<ExtraDevice>,
    /// How often the kernel's ioctl counters are drained, in milliseconds.
    pub drain_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtraDevice {
    Path(PathBuf),
    Spec {
        path: PathBuf,
        #[serde(default)]
        driver: Option<String>,
    },
}

impl ExtraDevice {
    pub fn path(&self) -> &Path {
        match self {
            ExtraDevice::Path(p) | ExtraDevice::Spec { path: p, .. } => p,
        }
    }

    pub fn driver(&self) -> Option<&str> {
        match self {
            ExtraDevice::Path(_) => None,
            ExtraDevice::Spec { driver, .. } => driver.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    /// Kernel ring buffer size in KiB (a power of two, at least 64).
    pub ring_buffer_kib: u32,
    /// How long an exited process stays resolvable for late events, in milliseconds
    /// (at most 10 minutes).
    pub exit_grace_ms: u64,
    /// Housekeeping interval in ms (100 ms to 10 minutes): new model directories and
    /// accelerators are looked for, processes holding accelerators are found, processes
    /// holding identified models they were never seen opening are found (a walk of /proc),
    /// exited processes are forgotten and those whose exit record was lost are swept.
    pub housekeeping_ms: u64,
    /// Where state that survives restarts is kept.
    pub state_dir: PathBuf,
    /// File records (opens, mappings) per second each process may put into the kernel ring
    /// buffer on average, so that one process flooding opens cannot crowd out everyone
    /// else's. Beyond it (and the burst), its records are dropped and reported as
    /// `rate_limited` losses naming the process. 0: no limit.
    pub file_events_per_sec: u32,
    /// Records a process may send at once above its rate (an engine opening its shards).
    pub file_events_burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Write events to standard output.
    pub stdout: bool,
    /// Format on standard output: `compact` (one readable line per event), `json` (one JSON
    /// object per line, proto3 JSON mapping) or `ocsf` (one OCSF 1.8.0 event per line; see
    /// docs/ocsf.md).
    pub format: OutputFormat,
    /// A JSON-lines file sink with size-based rotation; unset means none.
    pub jsonl: Option<JsonlConfig>,
    /// Kafka sink, with a spool on local disk.
    pub kafka: KafkaConfig,
    /// Syslog sink (RFC 5424 over TCP or TLS), with a spool on local disk.
    pub syslog: SyslogConfig,
}

/// A JSON-lines file, rotated by size: `events.jsonl` → `events.jsonl.1` → … .
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    pub path: PathBuf,
    /// Rotate when the file would exceed this size.
    #[serde(default = "default_jsonl_max")]
    pub max_size: ByteSize,
    /// Rotated files kept.
    #[serde(default = "default_jsonl_keep")]
    pub keep: u32,
    /// What each line is: `json` (proto3 JSON mapping) or `ocsf` (OCSF 1.8.0).
    #[serde(default)]
    pub format: JsonFormat,
}

/// The JSON a machine-readable sink writes: the schema's own proto3 JSON mapping, or OCSF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonFormat {
    #[default]
    Json,
    Ocsf,
}

impl From<JsonFormat> for OutputFormat {
    fn from(f: JsonFormat) -> Self {
        match f {
            JsonFormat::Json => OutputFormat::Json,
            JsonFormat::Ocsf => OutputFormat::Ocsf,
        }
    }
}

fn default_jsonl_max() -> ByteSize {
    ByteSize(100 << 20)
}

fn default_jsonl_keep() -> u32 {
    5
}

/// The local gRPC API (Unix socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub enabled: bool,
    /// Socket path; created mode 0660, owned by root and the `modelwatch` group when it exists.
    /// A directory the sensor creates for it is mode 0750 with the same group.
    pub socket: PathBuf,
    /// Events queued per `Tail` subscriber before it starts losing events.
    pub subscriber_queue: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { enabled: true, socket: PathBuf::from(DEFAULT_SOCKET), subscriber_queue: 4096 }
    }
}

/// The Prometheus endpoint (`GET /metrics`). Off unless an address is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:port` to serve on; unset or empty: no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl MetricsConfig {
    /// The address to serve on, when the endpoint is on. Validated at load, so a bad address
    /// here (a `Config` built in code) is treated as off.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        parse_metrics_address(self.address.as_deref()?).ok().flatten()
    }
}

/// `None` for "off" (empty), the address, or why it is not one.
fn parse_metrics_address(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        format!("`{text}` is not an IP address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\" (no host names)")
    })?;
    if addr.port() == 0 {
        return Err(format!("`{text}`: port 0 would be a random port nobody knows to scrape"));
    }
    Ok(Some(addr))
}

pub const DEFAULT_SOCKET: &str = "/run/modelwatch/modelwatch.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One readable line per event (`text` is the same, as in `status` and `scan`).
    #[value(alias = "text")]
    Compact,
    /// One JSON object per line, the schema's proto3 JSON mapping.
    Json,
    /// OCSF 1.8.0 events, one JSON object per line (docs/ocsf.md).
    Ocsf,
}

impl Default for FilesConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect();
        Self {
            // The artifact crate's format table, so that the kernel filter and `modelwatch
            // scan` look at the same files.
            extensions: modelwatch_artifact::formats::model_extensions().map(|e| format!(".{e}")).collect(),
            size_threshold: ByteSize(32 << 20),
            model_dirs: s(&[
                "~/.ollama/models",
                "/usr/share/ollama/.ollama/models",
                "/var/lib/ollama/models",
                "~/.cache/huggingface/hub",
                "~/.lmstudio/models",
                "~/.cache/lm-studio/models",
                "~/.cache/llama.cpp",
                "~/.cache/torch/hub",
            ]),
            runtime_libraries: s(&[
                "libllama",
                "libggml",
                "libcudart",
                "libcublas",
                "libcudnn",
                "libtorch_cuda",
                "libtorch_cpu",
                "libonnxruntime",
                "libnvinfer",
                "libopenvino",
                "libMIOpen",
                "libamdhip64",
                "libze_loader",
                "libvulkan",
                "libmlx",
                "libtensorflow",
                "libctranslate2",
            ]),
            suppress_known_non_models: true,
            report_non_models: false,
            fold_window_ms: 20,
            runtime_process_opens_per_sec: 256,
        }
    }
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self { extra: Vec::new(), drain_interval_ms: 1000 }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ring_buffer_kib: 8 * 1024,
            exit_grace_ms: 5000,
            housekeeping_ms: 10_000,
            state_dir: PathBuf::from("/var/lib/modelwatch"),
            // An engine opens and maps tens of shards (llama.cpp opens one model from four
            // threads), a few hundred records at start: a burst of 4000 never holds one back,
            // and ten processes' bursts still fit the default ring (about 40 000 records).
            file_events_per_sec: 1000,
            file_events_burst: 4000,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            stdout: true,
            format: OutputFormat::Compact,
            jsonl: None,
            // Printed by `config --default` so every key is documented; off until configured.
            kafka: KafkaConfig { enabled: false, ..Default::default() },
            syslog: SyslogConfig { enabled: false, ..Default::default() },
        }
    }
}

impl Config {
    /// Loads `path`. When `path` is the default location and does not exist, the built-in
    /// defaults apply; an explicitly named file must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(reason) => return Err(ConfigError::Read { path: path.to_owned(), reason }),
        };
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The built-in defaults as TOML, every key with its one-line explanation (`config/doc.rs`):
    /// what `modelwatch config --default` prints and the package installs.
    pub fn default_toml() -> Result<String, DocError> {
        doc::render()
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        for (i, ext) in self.files.extensions.iter().enumerate() {
            if sensor_ebpf::ext_key(ext).is_none() {
                return Err(bad(
                    format!("files.extensions[{i}]"),
                    format!(
                        "`{ext}` must be a single ASCII extension of 1 to {} characters, such as \".gguf\"",
                        sensor_ebpf::EXT_MAX - 1
                    ),
                ));
            }
        }
        if self.files.fold_window_ms > 1000 {
            return Err(bad(
                "files.fold_window_ms".into(),
                "must be at most 1000 (every model event waits this long)".into(),
            ));
        }
        if self.files.size_threshold.0 == 0 {
            return Err(bad("files.size_threshold".into(), "must be greater than 0".into()));
        }
        for (i, dir) in self.files.model_dirs.iter().enumerate() {
            if !(dir.starts_with('/') || dir.starts_with("~/")) {
                return Err(bad(
                    format!("files.model_dirs[{i}]"),
                    format!("`{dir}` must be absolute or start with ~/"),
                ));
            }
        }
        for (i, lib) in self.files.runtime_libraries.iter().enumerate() {
            // The kernel compares at most LIB_PREFIX_MAX - 1 bytes of a name (plus its NUL).
            if lib.is_empty() || lib.len() >= sensor_ebpf::LIB_PREFIX_MAX || lib.contains('/') {
                return Err(bad(
                    format!("files.runtime_libraries[{i}]"),
                    format!(
                        "`{lib}` must be a file-name prefix of 1 to {} bytes without '/'",
                        sensor_ebpf::LIB_PREFIX_MAX - 1
                    ),
                ));
            }
        }
        for (i, dev) in self.devices.extra.iter().enumerate() {
            if !dev.path().is_absolute() {
                return Err(bad(
                    format!("devices.extra[{i}]"),
                    format!("`{}` must be an absolute path", dev.path().display()),
                ));
            }
            if let Some(d) = dev.driver()
                && !crate::accel::ioctls::Driver::ALL.iter().any(|k| k.as_str() == d)
            {
                let known: Vec<&str> = crate::accel::ioctls::Driver::ALL.iter().map(|k| k.as_str()).collect();
                return Err(bad(
                    format!("devices.extra[{i}].driver"),
                    format!("unknown driver `{d}` (known: {})", known.join(", ")),
                ));
            }
        }
        let s = &self.sessions;
        if s.update_interval_ms < 100 {
            return Err(bad("sessions.update_interval_ms".into(), "must be at least 100".into()));
        }
        if s.idle_timeout_ms < 1000 {
            return Err(bad("sessions.idle_timeout_ms".into(), "must be at least 1000".into()));
        }
        if !(s.cpu_busy_percent > 0.0 && s.cpu_busy_percent <= 10_000.0) {
            return Err(bad("sessions.cpu_busy_percent".into(), "must be in (0, 10000]".into()));
        }
        if let Err((key, message)) = self.artifact.validate() {
            return Err(bad(format!("artifact.{key}"), message));
        }
        if !(50..=3_600_000).contains(&self.telemetry.interval_ms) {
            return Err(bad("telemetry.interval_ms".into(), "must be between 50 and 3600000".into()));
        }
        if !(10..=3_600_000).contains(&self.devices.drain_interval_ms) {
            return Err(bad("devices.drain_interval_ms".into(), "must be between 10 and 3600000".into()));
        }
        let rb = self.sensor.ring_buffer_kib;
        if !rb.is_power_of_two() || !(64..=1 << 20).contains(&rb) {
            return Err(bad(
                "sensor.ring_buffer_kib".into(),
                format!("{rb} must be a power of two between 64 and 1048576"),
            ));
        }
        if let Some(j) = &self.output.jsonl {
            if !j.path.is_absolute() {
                return Err(bad(
                    "output.jsonl.path".into(),
                    format!("`{}` must be an absolute path", j.path.display()),
                ));
            }
            if j.max_size.0 < 4096 {
                return Err(bad("output.jsonl.max_size".into(), "must be at least 4KiB".into()));
            }
        }
        if let Err((key, message)) = delivery::validate(&self.output.kafka, &self.output.syslog) {
            return Err(bad(key, message));
        }
        if !self.api.socket.is_absolute() {
            return Err(bad("api.socket".into(), format!("`{}` must be an absolute path", self.api.socket.display())));
        }
        if let Some(a) = &self.metrics.address
            && let Err(message) = parse_metrics_address(a)
        {
            return Err(bad("metrics.address".into(), message));
        }
        if !(16..=1 << 20).contains(&self.api.subscriber_queue) {
            return Err(bad("api.subscriber_queue".into(), "must be between 16 and 1048576".into()));
        }
        if self.sensor.file_events_per_sec > 1_000_000 {
            return Err(bad("sensor.file_events_per_sec".into(), "must be at most 1000000 (0: no limit)".into()));
        }
        if self.sensor.file_events_per_sec > 0 && !(1..=1 << 20).contains(&self.sensor.file_events_burst) {
            return Err(bad("sensor.file_events_burst".into(), "must be between 1 and 1048576".into()));
        }
        if self.files.runtime_process_opens_per_sec > 1_000_000 {
            return Err(bad(
                "files.runtime_process_opens_per_sec".into(),
                "must be at most 1000000 (0: no widening)".into(),
            ));
        }
        if !(100..=600_000).contains(&self.sensor.housekeeping_ms) {
            return Err(bad("sensor.housekeeping_ms".into(), "must be between 100 and 600000".into()));
        }
        if self.sensor.exit_grace_ms > 600_000 {
            return Err(bad("sensor.exit_grace_ms".into(), "must be at most 600000".into()));
        }
        Ok(())
    }

    pub fn drain_interval(&self) -> Duration {
        Duration::from_millis(self.devices.drain_interval_ms)
    }

    pub fn exit_grace(&self) -> Duration {
        Duration::from_millis(self.sensor.exit_grace_ms)
    }
}

/// serde's words for what a file's author calls keys and numbers.
fn plain(message: &str) -> String {
    let mut m = message.replace("unknown field", "unknown key");
    for (ty, words) in [
        ("u8", "a whole number"),
        ("u16", "a whole number"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("usize", "a whole number"),
        ("i64", "a whole number"),
        ("f64", "a number"),
    ] {
        m = m.replace(&format!("expected {ty}"), &format!("expected {words}"));
    }
    m
}

/// `, line L, column C` (1-based), or nothing when TOML gave no position.
fn location(line: usize, column: usize) -> String {
    if line == 0 { String::new() } else { format!(", line {line}, column {column}") }
}

fn snippet_block(snippet: &str) -> String {
    if snippet.is_empty() { String::new() } else { format!("\n{snippet}") }
}

/// TOML's error with its position as line and column, and the offending line with a caret
/// under the span (TOML's own rendering, with the message first and on one line).
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = plain(&e.message().trim().replace('\n', "; "));
    let Some(span) = e.span() else {
        return ConfigError::Parse { path: path.to_owned(), line: 0, column: 0, message, snippet: String::new() };
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let source_line = &text[line_start..line_end];
    let width = text.get(start..span.end.min(line_end)).map_or(0, |s| s.chars().count()).max(1);
    let caret = format!("{}{}", " ".repeat(column - 1), "^".repeat(width));
    let gutter = " ".repeat(line.to_string().len());
    let snippet = format!("{line} | {source_line}\n{gutter} | {caret}");
    ConfigError::Parse { path: path.to_owned(), line, column, message, snippet }
}

/// Expands `~/` in a configured directory to every local home directory (from /etc/passwd,
/// plus /root); other paths are returned as they are.
pub fn expand_home(dir: &str, passwd: &str) -> Vec<PathBuf> {
    let Some(rest) = dir.strip_prefix("~/") else {
        return vec![PathBuf::from(dir)];
    };
    let mut homes: Vec<PathBuf> = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let home = *fields.get(5)?;
            let shell = fields.get(6).copied().unwrap_or("");
            // Service accounts with no login shell rarely run models; root and people do.
            let login = !shell.ends_with("nologin") && !shell.ends_with("/false");
            (home.starts_with('/') && home != "/" && login).then(|| PathBuf::from(home))
        })
        .collect();
    homes.push(PathBuf::from("/root"));
    homes.sort();
    homes.dedup();
    homes.into_iter().map(|h| h.join(rest)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_defaults_and_defaults_round_trip() {
        assert_eq!(parse("").unwrap(), Config::default());
        let text = Config::default_toml().unwrap();
        assert_eq!(parse(&text).unwrap(), Config::default(), "{text}");
        assert!(text.contains("size_threshold = \"32MiB\""), "{text}");
    }

    #[test]
    fn default_extensions_are_the_format_tables() {
        let exts = FilesConfig::default().extensions;
        assert_eq!(exts.len(), modelwatch_artifact::formats::model_extensions().count());
        for e in [".gguf", ".safetensors", ".npy", ".hdf5", ".llamafile", ".mar", ".nemo", ".engine", ".plan"] {
            assert!(exts.iter().any(|x| x == e), "{e}");
        }
        // Every one is a valid kernel key, and the kernel's EXTENSIONS map (128 entries,
        // sensor-ebpf/src/maps.rs) holds them with room for the user's own.
        assert!(exts.iter().all(|e| sensor_ebpf::ext_key(e).is_some()));
        assert!(exts.len() <= 64);
    }

    #[test]
    fn sizes_parse_in_both_forms() {
        let c = parse("[files]\nsize_threshold = \"1GiB\"").unwrap();
        assert_eq!(c.files.size_threshold.0, 1 << 30);
        let c = parse("[files]\nsize_threshold = 4096").unwrap();
        assert_eq!(c.files.size_threshold.0, 4096);
        let e = parse("[files]\nsize_threshold = \"12 parsecs\"").unwrap_err();
        assert!(e.to_string().contains("size unit"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let long_lib = format!("[files]\nruntime_libraries = [\"{}\"]", "l".repeat(sensor_ebpf::LIB_PREFIX_MAX));
        let cases = [
            ("[files]\nextensions = [\".gguf\", \"tar.gz\"]", "files.extensions[1]"),
            ("[files]\nmodel_dirs = [\"relative/dir\"]", "files.model_dirs[0]"),
            ("[files]\nsize_threshold = 0", "files.size_threshold"),
            ("[sensor]\nring_buffer_kib = 1000", "sensor.ring_buffer_kib"),
            ("[sensor]\nfile_events_per_sec = 2000000", "sensor.file_events_per_sec"),
            ("[sensor]\nfile_events_burst = 0", "sensor.file_events_burst"),
            ("[files]\nruntime_process_opens_per_sec = 2000000", "files.runtime_process_opens_per_sec"),
            ("[devices]\nextra = [\"dev/null\"]", "devices.extra[0]"),
            ("[devices]\ndrain_interval_ms = 1", "devices.drain_interval_ms"),
            ("[files]\nruntime_libraries = [\"a/b\"]", "files.runtime_libraries[0]"),
            (long_lib.as_str(), "files.runtime_libraries[0]"),
            ("[output.jsonl]\npath = \"rel.jsonl\"", "output.jsonl.path"),
            ("[api]\nsocket = \"x.sock\"", "api.socket"),
            ("[api]\nsubscriber_queue = 1", "api.subscriber_queue"),
            ("[metrics]\naddress = \"localhost:9464\"", "metrics.address"),
            ("[metrics]\naddress = \"127.0.0.1\"", "metrics.address"),
            ("[metrics]\naddress = \"127.0.0.1:0\"", "metrics.address"),
            ("[metrics]\naddress = \"127.0.0.1:99999\"", "metrics.address"),
            ("[devices]\nextra = [{ path = \"/dev/null\", driver = \"voodoo\" }]", "devices.extra[0].driver"),
            ("[sessions]\ncpu_busy_percent = -1.0", "sessions.cpu_busy_percent"),
            ("[telemetry]\ninterval_ms = 1", "telemetry.interval_ms"),
            ("[artifact]\nhash_workers = 0", "artifact.hash_workers"),
            ("[artifact]\nmax_analysis_ms = 50", "artifact.max_analysis_ms"),
            ("[artifact]\nanalysis_workers = 65", "artifact.analysis_workers"),
            ("[sensor]\nhousekeeping_ms = 3600000", "sensor.housekeeping_ms"),
            ("[sensor]\nexit_grace_ms = 3600000", "sensor.exit_grace_ms"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} gave {e}");
        }
        let e = parse("[files]\nbogus = 1").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[files\n").unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_set() {
        assert_eq!(parse("").unwrap().metrics.socket_addr(), None);
        assert_eq!(parse("[metrics]\naddress = \"\"").unwrap().metrics.socket_addr(), None);
        let c = parse("[metrics]\naddress = \"127.0.0.1:9464\"").unwrap();
        assert_eq!(c.metrics.socket_addr(), Some("127.0.0.1:9464".parse().unwrap()));
        let c = parse("[metrics]\naddress = \"[::1]:9464\"").unwrap();
        assert_eq!(c.metrics.socket_addr(), Some("[::1]:9464".parse().unwrap()));
        let e = parse("[metrics]\naddress = \"localhost:9464\"").unwrap_err().to_string();
        assert!(e.contains("no host names"), "{e}");
    }

    #[test]
    fn output_formats_parse() {
        let c = parse("[output]\nformat = \"ocsf\"\n[output.jsonl]\npath = \"/var/log/mw.jsonl\"\nformat = \"ocsf\"")
            .unwrap();
        assert_eq!(c.output.format, OutputFormat::Ocsf);
        assert_eq!(c.output.jsonl.unwrap().format, JsonFormat::Ocsf);
        // The file's format defaults to the proto3 JSON mapping; compact is not JSON lines.
        let c = parse("[output.jsonl]\npath = \"/var/log/mw.jsonl\"").unwrap();
        assert_eq!(c.output.jsonl.unwrap().format, JsonFormat::Json);
        let e = parse("[output.jsonl]\npath = \"/var/log/mw.jsonl\"\nformat = \"compact\"").unwrap_err().to_string();
        assert!(e.contains("compact") && e.contains("ocsf"), "{e}");
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let p = Path::new("/nonexistent/modelwatch.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(matches!(Config::load(p, true), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn home_expansion_covers_login_users_and_root() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                      alice:x:1000:1000::/home/alice:/bin/zsh\n\
                      broken-line\n";
        let dirs = expand_home("~/.ollama/models", passwd);
        assert_eq!(dirs, vec![PathBuf::from("/home/alice/.ollama/models"), PathBuf::from("/root/.ollama/models")]);
        assert_eq!(expand_home("/srv/models", passwd), vec![PathBuf::from("/srv/models")]);
    }
}
