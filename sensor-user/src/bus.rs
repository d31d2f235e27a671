//! The event bus: the one place events get their run id, sequence number and id, and the
//! fan-out to sinks and API subscribers.
//!
//! Every subscriber has its own bounded queue and filter. Publishing never waits: when a
//! subscriber's queue is full the event is dropped *for that subscriber only*, counted, and the
//! subscriber receives an `EventsLost` event with the count as soon as its queue has room. A
//! slow consumer therefore never slows the sensor or any other consumer.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::sync::mpsc;

use crate::{
    filter::Filter,
    host::timestamp,
    proto::{
        SCHEMA_VERSION, kind_name,
        v1::{Event, EventsLost, LossSource, Severity, event::Payload},
    },
};

/// What subscribers receive.
pub type SharedEvent = Arc<Event>;

#[derive(Clone, Default)]
pub struct Bus {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// This run of the sensor (UUIDv7): `seq` counts within it.
    run_id: RunId,
    ids: EventIds,
    seq: u64,
    next_id: u64,
    subscribers: Vec<Subscriber>,
    by_kind: BTreeMap<&'static str, u64>,
}

struct Subscriber {
    stats: SubscriberStats,
    tx: mpsc::Sender<SharedEvent>,
    filter: Filter,
    /// Dropped since the last EventsLost this subscriber received.
    pending_loss: u64,
    internal: bool,
}

/// Counters of one subscriber.
#[derive(Debug, Clone)]
pub struct SubscriberStats {
    pub id: u64,
    pub name: String,
    pub delivered: u64,
    pub dropped: u64,
    pub since: SystemTime,
}

