//! NumPy `.npy` header reader (the `.npz` container is a zip handled by `zipfile`).
//!
//! The header is a Python dict literal that NumPy reads with `ast.literal_eval`; a small
//! literal reader (strings with their prefixes, escapes and implicit concatenation, numbers,
//! booleans, `None`, tuples, lists, dicts) is enough and evaluates nothing. An array whose
//! dtype holds Python objects is stored as a pickle after the header —
//! `numpy.load(allow_pickle=True)` unpickles it — so that payload is walked like any other
//! pickle. A dtype this reader cannot prove free of objects (an unparsable header, a dtype
//! spelling it does not know) gets its data walked too, and reported when the walk shows a
//! pickle: NumPy may understand what this reader does not.

use std::io::Read;

use crate::{
    formats::{Ctx, Parsed, malformed},
    io::{PResult, ParseError, Reader, clean_text},
    pyint::py_int,
    report::{Format, Severity, codes},
};

/// Header text parsed at most; NumPy reads any length when pickles are allowed, so a longer
/// header is read through and its data treated as possibly holding objects.
const MAX_HEADER: u64 = 1 << 20;
const MAX_NESTING: u32 = 32;

/// Whether an array's data may be a pickle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    /// A plain numeric or string dtype: raw bytes.
    No,
    /// The dtype holds Python objects: the data is a pickle.
    Yes,
    /// The dtype could not be told (unparsable, or a spelling this reader does not know).
    Maybe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// `descr` as written (`<f4`, or the repr of a structured dtype).
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    pub objects: Objects,
}

