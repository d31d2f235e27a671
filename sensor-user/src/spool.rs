//! The delivery spool: a write-ahead log on local disk under every network sink. Events are
//! appended here before they are sent, and a record leaves the spool only after its
//! destination acknowledged it, so an outage of the destination, a restart or a `kill -9` of
//! the sensor loses nothing that reached the spool (delivery is at least once).
//!
//! One directory per sink holds:
//! - **segment files** `<first record number, 20 digits>.seg`, written sequentially: a 16-byte
//!   header (`MWSPOOL1`, then the number of the segment's first record, u64 LE) followed by
//!   records of `length: u32 LE | crc: u32 LE | appended_ms: u64 LE | payload[length]`. The CRC
//!   (CRC-32, IEEE) covers `appended_ms` and the payload; the payload is one encoded
//!   `modelwatch.v1.Event`. Record numbers grow by one per record for the life of the spool.
//! - **`delivered`**: the number below which every record was acknowledged (u64 LE, then the
//!   CRC-32 of those 8 bytes, u32 LE), replaced atomically (write, fsync, rename).
//!
//! Writes reach the operating system with every batch (a crash of the sensor loses nothing
//! written) and the disk on a policy: every `sync_interval` or `sync_every` records, whichever
//! comes first; that window is what a power cut can lose. At start-up every segment is checked
//! record by record: a torn or corrupt tail is cut at the last good record and counted, never
//! a crash; a segment found corrupt while reading is skipped from the bad record on, counted.
//!
//! The spool is bounded by `max_size` and optionally `max_age`: beyond, whole segments go,
//! oldest first, and the undelivered records they held are counted as dropped (`spool_full`,
//! `spool_expired`). Records already handed to delivery stay in its memory and are still
//! delivered. A spool that cannot be written (full disk, read-only or missing directory)
//! counts each record it could not store (`spool_unwritable`), says why in [`SpoolStats::error`]
//! and tries again with the next batch.
//!
//! The writer (a sink's intake thread) and the reader (its delivery thread) share one
//! [`Spool`]; every method takes its lock for a few small I/O calls at most.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"MWSPOOL1";
/// Segment header: magic and the first record's number.
pub const SEGMENT_HEADER: u64 = 16;
/// Record header: length, CRC, append time.
pub const RECORD_HEADER: u64 = 16;
/// Longest payload a record may hold; a longer length field is corruption.
pub const MAX_RECORD: u64 = 16 << 20;
/// Name of the position file.
pub const POSITION_FILE: &str = "delivered";
/// Smallest `max_size` accepted (the configuration enforces it).
pub const MIN_MAX_SIZE: u64 = 64 << 10;
/// How often a spool that could not be opened is tried again.
const RETRY_OPEN: Duration = Duration::from_secs(2);
/// Write failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How a spool is laid out and bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    /// Bytes on disk at most (segment files).
    pub max_size: u64,
    /// Records older than this are dropped (whole segments), when set.
    pub max_age: Option<Duration>,
    /// Data reaches the disk (fdatasync) at least this often while records arrive.
    pub sync_interval: Duration,
    /// ... and after this many records.
    pub sync_every: u64,
}

impl SpoolSettings {
    /// Segments are a sixteenth of the cap (between 4 KiB and 64 MiB): eviction drops at most
    /// that much at once.
    pub fn segment_size(&self) -> u64 {
        (self.max_size / 16).clamp(4 << 10, 64 << 20)
    }
}

/// Why records left the spool without being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `max_size` was reached: the oldest undelivered records were dropped.
    Full,
    /// Older than `max_age`.
    Expired,
    /// Could not be written (full disk, unwritable directory).
    Unwritable,
    /// Cut as corrupt (a torn tail at start-up, a bad CRC).
    Corrupt,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [Self::Full, Self::Expired, Self::Unwritable, Self::Corrupt];

    /// The name used in `EventsLost.by_kind` and in status.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "spool_full",
            Self::Expired => "spool_expired",
            Self::Unwritable => "spool_unwritable",
            Self::Corrupt => "spool_corrupt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and depth of a spool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpoolStats {
    /// Records stored since start.
    pub appended: u64,
    /// Bytes written for them (record headers included).
    pub appended_bytes: u64,
    /// Records not acknowledged yet (including those being sent).
    pub pending_events: u64,
    /// Their bytes on disk (record headers included).
    pub pending_bytes: u64,
    /// When the oldest pending record was appended.
    pub oldest_pending: Option<SystemTime>,
    /// Bytes of every segment file.
    pub disk_bytes: u64,
    pub segments: usize,
    /// Records dropped since start, per [`DropReason`] (in `DropReason::ALL` order).
    pub dropped: [u64; 4],
    /// Bytes cut from corrupt or torn segments since start.
    pub corrupt_bytes: u64,
    /// Why the spool cannot be written now, and since when; `None` when it works.
    pub error: Option<(String, SystemTime)>,
}

