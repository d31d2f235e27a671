//! Fuzz target: the whole content identification (every sniff and parser behind it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch_artifact::{AnalyzeOptions, Limits, analyze_bytes};

fuzz_target!(|data: &[u8]| {
    let opts = AnalyzeOptions {
        limits: Limits { max_parse_bytes: 1 << 20, max_pickle_bytes: 1 << 20, ..Limits::default() },
        ..AnalyzeOptions::default()
    };
    let r = analyze_bytes(data, &opts);
    // Judgements stay consistent with the findings whatever the input.
    if let Some(p) = &r.pickle {
        assert!(
            p.verdict != modelwatch_artifact::Safety::Malicious
                || r.findings.iter().any(|f| f.code == "pickle_malicious")
        );
    }
});
