//! A minimal protobuf wire-format reader for model headers (ONNX, Core ML, SavedModel): fields
//! walked in place ([`Pb`]), and the top-level fields of a whole file ([`top_fields`]), whose
//! shape is all that tells those formats apart (none has a magic number). Which shape is which
//! format is the formats' own business (their `shape` functions, tried by `formats::spec`).
//!
//! Written by hand rather than with `prost` because the messages hold the weights: decoding a
//! 2 GB `ModelProto` into memory to read its producer name is exactly what a sensor must not
//! do. This reader walks fields in place, seeks over the payloads it does not need, descends
//! into the few sub-messages that matter, and bounds the number of fields it visits.

use crate::io::{PResult, ParseError, Reader, clean_text};

/// Fields visited per parse, across all nesting levels.
pub const MAX_FIELDS: u64 = 20_000_000;
/// Top-level fields examined by [`top_fields`].
const MAX_TOP_FIELDS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Varint(u64),
    I64(u64),
    I32(u32),
    /// A length-delimited payload of this many bytes; the reader is at its first byte.
    Len(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire: Wire,
}

/// A walker over the fields of one message, ending at `end`.
pub struct Pb<'r, 'a> {
    pub r: &'r mut Reader<'a>,
    pub fields_left: u64,
}

impl<'r, 'a> Pb<'r, 'a> {
    pub fn new(r: &'r mut Reader<'a>) -> Self {
        Self { r, fields_left: MAX_FIELDS }
    }

    pub fn varint(&mut self) -> PResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.r.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ParseError::invalid("varint longer than 10 bytes"))
    }

    /// The next field of the message that ends at `end`, or `None` at its end. After a
    /// `Len` field the caller must consume exactly the payload (read, skip or descend).
    pub fn next(&mut self, end: u64) -> PResult<Option<Field>> {
        let pos = self.r.pos();
        if pos == end {
            return Ok(None);
        }
        if pos > end {
            return Err(ParseError::invalid("field runs past its message"));
        }
        if self.fields_left == 0 {
            return Err(ParseError::limit("protobuf fields", MAX_FIELDS));
        }
        self.fields_left -= 1;
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok().filter(|n| *n >= 1 && *n < (1 << 29));
        let Some(number) = number else {
            return Err(ParseError::invalid(format!("invalid field number in tag {tag}")));
        };
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::I64(self.r.u64()?),
            2 => {
                let n = self.varint()?;
                if n > end.saturating_sub(self.r.pos()) {
                    return Err(ParseError::Truncated(format!("field {number} of {n} bytes runs past its message")));
                }
                Wire::Len(n)
            }
            5 => Wire::I32(self.r.u32()?),
            w => return Err(ParseError::invalid(format!("unsupported wire type {w} (field {number})"))),
        };
        if self.r.pos() > end {
            return Err(ParseError::invalid("field runs past its message"));
        }
        Ok(Some(Field { number, wire }))
    }

    /// Skips the payload of `f` (a no-op for non-`Len` fields, already consumed).
    pub fn skip(&mut self, f: Field) -> PResult<()> {
        if let Wire::Len(n) = f.wire {
            self.r.skip(n)?;
        }
        Ok(())
    }

    /// Reads a string payload, keeping at most `max` characters (the rest is skipped).
    pub fn string(&mut self, n: u64, max: usize) -> PResult<String> {
        let keep = n.min(max as u64 * 4);
        let b = self.r.read_vec(keep, keep, "string")?;
        self.r.skip(n - keep)?;
        Ok(clean_text(&b, max))
    }

    /// Reads a `{1: key, 2: value}` string pair (ONNX `StringStringEntryProto`, Core ML
    /// metadata map entries) whose payload is `n` bytes long.
    pub fn string_entry(&mut self, n: u64, key_max: usize, value_max: usize) -> PResult<(String, String)> {
        let end = self.end_of(n);
        let (mut k, mut v) = (String::new(), String::new());
        while let Some(f) = self.next(end)? {
            match (f.number, f.wire) {
                (1, Wire::Len(n)) => k = self.string(n, key_max)?,
                (2, Wire::Len(n)) => v = self.string(n, value_max)?,
                _ => self.skip(f)?,
            }
        }
        Ok((k, v))
    }

    /// The end offset of a `Len` payload that starts at the current position.
    pub fn end_of(&self, n: u64) -> u64 {
        self.r.pos() + n
    }
}

/// The top-level fields of the whole input, in order: what tells the protobuf formats apart.
#[derive(Debug)]
pub struct TopFields {
    /// (field number, wire kind: 0 varint, 1 i64, 2 len, 5 i32) of each field. A field whose
    /// tag was read but whose payload runs past the end is included, so that a truncated file
    /// still shows its shape.
    pub fields: Vec<(u32, u8)>,
    /// The value of the first field 1 that is a varint.
    pub field1_varint: Option<u64>,
    /// The error that stopped the walk early, if any.
    pub error: Option<ParseError>,
}

impl TopFields {
    /// Whether every field satisfies `ok(number, wire kind)`.
    pub fn all(&self, ok: impl Fn(u32, u8) -> bool) -> bool {
        self.fields.iter().all(|&(n, k)| ok(n, k))
    }

    /// Whether field `n` is present.
    pub fn has(&self, n: u32) -> bool {
        self.fields.iter().any(|&(f, _)| f == n)
    }
}

/// Walks the top-level fields of `r` from its start (at most `MAX_TOP_FIELDS`), skipping
/// their payloads.
pub fn top_fields(r: &mut Reader<'_>) -> PResult<TopFields> {
    r.seek_to(0)?;
    let end = r.len();
    let mut pb = Pb::new(r);
    pb.fields_left = MAX_TOP_FIELDS;
    let mut out = Vec::new();
    let mut first = None;
    loop {
        let at = pb.r.pos();
        match pb.next(end) {
            Ok(None) => return Ok(TopFields { fields: out, field1_varint: first, error: None }),
            Ok(Some(f)) => {
                if let (1, Wire::Varint(v), None) = (f.number, f.wire, first) {
                    first = Some(v);
                }
                let kind = match f.wire {
                    Wire::Varint(_) => 0,
                    Wire::I64(_) => 1,
                    Wire::Len(_) => 2,
                    Wire::I32(_) => 5,
                };
                out.push((f.number, kind));
                pb.skip(f)?;
            }
            Err(e) => {
                // Re-read just the tag to learn which field was cut off.
                pb.r.seek_to(at)?;
                if let Ok(tag) = pb.varint()
                    && let Ok(n) = u32::try_from(tag >> 3)
                    && n >= 1
                    && matches!(tag & 7, 0 | 1 | 2 | 5)
                {
                    out.push((n, (tag & 7) as u8));
                }
                return Ok(TopFields { fields: out, field1_varint: first, error: Some(e) });
            }
        }
    }
}