impl SpoolStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// A record handed to delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub number: u64,
    pub appended_ms: u64,
    pub payload: Vec<u8>,
    /// First record number of its segment, and the byte offset where it ends there.
    segment: u64,
    end: u64,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    count: u64,
    /// Valid length of the file, header included.
    bytes: u64,
    first_ms: u64,
    newest_ms: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.count
    }
}

/// Where delivery reads next.
struct Reader {
    segment: u64,
    file: File,
    offset: u64,
    number: u64,
}

struct State {
    settings: SpoolSettings,
    /// Start-up recovery done; until then every append retries it.
    ready: bool,
    next_open_attempt: Instant,
    segments: VecDeque<Segment>,
    /// Write handle of the newest segment; `None` until the next append creates one.
    active: Option<File>,
    /// Number of the next record appended.
    next: u64,
    /// Every record below this was acknowledged (or dropped).
    delivered: u64,
    /// Byte offset of record `delivered` in segment `delivered_at.0`.
    delivered_at: (u64, u64),
    /// Records below this were handed to delivery.
    cursor: u64,
    reader: Option<Reader>,
    /// Handed out, not acknowledged: (number, appended_ms).
    inflight: VecDeque<(u64, u64)>,
    /// Appended time of the last record handed out.
    last_handed_ms: u64,
    persisted: u64,
    last_persist: Instant,
    unsynced: u64,
    last_sync: Instant,
    last_warning: Option<Instant>,
    stats: SpoolStats,
}

/// The spool of one sink; shared by its writer and its reader.
pub struct Spool {
    state: Mutex<State>,
    arrived: Condvar,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn crc(appended_ms: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&appended_ms.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// File name of the segment whose first record is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Appends one record in the on-disk form to `out`.
pub fn encode_record(out: &mut Vec<u8>, appended_ms: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(appended_ms, payload).to_le_bytes());
    out.extend_from_slice(&appended_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a check of one segment file found.
#[derive(Debug, Default, PartialEq)]
struct Scan {
    header_ok: bool,
    count: u64,
    valid_bytes: u64,
    file_len: u64,
    first_ms: u64,
    newest_ms: u64,
    /// Records (plausible by their length fields) from the first bad one to the end.
    cut_records: u64,
    /// Offset of record `want` when it is in this segment.
    offset_of_wanted: Option<u64>,
}

/// Reads a whole record at `offset` of `file` whose valid data ends at `limit`. `Ok(None)`: no
/// complete, intact record there.
fn read_record(file: &File, offset: u64, limit: u64) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    if offset + RECORD_HEADER > limit {
        return Ok(None);
    }
    let mut head = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut head, offset)?;
    let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let ms = u64::from_le_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]);
    if len > MAX_RECORD || offset + RECORD_HEADER + len > limit {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER)?;
    if crc(ms, &payload) != sum {
        return Ok(None);
    }
    Ok(Some((ms, payload)))
}

/// Checks every record of a segment file; notes the offset of record number `want`.
fn scan_segment(path: &Path, first: u64, want: u64) -> std::io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut scan = Scan { file_len, ..Default::default() };
    let mut header = [0u8; SEGMENT_HEADER as usize];
    if file_len < SEGMENT_HEADER || file.read_exact_at(&mut header, 0).is_err() {
        return Ok(scan);
    }
    if &header[..8] != SEGMENT_MAGIC || header[8..16] != first.to_le_bytes() {
        return Ok(scan);
    }
    scan.header_ok = true;
    let mut offset = SEGMENT_HEADER;
    // Sequential reads through a buffer: start-up checks the whole spool.
    let mut buffered = std::io::BufReader::with_capacity(1 << 16, File::open(path)?);
    std::io::copy(&mut (&mut buffered).take(SEGMENT_HEADER), &mut std::io::sink())?;
    let mut head = [0u8; RECORD_HEADER as usize];
    let mut payload = Vec::new();
    loop {
        if first + scan.count == want {
            scan.offset_of_wanted = Some(offset);
        }
        if offset + RECORD_HEADER > file_len || buffered.read_exact(&mut head).is_err() {
            break;
        }
        let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let ms = u64::from_le_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]);
        if len > MAX_RECORD || offset + RECORD_HEADER + len > file_len {
            break;
        }
        payload.resize(len as usize, 0);
        if buffered.read_exact(&mut payload).is_err() || crc(ms, &payload) != sum {
            break;
        }
        if scan.count == 0 {
            scan.first_ms = ms;
        }
        scan.newest_ms = scan.newest_ms.max(ms);
        scan.count += 1;
        offset += RECORD_HEADER + len;
    }
    scan.valid_bytes = offset;
    // How many records the cut part held, going by their length fields as far as they make
    // sense: a torn tail is one record, a flipped bit in a payload leaves the rest countable.
    let mut at = offset;
    while at < file_len {
        scan.cut_records += 1;
        let mut h = [0u8; 4];
        if at + RECORD_HEADER > file_len || file.read_exact_at(&mut h, at).is_err() {
            break;
        }
        let len = u64::from(u32::from_le_bytes(h));
        if len > MAX_RECORD {
            break;
        }
        at += RECORD_HEADER + len;
    }
    Ok(scan)
}