/// The magic, version and header text, read up to the array data.
pub struct RawHeader {
    pub version: u8,
    /// `None` when longer than [`MAX_HEADER`] (read through, not kept).
    text: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    /// A string this reader could not decode exactly (an escape it does not know).
    OpaqueStr,
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
        loop {
            match self.s.get(self.i) {
                Some(c) if c.is_ascii_whitespace() => self.i += 1,
                // A comment, or a backslash continuation line.
                Some(b'#') => {
                    while self.s.get(self.i).is_some_and(|c| *c != b'\n') {
                        self.i += 1;
                    }
                }
                Some(b'\\') if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                _ => return,
            }
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

    /// The length of a string prefix (`u`, `b`, `r`, `rb`, `br`, any case) at the cursor that
    /// is followed by a quote, and whether it makes the string raw.
    fn string_prefix(&self) -> Option<(usize, bool)> {
        let rest = &self.s[self.i..];
        let n = rest.iter().take(2).take_while(|c| matches!(c.to_ascii_lowercase(), b'u' | b'b' | b'r')).count();
        for len in (0..=n).rev() {
            let p: Vec<u8> = rest[..len].iter().map(u8::to_ascii_lowercase).collect();
            let ok = matches!(&p[..], b"" | b"u" | b"b" | b"r" | b"rb" | b"br");
            if ok && matches!(rest.get(len), Some(b'\'' | b'"')) {
                return Some((len, p.contains(&b'r')));
            }
        }
        None
    }

    /// One string literal at the cursor (prefix included); `None` for an escape not decoded.
    fn string(&mut self, prefix: usize, raw: bool) -> PResult<Option<String>> {
        self.i += prefix;
        let q = self.s[self.i];
        let triple = self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new();
        let mut exact = true;
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(ParseError::invalid("unterminated string in npy header"));
            };
            if c == q && (!triple || self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..])) {
                self.i += if triple { 3 } else { 1 };
                break;
            }
            if c == b'\n' && !triple {
                return Err(ParseError::invalid("newline in a string in npy header"));
            }
            self.i += 1;
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = self.s.get(self.i) else { continue };
            self.i += 1;
            if raw {
                out.extend_from_slice(&[b'\\', e]);
                continue;
            }
            let hex = |p: &mut Self, n: usize| -> Option<u32> {
                let h = std::str::from_utf8(p.s.get(p.i..p.i + n)?).ok()?;
                let v = u32::from_str_radix(h, 16).ok()?;
                p.i += n;
                Some(v)
            };
            let ch = match e {
                b'\n' => None,
                b'\\' | b'\'' | b'"' => Some(u32::from(e)),
                b'a' => Some(7),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(10),
                b'r' => Some(13),
                b't' => Some(9),
                b'v' => Some(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.s.get(self.i) {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    Some(v)
                }
                b'x' => Some(hex(self, 2).ok_or_else(|| ParseError::invalid("bad \\x escape in npy header"))?),
                b'u' => Some(hex(self, 4).ok_or_else(|| ParseError::invalid("bad \\u escape in npy header"))?),
                b'U' => Some(hex(self, 8).ok_or_else(|| ParseError::invalid("bad \\U escape in npy header"))?),
                // \N{name} and friends: not decoded here.
                _ => {
                    exact = exact && e != b'N';
                    out.extend_from_slice(&[b'\\', e]);
                    None
                }
            };
            if let Some(ch) = ch {
                let mut b = [0u8; 4];
                out.extend_from_slice(char::from_u32(ch).unwrap_or('\u{fffd}').encode_utf8(&mut b).as_bytes());
            }
        }
        Ok(exact.then(|| String::from_utf8_lossy(&out).into_owned()))
    }

    fn value(&mut self, depth: u32) -> PResult<Lit> {
        if depth > MAX_NESTING {
            return Err(ParseError::limit("npy header nesting", u64::from(MAX_NESTING)));
        }
        self.ws();
        if let Some(first) = self.string_prefix() {
            // Adjacent literals are one string, as in Python source.
            let mut s = Some(String::new());
            let mut next = Some(first);
            while let Some((prefix, raw)) = next {
                let part = self.string(prefix, raw)?;
                s = s.zip(part).map(|(a, b)| a + &b);
                self.ws();
                next = self.string_prefix();
            }
            return Ok(s.map_or(Lit::OpaqueStr, Lit::Str));
        }
        match self.peek() {
            Some(open @ (b'(' | b'[')) => {
                self.i += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut comma = false;
                loop {
                    if self.eat(close) {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if self.eat(b',') {
                        comma = true;
                        continue;
                    }
                    if self.eat(close) {
                        break;
                    }
                    return Err(ParseError::invalid("bad sequence in npy header"));
                }
                // `(x)` is x itself, not a tuple.
                if open == b'(' && items.len() == 1 && !comma {
                    return Ok(items.remove(0));
                }
                Ok(Lit::Seq(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(Lit::Dict(items));
                    }
                    let Lit::Str(k) = self.value(depth + 1)? else {
                        return Err(ParseError::invalid("npy header key is not a plain string"));
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
                    w => int_literal(w).map(Lit::Int).ok_or_else(|| {
                        ParseError::invalid(format!("unexpected `{}` in npy header", clean_text(w, 32)))
                    }),
                }
            }
            _ => Err(ParseError::invalid("unexpected character in npy header")),
        }
    }
}

/// A non-negative integer literal: decimal, `0x`/`0o`/`0b`, underscores, a Python 2 `L`.
fn int_literal(w: &[u8]) -> Option<u64> {
    let w = w.strip_suffix(b"L").or_else(|| w.strip_suffix(b"l")).unwrap_or(w);
    // Base 0 reads the prefixes; base 10 the decimals with leading zeros that base 0 refuses.
    u64::try_from(py_int(w, 0).or_else(|| py_int(w, 10))?).ok()
}

/// Type names NumPy maps to plain (object-free) dtypes.
const PLAIN_NAMES: &[&str] = &[
    "bool",
    "bool_",
    "bool8",
    "byte",
    "ubyte",
    "short",
    "ushort",
    "intc",
    "uintc",
    "int_",
    "uint",
    "intp",
    "uintp",
    "long",
    "ulong",
    "longlong",
    "ulonglong",
    "half",
    "single",
    "double",
    "float",
    "longdouble",
    "longfloat",
    "csingle",
    "cdouble",
    "clongdouble",
    "complex",
    "int",
    "bytes",
    "bytes_",
    "str",
    "str_",
    "unicode",
    "void",
    "datetime64",
    "timedelta64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "float128",
    "complex64",
    "complex128",
    "complex256",
];

/// What one dtype string says about objects: `i4`, `|O`, `object`, `(2,3)f8`, `i4,O`.
fn dtype_str_objects(s: &str) -> Objects {
    // Comma-separated fields, split outside the parentheses of subarray shapes.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    combine(parts.into_iter().map(|p| {
        // A leading subarray shape (`(2,3)f8`, `3i4`) does not change the element type.
        let p = p.trim();
        let p = match p.strip_prefix('(') {
            Some(rest) => rest.split_once(')').map_or("", |(_, t)| t),
            None => p.trim_start_matches(|c: char| c.is_ascii_digit()),
        };
        let t = p.strip_prefix(['<', '>', '|', '=']).unwrap_or(p);
        if t.starts_with("object") || t.strip_prefix('O').is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            return Objects::Yes;
        }
        let (kind, rest) = t.split_at_checked(1).unwrap_or(("", ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        let sized = matches!(kind, "b" | "i" | "u" | "f" | "c" | "S" | "U" | "V" | "a") && digits(rest);
        let time = matches!(kind, "M" | "m")
            && (rest.is_empty() || rest == "8" || rest.strip_prefix("8[").is_some_and(|u| u.ends_with(']')));
        let code = t.len() == 1 && "?bBhHiIlLqQpPefdgFDGSUVa".contains(t);
        if !t.is_empty() && (sized || time || code || PLAIN_NAMES.contains(&t)) { Objects::No } else { Objects::Maybe }
    }))
}

