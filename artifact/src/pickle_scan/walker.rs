//! The opcode walker: a model of the unpickler's stack and memo just close enough to resolve
//! what each `GLOBAL`, `INST` and `STACK_GLOBAL` imports, and to know where one pickle ends and
//! the next begins. It never builds a Python object and never stops where CPython's C
//! unpickler goes on (an argument it cannot interpret becomes an opaque value).

use std::{
    collections::{HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher,
    io::Read,
    rc::Rc,
};

use super::{
    policy::PicklePolicy,
    stream::{Src, Stop, err},
    values::{V, int_line, long_le, long_line, quoted, string_value, tuple, utf8_name},
};
use crate::{
    io::{Deadline, Expired},
    pyint::py_int,
    report::Safety,
};

const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
/// Distinct imports listed per walk (and per artifact). Past it imports are still judged as
/// they are met, but only the malicious ones are listed (up to `MAX_EXTRA_MALICIOUS`).
pub const MAX_GLOBALS: usize = 10_000;
/// Bytes of module and name text the listed imports may hold together.
const MAX_GLOBALS_BYTES: usize = 4 << 20;
const MAX_EXTRA_MALICIOUS: usize = 64;
/// Distinct imports a walk tells apart; a stream with more is not walked further.
const MAX_DISTINCT: usize = 1 << 16;

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
    /// The walk stopped at the analysis deadline (time, or a shutdown).
    pub expired: Option<Expired>,
    /// The first pickle's value is the legacy `torch.save` magic number.
    pub torch_legacy_magic: bool,
}

impl Walk {
    /// Whether everything the loader unpickles was walked and every import is listed.
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && !self.limited
            && self.expired.is_none()
            && self.pickles > 0
            && self.imports_unlisted == 0
    }

    /// Why the walk is not complete, for a finding (`budget` is the byte budget it had).
    pub fn incomplete_reason(&self, budget: u64) -> Option<String> {
        if let Some(e) = self.expired {
            Some(e.to_string())
        } else if self.limited {
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

/// Everything but the input: the unpickler model and what was found so far.
pub(super) struct Machine<'p> {
    policy: &'p PicklePolicy,
    stack: Vec<V>,
    memo: HashMap<u64, V>,
    pub(super) out: Walk,
    /// Hashes (randomly keyed) of the distinct imports met.
    seen: HashSet<u64>,
    hasher: RandomState,
    listed_bytes: usize,
    extra_malicious: usize,
    /// joblib's array wrapper class was imported: its `BUILD` is followed by raw bytes.
    joblib_wrapper: bool,
}

impl<'p> Machine<'p> {
    pub(super) fn new(policy: &'p PicklePolicy) -> Self {
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

/// The legacy `torch.save` magic number, pickled as the first value of the stream.
const TORCH_LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

pub(super) enum Step {
    /// A pickle was walked to its STOP, which popped this value.
    Value(V),
    /// The input ended where a pickle would start.
    End,
    /// The walk stopped (recorded in the walk).
    Stopped,
}

impl Machine<'_> {
    /// Walks the next pickle of `src`.
    pub(super) fn next_pickle(&mut self, src: &mut Src<'_>) -> Step {
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
            Stop::Expired(e) => self.out.expired = Some(e),
            Stop::Err(e) => self.out.error = Some(format!("pickle {n}: {e} (offset {})", src.pos())),
        }
    }
}

/// Walks every pickle in `r` (concatenated pickles, as legacy `torch.save` writes them and
/// as code that loads in a loop reads them), reading at most `budget` bytes. Imports past the
/// listing bound are judged with `policy`.
pub fn walk(r: &mut dyn Read, budget: u64, policy: &PicklePolicy) -> Walk {
    walk_until(r, budget, &Deadline::never(), policy)
}

/// [`walk`] that also stops, incomplete, when `deadline` passes.
pub fn walk_until(r: &mut dyn Read, budget: u64, deadline: &Deadline, policy: &PicklePolicy) -> Walk {
    let mut src = Src::new(r, budget, deadline);
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
    m.out.bytes = src.pos();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle_scan::{
        stream::MAX_LINE,
        testing::{cat, named, names, w},
        verdict,
    };

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
    fn numbers_are_read_as_cpython_reads_them() {
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
}
