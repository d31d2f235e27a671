//! The Kafka sink's transport: librdkafka (built from the `rdkafka` crate's bundled source and
//! linked statically) as an idempotent producer with `acks=all` and zstd compression.
//!
//! Every message: key = the host id (one partition per host keeps a host's events in order),
//! value = the event in the configured format, headers naming the schema and the event
//! (`content-type`, `modelwatch-schema`, `modelwatch-schema-version`, `modelwatch-kind`,
//! `modelwatch-event-id`). Policy findings can go to a topic of their own.
//!
//! A batch counts as delivered when librdkafka reported every message acknowledged. librdkafka
//! retries by itself until `delivery_timeout_ms`; what it gives up on is sent again by the
//! sink from the spool. A producer in a fatal state (idempotence lost, e.g. a broker replaced
//! by a fresh one) is dropped and made anew.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext},
};

use super::network::{Outcome, Outgoing, Transport, resolve_check, schema_of};
use crate::{
    config::{KafkaConfig, PayloadFormat, host_port},
    proto::{SCHEMA_VERSION, kind_name, v1::event::Payload},
};

/// Between two looks at the delivery reports. rdkafka's `poll` waits out its whole timeout even
/// when reports arrive early (and spins through its last millisecond), so the producer is
/// polled without waiting and the thread sleeps in between: a batch is done about a millisecond
/// after its last acknowledgement, for a few hundred cheap wake-ups a second while it waits.
const POLL_PAUSE: Duration = Duration::from_millis(1);

/// Serves the delivery reports that are ready (each poll takes at most one event, which holds
/// many reports).
fn serve(producer: &BaseProducer<Reports>) {
    for _ in 0..8 {
        producer.poll(Duration::ZERO);
    }
}

/// Delivery reports of the messages in flight: (index in the batch, result).
#[derive(Default)]
pub struct Reports {
    done: Mutex<Vec<(usize, Result<(), KafkaError>)>>,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // Connection failures during an outage are reported every few seconds by librdkafka;
        // the sink's status carries them, so the log keeps them at debug.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::warn!(facility = fac, "librdkafka: {message}");
            }
            _ => tracing::debug!(facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((index, r));
    }
}

/// Errors after which sending the same message again cannot help.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

pub struct KafkaTransport {
    config: ClientConfig,
    producer: Option<BaseProducer<Reports>>,
    topic: String,
    findings_topic: String,
    format: PayloadFormat,
    timeout: Duration,
    destination: String,
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

impl KafkaTransport {
    /// The librdkafka configuration of `cfg`, checked: broker names resolve, files are
    /// readable, and librdkafka accepts every property (a producer is made and dropped). An
    /// error names the configuration key.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, (String, String)> {
        let p = "output.kafka";
        for (i, b) in cfg.brokers.iter().enumerate() {
            let (host, port) =
                host_port(b).ok_or_else(|| (format!("{p}.brokers[{i}]"), format!("`{b}` is not host:port")))?;
            resolve_check(host, port).map_err(|m| (format!("{p}.brokers[{i}]"), m))?;
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", cfg.brokers.join(","))
            .set("client.id", &cfg.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("message.timeout.ms", cfg.delivery_timeout_ms.to_string())
            // One host's events in order, on one partition: the key is the host id.
            .set("partitioner", "murmur2_random");
        let mut protocol = "plaintext";
        if let Some(t) = &cfg.tls {
            protocol = "ssl";
            for (key, prop, path) in [
                ("ca", "ssl.ca.location", &t.ca),
                ("cert", "ssl.certificate.location", &t.cert),
                ("key", "ssl.key.location", &t.key),
            ] {
                if let Some(path) = path {
                    std::fs::File::open(path)
                        .map_err(|e| (format!("{p}.tls.{key}"), format!("cannot read {}: {e}", path.display())))?;
                    c.set(prop, path.display().to_string());
                }
            }
        }
        if let Some(s) = &cfg.sasl {
            protocol = if protocol == "ssl" { "sasl_ssl" } else { "sasl_plaintext" };
            let password = match (&s.password, &s.password_file) {
                (Some(pw), _) => pw.clone(),
                (None, Some(file)) => read_secret(file).map_err(|m| (format!("{p}.sasl.password_file"), m))?,
                (None, None) => String::new(),
            };
            c.set("sasl.mechanism", &s.mechanism).set("sasl.username", &s.username).set("sasl.password", password);
        }
        c.set("security.protocol", protocol);
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Info);
        // librdkafka checks every property (and the TLS files) when a client is made; no
        // connection is opened until a message is sent.
        let probe: Result<BaseProducer<Reports>, KafkaError> = c.create_with_context(Reports::default());
        if let Err(e) = probe {
            return Err((format!("{p}.properties"), format!("librdkafka refuses the configuration: {e}")));
        }
        let topics = if cfg.findings_topic.is_empty() {
            format!("topic {}", cfg.topic)
        } else {
            format!("topic {} (findings: {})", cfg.topic, cfg.findings_topic)
        };
        Ok(Self {
            config: c,
            producer: None,
            topic: cfg.topic.clone(),
            findings_topic: cfg.findings_topic.clone(),
            format: cfg.format,
            timeout: Duration::from_millis(cfg.delivery_timeout_ms),
            destination: format!("kafka {} {topics}", cfg.brokers.join(",")),
        })
    }

