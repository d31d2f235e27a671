//! Fuzz target: the ONNX protobuf reader (called directly, without the classification).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch::artifact::{
    Limits, PicklePolicy,
    formats::{Ctx, Parsed},
    io::Reader,
    report::Format,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_parse_bytes: 1 << 20, max_pickle_bytes: 1 << 20, ..Limits::default() };
    let policy = PicklePolicy::default();
    let mut ctx = Ctx::new(&limits, &policy);
    let mut cur = std::io::Cursor::new(data);
    if let Ok(mut r) = Reader::new(&mut cur, data.len() as u64) {
        let mut p = Parsed::new(Format::Onnx, None);
        let _ = modelwatch::artifact::formats::onnx::parse(&mut r, &mut ctx, &mut p);
    }
});
