//! Fuzz target: decoding a ring-buffer record from the kernel. Records are trusted in shape
//! only as far as the ABI says; a truncated, oversized or garbled one must be an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = modelwatch::decode::decode(data) {
        // An accepted record is exactly as long as its header says: the decoded value's
        // embedded header is the one that was checked.
        assert_eq!(ev.header().size as usize, data.len());
    }
});
