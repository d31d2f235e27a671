//! What the network sinks tell the event stream about themselves: every event they dropped
//! (spool full or expired, spool unwritable, corrupt records cut, records the destination
//! refused, events their rate limit held back) as an `EventsLost` with source
//! `LOSS_SOURCE_SINK` and the reasons in `by_kind`, and trouble that needs a person (a spool
//! that cannot be written, a destination failing for a minute) as a `sensor_health` event in
//! state DEGRADED, repeated while it lasts, and one when it is over.
//!
//! These events go on the bus like the sensor's own, so every consumer sees them, and the sink
//! concerned gets them too (a sink's filter always lets them through): a consumer of a sink
//! learns exactly how many events its stream is missing. Each loss is reported once: the
//! reporter remembers the counters it published, like the sensor's loss ledger.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use super::SinkStats;
use crate::{
    bus::Bus,
    host::timestamp,
    proto::v1::{Event, EventsLost, HealthState, Host, LossSource, SensorHealth, Severity, event::Payload},
    status::SharedStatus,
};

/// How often the sinks' counters are looked at.
const INTERVAL: Duration = Duration::from_secs(1);
/// A destination failing this long is health news.
const FAILING_FOR: Duration = Duration::from_secs(60);
/// A lasting problem is said again this often.
const REPEAT: Duration = Duration::from_secs(60);

/// Something a sink has been unable to do, in words, and its category (a change of category
/// is news; a change of numbers in the words is not).
#[derive(Debug, Clone, PartialEq)]
struct Problem {
    category: &'static str,
    words: String,
}

#[derive(Default)]
pub struct Reporter {
    sinks: Vec<Arc<Mutex<SinkStats>>>,
    reported: BTreeMap<(String, &'static str), u64>,
    /// Per sink: the problem last said, and when.
    said: HashMap<String, (Problem, Instant)>,
}

fn problem(s: &SinkStats, now: SystemTime) -> Option<Problem> {
    let d = s.delivery.as_ref()?;
    if let Some((why, _)) = &d.spool.error {
        let lost = d.spool.dropped(crate::spool::DropReason::Unwritable);
        return Some(Problem {
            category: "spool",
            words: format!("spool {} unwritable: {why}; {lost} events lost so far", d.spool_dir),
        });
    }
    let since = d.failing_since?;
    let failing = now.duration_since(since).unwrap_or_default();
    (failing >= FAILING_FOR).then(|| Problem {
        category: "destination",
        words: format!(
            "cannot deliver to {} for {} s ({}); {} events wait in the spool",
            d.destination,
            failing.as_secs(),
            s.last_error,
            d.spool.pending_events
        ),
    })
}

impl Reporter {
    pub fn new(sinks: Vec<Arc<Mutex<SinkStats>>>) -> Self {
        Self { sinks, ..Default::default() }
    }

    /// Losses not reported yet, one `EventsLost` per sink, and health news: (severity,
    /// payload) pairs to publish.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<(Severity, Payload)> {
        let mut out = Vec::new();
        for stats in &self.sinks {
            let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
            let Some(d) = &s.delivery else { continue };
            let mut lost = EventsLost {
                source: LossSource::Sink as i32,
                detail: format!("sink {} ({}): events dropped from its stream", s.name, d.destination),
                ..Default::default()
            };
            for (reason, value) in d.losses() {
                let was = self.reported.entry((s.name.clone(), reason)).or_insert(0);
                if value > *was {
                    lost.count += value - *was;
                    lost.by_kind.insert(reason.to_owned(), value - *was);
                    *was = value;
                }
            }
            if lost.count > 0 {
                // What a rate limit held back is the configuration at work, not a failure.
                let only_limited = lost.by_kind.keys().all(|k| k == "rate_limited");
                let severity = if only_limited { Severity::Low } else { Severity::Medium };
                out.push((severity, Payload::EventsLost(lost)));
            }
            let now_problem = problem(&s, wall);
            let said = self.said.get(&s.name);
            match (now_problem, said) {
                (Some(p), Some((q, at))) if p.category == q.category && now.duration_since(*at) < REPEAT => {}
                (Some(p), _) => {
                    let health = SensorHealth {
                        state: HealthState::Degraded as i32,
                        message: format!("sink {}: {}", s.name, p.words),
                        ..Default::default()
                    };
                    out.push((Severity::Medium, Payload::SensorHealth(health)));
                    self.said.insert(s.name.clone(), (p, now));
                }
                (None, Some((q, _))) => {
                    let over = match q.category {
                        "spool" => "the spool is writable again",
                        _ => "delivery works again",
                    };
                    let health = SensorHealth {
                        state: HealthState::Ok as i32,
                        message: format!("sink {}: {over}", s.name),
                        ..Default::default()
                    };
                    out.push((Severity::Info, Payload::SensorHealth(health)));
                    self.said.remove(&s.name);
                }
                (None, None) => {}
            }
        }
        out
    }
}

