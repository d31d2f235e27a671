//! Model reads: bytes processes read from model files — through read(2) and its kin, or through
//! io_uring — which the kernel counts per (process, file, way) in a per-CPU map, drained here
//! into per-interval deltas, like ioctls.
//!
//! It owns the last drained totals, the exited processes whose kernel counters are still to be
//! forgotten, and the last path and version seen for each file (the counters know only the
//! device and inode). It returns deltas and leaves publishing and the session tracker to the
//! sensor.

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroUsize,
    time::Instant,
};

use lru::LruCache;
use sensor_ebpf::ReadKey;

use super::resolver::FileKey;
use crate::loader::KernelMaps;

/// Reads of files not judged yet carried over at most (process, file pairs).
const MAX_HELD: usize = 4096;

/// Files whose path is remembered for the read reports.
const MAX_FILES: NonZeroUsize = NonZeroUsize::new(16_384).unwrap();

/// Bytes one process read from one file since the last drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDelta {
    pub tgid: u32,
    /// Kernel-encoded device and inode of the file.
    pub dev: u32,
    pub ino: u64,
    pub bytes: u64,
    /// `sensor_ebpf::read_via`.
    pub via: u32,
}

/// Where a file was last seen opened or mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFile {
    pub path: String,
    pub key: FileKey,
    pub mode: u32,
}

/// The kernel's per-(process, file) read counters, as the drain needs them.
pub trait ReadCounters {
    /// Cumulative bytes, summed over CPUs.
    fn model_reads(&self) -> Vec<(ReadKey, u64)>;
    /// Forgets every counter of these processes (pids get reused).
    fn forget_reads(&mut self, tgids: &HashSet<u32>);
}

impl ReadCounters for KernelMaps {
    fn model_reads(&self) -> Vec<(ReadKey, u64)> {
        KernelMaps::model_reads(self)
    }

    fn forget_reads(&mut self, tgids: &HashSet<u32>) {
        KernelMaps::forget_reads(self, tgids);
    }
}

pub struct ModelReads {
    /// Cumulative count per key at the last drain.
    seen: HashMap<ReadKey, u64>,
    /// Reads of files not judged yet, carried into the next drain.
    held: HashMap<ReadKey, u64>,
    last_drain: Instant,
    /// Processes that exited since the last drain.
    exited: Vec<u32>,
    files: LruCache<(u32, u64), SeenFile>,
}

impl Default for ModelReads {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            held: HashMap::new(),
            last_drain: Instant::now(),
            exited: Vec::new(),
            files: LruCache::new(MAX_FILES),
        }
    }
}

impl ModelReads {
    /// A regular file was opened or mapped under `path`: reads of it are reported under it.
    pub fn saw(&mut self, key: FileKey, path: &str, mode: u32) {
        let slot = (key.0, key.1);
        match self.files.get_mut(&slot) {
            Some(f) if f.path == path => {
                f.key = key;
                f.mode = mode;
            }
            _ => {
                self.files.put(slot, SeenFile { path: path.to_owned(), key, mode });
            }
        }
    }

    /// The file's last known path and version.
    pub fn file(&self, dev: u32, ino: u64) -> Option<&SeenFile> {
        self.files.peek(&(dev, ino))
    }

    /// A delta of a file whose content is not judged yet: reported with the next drain (once
    /// the verdict says it is a model). Bounded: beyond it the reads are not carried over.
    pub fn hold(&mut self, d: &ReadDelta) {
        let key = ReadKey { tgid: d.tgid, dev: d.dev, ino: d.ino, via: d.via, _pad0: 0 };
        if self.held.len() < MAX_HELD || self.held.contains_key(&key) {
            *self.held.entry(key).or_default() += d.bytes;
        }
    }

    /// The process exited: its kernel counters are forgotten at the next drain.
    pub fn exited(&mut self, tgid: u32) {
        self.exited.push(tgid);
    }

