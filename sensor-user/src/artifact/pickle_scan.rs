//! Static pickle analysis: walk the opcodes, never execute them.
//!
//! Written by hand because no Rust crate walks pickles without building Python objects (and
//! `serde-pickle` refuses the very opcodes an attacker uses). The walker models the unpickler's
//! stack and memo just closely enough to resolve what each `GLOBAL`, `INST` and `STACK_GLOBAL`
//! imports — including module and name strings that were memoised earlier and fetched with
//! `GET` — and records extension codes (`EXT1/2/4`), whose targets live in the loader's
//! `copyreg` registry and so cannot be known statically.
//!
//! The judgement prefers an allowlist: a global is `safe` only if it is one of the rebuild
//! helpers and types an ordinary PyTorch / NumPy / joblib checkpoint needs; known
//! code-execution globals are `malicious`; everything else is `suspicious`. Denylist-only
//! scanners are bypassed whenever someone finds a dangerous callable nobody listed; here such a
//! callable still makes the file `suspicious`. Imports hidden from static analysis (a
//! `STACK_GLOBAL` whose operands are not constant strings, extension codes) and attribute chains
//! through dunder attributes (`x.__globals__`) are `malicious`: no serialiser produces them.
//!
//! Module names are normalised the way Python 3's unpickler does for old protocols
//! (`__builtin__` → `builtins`, `commands` → `subprocess`, ...) before judging, so the Python 2
//! spelling of a dangerous global is as dangerous as the Python 3 one.

use std::{collections::HashMap, io::Read, rc::Rc};

use crate::artifact::report::Safety;

/// Strings longer than this are not kept (a module or attribute name is never this long).
const MAX_KEPT_STRING: u64 = 4096;
/// Protocol-0 argument lines.
const MAX_LINE: usize = 64 * 1024;
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_GLOBALS: usize = 10_000;
/// Concatenated pickles walked in one stream (joblib, legacy torch).
const MAX_PICKLES: u32 = 64;

/// How a global was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// Module and name are known strings.
    Named { module: String, name: String },
    /// `STACK_GLOBAL` whose operands were not constant strings.
    Dynamic,
    /// `EXT1/2/4` code resolved through the loader's `copyreg` extension registry.
    Extension(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub kind: ImportKind,
    /// Which opcode imported it (`GLOBAL`, `STACK_GLOBAL`, `INST`, `EXT1`...).
    pub opcode: &'static str,
    /// Offset of the opcode in the stream.
    pub offset: u64,
}

impl Import {
    /// `module.name`, or a placeholder for imports that cannot be resolved.
    pub fn display(&self) -> String {
        match &self.kind {
            ImportKind::Named { module, name } => format!("{module}.{name}"),
            ImportKind::Dynamic => "<dynamic STACK_GLOBAL>".to_owned(),
            ImportKind::Extension(code) => format!("<extension code {code}>"),
        }
    }
}

/// What walking one stream found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// Distinct imports in first-seen order.
    pub imports: Vec<Import>,
    /// Pickles walked to their `STOP`.
    pub pickles: u32,
    /// The highest `PROTO` seen.
    pub protocol: Option<u8>,
    /// Bytes of opcodes consumed.
    pub bytes: u64,
    /// Why the walk stopped early, when it did. Imports before that point are still reported:
    /// the unpickler would have run them before failing.
    pub error: Option<String>,
    /// The walk stopped at the byte budget.
    pub limited: bool,
    /// After the last complete pickle the stream continued with data that is not a pickle.
    pub trailing_data: bool,
    /// The first pickle's value is the legacy `torch.save` magic number.
    pub torch_legacy_magic: bool,
}

impl Walk {
    pub fn complete(&self) -> bool {
        self.error.is_none() && !self.limited && self.pickles > 0
    }
}

