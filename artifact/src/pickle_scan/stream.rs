//! The walker's input: bytes read one at a time (so that a walk never reads past a `STOP`)
//! within a byte budget and before a deadline, with the argument readers for lengths and
//! protocol-0 lines. Long arguments are read through, not kept.

use std::io::Read;

use crate::io::{DEADLINE_CHECK_BYTES, Deadline, Expired};

/// Strings longer than this are not kept (a module or attribute name is never this long).
const MAX_KEPT_STRING: u64 = 4096;
/// Protocol-0 argument lines are kept up to this length; longer ones are read through.
pub(super) const MAX_LINE: usize = 64 * 1024;

pub(super) struct Src<'a> {
    r: &'a mut dyn Read,
    /// Bytes consumed so far.
    pos: u64,
    budget: u64,
    peeked: Option<u8>,
    deadline: &'a Deadline,
    /// `pos` at which the deadline is checked next.
    next_check: u64,
}

/// Why reading stopped: the input ended, the byte budget or the time ran out, or the stream is
/// invalid.
pub(super) enum Stop {
    Eof,
    Budget,
    Expired(Expired),
    Err(String),
}

impl<'a> Src<'a> {
    /// A source that stops at `budget` bytes or when `deadline` passes.
    pub(super) fn new(r: &'a mut dyn Read, budget: u64, deadline: &'a Deadline) -> Self {
        Self { r, pos: 0, budget, peeked: None, deadline, next_check: DEADLINE_CHECK_BYTES }
    }

    fn check_deadline(&mut self) -> Result<(), Stop> {
        self.next_check = self.pos.saturating_add(DEADLINE_CHECK_BYTES);
        self.deadline.check().map_err(Stop::Expired)
    }

    /// A read error; the reader below may have failed because the deadline passed (the
    /// bounded reader and the inflater check it too), which is then the reason.
    fn read_error(&self, e: &std::io::Error) -> Stop {
        match self.deadline.hit() {
            Some(x) => Stop::Expired(x),
            None => Stop::Err(format!("read error: {e}")),
        }
    }

    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    pub(super) fn byte(&mut self) -> Result<u8, Stop> {
        if let Some(b) = self.peeked.take() {
            self.pos += 1;
            return Ok(b);
        }
        if self.pos >= self.budget {
            return Err(Stop::Budget);
        }
        if self.pos >= self.next_check {
            self.check_deadline()?;
        }
        let mut b = [0u8; 1];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Err(Stop::Eof),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(b[0]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(&e)),
            }
        }
    }

    /// Whether another byte follows (without consuming it).
    pub(super) fn peek(&mut self) -> Result<Option<u8>, Stop> {
        if let Some(b) = self.peeked {
            return Ok(Some(b));
        }
        match self.byte() {
            Ok(b) => {
                self.pos -= 1;
                self.peeked = Some(b);
                Ok(Some(b))
            }
            Err(Stop::Eof) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn exact<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut a = [0u8; N];
        for x in &mut a {
            *x = self.truncated(Src::byte)?;
        }
        Ok(a)
    }

    pub(super) fn truncated<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Stop>) -> Result<T, Stop> {
        f(self).map_err(|e| match e {
            Stop::Eof => Stop::Err("stream truncated inside an opcode".into()),
            other => other,
        })
    }

    /// Reads `n` bytes, keeping them only if `n <= MAX_KEPT_STRING`.
    pub(super) fn data(&mut self, n: u64) -> Result<Option<Vec<u8>>, Stop> {
        if n > self.budget.saturating_sub(self.pos) {
            // The argument runs past the budget: the walk cannot continue past it.
            return Err(Stop::Budget);
        }
        if n <= MAX_KEPT_STRING {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(self.truncated(Src::byte)?);
            }
            return Ok(Some(v));
        }
        let mut left = n;
        if self.peeked.take().is_some() {
            self.pos += 1;
            left -= 1;
        }
        // Read through in pieces, each within the deadline: an argument can be gigabytes of a
        // zip entry that inflates as it is read.
        let mut scratch = [0u8; 8192];
        while left > 0 {
            if self.pos >= self.next_check {
                self.check_deadline()?;
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(scratch.len());
            match self.r.read(&mut scratch[..want]) {
                Ok(0) => return Err(Stop::Err("stream truncated inside a data argument".into())),
                Ok(got) => {
                    self.pos += got as u64;
                    left -= got as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(&e)),
            }
        }
        Ok(None)
    }

    /// A protocol-0 argument line without its newline; `None` when it is longer than
    /// [`MAX_LINE`] (read through, not kept).
    pub(super) fn line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let mut v = Vec::new();
        let mut long = false;
        loop {
            let b = self.truncated(Src::byte)?;
            if b == b'\n' {
                return Ok((!long).then_some(v));
            }
            if v.len() >= MAX_LINE {
                long = true;
                v.clear();
            }
            if !long {
                v.push(b);
            }
        }
    }
}

pub(super) fn err<T>(m: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Err(m.into()))
}
