//! A network sink: its selection of events, its spool and its delivery, whatever the
//! destination ([`Transport`]: Kafka, syslog).
//!
//! Two threads per sink. The **intake** thread takes the sink's bus subscription (the sink's
//! filter is applied by the bus), holds back what the rate limit says, and appends each event,
//! protobuf-encoded, to the [`Spool`]; the spool is the sink's queue to disk, so an outage of
//! the destination never backs up into the bus. The **delivery** thread reads batches from the
//! spool, renders each event in the configured format ([`render_payload`]) and hands the batch
//! to the transport; only when every record was acknowledged does the spool's delivered
//! position move on. A failed attempt is retried (with backoff, from memory, only what was not
//! acknowledged), so delivery is at least once and the consumer de-duplicates by `event_id`.
//!
//! At shutdown the intake drains its queue into the spool, and delivery goes on for a short
//! grace while the destination keeps answering; what is left stays in the spool for the next
//! start.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use prost::Message as _;
use tokio::sync::mpsc::error::TryRecvError;

use super::{SinkError, SinkStats};
use crate::{
    bus::{Bus, SharedEvent, Subscription},
    config::{PayloadFormat, RateLimitConfig},
    filter::Filter,
    proto::{kind_name, v1::Event},
    spool::{Record, Spool, SpoolSettings, SpoolStats},
};

/// Events appended to the spool in one write, at most.
const INTAKE_BATCH: usize = 1024;
/// After the first event of a batch, how long the intake lets more gather.
const INTAKE_PAUSE: Duration = Duration::from_millis(1);
/// While spooled data waits for its sync and nothing arrives, the intake looks again after this.
const IDLE_SYNC_NAP: Duration = Duration::from_millis(5);
/// A delivery batch: records and bytes, at most.
const BATCH_RECORDS: usize = 2048;
const BATCH_BYTES: u64 = 2 << 20;
/// How long delivery waits for records before looking at its stop flag again.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Retry backoff after a failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At shutdown, how long delivery may go on sending what the spool holds.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The payload of an event in a network sink's format: the one rendering function of every
/// network sink.
pub fn render_payload(ev: &Event, format: PayloadFormat) -> Vec<u8> {
    match format {
        PayloadFormat::Protobuf => ev.encode_to_vec(),
        PayloadFormat::Json => crate::output::json_line(ev).into_bytes(),
        PayloadFormat::Ocsf => crate::ocsf::json_line(ev).into_bytes(),
    }
}

/// Content type and schema naming a payload, for message headers.
pub fn schema_of(format: PayloadFormat) -> (&'static str, &'static str) {
    match format {
        PayloadFormat::Protobuf => ("application/x-protobuf", "modelwatch.v1.Event"),
        PayloadFormat::Json => ("application/json", "modelwatch.v1.Event"),
        PayloadFormat::Ocsf => ("application/json", "ocsf"),
    }
}

/// One event on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event: Event,
    /// The event in the sink's format.
    pub payload: Vec<u8>,
}

/// What became of a record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// The destination acknowledged it.
    Delivered,
    /// The destination refuses it for good (too large, invalid): it is dropped and counted
    /// (`undeliverable`), so one bad record cannot hold up the stream.
    Refused,
}

/// A destination of a network sink.
pub trait Transport: Send + 'static {
    /// Where the events go, for status and logs.
    fn destination(&self) -> String;
    /// Sends the records of `batch` whose outcome is `Pending`, in order, and marks what the
    /// destination acknowledged or refused for good. `Ok` once none is pending; `Err` names
    /// what went wrong (the batch is then tried again). Gives up early when `cancel` is set.
    fn deliver(&mut self, batch: &[Outgoing], outcome: &mut [Outcome], cancel: &AtomicBool) -> Result<(), String>;
    /// Forgets connections after a failure; the next `deliver` connects again.
    fn reset(&mut self) {}
}

