//! Static pickle analysis: walk the opcodes, never execute them.
//!
//! Written by hand because no Rust crate walks pickles without building Python objects (and
//! `serde-pickle` refuses the very opcodes an attacker uses). The walker models the unpickler's
//! stack and memo just closely enough to resolve what each `GLOBAL`, `INST` and `STACK_GLOBAL`
//! imports — including module and name strings that were memoised earlier and fetched with
//! `GET` — and records extension codes (`EXT1/2/4`), whose targets live in the loader's
//! `copyreg` registry and so cannot be known statically. Where CPython's C unpickler accepts an
//! argument the walker cannot interpret (an integer spelt `0x1f` or `1_0`, say), the value
//! becomes opaque and the walk goes on: the walker must never stop where the unpickler does
//! not, because whatever follows the stop is unseen.
//!
//! What a loader unpickles decides what must be walked. A plain stream is walked pickle after
//! pickle to its end (code that calls `pickle.load` in a loop runs them all), so bytes after
//! the last pickle that do not walk leave the judgement incomplete. The legacy `torch.save`
//! stream is exactly five pickles followed by raw storage bytes; the members of the legacy
//! torch tar interleave pickles with raw blocks whose lengths the walker computes the way
//! torch reads them. joblib reads raw array bytes straight after the `BUILD` of its array
//! wrapper, at a length only the pickled dtype tells, so a walk stops there, incomplete.
//!
//! The judgement prefers an allowlist: a global is `safe` only if it is one of the rebuild
//! helpers and types an ordinary PyTorch / NumPy / joblib checkpoint needs; known
//! code-execution globals are `malicious`; everything else is `suspicious`. Denylist-only
//! scanners are bypassed whenever someone finds a dangerous callable nobody listed; here such a
//! callable still makes the file `suspicious`. Imports hidden from static analysis (a
//! `STACK_GLOBAL` whose operands are not constant strings, extension codes) and attribute chains
//! through dunder attributes (`x.__globals__`) are `malicious`: no serialiser produces them. A
//! dotted name is an attribute path from its module (protocol 4 resolves it with `getattr`), so
//! the deny lists apply to every prefix of `module.name`, and a `module.*` allowance covers only
//! plain names, not paths that may lead out of the module through an imported one.
//!
//! Before judging, Python 2 spellings are mapped to Python 3 ones with the tables of CPython's
//! `_compat_pickle` (`NAME_MAPPING` first, then `IMPORT_MAPPING`), so `__builtin__.reduce` is
//! judged as `functools.reduce`. CPython applies them only below protocol 3; applying them
//! always can only make a judgement stricter.

use std::{
    collections::{HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher,
    io::Read,
    rc::Rc,
};

use crate::{io::Reader, report::Safety};

/// Strings longer than this are not kept (a module or attribute name is never this long).
const MAX_KEPT_STRING: u64 = 4096;
/// Protocol-0 argument lines are kept up to this length; longer ones are read through.
const MAX_LINE: usize = 64 * 1024;
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
/// Distinct imports listed per walk (and per artifact). Past it imports are still judged as
/// they are met, but only the malicious ones are listed (up to [`MAX_EXTRA_MALICIOUS`]).
pub const MAX_GLOBALS: usize = 10_000;
/// Bytes of module and name text the listed imports may hold together.
const MAX_GLOBALS_BYTES: usize = 4 << 20;
const MAX_EXTRA_MALICIOUS: usize = 64;
/// Distinct imports a walk tells apart; a stream with more is not walked further.
const MAX_DISTINCT: usize = 1 << 16;
/// Tuples are modelled up to this length and nesting (enough for torch's storage records).
const MAX_TUPLE_LEN: usize = 8;
const MAX_TUPLE_DEPTH: u32 = 3;

/// A global the unpickler imports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Import {
    /// Module and name are known strings.
    Named { module: String, name: String },
    /// `STACK_GLOBAL` whose operands were not constant strings.
    Dynamic,
    /// `EXT1/2/4` code resolved through the loader's `copyreg` extension registry.
    Extension(i64),
}

impl Import {
    /// `module.name`, or a placeholder for imports that cannot be resolved.
    pub fn display(&self) -> String {
        match self {
            Import::Named { module, name } => format!("{module}.{name}"),
            Import::Dynamic => "<dynamic STACK_GLOBAL>".to_owned(),
            Import::Extension(code) => format!("<extension code {code}>"),
        }
    }

    /// Whether the unpickler could import this at all: module and name are dotted Python
    /// identifiers (anything else fails to import, so running nothing). Hidden imports count.
    pub fn importable(&self) -> bool {
        match self {
            Import::Named { module, name } => identifier_path(module) && identifier_path(name),
            Import::Dynamic | Import::Extension(_) => true,
        }
    }

    fn text_len(&self) -> usize {
        match self {
            Import::Named { module, name } => module.len() + name.len(),
            _ => 0,
        }
    }
}

fn identifier_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            let mut c = p.chars();
            c.next().is_some_and(|f| f == '_' || f.is_alphabetic()) && c.all(|x| x == '_' || x.is_alphanumeric())
        })
}

/// What walking one stream found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// Distinct imports in first-seen order (bounded, see [`MAX_GLOBALS`]).
    pub imports: Vec<Import>,
    /// Distinct imports met past the listing bound: judged, but not listed unless malicious.
    pub imports_unlisted: u64,
    /// Pickles walked to their `STOP`.
    pub pickles: u32,
    /// The highest `PROTO` seen.
    pub protocol: Option<u8>,
    /// Bytes of opcodes consumed.
    pub bytes: u64,
    /// Why the walk stopped before the loader would have, when it did. Imports before that
    /// point are still reported: the unpickler would have run them before failing.
    pub error: Option<String>,
    /// The walk stopped at the byte budget.
    pub limited: bool,
    /// The first pickle's value is the legacy `torch.save` magic number.
    pub torch_legacy_magic: bool,
}

impl Walk {
    /// Whether everything the loader unpickles was walked and every import is listed.
    pub fn complete(&self) -> bool {
        self.error.is_none() && !self.limited && self.pickles > 0 && self.imports_unlisted == 0
    }

    /// Why the walk is not complete, for a finding (`budget` is the byte budget it had).
    pub fn incomplete_reason(&self, budget: u64) -> Option<String> {
        if self.limited {
            Some(format!("the pickle budget ({budget} bytes) ran out"))
        } else if let Some(e) = &self.error {
            Some(e.clone())
        } else if self.pickles == 0 {
            Some("no complete pickle".into())
        } else if self.imports_unlisted > 0 {
            Some(format!(
                "it imports more than {MAX_GLOBALS} distinct globals; the {} past that bound were judged but are not listed",
                self.imports_unlisted
            ))
        } else {
            None
        }
    }
}

/// The stack values the walker tells apart.
#[derive(Debug, Clone)]
enum V {
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

fn tuple(items: Vec<V>) -> V {
    // Bounded so that neither memory nor the recursive drop of nested tuples can grow.
    if items.len() > MAX_TUPLE_LEN || items.iter().any(|v| depth(v) >= MAX_TUPLE_DEPTH) {
        return V::Other;
    }
    V::Tuple(items.into())
}

struct Src<'a> {
    r: &'a mut dyn Read,
    pos: u64,
    budget: u64,
    peeked: Option<u8>,
}

enum Stop {
    Eof,
    Budget,
    Err(String),
}

impl Src<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        if let Some(b) = self.peeked.take() {
            self.pos += 1;
            return Ok(b);
        }
        if self.pos >= self.budget {
            return Err(Stop::Budget);
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
                Err(e) => return Err(Stop::Err(format!("read error: {e}"))),
            }
        }
    }

    /// Whether another byte follows (without consuming it).
    fn peek(&mut self) -> Result<Option<u8>, Stop> {
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

    fn exact<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut a = [0u8; N];
        for x in &mut a {
            *x = self.truncated(Src::byte)?;
        }
        Ok(a)
    }

    fn truncated<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Stop>) -> Result<T, Stop> {
        f(self).map_err(|e| match e {
            Stop::Eof => Stop::Err("stream truncated inside an opcode".into()),
            other => other,
        })
    }

    /// Reads `n` bytes, keeping them only if `n <= MAX_KEPT_STRING`.
    fn data(&mut self, n: u64) -> Result<Option<Vec<u8>>, Stop> {
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
        let copied = std::io::copy(&mut (&mut self.r).take(left), &mut std::io::sink())
            .map_err(|e| Stop::Err(format!("read error: {e}")))?;
        self.pos += copied;
        if copied < left {
            return Err(Stop::Err("stream truncated inside a data argument".into()));
        }
        Ok(None)
    }

    /// A protocol-0 argument line without its newline; `None` when it is longer than
    /// [`MAX_LINE`] (read through, not kept).
    fn line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
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

