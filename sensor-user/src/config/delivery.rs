//! Configuration of the network sinks (`[output.kafka]`, `[output.syslog]`) and of what every
//! network sink shares: the payload format, the per-sink event selection (the `tail` filter and
//! an optional rate limit) and the spool on local disk.
//!
//! Each table is printed by `modelwatch config --default` with `enabled = false`; a table
//! written in a configuration file is enabled unless it says otherwise.
//!
//! What can be checked without touching the network is checked in [`validate`]; names that must
//! resolve and files that must be readable are checked when the sinks are built (at start and by
//! `modelwatch config --check`, see `sink::network::check`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::ByteSize;
use crate::{proto::PAYLOAD_NAMES, spool::SpoolSettings};

/// What the payload of a network sink's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The protobuf encoding of `modelwatch.v1.Event`.
    Protobuf,
    /// The proto3 JSON mapping of `modelwatch.v1.Event` (as `--format json`).
    Json,
    /// OCSF JSON.
    Ocsf,
}

/// Every network sink's selection of events, with the `tail` filter's meaning.
pub trait Selection {
    fn kinds(&self) -> &[String];
    fn min_severity(&self) -> &str;
    fn rate_limit(&self) -> Option<&RateLimitConfig>;
    fn spool(&self) -> &SpoolConfig;
    fn format(&self) -> PayloadFormat;
}

/// Holds back part of a high-volume kind: a token bucket per kind. What is held back is
/// counted (status, and `EventsLost` with reason `rate_limited`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The kinds limited (payload names as in `tail --kind`).
    pub kinds: Vec<String>,
    /// Events per second let through, per kind.
    pub per_second: u32,
    /// Events let through at once after a quiet spell, per kind.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { kinds: vec!["session_updated".into(), "accelerator_activity".into()], per_second: 10, burst: 50 }
    }
}

/// The write-ahead spool on local disk under a network sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool; empty means `<sensor.state_dir>/spool/<sink>`.
    pub dir: PathBuf,
    /// Most disk space it takes; when full, the oldest undelivered events are dropped and
    /// counted (`spool_full`).
    pub max_size: ByteSize,
    /// Events older than this many seconds are dropped and counted (`spool_expired`);
    /// 0 keeps them until `max_size` forces them out.
    pub max_age_s: u64,
    /// Spooled events reach the disk (fdatasync) at least this often, in milliseconds: what a
    /// power cut can lose. A crash of the sensor alone loses nothing spooled.
    pub sync_interval_ms: u64,
    /// ... and after this many events.
    pub sync_events: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            max_size: ByteSize(1 << 30),
            max_age_s: 0,
            sync_interval_ms: 100,
            sync_events: 1000,
        }
    }
}

impl SpoolConfig {
    /// Where the spool of sink `name` lives, and its bounds.
    pub fn settings(&self, state_dir: &std::path::Path, name: &str) -> SpoolSettings {
        SpoolSettings {
            dir: if self.dir.as_os_str().is_empty() { state_dir.join("spool").join(name) } else { self.dir.clone() },
            max_size: self.max_size.0,
            max_age: (self.max_age_s > 0).then(|| Duration::from_secs(self.max_age_s)),
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            sync_every: self.sync_events,
        }
    }
}

/// TLS towards a broker or a syslog receiver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) that sign the server's certificate; unset: the system's.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// Name the server's certificate must carry; unset: the host part of the address.
    pub server_name: Option<String>,
}

