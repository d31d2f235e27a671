//! Fuzz target: the approved-model manifest parser (TOML and JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch_artifact::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Manifest::parse(text, None);
        let _ = Manifest::parse(text, Some("json"));
    }
});
