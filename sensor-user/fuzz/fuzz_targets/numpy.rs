//! Fuzz target: the .npy header reader (and object-array pickles).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch::artifact::{
    Limits, PicklePolicy,
    formats::{Ctx, Parsed},
    io::Reader,
};

fn run(data: &[u8], parse: fn(&mut Reader<'_>, &mut Ctx<'_>) -> Result<Parsed, modelwatch::artifact::io::ParseError>) {
    // Small bounds so that the fuzzer reaches them.
    let limits = Limits { max_parse_bytes: 1 << 20, max_pickle_bytes: 1 << 20, ..Limits::default() };
    let policy = PicklePolicy::default();
    let mut ctx = Ctx::new(&limits, &policy);
    let mut cur = std::io::Cursor::new(data);
    if let Ok(mut r) = Reader::new(&mut cur, data.len() as u64) {
        let _ = parse(&mut r, &mut ctx);
    }
}

fuzz_target!(|data: &[u8]| {
    run(data, modelwatch::artifact::formats::numpy::parse_npy);
});
