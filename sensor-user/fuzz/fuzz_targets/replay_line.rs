//! Fuzz target: `modelwatch tail --from FILE` reads a capture line by line and renders what
//! parses as an event on a terminal; the file may come from anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch::{
    output::{OutputFormat, render, sanitize},
    proto::v1::Event,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ev) = serde_json::from_str::<Event>(&text) {
        let compact = render(&ev, OutputFormat::Compact, true);
        // What reaches the terminal carries no control characters but the colour codes.
        let plain = render(&ev, OutputFormat::Compact, false);
        assert!(!plain.chars().any(|c| c.is_control()), "control character in {plain:?}");
        let _ = (compact, render(&ev, OutputFormat::Json, false));
    }
    assert!(!sanitize(&text).chars().any(|c| c.is_control()));
});
