//! The Prometheus endpoint: `GET /metrics` on `[metrics] address`, in the Prometheus text
//! format 0.0.4, or OpenMetrics 1.0 when the scraper asks for it in `Accept`.
//!
//! It keeps no counters of its own. A scrape takes what the Status call shows
//! ([`api::Service::snapshot`]: the bus's counts, the kernel's counters read live from the
//! loop, the sinks' counters), what the sensor loop keeps in its shared view for status but
//! the schema's status does not carry (the loss ledger's totals, the analyzer queue, running
//! sessions), and the process's CPU time from /proc/self, and renders that ([`render`]). The
//! names are in `docs/metrics.md`.
//!
//! The HTTP side is hyper's HTTP/1.1 server on the sensor's runtime, for a network that may be
//! hostile: at most [`MAX_CONNECTIONS`] at once (more are closed unanswered, and logged); a
//! request head of at most [`HEAD_MAX`] bytes, read within [`HEAD_TIMEOUT`]; one request per
//! connection, which is closed after [`CONNECTION_TIMEOUT`] at the latest; no request body is
//! read; 404 for any other path, 405 for any other method.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};

use crate::{
    api::Service,
    proto::v1::{LossSource, SensorStatus},
};

/// Connections served at once; a scraper needs one.
pub const MAX_CONNECTIONS: usize = 8;
/// The most a request head may take (hyper's smallest read buffer): a scrape's is a few
/// hundred bytes.
pub const HEAD_MAX: usize = 8192;
/// How long a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open at all, answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics endpoint: cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
}

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (what a scraper gets unless it asks for OpenMetrics).
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, the classic text format otherwise.
    pub fn from_accept(accept: Option<&HeaderValue>) -> Self {
        let wants = accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("application/openmetrics-text")));
        if wants { Self::OpenMetrics } else { Self::Prometheus }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS,
        }
    }
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// What the Status call answers.
    pub status: SensorStatus,
    /// The loss ledger's totals: (source, reason, events).
    pub losses: Vec<(LossSource, &'static str, u64)>,
    /// Files waiting for identification.
    pub artifacts_queued: u64,
    /// Inference sessions running.
    pub sessions_active: u64,
    /// CPU time of the sensor process (user and system), in seconds.
    pub cpu_seconds: f64,
}

/// Where a scrape's values come from.
#[derive(Clone)]
pub struct Exporter {
    service: Service,
}

impl Exporter {
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let status = self.service.snapshot().await;
        let view = self.service.view();
        Snapshot {
            status,
            losses: view.losses,
            artifacts_queued: view.artifacts_queued,
            sessions_active: view.sessions_active,
            cpu_seconds: cpu_seconds(),
        }
    }
}

/// CPU time (user and system) of this process, from /proc/self/stat; 0 when unreadable.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let utime: u64 = fields.nth(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    (utime + stime) as f64 / ticks
}

/// The text of a scrape.
pub fn render(snapshot: Snapshot, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples by label set.
fn family<V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, V)>,
    mut encode: impl FnMut(&mut prometheus_client::encoding::MetricEncoder, &V) -> std::fmt::Result,
) -> std::fmt::Result {
    let samples: Vec<(Labels, V)> = samples.into_iter().collect();
    // A family with no samples yet is left out rather than shown empty.
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        if labels.is_empty() {
            encode(&mut m, &v)?;
        } else {
            let mut f = m.encode_family(&labels)?;
            encode(&mut f, &v)?;
        }
    }
    Ok(())
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Counter, samples, |m, v| m.encode_counter::<NoLabelSet, _, u64>(v, None))
}

fn gauges<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> std::fmt::Result {
    // The method path is tied to one encoder lifetime; the closure takes any.
    #[allow(clippy::redundant_closure_for_method_calls)]
    family(enc, name, help, MetricType::Gauge, samples, |m, v| m.encode_gauge(v))
}

/// A metric without labels.
fn one<V>(v: V) -> [(Labels, V); 1] {
    [(Vec::new(), v)]
}