/// Everything but the input: the unpickler model and what was found so far.
struct Machine<'p> {
    policy: &'p PicklePolicy,
    stack: Vec<V>,
    memo: HashMap<u64, V>,
    out: Walk,
    /// Hashes (randomly keyed) of the distinct imports met.
    seen: HashSet<u64>,
    hasher: RandomState,
    listed_bytes: usize,
    extra_malicious: usize,
    /// joblib's array wrapper class was imported: its `BUILD` is followed by raw bytes.
    joblib_wrapper: bool,
}

fn err<T>(m: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Err(m.into()))
}

impl<'p> Machine<'p> {
    fn new(policy: &'p PicklePolicy) -> Self {
        Self {
            policy,
            stack: Vec::new(),
            memo: HashMap::new(),
            out: Walk::default(),
            seen: HashSet::new(),
            hasher: RandomState::new(),
            listed_bytes: 0,
            extra_malicious: 0,
            joblib_wrapper: false,
        }
    }

    fn push(&mut self, v: V) -> Result<(), Stop> {
        if self.stack.len() >= MAX_STACK {
            return err("stack deeper than the walker's bound");
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<V, Stop> {
        match self.stack.pop() {
            Some(V::Mark) => err("stack underflow (hit a MARK)"),
            Some(v) => Ok(v),
            None => err("stack underflow"),
        }
    }

    fn top(&self) -> Result<V, Stop> {
        match self.stack.last() {
            Some(V::Mark) | None => err("stack underflow"),
            Some(v) => Ok(v.clone()),
        }
    }

    /// Pops everything down to and including the last MARK; returns the items above it.
    fn pop_mark(&mut self) -> Result<Vec<V>, Stop> {
        let Some(i) = self.stack.iter().rposition(|v| matches!(v, V::Mark)) else {
            return err("no MARK on the stack");
        };
        let items = self.stack.split_off(i + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Records an import. Past the listing bounds it is judged at once, so that a denied
    /// global cannot hide behind thousands of harmless ones.
    fn import(&mut self, imp: Import) -> Result<(), Stop> {
        if let Import::Named { module, name } = &imp
            && module.ends_with("joblib.numpy_pickle")
            && matches!(name.as_str(), "NumpyArrayWrapper" | "NDArrayWrapper")
        {
            self.joblib_wrapper = true;
        }
        let h = self.hasher.hash_one(&imp);
        if self.seen.contains(&h) {
            return Ok(());
        }
        if self.seen.len() >= MAX_DISTINCT {
            self.unlisted(imp);
            return err(format!("more than {MAX_DISTINCT} distinct globals; the rest of the stream was not walked"));
        }
        self.seen.insert(h);
        if self.out.imports.len() < MAX_GLOBALS && self.listed_bytes + imp.text_len() <= MAX_GLOBALS_BYTES {
            self.listed_bytes += imp.text_len();
            self.out.imports.push(imp);
        } else {
            self.unlisted(imp);
        }
        Ok(())
    }

    fn unlisted(&mut self, imp: Import) {
        self.out.imports_unlisted += 1;
        if self.extra_malicious < MAX_EXTRA_MALICIOUS && self.policy.judge(&imp) == Safety::Malicious {
            self.extra_malicious += 1;
            self.out.imports.push(imp);
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), Stop> {
        let v = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return err("memo larger than the walker's bound");
        }
        // Only what resolves imports or torch's records matters; keep the memo small otherwise.
        let v = match v {
            V::Str(_) | V::Global(_) | V::Int(_) | V::Tuple(_) => v,
            _ => V::Other,
        };
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), Stop> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => err(format!("memo key {key} was never stored")),
        }
    }
}

/// An optional leading sign: whether it is `-`, and the rest.
fn sign(s: &[u8]) -> (bool, &[u8]) {
    match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    }
}

/// `PyLong_FromString` over ASCII: Python's `int(text, base)` for base 2 to 36, or 0 to take
/// the base from a `0x`/`0o`/`0b` prefix (then no leading zeros on a non-zero decimal).
/// Surrounding whitespace, a sign, the prefix of the base itself and single underscores between
/// digits are accepted. `None` when Python raises or the value does not fit an `i128`.
pub(crate) fn py_int(text: &[u8], base: u32) -> Option<i128> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = text.iter().position(|b| !space(b))?;
    let end = text.iter().rposition(|b| !space(b))? + 1;
    let mut s = &text[start..end];
    let negative;
    (negative, s) = sign(s);
    let mut radix = if base == 0 { 10 } else { base };
    let mut old_octal = false;
    if s.first() == Some(&b'0') {
        let prefix = match s.get(1).map(u8::to_ascii_lowercase) {
            Some(b'x') => Some(16),
            Some(b'o') => Some(8),
            Some(b'b') => Some(2),
            _ => None,
        };
        match prefix {
            Some(p) if base == 0 || base == p => {
                radix = p;
                s = &s[2..];
                // One underscore may follow the prefix.
                if s.first() == Some(&b'_') {
                    s = &s[1..];
                }
            }
            None if base == 0 => old_octal = true,
            _ => {}
        }
    }
    if s.is_empty() || s[0] == b'_' || s[s.len() - 1] == b'_' || s.windows(2).any(|w| w == b"__") {
        return None;
    }
    let mut v: i128 = 0;
    for &b in s.iter().filter(|b| **b != b'_') {
        v = v.checked_mul(i128::from(radix))?.checked_add(i128::from((b as char).to_digit(radix)?))?;
    }
    // `int("07", 0)` is an error; `int("00", 0)` is zero.
    if old_octal && v != 0 {
        return None;
    }
    Some(if negative { -v } else { v })
}

