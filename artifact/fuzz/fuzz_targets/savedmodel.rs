//! Fuzz target: the SavedModel protobuf reader (called directly, without the classification).
#![no_main]

#[path = "common.rs"]
mod common;

use modelwatch_artifact::{formats::savedmodel, report::Format};

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::with_filling_parser(data, Format::TfSavedmodel, savedmodel::parse));