/// The schema's name of a loss source, as a label: `LOSS_SOURCE_KERNEL_MAP` is `kernel_map`.
fn source_label(s: LossSource) -> String {
    s.as_str_name().trim_start_matches("LOSS_SOURCE_").to_ascii_lowercase()
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let st = &self.status;
        gauges(
            &mut enc,
            "modelwatch_build_info",
            "The sensor's version and event schema; always 1",
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                    ("schema", format!("modelwatch.v{}", crate::proto::SCHEMA_VERSION)),
                    ("backend", st.backend.clone()),
                ],
                1_u64,
            )],
        )?;
        let started = st.started_at.as_ref().map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9);
        gauges(&mut enc, "modelwatch_start_time_seconds", "When the sensor started, Unix time", one(started))?;
        let probes = st.probes_attached.iter().map(|p| (vec![("probe", p.clone())], 1_u64));
        let skipped = st.probes_skipped.iter().map(|p| (vec![("probe", p.clone())], 0_u64));
        gauges(
            &mut enc,
            "modelwatch_probe_attached",
            "1 when the probe is attached, 0 when it was skipped",
            probes.chain(skipped),
        )?;
        counters(
            &mut enc,
            "modelwatch_events",
            "Events published on the bus since start, by kind",
            st.events_by_kind.iter().map(|(k, v)| (vec![("kind", k.clone())], *v)),
        )?;
        let mut lost: std::collections::BTreeMap<(String, String), u64> =
            self.losses.iter().map(|(s, r, v)| ((source_label(*s), (*r).to_owned()), *v)).collect();
        // The network sinks' losses, as their reports put them on the stream (source sink).
        for s in st.sinks.iter().filter(|s| !s.destination.is_empty()) {
            for (reason, v) in sink_losses(s) {
                *lost.entry((source_label(LossSource::Sink), reason)).or_default() += v;
            }
        }
        counters(
            &mut enc,
            "modelwatch_events_lost",
            "Events lost, by source and reason: the totals of the stream's events_lost events",
            lost.into_iter().map(|((s, r), v)| (vec![("source", s), ("reason", r)], v)),
        )?;
        if let Some(k) = &st.kernel {
            counters(
                &mut enc,
                "modelwatch_kernel_records",
                "Records the probes wrote to the ring buffer, by kind",
                k.produced_by_kind.iter().map(|(kind, v)| (vec![("kind", kind.clone())], *v)),
            )?;
            counters(
                &mut enc,
                "modelwatch_kernel_ring_dropped",
                "Records the ring buffer had no room for, by kind",
                k.dropped_by_kind.iter().map(|(kind, v)| (vec![("kind", kind.clone())], *v)),
            )?;
        }
        counters(
            &mut enc,
            "modelwatch_candidates_rejected",
            "Candidates the kernel selected whose content was no model, by what selected them",
            st.candidates_rejected.iter().map(|(k, v)| (vec![("candidate", k.clone())], *v)),
        )?;
        counters(
            &mut enc,
            "modelwatch_verdicts_from_cache",
            "Not-a-model verdicts answered from the persisted verdict cache, without reading the file",
            one(st.verdicts_from_cache),
        )?;
        gauges(
            &mut enc,
            "modelwatch_analyzer_queue_depth",
            "Files waiting for identification",
            one(self.artifacts_queued),
        )?;
        gauges(&mut enc, "modelwatch_sessions_active", "Inference sessions running", one(self.sessions_active))?;
        gauges(
            &mut enc,
            "modelwatch_devices_watched",
            "Accelerator device nodes watched",
            one(st.devices_watched.len() as u64),
        )?;
        gauges(
            &mut enc,
            "modelwatch_api_subscribers",
            "Tail clients of the local API",
            one(st.subscribers.len() as u64),
        )?;
        let sink = |s: &crate::proto::v1::SinkStatus| vec![("sink", s.name.clone())];
        counters(
            &mut enc,
            "modelwatch_sink_written",
            "Events a sink wrote (network sinks: into their spool)",
            st.sinks.iter().map(|s| (sink(s), s.written)),
        )?;
        counters(
            &mut enc,
            "modelwatch_sink_failed",
            "Events a sink failed to write",
            st.sinks.iter().map(|s| (sink(s), s.failed)),
        )?;
        counters(
            &mut enc,
            "modelwatch_sink_dropped",
            "Events a sink dropped, by reason (queue_full: it could not keep up)",
            st.sinks.iter().flat_map(|s| {
                let mut reasons = vec![("queue_full".to_owned(), s.dropped)];
                if !s.destination.is_empty() {
                    reasons.extend(sink_losses(s));
                }
                reasons.into_iter().map(move |(r, v)| (vec![("sink", s.name.clone()), ("reason", r)], v))
            }),
        )?;
        let network: Vec<_> = st.sinks.iter().filter(|s| !s.destination.is_empty()).collect();
        if !network.is_empty() {
            counters(
                &mut enc,
                "modelwatch_sink_delivered",
                "Events the destination acknowledged (network sinks)",
                network.iter().map(|s| (sink(s), s.delivered)),
            )?;
            counters(
                &mut enc,
                "modelwatch_sink_retries",
                "Delivery attempts that failed and were retried (network sinks)",
                network.iter().map(|s| (sink(s), s.retries)),
            )?;
            gauges(
                &mut enc,
                "modelwatch_sink_pending_events",
                "Events in the spool not acknowledged yet (network sinks)",
                network.iter().map(|s| (sink(s), s.pending_events)),
            )?;
            gauges(
                &mut enc,
                "modelwatch_sink_pending_bytes",
                "Bytes of the events not acknowledged yet (network sinks)",
                network.iter().map(|s| (sink(s), s.pending_bytes)),
            )?;
            gauges(
                &mut enc,
                "modelwatch_sink_spool_bytes",
                "Bytes the spool takes on disk (network sinks)",
                network.iter().map(|s| (sink(s), s.spool_bytes)),
            )?;
            gauges(
                &mut enc,
                "modelwatch_sink_spool_writable",
                "0 while the spool cannot be written (network sinks)",
                network.iter().map(|s| (sink(s), u64::from(s.spool_error.is_empty()))),
            )?;
        }
        gauges(
            &mut enc,
            "modelwatch_process_resident_memory_bytes",
            "Resident set size of the sensor process",
            one(st.rss_bytes),
        )?;
        family(
            &mut enc,
            "modelwatch_process_cpu_seconds",
            "CPU time of the sensor process, user and system",
            MetricType::Counter,
            one(self.cpu_seconds),
            |m, v| m.encode_counter::<NoLabelSet, _, f64>(v, None),
        )?;
        Ok(())
    }
}