/// SASL authentication with a Kafka broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    /// The password, or (better) `password_file`, a file holding it (a trailing newline is
    /// ignored). Exactly one of the two.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The Kafka sink (librdkafka, idempotent producer, `acks=all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// A `[output.kafka]` table in a file is enabled unless it says `enabled = false`.
    pub enabled: bool,
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topic: String,
    /// Policy findings go to this topic instead, when set.
    pub findings_topic: String,
    /// Message value: `protobuf` (the encoded `modelwatch.v1.Event`), `json` or `ocsf`.
    pub format: PayloadFormat,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// How long the producer waits to fill a batch, in milliseconds.
    pub linger_ms: u64,
    /// How long a message may take to be acknowledged before it is sent again, in ms.
    pub delivery_timeout_ms: u64,
    pub client_id: String,
    /// Only these kinds (payload names as in `tail --kind`); empty: all. `sensor_health` and
    /// `events_lost` always pass, so a sink is told about losses whatever it selects.
    pub kinds: Vec<String>,
    /// Lowest severity sent: `info`, `low`, `medium`, `high` or `critical`.
    pub min_severity: String,
    pub rate_limit: Option<RateLimitConfig>,
    pub tls: Option<TlsConfig>,
    pub sasl: Option<SaslConfig>,
    pub spool: SpoolConfig,
    /// Further librdkafka producer properties, checked by librdkafka at start.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "modelwatch.events".into(),
            findings_topic: String::new(),
            format: PayloadFormat::Protobuf,
            compression: "zstd".into(),
            linger_ms: 20,
            delivery_timeout_ms: 30_000,
            client_id: "modelwatch".into(),
            kinds: Vec::new(),
            min_severity: "info".into(),
            rate_limit: None,
            tls: None,
            sasl: None,
            spool: SpoolConfig::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// The syslog sink: RFC 5424 messages, octet-counted (RFC 6587), over TCP or TLS (RFC 5425).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogConfig {
    /// A `[output.syslog]` table in a file is enabled unless it says `enabled = false`.
    pub enabled: bool,
    /// The receiver, `host:port`.
    pub address: String,
    /// `tcp` or `tls`.
    pub transport: String,
    /// Message text: `json` or `ocsf`.
    pub format: PayloadFormat,
    /// Syslog facility: `kern`, `user`, … `local0` … `local7`.
    pub facility: String,
    pub kinds: Vec<String>,
    pub min_severity: String,
    pub rate_limit: Option<RateLimitConfig>,
    /// With `transport = "tls"`: the CA and client certificate.
    pub tls: TlsConfig,
    pub spool: SpoolConfig,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "127.0.0.1:6514".into(),
            transport: "tls".into(),
            format: PayloadFormat::Json,
            facility: "local0".into(),
            kinds: Vec::new(),
            min_severity: "info".into(),
            rate_limit: None,
            tls: TlsConfig::default(),
            spool: SpoolConfig::default(),
        }
    }
}

macro_rules! selection {
    ($t:ty) => {
        impl Selection for $t {
            fn kinds(&self) -> &[String] {
                &self.kinds
            }
            fn min_severity(&self) -> &str {
                &self.min_severity
            }
            fn rate_limit(&self) -> Option<&RateLimitConfig> {
                self.rate_limit.as_ref()
            }
            fn spool(&self) -> &SpoolConfig {
                &self.spool
            }
            fn format(&self) -> PayloadFormat {
                self.format
            }
        }
    };
}
selection!(KafkaConfig);
selection!(SyslogConfig);

/// Syslog facility numbers (RFC 5424, 6.2.1).
pub const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Severity names of the sink filters, lowest first (the `tail --min-severity` names).
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// librdkafka properties the sink sets itself: delivery guarantees are not configurable.
pub const RESERVED_PROPERTIES: [&str; 5] =
    ["bootstrap.servers", "enable.idempotence", "acks", "security.protocol", "message.timeout.ms"];

/// Splits `host:port` (a bracketed IPv6 address too).
pub fn host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port > 0 && !host.contains(char::is_whitespace)).then_some((host, port))
}

type Bad = (String, String);

fn check_selection(prefix: &str, s: &dyn Selection) -> Result<(), Bad> {
    for (i, k) in s.kinds().iter().enumerate() {
        if !PAYLOAD_NAMES.contains(&k.as_str()) {
            return Err((
                format!("{prefix}.kinds[{i}]"),
                format!("unknown kind `{k}` (known: {})", PAYLOAD_NAMES.join(", ")),
            ));
        }
    }
    if !SEVERITIES.contains(&s.min_severity()) {
        return Err((format!("{prefix}.min_severity"), format!("must be one of {}", SEVERITIES.join(", "))));
    }
    if let Some(r) = s.rate_limit() {
        if r.per_second == 0 {
            return Err((format!("{prefix}.rate_limit.per_second"), "must be at least 1".into()));
        }
        for (i, k) in r.kinds.iter().enumerate() {
            if !PAYLOAD_NAMES.contains(&k.as_str()) {
                return Err((format!("{prefix}.rate_limit.kinds[{i}]"), format!("unknown kind `{k}`")));
            }
        }
    }
    let sp = s.spool();
    if !sp.dir.as_os_str().is_empty() && !sp.dir.is_absolute() {
        return Err((format!("{prefix}.spool.dir"), format!("`{}` must be an absolute path", sp.dir.display())));
    }
    if sp.max_size.0 < crate::spool::MIN_MAX_SIZE {
        return Err((format!("{prefix}.spool.max_size"), "must be at least 64KiB".into()));
    }
    if !(1..=60_000).contains(&sp.sync_interval_ms) {
        return Err((format!("{prefix}.spool.sync_interval_ms"), "must be between 1 and 60000".into()));
    }
    if sp.sync_events == 0 {
        return Err((format!("{prefix}.spool.sync_events"), "must be at least 1".into()));
    }
    Ok(())
}

