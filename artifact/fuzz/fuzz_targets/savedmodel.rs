//! Fuzz target: the SavedModel protobuf reader (called directly, without the classification).
#![no_main]

#[path = "common.rs"]
mod common;

use modelwatch_artifact::{formats::Parsed, report::Format};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::with_reader(data, |r, ctx| {
        let mut p = Parsed::new(Format::TfSavedmodel, None);
        let _ = modelwatch_artifact::formats::savedmodel::parse(r, ctx, &mut p);
    });
});
