//! Bounded, positioned reading of hostile files.
//!
//! Every format parser reads through [`Reader`], which knows the source's length, so a length
//! field that points past the end is an error before anything is allocated, and which buffers
//! itself so that skipping over tensor data is a cheap seek rather than a read. Parsers take a
//! `&mut dyn ReadSeek` so the same code runs on files and, in fuzzing, on byte slices.
//!
//! [`Deadline`] is the wall-time bound of one analysis: the reader checks it at every refill,
//! the pickle walker and the zip inflater every few dozen kilobytes, so a hostile file cannot
//! keep a worker busy past its budget, and a shutdown reaches a parser within milliseconds.

use std::{
    io::{self, Read, Seek, SeekFrom},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

/// Why an analysis was cut short before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Expired {
    #[error("the analysis time budget ({0} ms) ran out")]
    Time(u64),
    #[error("the analysis was stopped (the analyzer is shutting down)")]
    Stopped,
}

/// When an analysis must end: a wall-clock budget and, optionally, a flag its owner sets to
/// stop it (a shutdown). Clones share their state, so whichever reader or walker notices first,
/// [`Deadline::hit`] tells the whole analysis afterwards. Checking costs a clock read, so the
/// readers check every few dozen kilobytes, not every byte.
#[derive(Debug, Clone, Default)]
pub struct Deadline(Option<Arc<DeadlineState>>);

#[derive(Debug)]
struct DeadlineState {
    /// `None`: a budget too large for the clock, so only the stop flag ends it.
    at: Option<Instant>,
    budget_ms: u64,
    stop: Option<Arc<AtomicBool>>,
    /// 0: not hit; 1: time; 2: stopped.
    hit: AtomicU8,
}

impl Deadline {
    /// No bound at all (offline tools that want every byte, tests).
    pub fn never() -> Self {
        Self(None)
    }

    /// `budget` from now, or earlier when `stop` is set.
    pub fn after(budget: Duration, stop: Option<Arc<AtomicBool>>) -> Self {
        Self(Some(Arc::new(DeadlineState {
            at: Instant::now().checked_add(budget),
            budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            stop,
            hit: AtomicU8::new(0),
        })))
    }

    /// Fails once the budget is spent or the stop flag is set, and remembers it.
    pub fn check(&self) -> Result<(), Expired> {
        let Some(s) = &self.0 else { return Ok(()) };
        if let Some(e) = self.hit() {
            return Err(e);
        }
        let expired = if s.stop.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
            Expired::Stopped
        } else if s.at.is_some_and(|at| Instant::now() >= at) {
            Expired::Time(s.budget_ms)
        } else {
            return Ok(());
        };
        let code = if expired == Expired::Stopped { 2 } else { 1 };
        let _ = s.hit.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
        Err(self.hit().unwrap_or(expired))
    }

    /// Why the analysis was cut short, if a check failed.
    pub fn hit(&self) -> Option<Expired> {
        let s = self.0.as_ref()?;
        match s.hit.load(Ordering::Relaxed) {
            1 => Some(Expired::Time(s.budget_ms)),
            2 => Some(Expired::Stopped),
            _ => None,
        }
    }
}

/// How many bytes a streaming consumer (the pickle walker, the zip inflater) reads between two
/// checks of its [`Deadline`]: a clock read per 64 KiB is noise, and 64 KiB take well under a
/// millisecond to walk.
pub const DEADLINE_CHECK_BYTES: u64 = 64 * 1024;

/// Anything that can be read and seeked: a `File`, a `Cursor<&[u8]>`.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// Why a structured parse stopped.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} exceeds the limit of {limit}")]
    Limit { what: String, limit: u64 },
    #[error(transparent)]
    Expired(#[from] Expired),
}

impl ParseError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ParseError::Invalid(msg.into())
    }
    pub fn limit(what: impl Into<String>, limit: u64) -> Self {
        ParseError::Limit { what: what.into(), limit }
    }
    pub fn is_limit(&self) -> bool {
        matches!(self, ParseError::Limit { .. })
    }
}

