//! Fuzz target: the legacy torch tar reader.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::with_reader(data, |r, ctx| {
        let _ = modelwatch_artifact::formats::pytorch::parse_tar(r, ctx);
    });
});
