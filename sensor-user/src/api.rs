//! The local API: a tonic gRPC server on a Unix socket (`ModelwatchService`: `Tail`, `Status`,
//! `Config`), and the client side used by `modelwatch tail`, `modelwatch status` and
//! `modelwatch config --effective`.
//!
//! Socket clients are untrusted: filters are validated, every subscriber gets a bounded queue
//! on the bus (a stalled client loses events and is told, the sensor never waits), and the
//! socket is mode 0660, group `modelwatch` when that group exists. A socket directory the
//! sensor creates is mode 0750 with that group too, so the group's members can reach the
//! socket and nobody else can; a directory that already exists is left as its owner made it.

use std::{
    ffi::CString,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{StreamExt as _, wrappers::UnixListenerStream};
use tonic::{Request, Response, Status, transport::Server};

use crate::{
    bus::Bus,
    enrich::kernel_counters,
    filter::Filter,
    host::timestamp,
    proto::v1::{
        ConfigRequest, Event, Host, SensorConfig, SensorStatus, SinkStatus, StatusRequest, SubscriberStatus,
        TailRequest,
        modelwatch_service_client::ModelwatchServiceClient,
        modelwatch_service_server::{ModelwatchService, ModelwatchServiceServer},
    },
    sink::SinkStats,
    status::{SharedStatus, StatsRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot create the socket directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("another sensor is already serving {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot connect to {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
}

/// Tail clients served at once.
pub const MAX_SUBSCRIBERS: usize = 64;

/// Counters of the sinks, for Status.
pub type SharedSinks = Arc<Mutex<Vec<Arc<Mutex<SinkStats>>>>>;

/// The Status call's view of the sensor; also what the metrics endpoint exports (a clone).
#[derive(Clone)]
pub struct Service {
    bus: Bus,
    status: SharedStatus,
    sinks: SharedSinks,
    host: Host,
    queue: usize,
    stats: Option<tokio::sync::mpsc::Sender<StatsRequest>>,
}

impl Service {
    pub fn new(bus: Bus, status: SharedStatus, sinks: SharedSinks, host: Host, queue: usize) -> Self {
        Self { bus, status, sinks, host, queue, stats: None }
    }

    /// Status will read kernel counters live from the sensor loop rather than from its last
    /// periodic snapshot.
    pub fn with_live_stats(mut self, stats: tokio::sync::mpsc::Sender<StatsRequest>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Asks the sensor loop; a loop that does not answer within 2 s (stalled, or its request
    /// queue full) leaves Status with the last periodic snapshot.
    async fn live_kernel_stats(&self) -> Option<crate::loader::KernelStats> {
        let tx = self.stats.as_ref()?;
        let ask = async {
            let (reply, rx) = tokio::sync::oneshot::channel();
            tx.send(reply).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), ask).await.ok()?
    }

    /// The Status answer: kernel counters read live when the loop answers.
    pub async fn snapshot(&self) -> SensorStatus {
        let live = self.live_kernel_stats().await;
        self.status_with(live)
    }

    /// The shared view Status is built from (for what the schema's status does not carry).
    pub fn view(&self) -> crate::status::StatusView {
        self.status.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn status_with(&self, live: Option<crate::loader::KernelStats>) -> SensorStatus {
        let mut view = self.status.lock().map(|v| v.clone()).unwrap_or_default();
        if let Some(k) = live {
            view.kernel = k;
        }
        let started = view.started_at.unwrap_or_else(SystemTime::now);
        let (api, internal) = self.bus.subscriber_stats();
        let sinks = self
            .sinks
            .lock()
            .map(|s| s.iter().filter_map(|x| x.lock().ok().map(|x| x.clone())).collect::<Vec<_>>())
            .unwrap_or_default();
        SensorStatus {
            host: Some(self.host.clone()),
            backend: "tracepoint".into(),
            probes_attached: view.probes_attached,
            probes_skipped: view.probes_skipped,
            started_at: Some(timestamp(started)),
            uptime_seconds: started.elapsed().map_or(0, |d| d.as_secs()),
            events_by_kind: self.bus.counts_by_kind().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            last_seq: self.bus.last_seq(),
            kernel: Some(kernel_counters(&view.kernel)),
            subscribers: api
                .into_iter()
                .map(|s| SubscriberStatus {
                    id: s.id,
                    delivered: s.delivered,
                    dropped: s.dropped,
                    since: Some(timestamp(s.since)),
                })
                .collect(),
            nvml: view.nvml,
            sinks: sinks
                .into_iter()
                .map(|s| {
                    let dropped = internal.iter().filter(|i| i.name == s.name).map(|i| i.dropped).sum();
                    sink_status(s, dropped)
                })
                .collect(),
            decode_errors: view.decode_errors,
            devices_watched: view.devices_watched,
            rss_bytes: crate::sensor::rss_bytes(),
            candidates_rejected: view.candidates_rejected.clone(),
            model_events_folded: view.model_events_folded,
            model_events_unidentified: view.model_events_unidentified,
            verdicts_from_cache: view.verdicts_from_cache,
        }
    }
}

/// A sink's counters as the schema shows them.
fn sink_status(s: SinkStats, dropped: u64) -> SinkStatus {
    let mut st = SinkStatus {
        dropped,
        name: s.name,
        written: s.written,
        failed: s.failed,
        last_error: s.last_error,
        last_error_time: s.last_error_time.map(timestamp),
        ..Default::default()
    };
    if let Some(d) = s.delivery {
        st.spool_dropped = d
            .losses()
            .into_iter()
            .filter(|(r, n)| *n > 0 && *r != "rate_limited")
            .map(|(r, n)| (r.to_owned(), n))
            .collect();
        st.destination = d.destination;
        st.delivered = d.delivered;
        st.pending_events = d.spool.pending_events;
        st.pending_bytes = d.spool.pending_bytes;
        st.oldest_pending = d.spool.oldest_pending.map(timestamp);
        st.retries = d.retries;
        st.rate_limited = d.rate_limited.into_iter().collect();
        st.spool_dir = d.spool_dir;
        st.spool_bytes = d.spool.disk_bytes;
        st.spool_written_bytes = d.spool.appended_bytes;
        st.spool_error = d.spool.error.map(|(m, _)| m).unwrap_or_default();
    }
    st
}

type TailStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl ModelwatchService for Service {
    type TailStream = TailStream;

    async fn tail(&self, request: Request<TailRequest>) -> Result<Response<Self::TailStream>, Status> {
        let filter = Filter::from_request(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Every subscriber costs a queue and a filter run per event: a client may not add
        // them without end.
        if self.bus.subscriber_stats().0.len() >= MAX_SUBSCRIBERS {
            return Err(Status::resource_exhausted(format!("at most {MAX_SUBSCRIBERS} Tail clients at once")));
        }
        let sub = self.bus.subscribe("api", filter, self.queue, false);
        let stream = tokio_stream::wrappers::ReceiverStream::new(sub.rx).map(|ev| Ok((*ev).clone()));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<SensorStatus>, Status> {
        Ok(Response::new(self.snapshot().await))
    }

    async fn config(&self, _request: Request<ConfigRequest>) -> Result<Response<SensorConfig>, Status> {
        let view = self.status.lock().ok().and_then(|v| v.config.clone());
        let Some(c) = view else {
            return Err(Status::unavailable("the sensor has not loaded its configuration yet"));
        };
        Ok(Response::new(SensorConfig {
            toml: c.toml,
            path: c.path.display().to_string(),
            loaded_at: c.loaded_at.map(timestamp),
            restart_pending: c.restart_pending,
        }))
    }
}

/// Binds the socket (replacing a stale one), sets its mode and group, and serves until
/// `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    let listener = bind(socket).await?;
    let path = socket.to_owned();
    let incoming = UnixListenerStream::new(listener);
    Ok(tokio::spawn(async move {
        let result = Server::builder()
            .add_service(ModelwatchServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(e) = result {
            tracing::warn!("API server on {} stopped: {e}", path.display());
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// Creates the socket's directory when it does not exist: mode 0750, group `modelwatch` when
/// that group exists. Missing parents are created 0755, so that directory decides who gets in.
fn socket_dir(dir: &Path) -> Result<(), ApiError> {
    let err = |source| ApiError::Dir { path: dir.to_owned(), source };
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
    for (i, d) in missing.iter().rev().enumerate() {
        let last = i + 1 == missing.len();
        match std::fs::create_dir(d) {
            Ok(()) => {}
            // Created meanwhile by someone else: theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if last {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(err(e)),
        }
        // Not what the umask (027 in `modelwatch run`) leaves: the modes meant.
        let mode = if last { 0o750 } else { 0o755 };
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    if let Some(gid) = group_id("modelwatch") {
        let c = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: c is a valid path; uid -1 leaves the owner unchanged.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            tracing::warn!("cannot give {} to group modelwatch: {}", dir.display(), std::io::Error::last_os_error());
        }
    }
    Ok(())
}

async fn bind(socket: &Path) -> Result<UnixListener, ApiError> {
    if let Some(dir) = socket.parent() {
        socket_dir(dir)?;
    }
    if let Ok(md) = std::fs::symlink_metadata(socket) {
        // A socket file left by a crashed sensor is replaced; a live one is not stolen, and
        // anything else (a file, a link someone placed there) is not ours to delete.
        if !md.file_type().is_socket() {
            return Err(ApiError::NotASocket(socket.to_owned()));
        }
        if UnixStream::connect(socket).await.is_ok() {
            return Err(ApiError::InUse(socket.to_owned()));
        }
        let _ = std::fs::remove_file(socket);
    }
    // `modelwatch run` sets umask 027 first, so others never have access, not even before
    // the chmod below gives the group its write bit.
    let listener = UnixListener::bind(socket).map_err(|source| ApiError::Bind { path: socket.to_owned(), source })?;
    let perms = std::fs::Permissions::from_mode(0o660);
    std::fs::set_permissions(socket, perms).map_err(|source| ApiError::Bind { path: socket.to_owned(), source })?;
    if let Some(gid) = group_id("modelwatch") {
        let c = CString::new(socket.as_os_str().as_encoded_bytes()).map_err(|e| ApiError::Bind {
            path: socket.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        // SAFETY: c is a valid path; uid -1 leaves the owner unchanged.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            tracing::warn!("cannot give {} to group modelwatch: {}", socket.display(), std::io::Error::last_os_error());
        }
    }
    Ok(listener)
}

fn group_id(name: &str) -> Option<u32> {
    // /etc/group rather than getgrnam: no NSS plugins inside the sensor.
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Connects to the sensor's socket.
pub async fn connect(socket: &Path) -> Result<ModelwatchServiceClient<tonic::transport::Channel>, ApiError> {
    let path = socket.to_owned();
    // Fail early with a precise reason: tonic's error for a missing socket is generic.
    if let Err(e) = std::os::unix::net::UnixStream::connect(&path) {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                format!("{e} (is the sensor running? start it with `modelwatch run`)")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("{e} (are you root or in the modelwatch group?)")
            }
            _ => e.to_string(),
        };
        return Err(ApiError::Connect { path, reason });
    }
    let connector_path = path.clone();
    // The URI is required by tonic but unused: the connector always dials the socket.
    let channel = tonic::transport::Endpoint::from_static("http://modelwatch.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let p = connector_path.clone();
            async move { UnixStream::connect(p).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .map_err(|e| ApiError::Connect { path, reason: e.to_string() })?;
    Ok(ModelwatchServiceClient::new(channel).max_decoding_message_size(16 << 20))
}