/// Delivery counters of a network sink.
#[derive(Debug, Clone, Default)]
pub struct DeliveryStats {
    pub destination: String,
    pub spool_dir: String,
    /// Events the destination acknowledged since start.
    pub delivered: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Records dropped because the destination refused them or they could not be rendered.
    pub undeliverable: u64,
    /// Held back by the rate limit, per kind.
    pub rate_limited: BTreeMap<String, u64>,
    pub spool: SpoolStats,
    /// Since when every attempt fails; `None` while delivery works.
    pub failing_since: Option<SystemTime>,
}

impl DeliveryStats {
    /// Cumulative loss counters by reason (the `EventsLost.by_kind` names).
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> =
            crate::spool::DropReason::ALL.iter().map(|r| (r.name(), self.spool.dropped(*r))).collect();
        v.push(("undeliverable", self.undeliverable));
        v.push(("rate_limited", self.rate_limited.values().sum()));
        v
    }
}

/// Holds back events of the limited kinds beyond a rate: a token bucket per kind.
#[derive(Debug)]
pub struct RateLimiter {
    kinds: Vec<String>,
    per_second: f64,
    burst: f64,
    buckets: HashMap<&'static str, (f64, Instant)>,
    held: BTreeMap<String, u64>,
}

impl RateLimiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self {
            kinds: cfg.kinds.clone(),
            per_second: f64::from(cfg.per_second),
            burst: f64::from(cfg.burst.max(1)),
            buckets: HashMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// Whether `ev` goes out at `now`; what is held back is counted.
    pub fn admit(&mut self, ev: &Event, now: Instant) -> bool {
        let kind = kind_name(ev);
        if !self.kinds.iter().any(|k| k == kind) {
            return true;
        }
        let burst = self.burst;
        let (tokens, at) = self.buckets.entry(kind).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            *self.held.entry(kind.to_owned()).or_default() += 1;
            false
        }
    }

    pub fn held(&self) -> &BTreeMap<String, u64> {
        &self.held
    }
}

/// What a network sink is made of.
pub struct NetworkSinkSpec {
    /// Short name: `kafka`, `syslog` (status, the bus subscription, the spool directory).
    pub name: String,
    pub filter: Filter,
    pub rate_limit: Option<RateLimitConfig>,
    pub spool: SpoolSettings,
    pub format: PayloadFormat,
    pub transport: Box<dyn Transport>,
}

/// Stop flags shared by the threads of one sink.
#[derive(Default)]
struct Control {
    /// The intake has stopped (the bus closed): delivery drains what is left and stops.
    intake_done: AtomicBool,
    /// Stop now, whatever is left.
    give_up: AtomicBool,
}

/// A running network sink.
pub struct NetworkSink {
    pub stats: Arc<Mutex<SinkStats>>,
    spool: Arc<Spool>,
    control: Arc<Control>,
    intake: Option<JoinHandle<()>>,
    delivery: Option<JoinHandle<()>>,
}

fn update(stats: &Mutex<SinkStats>, f: impl FnOnce(&mut SinkStats)) {
    let mut s = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut s);
}

fn delivery_mut(s: &mut SinkStats) -> &mut DeliveryStats {
    s.delivery.get_or_insert_with(DeliveryStats::default)
}

