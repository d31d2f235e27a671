//! Fuzz target: the static pickle opcode walker and its verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch_artifact::pickle_scan::{PicklePolicy, verdict, walk};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let policy = PicklePolicy::default();
    let w = walk(&mut r, 1 << 20, &policy);
    assert!(w.bytes <= data.len() as u64);
    let (v, offending) = verdict(&policy, &w.imports, w.complete());
    assert!(offending.len() <= w.imports.len());
    let _ = v;
});