/// Objects anywhere make the whole dtype hold objects; it is plain only if every part is.
fn combine(parts: impl IntoIterator<Item = Objects>) -> Objects {
    let mut all_plain = true;
    let mut any = false;
    for p in parts {
        any = true;
        match p {
            Objects::Yes => return Objects::Yes,
            Objects::Maybe => all_plain = false,
            Objects::No => {}
        }
    }
    if any && all_plain { Objects::No } else { Objects::Maybe }
}

/// What a `descr` says about objects: a dtype string, a `(dtype, shape)` tuple, or a list of
/// `(name, dtype[, shape])` fields.
fn objects(l: &Lit) -> Objects {
    let shape =
        |l: &Lit| matches!(l, Lit::Int(_)) || matches!(l, Lit::Seq(v) if v.iter().all(|x| matches!(x, Lit::Int(_))));
    match l {
        Lit::Str(s) => dtype_str_objects(s),
        Lit::Seq(v) if v.len() == 2 && shape(&v[1]) && !matches!(v[0], Lit::Seq(_)) => objects(&v[0]),
        Lit::Seq(fields) => combine(fields.iter().map(|f| match f {
            Lit::Seq(x) if (2..=3).contains(&x.len()) && (x.len() == 2 || shape(&x[2])) => objects(&x[1]),
            _ => Objects::Maybe,
        })),
        _ => Objects::Maybe,
    }
}

fn repr(l: &Lit) -> String {
    match l {
        Lit::Str(s) => s.clone(),
        Lit::OpaqueStr => "<string>".into(),
        Lit::Int(i) => i.to_string(),
        Lit::Bool(b) => b.to_string(),
        Lit::None => "None".into(),
        Lit::Seq(v) => format!("[{}]", v.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Lit::Dict(v) => {
            format!("{{{}}}", v.iter().map(|(k, x)| format!("{k}: {}", repr(x))).collect::<Vec<_>>().join(", "))
        }
    }
}

/// Reads the magic, version and header from the start of `r`, leaving `r` at the array data.
pub fn read_raw(r: &mut dyn Read) -> PResult<RawHeader> {
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
        let skipped = std::io::copy(&mut Read::take(&mut *r, hlen), &mut std::io::sink())?;
        if skipped < hlen {
            return Err(ParseError::Truncated(format!("npy header of {hlen} bytes")));
        }
        return Ok(RawHeader { version, text: None });
    }
    let mut h = Vec::new();
    Read::take(&mut *r, hlen).read_to_end(&mut h)?;
    if (h.len() as u64) < hlen {
        return Err(ParseError::Truncated(format!("npy header of {hlen} bytes")));
    }
    Ok(RawHeader { version, text: Some(h) })
}

