//! Format identification and header parsing.
//!
//! [`identify`] looks at the content only — magic bytes and structure, never the file name —
//! and hands the source to the one parser whose signature matched. Each parser is bounded by
//! [`Limits`], returns a [`ParseError`] rather than panicking, and reads only the headers it
//! needs (tensor data is skipped by seeking). When a signature matches but the structure
//! behind it is broken, the format is still reported, with a `malformed` finding: a truncated
//! GGUF is still a GGUF, and saying so is more useful than "unknown".
//!
//! The parsers are public so that the fuzz targets (`artifact/fuzz`) can drive each one
//! directly on byte slices.

pub mod coreml;
pub mod gguf;
pub mod keras_h5;
pub mod numpy;
pub mod onnx;
pub mod pickle;
pub mod protobuf;
pub mod pytorch;
pub mod safetensors;
pub mod savedmodel;
pub mod tflite;
pub mod zipfile;

use std::{collections::HashSet, io::Read};

use crate::{
    Limits,
    io::{ParseError, ReadSeek, Reader},
    pickle_scan::{self, Import, PicklePolicy},
    report::{Finding, Format, ModelMetadata, PickleVerdict, Safety, Severity, codes},
};

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

/// State shared by the parsers during one identification: the bounds, the pickle policy, the
/// pickle and inflate budgets left, the pickles walked so far and the findings.
pub struct Ctx<'a> {
    pub limits: &'a Limits,
    pub policy: &'a PicklePolicy,
    pub findings: Vec<Finding>,
    pickle_budget: u64,
    inflate_budget: u64,
    imports: Vec<Import>,
    import_set: HashSet<Import>,
    imports_unlisted: u64,
    malicious_unlisted: usize,
    streams: Vec<String>,
    complete: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(limits: &'a Limits, policy: &'a PicklePolicy) -> Self {
        Self {
            limits,
            policy,
            findings: Vec::new(),
            pickle_budget: limits.max_pickle_bytes,
            inflate_budget: limits.max_parse_bytes,
            imports: Vec::new(),
            import_set: HashSet::new(),
            imports_unlisted: 0,
            malicious_unlisted: 0,
            streams: Vec::new(),
            complete: true,
        }
    }

    pub fn finding(&mut self, severity: Severity, code: &str, message: impl Into<String>) {
        self.findings.push(Finding::new(severity, code, message));
    }

    /// Bytes that zip entries other than pickles may still inflate to, across the whole
    /// artifact (nested zips, configurations, NumPy headers): duplicates and nesting cannot
    /// multiply what one file costs. Pickle entries are bounded by the pickle budget.
    pub fn inflate_left(&self) -> u64 {
        self.inflate_budget
    }

    pub fn spend_inflate(&mut self, bytes: u64) {
        self.inflate_budget = self.inflate_budget.saturating_sub(bytes);
    }

    /// Walks the pickle stream(s) in `r`, labelled `label` in the report.
    pub fn scan_pickle(&mut self, label: &str, r: &mut dyn Read) -> pickle_scan::Walk {
        let walk = pickle_scan::walk(r, self.pickle_budget, self.policy);
        self.record_walk(label, walk.clone());
        walk
    }

    /// Walks a `storages` or `tensors` member of a legacy torch tar (`r[r.pos()..end]`).
    pub fn scan_torch_tar_member(&mut self, label: &str, member: pickle_scan::TarMember, r: &mut Reader<'_>, end: u64) {
        let walk = pickle_scan::walk_torch_tar_member(member, r, end, self.pickle_budget, self.policy);
        self.record_walk(label, walk);
    }

    /// Walks `r` from its start as a pickle, as any loader that unpickles the whole file
    /// would, and records the walk only if it shows a pickle: content in another format can
    /// start with one (a tar name field, an HDF5 user block). Returns the walk when recorded.
    pub fn sniff_pickle(&mut self, label: &str, r: &mut dyn Read) -> Option<pickle_scan::Walk> {
        let walk = pickle_scan::walk(r, self.pickle_budget, self.policy);
        if !pickle_scan::walk_shows_pickle(&walk) {
            // Not recorded, but read: it still spends the budget.
            self.pickle_budget = self.pickle_budget.saturating_sub(walk.bytes);
            return None;
        }
        self.record_walk(label, walk.clone());
        Some(walk)
    }

    /// Records a walk made elsewhere.
    fn record_walk(&mut self, label: &str, walk: pickle_scan::Walk) {
        self.pickle_budget = self.pickle_budget.saturating_sub(walk.bytes);
        if let Some(why) = walk.incomplete_reason(self.limits.max_pickle_bytes) {
            self.complete = false;
            self.finding(
                Severity::Medium,
                codes::PICKLE_INCOMPLETE,
                format!("pickle stream {label} could not be walked to its end: {why}"),
            );
        }
        for imp in walk.imports {
            if self.import_set.contains(&imp) {
                continue;
            }
            if self.import_set.len() < pickle_scan::MAX_GLOBALS {
                self.import_set.insert(imp.clone());
                self.imports.push(imp);
                continue;
            }
            // Past the bound the import is judged now: a malicious one is listed anyway.
            if self.imports_unlisted == 0 {
                self.complete = false;
                self.finding(
                    Severity::Medium,
                    codes::PICKLE_INCOMPLETE,
                    format!("the pickles import more than {} distinct globals; those past the bound were judged but are not listed", pickle_scan::MAX_GLOBALS),
                );
            }
            self.imports_unlisted += 1;
            if self.malicious_unlisted < 64 && self.policy.judge(&imp) == Safety::Malicious {
                self.malicious_unlisted += 1;
                self.imports.push(imp);
            }
        }
        if self.streams.len() < 256 {
            self.streams.push(label.to_owned());
        }
    }

    /// Marks the pickle judgement as incomplete without a walk (a stream that could not even
    /// be opened, such as an encrypted zip entry, or content that was not examined).
    pub fn pickle_unreadable(&mut self, label: &str, why: &str) {
        self.complete = false;
        if self.streams.len() < 256 {
            self.streams.push(label.to_owned());
        }
        self.finding(Severity::Medium, codes::PICKLE_INCOMPLETE, format!("pickle {label} could not be read: {why}"));
    }

    fn pickle_verdict(&mut self) -> Option<PickleVerdict> {
        if self.streams.is_empty() {
            return None;
        }
        let (verdict, offending) = pickle_scan::verdict(self.policy, &self.imports, self.complete);
        let mut globals: Vec<String> = self.imports.iter().map(Import::display).collect();
        globals.sort();
        globals.dedup();
        match verdict {
            Safety::Malicious => self.finding(
                Severity::Critical,
                codes::PICKLE_MALICIOUS,
                format!("loading this pickle runs code: it imports {}", offending.join(", ")),
            ),
            Safety::Suspicious if !offending.is_empty() => self.finding(
                Severity::High,
                codes::PICKLE_SUSPICIOUS,
                format!("pickle imports globals outside the allowlist: {}", offending.join(", ")),
            ),
            _ => {}
        }
        Some(PickleVerdict { verdict, globals, offending, streams: self.streams.clone(), complete: self.complete })
    }
}

