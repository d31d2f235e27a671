//! The analyzer's work queues: bounded, in two lanes, and never blocking the producer.
//!
//! The urgent lane holds what a security team needs first (small files and files that can
//! carry code, for identification; small files, for hashing); the bulk lane the rest. Workers
//! serve the urgent lane first, but while both lanes hold work every [`BULK_EVERY`]th item comes
//! from the bulk lane, so a flood of small files delays a large one without starving it. A
//! worker may also be limited to the urgent lane (a hashing thread that must never start a
//! 40 GB digest).

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Urgent,
    Bulk,
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    Full,
    Closed,
}

/// While both lanes hold work, one item in this many is taken from the bulk lane.
const BULK_EVERY: u32 = 4;

struct State<T> {
    urgent: VecDeque<T>,
    bulk: VecDeque<T>,
    /// Urgent items served in a row while bulk work waited.
    streak: u32,
    paused: bool,
    closed: bool,
}

pub(super) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

impl<T> WorkQueue<T> {
    /// A queue of at most `capacity` items in both lanes together; `paused` holds every
    /// worker until [`WorkQueue::resume`].
    pub(super) fn new(capacity: usize, paused: bool) -> Self {
        Self {
            state: Mutex::new(State {
                urgent: VecDeque::new(),
                bulk: VecDeque::new(),
                streak: 0,
                paused,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `item` unless the queue is full or closed; only ever waits for the lock.
    pub(super) fn try_push(&self, item: T, lane: Lane) -> Result<(), Refused> {
        let Ok(mut s) = self.state.lock() else { return Err(Refused::Closed) };
        if s.closed {
            return Err(Refused::Closed);
        }
        if s.urgent.len() + s.bulk.len() >= self.capacity {
            return Err(Refused::Full);
        }
        match lane {
            Lane::Urgent => s.urgent.push_back(item),
            Lane::Bulk => s.bulk.push_back(item),
        }
        drop(s);
        // All: a worker limited to the urgent lane must not swallow the wake-up for bulk work.
        self.ready.notify_all();
        Ok(())
    }

    /// The next item for a worker (one that takes bulk work or not); waits for one. `None`
    /// once the queue is closed, whatever it still holds.
    pub(super) fn pop(&self, takes_bulk: bool) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        loop {
            if s.closed {
                return None;
            }
            if !s.paused {
                let bulk_turn = takes_bulk && !s.bulk.is_empty() && (s.urgent.is_empty() || s.streak >= BULK_EVERY);
                if bulk_turn {
                    s.streak = 0;
                    return s.bulk.pop_front();
                }
                if let Some(item) = s.urgent.pop_front() {
                    if !s.bulk.is_empty() {
                        s.streak += 1;
                    }
                    return Some(item);
                }
            }
            s = self.ready.wait(s).ok()?;
        }
    }

    pub(super) fn resume(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.paused = false;
        }
        self.ready.notify_all();
    }

    /// Refuses new items and releases every waiting worker; what is queued is dropped.
    pub(super) fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
            s.urgent.clear();
            s.bulk.clear();
        }
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_first_bulk_not_starved_bounded_and_closable() {
        let q = WorkQueue::new(8, false);
        for i in 0..3 {
            q.try_push(100 + i, Lane::Bulk).expect("room");
        }
        for i in 0..5 {
            q.try_push(i, Lane::Urgent).expect("room");
        }
        assert_eq!(q.try_push(99, Lane::Urgent), Err(Refused::Full));
        let order: Vec<u32> = (0..8).map(|_| q.pop(true).expect("item")).collect();
        assert_eq!(order, [0, 1, 2, 3, 100, 4, 101, 102]);
        // A worker limited to the urgent lane leaves bulk work alone.
        q.try_push(200, Lane::Bulk).expect("room");
        q.try_push(7, Lane::Urgent).expect("room");
        assert_eq!(q.pop(false), Some(7));
        assert_eq!(q.pop(true), Some(200));
        q.try_push(8, Lane::Urgent).expect("room");
        q.close();
        assert_eq!(q.pop(true), None);
        assert_eq!(q.try_push(9, Lane::Urgent), Err(Refused::Closed));
    }

    #[test]
    fn paused_workers_wait_for_resume() {
        let q = std::sync::Arc::new(WorkQueue::new(4, true));
        q.try_push(1u32, Lane::Urgent).expect("room");
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.pop(true))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!worker.is_finished(), "a paused queue hands out nothing");
        q.resume();
        assert_eq!(worker.join().expect("worker"), Some(1));
    }
}