/// C `strtol(text, &end, 0)` that must consume the whole line, as CPython's `load_int` tries
/// before falling back to [`py_int`]: leading whitespace, a sign, `0x` hex, a leading `0` for
/// octal. `None` when it stops early or overflows a C `long`.
fn c_strtol(text: &[u8]) -> Option<i128> {
    let mut s = text;
    while let Some((b, rest)) = s.split_first()
        && matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
    {
        s = rest;
    }
    let negative;
    (negative, s) = sign(s);
    let radix = if s.len() > 2 && s[0] == b'0' && s[1].eq_ignore_ascii_case(&b'x') && s[2].is_ascii_hexdigit() {
        s = &s[2..];
        16
    } else if s.first() == Some(&b'0') {
        8
    } else {
        10
    };
    if s.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for &b in s {
        let d = (b as char).to_digit(radix)?;
        v = v * i128::from(radix) + i128::from(d);
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if negative { -v } else { v };
    i64::try_from(v).ok().map(i128::from)
}

/// The value of an `INT` line the way CPython's C unpickler reads it.
fn int_line(line: &[u8]) -> Option<i128> {
    c_strtol(line).or_else(|| py_int(line, 0))
}

/// The value of a `LONG` line (`int(text, 0)` after dropping a trailing `L`).
fn long_line(line: &[u8]) -> Option<i128> {
    py_int(line.strip_suffix(b"L").unwrap_or(line), 0)
}

fn utf8_name(line: Vec<u8>) -> Result<String, Stop> {
    String::from_utf8(line).or_else(|_| err("GLOBAL argument is not UTF-8"))
}

/// Decodes the quoted `repr` argument of protocol-0 `STRING` well enough to recover a module
/// or attribute name (such names never need escapes, so escapes make the value opaque).
fn quoted(line: &[u8]) -> Option<Rc<str>> {
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

fn string_value(bytes: Option<Vec<u8>>) -> V {
    match bytes.map(String::from_utf8) {
        Some(Ok(s)) => V::Str(Rc::from(s.as_str())),
        _ => V::Other,
    }
}

/// Little-endian two's-complement of LONG1/LONG4 (only small values are kept).
fn long_le(bytes: &[u8]) -> V {
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

/// The legacy `torch.save` magic number, pickled as the first value of the stream.
const TORCH_LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

enum Step {
    /// A pickle was walked to its STOP, which popped this value.
    Value(V),
    /// The input ended where a pickle would start.
    End,
    /// The walk stopped (recorded in the walk).
    Stopped,
}

impl Machine<'_> {
    /// Walks the next pickle of `src`.
    fn next_pickle(&mut self, src: &mut Src<'_>) -> Step {
        match src.peek() {
            Ok(None) => return Step::End,
            Err(stop) => {
                self.stopped(src, stop);
                return Step::Stopped;
            }
            Ok(Some(_)) => {}
        }
        // Every pickle.load starts with an empty stack and memo.
        self.stack.clear();
        self.memo.clear();
        match walk_one(src, self) {
            Ok(v) => {
                self.out.pickles = self.out.pickles.saturating_add(1);
                Step::Value(v)
            }
            Err(stop) => {
                self.stopped(src, stop);
                Step::Stopped
            }
        }
    }

    fn stopped(&mut self, src: &Src<'_>, stop: Stop) {
        let n = self.out.pickles + 1;
        match stop {
            Stop::Eof => self.out.error = Some(format!("pickle {n} ended before its STOP")),
            Stop::Budget => self.out.limited = true,
            Stop::Err(e) => self.out.error = Some(format!("pickle {n}: {e} (offset {})", src.pos)),
        }
    }
}

/// Walks every pickle in `r` (concatenated pickles, as legacy `torch.save` writes them and
/// as code that loads in a loop reads them), reading at most `budget` bytes. Imports past the
/// listing bound are judged with `policy`.
pub fn walk(r: &mut dyn Read, budget: u64, policy: &PicklePolicy) -> Walk {
    let mut src = Src { r, pos: 0, budget, peeked: None };
    let mut m = Machine::new(policy);
    match m.next_pickle(&mut src) {
        Step::Value(first) => {
            if matches!(first, V::Int(TORCH_LEGACY_MAGIC)) {
                m.out.torch_legacy_magic = true;
                // torch's _legacy_load unpickles four more (protocol version, sys_info, the
                // object, the storage keys) and then reads raw storage bytes, never unpickled.
                for _ in 1..5 {
                    if !matches!(m.next_pickle(&mut src), Step::Value(_)) {
                        break;
                    }
                }
            } else {
                while let Step::Value(_) = m.next_pickle(&mut src) {}
            }
        }
        Step::End => m.out.error = Some("empty stream".into()),
        Step::Stopped => {}
    }
    m.out.bytes = src.pos;
    m.out
}

/// The members of the legacy torch tar that interleave pickles with raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarMember {
    /// A count, then per storage a `(key, location, storage_type)` pickle and the storage
    /// bytes (an `int64` element count and the elements), then the storage views.
    Storages,
    /// A count, then per tensor a `(key, storage_id, type)` pickle and a fixed record: `int32`
    /// ndim, 4 padding bytes, ndim `int64` sizes and strides, an `int64` storage offset.
    Tensors,
}

/// Element sizes of the typed storage classes a legacy torch tar names.
fn storage_element_size(v: &V) -> Option<u64> {
    let V::Tuple(items) = v else { return None };
    let [_, _, V::Global(Some(class))] = &items[..] else { return None };
    Some(match class.strip_prefix("torch.")? {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Walks a `storages` or `tensors` member of the legacy torch tar, the data of which is
/// `r[r.pos()..end]`, reading exactly what torch's `legacy_load` reads: its pickles are walked
/// and its raw blocks skipped. Where the length of a raw block depends on something the walker
/// does not model, the walk stops incomplete.
pub fn walk_torch_tar_member(
    member: TarMember,
    r: &mut Reader<'_>,
    end: u64,
    budget: u64,
    policy: &PicklePolicy,
) -> Walk {
    let mut m = Machine::new(policy);
    let used = std::cell::Cell::new(0u64);
    let next = |m: &mut Machine<'_>, r: &mut Reader<'_>| -> Step {
        let left = end.saturating_sub(r.pos());
        let mut take = Read::take(&mut *r, left);
        let mut src = Src { r: &mut take, pos: 0, budget: budget.saturating_sub(used.get()), peeked: None };
        // The walker reads byte by byte and never past a STOP, so the reader ends up right
        // after the pickle (or where the walk stopped).
        let step = m.next_pickle(&mut src);
        used.set(used.get() + src.pos);
        step
    };
    let unmodelled = |m: &mut Machine<'_>, what: &str| {
        m.out.error = Some(format!("{what}: the walker cannot tell where the next pickle starts"));
    };
    let raw = |r: &mut Reader<'_>, n: u64| -> Option<Vec<u8>> {
        (end.saturating_sub(r.pos()) >= n).then(|| r.read_vec(n, n, "raw record").ok()).flatten()
    };
    let count = match next(&mut m, r) {
        Step::Value(V::Int(n)) => n,
        Step::Value(_) if r.pos() < end => {
            unmodelled(&mut m, "the record count is not an integer the walker knows");
            0
        }
        Step::End => {
            m.out.error = Some("empty member".into());
            0
        }
        // A count torch cannot iterate over ends the load, and so does a failed walk.
        Step::Value(_) | Step::Stopped => 0,
    };
    let mut done: i128 = 0;
    let mut finished = m.out.error.is_none() && !m.out.limited;
    while finished && done < count {
        done += 1;
        let args = match next(&mut m, r) {
            Step::Value(v) => v,
            // The walk stopped, or torch's load fails here and nothing after it runs.
            Step::End | Step::Stopped => {
                finished = false;
                break;
            }
        };
        if let V::Tuple(items) = &args
            && items.len() != 3
        {
            // The three-way unpacking raises.
            finished = false;
            break;
        }
        let skip = match member {
            TarMember::Storages => {
                let Some(size) = storage_element_size(&args) else {
                    unmodelled(&mut m, "a storage record does not name a typed storage class the walker knows");
                    finished = false;
                    break;
                };
                let Some(b) = raw(r, 8) else {
                    finished = false;
                    break;
                };
                let n = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                match u64::try_from(n).ok().and_then(|n| n.checked_mul(size)) {
                    Some(bytes) => bytes,
                    None => {
                        unmodelled(&mut m, &format!("a storage of {n} elements"));
                        finished = false;
                        break;
                    }
                }
            }
            TarMember::Tensors => {
                // A short read or a negative ndim makes torch's struct.unpack raise.
                let Some(ndim) = raw(r, 4).and_then(|b| u64::try_from(i32::from_le_bytes(b.try_into().ok()?)).ok())
                else {
                    finished = false;
                    break;
                };
                4 + 16 * ndim + 8
            }
        };
        // Raw data that runs past the member makes torch's read fail.
        if skip > end.saturating_sub(r.pos()) || r.skip(skip).is_err() {
            finished = false;
            break;
        }
    }
    if member == TarMember::Storages && finished {
        // The storage views follow the last storage.
        next(&mut m, r);
    }
    m.out.bytes = used.get();
    m.out
}

/// Walks one pickle to its STOP; returns the value STOP pops.
fn walk_one(src: &mut Src<'_>, m: &mut Machine<'_>) -> Result<V, Stop> {
    loop {
        let op = src.byte()?;
        match op {
            // --- control and stack ---
            b'.' => return m.pop(),
            b'(' => m.push(V::Mark)?,
            // POP on an empty frame pops the MARK itself, as CPython's pop_mark does.
            b'0' => {
                if m.stack.pop().is_none() {
                    return err("POP on an empty stack");
                }
            }
            b'1' => {
                m.pop_mark()?;
            }
            b'2' => {
                let v = m.top()?;
                m.push(v)?;
            }
            0x80 => {
                let v = src.truncated(Src::byte)?;
                if v > 5 {
                    return err(format!("unsupported protocol {v}"));
                }
                m.out.protocol = Some(m.out.protocol.map_or(v, |p| p.max(v)));
            }
            0x95 => {
                src.exact::<8>()?;
            }
            // --- scalars ---
            // Text arguments the walker cannot read (a float, a persistent id, a number in a
            // spelling it does not know) become opaque values: the unpickler goes on, so must
            // the walk.
            b'F' | b'P' => {
                src.line()?;
                m.push(V::Other)?;
            }
            b'I' | b'L' => {
                let v = src.line()?.and_then(|l| if op == b'I' { int_line(&l) } else { long_line(&l) });
                m.push(v.map_or(V::Other, V::Int))?;
            }
            b'J' => {
                let v = i32::from_le_bytes(src.exact()?);
                m.push(V::Int(i128::from(v)))?;
            }
            b'K' => {
                let v = src.exact::<1>()?[0];
                m.push(V::Int(i128::from(v)))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(src.exact()?);
                m.push(V::Int(i128::from(v)))?;
            }
            0x8a => {
                let n = u64::from(src.exact::<1>()?[0]);
                let d = src.data(n)?;
                m.push(d.map_or(V::Other, |d| long_le(&d)))?;
            }
            0x8b => {
                let n = i32::from_le_bytes(src.exact()?);
                if n < 0 {
                    return err("LONG4 with negative length");
                }
                let d = src.data(n as u64)?;
                m.push(d.map_or(V::Other, |d| long_le(&d)))?;
            }
            b'G' => {
                src.exact::<8>()?;
                m.push(V::Other)?;
            }
            b'N' | 0x88 | 0x89 => m.push(V::Other)?,
            // --- strings and bytes ---
            b'S' => {
                let v = src.line()?.and_then(|l| quoted(&l));
                m.push(v.map_or(V::Other, V::Str))?;
            }
            b'V' => {
                // raw-unicode-escape: a name with escapes is not a plain identifier anyway.
                let v = match src.line()?.map(String::from_utf8) {
                    Some(Ok(s)) if !s.contains('\\') => V::Str(Rc::from(s.as_str())),
                    _ => V::Other,
                };
                m.push(v)?;
            }
            // The C unpickler reads BINSTRING's length as unsigned.
            b'T' | b'X' => {
                let n = u64::from(u32::from_le_bytes(src.exact()?));
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            b'U' | 0x8c => {
                let n = u64::from(src.exact::<1>()?[0]);
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            0x8d => {
                let n = u64::from_le_bytes(src.exact()?);
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            b'B' => {
                let n = u64::from(u32::from_le_bytes(src.exact()?));
                src.data(n)?;
                m.push(V::Other)?;
            }
            b'C' => {
                let n = u64::from(src.exact::<1>()?[0]);
                src.data(n)?;
                m.push(V::Other)?;
            }
            0x8e | 0x96 => {
                let n = u64::from_le_bytes(src.exact()?);
                src.data(n)?;
                m.push(V::Other)?;
            }
            0x97 => m.push(V::Other)?,
            0x98 => {
                m.top()?;
            }
            // --- containers ---
            b']' | b'}' | 0x8f => m.push(V::Other)?,
            b')' => m.push(tuple(Vec::new()))?,
            b't' => {
                let items = m.pop_mark()?;
                m.push(tuple(items))?;
            }
            b'l' | b'd' | 0x91 => {
                m.pop_mark()?;
                m.push(V::Other)?;
            }
            b'a' => {
                m.pop()?;
                m.top()?;
            }
            b'e' | b'u' | 0x90 => {
                m.pop_mark()?;
                m.top()?;
            }
            b's' => {
                m.pop()?;
                m.pop()?;
                m.top()?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop()?);
                }
                items.reverse();
                m.push(tuple(items))?;
            }
            // --- memo ---
            b'g' => match src.line()?.and_then(|l| py_int(&l, 10)) {
                Some(k) => m.memo_get(u64::try_from(k).or_else(|_| err("negative memo key"))?)?,
                None => m.push(V::Other)?,
            },
            b'h' => {
                let k = u64::from(src.exact::<1>()?[0]);
                m.memo_get(k)?;
            }
            b'j' => {
                let k = u64::from(u32::from_le_bytes(src.exact()?));
                m.memo_get(k)?;
            }
            b'p' => {
                if let Some(k) = src.line()?.and_then(|l| py_int(&l, 10)) {
                    m.memo_put(u64::try_from(k).or_else(|_| err("negative memo key"))?)?;
                } else {
                    m.top()?;
                }
            }
            b'q' => {
                let k = u64::from(src.exact::<1>()?[0]);
                m.memo_put(k)?;
            }
            b'r' => {
                let k = u64::from(u32::from_le_bytes(src.exact()?));
                m.memo_put(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u64;
                m.memo_put(k)?;
            }
            // --- imports and calls ---
            b'c' | b'i' => {
                let (Some(module), Some(name)) = (src.line()?, src.line()?) else {
                    return err("GLOBAL argument line longer than the walker's bound");
                };
                let (module, name) = (utf8_name(module)?, utf8_name(name)?);
                let path = Rc::from(format!("{module}.{name}"));
                m.import(Import::Named { module, name })?;
                if op == b'c' {
                    m.push(V::Global(Some(path)))?;
                } else {
                    m.pop_mark()?;
                    m.push(V::Other)?;
                }
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                let path = match (module, name) {
                    (V::Str(module), V::Str(name)) => {
                        let path = Rc::from(format!("{module}.{name}"));
                        m.import(Import::Named { module: module.to_string(), name: name.to_string() })?;
                        Some(path)
                    }
                    // Values that are certainly not `str` make the unpickler fail here.
                    (V::Int(_) | V::Global(_) | V::Tuple(_), _) | (_, V::Int(_) | V::Global(_) | V::Tuple(_)) => {
                        return err("STACK_GLOBAL operands are not strings");
                    }
                    // The result of a call or a container: a string computed at load time.
                    _ => {
                        m.import(Import::Dynamic)?;
                        None
                    }
                };
                m.push(V::Global(path))?;
            }
            0x82..=0x84 => {
                let code = match op {
                    0x82 => i64::from(src.exact::<1>()?[0]),
                    0x83 => i64::from(u16::from_le_bytes(src.exact()?)),
                    _ => i64::from(i32::from_le_bytes(src.exact()?)),
                };
                m.import(Import::Extension(code))?;
                m.push(V::Global(None))?;
            }
            b'o' => {
                let items = m.pop_mark()?;
                if items.is_empty() {
                    return err("OBJ without a class");
                }
                m.push(V::Other)?;
            }
            b'R' | 0x81 => {
                m.pop()?;
                m.pop()?;
                m.push(V::Other)?;
            }
            0x92 => {
                m.pop()?;
                m.pop()?;
                m.pop()?;
                m.push(V::Other)?;
            }
            b'b' => {
                m.pop()?;
                m.top()?;
                if m.joblib_wrapper {
                    // joblib's unpickler reads the array bytes from the stream right here, at
                    // a length only the pickled dtype and shape tell.
                    return err(
                        "joblib reads raw array bytes after this BUILD of its array wrapper; the rest of the stream was not walked",
                    );
                }
            }
            b'Q' => {
                m.pop()?;
                m.push(V::Other)?;
            }
            other => return err(format!("invalid opcode 0x{other:02x}")),
        }
    }
}

/// Whether `head` starts with `PROTO 2..=5`, the opening of every modern pickle.
pub fn starts_with_proto(head: &[u8]) -> bool {
    matches!(head, [0x80, 2..=5, ..])
}

/// Whether a walk of content that is not known to be a pickle shows one: a complete pickle
/// stream, or any import the unpickler could perform (it would have run those, and whatever
/// they were called with, before failing).
pub fn walk_shows_pickle(w: &Walk) -> bool {
    w.complete() || w.imports.iter().any(Import::importable)
}

/// A `module.name` or `module.*` pattern from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalPattern {
    pub module: String,
    /// `None` matches every name in the module and its submodules.
    pub name: Option<String>,
}

impl GlobalPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((module, name)) = s.rsplit_once('.') else {
            return Err(format!("`{s}` is not `module.name` or `module.*`"));
        };
        let ident = |x: &str| {
            !x.is_empty() && x.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        };
        if !ident(module) || !(name == "*" || ident(name)) {
            return Err(format!("`{s}` is not `module.name` or `module.*`"));
        }
        Ok(Self { module: module.to_owned(), name: (name != "*").then(|| name.to_owned()) })
    }

    /// Deny: the pattern covers `path` (`module.name`) when `path` is the pattern's global,
    /// an attribute reached from it, or (for `module.*`) anything inside the module.
    fn denies(&self, path: &str) -> bool {
        match &self.name {
            Some(n) => in_module(path, &format!("{}.{n}", self.module)),
            None => in_module(path, &self.module),
        }
    }

    /// Allow: `module.name` must be the pattern's global exactly, or for `module.*` a plain
    /// (undotted) name in the module or a submodule: a dotted name may walk out of the module
    /// through a module it imported (`pkg.mod` + `os.system`).
    fn allows(&self, module: &str, name: &str) -> bool {
        match &self.name {
            Some(n) => format!("{module}.{name}") == format!("{}.{n}", self.module),
            None => !name.contains('.') && in_module(module, &self.module),
        }
    }
}

/// The allow/deny judgement, with the configured additions.
#[derive(Debug, Clone, Default)]
pub struct PicklePolicy {
    pub extra_allow: Vec<GlobalPattern>,
    pub extra_deny: Vec<GlobalPattern>,
}

impl PicklePolicy {
    /// Invalid patterns are skipped (the configuration validates them beforehand).
    pub fn new(allow: &[String], deny: &[String]) -> Self {
        let parse = |l: &[String]| l.iter().filter_map(|s| GlobalPattern::parse(s).ok()).collect();
        Self { extra_allow: parse(allow), extra_deny: parse(deny) }
    }

    /// Judges one import.
    pub fn judge(&self, import: &Import) -> Safety {
        let Import::Named { module, name } = import else {
            return Safety::Malicious;
        };
        let (module, name) = normalise(module, name);
        // Attribute chains through dunders reach module globals, builtins or subclasses.
        if name.contains('.') && name.split('.').any(|s| s.starts_with("__") && s.ends_with("__")) {
            return Safety::Malicious;
        }
        // A dotted name is a getattr path from the module: every prefix of it is judged.
        let path = format!("{module}.{name}");
        if self.extra_deny.iter().any(|p| p.denies(&path)) || is_denied(&path) {
            return Safety::Malicious;
        }
        if self.extra_allow.iter().any(|p| p.allows(&module, &name)) || is_allowed(&module, &name) {
            return Safety::Safe;
        }
        Safety::Suspicious
    }
}

/// A (module, name) pair.
type QualName = (&'static str, &'static str);

/// CPython's `_compat_pickle.NAME_MAPPING`: Python 2 (module, name) pairs renamed as a whole.
const NAME_MAPPING: &[(QualName, QualName)] = &[
    (("__builtin__", "xrange"), ("builtins", "range")),
    (("__builtin__", "reduce"), ("functools", "reduce")),
    (("__builtin__", "intern"), ("sys", "intern")),
    (("__builtin__", "unichr"), ("builtins", "chr")),
    (("__builtin__", "unicode"), ("builtins", "str")),
    (("__builtin__", "long"), ("builtins", "int")),
    (("__builtin__", "basestring"), ("builtins", "str")),
    (("itertools", "izip"), ("builtins", "zip")),
    (("itertools", "imap"), ("builtins", "map")),
    (("itertools", "ifilter"), ("builtins", "filter")),
    (("itertools", "ifilterfalse"), ("itertools", "filterfalse")),
    (("itertools", "izip_longest"), ("itertools", "zip_longest")),
    (("UserDict", "IterableUserDict"), ("collections", "UserDict")),
    (("UserDict", "UserDict"), ("collections", "UserDict")),
    (("UserList", "UserList"), ("collections", "UserList")),
    (("UserString", "UserString"), ("collections", "UserString")),
    (("whichdb", "whichdb"), ("dbm", "whichdb")),
    (("_socket", "fromfd"), ("socket", "fromfd")),
    (("socket", "_socketobject"), ("socket", "SocketType")),
    (("_multiprocessing", "Connection"), ("multiprocessing.connection", "Connection")),
    (("multiprocessing.process", "Process"), ("multiprocessing.context", "Process")),
    (("multiprocessing.forking", "Popen"), ("multiprocessing.popen_fork", "Popen")),
    (("urllib", "ContentTooShortError"), ("urllib.error", "ContentTooShortError")),
    (("urllib", "getproxies"), ("urllib.request", "getproxies")),
    (("urllib", "pathname2url"), ("urllib.request", "pathname2url")),
    (("urllib", "quote_plus"), ("urllib.parse", "quote_plus")),
    (("urllib", "quote"), ("urllib.parse", "quote")),
    (("urllib", "unquote_plus"), ("urllib.parse", "unquote_plus")),
    (("urllib", "unquote"), ("urllib.parse", "unquote")),
    (("urllib", "url2pathname"), ("urllib.request", "url2pathname")),
    (("urllib", "urlcleanup"), ("urllib.request", "urlcleanup")),
    (("urllib", "urlencode"), ("urllib.parse", "urlencode")),
    (("urllib", "urlopen"), ("urllib.request", "urlopen")),
    (("urllib", "urlretrieve"), ("urllib.request", "urlretrieve")),
    (("urllib2", "HTTPError"), ("urllib.error", "HTTPError")),
    (("urllib2", "URLError"), ("urllib.error", "URLError")),
    (("exceptions", "StandardError"), ("builtins", "Exception")),
    (("multiprocessing", "AuthenticationError"), ("multiprocessing.context", "AuthenticationError")),
    (("multiprocessing", "BufferTooShort"), ("multiprocessing.context", "BufferTooShort")),
    (("multiprocessing", "ProcessError"), ("multiprocessing.context", "ProcessError")),
    (("multiprocessing", "TimeoutError"), ("multiprocessing.context", "TimeoutError")),
];

/// CPython's `_compat_pickle.IMPORT_MAPPING` (with its non-mutual additions).
const IMPORT_MAPPING: &[(&str, &str)] = &[
    ("__builtin__", "builtins"),
    ("copy_reg", "copyreg"),
    ("Queue", "queue"),
    ("SocketServer", "socketserver"),
    ("ConfigParser", "configparser"),
    ("repr", "reprlib"),
    ("tkFileDialog", "tkinter.filedialog"),
    ("tkSimpleDialog", "tkinter.simpledialog"),
    ("tkColorChooser", "tkinter.colorchooser"),
    ("tkCommonDialog", "tkinter.commondialog"),
    ("Dialog", "tkinter.dialog"),
    ("Tkdnd", "tkinter.dnd"),
    ("tkFont", "tkinter.font"),
    ("tkMessageBox", "tkinter.messagebox"),
    ("ScrolledText", "tkinter.scrolledtext"),
    ("Tkconstants", "tkinter.constants"),
    ("Tix", "tkinter.tix"),
    ("ttk", "tkinter.ttk"),
    ("Tkinter", "tkinter"),
    ("markupbase", "_markupbase"),
    ("_winreg", "winreg"),
    ("thread", "_thread"),
    ("dummy_thread", "_dummy_thread"),
    ("dbhash", "dbm.bsd"),
    ("dumbdbm", "dbm.dumb"),
    ("dbm", "dbm.ndbm"),
    ("gdbm", "dbm.gnu"),
    ("xmlrpclib", "xmlrpc.client"),
    ("SimpleXMLRPCServer", "xmlrpc.server"),
    ("httplib", "http.client"),
    ("htmlentitydefs", "html.entities"),
    ("HTMLParser", "html.parser"),
    ("Cookie", "http.cookies"),
    ("cookielib", "http.cookiejar"),
    ("BaseHTTPServer", "http.server"),
    ("test.test_support", "test.support"),
    ("commands", "subprocess"),
    ("urlparse", "urllib.parse"),
    ("robotparser", "urllib.robotparser"),
    ("urllib2", "urllib.request"),
    ("anydbm", "dbm"),
    ("_abcoll", "collections.abc"),
    ("cPickle", "pickle"),
    ("_elementtree", "xml.etree.ElementTree"),
    ("FileDialog", "tkinter.filedialog"),
    ("SimpleDialog", "tkinter.simpledialog"),
    ("DocXMLRPCServer", "xmlrpc.server"),
    ("SimpleHTTPServer", "http.server"),
    ("CGIHTTPServer", "http.server"),
    ("UserDict", "collections"),
    ("UserList", "collections"),
    ("UserString", "collections"),
    ("whichdb", "dbm"),
    ("StringIO", "io"),
    ("cStringIO", "io"),
];

/// Python 2 exception names that `NAME_MAPPING` moves from `exceptions` to `builtins`.
const PYTHON2_EXCEPTIONS: &[&str] = &[
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "BufferError",
    "BytesWarning",
    "DeprecationWarning",
    "EOFError",
    "EnvironmentError",
    "Exception",
    "FloatingPointError",
    "FutureWarning",
    "GeneratorExit",
    "IOError",
    "ImportError",
    "ImportWarning",
    "IndentationError",
    "IndexError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "NameError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PendingDeprecationWarning",
    "ReferenceError",
    "RuntimeError",
    "RuntimeWarning",
    "StopIteration",
    "SyntaxError",
    "SyntaxWarning",
    "SystemError",
    "SystemExit",
    "TabError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "UnicodeWarning",
    "UserWarning",
    "ValueError",
    "Warning",
    "ZeroDivisionError",
    "WindowsError",
];

/// The Python 3 (module, name) the unpickler imports for a Python 2 spelling.
fn normalise(module: &str, name: &str) -> (String, String) {
    if let Some((_, (m, n))) = NAME_MAPPING.iter().find(|((m, n), _)| *m == module && *n == name) {
        return ((*m).to_owned(), (*n).to_owned());
    }
    if module == "exceptions" && PYTHON2_EXCEPTIONS.contains(&name) {
        return ("builtins".to_owned(), name.to_owned());
    }
    let module = IMPORT_MAPPING.iter().find(|(m, _)| *m == module).map_or(module, |(_, to)| *to);
    (module.to_owned(), name.to_owned())
}

/// Modules every attribute of which can run code, touch files or the network, or import more.
const DENY_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "_winapi",
    "pty",
    "socket",
    "_socket",
    "ssl",
    "runpy",
    "webbrowser",
    "importlib",
    "imp",
    "zipimport",
    "pkgutil",
    "ctypes",
    "_ctypes",
    "cffi",
    "sys",
    "code",
    "codeop",
    "multiprocessing",
    "asyncio",
    "pdb",
    "bdb",
    "timeit",
    "marshal",
    "types",
    "cProfile",
    "profile",
    "_lsprof",
    "trace",
    "pickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "shelve",
    "shutil",
    "requests",
    "urllib",
    "urllib3",
    "http",
    "ftplib",
    "smtplib",
    "telnetlib",
    "poplib",
    "imaplib",
    "xmlrpc",
    "socketserver",
    "paramiko",
    "pip",
    "setuptools",
    "distutils",
    "venv",
    "ensurepip",
    "site",
    "signal",
    "_thread",
    "threading",
    "platform",
    "pydoc",
    "idlelib",
    "doctest",
    "_osx_support",
    "_aix_support",
    "tkinter",
    "turtle",
    "gc",
    "linecache",
    "tempfile",
    "glob",
    "fileinput",
    "sqlite3",
    "dbm",
    "mmap",
    "fcntl",
    "resource",
    "ptrace",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "numpy.testing",
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.jit",
    "torch.package",
    "torch.ops",
    "torch.classes",
    "torch._C",
    "torch.cuda",
    "torch.distributed",
    "torch.multiprocessing",
    "IPython",
    "jinja2",
    "yaml",
    "subprocess32",
    "commands",
    "popen2",
    "winreg",
    "msvcrt",
];

