//! Fuzz target: decoding a ring-buffer record from the kernel. Records are trusted in shape
//! only as far as the ABI says; a truncated, oversized or garbled one must be an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modelwatch::decode::decode(data);
});