/// Fills a sink's health event with the sensor's state, as the sensor's own health events
/// carry it.
fn complete(mut payload: Payload, status: &SharedStatus) -> Payload {
    if let Payload::SensorHealth(h) = &mut payload {
        let view = status.lock().map(|v| v.clone()).unwrap_or_default();
        let sensor_degraded = !view.probes_skipped.is_empty() || view.kernel.dropped_total() > 0;
        if sensor_degraded {
            h.state = HealthState::Degraded as i32;
        }
        h.backend = "tracepoint".into();
        h.probes_attached = view.probes_attached;
        h.probes_skipped = view.probes_skipped;
        h.kernel = Some(crate::enrich::kernel_counters(&view.kernel));
        h.nvml = view.nvml;
        h.decode_errors = view.decode_errors;
        h.rss_bytes = crate::sensor::rss_bytes();
        h.devices_watched = view.devices_watched.len() as u32;
    }
    payload
}

/// The reporter's thread.
pub struct ReporterHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts reporting on `sinks` every second.
pub fn spawn(
    bus: Bus,
    status: SharedStatus,
    host: Host,
    sinks: Vec<Arc<Mutex<SinkStats>>>,
) -> std::io::Result<ReporterHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("sink reports".into()).spawn(move || {
        let mut reporter = Reporter::new(sinks);
        loop {
            let last = flag.load(Ordering::SeqCst);
            for (severity, payload) in reporter.tick(Instant::now(), SystemTime::now()) {
                bus.publish(Event {
                    event_time: Some(timestamp(SystemTime::now())),
                    host: Some(host.clone()),
                    severity: severity as i32,
                    payload: Some(complete(payload, &status)),
                    ..Default::default()
                });
            }
            if last {
                break;
            }
            let until = Instant::now() + INTERVAL;
            while Instant::now() < until && !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })?;
    Ok(ReporterHandle { stop, thread: Some(thread) })
}

impl ReporterHandle {
    /// Reports once more and stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::network::DeliveryStats;

    fn sink(name: &str) -> Arc<Mutex<SinkStats>> {
        Arc::new(Mutex::new(SinkStats {
            name: name.into(),
            delivery: Some(DeliveryStats {
                destination: "kafka x".into(),
                spool_dir: "/s".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn lost(p: &(Severity, Payload)) -> &EventsLost {
        match &p.1 {
            Payload::EventsLost(l) => l,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_loss_is_reported_once_with_its_reasons() {
        let k = sink("kafka");
        let mut r = Reporter::new(vec![k.clone()]);
        let t = Instant::now();
        assert!(r.tick(t, SystemTime::now()).is_empty());
        {
            let mut s = k.lock().unwrap();
            let d = s.delivery.as_mut().unwrap();
            d.spool.dropped[0] = 7; // spool_full
            d.rate_limited.insert("session_updated".into(), 3);
        }
        let out = r.tick(t, SystemTime::now());
        assert_eq!(out.len(), 1);
        let l = lost(&out[0]);
        assert_eq!((l.count, l.source), (10, LossSource::Sink as i32));
        assert_eq!(l.by_kind.get("spool_full"), Some(&7));
        assert_eq!(l.by_kind.get("rate_limited"), Some(&3));
        assert_eq!(out[0].0, Severity::Medium);
        assert!(r.tick(t, SystemTime::now()).is_empty(), "reported once");
        k.lock().unwrap().delivery.as_mut().unwrap().rate_limited.insert("session_updated".into(), 5);
        let out = r.tick(t, SystemTime::now());
        assert_eq!((lost(&out[0]).count, out[0].0), (2, Severity::Low));
    }

    #[test]
    fn an_unwritable_spool_is_health_news_repeated_while_it_lasts_and_its_end_too() {
        let k = sink("syslog");
        let mut r = Reporter::new(vec![k.clone()]);
        let t = Instant::now();
        k.lock().unwrap().delivery.as_mut().unwrap().spool.error =
            Some(("cannot write: No space left on device".into(), SystemTime::now()));
        let health = |out: &[(Severity, Payload)]| -> Vec<SensorHealth> {
            out.iter()
                .filter_map(|(_, p)| match p {
                    Payload::SensorHealth(h) => Some(h.clone()),
                    _ => None,
                })
                .collect()
        };
        let h = health(&r.tick(t, SystemTime::now()));
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].state, HealthState::Degraded as i32);
        assert!(
            h[0].message.contains("sink syslog: spool /s unwritable: cannot write: No space left"),
            "{}",
            h[0].message
        );
        assert!(health(&r.tick(t + Duration::from_secs(5), SystemTime::now())).is_empty());
        assert_eq!(health(&r.tick(t + REPEAT, SystemTime::now())).len(), 1, "said again");
        k.lock().unwrap().delivery.as_mut().unwrap().spool.error = None;
        let h = health(&r.tick(t + REPEAT, SystemTime::now()));
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].state, HealthState::Ok as i32);
        assert!(h[0].message.contains("writable again"));
    }

    #[test]
    fn a_destination_failing_for_a_minute_is_health_news() {
        let k = sink("kafka");
        let mut r = Reporter::new(vec![k.clone()]);
        let start = SystemTime::now();
        k.lock().unwrap().delivery.as_mut().unwrap().failing_since = Some(start);
        assert!(r.tick(Instant::now(), start + Duration::from_secs(10)).is_empty());
        let out = r.tick(Instant::now(), start + FAILING_FOR);
        assert!(matches!(&out[0].1, Payload::SensorHealth(h) if h.message.contains("cannot deliver to kafka x")));
    }
}