/// Subscribes the sink to the bus and starts its threads.
pub fn spawn(bus: &Bus, spec: NetworkSinkSpec, queue: usize) -> Result<NetworkSink, SinkError> {
    let NetworkSinkSpec { name, filter, rate_limit, spool, format, transport } = spec;
    let spool_dir = spool.dir.display().to_string();
    let spool = Arc::new(Spool::open(spool));
    let stats = Arc::new(Mutex::new(SinkStats {
        name: name.clone(),
        delivery: Some(DeliveryStats {
            destination: transport.destination(),
            spool_dir,
            spool: spool.stats(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let control = Arc::new(Control::default());
    let sub = bus.subscribe(&name, filter, queue, true);
    let thread_err = |source| SinkError::Thread { name: name.clone(), source };
    let intake = {
        let (spool, stats, control) = (spool.clone(), stats.clone(), control.clone());
        let limiter = rate_limit.as_ref().map(RateLimiter::new);
        std::thread::Builder::new()
            .name(format!("{name} intake"))
            .spawn(move || {
                intake(sub, &spool, limiter, &stats);
                control.intake_done.store(true, Ordering::SeqCst);
                spool.wake();
            })
            .map_err(thread_err)?
    };
    let delivery = {
        let (spool, stats, control) = (spool.clone(), stats.clone(), control.clone());
        std::thread::Builder::new()
            .name(format!("{name} delivery"))
            .spawn(move || deliver_loop(&spool, transport, format, &stats, &control))
            .map_err(thread_err)?
    };
    Ok(NetworkSink { stats, spool, control, intake: Some(intake), delivery: Some(delivery) })
}

impl NetworkSink {
    /// Stops the sink: the bus must have been closed first. The intake drains its queue into the
    /// spool; delivery goes on for a short grace while the destination answers.
    pub fn join(mut self) {
        let name = self.stats.lock().map(|s| s.name.clone()).unwrap_or_default();
        if let Some(t) = self.intake.take()
            && t.join().is_err()
        {
            tracing::error!(sink = %name, "intake thread panicked");
        }
        self.control.intake_done.store(true, Ordering::SeqCst);
        self.spool.wake();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        if let Some(t) = self.delivery.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.control.give_up.store(true, Ordering::SeqCst);
            self.spool.wake();
            if t.join().is_err() {
                tracing::error!(sink = %name, "delivery thread panicked");
            }
        }
        self.spool.sync_all();
        let left = self.spool.stats().pending_events;
        if left > 0 {
            tracing::info!(sink = %name, pending = left, "events left in the spool for the next start");
        }
    }
}

fn intake(mut sub: Subscription, spool: &Spool, mut limiter: Option<RateLimiter>, stats: &Mutex<SinkStats>) {
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(INTAKE_BATCH);
    loop {
        let first: SharedEvent = match sub.rx.try_recv() {
            Ok(ev) => ev,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if spool.unsynced() {
                    std::thread::sleep(IDLE_SYNC_NAP);
                    spool.maybe_sync();
                    continue;
                }
                match sub.rx.blocking_recv() {
                    Some(ev) => ev,
                    None => break,
                }
            }
        };
        let mut next = Some(first);
        let mut paused = false;
        while let Some(ev) = next.take() {
            if limiter.as_mut().is_none_or(|l| l.admit(&ev, Instant::now())) {
                batch.push(ev.encode_to_vec());
            }
            if batch.len() >= INTAKE_BATCH {
                break;
            }
            next = sub.rx.try_recv().ok();
            if next.is_none() && !paused {
                // One short pause lets a burst gather into one write.
                paused = true;
                std::thread::sleep(INTAKE_PAUSE);
                next = sub.rx.try_recv().ok();
            }
        }
        let stored = spool.append(&batch) as u64;
        batch.clear();
        spool.maybe_sync();
        // Status shows the spool as of now, also while delivery waits on a slow destination.
        let snapshot = spool.stats();
        update(stats, |s| {
            s.written += stored;
            let d = delivery_mut(s);
            d.spool = snapshot;
            if let Some(l) = &limiter {
                d.rate_limited.clone_from(l.held());
            }
        });
    }
    spool.sync_all();
}

/// Decodes a spooled record (the transports need its fields) and renders it.
fn outgoing(record: &Record, format: PayloadFormat) -> Result<Outgoing, String> {
    let event = Event::decode(record.payload.as_slice()).map_err(|e| format!("undecodable spool record: {e}"))?;
    let payload = match format {
        // The spool holds exactly this encoding already.
        PayloadFormat::Protobuf => record.payload.clone(),
        _ => render_payload(&event, format),
    };
    Ok(Outgoing { event, payload })
}

fn deliver_loop(
    spool: &Spool,
    mut transport: Box<dyn Transport>,
    format: PayloadFormat,
    stats: &Mutex<SinkStats>,
    control: &Control,
) {
    let name = stats.lock().map(|s| s.name.clone()).unwrap_or_default();
    let mut backoff = MIN_BACKOFF;
    let refresh = |f: &mut dyn FnMut(&mut DeliveryStats)| {
        let snapshot = spool.stats();
        update(stats, |s| {
            let d = delivery_mut(s);
            d.spool = snapshot;
            f(d);
        });
    };
    loop {
        if control.give_up.load(Ordering::SeqCst) {
            break;
        }
        let records = spool.next_batch(BATCH_RECORDS, BATCH_BYTES, BATCH_WAIT);
        refresh(&mut |_| {});
        if records.is_empty() {
            if control.intake_done.load(Ordering::SeqCst) && spool.stats().pending_events == 0 {
                break;
            }
            continue;
        }
        let mut outcome = vec![Outcome::Pending; records.len()];
        let batch: Vec<Outgoing> = records
            .iter()
            .zip(outcome.iter_mut())
            .map(|(r, o)| {
                outgoing(r, format).unwrap_or_else(|e| {
                    tracing::warn!(sink = %name, record = r.number, "{e}; dropped");
                    *o = Outcome::Refused;
                    Outgoing { event: Event::default(), payload: Vec::new() }
                })
            })
            .collect();
        loop {
            let result = if outcome.contains(&Outcome::Pending) {
                transport.deliver(&batch, &mut outcome, &control.give_up)
            } else {
                Ok(())
            };
            let Err(e) = result else { break };
            let now = SystemTime::now();
            update(stats, |s| {
                s.last_error.clone_from(&e);
                s.last_error_time = Some(now);
                let d = delivery_mut(s);
                d.retries += 1;
                d.failing_since.get_or_insert(now);
            });
            tracing::debug!(sink = %name, "delivery failed: {e}");
            transport.reset();
            // At shutdown a destination that fails is not waited for: the spool keeps the rest.
            if control.intake_done.load(Ordering::SeqCst) || control.give_up.load(Ordering::SeqCst) {
                spool.sync_all();
                return;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !control.intake_done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        backoff = MIN_BACKOFF;
        let delivered = outcome.iter().filter(|o| **o == Outcome::Delivered).count() as u64;
        let refused = outcome.iter().filter(|o| **o == Outcome::Refused).count() as u64;
        if let Some(last) = records.last() {
            spool.acknowledge(last);
        }
        refresh(&mut |d| {
            d.delivered += delivered;
            d.undeliverable += refused;
            d.failing_since = None;
        });
    }
    spool.sync_all();
    refresh(&mut |_| {});
}

/// Checks a network sink's configuration against the machine: names resolve, files read,
/// librdkafka accepts its properties. Run at start and by `config --check`.
pub fn check(cfg: &crate::config::Config, path: &std::path::Path) -> Result<(), crate::config::ConfigError> {
    build_all(cfg, path).map(|_| ())
}

/// Builds the enabled network sinks' specifications (transports included) from the
/// configuration; configuration problems found on the machine name their key.
pub fn build_all(
    cfg: &crate::config::Config,
    path: &std::path::Path,
) -> Result<Vec<NetworkSinkSpec>, crate::config::ConfigError> {
    use crate::config::Selection;
    let bad =
        |key: String, message: String| crate::config::ConfigError::Invalid { path: path.to_owned(), key, message };
    let selection =
        |prefix: &str, name: &str, s: &dyn Selection| -> Result<(Filter, SpoolSettings), crate::config::ConfigError> {
            let severity = severity(s.min_severity()).ok_or_else(|| {
                bad(format!("{prefix}.min_severity"), format!("unknown severity `{}`", s.min_severity()))
            })?;
            let filter =
                Filter::for_sink(s.kinds(), severity).map_err(|e| bad(format!("{prefix}.kinds"), e.to_string()))?;
            Ok((filter, s.spool().settings(&cfg.sensor.state_dir, name)))
        };
    let mut out = Vec::new();
    let k = &cfg.output.kafka;
    if k.enabled {
        let (filter, spool) = selection("output.kafka", "kafka", k)?;
        let transport = super::kafka::KafkaTransport::new(k).map_err(|(key, m)| bad(key, m))?;
        out.push(NetworkSinkSpec {
            name: "kafka".into(),
            filter,
            rate_limit: k.rate_limit.clone(),
            spool,
            format: k.format,
            transport: Box::new(transport),
        });
    }
    let s = &cfg.output.syslog;
    if s.enabled {
        let (filter, spool) = selection("output.syslog", "syslog", s)?;
        let transport = super::syslog::SyslogTransport::new(s).map_err(|(key, m)| bad(key, m))?;
        out.push(NetworkSinkSpec {
            name: "syslog".into(),
            filter,
            rate_limit: s.rate_limit.clone(),
            spool,
            format: s.format,
            transport: Box::new(transport),
        });
    }
    Ok(out)
}

/// A severity name of the sink filters.
pub fn severity(name: &str) -> Option<crate::proto::v1::Severity> {
    use crate::proto::v1::Severity;
    Some(match name {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

/// Resolves `host`: `Err` only when the name does not exist (a permanent answer); a resolver
/// that cannot answer now (no network yet at boot) is not a configuration error.
pub fn resolve_check(host: &str, port: u16) -> Result<(), String> {
    use std::ffi::CString;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let Ok(c_host) = CString::new(host) else { return Err(format!("`{host}` is not a host name")) };
    let c_port = CString::new(port.to_string()).unwrap_or_default();
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings, a null hints pointer and an out pointer; the result
    // is freed below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), std::ptr::null(), &mut res) };
    if !res.is_null() {
        // SAFETY: res came from a successful getaddrinfo.
        unsafe { libc::freeaddrinfo(res) };
    }
    match rc {
        0 => Ok(()),
        libc::EAI_NONAME | libc::EAI_NODATA => Err(format!("the name `{host}` does not resolve")),
        _ => {
            tracing::warn!(host, "cannot resolve `{host}` now (code {rc}); trying again when sending");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{EventsLost, ProcessExit, event::Payload};

    /// A destination that fails while `down` is set and records what it accepted.
    struct Fake {
        accepted: Arc<Mutex<Vec<Event>>>,
        down: Arc<AtomicBool>,
        /// Refuses events whose `seq` is here.
        refuse: Vec<u64>,
    }

    impl Transport for Fake {
        fn destination(&self) -> String {
            "fake".into()
        }

        fn deliver(&mut self, batch: &[Outgoing], outcome: &mut [Outcome], _: &AtomicBool) -> Result<(), String> {
            if self.down.load(Ordering::SeqCst) {
                return Err("destination down".into());
            }
            for (o, out) in batch.iter().zip(outcome.iter_mut()) {
                if *out != Outcome::Pending {
                    continue;
                }
                if self.refuse.contains(&o.event.seq) {
                    *out = Outcome::Refused;
                    continue;
                }
                let decoded = Event::decode(o.payload.as_slice()).expect("protobuf payload");
                self.accepted.lock().unwrap().push(decoded);
                *out = Outcome::Delivered;
            }
            Ok(())
        }
    }

    fn exit(code: i32) -> Event {
        Event {
            payload: Some(Payload::ProcessExit(ProcessExit { exit_code: code, ..Default::default() })),
            ..Default::default()
        }
    }

    fn spec(dir: &std::path::Path, fake: Fake) -> NetworkSinkSpec {
        NetworkSinkSpec {
            name: "fake".into(),
            filter: Filter::default(),
            rate_limit: None,
            spool: SpoolSettings {
                dir: dir.to_owned(),
                max_size: 1 << 20,
                max_age: None,
                sync_interval: Duration::from_millis(10),
                sync_every: 100,
            },
            format: PayloadFormat::Protobuf,
            transport: Box::new(fake),
        }
    }

    fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_outage_delays_delivery_but_loses_nothing_and_a_restart_resends_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(true));
        let bus = Bus::new();
        let fake = Fake { accepted: accepted.clone(), down: down.clone(), refuse: vec![] };
        let sink = spawn(&bus, spec(dir.path(), fake), 1024).unwrap();
        // More than the queue holds: the spool takes them while the destination is down.
        for i in 0..500 {
            bus.publish(exit(i));
        }
        wait("everything spooled", || sink.stats.lock().unwrap().written == 500);
        wait("a failed attempt", || sink.stats.lock().unwrap().delivery.as_ref().unwrap().retries > 0);
        assert!(accepted.lock().unwrap().is_empty());
        down.store(false, Ordering::SeqCst);
        wait("everything delivered", || accepted.lock().unwrap().len() == 500);
        let seqs: Vec<u64> = accepted.lock().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
        // Down again: what comes now stays in the spool through a restart.
        down.store(true, Ordering::SeqCst);
        for i in 0..10 {
            bus.publish(exit(i));
        }
        wait("spooled", || sink.stats.lock().unwrap().written == 510);
        let st = sink.stats.lock().unwrap().clone();
        assert_eq!(st.delivery.as_ref().unwrap().delivered, 500);
        bus.close();
        sink.join();
        let bus = Bus::new();
        down.store(false, Ordering::SeqCst);
        let fake = Fake { accepted: accepted.clone(), down, refuse: vec![] };
        let sink = spawn(&bus, spec(dir.path(), fake), 1024).unwrap();
        wait("the rest after the restart", || accepted.lock().unwrap().len() == 510);
        let tail: Vec<u64> = accepted.lock().unwrap()[500..].iter().map(|e| e.seq).collect();
        assert_eq!(tail, (501..=510).collect::<Vec<_>>());
        bus.close();
        sink.join();
    }

    #[test]
    fn refused_records_are_dropped_and_counted_not_retried_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let bus = Bus::new();
        let fake = Fake { accepted: accepted.clone(), down: Arc::new(AtomicBool::new(false)), refuse: vec![3] };
        let sink = spawn(&bus, spec(dir.path(), fake), 1024).unwrap();
        for i in 0..5 {
            bus.publish(exit(i));
        }
        wait("the others delivered", || accepted.lock().unwrap().len() == 4);
        wait("counted", || sink.stats.lock().unwrap().delivery.as_ref().unwrap().undeliverable == 1);
        bus.close();
        sink.join();
    }

    #[test]
    fn the_rate_limit_holds_back_and_counts_per_kind() {
        let cfg = RateLimitConfig { kinds: vec!["process_exit".into()], per_second: 10, burst: 3 };
        let mut l = RateLimiter::new(&cfg);
        let t0 = Instant::now();
        let admitted = (0..10).filter(|_| l.admit(&exit(0), t0)).count();
        assert_eq!(admitted, 3, "the burst");
        // 0.2 s later: 2 more tokens; after a long pause no more than the burst.
        let admitted = (0..10).filter(|_| l.admit(&exit(0), t0 + Duration::from_millis(200))).count();
        assert_eq!(admitted, 2);
        let admitted = (0..10).filter(|_| l.admit(&exit(0), t0 + Duration::from_secs(60))).count();
        assert_eq!(admitted, 3);
        assert_eq!(l.held().get("process_exit"), Some(&(7 + 8 + 7)));
        // Other kinds are not limited.
        let lost = Event { payload: Some(Payload::EventsLost(EventsLost::default())), ..Default::default() };
        assert!((0..100).all(|_| l.admit(&lost, t0)));
    }

    #[test]
    fn payloads_render_in_each_format() {
        let ev = Event { seq: 7, event_id: "id".into(), ..exit(3) };
        let pb = render_payload(&ev, PayloadFormat::Protobuf);
        assert_eq!(Event::decode(pb.as_slice()).unwrap(), ev);
        let json: serde_json::Value = serde_json::from_slice(&render_payload(&ev, PayloadFormat::Json)).unwrap();
        assert_eq!(json["seq"], "7");
        let ocsf: serde_json::Value = serde_json::from_slice(&render_payload(&ev, PayloadFormat::Ocsf)).unwrap();
        assert_eq!(ocsf["class_uid"], 1007, "a process exit is OCSF Process Activity");
    }
}
