//! The documented default configuration: what `modelwatch config --default` prints and what
//! the package installs as `/etc/modelwatch/modelwatch.toml` (the same text, from here).
//!
//! One row per key of the file: its one-line explanation, and for a key that is unset by
//! default an example value. Defaults are not written here: they come from
//! `Config::default()`, so the text cannot disagree with the code. The keys come from the
//! configuration's `Deserialize` implementations ([`super::trace`]), and the tests fail when a
//! key has no row or a row no key: a new setting cannot be added without its documentation.

use std::fmt::Write as _;

use super::{Config, trace};

/// The documentation of one key.
struct Row {
    /// Dotted path of the key (or table), e.g. `output.jsonl.max_size`.
    key: &'static str,
    /// One line, no trailing period needed.
    doc: &'static str,
    /// For a key that is unset by default (an optional value, or a required key of an
    /// optional table): a TOML value that shows its form. Shown commented out.
    example: Option<&'static str>,
}

const fn row(key: &'static str, doc: &'static str) -> Row {
    Row { key, doc, example: None }
}

const fn example(key: &'static str, doc: &'static str, example: &'static str) -> Row {
    Row { key, doc, example: Some(example) }
}

/// Every key, in the order the file shows them (tables before their keys). A key a table
/// holds is shown under that table, its own subtables after its values.
const ROWS: &[Row] = &[
    row("files", "Which files are model files: the kernel's filter selects them, their content decides"),
    row("files.extensions", "File name extensions of model files, case-insensitive (default: every known format's)"),
    row(
        "files.size_threshold",
        "Regular files at least this large are candidates whatever their name (bytes or \"32MiB\")",
    ),
    row(
        "files.model_dirs",
        "Directories whose files are candidates whatever their name or size; ~/ is every user's home",
    ),
    row(
        "files.runtime_libraries",
        "File-name prefixes of inference-runtime libraries: an executable mapping of one is reported",
    ),
    row(
        "files.suppress_known_non_models",
        "Once a file's content shows it is no model, filter its opens in the kernel until it changes",
    ),
    row(
        "files.runtime_process_opens_per_sec",
        "Opens per second of an inference-runtime process judged whatever their name and size (0: off)",
    ),
    row(
        "files.report_non_models",
        "Also report candidates whose content is no model (to tune the filter); else count them",
    ),
    row(
        "files.fold_window_ms",
        "Opens of a file by one process within this many ms are one event with a count (0: each)",
    ),
    row("devices", "Accelerators (GPUs, NPUs): the ones found under /dev, and these"),
    row(
        "devices.extra",
        "More device nodes to watch: a path, or { path = \"...\", driver = \"amdgpu\" } to decode ioctls",
    ),
    row("devices.drain_interval_ms", "How often the kernel's per-process ioctl counters are read, in ms"),
    row("sensor", "The kernel side and the sensor's own state"),
    row("sensor.ring_buffer_kib", "Kernel ring buffer size in KiB (a power of two, at least 64)"),
    row("sensor.exit_grace_ms", "How long an exited process stays known for late events, in ms (at most 600000)"),
    row("sensor.housekeeping_ms", "Interval of housekeeping (new model directories and devices, /proc walks), in ms"),
    row("sensor.state_dir", "Where state that survives restarts is kept (the digest cache)"),
    row(
        "sensor.file_events_per_sec",
        "File records per second each process may put into the kernel's ring, on average (0: no limit)",
    ),
    row("sensor.file_events_burst", "File records a process may put into the ring at once, above that rate"),
    row("output", "Where events go, besides the local API"),
    row("output.stdout", "Write events to standard output (the journal, under systemd)"),
    row(
        "output.format",
        "Format on standard output: compact (readable lines), json (proto3 JSON) or ocsf (OCSF 1.8.0)",
    ),
    row("output.jsonl", "A JSON-lines file of events, rotated by size (unset: none)"),
    example("output.jsonl.path", "The file, an absolute path", "\"/var/log/modelwatch/events.jsonl\""),
    row("output.jsonl.max_size", "Rotate when the file would exceed this size"),
    row("output.jsonl.keep", "Rotated files kept (events.jsonl.1, .2, ...)"),
    row("output.jsonl.format", "What each line is: json (proto3 JSON mapping) or ocsf (OCSF 1.8.0)"),
    row("output.kafka", "The Kafka sink (unset: none): an idempotent producer with acks=all, on a spool"),
    row("output.kafka.enabled", "A table written in the file is enabled unless this says false"),
    row("output.kafka.brokers", "Bootstrap brokers, host:port"),
    row("output.kafka.topic", "The topic events go to (message key: the host id, so each host stays in order)"),
    row("output.kafka.findings_topic", "Policy findings go to this topic instead, when set"),
    row("output.kafka.format", "Message value: protobuf (an encoded modelwatch.v1.Event), json or ocsf"),
    row("output.kafka.compression", "none, gzip, snappy, lz4 or zstd"),
    row("output.kafka.linger_ms", "How long the producer waits to fill a batch, in milliseconds"),
    row(
        "output.kafka.delivery_timeout_ms",
        "How long a message may wait for its acknowledgement before it is sent again",
    ),
    row("output.kafka.client_id", "The client id the brokers see"),
    row("output.kafka.kinds", "Only these event kinds (as in tail --kind); empty: all (health and losses always pass)"),
    row("output.kafka.min_severity", "Lowest severity sent: info, low, medium, high or critical"),
    row("output.kafka.rate_limit", "Holds back part of high-volume kinds, counted (unset: nothing held back)"),
    example("output.kafka.rate_limit.kinds", "The kinds limited", "[\"session_updated\", \"accelerator_activity\"]"),
    example("output.kafka.rate_limit.per_second", "Events per second let through, per kind", "10"),
    example("output.kafka.rate_limit.burst", "Events let through at once after a quiet spell, per kind", "50"),
    row("output.kafka.tls", "TLS to the brokers (unset: plain TCP)"),
    example(
        "output.kafka.tls.ca",
        "CA certificates to trust (unset: the system's)",
        "\"/etc/modelwatch/kafka-ca.pem\"",
    ),
    example("output.kafka.tls.cert", "Client certificate, PEM", "\"/etc/modelwatch/kafka-client.pem\""),
    example("output.kafka.tls.key", "Its private key, PEM", "\"/etc/modelwatch/kafka-client.key\""),
    example("output.kafka.tls.server_name", "Name to verify the broker's certificate against", "\"kafka.example.com\""),
    row("output.kafka.sasl", "SASL authentication (unset: none)"),
    example("output.kafka.sasl.mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", "\"SCRAM-SHA-512\""),
    example("output.kafka.sasl.username", "The user", "\"modelwatch\""),
    example("output.kafka.sasl.password", "The password (better: password_file)", "\"secret\""),
    example("output.kafka.sasl.password_file", "A file holding the password", "\"/etc/modelwatch/kafka.password\""),
    row("output.kafka.spool", "The write-ahead spool on disk under the sink"),
    row("output.kafka.spool.dir", "Its directory; empty: <sensor.state_dir>/spool/<sink>"),
    row(
        "output.kafka.spool.max_size",
        "Most disk it takes; when full the oldest undelivered events are dropped, counted",
    ),
    row(
        "output.kafka.spool.max_age_s",
        "Undelivered events older than this many seconds are dropped, counted (0: kept)",
    ),
    row(
        "output.kafka.spool.sync_interval_ms",
        "Spooled events reach the disk at least this often (what a power cut can lose)",
    ),
    row("output.kafka.spool.sync_events", "... and after this many events"),
    row("output.kafka.properties", "Further librdkafka producer properties (those the sink sets itself are refused)"),
    row("output.syslog", "The syslog sink (unset: none): RFC 5424, octet-counted, over TCP or TLS, on a spool"),
    row("output.syslog.enabled", "A table written in the file is enabled unless this says false"),
    row("output.syslog.address", "The receiver, host:port"),
    row("output.syslog.transport", "tcp or tls"),
    row("output.syslog.format", "Message text: json or ocsf"),
    row("output.syslog.facility", "Syslog facility: kern, user, ... local0 ... local7"),
    row(
        "output.syslog.kinds",
        "Only these event kinds (as in tail --kind); empty: all (health and losses always pass)",
    ),
    row("output.syslog.min_severity", "Lowest severity sent: info, low, medium, high or critical"),
    row("output.syslog.rate_limit", "Holds back part of high-volume kinds, counted (unset: nothing held back)"),
    example("output.syslog.rate_limit.kinds", "The kinds limited", "[\"session_updated\", \"accelerator_activity\"]"),
    example("output.syslog.rate_limit.per_second", "Events per second let through, per kind", "10"),
    example("output.syslog.rate_limit.burst", "Events let through at once after a quiet spell, per kind", "50"),
    row("output.syslog.tls", "With transport = \"tls\": the CA to trust and the client certificate"),
    example(
        "output.syslog.tls.ca",
        "CA certificates to trust (unset: the system's)",
        "\"/etc/modelwatch/syslog-ca.pem\"",
    ),
    example("output.syslog.tls.cert", "Client certificate, PEM", "\"/etc/modelwatch/syslog-client.pem\""),
    example("output.syslog.tls.key", "Its private key, PEM", "\"/etc/modelwatch/syslog-client.key\""),
    example(
        "output.syslog.tls.server_name",
        "Name to verify the receiver's certificate against",
        "\"siem.example.com\"",
    ),
    row("output.syslog.spool", "The write-ahead spool on disk under the sink"),
    row("output.syslog.spool.dir", "Its directory; empty: <sensor.state_dir>/spool/<sink>"),
    row(
        "output.syslog.spool.max_size",
        "Most disk it takes; when full the oldest undelivered events are dropped, counted",
    ),
    row(
        "output.syslog.spool.max_age_s",
        "Undelivered events older than this many seconds are dropped, counted (0: kept)",
    ),
    row(
        "output.syslog.spool.sync_interval_ms",
        "Spooled events reach the disk at least this often (what a power cut can lose)",
    ),
    row("output.syslog.spool.sync_events", "... and after this many events"),
    row("api", "The local gRPC API on a Unix socket: modelwatch tail, modelwatch status"),
    row("api.enabled", "Serve the API"),
    row("api.socket", "Socket path; mode 0660, group modelwatch when that group exists"),
    row("api.subscriber_queue", "Events queued per Tail client before that client starts losing events"),
    row("metrics", "A Prometheus endpoint, GET /metrics (unset: none); nothing else is served there"),
    example(
        "metrics.address",
        "IP address and port to listen on; bind to loopback or a management network",
        "\"127.0.0.1:9464\"",
    ),
    row("sessions", "Inference-session detection"),
    row("sessions.update_interval_ms", "How often a running session reports its usage, in ms"),
    row("sessions.idle_timeout_ms", "A session without activity for this long ends, in ms"),
    row("sessions.cpu_busy_percent", "CPU use (percent of one core) that counts as busy for CPU inference"),
    row("sessions.runtime_executables", "Executables (or interpreter scripts and modules) that are inference runtimes"),
    row(
        "sessions.non_inference_executables",
        "Executables that touch model files but never run inference (copy, hash, download)",
    ),
    row("telemetry", "GPU and accelerator utilisation sources"),
    row("telemetry.nvml", "Sample NVIDIA GPUs through NVML (libnvidia-ml.so.1, when present)"),
    row("telemetry.drm_fdinfo", "Sample the DRM fdinfo of processes that hold accelerator descriptors"),
    example(
        "telemetry.replay",
        "Replay recorded samples from this JSON-lines file (tests, demos; unset: none)",
        "\"/var/lib/modelwatch/replay.jsonl\"",
    ),
    row("telemetry.interval_ms", "Sampling interval, in ms"),
    row("artifact", "Model artifact analysis: identification, digests, pickle safety, approval, licences"),
    example(
        "artifact.manifest",
        "Approved-model manifest, TOML or JSON (unset: no approval policy, verdict no_manifest)",
        "\"/etc/modelwatch/approved-models.toml\"",
    ),
    row("artifact.manifest_poll_secs", "How often the manifest is checked for changes, in seconds (0: only on SIGHUP)"),
    row("artifact.allowed_licenses", "SPDX licence ids a model may carry (case-insensitive; OR, AND, WITH understood)"),
    row("artifact.require_license", "Flag models that declare no licence"),
    row("artifact.analysis_workers", "Threads that identify files (format, metadata, pickle verdict)"),
    row("artifact.max_analysis_ms", "Wall time one identification may take, in ms; past it the verdict is incomplete"),
    row("artifact.hash_workers", "Threads that compute SHA-256 digests, at idle I/O priority"),
    row("artifact.max_hash_bytes", "Files larger than this are not hashed (reported as digest skipped)"),
    row("artifact.hash_sparse_files", "Also hash sparse files (gigabytes of holes cost minutes of CPU, prove nothing)"),
    row("artifact.analysis_queue", "Files waiting for identification; what does not fit is dropped and counted"),
    row("artifact.hash_queue", "Files waiting for hashing; what does not fit is dropped and counted"),
    row("artifact.max_parse_bytes", "The most memory a structured header (GGUF metadata, safetensors JSON) may take"),
    row("artifact.max_pickle_bytes", "The most pickle opcode bytes walked per artifact; a longer pickle is suspicious"),
    row("artifact.max_zip_entries", "The most entries a zip container may have"),
    row("artifact.max_zip_ratio", "The highest decompressed/compressed ratio a zip entry may reach"),
    row("artifact.max_nesting", "How deep containers (a zip in a zip) are opened"),
    row("artifact.pickle_allow", "More pickle globals to treat as safe: module.name or module.*"),
    row("artifact.pickle_deny", "More pickle globals to treat as malicious: module.name or module.*"),
    row("artifact.cache_file", "The digest cache's file name, inside sensor.state_dir"),
    row("artifact.cache_max_entries", "The most identities the digest cache remembers"),
    row("artifact.verdict_cache_file", "The not-a-model verdict cache's file name, inside sensor.state_dir"),
    row("artifact.verdict_cache_max_entries", "The most content versions the verdict cache remembers"),
    row("artifact.signing", "Model signatures (OpenSSF model_signing): found, verified offline, reported"),
    row("artifact.signing.enabled", "Look for each model's signature (model.sig, <name>.sig, the store) and verify it"),
    example(
        "artifact.signing.store",
        "A directory of more signatures: <name>.sig for model file or directory <name>",
        "\"/etc/modelwatch/signatures\"",
    ),
    row(
        "artifact.signing.require",
        "Models that must carry a verified signature: none, approved (by the manifest) or all",
    ),
    row("artifact.signing.max_bundle_bytes", "The most bytes a signature file may have"),
    row("artifact.signing.max_files", "The most files a signed directory model may have"),
    row("artifact.signing.keys", "Trusted public keys: [[artifact.signing.keys]] name, public_key (PEM, P-256/P-384)"),
    row(
        "artifact.signing.cas",
        "Trusted CAs: [[artifact.signing.cas]] name, certificate (PEM), identities (SAN or CN)",
    ),
    example(
        "artifact.signing.sigstore_trusted_root",
        "Sigstore's trusted_root.json: keyless signatures are verified offline against it",
        "\"/etc/modelwatch/sigstore-trusted-root.json\"",
    ),
    row(
        "artifact.signing.sigstore_identities",
        "Trusted keyless signers: [[artifact.signing.sigstore_identities]] identity, issuer (OIDC)",
    ),
];