/// A subscription: events arrive on `rx`; dropping it unsubscribes.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<SharedEvent>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes with a filter and a queue of `capacity` events. `internal` subscribers (sinks)
    /// are listed separately from API clients in status.
    pub fn subscribe(&self, name: &str, filter: Filter, capacity: usize, internal: bool) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.subscribers.push(Subscriber {
            stats: SubscriberStats { id, name: name.to_owned(), delivered: 0, dropped: 0, since: SystemTime::now() },
            tx,
            filter,
            pending_loss: 0,
            internal,
        });
        Subscription { id, rx }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters more than losing the stream, so recover the guard.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Numbers, stamps and delivers an event. Returns it as delivered.
    pub fn publish(&self, mut ev: Event) -> SharedEvent {
        let mut inner = self.lock();
        inner.seq += 1;
        ev.seq = inner.seq;
        ev.run_id.clone_from(&inner.run_id.0);
        ev.schema_version = SCHEMA_VERSION;
        ev.event_id = inner.ids.next().to_string();
        ev.observed_time = Some(timestamp(SystemTime::now()));
        if ev.severity == Severity::Unspecified as i32 {
            ev.severity = Severity::Info as i32;
        }
        let ev = Arc::new(ev);
        *inner.by_kind.entry(kind_name(&ev)).or_default() += 1;
        inner.subscribers.retain_mut(|s| {
            if !s.filter.matches(&ev) {
                return !s.tx.is_closed();
            }
            if s.pending_loss > 0 {
                let lost = lost_event(&ev, s.pending_loss);
                match s.tx.try_send(Arc::new(lost)) {
                    Ok(()) => s.pending_loss = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => {
                    s.stats.delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.stats.dropped += 1;
                    s.pending_loss += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        ev
    }

    /// Disconnects every subscriber: their receivers end once drained (shutdown).
    pub fn close(&self) {
        self.lock().subscribers.clear();
    }

    /// This run's id, as every event carries it.
    pub fn run_id(&self) -> String {
        self.lock().run_id.0.clone()
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    pub fn counts_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.lock().by_kind.clone()
    }

    /// Stats of connected subscribers: (API clients, internal sinks).
    pub fn subscriber_stats(&self) -> (Vec<SubscriberStats>, Vec<SubscriberStats>) {
        let inner = self.lock();
        let (internal, api): (Vec<&Subscriber>, Vec<&Subscriber>) =
            inner.subscribers.iter().filter(|s| !s.tx.is_closed()).partition(|s| s.internal);
        (api.into_iter().map(|s| s.stats.clone()).collect(), internal.into_iter().map(|s| s.stats.clone()).collect())
    }
}

/// The run id: a UUIDv7, so runs of one host sort by their start.
struct RunId(String);

impl Default for RunId {
    fn default() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// UUIDv7 event ids without a `getrandom` call per event: the 74 random bits come from a
/// per-boot random seed mixed with a counter (SplitMix64), so ids stay unique and unguessable
/// enough for correlation, at a fraction of the cost.
struct EventIds {
    seed: u64,
    counter: u64,
}

impl Default for EventIds {
    fn default() -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Self { seed, counter: 0 }
    }
}

impl EventIds {
    fn next(&mut self) -> uuid::Uuid {
        self.counter = self.counter.wrapping_add(1);
        let mut z = self.seed.wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        // Version 7, then 12 bits of the counter: ids of one millisecond stay ordered up to
        // 4096 events in that millisecond (after that, `seq` still orders them).
        let rand_a = (self.counter & 0x0fff) as u16 | 0x7000;
        b[6..8].copy_from_slice(&rand_a.to_be_bytes());
        b[8..16].copy_from_slice(&z.to_be_bytes());
        // RFC 9562 variant bits.
        b[8] = (b[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(b)
    }
}

/// The EventsLost event a subscriber gets after it missed `count` events. It carries the
/// sequence number of the event that follows the gap's end, so the consumer can line it up.
fn lost_event(next: &Event, count: u64) -> Event {
    Event {
        schema_version: SCHEMA_VERSION,
        event_id: uuid::Uuid::new_v4().to_string(),
        seq: next.seq,
        run_id: next.run_id.clone(),
        event_time: next.observed_time,
        observed_time: next.observed_time,
        host: next.host.clone(),
        process: None,
        severity: Severity::Medium as i32,
        payload: Some(Payload::EventsLost(EventsLost {
            count,
            source: LossSource::Subscriber as i32,
            detail: "this subscriber read too slowly; its queue overflowed".into(),
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::ProcessExit;

    fn exit_event() -> Event {
        Event { payload: Some(Payload::ProcessExit(ProcessExit::default())), ..Default::default() }
    }

    #[test]
    fn sequence_numbers_are_dense_and_stamped() {
        let bus = Bus::new();
        let mut sub = bus.subscribe("t", Filter::default(), 16, false);
        for _ in 0..3 {
            bus.publish(exit_event());
        }
        let got: Vec<SharedEvent> = (0..3).map(|_| sub.rx.try_recv().unwrap()).collect();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        // One run id for the whole run, a new one for the next.
        assert!(got.iter().all(|e| e.run_id == bus.run_id()));
        assert_eq!(uuid::Uuid::parse_str(&bus.run_id()).unwrap().get_version_num(), 7);
        assert_ne!(Bus::new().run_id(), bus.run_id());
        assert_eq!(bus.last_seq(), 3);
        assert_eq!(bus.counts_by_kind()["process_exit"], 3);
    }

    #[test]
    fn a_stalled_subscriber_loses_events_but_not_the_others_and_is_told() {
        let bus = Bus::new();
        let mut slow = bus.subscribe("slow", Filter::default(), 2, false);
        let mut fast = bus.subscribe("fast", Filter::default(), 1000, false);
        for _ in 0..10 {
            bus.publish(exit_event());
        }
        // The fast one got everything.
        let mut n = 0;
        while fast.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
        // The slow one got the first two, then nothing until it reads.
        assert_eq!(slow.rx.try_recv().unwrap().seq, 1);
        assert_eq!(slow.rx.try_recv().unwrap().seq, 2);
        assert!(slow.rx.try_recv().is_err());
        bus.publish(exit_event());
        let lost = slow.rx.try_recv().unwrap();
        let Some(Payload::EventsLost(l)) = &lost.payload else { panic!("{lost:?}") };
        assert_eq!(l.count, 8);
        assert_eq!(slow.rx.try_recv().unwrap().seq, 11);
        let (api, _) = bus.subscriber_stats();
        let s = api.iter().find(|s| s.name == "slow").unwrap();
        assert_eq!((s.delivered, s.dropped), (3, 8));
    }

    #[test]
    fn event_ids_are_unique_v7_and_time_ordered() {
        let mut ids = EventIds::default();
        let all: Vec<uuid::Uuid> = (0..10_000).map(|_| ids.next()).collect();
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert!(all.iter().all(|u| u.get_version_num() == 7 && u.get_variant() == uuid::Variant::RFC4122));
        let ms = |u: &uuid::Uuid| u.get_timestamp().map(|t| t.to_unix()).unwrap_or_default();
        assert!(all.windows(2).all(|w| ms(&w[0]) <= ms(&w[1])));
    }

    #[test]
    fn closed_subscribers_are_removed() {
        let bus = Bus::new();
        let sub = bus.subscribe("gone", Filter::default(), 4, false);
        drop(sub);
        bus.publish(exit_event());
        let (api, internal) = bus.subscriber_stats();
        assert!(api.is_empty() && internal.is_empty());
    }
}