/// Parses the header dict.
pub fn parse_header(raw: &RawHeader) -> PResult<NpyHeader> {
    let Some(h) = &raw.text else {
        return Err(ParseError::limit("npy header", MAX_HEADER));
    };
    let mut p = P { s: h, i: 0 };
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
    Ok(NpyHeader { descr: clean_text(repr(descr).as_bytes(), 256), fortran_order, shape, objects: objects(descr) })
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

/// Walks array data that may be a pickle: always when the dtype holds objects, and when it
/// could not be told, recorded only if the walk shows a pickle.
pub fn scan_data(ctx: &mut Ctx<'_>, label: &str, objects: Objects, r: &mut dyn Read) {
    match objects {
        Objects::No => {}
        Objects::Yes => {
            ctx.scan_pickle(label, r);
        }
        Objects::Maybe => {
            ctx.sniff_pickle(label, r);
        }
    }
}

pub fn parse_npy(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let raw = read_raw(r)?;
    let mut p = Parsed::new(Format::Numpy, Some("npy"));
    p.metadata.format_version = Some(raw.version.into());
    let objects = match parse_header(&raw) {
        Ok(h) => {
            p.metadata.dtypes = vec![h.descr.clone()];
            p.metadata.shape = h.shape.clone();
            p.metadata.tensor_count = Some(1);
            p.metadata.parameter_count = h.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
            if h.objects == Objects::No
                && let (Some(n), Some(size)) = (p.metadata.parameter_count, item_size(&h.descr))
                && let Some(need) = n.checked_mul(size)
                && need > r.remaining()
            {
                ctx.finding(
                    Severity::Medium,
                    codes::MALFORMED,
                    format!("array needs {need} data bytes, the file has {} (truncated?)", r.remaining()),
                );
            }
            h.objects
        }
        Err(e) => {
            malformed(ctx, Format::Numpy, &e);
            Objects::Maybe
        }
    };
    scan_data(ctx, "<object array data>", objects, r);
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

    fn parse(dict: &str) -> PResult<NpyHeader> {
        parse_header(&read_raw(&mut &header(dict)[..])?)
    }

    #[test]
    fn parses_plain_structured_and_object_headers() {
        let h = parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }\n").expect("header");
        assert_eq!((h.descr.as_str(), h.shape.as_slice(), h.objects), ("<f4", &[3u64, 4][..], Objects::No));
        let h =
            parse("{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': True, 'shape': (2,)}").expect("structured");
        assert!(h.objects == Objects::Yes && h.fortran_order);
        assert_eq!(h.shape, [2]);
        let h = parse("{'descr': '|O', 'fortran_order': False, 'shape': ()}").expect("object");
        assert!(h.objects == Objects::Yes && h.shape.is_empty());
        for bad in [
            "{'descr': '<f4'",
            "{'descr': '<f4', 'shape': (1,)}",
            "[1,2]",
            "{'descr': __import__('os')}",
            &"(".repeat(100),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integer_literals_in_every_spelling() {
        for (w, v) in [
            (&b"12"[..], Some(12)),
            (b"007", Some(7)),
            (b"00", Some(0)),
            (b"1_000", Some(1000)),
            (b"0x_1F", Some(31)),
            (b"0o17", Some(15)),
            (b"0B101", Some(5)),
            (b"10L", Some(10)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"0b2", None),
            (b"1__0", None),
            (b"1_", None),
            (b"0x", None),
            (b"1e5", None),
        ] {
            assert_eq!(int_literal(w), v, "{w:?}");
        }
    }

    #[test]
    fn object_dtypes_in_every_spelling() {
        for d in [
            "'object'",
            "'O8'",
            "'i4,O'",
            "'\\x4f'",
            "u'|O'",
            "b'|O'",
            "'|' 'O'",
            "('|O')",
            "\"\"\"|O\"\"\"",
            "[('a', ('O', (2,)))]",
            "('O', (3,))",
            "'(2,)O'",
        ] {
            let h = parse(&format!("{{'descr': {d}, 'fortran_order': False, 'shape': (1,)}}")).expect(d);
            assert_eq!(h.objects, Objects::Yes, "{d}");
        }
        for d in ["'<f8'", "'|b1'", "'<M8[ns]'", "'float32'", "[('x', '<i4'), ('y', '<f8', (2,))]", "'<U10'", "r'<i2'"]
        {
            let h = parse(&format!("{{'descr': {d}, 'fortran_order': False, 'shape': (1,)}}")).expect(d);
            assert_eq!(h.objects, Objects::No, "{d}");
        }
        for d in ["'i4,xyz'", "'\\N{LATIN CAPITAL LETTER O}'", "'mystery'"] {
            let h = parse(&format!("{{'descr': {d}, 'fortran_order': False, 'shape': (1,)}}")).expect(d);
            assert_eq!(h.objects, Objects::Maybe, "{d}");
        }
    }
}