/// Single callables that run code, open files or reach arbitrary attributes, as `module.name`.
const DENY_NAMES: &[&str] = &[
    "builtins.eval",
    "builtins.exec",
    "builtins.execfile",
    "builtins.compile",
    "builtins.open",
    "builtins.file",
    "builtins.input",
    "builtins.raw_input",
    "builtins.breakpoint",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.delattr",
    "builtins.globals",
    "builtins.locals",
    "builtins.vars",
    "builtins.reload",
    "builtins.apply",
    "builtins.exit",
    "builtins.quit",
    "builtins.help",
    "builtins.memoryview",
    "builtins.type",
    "builtins.super",
    "operator.attrgetter",
    "operator.methodcaller",
    "_operator.attrgetter",
    "_operator.methodcaller",
    "codecs.open",
    "codecs.EncodedFile",
    "_codecs.lookup",
    "_codecs.decode",
    "functools.partial",
    "functools.reduce",
    "_functools.partial",
    "_functools.reduce",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.fromfile",
    "numpy.lib.npyio.load",
    "numpy.lib._npyio_impl.load",
    "torch.load",
    "torch.serialization.load",
    "torch.serialization._load",
    "torch.serialization._legacy_load",
    "io.open",
    "io.open_code",
    "io.FileIO",
    "_io.open",
    "_io.open_code",
    "_io.FileIO",
    "torch.storage._load_from_bytes",
    "joblib.load",
    "collections.namedtuple",
    "logging.config.listen",
    "logging.config.fileConfig",
    "uuid._get_command_stdout",
];

