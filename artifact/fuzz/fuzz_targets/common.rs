//! What the parser fuzz targets share: a reader over the input and a parsing context with
//! small bounds, so that the fuzzer reaches the limits rather than running out of input.

use modelwatch_artifact::{
    Limits, PicklePolicy,
    formats::{Ctx, Parsed, spec::FillFn},
    io::Reader,
    report::Format,
};

pub fn with_reader(data: &[u8], parse: impl FnOnce(&mut Reader<'_>, &mut Ctx<'_>)) {
    let limits = Limits { max_parse_bytes: 1 << 20, max_pickle_bytes: 1 << 20, ..Limits::default() };
    let policy = PicklePolicy::default();
    let mut ctx = Ctx::new(&limits, &policy);
    let mut cur = std::io::Cursor::new(data);
    if let Ok(mut r) = Reader::new(&mut cur, data.len() as u64) {
        parse(&mut r, &mut ctx);
    }
}

/// Runs a parser that fills a record of `format` as it goes (the protobuf readers, called
/// directly, without the classification).
#[allow(dead_code, reason = "each target compiles this file; only the protobuf ones call this")]
pub fn with_filling_parser(data: &[u8], format: Format, parse: FillFn) {
    with_reader(data, |r, ctx| {
        let mut p = Parsed::new(format, None);
        let _ = parse(r, ctx, &mut p);
    });
}