fn position_bytes(delivered: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&delivered.to_le_bytes());
    b[8..].copy_from_slice(&crc32fast::hash(&delivered.to_le_bytes()).to_le_bytes());
    b
}

fn parse_position(b: &[u8]) -> Option<u64> {
    let v: [u8; 8] = b.get(..8)?.try_into().ok()?;
    let sum: [u8; 4] = b.get(8..12)?.try_into().ok()?;
    (b.len() == 12 && crc32fast::hash(&v) == u32::from_le_bytes(sum)).then(|| u64::from_le_bytes(v))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Spool {
    /// Opens (or creates) the spool in `settings.dir` and recovers its state. Never fails: a
    /// spool that cannot be opened counts what it cannot store and is tried again.
    pub fn open(settings: SpoolSettings) -> Self {
        let now = Instant::now();
        let mut state = State {
            settings,
            ready: false,
            next_open_attempt: now,
            segments: VecDeque::new(),
            active: None,
            next: 0,
            delivered: 0,
            delivered_at: (0, SEGMENT_HEADER),
            cursor: 0,
            reader: None,
            inflight: VecDeque::new(),
            last_handed_ms: 0,
            persisted: 0,
            last_persist: now,
            unsynced: 0,
            last_sync: now,
            last_warning: None,
            stats: SpoolStats::default(),
        };
        state.recover();
        Self { state: Mutex::new(state), arrived: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements that could panic; keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn dir(&self) -> PathBuf {
        self.lock().settings.dir.clone()
    }

    /// Appends `payloads` as one write. Returns how many were stored; the others are counted
    /// as dropped (`spool_unwritable`).
    pub fn append(&self, payloads: &[Vec<u8>]) -> usize {
        if payloads.is_empty() {
            return 0;
        }
        let stored = self.lock().append(payloads);
        if stored > 0 {
            self.arrived.notify_all();
        }
        stored
    }

    /// Syncs to disk when the policy says so (call after appends and when idle).
    pub fn maybe_sync(&self) {
        let mut s = self.lock();
        if s.unsynced > 0 && (s.unsynced >= s.settings.sync_every || s.last_sync.elapsed() >= s.settings.sync_interval)
        {
            s.sync();
        }
    }

    /// Whether data waits for a sync.
    pub fn unsynced(&self) -> bool {
        self.lock().unsynced > 0
    }

    /// Syncs data and position now (shutdown).
    pub fn sync_all(&self) {
        let mut s = self.lock();
        s.sync();
        s.persist();
    }

    /// Up to `max_records` records (at most about `max_bytes`) not handed out yet, in order;
    /// waits up to `wait` for one to arrive. Empty when none came.
    pub fn next_batch(&self, max_records: usize, max_bytes: u64, wait: Duration) -> Vec<Record> {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            s.expire();
            if s.ready && s.cursor < s.next {
                break;
            }
            if s.persisted != s.delivered && s.last_persist.elapsed() >= s.settings.sync_interval {
                s.persist();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            // Wake up at least every sync interval to persist the position and expire records.
            let nap = left.min(s.settings.sync_interval.max(Duration::from_millis(10)));
            s = self.arrived.wait_timeout(s, nap).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        s.read(max_records, max_bytes)
    }

    /// Wakes a reader waiting in [`Spool::next_batch`].
    pub fn wake(&self) {
        self.arrived.notify_all();
    }

    /// Every record up to and including `last` was acknowledged by the destination.
    pub fn acknowledge(&self, last: &Record) {
        self.lock().acknowledge(last);
    }

    /// Drops segments older than `max_age` (also done while waiting for records).
    pub fn expire(&self) {
        self.lock().expire();
    }

    pub fn stats(&self) -> SpoolStats {
        let mut s = self.lock();
        s.refresh_depth();
        s.stats.clone()
    }
}

impl State {
    fn path(&self, first: u64) -> PathBuf {
        self.settings.dir.join(segment_name(first))
    }

    fn set_error(&mut self, message: String) {
        match &mut self.stats.error {
            Some((m, _)) => *m = message,
            None => {
                // A disk that is nearly full fails and works by turns: one line per WARN_EVERY
                // (status and the health events carry the rest).
                if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    self.last_warning = Some(Instant::now());
                    tracing::warn!(spool = %self.settings.dir.display(), "{message} (events are counted as lost)");
                }
                self.stats.error = Some((message, SystemTime::now()));
            }
        }
    }

    fn clear_error(&mut self) {
        if self.stats.error.take().is_some() {
            tracing::debug!(spool = %self.settings.dir.display(), "spool writable again");
        }
    }

    fn drop_records(&mut self, reason: DropReason, n: u64) {
        self.stats.dropped[reason.index()] += n;
    }

    /// Reads the position and checks every segment; cuts what is corrupt.
    fn recover(&mut self) {
        self.next_open_attempt = Instant::now() + RETRY_OPEN;
        let dir = self.settings.dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.set_error(format!("cannot create the spool directory {}: {e}", dir.display()));
            return;
        }
        let mut delivered = match std::fs::read(dir.join(POSITION_FILE)) {
            Ok(b) => parse_position(&b).unwrap_or_else(|| {
                tracing::warn!(spool = %dir.display(), "delivery position unreadable: everything in the spool is sent again");
                0
            }),
            Err(_) => 0,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                self.set_error(format!("cannot read the spool directory {}: {e}", dir.display()));
                return;
            }
        };
        let mut files: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let stem = name.to_str()?.strip_suffix(".seg")?;
                (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
            })
            .collect();
        files.sort_unstable();
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let mut delivered_at = None;
        for (i, &first) in files.iter().enumerate() {
            let path = self.path(first);
            let following = files.get(i + 1).copied();
            // Everything in it was acknowledged: it only waited to be deleted.
            if following.is_some_and(|f| f <= delivered) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let scan = match scan_segment(&path, first, delivered) {
                Ok(s) => s,
                Err(e) => {
                    self.set_error(format!("cannot read spool segment {}: {e}", path.display()));
                    return;
                }
            };
            let previous_end = segments.back().map_or(0, Segment::end);
            if !scan.header_ok || first < previous_end {
                // Not a segment of ours (or overlapping one): what it held is lost.
                let lost = following.map_or(1, |f| f.saturating_sub(first.max(delivered)));
                tracing::warn!(segment = %path.display(), lost, "spool segment with a bad header removed");
                self.drop_records(DropReason::Corrupt, lost);
                self.stats.corrupt_bytes += scan.file_len;
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if scan.valid_bytes < scan.file_len {
                let end = first + scan.count;
                // Exact when a later segment says where the numbers went on.
                let cut_end = following.unwrap_or(end + scan.cut_records.max(1));
                let lost = cut_end.saturating_sub(end.max(delivered));
                tracing::warn!(
                    segment = %path.display(),
                    good = scan.count,
                    cut_bytes = scan.file_len - scan.valid_bytes,
                    lost,
                    "spool segment corrupt or torn: cut at the last good record"
                );
                self.drop_records(DropReason::Corrupt, lost);
                self.stats.corrupt_bytes += scan.file_len - scan.valid_bytes;
                let cut = OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(scan.valid_bytes));
                if let Err(e) = cut {
                    self.set_error(format!("cannot cut corrupt spool segment {}: {e}", path.display()));
                    return;
                }
            }
            if scan.count == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(off) = scan.offset_of_wanted {
                delivered_at = Some((first, off));
            }
            segments.push_back(Segment {
                first,
                count: scan.count,
                bytes: scan.valid_bytes,
                first_ms: scan.first_ms,
                newest_ms: scan.newest_ms,
            });
        }
        // Numbers are never reused, even when the tail was lost after its position was saved.
        let end = segments.back().map_or(0, Segment::end);
        self.next = end.max(delivered);
        if let Some(oldest) = segments.front()
            && delivered < oldest.first
        {
            delivered = oldest.first;
            delivered_at = Some((oldest.first, SEGMENT_HEADER));
        }
        self.delivered = delivered;
        self.delivered_at = delivered_at.unwrap_or((delivered, SEGMENT_HEADER));
        self.persisted = delivered;
        self.cursor = delivered;
        self.stats.disk_bytes = segments.iter().map(|s| s.bytes).sum();
        self.segments = segments;
        self.ready = true;
        self.clear_error();
        let _ = std::fs::remove_file(dir.join(format!("{POSITION_FILE}.tmp")));
    }

    fn append(&mut self, payloads: &[Vec<u8>]) -> usize {
        let n = payloads.len();
        if !self.ready && Instant::now() >= self.next_open_attempt {
            self.recover();
        }
        if !self.ready {
            self.drop_records(DropReason::Unwritable, n as u64);
            return 0;
        }
        let ms = now_ms();
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + RECORD_HEADER as usize).sum());
        for p in payloads {
            encode_record(&mut buf, ms, p);
        }
        let need = buf.len() as u64;
        self.make_room(need + SEGMENT_HEADER);
        if self.active.is_none()
            && let Err(e) = self.start_segment(ms)
        {
            self.set_error(e);
            self.drop_records(DropReason::Unwritable, n as u64);
            return 0;
        }
        let dir = self.settings.dir.clone();
        let Some(seg) = self.segments.back_mut() else { return 0 };
        let Some(file) = &self.active else { return 0 };
        let at = seg.bytes;
        if let Err(e) = file.write_all_at(&buf, at) {
            // Whatever part of the batch made it is cut again, so the file stays a sequence
            // of whole records; the next batch starts a new segment.
            let cut = file.set_len(at);
            let path = dir.join(segment_name(seg.first));
            self.active = None;
            self.set_error(format!(
                "cannot write spool segment {}: {e}{}",
                path.display(),
                cut.err().map(|c| format!(" (and cannot cut it back: {c})")).unwrap_or_default()
            ));
            self.drop_records(DropReason::Unwritable, n as u64);
            return 0;
        }
        if seg.count == 0 {
            seg.first_ms = ms;
        }
        seg.count += n as u64;
        seg.bytes += need;
        seg.newest_ms = ms;
        let full = seg.bytes >= self.settings.segment_size();
        self.next += n as u64;
        self.stats.appended += n as u64;
        self.stats.appended_bytes += need;
        self.stats.disk_bytes += need;
        self.unsynced += n as u64;
        self.clear_error();
        if full {
            // Rolled segments are on disk before the next one starts: a sync of the new file
            // would not cover them.
            self.sync();
            self.active = None;
        }
        n
    }

    fn start_segment(&mut self, ms: u64) -> Result<(), String> {
        let first = self.next;
        let path = self.path(first);
        let mut header = Vec::with_capacity(SEGMENT_HEADER as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&first.to_le_bytes());
        let created = std::fs::create_dir_all(&self.settings.dir)
            .and_then(|()| OpenOptions::new().create(true).write(true).truncate(true).open(&path))
            .and_then(|mut f| f.write_all(&header).map(|()| f));
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(format!("cannot create spool segment {}: {e}", path.display()));
            }
        };
        // The new name must survive a power cut too.
        sync_dir(&self.settings.dir);
        if let Some(last) = self.segments.back()
            && last.count == 0
            && last.first == first
        {
            self.segments.pop_back();
            self.stats.disk_bytes = self.stats.disk_bytes.saturating_sub(SEGMENT_HEADER);
        }
        self.segments.push_back(Segment { first, count: 0, bytes: SEGMENT_HEADER, first_ms: ms, newest_ms: ms });
        self.stats.disk_bytes += SEGMENT_HEADER;
        self.active = Some(file);
        Ok(())
    }

    /// Evicts the oldest segments until `need` more bytes fit under `max_size`.
    fn make_room(&mut self, need: u64) {
        while self.stats.disk_bytes + need > self.settings.max_size && !self.segments.is_empty() {
            if self.segments.len() == 1 {
                // The segment being written is the only one: it goes too.
                self.sync();
                self.active = None;
            }
            self.evict_oldest(DropReason::Full);
        }
    }

    /// Removes the oldest segment; its records not handed to delivery yet are dropped.
    fn evict_oldest(&mut self, reason: DropReason) {
        let Some(seg) = self.segments.pop_front() else { return };
        let lost = seg.end().saturating_sub(self.cursor.max(seg.first));
        if lost > 0 {
            tracing::debug!(segment = seg.first, lost, reason = reason.name(), "spool segment evicted");
        }
        self.drop_records(reason, lost);
        let _ = std::fs::remove_file(self.path(seg.first));
        self.stats.disk_bytes = self.stats.disk_bytes.saturating_sub(seg.bytes);
        if self.segments.is_empty() {
            self.active = None;
        }
        self.cursor = self.cursor.max(seg.end());
        if self.delivered < seg.end() {
            self.delivered = seg.end();
            self.delivered_at = (seg.end(), SEGMENT_HEADER);
        }
        if self.reader.as_ref().is_some_and(|r| r.segment == seg.first) {
            self.reader = None;
        }
    }

    fn expire(&mut self) {
        let Some(max_age) = self.settings.max_age else { return };
        let limit = now_ms().saturating_sub(max_age.as_millis() as u64);
        while self.segments.front().is_some_and(|s| s.newest_ms < limit && s.count > 0) {
            if self.segments.len() == 1 {
                self.active = None;
            }
            self.evict_oldest(DropReason::Expired);
        }
    }

    fn sync(&mut self) {
        if self.unsynced == 0 {
            return;
        }
        if let Some(f) = &self.active
            && let Err(e) = f.sync_data()
        {
            let dir = self.settings.dir.display().to_string();
            self.set_error(format!("cannot sync the spool in {dir}: {e}"));
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
    }

    fn persist(&mut self) {
        self.last_persist = Instant::now();
        if !self.ready || self.persisted == self.delivered {
            return;
        }
        let dir = &self.settings.dir;
        let tmp = dir.join(format!("{POSITION_FILE}.tmp"));
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(&position_bytes(self.delivered)).and_then(|()| f.sync_data()))
            .and_then(|()| std::fs::rename(&tmp, dir.join(POSITION_FILE)));
        match written {
            Ok(()) => self.persisted = self.delivered,
            // Not fatal: after a restart, more is sent again.
            Err(e) => tracing::debug!(spool = %dir.display(), "cannot save the delivery position: {e}"),
        }
    }

    /// Hands out records from the cursor on.
    fn read(&mut self, max_records: usize, max_bytes: u64) -> Vec<Record> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while out.len() < max_records.max(1) && bytes < max_bytes && self.cursor < self.next {
            // The segment holding the cursor (records below the oldest one are gone).
            let Some(idx) = self.segments.iter().position(|s| s.end() > self.cursor) else {
                self.cursor = self.next;
                break;
            };
            let (first, count, limit) = {
                let s = &self.segments[idx];
                (s.first, s.count, s.bytes)
            };
            if self.cursor < first {
                self.cursor = first;
            }
            if !self.reader.as_ref().is_some_and(|r| r.segment == first && r.number == self.cursor) {
                match self.position_reader(first, limit) {
                    Ok(r) => self.reader = Some(r),
                    Err(e) => {
                        self.skip_segment_from(idx, self.cursor, &format!("cannot read it: {e}"));
                        continue;
                    }
                }
            }
            let Some(reader) = self.reader.as_mut() else { break };
            while reader.number < first + count && out.len() < max_records.max(1) && bytes < max_bytes {
                match read_record(&reader.file, reader.offset, limit) {
                    Ok(Some((ms, payload))) => {
                        let len = RECORD_HEADER + payload.len() as u64;
                        reader.offset += len;
                        bytes += len;
                        out.push(Record {
                            number: reader.number,
                            appended_ms: ms,
                            payload,
                            segment: first,
                            end: reader.offset,
                        });
                        reader.number += 1;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let at = reader.number;
            self.cursor = at;
            if at < first + count && out.len() < max_records.max(1) && bytes < max_bytes {
                // Stopped inside the segment for another reason than a limit: corrupt.
                self.skip_segment_from(idx, at, "a record failed its check");
            }
        }
        for r in &out {
            self.inflight.push_back((r.number, r.appended_ms));
        }
        if let Some(last) = out.last() {
            self.last_handed_ms = last.appended_ms;
        }
        out
    }

    /// Opens segment `first` and walks to the cursor's record.
    fn position_reader(&self, first: u64, limit: u64) -> std::io::Result<Reader> {
        let file = File::open(self.path(first))?;
        let (mut offset, mut number) = (SEGMENT_HEADER, first);
        if self.delivered_at.0 == first && self.delivered <= self.cursor && self.delivered >= first {
            (offset, number) = (self.delivered_at.1, self.delivered);
        }
        let mut head = [0u8; 4];
        while number < self.cursor {
            if offset + RECORD_HEADER > limit {
                return Err(std::io::Error::other("segment shorter than its records"));
            }
            file.read_exact_at(&mut head, offset)?;
            offset += RECORD_HEADER + u64::from(u32::from_le_bytes(head));
            number += 1;
        }
        Ok(Reader { segment: first, file, offset, number })
    }

    /// Segment at `idx` is unreadable from record `from` on: those records are dropped as
    /// corrupt, and writing goes on in a new segment.
    fn skip_segment_from(&mut self, idx: usize, from: u64, why: &str) {
        let Some(seg) = self.segments.get_mut(idx) else { return };
        let lost = seg.end().saturating_sub(from);
        tracing::warn!(
            segment = seg.first,
            lost,
            "spool segment unreadable ({why}): its remaining records are dropped"
        );
        let end = seg.end();
        let last = idx + 1 == self.segments.len();
        self.drop_records(DropReason::Corrupt, lost);
        self.cursor = self.cursor.max(end);
        self.reader = None;
        if last {
            self.active = None;
        }
    }

    fn acknowledge(&mut self, last: &Record) {
        let end = last.number + 1;
        while self.inflight.front().is_some_and(|(n, _)| *n < end) {
            self.inflight.pop_front();
        }
        if end <= self.delivered {
            return;
        }
        self.delivered = end;
        self.delivered_at = (last.segment, last.end);
        // Fully delivered segments go, except the one being written (on a full disk that
        // frees the space the next append needs).
        while (self.segments.len() > 1 || self.active.is_none())
            && self.segments.front().is_some_and(|s| s.end() <= self.delivered)
        {
            if let Some(seg) = self.segments.pop_front() {
                let _ = std::fs::remove_file(self.path(seg.first));
                self.stats.disk_bytes = self.stats.disk_bytes.saturating_sub(seg.bytes);
                if self.reader.as_ref().is_some_and(|r| r.segment == seg.first) {
                    self.reader = None;
                }
            }
        }
        if self.last_persist.elapsed() >= self.settings.sync_interval {
            self.persist();
        }
    }

    fn refresh_depth(&mut self) {
        let (mut events, mut bytes) = (0, 0);
        for s in &self.segments {
            let from = self.delivered.max(s.first);
            if from >= s.end() {
                continue;
            }
            events += s.end() - from;
            bytes += if from == s.first {
                s.bytes - SEGMENT_HEADER
            } else if self.delivered_at.0 == s.first {
                s.bytes.saturating_sub(self.delivered_at.1)
            } else {
                (s.bytes - SEGMENT_HEADER) * (s.end() - from) / s.count.max(1)
            };
        }
        self.stats.pending_events = events;
        self.stats.pending_bytes = bytes;
        self.stats.segments = self.segments.len();
        let oldest_ms = if let Some((_, ms)) = self.inflight.front() {
            Some(*ms)
        } else if events > 0 {
            // Not read yet: its segment's first record, or the last one handed out before it
            // (which is at most that old).
            self.segments
                .iter()
                .find(|s| s.end() > self.cursor)
                .map(|s| if s.first >= self.cursor { s.first_ms } else { self.last_handed_ms.max(s.first_ms) })
        } else {
            None
        };
        self.stats.oldest_pending = oldest_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, max_size: u64) -> SpoolSettings {
        SpoolSettings {
            dir: dir.to_owned(),
            max_size,
            max_age: None,
            sync_interval: Duration::from_millis(100),
            sync_every: 1000,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("event-{i:06}").into_bytes()
    }

    fn append_range(spool: &Spool, range: std::ops::Range<u64>) {
        for i in range {
            assert_eq!(spool.append(&[payload(i)]), 1);
        }
    }

    /// Reads everything pending, acknowledging as it goes; returns the payloads.
    fn drain(spool: &Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let batch = spool.next_batch(7, 1 << 20, Duration::ZERO);
            let Some(last) = batch.last() else { return out };
            spool.acknowledge(last);
            out.extend(batch.into_iter().map(|r| r.payload));
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        append_range(&spool, 0..10);
        let batch = spool.next_batch(4, 1 << 20, Duration::ZERO);
        assert_eq!(batch.iter().map(|r| r.number).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(batch[0].payload, payload(0));
        spool.acknowledge(&batch[3]);
        spool.sync_all();
        let st = spool.stats();
        assert_eq!((st.appended, st.pending_events), (10, 6));
        assert_eq!(st.pending_bytes, 6 * (RECORD_HEADER + payload(0).len() as u64));
        assert!(st.oldest_pending.is_some());
        drop(spool);

        // A restart goes on from the saved position; numbers continue.
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        assert_eq!(spool.stats().pending_events, 6);
        append_range(&spool, 10..12);
        let got = drain(&spool);
        assert_eq!(got, (4..12).map(payload).collect::<Vec<_>>());
        let st = spool.stats();
        assert_eq!((st.pending_events, st.pending_bytes, st.oldest_pending), (0, 0, None));
    }

    #[test]
    fn unacknowledged_records_are_sent_again_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        append_range(&spool, 0..5);
        let batch = spool.next_batch(5, 1 << 20, Duration::ZERO);
        assert_eq!(batch.len(), 5);
        // Handed out but never acknowledged: the "crash" (no sync_all, no drop order).
        std::mem::forget(spool);
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        assert_eq!(drain(&spool), (0..5).map(payload).collect::<Vec<_>>());
    }

    #[test]
    fn delivered_position_is_persisted_and_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB cap: 4 KiB segments, about 150 records each.
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        append_range(&spool, 0..600);
        assert!(segment_files(dir.path()).len() >= 4);
        assert_eq!(drain(&spool).len(), 600);
        spool.sync_all();
        assert_eq!(segment_files(dir.path()).len(), 1, "only the segment being written stays");
        let pos = std::fs::read(dir.path().join(POSITION_FILE)).unwrap();
        assert_eq!(parse_position(&pos), Some(600));
        drop(spool);
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        assert!(drain(&spool).is_empty());
        append_range(&spool, 600..601);
        let batch = spool.next_batch(10, 1 << 20, Duration::ZERO);
        assert_eq!(batch.iter().map(|r| r.number).collect::<Vec<_>>(), [600]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_counted_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        append_range(&spool, 0..10);
        spool.sync_all();
        drop(spool);
        let seg = segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        // Half of the last record made it to disk.
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        let st = spool.stats();
        assert_eq!(st.dropped(DropReason::Corrupt), 1);
        assert_eq!(st.corrupt_bytes, RECORD_HEADER + payload(0).len() as u64 - 5);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - (RECORD_HEADER + payload(0).len() as u64));
        assert_eq!(drain(&spool), (0..9).map(payload).collect::<Vec<_>>());
        // Numbering goes on after the cut record's number is lost, never reused wrongly.
        append_range(&spool, 100..101);
        assert_eq!(spool.next_batch(1, 1 << 20, Duration::ZERO)[0].number, 9);
    }

    #[test]
    fn a_crc_mismatch_cuts_the_segment_there_and_counts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        append_range(&spool, 0..400);
        spool.sync_all();
        drop(spool);
        let files = segment_files(dir.path());
        assert!(files.len() >= 3, "{files:?}");
        // Flip a payload byte of the 11th record of the first segment.
        let rec = RECORD_HEADER + payload(0).len() as u64;
        let at = SEGMENT_HEADER + 10 * rec + RECORD_HEADER + 2;
        let f = OpenOptions::new().read(true).write(true).open(&files[0]).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        let second_first: u64 = files[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        let st = spool.stats();
        assert_eq!(st.dropped(DropReason::Corrupt), second_first - 10, "exactly the records after the bad one");
        let got = drain(&spool);
        let expected: Vec<Vec<u8>> = (0..10).chain(second_first..400).map(payload).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_bit_flip_found_while_reading_skips_the_rest_of_that_segment() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        append_range(&spool, 0..400);
        let files = segment_files(dir.path());
        let rec = RECORD_HEADER + payload(0).len() as u64;
        let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
        f.write_all_at(b"X", SEGMENT_HEADER + 3 * rec + RECORD_HEADER).unwrap();
        let second_first: u64 = files[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let got = drain(&spool);
        let expected: Vec<Vec<u8>> = (0..3).chain(second_first..400).map(payload).collect();
        assert_eq!(got, expected);
        assert_eq!(spool.stats().dropped(DropReason::Corrupt), second_first - 3);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_undelivered_and_counts_them_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        // Delivery took the first 5 and is still sending them (destination down).
        append_range(&spool, 0..5);
        let inflight = spool.next_batch(5, 1 << 20, Duration::ZERO);
        append_range(&spool, 5..5000);
        let st = spool.stats();
        assert!(st.disk_bytes <= 64 << 10, "{st:?}");
        let dropped = st.dropped(DropReason::Full);
        assert!(dropped > 0);
        // In-flight records are not counted: they are still delivered from memory.
        spool.acknowledge(inflight.last().unwrap());
        let rest = drain(&spool);
        assert_eq!(5 + rest.len() as u64 + dropped, 5000, "every record delivered or counted");
        // What is left is the newest, in order, without holes.
        let first_left = 5000 - rest.len() as u64;
        assert_eq!(rest, (first_left..5000).map(payload).collect::<Vec<_>>());
    }

    #[test]
    fn max_age_expires_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), 64 << 10);
        s.max_age = Some(Duration::from_millis(50));
        let spool = Spool::open(s);
        append_range(&spool, 0..300);
        std::thread::sleep(Duration::from_millis(80));
        append_range(&spool, 300..301);
        spool.expire();
        let st = spool.stats();
        let expired = st.dropped(DropReason::Expired);
        assert!(expired > 0 && expired <= 300, "{st:?}");
        assert_eq!(drain(&spool).len() as u64 + expired, 301);
    }

    #[test]
    fn an_unwritable_spool_counts_its_losses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("spool");
        // A file where the directory should be: nothing can be created under it.
        std::fs::write(&blocker, b"not a directory").unwrap();
        let mut s = settings(&blocker, 1 << 20);
        s.dir = blocker.join("kafka");
        let spool = Spool::open(s);
        assert_eq!(spool.append(&[payload(0), payload(1)]), 0);
        let st = spool.stats();
        assert_eq!(st.dropped(DropReason::Unwritable), 2);
        assert!(st.error.as_ref().is_some_and(|(m, _)| m.contains("spool directory")), "{st:?}");
        std::fs::remove_file(&blocker).unwrap();
        // Retried after RETRY_OPEN.
        {
            let mut state = spool.lock();
            state.next_open_attempt = Instant::now();
        }
        assert_eq!(spool.append(&[payload(2)]), 1);
        assert!(spool.stats().error.is_none());
        assert_eq!(drain(&spool), vec![payload(2)]);
    }

    #[test]
    fn a_corrupt_position_file_means_sending_everything_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        append_range(&spool, 0..3);
        drain(&spool);
        spool.sync_all();
        drop(spool);
        std::fs::write(dir.path().join(POSITION_FILE), b"garbage").unwrap();
        let spool = Spool::open(settings(dir.path(), 1 << 20));
        // Duplicates, never losses.
        assert_eq!(drain(&spool), (0..3).map(payload).collect::<Vec<_>>());
    }

    #[test]
    fn a_segment_with_a_bad_header_is_removed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        append_range(&spool, 0..400);
        spool.sync_all();
        drop(spool);
        let files = segment_files(dir.path());
        std::fs::write(&files[0], b"MWSPOOL9 not ours").unwrap();
        let second_first: u64 = files[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let spool = Spool::open(settings(dir.path(), 64 << 10));
        assert_eq!(spool.stats().dropped(DropReason::Corrupt), second_first);
        assert_eq!(drain(&spool).len() as u64, 400 - second_first);
    }

    #[test]
    fn next_batch_waits_for_records_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let spool = std::sync::Arc::new(Spool::open(settings(dir.path(), 1 << 20)));
        assert!(spool.next_batch(1, 1 << 20, Duration::from_millis(20)).is_empty());
        let writer = spool.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            writer.append(&[payload(7)]);
        });
        let batch = spool.next_batch(1, 1 << 20, Duration::from_secs(10));
        assert_eq!(batch[0].payload, payload(7));
        t.join().unwrap();
    }
}