#[derive(Debug, Clone)]
enum V {
    Mark,
    Str(Rc<str>),
    /// Index into `imports` (or `usize::MAX` for unresolved).
    Global,
    Int(i128),
    Other,
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
        for x in a.iter_mut() {
            *x = self.truncated(|s| s.byte())?;
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
                v.push(self.truncated(|s| s.byte())?);
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

    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let mut v = Vec::new();
        loop {
            let b = self.truncated(|s| s.byte())?;
            if b == b'\n' {
                return Ok(v);
            }
            if v.len() >= MAX_LINE {
                return Err(Stop::Err("argument line too long".into()));
            }
            v.push(b);
        }
    }
}

struct Machine {
    stack: Vec<V>,
    memo: HashMap<u64, V>,
    imports: Vec<Import>,
    seen: HashMap<(String, String), ()>,
    dynamic_seen: bool,
    ext_seen: Vec<i64>,
}

fn err<T>(m: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Err(m.into()))
}

impl Machine {
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

    fn import(&mut self, kind: ImportKind, opcode: &'static str, offset: u64) {
        let new = match &kind {
            ImportKind::Named { module, name } => {
                self.seen.insert((module.clone(), name.clone()), ()).is_none()
            }
            ImportKind::Dynamic => !std::mem::replace(&mut self.dynamic_seen, true),
            ImportKind::Extension(c) => {
                if self.ext_seen.contains(c) {
                    false
                } else {
                    self.ext_seen.push(*c);
                    true
                }
            }
        };
        if new && self.imports.len() < MAX_GLOBALS {
            self.imports.push(Import { kind, opcode, offset });
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), Stop> {
        let v = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return err("memo larger than the walker's bound");
        }
        // Only strings matter for resolving imports; keep the memo small otherwise.
        let v = match v {
            V::Str(_) | V::Global | V::Int(_) => v,
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

fn decimal(line: &[u8]) -> Result<i128, Stop> {
    let s = std::str::from_utf8(line).map_err(|_| Stop::Err("non-ASCII number".into()))?;
    let s = s.trim().trim_end_matches('L');
    s.parse::<i128>().or_else(|_| err(format!("bad decimal argument {:?}", truncate(s, 40))))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
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
        v |= (*b as i128) << (8 * i);
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

/// Walks every pickle in `r` (concatenated pickles, as joblib and legacy `torch.save` write
/// them), reading at most `budget` bytes.
pub fn walk(r: &mut dyn Read, budget: u64) -> Walk {
    let mut src = Src { r, pos: 0, budget, peeked: None };
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
        imports: Vec::new(),
        seen: HashMap::new(),
        dynamic_seen: false,
        ext_seen: Vec::new(),
    };
    let mut out = Walk::default();
    loop {
        let start = src.pos;
        let imports_before = m.imports.len();
        m.stack.clear();
        m.memo.clear();
        match walk_one(&mut src, &mut m, &mut out) {
            Ok(first_value) => {
                if out.pickles == 0 && matches!(first_value, V::Int(TORCH_LEGACY_MAGIC)) {
                    out.torch_legacy_magic = true;
                }
                out.pickles += 1;
            }
            Err(stop) => {
                let continuation = out.pickles > 0;
                match stop {
                    // A continuation that imports nothing before hitting an invalid opcode is
                    // data, not a pickle. (One that runs into the end of the stream is a
                    // pickle cut short, below.)
                    Stop::Err(_) if continuation && m.imports.len() == imports_before => {
                        out.trailing_data = true;
                    }
                    Stop::Eof if src.pos == start && !continuation => {
                        out.error = Some("empty stream".into());
                    }
                    Stop::Eof => out.error = Some("stream ended before STOP".into()),
                    Stop::Budget => out.limited = true,
                    Stop::Err(e) => out.error = Some(format!("{e} (offset {})", src.pos)),
                }
                break;
            }
        }
        if out.pickles >= MAX_PICKLES {
            break;
        }
        match src.peek() {
            Ok(None) => break,
            // Another pickle follows only if it starts with PROTO 2..=5; anything else is the
            // raw tensor data joblib and legacy torch write between or after pickles.
            Ok(Some(0x80)) => {}
            Ok(Some(_)) => {
                out.trailing_data = true;
                break;
            }
            Err(Stop::Budget) => {
                out.limited = true;
                break;
            }
            Err(Stop::Err(e)) => {
                out.error = Some(e);
                break;
            }
            Err(Stop::Eof) => break,
        }
    }
    out.bytes = src.pos;
    out.imports = m.imports;
    out
}

/// Walks one pickle to its STOP; returns the value STOP pops.
fn walk_one(src: &mut Src<'_>, m: &mut Machine, out: &mut Walk) -> Result<V, Stop> {
    loop {
        let offset = src.pos;
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
                let v = src.truncated(|s| s.byte())?;
                if v > 5 {
                    return err(format!("unsupported protocol {v}"));
                }
                out.protocol = Some(out.protocol.map_or(v, |p| p.max(v)));
            }
            0x95 => {
                src.exact::<8>()?;
            }
            // --- scalars ---
            b'F' | b'P' => {
                src.line()?;
                m.push(V::Other)?;
            }
            b'I' | b'L' => {
                let l = src.line()?;
                let v = if l == b"00" || l == b"01" { V::Other } else { V::Int(decimal(&l)?) };
                m.push(v)?;
            }
            b'J' => {
                let v = i32::from_le_bytes(src.exact()?);
                m.push(V::Int(v as i128))?;
            }
            b'K' => {
                let v = src.exact::<1>()?[0];
                m.push(V::Int(v as i128))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(src.exact()?);
                m.push(V::Int(v as i128))?;
            }
            0x8a => {
                let n = src.exact::<1>()?[0] as u64;
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
                let l = src.line()?;
                m.push(quoted(&l).map_or(V::Other, V::Str))?;
            }
            b'V' => {
                // raw-unicode-escape: a name with escapes is not a plain identifier anyway.
                let l = src.line()?;
                let v = match String::from_utf8(l) {
                    Ok(s) if !s.contains('\\') => V::Str(Rc::from(s.as_str())),
                    _ => V::Other,
                };
                m.push(v)?;
            }
            b'T' => {
                let n = i32::from_le_bytes(src.exact()?);
                if n < 0 {
                    return err("BINSTRING with negative length");
                }
                let d = src.data(n as u64)?;
                m.push(string_value(d))?;
            }
            b'U' | 0x8c => {
                let n = src.exact::<1>()?[0] as u64;
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            b'X' => {
                let n = u32::from_le_bytes(src.exact()?) as u64;
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            0x8d => {
                let n = u64::from_le_bytes(src.exact()?);
                let d = src.data(n)?;
                m.push(string_value(d))?;
            }
            b'B' => {
                let n = u32::from_le_bytes(src.exact()?) as u64;
                src.data(n)?;
                m.push(V::Other)?;
            }
            b'C' => {
                let n = src.exact::<1>()?[0] as u64;
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
            b']' | b'}' | b')' | 0x8f => m.push(V::Other)?,
            b'l' | b't' | b'd' | 0x91 => {
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
                for _ in 0..(op - 0x84) {
                    m.pop()?;
                }
                m.push(V::Other)?;
            }
            // --- memo ---
            b'g' => {
                let k = decimal(&src.line()?)?;
                m.memo_get(u64::try_from(k).or_else(|_| err("negative memo key"))?)?;
            }
            b'h' => {
                let k = src.exact::<1>()?[0] as u64;
                m.memo_get(k)?;
            }
            b'j' => {
                let k = u32::from_le_bytes(src.exact()?) as u64;
                m.memo_get(k)?;
            }
            b'p' => {
                let k = decimal(&src.line()?)?;
                m.memo_put(u64::try_from(k).or_else(|_| err("negative memo key"))?)?;
            }
            b'q' => {
                let k = src.exact::<1>()?[0] as u64;
                m.memo_put(k)?;
            }
            b'r' => {
                let k = u32::from_le_bytes(src.exact()?) as u64;
                m.memo_put(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u64;
                m.memo_put(k)?;
            }
            // --- imports and calls ---
            b'c' => {
                let module = utf8_name(src.line()?)?;
                let name = utf8_name(src.line()?)?;
                m.import(ImportKind::Named { module, name }, "GLOBAL", offset);
                m.push(V::Global)?;
            }
            b'i' => {
                let module = utf8_name(src.line()?)?;
                let name = utf8_name(src.line()?)?;
                m.import(ImportKind::Named { module, name }, "INST", offset);
                m.pop_mark()?;
                m.push(V::Other)?;
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (V::Str(module), V::Str(name)) => m.import(
                        ImportKind::Named { module: module.to_string(), name: name.to_string() },
                        "STACK_GLOBAL",
                        offset,
                    ),
                    // Values that are certainly not `str` make the unpickler fail here.
                    (V::Int(_) | V::Global, _) | (_, V::Int(_) | V::Global) => {
                        return err("STACK_GLOBAL operands are not strings");
                    }
                    // The result of a call or a container: a string computed at load time.
                    _ => m.import(ImportKind::Dynamic, "STACK_GLOBAL", offset),
                }
                m.push(V::Global)?;
            }
            0x82..=0x84 => {
                let (code, opname) = match op {
                    0x82 => (src.exact::<1>()?[0] as i64, "EXT1"),
                    0x83 => (u16::from_le_bytes(src.exact()?) as i64, "EXT2"),
                    _ => (i32::from_le_bytes(src.exact()?) as i64, "EXT4"),
                };
                m.import(ImportKind::Extension(code), opname, offset);
                m.push(V::Global)?;
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

/// Whether a walk of content that does not start with `PROTO` shows a protocol-0/1 pickle: a
/// complete pickle, or a truncated one that already imported something (the unpickler would
/// have run those imports before failing).
pub fn walk_shows_pickle(w: &Walk) -> bool {
    w.pickles > 0
        || (!w.imports.is_empty()
            && w.error.as_deref().is_some_and(|e| e.starts_with("stream ended") || e.contains("truncated")))
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

    fn matches(&self, module: &str, name: &str) -> bool {
        match &self.name {
            Some(n) => self.module == module && n == name,
            None => {
                module == self.module
                    || module.strip_prefix(self.module.as_str()).is_some_and(|r| r.starts_with('.'))
            }
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
        let (module, name) = match &import.kind {
            ImportKind::Named { module, name } => (module.as_str(), name.as_str()),
            ImportKind::Dynamic | ImportKind::Extension(_) => return Safety::Malicious,
        };
        let (module, name) = normalise(module, name);
        let segments: Vec<&str> = name.split('.').collect();
        // Attribute chains through dunders reach module globals, builtins or subclasses.
        if segments.len() > 1 && segments.iter().any(|s| s.starts_with("__") && s.ends_with("__")) {
            return Safety::Malicious;
        }
        if self.extra_deny.iter().any(|p| p.matches(&module, &name)) || is_denied(&module, &name) {
            return Safety::Malicious;
        }
        // A dotted name is a getattr chain from the first attribute: judge that attribute too.
        if segments.len() > 1 && is_denied(&module, segments[0]) {
            return Safety::Malicious;
        }
        if self.extra_allow.iter().any(|p| p.matches(&module, &name)) || is_allowed(&module, &name) {
            return Safety::Safe;
        }
        Safety::Suspicious
    }
}

/// Python 3's `_compat_pickle` renames (the ones that matter for judging), so that the
/// Python 2 spelling of a global is judged like the Python 3 one.
fn normalise(module: &str, name: &str) -> (String, String) {
    let module = match module {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "urllib2" => "urllib.request",
        "httplib" => "http.client",
        "SocketServer" => "socketserver",
        "thread" => "_thread",
        "Queue" => "queue",
        "UserDict" | "UserList" | "UserString" => "collections",
        "cStringIO" | "StringIO" => "io",
        m => m,
    };
    let name = match (module, name) {
        ("builtins", "xrange") => "range",
        ("builtins", "unicode") => "str",
        ("builtins", "long") => "int",
        ("builtins", "basestring") => "str",
        (_, n) => n,
    };
    (module.to_owned(), name.to_owned())
}

/// Modules every attribute of which can run code, touch files or the network, or import more.
const DENY_MODULES: &[&str] = &[
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "_winapi",
    "pty", "socket", "_socket", "ssl", "runpy", "webbrowser", "importlib", "imp", "zipimport",
    "pkgutil", "ctypes", "_ctypes", "cffi", "sys", "code", "codeop", "multiprocessing",
    "asyncio", "pdb", "bdb", "timeit", "marshal", "types", "cProfile", "profile", "_lsprof",
    "trace", "pickle", "_pickle", "dill", "cloudpickle", "shelve", "shutil", "requests",
    "urllib", "urllib3", "http", "ftplib", "smtplib", "telnetlib", "poplib", "imaplib",
    "xmlrpc", "socketserver", "paramiko", "pip", "setuptools", "distutils", "venv", "ensurepip",
    "site", "signal", "_thread", "threading", "platform", "pydoc", "idlelib", "doctest",
    "_osx_support", "_aix_support", "tkinter", "turtle", "gc",
    "linecache", "tempfile", "glob", "fileinput", "sqlite3", "dbm", "mmap", "fcntl", "resource",
    "ptrace", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.testing",
    "torch.hub", "torch.utils.cpp_extension", "torch.jit", "torch.package", "torch.ops",
    "torch.classes", "torch._C", "torch.cuda", "torch.distributed", "torch.multiprocessing",
    "IPython", "jinja2", "yaml", "subprocess32", "commands", "popen2",
];

/// Single callables that run code, open files or reach arbitrary attributes.
const DENY_NAMES: &[(&str, &str)] = &[
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "execfile"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("builtins", "file"),
    ("builtins", "input"),
    ("builtins", "raw_input"),
    ("builtins", "breakpoint"),
    ("builtins", "__import__"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "delattr"),
    ("builtins", "globals"),
    ("builtins", "locals"),
    ("builtins", "vars"),
    ("builtins", "reload"),
    ("builtins", "apply"),
    ("builtins", "exit"),
    ("builtins", "quit"),
    ("builtins", "help"),
    ("builtins", "memoryview"),
    ("builtins", "type"),
    ("builtins", "super"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("_operator", "attrgetter"),
    ("_operator", "methodcaller"),
    ("codecs", "open"),
    ("codecs", "EncodedFile"),
    ("_codecs", "lookup"),
    ("_codecs", "decode"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("_functools", "partial"),
    ("_functools", "reduce"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "fromfile"),
    ("numpy.lib.npyio", "load"),
    ("numpy.lib._npyio_impl", "load"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.serialization", "_load"),
    ("torch.serialization", "_legacy_load"),
    ("io", "open"),
    ("io", "open_code"),
    ("io", "FileIO"),
    ("_io", "open"),
    ("_io", "open_code"),
    ("_io", "FileIO"),
    ("torch.storage", "_load_from_bytes"),
    ("joblib", "load"),
    ("collections", "namedtuple"),
    ("logging.config", "listen"),
    ("logging.config", "fileConfig"),
    ("uuid", "_get_command_stdout"),
];

fn in_module(module: &str, root: &str) -> bool {
    module == root || module.strip_prefix(root).is_some_and(|r| r.starts_with('.'))
}

fn is_denied(module: &str, name: &str) -> bool {
    DENY_MODULES.iter().any(|m| in_module(module, m))
        || DENY_NAMES.iter().any(|(m, n)| *m == module && *n == name)
}

/// What a weights checkpoint (torch.save of a state dict, NumPy arrays, joblib arrays) needs.
/// Mirrors the spirit of `torch.load(weights_only=True)`.
const ALLOW_NAMES: &[(&str, &[&str])] = &[
    ("collections", &["OrderedDict", "defaultdict", "Counter", "deque"]),
    (
        "builtins",
        &[
            "set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex", "slice",
            "range", "int", "float", "str", "bool", "object",
        ],
    ),
    ("copyreg", &["_reconstructor", "__newobj__", "__newobj_ex__"]),
    ("_codecs", &["encode"]),
    (
        "torch._utils",
        &[
            "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
            "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
            "_rebuild_device_tensor_from_numpy", "_rebuild_nested_tensor",
        ],
    ),
    ("torch._tensor", &["_rebuild_from_type_v2", "_rebuild_from_type"]),
    (
        "torch",
        &[
            "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
            "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
            "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage",
            "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage", "UntypedStorage",
            "TypedStorage", "Size", "device", "Tensor", "float32", "float", "float64", "double",
            "float16", "half", "bfloat16", "complex32", "chalf", "complex64", "cfloat",
            "complex128", "cdouble", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
            "short", "int32", "int", "int64", "long", "bool", "qint8", "quint8", "qint32",
            "quint4x2", "quint2x4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
            "float8_e5m2fnuz", "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
            "sparse_bsc", "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
            "per_channel_symmetric", "per_channel_affine_float_qparams", "contiguous_format",
            "channels_last", "channels_last_3d", "preserve_format",
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
            "ndarray", "dtype", "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16",
            "uint32", "uint64", "float16", "float32", "float64", "longdouble", "complex64",
            "complex128", "str_", "bytes_", "void",
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
        walk(&mut r, u64::MAX)
    }

    fn names(w: &Walk) -> Vec<String> {
        w.imports.iter().map(Import::display).collect()
    }

    #[test]
    fn protocol_0_global_and_reduce() {
        let p = b"cos\nsystem\n(S'id'\ntR.";
        let r = w(p);
        assert!(r.complete(), "{r:?}");
        assert_eq!(names(&r), ["os.system"]);
        assert_eq!(r.imports[0].opcode, "GLOBAL");
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
        let pol = PicklePolicy::new(&["sklearn.*".into()], &["mylib.evil".into()]);
        let j = |m: &str, n: &str| {
            pol.judge(&Import {
                kind: ImportKind::Named { module: m.into(), name: n.into() },
                opcode: "GLOBAL",
                offset: 0,
            })
        };
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
        assert_eq!(j("mylib", "fine"), Safety::Suspicious);
        assert_eq!(j("numpy.dtypes", "Float32DType"), Safety::Safe);
        assert_eq!(j("builtins", "set.__class__"), Safety::Malicious);
        assert_eq!(j("builtins", "getattr.x"), Safety::Malicious);
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
            b"I99999999999999999999999999999999999999999\n",
        ] {
            let r = w(p);
            assert!(!r.complete(), "{p:?}");
        }
        // length fields past the end stop at the budget instead of allocating
        let mut r: &[u8] = b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x00";
        let out = walk(&mut r, 1 << 20);
        assert!(out.limited);
    }

    #[test]
    fn concatenated_pickles_and_trailing_data() {
        let mut p = b"\x80\x02K\x01.\x80\x02cos\nsystem\n.".to_vec();
        let r = w(&p);
        assert_eq!(r.pickles, 2);
        assert_eq!(names(&r), ["os.system"]);
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let r = w(&p);
        assert!(r.trailing_data && r.complete());
    }

    #[test]
    fn torch_legacy_magic_is_recognised() {
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend_from_slice(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
        p.push(b'.');
        assert!(w(&p).torch_legacy_magic);
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