    /// The read counts that grew since the last drain (and the interval, in ns), then forgets
    /// the counters of processes that exited.
    pub fn drain(&mut self, maps: &mut impl ReadCounters) -> (u64, Vec<ReadDelta>) {
        let now = Instant::now();
        let interval_ns = now.duration_since(self.last_drain).as_nanos() as u64;
        self.last_drain = now;
        let mut grown: HashMap<ReadKey, u64> = std::mem::take(&mut self.held);
        for (key, total) in maps.model_reads() {
            let prev = self.seen.insert(key, total).unwrap_or(0);
            if total > prev {
                *grown.entry(key).or_default() += total - prev;
            }
        }
        let mut deltas: Vec<ReadDelta> = grown
            .into_iter()
            .map(|(k, bytes)| ReadDelta { tgid: k.tgid, dev: k.dev, ino: k.ino, bytes, via: k.via })
            .collect();
        deltas.sort_by_key(|d| (d.tgid, d.dev, d.ino, d.via));
        let exited: HashSet<u32> = std::mem::take(&mut self.exited).into_iter().collect();
        let readers: HashSet<u32> = self.seen.keys().map(|k| k.tgid).filter(|t| exited.contains(t)).collect();
        if !readers.is_empty() {
            maps.forget_reads(&readers);
            self.seen.retain(|k, _| !readers.contains(&k.tgid));
        }
        (interval_ns, deltas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeCounters {
        counts: Vec<(ReadKey, u64)>,
        forgotten: Vec<u32>,
    }

    impl ReadCounters for FakeCounters {
        fn model_reads(&self) -> Vec<(ReadKey, u64)> {
            self.counts.clone()
        }

        fn forget_reads(&mut self, tgids: &HashSet<u32>) {
            self.forgotten.extend(tgids);
            self.counts.retain(|(k, _)| !tgids.contains(&k.tgid));
        }
    }

    fn key(tgid: u32, ino: u64) -> ReadKey {
        ReadKey { tgid, dev: 7, ino, via: 0, _pad0: 0 }
    }

    #[test]
    fn drains_deltas_and_forgets_exited_readers() {
        let mut reads = ModelReads::default();
        let mut kernel = FakeCounters { counts: vec![(key(1, 10), 4096), (key(2, 10), 100)], ..Default::default() };
        let (_, d) = reads.drain(&mut kernel);
        assert_eq!(
            d,
            [
                ReadDelta { tgid: 1, dev: 7, ino: 10, bytes: 4096, via: 0 },
                ReadDelta { tgid: 2, dev: 7, ino: 10, bytes: 100, via: 0 },
            ]
        );
        kernel.counts[0].1 = 8192;
        let (_, d) = reads.drain(&mut kernel);
        assert_eq!(d, [ReadDelta { tgid: 1, dev: 7, ino: 10, bytes: 4096, via: 0 }], "only growth");
        reads.exited(2);
        reads.exited(99);
        assert!(reads.drain(&mut kernel).1.is_empty());
        assert_eq!(kernel.forgotten, [2], "only processes that had counters");
        kernel.counts.push((key(2, 10), 1));
        assert_eq!(
            reads.drain(&mut kernel).1,
            [ReadDelta { tgid: 2, dev: 7, ino: 10, bytes: 1, via: 0 }],
            "a reused pid"
        );
    }

    #[test]
    fn files_are_remembered_by_device_and_inode() {
        let mut reads = ModelReads::default();
        reads.saw((7, 10, 100, 1, 2), "/m/a.gguf", 0o100644);
        reads.saw((7, 10, 200, 3, 4), "/m/a.gguf", 0o100644);
        let f = reads.file(7, 10).expect("seen");
        assert_eq!((f.path.as_str(), f.key), ("/m/a.gguf", (7, 10, 200, 3, 4)), "the latest version");
        assert!(reads.file(7, 11).is_none());
    }
}
