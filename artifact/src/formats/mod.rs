//! Format identification and header parsing.
//!
//! [`identify`] looks at the content only — magic bytes and structure, never the file name —
//! and hands the source to the one parser whose signature matched, trying the rows of the
//! format table ([`spec::FORMATS`]) in order. Each parser is bounded by [`crate::Limits`],
//! returns a [`ParseError`] rather than panicking, and reads only the headers it needs (tensor
//! data is skipped by seeking). When a signature matches but the structure behind it is
//! broken, the format is still reported, with a `malformed` finding: a truncated GGUF is still
//! a GGUF, and saying so is more useful than "unknown". Content no row recognises is told
//! apart here: a Git LFS pointer, a protocol-0 pickle, text, or unknown.
//!
//! The parsers (one file per format, `protobuf` the wire reader the protobuf formats share)
//! are public so that the fuzz targets (`artifact/fuzz`) can drive each one directly on byte
//! slices; [`Ctx`] is the state they share during one identification.

pub mod coreml;
mod ctx;
pub mod gguf;
pub mod keras_h5;
pub mod numpy;
pub mod onnx;
pub mod pickle;
pub mod protobuf;
pub mod pytorch;
pub mod safetensors;
pub mod savedmodel;
pub mod spec;
pub mod tflite;
pub mod zipfile;

pub use ctx::Ctx;
pub use spec::{has_model_extension, may_carry_pickles, model_extensions, named_like_code_carrier};

use crate::{
    Limits,
    io::{Deadline, ParseError, ReadSeek, Reader},
    pickle_scan::PicklePolicy,
    report::{Finding, Format, ModelMetadata, PickleVerdict, Severity, codes},
};
use spec::{Detect, FORMATS, HEAD};

/// What the content says, before digest and policy are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    pub format: Format,
    pub variant: Option<String>,
    pub metadata: ModelMetadata,
    pub pickle: Option<PickleVerdict>,
    pub findings: Vec<Finding>,
}

/// A parser's answer: the format it recognised plus what it found.
pub struct Parsed {
    pub format: Format,
    pub variant: Option<String>,
    pub metadata: ModelMetadata,
}

impl Parsed {
    pub fn new(format: Format, variant: Option<&str>) -> Self {
        Self { format, variant: variant.map(str::to_owned), metadata: ModelMetadata::default() }
    }
}

/// Turns a parse failure of a recognised format into a finding.
pub fn malformed(ctx: &mut Ctx<'_>, format: Format, e: &ParseError) {
    if matches!(e, ParseError::Expired(_)) {
        // Not the content's fault: `identify_until` reports the cut once.
        return;
    }
    let code = if e.is_limit() { codes::LIMIT_EXCEEDED } else { codes::MALFORMED };
    ctx.finding(Severity::Medium, code, format!("{format} content is not valid: {e}"));
}

/// Identifies `src` (of length `len`) by content, within the limits' time budget.
pub fn identify(src: &mut dyn ReadSeek, len: u64, limits: &Limits, policy: &PicklePolicy) -> Identified {
    identify_until(src, len, limits, policy, Deadline::after(limits.analysis_budget(), None))
}

/// [`identify`] that ends at `deadline`. Cut short, the result says so (an
/// `analysis_incomplete` finding) and a pickle judgement is never `safe`.
pub fn identify_until(
    src: &mut dyn ReadSeek,
    len: u64,
    limits: &Limits,
    policy: &PicklePolicy,
    deadline: Deadline,
) -> Identified {
    let mut ctx = Ctx::with_deadline(limits, policy, deadline);
    let parsed = match ctx.reader(src, len) {
        Ok(mut r) => dispatch(&mut r, &mut ctx),
        Err(e) => {
            ctx.finding(Severity::Medium, codes::MALFORMED, format!("cannot read: {e}"));
            Parsed::new(Format::Unknown, None)
        }
    };
    if let Some(why) = ctx.deadline.hit() {
        ctx.finding(
            Severity::Medium,
            codes::ANALYSIS_INCOMPLETE,
            format!("the analysis stopped before the end of the content: {why}; what it did not reach is unseen"),
        );
        // A pickle that was never reached, or whose walk the deadline cut, must not leave the
        // artifact judged safe (nor unjudged, where the format can carry one).
        if ctx.pickles_complete() && may_carry_pickles(parsed.format) {
            ctx.pickle_unreadable("<rest of the content>", &why.to_string());
        }
    }
    let pickle = ctx.pickle_verdict();
    Identified {
        format: parsed.format,
        variant: parsed.variant,
        metadata: parsed.metadata,
        pickle,
        findings: ctx.findings,
    }
}