pub type PResult<T> = Result<T, ParseError>;

const BUF: usize = 64 * 1024;

/// A buffered reader over a source of known length that tracks its position.
pub struct Reader<'a> {
    inner: &'a mut dyn ReadSeek,
    len: u64,
    /// File offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    /// Index into `buf` of the current position.
    cur: usize,
    pub big_endian: bool,
    /// Checked at every refill.
    deadline: Deadline,
}

impl<'a> Reader<'a> {
    /// `len` is the source's length; `inner` is rewound to offset 0. No deadline (see
    /// [`Reader::with_deadline`]).
    pub fn new(inner: &'a mut dyn ReadSeek, len: u64) -> PResult<Self> {
        inner.seek(SeekFrom::Start(0))?;
        Ok(Self { inner, len, buf_start: 0, buf: Vec::new(), cur: 0, big_endian: false, deadline: Deadline::never() })
    }

    /// Reading fails with [`ParseError::Expired`] once `deadline` has passed.
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pos(&self) -> u64 {
        self.buf_start + self.cur as u64
    }

    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos())
    }

    /// Moves to `off` (which may equal the length: the end).
    pub fn seek_to(&mut self, off: u64) -> PResult<()> {
        if off > self.len {
            return Err(ParseError::Truncated(format!("offset {off} is past the end ({})", self.len)));
        }
        let end = self.buf_start + self.buf.len() as u64;
        if off >= self.buf_start && off <= end {
            self.cur = (off - self.buf_start) as usize;
            return Ok(());
        }
        self.inner.seek(SeekFrom::Start(off))?;
        self.buf.clear();
        self.buf_start = off;
        self.cur = 0;
        Ok(())
    }

    pub fn skip(&mut self, n: u64) -> PResult<()> {
        let to = self.pos().checked_add(n).ok_or_else(|| ParseError::invalid("offset overflow"))?;
        self.seek_to(to)
    }

    /// Refills so that at least one byte is buffered, unless at the end.
    fn fill(&mut self) -> PResult<()> {
        if self.cur < self.buf.len() {
            return Ok(());
        }
        self.deadline.check()?;
        let pos = self.pos();
        if self.buf.len() as u64 + self.buf_start != pos {
            self.inner.seek(SeekFrom::Start(pos))?;
        }
        let want = (self.len - pos.min(self.len)).min(BUF as u64) as usize;
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self.inner.read(&mut self.buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.buf.truncate(got);
        self.buf_start = pos;
        self.cur = 0;
        Ok(())
    }

    /// Reads exactly `out.len()` bytes.
    pub fn read_into(&mut self, out: &mut [u8]) -> PResult<()> {
        if (out.len() as u64) > self.remaining() {
            return Err(ParseError::Truncated(format!(
                "need {} bytes at offset {}, {} left",
                out.len(),
                self.pos(),
                self.remaining()
            )));
        }
        let mut done = 0;
        while done < out.len() {
            self.fill()?;
            let avail = &self.buf[self.cur..];
            if avail.is_empty() {
                return Err(ParseError::Truncated(format!("source ended at offset {}", self.pos())));
            }
            let n = avail.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&avail[..n]);
            self.cur += n;
            done += n;
        }
        Ok(())
    }

    /// Reads `n` bytes into a new vector; `n` must not exceed `max` (named `what` in errors)
    /// nor what is left of the source.
    pub fn read_vec(&mut self, n: u64, max: u64, what: &str) -> PResult<Vec<u8>> {
        if n > max {
            return Err(ParseError::limit(format!("{what} of {n} bytes"), max));
        }
        if n > self.remaining() {
            return Err(ParseError::Truncated(format!("{what} of {n} bytes at offset {}", self.pos())));
        }
        let mut v = vec![0u8; n as usize];
        self.read_into(&mut v)?;
        Ok(v)
    }

    pub fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let mut a = [0u8; N];
        self.read_into(&mut a)?;
        Ok(a)
    }

    pub fn u8(&mut self) -> PResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> PResult<u16> {
        let a = self.array()?;
        Ok(if self.big_endian { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    pub fn u32(&mut self) -> PResult<u32> {
        let a = self.array()?;
        Ok(if self.big_endian { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    pub fn u64(&mut self) -> PResult<u64> {
        let a = self.array()?;
        Ok(if self.big_endian { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }

    /// Reads up to `n` bytes from the current position without failing at the end.
    pub fn peek_upto(&mut self, n: usize) -> PResult<Vec<u8>> {
        let start = self.pos();
        let take = (n as u64).min(self.remaining()) as usize;
        let mut v = vec![0u8; take];
        self.read_into(&mut v)?;
        self.seek_to(start)?;
        Ok(v)
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.fill().map_err(|e| match e {
            ParseError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        let avail = &self.buf[self.cur..];
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.cur += n;
        Ok(n)
    }
}

impl Seek for Reader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos().checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        // Seeking past the end is allowed by `Seek`; reads there simply return nothing.
        let clamped = target.min(self.len);
        self.seek_to(clamped).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(target)
    }
}

/// Reads all of `r` but at most `max` bytes; more is a limit error.
pub fn read_bounded(r: &mut dyn Read, max: u64, what: &str) -> PResult<Vec<u8>> {
    let mut out = Vec::new();
    r.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(ParseError::limit(what.to_owned(), max));
    }
    Ok(out)
}

/// A JSON value read for a string or an unsigned integer; any other value, containers
/// included, is skipped without building it (a hostile file can make it huge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonScalar {
    Str(String),
    U64(u64),
    Other,
}

impl<'de> serde::Deserialize<'de> for JsonScalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonScalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Str(s.to_owned()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::U64(n))
            }
            fn visit_i64<E>(self, _: i64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Other)
            }
            fn visit_unit<E>(self) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<JsonScalar, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<JsonScalar, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Lossy, length-bounded text for reporting strings that came from a file.
pub fn clean_text(bytes: &[u8], max_chars: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().filter(|c| !c.is_control() || *c == ' ').take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Whether `s` is 64 hex digits (a SHA-256).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reader_bounds_and_skips() {
        let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let mut c = Cursor::new(&data[..]);
        let mut r = Reader::new(&mut c, data.len() as u64).expect("reader");
        assert_eq!(r.u8().expect("u8"), 0);
        r.skip(99_999).expect("skip");
        assert_eq!(r.pos(), 100_000);
        assert_eq!(r.u8().expect("u8"), (100_000 % 256) as u8);
        assert!(matches!(r.read_vec(200_000, u64::MAX, "x"), Err(ParseError::Truncated(_))));
        assert!(matches!(r.read_vec(10, 5, "x"), Err(ParseError::Limit { .. })));
        assert!(r.seek_to(200_001).is_err());
        r.seek_to(3).expect("seek back");
        assert_eq!(r.u16().expect("u16"), u16::from_le_bytes([3, 4]));
        assert_eq!(r.peek_upto(3).expect("peek"), vec![5, 6, 7]);
        assert_eq!(r.pos(), 5);
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn deadlines_expire_by_time_or_stop_and_clones_share_the_verdict() {
        assert_eq!(Deadline::never().check(), Ok(()));
        let d = Deadline::after(Duration::ZERO, None);
        let clone = d.clone();
        assert_eq!(clone.hit(), None);
        assert_eq!(d.check(), Err(Expired::Time(0)));
        assert_eq!(clone.hit(), Some(Expired::Time(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let d = Deadline::after(Duration::MAX, Some(stop.clone()));
        assert_eq!(d.check(), Ok(()));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(d.check(), Err(Expired::Stopped));
        // The bounded reader fails at its next refill.
        let data = [0u8; 16];
        let mut c = Cursor::new(&data[..]);
        let mut r = Reader::new(&mut c, 16).expect("reader").with_deadline(Deadline::after(Duration::ZERO, None));
        assert!(matches!(r.u8(), Err(ParseError::Expired(Expired::Time(0)))));
    }
}
