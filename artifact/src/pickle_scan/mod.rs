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
//! Before judging, Python 2 spellings are mapped to Python 3 ones (`__builtin__.reduce` is
//! judged as `functools.reduce`).
//!
//! - `walker` walks the opcodes of a stream ([`walk`]) and says what it imports ([`Walk`]);
//!   `stream` is its bounded input, `values` the stack values it models;
//! - `torch_tar` walks the members of a legacy torch tar past their raw blocks
//!   ([`walk_torch_tar_member`]);
//! - `policy` judges the imports ([`PicklePolicy`], [`verdict`]);
//! - `compat` maps Python 2 names as CPython's `_compat_pickle` does.

mod compat;
mod policy;
mod stream;
mod torch_tar;
mod values;
mod walker;

pub use policy::{GlobalPattern, PicklePolicy, verdict};
pub use torch_tar::{TarMember, walk_torch_tar_member};
pub use walker::{Import, MAX_GLOBALS, Walk, starts_with_proto, walk, walk_shows_pickle, walk_until};

/// What the unit tests of the submodules share.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn w(bytes: &[u8]) -> Walk {
        let mut r = bytes;
        walk(&mut r, u64::MAX, &PicklePolicy::default())
    }

    pub(super) fn names(w: &Walk) -> Vec<String> {
        w.imports.iter().map(Import::display).collect()
    }

    pub(super) fn named(m: &str, n: &str) -> Import {
        Import::Named { module: m.into(), name: n.into() }
    }

    pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }
}