/// Turns a parse failure of a recognised format into a finding.
pub fn malformed(ctx: &mut Ctx<'_>, format: Format, e: &ParseError) {
    let code = if e.is_limit() { codes::LIMIT_EXCEEDED } else { codes::MALFORMED };
    ctx.finding(Severity::Medium, code, format!("{format} content is not valid: {e}"));
}

const HEAD: usize = 4096;

/// Identifies `src` (of length `len`) by content.
pub fn identify(src: &mut dyn ReadSeek, len: u64, limits: &Limits, policy: &PicklePolicy) -> Identified {
    let mut ctx = Ctx::new(limits, policy);
    let parsed = match Reader::new(src, len) {
        Ok(mut r) => dispatch(&mut r, &mut ctx),
        Err(e) => {
            ctx.finding(Severity::Medium, codes::MALFORMED, format!("cannot read: {e}"));
            Parsed::new(Format::Unknown, None)
        }
    };
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
    // Each arm: (format, parser). The parser sees the reader at offset 0.
    type ParseFn = fn(&mut Reader<'_>, &mut Ctx<'_>) -> Result<Parsed, ParseError>;
    let candidate: Option<(Format, ParseFn)> = if head.starts_with(b"GGUF") {
        Some((Format::Gguf, gguf::parse))
    } else if head.starts_with(b"\x93NUMPY") {
        Some((Format::Numpy, numpy::parse_npy))
    } else if head.get(4..8) == Some(b"TFL3") {
        Some((Format::Tflite, tflite::parse))
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some((Format::Unknown, zipfile::parse))
    } else if pytorch::is_tar(&head) {
        Some((Format::Unknown, pytorch::parse_tar))
    } else if safetensors::sniff(&head) {
        Some((Format::Safetensors, safetensors::parse))
    } else if keras_h5::find_signature(r).ok().flatten().is_some() {
        // Before the pickle check: a user block may start with a pickle (walked below), and
        // Keras still loads the HDF5 model behind it.
        Some((Format::Hdf5, keras_h5::parse))
    } else if pickle_scan::starts_with_proto(&head) {
        Some((Format::Pickle, pickle::parse))
    } else {
        None
    };
    if let Some((format, parse)) = candidate {
        // pickle.load, joblib.load and torch.load's legacy path unpickle a file from its first
        // byte whatever format it is in, so a pickle can hide at the start of a tar's name
        // field or an HDF5 user block. Only there: other formats open with a magic or length
        // field that is no pickle, yet a walk of it can read far (an opcode that takes a line
        // reads to the next newline) — a benign safetensors whose length starts with `I`
        // would be read whole. A zip is spared: those loaders fail on its first byte (`P`
        // needs a persistent-id hook) and torch reads zips as zips.
        let leading = format == Format::Hdf5 || pytorch::is_tar(&head);
        if leading && r.seek_to(0).is_ok() {
            ctx.sniff_pickle("<file>", r);
        }
        return match r.seek_to(0).and_then(|_| parse(r, ctx)) {
            Ok(p) => p,
            Err(e) => {
                malformed(ctx, format, &e);
                Parsed::new(format, None)
            }
        };
    }
    // Protobuf-based formats have no magic; their structure decides.
    if head.first() == Some(&0x08)
        && let Some(p) = protobuf::classify_and_parse(r, ctx)
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