/// A network sink's losses by reason, every reason present (zero until it happens).
fn sink_losses(s: &crate::proto::v1::SinkStatus) -> Vec<(String, u64)> {
    let mut reasons: Vec<(String, u64)> = crate::spool::DropReason::ALL
        .iter()
        .map(|r| r.name())
        .chain(["undeliverable"])
        .map(|r| (r.to_owned(), s.spool_dropped.get(r).copied().unwrap_or(0)))
        .collect();
    reasons.push(("rate_limited".to_owned(), s.rate_limited.values().sum()));
    reasons
}

/// Binds the endpoint's address (before the probes load, so a taken port stops the start).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address).await.map_err(|source| MetricsError::Bind { address, source })
}

/// Serves scrapes on `listener` until `shutdown` resolves.
pub fn serve(
    listener: TcpListener,
    exporter: Exporter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let exporter = Arc::new(exporter);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let refused = AtomicU64::new(0);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!("metrics endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(%peer, refused = n, "metrics endpoint: {MAX_CONNECTIONS} connections open, closed one more");
                continue;
            };
            let exporter = exporter.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(HEAD_MAX)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| answer(req, exporter.clone())));
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, "metrics endpoint: {e}"),
                    Err(_) => tracing::debug!(%peer, "metrics endpoint: connection open too long, closed"),
                }
            });
        }
    })
}