    fn producer(&mut self) -> Result<&BaseProducer<Reports>, String> {
        if self.producer.is_none() {
            let p = self
                .config
                .create_with_context(Reports::default())
                .map_err(|e| format!("creating the producer: {e}"))?;
            self.producer = Some(p);
        }
        self.producer.as_ref().ok_or_else(|| "no producer".into())
    }
}

/// Takes the delivery reports that arrived.
fn collect(
    producer: &BaseProducer<Reports>,
    outcome: &mut [Outcome],
    outstanding: &mut usize,
    error: &mut Option<String>,
) {
    let reports =
        std::mem::take(&mut *producer.context().done.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for (i, r) in reports {
        *outstanding = outstanding.saturating_sub(1);
        let Some(o) = outcome.get_mut(i) else { continue };
        match r {
            Ok(()) => *o = Outcome::Delivered,
            Err(e) if permanent(&e) => {
                tracing::warn!("kafka refuses a message for good ({e}); dropped");
                *o = Outcome::Refused;
            }
            Err(e) => {
                error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl Transport for KafkaTransport {
    fn destination(&self) -> String {
        self.destination.clone()
    }

    fn deliver(&mut self, batch: &[Outgoing], outcome: &mut [Outcome], cancel: &AtomicBool) -> Result<(), String> {
        let (content_type, schema) = schema_of(self.format);
        let version = SCHEMA_VERSION.to_string();
        let timeout = self.timeout;
        let (topic, findings_topic) = (self.topic.clone(), self.findings_topic.clone());
        let producer = self.producer()?;
        let mut outstanding = 0usize;
        let mut error: Option<String> = None;
        'send: for (i, o) in batch.iter().enumerate() {
            if outcome[i] != Outcome::Pending {
                continue;
            }
            let finding = matches!(o.event.payload, Some(Payload::PolicyFinding(_)));
            let topic = if finding && !findings_topic.is_empty() { &findings_topic } else { &topic };
            let host = o.event.host.as_ref();
            let key = host.map(|h| if h.host_id.is_empty() { h.hostname.as_str() } else { h.host_id.as_str() });
            let headers = OwnedHeaders::new_with_capacity(5)
                .insert(Header { key: "content-type", value: Some(content_type) })
                .insert(Header { key: "modelwatch-schema", value: Some(schema) })
                .insert(Header { key: "modelwatch-schema-version", value: Some(version.as_str()) })
                .insert(Header { key: "modelwatch-kind", value: Some(kind_name(&o.event)) })
                .insert(Header { key: "modelwatch-event-id", value: Some(o.event.event_id.as_str()) });
            let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(topic, i)
                .payload(o.payload.as_slice())
                .key(key.unwrap_or(""))
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => {
                        outstanding += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        serve(producer);
                        std::thread::sleep(POLL_PAUSE);
                        collect(producer, outcome, &mut outstanding, &mut error);
                        if cancel.load(Ordering::SeqCst) {
                            break 'send;
                        }
                    }
                    Err((e, _)) if permanent(&e) => {
                        tracing::warn!("kafka refuses a message for good ({e}); dropped");
                        outcome[i] = Outcome::Refused;
                        break;
                    }
                    Err((e, _)) => {
                        // The rest would overtake this one: send them with it next time.
                        error.get_or_insert_with(|| e.to_string());
                        break 'send;
                    }
                }
            }
        }
        // librdkafka gives up on a message after `message.timeout.ms`; a little more here.
        let deadline = Instant::now() + timeout + Duration::from_secs(5);
        while outstanding > 0 && !cancel.load(Ordering::SeqCst) && Instant::now() < deadline {
            serve(producer);
            collect(producer, outcome, &mut outstanding, &mut error);
            if outstanding > 0 {
                std::thread::sleep(POLL_PAUSE);
            }
        }
        if let Some((code, why)) = producer.client().fatal_error() {
            tracing::warn!("kafka producer failed for good ({code:?}: {why}); making a new one");
            self.producer = None;
            error.get_or_insert_with(|| format!("fatal producer error: {why}"));
        }
        if outcome.contains(&Outcome::Pending) {
            return Err(error.unwrap_or_else(|| {
                if cancel.load(Ordering::SeqCst) { "stopped".into() } else { "not acknowledged in time".into() }
            }));
        }
        Ok(())
    }

    fn reset(&mut self) {
        // Messages librdkafka still holds would be sent again with the retried batch: purge
        // them with the producer, and start afresh (this also clears a stale broker state).
        self.producer = None;
    }
}