fn in_module(module: &str, root: &str) -> bool {
    module == root || module.strip_prefix(root).is_some_and(|r| r.starts_with('.'))
}

/// Whether `path` (`module.name`, the name possibly dotted) is a denied module or callable,
/// or is reached through one: every prefix of the path is checked.
fn is_denied(path: &str) -> bool {
    DENY_MODULES.iter().chain(DENY_NAMES).any(|d| in_module(path, d))
}

/// What a weights checkpoint (torch.save of a state dict, NumPy arrays, joblib arrays) needs.
/// Mirrors the spirit of `torch.load(weights_only=True)`.
const ALLOW_NAMES: &[(&str, &[&str])] = &[
    ("collections", &["OrderedDict", "defaultdict", "Counter", "deque"]),
    (
        "builtins",
        &[
            "set",
            "frozenset",
            "list",
            "dict",
            "tuple",
            "bytearray",
            "bytes",
            "complex",
            "slice",
            "range",
            "int",
            "float",
            "str",
            "bool",
            "object",
        ],
    ),
    ("copyreg", &["_reconstructor", "__newobj__", "__newobj_ex__"]),
    ("_codecs", &["encode"]),
    (
        "torch._utils",
        &[
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_wrapper_subclass",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_nested_tensor",
        ],
    ),
    ("torch._tensor", &["_rebuild_from_type_v2", "_rebuild_from_type"]),
    (
        "torch",
        &[
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "ComplexFloatStorage",
            "ComplexDoubleStorage",
            "QInt8Storage",
            "QUInt8Storage",
            "QInt32Storage",
            "QUInt4x2Storage",
            "QUInt2x4Storage",
            "UntypedStorage",
            "TypedStorage",
            "Size",
            "device",
            "Tensor",
            "float32",
            "float",
            "float64",
            "double",
            "float16",
            "half",
            "bfloat16",
            "complex32",
            "chalf",
            "complex64",
            "cfloat",
            "complex128",
            "cdouble",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "int8",
            "int16",
            "short",
            "int32",
            "int",
            "int64",
            "long",
            "bool",
            "qint8",
            "quint8",
            "qint32",
            "quint4x2",
            "quint2x4",
            "float8_e4m3fn",
            "float8_e5m2",
            "float8_e4m3fnuz",
            "float8_e5m2fnuz",
            "strided",
            "sparse_coo",
            "sparse_csr",
            "sparse_csc",
            "sparse_bsr",
            "sparse_bsc",
            "per_tensor_affine",
            "per_channel_affine",
            "per_tensor_symmetric",
            "per_channel_symmetric",
            "per_channel_affine_float_qparams",
            "contiguous_format",
            "channels_last",
            "channels_last_3d",
            "preserve_format",
        ],
    ),
    ("torch.storage", &["UntypedStorage", "TypedStorage", "_TypedStorage"]),
    ("torch.nn.parameter", &["Parameter"]),
    ("torch.serialization", &["_get_layout"]),
    ("numpy.core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy._core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy.core.numeric", &["_frombuffer"]),
    ("numpy._core.numeric", &["_frombuffer"]),
    (
        "numpy",
        &[
            "ndarray",
            "dtype",
            "bool_",
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
            "longdouble",
            "complex64",
            "complex128",
            "str_",
            "bytes_",
            "void",
        ],
    ),
    ("joblib.numpy_pickle", &["NumpyArrayWrapper"]),
    ("datetime", &["datetime", "date", "time", "timedelta", "timezone"]),
    ("decimal", &["Decimal"]),
    ("fractions", &["Fraction"]),
    ("pathlib", &["Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"]),
    ("argparse", &["Namespace"]),
];