fn dispatch(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> Parsed {
    let len = r.len();
    if len == 0 {
        ctx.finding(Severity::Info, codes::NOT_A_MODEL, "the file is empty");
        return Parsed::new(Format::NotAModel, Some("empty"));
    }
    let head = match r.peek_upto(HEAD) {
        Ok(h) => h,
        Err(e) => {
            ctx.finding(Severity::Medium, codes::MALFORMED, format!("cannot read: {e}"));
            return Parsed::new(Format::Unknown, None);
        }
    };
    if let Some(p) = by_signature(r, ctx, &head) {
        return p;
    }
    // Protobuf-based formats have no magic; their structure decides. All of them open with
    // field 1 as a varint (tag 0x08).
    if head.first() == Some(&0x08)
        && let Some(p) = by_protobuf_shape(r, ctx)
    {
        return p;
    }
    let text = text_kind(&head);
    if text == Some("git_lfs_pointer") {
        let oid = std::str::from_utf8(&head)
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("oid sha256:")))
            .map(|s| s.trim().chars().take(64).collect::<String>());
        ctx.finding(
            Severity::Low,
            codes::NOT_A_MODEL,
            format!(
                "Git LFS pointer, not the model (content not downloaded){}",
                oid.map(|o| format!("; it names sha256 {o}")).unwrap_or_default()
            ),
        );
        return Parsed::new(Format::NotAModel, text);
    }
    // Protocol-0/1 pickles have no signature (and are text): walk them before calling the
    // content text or unknown.
    if r.seek_to(0).is_ok()
        && let Some(p) = pickle::parse_unframed(r, ctx)
    {
        return p;
    }
    if let Some(kind) = text {
        ctx.finding(Severity::Info, codes::NOT_A_MODEL, format!("the content is {kind}, not a model"));
        return Parsed::new(Format::NotAModel, Some(kind));
    }
    Parsed::new(Format::Unknown, None)
}

/// The first row whose signature `head` (or the file) matches, parsed; `None` when none does.
fn by_signature(r: &mut Reader<'_>, ctx: &mut Ctx<'_>, head: &[u8]) -> Option<Parsed> {
    let (spec, parse) = FORMATS.iter().find_map(|s| match s.detect {
        Detect::Signature { sniff, parse } if sniff.matches(head, r) => Some((s, parse)),
        _ => None,
    })?;
    let format = spec.format();
    // See `FormatSpec::leading_pickle`. A tar header can carry any magic in its name field and
    // is still opened as a tar, so a tar counts whichever row matched. A zip is spared: those
    // loaders fail on its first byte (`P` needs a persistent-id hook) and torch reads zips as
    // zips.
    let leading = spec.leading_pickle || pytorch::is_tar(head);
    if leading && r.seek_to(0).is_ok() {
        ctx.sniff_pickle("<file>", r);
    }
    Some(match r.seek_to(0).and_then(|_| parse(r, ctx)) {
        Ok(p) => p,
        Err(e) => {
            malformed(ctx, format, &e);
            Parsed::new(format, None)
        }
    })
}

/// The first protobuf row whose shape the top-level fields have, parsed; `None` when none has.
fn by_protobuf_shape(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> Option<Parsed> {
    let top = protobuf::top_fields(r).ok()?;
    // Garbage that happens to start with 0x08 fails within a field or two; the version in
    // field 1 must also be plausible (ONNX IR, Core ML spec and SavedModel schema versions are
    // small numbers).
    if (top.error.is_some() && top.fields.len() < 2) || !top.field1_varint.is_some_and(|v| (1..=64).contains(&v)) {
        return None;
    }
    let (spec, parse) = FORMATS.iter().find_map(|s| match s.detect {
        Detect::Protobuf { shape, parse } if shape(&top) => Some((s, parse)),
        _ => None,
    })?;
    let format = spec.format();
    let mut p = Parsed::new(format, None);
    let result = r.seek_to(0).and_then(|_| parse(r, ctx, &mut p));
    if let Some(e) = result.err().or(top.error) {
        malformed(ctx, format, &e);
    }
    Some(p)
}

/// What kind of text `head` is, if it is text.
fn text_kind(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"version https://git-lfs.github.com/spec/") {
        return Some("git_lfs_pointer");
    }
    // A multi-byte character may be cut at the end of the head.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 >= head.len(),
    };
    let printable = head.iter().all(|&b| b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c));
    if !(valid && printable) {
        return None;
    }
    let t = String::from_utf8_lossy(head);
    let t = t.trim_start();
    let lower: String = t.chars().take(9).collect::<String>().to_ascii_lowercase();
    Some(if t.starts_with('{') || t.starts_with('[') {
        "json"
    } else if lower.starts_with("<html") || lower.starts_with("<!doctype") {
        "html"
    } else {
        "text"
    })
}
