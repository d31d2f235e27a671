//! Raw pickle streams: plain pickles, joblib dumps and the legacy (pre-zip) `torch.save`
//! stream, which is a run of pickles whose first value is a magic number. The opcode walk
//! itself lives in `artifact::pickle_scan`; this module only decides what the stream is.

use crate::{
    formats::{Ctx, Parsed},
    io::{PResult, Reader},
    pickle_scan::{Import, Walk},
    report::{Format, Severity, codes},
};

/// Content that starts with `PROTO 2..=5`.
pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let walk = ctx.scan_pickle("<file>", r);
    // The legacy torch stream is magic, protocol, sys_info, the object, the storage keys.
    if walk.torch_legacy_magic && walk.complete() && walk.pickles < 5 {
        ctx.finding(
            Severity::Medium,
            codes::MALFORMED,
            format!("legacy torch stream holds {} of its 5 pickles (truncated?)", walk.pickles),
        );
    }
    Ok(describe(&walk))
}

/// Content without a `PROTO` opcode: a protocol-0/1 pickle only if walking shows one.
pub fn parse_unframed(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> Option<Parsed> {
    let walk = ctx.sniff_pickle("<file>", r)?;
    let mut p = describe(&walk);
    if p.variant.is_none() {
        p.variant = Some("protocol_0".into());
    }
    Some(p)
}

fn describe(walk: &Walk) -> Parsed {
    let joblib =
        walk.imports.iter().any(|i| matches!(i, Import::Named { module, .. } if module.starts_with("joblib.")));
    let mut p = if walk.torch_legacy_magic {
        Parsed::new(Format::Pytorch, Some("legacy"))
    } else if joblib {
        Parsed::new(Format::Pickle, Some("joblib"))
    } else {
        Parsed::new(Format::Pickle, None)
    };
    p.metadata.format_version = walk.protocol.map(u64::from);
    p
}
