//! NumPy `.npy` header reader (the `.npz` container is a zip handled by `zipfile`).
//!
//! The header is a Python dict literal; a tiny literal reader (strings, booleans, integers,
//! tuples, lists) is enough and avoids evaluating anything. An array whose dtype holds Python
//! objects is stored as a pickle after the header — `numpy.load(allow_pickle=True)` unpickles
//! it — so that payload is walked like any other pickle.

use std::io::Read;

use crate::artifact::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader, clean_text},
    report::{Format, Severity, codes},
};

/// NumPy itself refuses headers above 10 000 bytes by default; structured dtypes can need
/// more, so allow some room while staying small.
const MAX_HEADER: u64 = 1 << 20;
const MAX_NESTING: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub version: u8,
    /// `descr` as written (`<f4`, or the repr of a structured dtype).
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// The dtype holds Python objects: the data is a pickle.
    pub has_object: bool,
    /// Bytes of magic + header.
    pub header_len: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(String, Lit)>),
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn value(&mut self, depth: u32) -> PResult<Lit> {
        if depth > MAX_NESTING {
            return Err(ParseError::limit("npy header nesting", MAX_NESTING as u64));
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while let Some(&c) = self.s.get(self.i) {
                    if c == q {
                        let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                        self.i += 1;
                        return Ok(Lit::Str(v));
                    }
                    if c == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                Err(ParseError::invalid("unterminated string in npy header"))
            }
            Some(open @ (b'(' | b'[')) => {
                self.i += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                loop {
                    if self.eat(close) {
                        return Ok(Lit::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.eat(b',') {
                        if self.eat(close) {
                            return Ok(Lit::Seq(items));
                        }
                        return Err(ParseError::invalid("bad sequence in npy header"));
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(Lit::Dict(items));
                    }
                    let Lit::Str(k) = self.value(depth + 1)? else {
                        return Err(ParseError::invalid("npy header key is not a string"));
                    };
                    if !self.eat(b':') {
                        return Err(ParseError::invalid("missing ':' in npy header"));
                    }
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    if !self.eat(b',') {
                        if self.eat(b'}') {
                            return Ok(Lit::Dict(items));
                        }
                        return Err(ParseError::invalid("bad dict in npy header"));
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                    self.i += 1;
                }
                let word = &self.s[start..self.i];
                match word {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    w => std::str::from_utf8(w)
                        .ok()
                        .map(|w| w.trim_end_matches('L'))
                        .and_then(|w| w.parse().ok())
                        .map(Lit::Int)
                        .ok_or_else(|| ParseError::invalid(format!("unexpected `{}` in npy header", clean_text(w, 32)))),
                }
            }
            _ => Err(ParseError::invalid("unexpected character in npy header")),
        }
    }
}

fn has_object(l: &Lit) -> bool {
    match l {
        Lit::Str(s) => s.trim_start_matches(['<', '>', '|', '=']).starts_with('O'),
        Lit::Seq(v) => v.iter().any(has_object),
        Lit::Dict(v) => v.iter().any(|(_, x)| has_object(x)),
        _ => false,
    }
}

fn repr(l: &Lit) -> String {
    match l {
        Lit::Str(s) => s.clone(),
        Lit::Int(i) => i.to_string(),
        Lit::Bool(b) => b.to_string(),
        Lit::None => "None".into(),
        Lit::Seq(v) => format!("[{}]", v.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Lit::Dict(v) => format!("{{{}}}", v.iter().map(|(k, x)| format!("{k}: {}", repr(x))).collect::<Vec<_>>().join(", ")),
    }
}

/// Reads the magic and header from the start of `r`, leaving `r` at the array data.
pub fn read_header(r: &mut dyn Read) -> PResult<NpyHeader> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| ParseError::Truncated("npy preamble".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(ParseError::invalid("no npy magic"));
    }
    let version = pre[6];
    let hlen: u64 = match version {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|_| ParseError::Truncated("npy header length".into()))?;
            u16::from_le_bytes(b).into()
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| ParseError::Truncated("npy header length".into()))?;
            u32::from_le_bytes(b).into()
        }
        v => return Err(ParseError::invalid(format!("unsupported npy version {v}"))),
    };
    if hlen > MAX_HEADER {
        return Err(ParseError::limit(format!("npy header of {hlen} bytes"), MAX_HEADER));
    }
    let mut h = Vec::new();
    Read::take(&mut *r, hlen).read_to_end(&mut h)?;
    if (h.len() as u64) < hlen {
        return Err(ParseError::Truncated(format!("npy header of {hlen} bytes")));
    }
    let mut p = P { s: &h, i: 0 };
    let Lit::Dict(items) = p.value(0)? else {
        return Err(ParseError::invalid("npy header is not a dict"));
    };
    let get = |k: &str| items.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = get("descr").ok_or_else(|| ParseError::invalid("npy header has no descr"))?;
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(ParseError::invalid("npy header has no fortran_order")),
    };
    let shape = match get("shape") {
        Some(Lit::Seq(v)) => v
            .iter()
            .map(|d| match d {
                Lit::Int(i) => Ok(*i),
                _ => Err(ParseError::invalid("npy shape holds a non-integer")),
            })
            .collect::<PResult<Vec<u64>>>()?,
        _ => return Err(ParseError::invalid("npy header has no shape")),
    };
    let pre_len = if version == 1 { 10 } else { 12 };
    Ok(NpyHeader {
        version,
        descr: clean_text(repr(descr).as_bytes(), 256),
        fortran_order,
        shape,
        has_object: has_object(descr),
        header_len: pre_len + hlen,
    })
}

