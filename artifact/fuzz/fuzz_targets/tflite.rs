//! Fuzz target: the TFLite FlatBuffer reader.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::with_reader(data, |r, ctx| {
        let _ = modelwatch_artifact::formats::tflite::parse(r, ctx);
    });
});
