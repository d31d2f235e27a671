//! The stack values the walker tells apart, and how opcode arguments decode into them. Only
//! what resolves an import (strings, globals) or sizes torch's raw records (small integers and
//! tuples) is kept; everything else is opaque, so memory stays bounded whatever the stream.

use std::rc::Rc;

use super::stream::{Stop, err};
use crate::pyint::{c_strtol, py_int};

/// Tuples are modelled up to this length and nesting (enough for torch's storage records).
const MAX_TUPLE_LEN: usize = 8;
const MAX_TUPLE_DEPTH: u32 = 3;

/// The stack values the walker tells apart.
#[derive(Debug, Clone)]
pub(super) enum V {
    Mark,
    Str(Rc<str>),
    /// A global; `module.name` when it was imported by name.
    Global(Option<Rc<str>>),
    Int(i128),
    /// A short tuple (see [`MAX_TUPLE_LEN`]); longer or deeper ones are `Other`.
    Tuple(Rc<[V]>),
    Other,
}

fn depth(v: &V) -> u32 {
    match v {
        V::Tuple(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn tuple(items: Vec<V>) -> V {
    // Bounded so that neither memory nor the recursive drop of nested tuples can grow.
    if items.len() > MAX_TUPLE_LEN || items.iter().any(|v| depth(v) >= MAX_TUPLE_DEPTH) {
        return V::Other;
    }
    V::Tuple(items.into())
}

/// The value of an `INT` line the way CPython's C unpickler reads it.
pub(super) fn int_line(line: &[u8]) -> Option<i128> {
    c_strtol(line).or_else(|| py_int(line, 0))
}

/// The value of a `LONG` line (`int(text, 0)` after dropping a trailing `L`).
pub(super) fn long_line(line: &[u8]) -> Option<i128> {
    py_int(line.strip_suffix(b"L").unwrap_or(line), 0)
}

pub(super) fn utf8_name(line: Vec<u8>) -> Result<String, Stop> {
    String::from_utf8(line).or_else(|_| err("GLOBAL argument is not UTF-8"))
}

/// Decodes the quoted `repr` argument of protocol-0 `STRING` well enough to recover a module
/// or attribute name (such names never need escapes, so escapes make the value opaque).
pub(super) fn quoted(line: &[u8]) -> Option<Rc<str>> {
    let s = std::str::from_utf8(line).ok()?;
    let inner = s
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))?;
    if inner.contains('\\') {
        return None;
    }
    Some(Rc::from(inner))
}

pub(super) fn string_value(bytes: Option<Vec<u8>>) -> V {
    match bytes.map(String::from_utf8) {
        Some(Ok(s)) => V::Str(Rc::from(s.as_str())),
        _ => V::Other,
    }
}

/// Little-endian two's-complement of LONG1/LONG4 (only small values are kept).
pub(super) fn long_le(bytes: &[u8]) -> V {
    if bytes.len() > 16 {
        return V::Other;
    }
    let mut v: i128 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= i128::from(*b) << (8 * i);
    }
    if let Some(last) = bytes.last()
        && last & 0x80 != 0
        && bytes.len() < 16
    {
        v -= 1i128 << (8 * bytes.len());
    }
    V::Int(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_long_lines_are_read_as_cpython_reads_them() {
        for (line, v) in [
            (&b"5"[..], Some(5)),
            (b" -0x1f ", Some(-31)),
            (b"010", Some(8)),
            (b"1_0", Some(10)),
            (b"0b101", Some(5)),
            (b"0o17", Some(15)),
            (b"00", Some(0)),
            (b"x", None),
            (b"1__0", None),
            (b"_1", None),
        ] {
            assert_eq!(int_line(line), v, "{line:?}");
        }
        assert_eq!(long_line(b"0x10L"), Some(16));
        assert_eq!(long_line(b"007L"), None);
        assert_eq!(long_line(b"0_0"), Some(0));
    }
}