fn check_tls(prefix: &str, t: &TlsConfig) -> Result<(), Bad> {
    for (key, p) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
        if let Some(p) = p
            && !p.is_absolute()
        {
            return Err((format!("{prefix}.{key}"), format!("`{}` must be an absolute path", p.display())));
        }
    }
    if t.cert.is_some() != t.key.is_some() {
        return Err((format!("{prefix}.cert"), "a client certificate needs `cert` and `key` together".into()));
    }
    Ok(())
}

/// Checks what needs neither the network nor the files named.
pub fn validate(kafka: &KafkaConfig, syslog: &SyslogConfig) -> Result<(), Bad> {
    if kafka.enabled {
        let p = "output.kafka";
        if kafka.brokers.is_empty() {
            return Err((format!("{p}.brokers"), "needs at least one `host:port`".into()));
        }
        for (i, b) in kafka.brokers.iter().enumerate() {
            if host_port(b).is_none() {
                return Err((format!("{p}.brokers[{i}]"), format!("`{b}` is not `host:port`")));
            }
        }
        for (key, topic) in [("topic", &kafka.topic), ("findings_topic", &kafka.findings_topic)] {
            let valid = topic.len() <= 249
                && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && topic != "."
                && topic != "..";
            if !valid || (key == "topic" && topic.is_empty()) {
                return Err((
                    format!("{p}.{key}"),
                    format!("`{topic}` is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
                ));
            }
        }
        if !COMPRESSIONS.contains(&kafka.compression.as_str()) {
            return Err((format!("{p}.compression"), format!("must be one of {}", COMPRESSIONS.join(", "))));
        }
        if kafka.linger_ms > 10_000 {
            return Err((format!("{p}.linger_ms"), "must be at most 10000".into()));
        }
        if !(1000..=3_600_000).contains(&kafka.delivery_timeout_ms) {
            return Err((format!("{p}.delivery_timeout_ms"), "must be between 1000 and 3600000".into()));
        }
        if let Some(t) = &kafka.tls {
            check_tls(&format!("{p}.tls"), t)?;
            if t.server_name.is_some() {
                return Err((
                    format!("{p}.tls.server_name"),
                    "not used for Kafka: librdkafka checks each broker's certificate against its address".into(),
                ));
            }
        }
        if let Some(s) = &kafka.sasl {
            if !SASL_MECHANISMS.contains(&s.mechanism.as_str()) {
                return Err((format!("{p}.sasl.mechanism"), format!("must be one of {}", SASL_MECHANISMS.join(", "))));
            }
            if s.username.is_empty() {
                return Err((format!("{p}.sasl.username"), "must not be empty".into()));
            }
            if s.password.is_some() == s.password_file.is_some() {
                return Err((format!("{p}.sasl.password"), "set exactly one of `password` and `password_file`".into()));
            }
        }
        for key in kafka.properties.keys() {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err((format!("{p}.properties.{key}"), "is set by modelwatch itself".into()));
            }
        }
        check_selection(p, kafka)?;
    }
    if syslog.enabled {
        let p = "output.syslog";
        if host_port(&syslog.address).is_none() {
            return Err((format!("{p}.address"), format!("`{}` is not `host:port`", syslog.address)));
        }
        if !["tcp", "tls"].contains(&syslog.transport.as_str()) {
            return Err((format!("{p}.transport"), "must be `tcp` or `tls`".into()));
        }
        if syslog.format == PayloadFormat::Protobuf {
            return Err((format!("{p}.format"), "syslog carries text: `json` or `ocsf`".into()));
        }
        if !FACILITIES.iter().any(|(n, _)| *n == syslog.facility) {
            let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
            return Err((format!("{p}.facility"), format!("must be one of {}", names.join(", "))));
        }
        check_tls(&format!("{p}.tls"), &syslog.tls)?;
        check_selection(p, syslog)?;
    }
    Ok(())
}