fn is_allowed(module: &str, name: &str) -> bool {
    // NumPy 2's dtype classes (numpy.dtypes.Float32DType, ...) are plain type objects.
    if module == "numpy.dtypes" && name.ends_with("DType") && !name.contains('.') {
        return true;
    }
    // torch.storage._load_from_bytes is denied above; torch.storage types are allowed.
    ALLOW_NAMES.iter().any(|(m, names)| *m == module && names.contains(&name))
}

/// The combined verdict over `imports` and whether the walks completed.
pub fn verdict(policy: &PicklePolicy, imports: &[Import], complete: bool) -> (Safety, Vec<String>) {
    let mut worst = Safety::Safe;
    let mut offending = Vec::new();
    for imp in imports {
        let s = policy.judge(imp);
        if s != Safety::Safe {
            offending.push((s, imp.display()));
        }
        worst = worst.max(s);
    }
    if !complete {
        worst = worst.max(Safety::Suspicious);
    }
    // Show the globals that decided the verdict (the worst ones) first.
    offending.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<String> = Vec::new();
    for (s, g) in offending {
        if s == worst && !out.contains(&g) {
            out.push(g);
        }
    }
    (worst, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(bytes: &[u8]) -> Walk {
        let mut r = bytes;
        walk(&mut r, u64::MAX, &PicklePolicy::default())
    }

    fn names(w: &Walk) -> Vec<String> {
        w.imports.iter().map(Import::display).collect()
    }

    fn named(m: &str, n: &str) -> Import {
        Import::Named { module: m.into(), name: n.into() }
    }

    #[test]
    fn protocol_0_global_and_reduce() {
        let p = b"cos\nsystem\n(S'id'\ntR.";
        let r = w(p);
        assert!(r.complete(), "{r:?}");
        assert_eq!(names(&r), ["os.system"]);
    }

    #[test]
    fn memoised_stack_global_resolves() {
        // module and name are memoised, then fetched back with BINGET before STACK_GLOBAL.
        let mut p = vec![0x80, 4, 0x8c, 5];
        p.extend_from_slice(b"posix");
        p.extend_from_slice(&[0x94, 0x8c, 6]);
        p.extend_from_slice(b"system");
        p.extend_from_slice(&[0x94, b'0', b'0', b'h', 0, b'h', 1, 0x93, 0x8c, 2]);
        p.extend_from_slice(b"id");
        p.extend_from_slice(&[0x85, b'R', b'.']);
        let r = w(&p);
        assert!(r.complete(), "{r:?}");
        assert_eq!(names(&r), ["posix.system"]);
        let pol = PicklePolicy::default();
        assert_eq!(verdict(&pol, &r.imports, true).0, Safety::Malicious);
    }

    #[test]
    fn dynamic_stack_global_is_malicious() {
        // module is the result of a call, not a string
        let p = b"\x80\x04c__builtin__\nstr\n)R\x8c\x06system\x93.";
        let r = w(p);
        assert_eq!(names(&r), ["__builtin__.str", "<dynamic STACK_GLOBAL>"]);
        let (v, off) = verdict(&PicklePolicy::default(), &r.imports, r.complete());
        assert_eq!(v, Safety::Malicious);
        assert_eq!(off, ["<dynamic STACK_GLOBAL>"]);
    }

    #[test]
    fn judge_normalises_and_allowlists() {
        let pol = PicklePolicy::new(&["sklearn.*".into(), "mylib.Outer.Inner".into()], &["mylib.evil".into()]);
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        assert_eq!(j("__builtin__", "eval"), Safety::Malicious);
        assert_eq!(j("builtins", "getattr"), Safety::Malicious);
        assert_eq!(j("__builtin__", "set"), Safety::Safe);
        assert_eq!(j("torch._utils", "_rebuild_tensor_v2"), Safety::Safe);
        assert_eq!(j("torch._utils", "_rebuild_tensor_v2.__globals__"), Safety::Malicious);
        assert_eq!(j("collections", "OrderedDict"), Safety::Safe);
        assert_eq!(j("os.path", "join"), Safety::Malicious);
        assert_eq!(j("osmium", "x"), Safety::Suspicious);
        assert_eq!(j("commands", "getoutput"), Safety::Malicious);
        assert_eq!(j("operator", "attrgetter"), Safety::Malicious);
        assert_eq!(j("sklearn.linear_model._base", "LinearRegression"), Safety::Safe);
        assert_eq!(j("mylib", "evil"), Safety::Malicious);
        assert_eq!(j("mylib", "evil.x"), Safety::Malicious);
        assert_eq!(j("mylib.evil", "x"), Safety::Malicious);
        assert_eq!(j("mylib", "evilness"), Safety::Suspicious);
        assert_eq!(j("mylib", "fine"), Safety::Suspicious);
        assert_eq!(j("mylib", "Outer.Inner"), Safety::Safe);
        assert_eq!(j("mylib.Outer", "Inner"), Safety::Safe);
        assert_eq!(j("numpy.dtypes", "Float32DType"), Safety::Safe);
        assert_eq!(j("builtins", "set.__class__"), Safety::Malicious);
        assert_eq!(j("builtins", "getattr.x"), Safety::Malicious);
    }

    #[test]
    fn dotted_names_are_module_paths() {
        let pol = PicklePolicy::new(&["sklearn.*".into()], &[]);
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        // A wildcard allowance does not follow a module the allowed one imported.
        assert_eq!(j("sklearn.datasets._base", "os.system"), Safety::Suspicious);
        assert_eq!(j("sklearn.datasets._base", "load_iris"), Safety::Safe);
        // Denied submodules and callables reached through an allowed module.
        for (m, n) in [
            ("torch", "hub.load"),
            ("torch", "jit.load"),
            ("torch", "serialization.load"),
            ("torch", "hub"),
            ("numpy", "lib.npyio.load"),
            ("numpy.lib", "npyio.load"),
            ("builtins", "getattr"),
        ] {
            assert_eq!(j(m, n), Safety::Malicious, "{m}.{n}");
        }
    }

    #[test]
    fn python2_names_follow_compat_pickle() {
        let pol = PicklePolicy::default();
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        for (m, n) in [
            ("__builtin__", "reduce"),
            ("__builtin__", "intern"),
            ("xmlrpclib", "ServerProxy"),
            ("SimpleHTTPServer", "test"),
            ("BaseHTTPServer", "HTTPServer"),
            ("Tkinter", "Tk"),
            ("cPickle", "loads"),
            ("urllib", "urlretrieve"),
            ("thread", "start_new_thread"),
        ] {
            assert_eq!(j(m, n), Safety::Malicious, "{m}.{n}");
        }
        assert_eq!(normalise("__builtin__", "reduce"), ("functools".into(), "reduce".into()));
        assert_eq!(normalise("exceptions", "ValueError"), ("builtins".into(), "ValueError".into()));
        assert_eq!(normalise("itertools", "izip"), ("builtins".into(), "zip".into()));
        assert_eq!(j("__builtin__", "xrange"), Safety::Safe);
    }

    #[test]
    fn numbers_are_read_as_cpython_reads_them() {
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
        assert_eq!(py_int(b"010", 10), Some(10));
        assert_eq!(py_int(b"1_000", 10), Some(1000));
        assert_eq!(py_int(b"0x10", 10), None);
        // An explicit base takes its own prefix only; other letters are digits where valid.
        assert_eq!(
            (py_int(b"0o17", 8), py_int(b"0x_1f", 16), py_int(b"0b1", 16), py_int(b"0x1", 8)),
            (Some(15), Some(31), Some(0xb1), None)
        );
        // Spellings the unpickler accepts never stop the walk (the global after them is seen).
        for p in [
            &b"I0x1\n0cos\nsystem\n."[..],
            b"I1_0\n0cos\nsystem\n.",
            b"L0o7L\n0cos\nsystem\n.",
            b"F1_0\n0cos\nsystem\n.",
            b"Iabc\n0cos\nsystem\n.",
        ] {
            let r = w(p);
            assert!(r.complete(), "{p:?}: {r:?}");
            assert_eq!(names(&r), ["os.system"], "{p:?}");
        }
        let r = w(b"S'os'\np1_0\n0S'system'\np2\n0g1_0\ng2\n\x93.");
        assert_eq!(names(&r), ["os.system"]);
        // A line the walker does not keep is read through.
        let mut long = b"S'".to_vec();
        long.resize(MAX_LINE + 100, b'a');
        long.extend_from_slice(b"'\n0cos\nsystem\n.");
        assert_eq!(names(&w(&long)), ["os.system"]);
    }

    #[test]
    fn hostile_streams_error_without_panicking() {
        for p in [
            &b""[..],
            b"\x80",
            b"\x80\x09",
            b"(((((",
            b".",
            b"0",
            b"1",
            b"h\x05",
            b"\x8b\xff\xff\xff\xff",
            b"T\xff\xff\xff\x7f",
            b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x93",
            b"\x92",
            b"o",
            b"(o.",
            b"g-1\n",
            b"gx\n",
        ] {
            let r = w(p);
            assert!(!r.complete(), "{p:?}");
        }
        // length fields past the end stop at the budget instead of allocating
        let mut r: &[u8] = b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x00";
        let out = walk(&mut r, 1 << 20, &PicklePolicy::default());
        assert!(out.limited);
        // Deeply nested tuples are not modelled (nor dropped recursively).
        let mut deep = b"\x80\x02)".to_vec();
        deep.resize(deep.len() + 200_000, 0x85);
        deep.push(b'.');
        assert!(w(&deep).complete());
    }

    #[test]
    fn concatenated_pickles_and_what_follows_them() {
        let mut p = b"\x80\x02K\x01.\x80\x02cos\nsystem\n.".to_vec();
        let r = w(&p);
        assert_eq!((r.pickles, r.complete()), (2, true));
        assert_eq!(names(&r), ["os.system"]);
        // Whatever follows is walked as a pickle of any protocol; bytes that do not walk leave
        // the stream incomplete rather than being taken for harmless data.
        let r = w(&cat(&[b"\x80\x02K\x01.", b"cos\nsystem\n(S'id'\ntR."]));
        assert_eq!((names(&r), r.complete()), (vec!["os.system".to_string()], true));
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let r = w(&p);
        assert!(!r.complete() && r.error.as_deref().is_some_and(|e| e.starts_with("pickle 3")), "{r:?}");
        // Far more pickles than a loader usually reads are still all walked.
        let many = b"N.".repeat(1000);
        assert_eq!(w(&many).pickles, 1000);
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

    #[test]
    fn legacy_torch_streams_walk_all_five_pickles() {
        let keys = b"\x80\x02]q\x00X\x01\x00\x00\x000a.";
        let ok = cat(&[MAGIC, b"\x80\x02M\xe9\x03.", b"\x80\x02}.", b"\x80\x02}.", keys, &[0xffu8; 24]]);
        let r = w(&ok);
        assert!(r.torch_legacy_magic && r.complete() && r.pickles == 5, "{r:?}");
        // A protocol-0 pickle in second place is walked, not taken for raw data.
        let evil = cat(&[MAGIC, b"cos\nsystem\n(S'id'\ntR.", b"\x80\x02}.", b"\x80\x02}.", keys]);
        let r = w(&evil);
        assert_eq!(names(&r), ["os.system"]);
        // A pickle the walker cannot finish leaves the stream incomplete.
        let cut = cat(&[MAGIC, b"\x80\x02M\xe9\x03.", b"\xff\xff"]);
        assert!(!w(&cut).complete());
        // The magic as text (protocol 0) is recognised too.
        let text = cat(&[b"L119547037146038801333356L\n.", b"I1001\n.", b"N.", b"cos\nsystem\n.", b"N."]);
        let r = w(&text);
        assert!(r.torch_legacy_magic && r.pickles == 5, "{r:?}");
        assert_eq!(names(&r), ["os.system"]);
    }

    #[test]
    fn joblib_array_bytes_stop_the_walk() {
        // After the wrapper's BUILD, joblib reads raw bytes that can be shaped like opcodes.
        let mut p = b"\x80\x04\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}b".to_vec();
        p.extend_from_slice(b"N.cos\nsystem\n.");
        let r = w(&p);
        assert!(!r.complete() && r.error.as_deref().is_some_and(|e| e.contains("joblib")), "{r:?}");
        assert_eq!(names(&r), ["joblib.numpy_pickle.NumpyArrayWrapper"]);
    }

    #[test]
    fn import_caps_judge_before_dropping() {
        let mut p = b"\x80\x02".to_vec();
        for i in 0..MAX_GLOBALS + 10 {
            p.extend_from_slice(format!("cm{i}\nx\n0").as_bytes());
        }
        p.extend_from_slice(b"cos\nsystem\n0N.");
        let r = w(&p);
        assert_eq!(r.imports.len(), MAX_GLOBALS + 1);
        assert_eq!(r.imports.last(), Some(&named("os", "system")));
        assert!(!r.complete() && r.imports_unlisted == 11, "{:?}", r.incomplete_reason(0));
        assert_eq!(verdict(&PicklePolicy::default(), &r.imports, r.complete()).0, Safety::Malicious);
        // Repeats of a listed import cost nothing and change nothing.
        let mut p = b"\x80\x02".to_vec();
        for _ in 0..50_000 {
            p.extend_from_slice(b"cm\nx\n0");
        }
        p.push(b'N');
        p.push(b'.');
        let r = w(&p);
        assert_eq!((r.imports.len(), r.complete()), (1, true));
    }

    fn tar_member(member: TarMember, data: &[u8]) -> Walk {
        let mut c = std::io::Cursor::new(data);
        let mut r = Reader::new(&mut c, data.len() as u64).expect("reader");
        walk_torch_tar_member(member, &mut r, data.len() as u64, u64::MAX, &PicklePolicy::default())
    }

    #[test]
    fn torch_tar_members_are_walked_past_their_raw_blocks() {
        let record = b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\n\x87.";
        let storages = cat(&[
            b"\x80\x02K\x02.",
            record,
            &2u64.to_le_bytes(),
            &[0xffu8; 8],
            record,
            &1u64.to_le_bytes(),
            b"cos\n",
            b"cos\nsystem\n.",
        ]);
        let r = tar_member(TarMember::Storages, &storages);
        assert_eq!((names(&r), r.pickles), (vec!["torch.FloatStorage".to_string(), "os.system".into()], 4), "{r:?}");
        // The raw block lengths come from the records: a storage type the walker cannot size
        // leaves the member incomplete.
        let odd =
            cat(&[b"\x80\x02K\x01.", b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpucmylib\nS\n\x87.", &[0u8; 16]]);
        assert!(!tar_member(TarMember::Storages, &odd).complete());
        let tensors = cat(&[
            b"\x80\x02K\x01.",
            b"\x80\x02K\x00K\x00N\x87.",
            &1i32.to_le_bytes(),
            &[0u8; 4 + 16 + 8],
            b"cos\nsystem\n.",
        ]);
        // After its records nothing more of `tensors` is unpickled.
        let r = tar_member(TarMember::Tensors, &tensors);
        assert!(r.complete() && names(&r).is_empty(), "{r:?}");
        let r = tar_member(
            TarMember::Tensors,
            &cat(&[
                b"\x80\x02K\x02.",
                b"\x80\x02K\x00K\x00N\x87.",
                &0i32.to_le_bytes(),
                &[0u8; 12],
                b"cos\nsystem\n(tR.",
            ]),
        );
        assert_eq!(names(&r), ["os.system"]);
    }

    #[test]
    fn torch_legacy_magic_is_recognised() {
        assert!(w(MAGIC).torch_legacy_magic);
    }

    #[test]
    fn shows_pickle_only_for_importable_globals() {
        // A CSV file starting with `c` imports nothing Python could import.
        assert!(!walk_shows_pickle(&w(b"col1,col2\n1,2\n3,4\n")));
        assert!(walk_shows_pickle(&w(b"cos\nsystem\n(S'id'\ntR\xff")));
        assert!(walk_shows_pickle(&w(b"(lp0\nI1\naI2\na.")));
        assert!(!walk_shows_pickle(&w(b"N.B. this is a note\n")));
    }

    #[test]
    fn pattern_parsing() {
        assert!(GlobalPattern::parse("a.b").is_ok());
        assert!(GlobalPattern::parse("a.b.*").is_ok());
        assert!(GlobalPattern::parse("a").is_err());
        assert!(GlobalPattern::parse("a.").is_err());
        assert!(GlobalPattern::parse("a b.c").is_err());
    }
}