const HEADER: &str = "\
# modelwatch configuration (/etc/modelwatch/modelwatch.toml).
#
# Every setting, with its built-in default: a key or table left out means its default, and
# so does a missing file. Lines `# key = value` are unset by default; remove the `# ` to set
# them (in a commented `# [table]`, together with the table's header).
# `modelwatch config --check FILE` validates a file; `modelwatch config --default` prints
# this text. The sensor reads the file at start and again on SIGHUP (`systemctl reload
# modelwatch`); which settings apply then and which need a restart: docs/configuration.md;
# `modelwatch config --effective` shows what the running sensor has in force.
";

/// Inline arrays longer than this are written one element per line.
const INLINE_MAX: usize = 80;

/// What is wrong with the documentation table (a test turns it into a failure).
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("reading the configuration's keys: {0}")]
    Trace(#[from] trace::TraceError),
    #[error(
        "config key `{0}` has no documentation: add a row for it to sensor-user/src/config/doc.rs \
         (one line; with an example value when it is unset by default)"
    )]
    Undocumented(String),
    #[error("sensor-user/src/config/doc.rs documents `{0}`, which is no configuration key")]
    Stale(String),
    #[error("config key `{0}`: {1}")]
    Row(String, String),
    #[error("the defaults do not serialize: {0}")]
    Serialize(String),
}

