//! Fuzz target: the HDF5 / Keras configuration sniff.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::with_reader(data, |r, ctx| {
        let _ = modelwatch_artifact::formats::keras_h5::parse(r, ctx);
    });
});