/// Bytes per element of a simple dtype string (`<f4`, `|b1`, `<U10`, `|S3`); `None` when not
/// simple.
pub fn item_size(descr: &str) -> Option<u64> {
    let d = descr.trim_start_matches(['<', '>', '|', '=']);
    let (kind, n) = d.split_at_checked(1)?;
    let n: u64 = n.parse().ok()?;
    match kind {
        "b" | "i" | "u" | "f" | "c" | "S" | "V" | "M" | "m" => Some(n),
        "U" => n.checked_mul(4),
        _ => None,
    }
}

pub fn parse_npy(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let h = read_header(r)?;
    let mut p = Parsed::new(Format::Numpy, Some("npy"));
    p.metadata.format_version = Some(h.version.into());
    p.metadata.dtypes = vec![h.descr.clone()];
    p.metadata.shape = h.shape.clone();
    p.metadata.tensor_count = Some(1);
    p.metadata.parameter_count = h.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
    if h.has_object {
        ctx.scan_pickle("<object array data>", r);
    } else if let (Some(n), Some(size)) = (p.metadata.parameter_count, item_size(&h.descr))
        && let Some(need) = n.checked_mul(size)
        && need > r.remaining()
    {
        ctx.finding(
            Severity::Medium,
            codes::MALFORMED,
            format!("array needs {need} data bytes, the file has {} (truncated?)", r.remaining()),
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dict: &str) -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        v.extend_from_slice(dict.as_bytes());
        v
    }

    #[test]
    fn parses_plain_structured_and_object_headers() {
        let h = read_header(&mut &header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }\n")[..]).expect("header");
        assert_eq!((h.descr.as_str(), h.shape.as_slice(), h.has_object), ("<f4", &[3u64, 4][..], false));
        let h = read_header(&mut &header("{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': True, 'shape': (2,)}")[..]).expect("structured");
        assert!(h.has_object && h.fortran_order);
        assert_eq!(h.shape, [2]);
        let h = read_header(&mut &header("{'descr': '|O', 'fortran_order': False, 'shape': ()}")[..]).expect("object");
        assert!(h.has_object && h.shape.is_empty());
        for bad in ["{'descr': '<f4'", "{'descr': '<f4', 'shape': (1,)}", "[1,2]", "{'descr': __import__('os')}", &"(".repeat(100)] {
            assert!(read_header(&mut &header(bad)[..]).is_err(), "{bad}");
        }
    }
}