/// The commented default configuration.
pub fn render() -> Result<String, DocError> {
    let keys = trace::keys::<Config>()?;
    check_rows(&keys)?;
    let defaults = toml::Table::try_from(Config::default()).map_err(|e| DocError::Serialize(e.to_string()))?;
    let full = with_examples(&defaults)?;
    let mut out = String::from(HEADER);
    render_table("", &keys, &defaults, &full, &mut out)?;
    Ok(out)
}

/// Every key has exactly one row, every row is a key, and a row has an example exactly when
/// its key is unset by default.
fn check_rows(keys: &[trace::Key]) -> Result<(), DocError> {
    let defaults = toml::Table::try_from(Config::default()).map_err(|e| DocError::Serialize(e.to_string()))?;
    for k in keys {
        if !ROWS.iter().any(|r| r.key == k.path) {
            return Err(DocError::Undocumented(k.path.clone()));
        }
    }
    for (i, r) in ROWS.iter().enumerate() {
        let Some(key) = keys.iter().find(|k| k.path == r.key) else {
            return Err(DocError::Stale(r.key.to_owned()));
        };
        let bad = |m: &str| Err(DocError::Row(r.key.to_owned(), m.to_owned()));
        if ROWS[..i].iter().any(|o| o.key == r.key) {
            return bad("documented twice");
        }
        if r.doc.contains('\n') || r.doc.is_empty() || r.doc.len() > 100 {
            return bad("the documentation must be one line of 1 to 100 characters");
        }
        let set = lookup(&defaults, r.key).is_some();
        match (key.table, set, r.example) {
            (true, _, Some(_)) => return bad("a table takes no example; its keys do"),
            (false, true, Some(_)) => return bad("has a default, which is shown: drop the example"),
            (false, false, None) if !has_default_in_optional_table(r.key, &defaults)? => {
                return bad("is unset by default: give an example value");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a key that the defaults leave out gets a value anyway once its optional table is
/// set (a serde default of a key inside that table).
fn has_default_in_optional_table(key: &str, defaults: &toml::Table) -> Result<bool, DocError> {
    Ok(lookup(&with_examples(defaults)?, key).is_some())
}

/// The defaults with every example set: every key has a value there. Keys of optional tables
/// that have a default get it from the configuration's own deserialization.
fn with_examples(defaults: &toml::Table) -> Result<toml::Table, DocError> {
    let mut full = defaults.clone();
    for r in ROWS {
        let Some(text) = r.example else { continue };
        let value: toml::Table = format!("v = {text}")
            .parse()
            .map_err(|e| DocError::Row(r.key.to_owned(), format!("example `{text}` is not a TOML value: {e}")))?;
        let value = value.get("v").cloned().unwrap_or(toml::Value::Boolean(false));
        let mut table = &mut full;
        let mut parts: Vec<&str> = r.key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        for p in parts {
            let entry = table.entry(p).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(DocError::Row(r.key.to_owned(), format!("`{p}` is not a table")));
            };
            table = t;
        }
        table.insert(last.to_owned(), value);
    }
    let cfg: Config = toml::Value::Table(full)
        .try_into()
        .map_err(|e: toml::de::Error| DocError::Row("(examples)".into(), e.to_string().replace('\n', " ")))?;
    toml::Table::try_from(cfg).map_err(|e| DocError::Serialize(e.to_string()))
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut v = table.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// Writes the keys directly under `prefix` (its values first, then its subtables), in the
/// rows' order.
fn render_table(
    prefix: &str,
    keys: &[trace::Key],
    defaults: &toml::Table,
    full: &toml::Table,
    out: &mut String,
) -> Result<(), DocError> {
    let children = |table: bool| {
        ROWS.iter().filter(move |r| {
            let parent = r.key.rsplit_once('.').map_or("", |(p, _)| p);
            parent == prefix && keys.iter().any(|k| k.path == r.key && k.table == table)
        })
    };
    for r in children(false) {
        let (value, commented) = match lookup(defaults, r.key) {
            Some(v) => (v, false),
            None => {
                (lookup(full, r.key).ok_or_else(|| DocError::Row(r.key.to_owned(), "no value to show".into()))?, true)
            }
        };
        let name = r.key.rsplit('.').next().unwrap_or(r.key);
        let _ = writeln!(out, "\n# {}.", r.doc.trim_end_matches('.'));
        let line = format!("{} = {}", toml_key(name), render_value(value));
        for l in line.lines() {
            let _ = writeln!(out, "{}{l}", if commented { "# " } else { "" });
        }
    }
    for r in children(true) {
        let commented = lookup(defaults, r.key).is_none();
        let _ = writeln!(out, "\n# {}.", r.doc.trim_end_matches('.'));
        let _ = writeln!(out, "{}[{}]", if commented { "# " } else { "" }, r.key);
        let mut inner = String::new();
        render_table(r.key, keys, defaults, full, &mut inner)?;
        if commented {
            // Everything in an optional table is commented with it.
            for l in inner.lines() {
                let _ = writeln!(
                    out,
                    "{}",
                    if l.is_empty() || l.starts_with("# ") { l.to_owned() } else { format!("# {l}") }
                );
            }
        } else {
            out.push_str(&inner);
        }
    }
    Ok(())
}

/// A bare key when TOML allows one, else quoted.
fn toml_key(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

/// A value inline, or a long array one element per line.
fn render_value(v: &toml::Value) -> String {
    let inline = v.to_string();
    match v {
        toml::Value::Array(items) if inline.len() > INLINE_MAX => {
            let mut s = String::from("[\n");
            for item in items {
                let _ = writeln!(s, "    {item},");
            }
            s.push(']');
            s
        }
        _ => inline,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Fails when a key has no row (the message names it and says where to add it): this is
    /// what makes a new setting come with its documentation.
    #[test]
    fn every_key_is_documented_and_every_row_is_a_key() {
        check_rows(&trace::keys::<Config>().unwrap()).unwrap();
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let text = render().unwrap();
        assert_eq!(Config::parse(&text, Path::new("default.toml")).unwrap(), Config::default(), "{text}");
        for r in ROWS {
            assert!(text.contains(&format!("# {}.\n", r.doc.trim_end_matches('.'))), "{} is not shown", r.key);
        }
        assert!(text.contains("\nsize_threshold = \"32MiB\"\n"), "{text}");
        assert!(
            text.contains(
                "\n# [output.jsonl]\n\n# The file, an absolute path.\n# path = \"/var/log/modelwatch/events.jsonl\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n# max_size = \"100MiB\"\n"), "{text}");
        assert!(text.contains("\n# replay = "), "{text}");
    }

    /// Uncommenting every commented setting gives a valid configuration that sets them all:
    /// the examples are real values.
    #[test]
    fn the_commented_examples_are_valid_settings() {
        let text = render().unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| toml_key(k) == k)
                        || rest.starts_with("    ")
                        || rest == "]" =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = Config::parse(&uncommented, Path::new("all.toml")).unwrap();
        let jsonl = cfg.output.jsonl.expect("output.jsonl is set");
        assert_eq!(jsonl.path, Path::new("/var/log/modelwatch/events.jsonl"));
        assert_eq!(jsonl.max_size, ByteSize(100 << 20));
        assert!(cfg.telemetry.replay.is_some() && cfg.artifact.manifest.is_some());
    }

    use super::super::ByteSize;

    #[test]
    fn a_key_without_a_row_is_named() {
        let mut keys = trace::keys::<Config>().unwrap();
        keys.push(trace::Key { path: "output.nosuch.brokers".into(), table: false, optional: true });
        let e = check_rows(&keys).unwrap_err().to_string();
        assert!(e.contains("`output.nosuch.brokers` has no documentation") && e.contains("config/doc.rs"), "{e}");
    }

    #[test]
    fn long_arrays_are_one_element_per_line() {
        let short = toml::Value::Array(vec!["a".into(), "b".into()]);
        assert_eq!(render_value(&short), "[\"a\", \"b\"]");
        let long = toml::Value::Array((0..30).map(|i| toml::Value::String(format!("item{i}"))).collect());
        let text = render_value(&long);
        assert!(text.starts_with("[\n    \"item0\",\n") && text.ends_with("    \"item29\",\n]"), "{text}");
        assert_eq!(toml_key("LM Studio"), "\"LM Studio\"");
    }
}