fn text(status: StatusCode, body: &str) -> Response<String> {
    let mut r = Response::new(body.to_owned());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn answer(req: Request<Incoming>, exporter: Arc<Exporter>) -> Result<Response<String>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let format = Format::from_accept(req.headers().get(header::ACCEPT));
    let snapshot = exporter.snapshot().await;
    match render(snapshot, format) {
        Ok(body) => {
            let mut r = Response::new(body);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            Ok(r)
        }
        Err(e) => {
            tracing::warn!("metrics endpoint: cannot render the metrics: {e}");
            Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render the metrics\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::{
        bus::Bus,
        proto::v1::{KernelCounters, SinkStatus},
        status::StatusView,
    };

    fn snapshot() -> Snapshot {
        let network = |name: &str, full: u64| SinkStatus {
            name: name.into(),
            destination: "kafka 127.0.0.1:9092 topic t".into(),
            written: 10,
            delivered: 7,
            pending_events: 3,
            pending_bytes: 300,
            spool_bytes: 4096,
            spool_dropped: [("spool_full".to_owned(), full)].into(),
            rate_limited: [("session_updated".to_owned(), 2)].into(),
            ..Default::default()
        };
        Snapshot {
            status: SensorStatus {
                backend: "tracepoint".into(),
                probes_attached: vec!["file_open".into(), "exec".into()],
                probes_skipped: vec!["io_uring".into()],
                events_by_kind: [("model_file_opened".to_owned(), 3), ("process_exec".to_owned(), 40)].into(),
                kernel: Some(KernelCounters {
                    dropped_by_kind: [("file_open".to_owned(), 5)].into(),
                    produced_by_kind: [("file_open".to_owned(), 50)].into(),
                    ..Default::default()
                }),
                candidates_rejected: [("size".to_owned(), 4)].into(),
                verdicts_from_cache: 9,
                sinks: vec![
                    SinkStatus { name: "stdout".into(), written: 43, dropped: 1, ..Default::default() },
                    network("kafka", 6),
                    network("syslog \"siem\"", 1),
                ],
                rss_bytes: 1 << 20,
                ..Default::default()
            },
            losses: vec![(LossSource::Kernel, "file_open", 5), (LossSource::Analyzer, "hash_dropped", 0)],
            artifacts_queued: 2,
            sessions_active: 1,
            cpu_seconds: 1.5,
        }
    }

    #[test]
    fn renders_every_value_in_both_formats() {
        let text = render(snapshot(), Format::Prometheus).unwrap();
        for line in [
            "# TYPE modelwatch_events_total counter",
            "modelwatch_events_total{kind=\"model_file_opened\"} 3",
            "modelwatch_events_total{kind=\"process_exec\"} 40",
            "modelwatch_probe_attached{probe=\"file_open\"} 1",
            "modelwatch_probe_attached{probe=\"io_uring\"} 0",
            "modelwatch_events_lost_total{source=\"kernel\",reason=\"file_open\"} 5",
            "modelwatch_events_lost_total{source=\"analyzer\",reason=\"hash_dropped\"} 0",
            // Summed over the network sinks, as their reports put them on the stream.
            "modelwatch_events_lost_total{source=\"sink\",reason=\"spool_full\"} 7",
            "modelwatch_events_lost_total{source=\"sink\",reason=\"rate_limited\"} 4",
            "modelwatch_kernel_ring_dropped_total{kind=\"file_open\"} 5",
            "modelwatch_kernel_records_total{kind=\"file_open\"} 50",
            "modelwatch_candidates_rejected_total{candidate=\"size\"} 4",
            "modelwatch_verdicts_from_cache_total 9",
            "modelwatch_analyzer_queue_depth 2",
            "modelwatch_sessions_active 1",
            "modelwatch_sink_written_total{sink=\"stdout\"} 43",
            "modelwatch_sink_dropped_total{sink=\"stdout\",reason=\"queue_full\"} 1",
            "modelwatch_sink_dropped_total{sink=\"kafka\",reason=\"spool_full\"} 6",
            "modelwatch_sink_dropped_total{sink=\"kafka\",reason=\"spool_expired\"} 0",
            "modelwatch_sink_delivered_total{sink=\"kafka\"} 7",
            "modelwatch_sink_pending_events{sink=\"kafka\"} 3",
            "modelwatch_sink_spool_bytes{sink=\"kafka\"} 4096",
            // A configured name is escaped, never breaks the format.
            "modelwatch_sink_delivered_total{sink=\"syslog \\\"siem\\\"\"} 7",
            "modelwatch_process_resident_memory_bytes 1048576",
            "modelwatch_process_cpu_seconds_total 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
        }
        let info = text.lines().find(|l| l.starts_with("modelwatch_build_info{")).unwrap();
        assert!(info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && info.ends_with(" 1"), "{info}");
        // Local sinks have no delivery of their own.
        assert!(!text.contains("modelwatch_sink_delivered_total{sink=\"stdout\"}"), "{text}");
        assert!(!text.contains("# EOF"));

        let open = render(snapshot(), Format::OpenMetrics).unwrap();
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.lines().any(|l| l == "# TYPE modelwatch_events counter"), "{open}");
        assert!(open.lines().any(|l| l == "modelwatch_events_total{kind=\"model_file_opened\"} 3"), "{open}");
    }

    #[test]
    fn accept_chooses_the_format() {
        let h = |v: &'static str| Format::from_accept(Some(&HeaderValue::from_static(v)));
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(h("text/plain;version=0.0.4;q=0.3,*/*;q=0.2"), Format::Prometheus);
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
        assert_eq!(h(prometheus), Format::OpenMetrics);
    }

    #[test]
    fn cpu_time_is_read() {
        // Spin until the kernel has charged this process a tick or more.
        let start = std::time::Instant::now();
        while cpu_seconds() == 0.0 && start.elapsed() < Duration::from_secs(5) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        assert!(cpu_seconds() > 0.0);
    }

    async fn server() -> (SocketAddr, tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
        let bus = Bus::new();
        let view = StatusView { probes_attached: vec!["file_open".into()], ..Default::default() };
        let service =
            Service::new(bus, Arc::new(Mutex::new(view)), Arc::new(Mutex::new(Vec::new())), Default::default(), 16);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = serve(listener, Exporter::new(service), async {
            let _ = stopped.await;
        });
        (addr, stop, handle)
    }

    /// Sends `request` as is and reads until the server closes.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may close before a long request is all written.
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn answers_scrapes_and_refuses_everything_else() {
        let (addr, stop, handle) = server().await;
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{ok}");
        assert!(ok.contains("\nmodelwatch_probe_attached{probe=\"file_open\"} 1\n"), "{ok}");
        // A query string does not change the path.
        let q = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"), "{q}");
        let om = exchange(addr, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n").await;
        assert!(om.contains("application/openmetrics-text; version=1.0.0") && om.ends_with("# EOF\n"), "{om}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && !head.contains("modelwatch_"), "{head}");
        let other = exchange(addr, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await;
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("allow: GET, HEAD"), "{post}");
        let garbage = exchange(addr, b"\x00\x01\x02 not http\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{garbage}");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
        huge.extend(b"\r\n\r\n");
        let big = exchange(addr, &huge).await;
        assert!(big.starts_with("HTTP/1.1 431 "), "{}", &big[..big.len().min(200)]);
        // Still serving after all that.
        let again = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
        let _ = stop.send(());
        handle.await.unwrap();
    }

    // The clock is paused and moves on whenever everything waits: the timeouts pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_request_is_cut_off() {
        let (addr, stop, handle) = server().await;
        let started = tokio::time::Instant::now();
        let slow = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!slow.contains("200 OK"), "{slow}");
        let waited = started.elapsed();
        assert!(waited >= HEAD_TIMEOUT && waited < CONNECTION_TIMEOUT, "{waited:?}");
        let _ = stop.send(());
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_unanswered() {
        let (addr, stop, handle) = server().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            idle.push(s);
        }
        // Accepted after the others (the listen queue is in order): no slot left.
        let extra = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(extra, "", "the connection over the limit must be closed");
        // A slot frees as soon as its client is gone.
        drop(idle.pop());
        let mut answered = String::new();
        for _ in 0..100 {
            answered = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if !answered.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
        let _ = stop.send(());
        handle.await.unwrap();
    }
}
