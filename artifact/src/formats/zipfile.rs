//! Zip containers: PyTorch checkpoints (`*/data.pkl`, TorchScript), NumPy `.npz` and Keras
//! v3 `.keras`, plus the pickles, arrays and zips hidden inside any zip.
//!
//! Uses the `zip` crate for the container itself and adds what hostile input needs on top: the
//! entry count is checked from the end-of-central-directory record before the crate reads the
//! directory; every entry is read through a guard that stops a decompression ratio above the
//! configured one, the analysis deadline and, for everything but pickles (bounded by the pickle
//! budget), the artifact's inflate budget (`max_parse_bytes` in all, nested zips included);
//! nested zips are
//! opened only to `max_nesting`; CRCs are ignored (a lenient loader ignores them too, and a
//! scanner that gives up on a bad CRC is a known bypass). Every entry is looked at, not just
//! the one a loader would pick by name: the crate keeps one entry per name, so the central
//! directory is walked again for the others; entries that share one local header are read
//! once per way of examining them (a loader picks an entry by name, and the name decides
//! whether it is unpickled, read as a Keras configuration or sniffed). What could not be
//! looked at leaves the pickle judgement incomplete.

use std::{
    collections::HashSet,
    io::{self, BufReader, Read, Seek, SeekFrom},
};

use zip::{ZipArchive, read::ZipReadOptions};

use crate::{
    formats::{Ctx, Parsed, keras_h5, numpy},
    io::{DEADLINE_CHECK_BYTES, Deadline, PResult, ParseError, Reader, clean_text, read_bounded},
    report::{Format, Severity, codes},
};

/// The configuration files of a `.keras` zip are read at most this large.
const MAX_KERAS_CONFIG: u64 = 64 << 20;

/// The buffer between an entry's inflater and the pickle walker, which reads byte by byte: a
/// one-byte read of an inflating entry costs a pass through the decompressor.
const WALK_BUF: usize = 64 * 1024;

/// Reads through an entry, failing once the output outgrows its compressed size by more than
/// the allowed ratio (a zip bomb), outgrows `cap` (what the artifact may still inflate), or the
/// analysis deadline passes.
struct RatioGuard<'a> {
    inner: &'a mut dyn Read,
    read: u64,
    ratio_max: u64,
    cap: u64,
    deadline: Deadline,
    next_check: u64,
}

impl<'a> RatioGuard<'a> {
    fn new(inner: &'a mut dyn Read, compressed: u64, ratio: u64, cap: u64, deadline: &Deadline) -> Self {
        Self {
            inner,
            read: 0,
            ratio_max: compressed.saturating_mul(ratio).saturating_add(64 * 1024),
            cap,
            deadline: deadline.clone(),
            next_check: 0,
        }
    }

    /// Whether the last read failed on `cap` (rather than on the ratio or the input).
    fn capped(&self) -> bool {
        self.read >= self.cap
    }
}

impl Read for RatioGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.cap && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "the artifact's inflate budget is spent after {} bytes of this entry",
                self.read
            )));
        }
        if self.read >= self.next_check {
            self.deadline.check().map_err(io::Error::other)?;
            self.next_check = self.read.saturating_add(DEADLINE_CHECK_BYTES);
        }
        let want = buf.len().min(usize::try_from(self.cap - self.read).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.ratio_max {
            return Err(io::Error::other(format!(
                "entry inflates beyond {} bytes (decompression ratio bound)",
                self.ratio_max
            )));
        }
        Ok(n)
    }
}

/// The end-of-central-directory facts this module needs.
struct Eocd {
    /// Where the central directory should start, from the record's own position and the
    /// directory size (this absorbs data prepended to the archive).
    cd_start: u64,
    entries: u64,
}

/// Checks the declared entry count from the end-of-central-directory record (and its zip64
/// form) before the `zip` crate reads the directory.
fn precheck(r: &mut Reader<'_>, max_entries: usize) -> PResult<Option<Eocd>> {
    let len = r.len();
    let tail = len.min(65_557);
    r.seek_to(len - tail)?;
    let buf = r.read_vec(tail, tail, "zip tail")?;
    let Some(i) = buf.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None); // Let the zip crate produce its error.
    };
    let Some(eocd) = buf.get(i..i + 22) else {
        return Err(ParseError::Truncated("zip end-of-directory record".into()));
    };
    let le32 = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let le64 = |b: &[u8]| b.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(u64::MAX, u64::from_le_bytes);
    let mut entries = u64::from(u16::from_le_bytes([eocd[10], eocd[11]]));
    let eocd_pos = len - tail + i as u64;
    let mut cd_start = eocd_pos.checked_sub(le32(&eocd[12..16]));
    if i >= 20 && buf.get(i - 20..i - 16) == Some(b"PK\x06\x07") {
        let off = le64(&buf[i - 12..i - 4]);
        if off < len {
            r.seek_to(off)?;
            let rec = r.read_vec(56.min(len - off), 56, "zip64 record")?;
            if rec.len() == 56 && rec.starts_with(b"PK\x06\x06") {
                if entries == 0xFFFF {
                    entries = le64(&rec[32..40]);
                }
                // The zip64 record sits right after the directory.
                cd_start = (len - tail + i as u64 - 20).checked_sub(56).and_then(|p| p.checked_sub(le64(&rec[40..48])));
            }
        }
    }
    if entries > max_entries as u64 {
        return Err(ParseError::limit(format!("zip with {entries} entries"), max_entries as u64));
    }
    Ok(cd_start.map(|cd_start| Eocd { cd_start, entries }))
}

/// Whether `head` opens a zip: a local file header, or the end record of an empty archive.
pub fn sniff(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    match archive(r, "", 1, ctx) {
        Ok(p) => Ok(p),
        Err(e) => {
            // The central directory is unreadable (typically a cut download). The first local
            // header still names the first entry, which says what the archive was meant to be.
            let guess = first_entry_name(r).map_or(Format::Unknown, |n| guess_from_name(&n));
            super::malformed(ctx, guess, &e);
            Ok(Parsed::new(guess, Some("zip")))
        }
    }
}

fn first_entry_name(r: &mut Reader<'_>) -> Option<String> {
    r.seek_to(0).ok()?;
    let h = r.array::<30>().ok()?;
    if &h[..4] != b"PK\x03\x04" {
        return None;
    }
    let n = u16::from_le_bytes([h[26], h[27]]);
    let name = r.read_vec(u64::from(n), 1024, "zip entry name").ok()?;
    Some(String::from_utf8_lossy(&name).into_owned())
}

fn guess_from_name(name: &str) -> Format {
    if name.split_once('/').is_some_and(|(root, rest)| {
        !root.is_empty()
            && (rest == "data.pkl" || rest == "version" || rest == "byteorder" || rest.starts_with("data/"))
    }) {
        Format::Pytorch
    } else if has_extension(name, "npy") {
        Format::Numpy
    } else if matches!(name, "config.json" | "metadata.json" | "model.weights.h5") {
        Format::Keras
    } else {
        Format::Unknown
    }
}

struct Entry {
    index: usize,
    name: String,
    size: u64,
    compressed: u64,
    is_dir: bool,
    header: u64,
    central: u64,
}

fn is_torch_pickle(name: &str) -> bool {
    // torch.load reads `<root>/data.pkl` whatever the root directory is called.
    matches!(name.split_once('/'), Some((root, "data.pkl")) if !root.is_empty())
}

fn is_torch_storage(name: &str) -> bool {
    let mut parts = name.split('/');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(_), Some("data"), Some(n), None) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn open<'z, R: Read + Seek>(za: &'z mut ZipArchive<R>, i: usize) -> Result<zip::read::ZipFile<'z, R>, String> {
    za.by_index_with_options(i, ZipReadOptions::new().ignore_crc32(true)).map_err(|e| e.to_string())
}

/// What the archive is, for the entries that depend on it.
#[derive(Clone, Copy)]
struct Kind {
    torch: bool,
    keras: bool,
}

/// How an entry is examined, as its name decides.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// Named as a pickle: unpickled whatever its first bytes are.
    Pickle,
    KerasConfig,
    KerasMetadata,
    /// Anything else: sniffed for a pickle, an array or a zip.
    Content,
}

/// Whether an entry name ends in `.ext`, in any case: a loader that matches one spelling is no
/// reason for the scanner to miss the others.
fn has_extension(name: &str, ext: &str) -> bool {
    std::path::Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn role(kind: Kind, name: &str) -> Role {
    if has_extension(name, "pkl") || has_extension(name, "pickle") {
        Role::Pickle
    } else if kind.keras && name == "config.json" {
        Role::KerasConfig
    } else if kind.keras && name == "metadata.json" {
        Role::KerasMetadata
    } else {
        Role::Content
    }
}

/// Totals over the `.npy` members.
#[derive(Default)]
struct NpzStats {
    params: u64,
    dtypes: std::collections::BTreeSet<String>,
}

fn archive(r: &mut Reader<'_>, prefix: &str, depth: u32, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let eocd = precheck(r, ctx.limits.max_zip_entries)?;
    r.seek_to(0)?;
    let (entries, duplicates) = {
        let za = ZipArchive::new(&mut *r).map_err(|e| ParseError::invalid(format!("zip container: {e}")))?;
        let n = za.len();
        if n > ctx.limits.max_zip_entries {
            return Err(ParseError::limit(format!("zip with {n} entries"), ctx.limits.max_zip_entries as u64));
        }
        let mut entries = Vec::with_capacity(n);
        for index in 0..n {
            let e = za.by_index_data(index).map_err(|e| ParseError::invalid(format!("zip entry {index}: {e}")))?;
            entries.push(Entry {
                index,
                name: String::from_utf8_lossy(e.name_raw()).into_owned(),
                size: e.size(),
                compressed: e.compressed_size(),
                is_dir: e.is_dir(),
                header: e.header_start(),
                central: e.central_header_start(),
            });
        }
        (entries, za.has_duplicate_names())
    };
    // Entries the crate dropped because a later one has the same name.
    let mut hidden = Vec::new();
    if duplicates {
        ctx.finding(
            Severity::High,
            codes::ZIP_DUPLICATE_NAMES,
            format!(
                "zip {}has several entries with the same name: loaders and scanners may read different ones",
                label(prefix, "")
            ),
        );
        match eocd.as_ref().and_then(|e| hidden_records(r, e, &entries)) {
            Some(h) => hidden = h,
            None => ctx.pickle_unreadable(
                &label(prefix, "<duplicate entries>"),
                "the central directory could not be walked for them",
            ),
        }
    }

    let files: Vec<&Entry> = entries.iter().filter(|e| !e.is_dir).collect();
    let names = || files.iter().map(|e| e.name.as_str()).chain(hidden.iter().map(|h| h.name.as_str()));
    let torch = names().any(is_torch_pickle);
    let npz = !files.is_empty() && names().all(|n| has_extension(n, "npy"));
    let keras = names().any(|n| n == "config.json") && names().any(|n| n == "model.weights.h5" || n == "metadata.json");
    let kind = Kind { torch, keras };

    let mut p = if torch {
        let script = names()
            .any(|n| n.split_once('/').is_some_and(|(_, rest)| rest == "constants.pkl" || rest.starts_with("code/")));
        let mut p = Parsed::new(Format::Pytorch, Some(if script { "torchscript" } else { "zip" }));
        let storages: Vec<&&Entry> = files.iter().filter(|e| is_torch_storage(&e.name)).collect();
        p.metadata.tensor_count = Some(storages.len() as u64);
        p.metadata
            .properties
            .insert("storage_bytes".into(), storages.iter().fold(0u64, |a, e| a.saturating_add(e.size)).to_string());
        p
    } else if npz {
        Parsed::new(Format::Numpy, Some("npz"))
    } else if keras {
        Parsed::new(Format::Keras, None)
    } else {
        Parsed::new(Format::Unknown, Some("zip"))
    };
    p.metadata.entries = Some((entries.len() + hidden.len()) as u64);

    let mut npz_stats = NpzStats::default();
    let mut headers = HashSet::new();
    {
        let mut za = ZipArchive::new(&mut *r).map_err(|e| ParseError::invalid(format!("zip container: {e}")))?;
        for e in &files {
            if ctx.deadline.hit().is_some() {
                break; // every read fails from here on; `identify_until` reports the cut
            }
            if !admit(ctx, kind, &e.name, e.header, &mut headers, prefix) {
                if ctx.inflate_left() == 0 {
                    break;
                }
                continue;
            }
            let where_ = label(prefix, &e.name);
            match open(&mut za, e.index) {
                Ok(mut f) => examine(ctx, &mut f, &e.name, e.compressed, &where_, depth, kind, &mut npz_stats, &mut p),
                Err(why) => ctx.pickle_unreadable(&where_, &why),
            }
        }
    }
    for h in &hidden {
        if ctx.deadline.hit().is_some() {
            break;
        }
        if !admit(ctx, kind, &h.name, h.header, &mut headers, prefix) {
            if ctx.inflate_left() == 0 {
                break;
            }
            continue;
        }
        let where_ = label(prefix, &format!("{} (duplicate)", h.name));
        match open_hidden(r, h) {
            Ok(mut za) => match open(&mut za, 0) {
                Ok(mut f) => examine(ctx, &mut f, &h.name, h.compressed, &where_, depth, kind, &mut npz_stats, &mut p),
                Err(why) => ctx.pickle_unreadable(&where_, &why),
            },
            Err(why) => ctx.pickle_unreadable(&where_, &why),
        }
    }
    if npz {
        p.metadata.tensor_count = Some(files.len() as u64);
        p.metadata.parameter_count = Some(npz_stats.params);
        p.metadata.dtypes = npz_stats.dtypes.into_iter().collect();
    }
    Ok(p)
}

/// Whether an entry is examined: not torch's raw storage, not a second name for a local
/// header already read the same way, and only while the inflate budget lasts (saying so once
/// it is spent).
fn admit(
    ctx: &mut Ctx<'_>,
    kind: Kind,
    name: &str,
    header: u64,
    headers: &mut HashSet<(u64, Role)>,
    prefix: &str,
) -> bool {
    if kind.torch && is_torch_storage(name) {
        return false; // raw tensor bytes: torch never unpickles them
    }
    // Aliases cost one read per role, not one per name; an alias read another way still is
    // (`readme` and `archive/data.pkl` on one header: torch unpickles the second).
    if !headers.insert((header, role(kind, name))) {
        return false;
    }
    if ctx.inflate_left() == 0 {
        budget_spent(ctx, &label(prefix, name), "it and the entries after it were not examined");
        return false;
    }
    true
}

/// Reports an entry left (partly) unread because the inflate budget ran out: a bound was hit,
/// and what the entry holds is unseen, so the pickle judgement cannot be complete.
fn budget_spent(ctx: &mut Ctx<'_>, where_: &str, what: &str) {
    ctx.finding(
        Severity::Medium,
        codes::LIMIT_EXCEEDED,
        format!(
            "the artifact's inflate budget ({} bytes) is spent: zip entry {where_}: {what}",
            ctx.limits.max_parse_bytes
        ),
    );
    ctx.pickle_unreadable(where_, &format!("the artifact's inflate budget is spent; {what}"));
}

/// Reads one entry and walks whatever in it a loader could unpickle.
#[allow(clippy::too_many_arguments)]
fn examine(
    ctx: &mut Ctx<'_>,
    f: &mut dyn Read,
    name: &str,
    compressed: u64,
    where_: &str,
    depth: u32,
    kind: Kind,
    npz: &mut NpzStats,
    p: &mut Parsed,
) {
    let limits = *ctx.limits;
    let role = role(kind, name);
    if role == Role::Pickle {
        // Pickle bytes are bounded by the pickle budget, not the inflate budget.
        let mut g = RatioGuard::new(f, compressed, limits.max_zip_ratio, u64::MAX, &ctx.deadline);
        ctx.scan_pickle(where_, &mut BufReader::with_capacity(WALK_BUF, &mut g));
        return;
    }
    let mut g = RatioGuard::new(f, compressed, limits.max_zip_ratio, ctx.inflate_left(), &ctx.deadline);
    if role != Role::Content {
        let read = read_bounded(&mut g, limits.max_parse_bytes.min(MAX_KERAS_CONFIG), "keras config");
        ctx.spend_inflate(g.read);
        match read {
            Ok(bytes) if role == Role::KerasConfig => keras_h5::keras_config(&bytes, ctx, &mut p.metadata),
            Ok(bytes) => keras_h5::keras_metadata(&bytes, &mut p.metadata),
            Err(err) => ctx.finding(Severity::Medium, codes::LIMIT_EXCEEDED, format!("{where_}: {err}")),
        }
        return;
    }
    // Anything else: a pickle, an array or a zip in disguise?
    let mut head = [0u8; 8];
    let got = read_upto(&mut g, &mut head);
    let head = &head[..got];
    if got < 8 && g.capped() {
        ctx.spend_inflate(g.read);
        budget_spent(ctx, where_, "it was not examined");
        return;
    }
    if head.starts_with(&[0x80]) && head.get(1).is_some_and(|v| (2..=5).contains(v)) {
        ctx.spend_inflate(g.read);
        g.cap = u64::MAX;
        let mut chained = BufReader::with_capacity(WALK_BUF, head.chain(&mut g));
        ctx.scan_pickle(where_, &mut chained);
    } else if head.starts_with(b"\x93NUMPY") {
        // numpy.load reads any member that starts with the magic as an array, whatever its
        // name and whatever the other members are.
        let mut chained = head.chain(&mut g);
        // The preamble is longer than `head`, so after it `g` is where the data starts.
        let raw = numpy::read_raw(&mut chained);
        ctx.spend_inflate(g.read);
        let objects = match raw.map(|raw| numpy::parse_header(&raw)) {
            Ok(Ok(h)) => {
                npz.params =
                    npz.params.saturating_add(h.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).unwrap_or(0));
                if npz.dtypes.len() < 64 {
                    npz.dtypes.insert(h.descr.clone());
                }
                h.objects
            }
            Ok(Err(err)) => {
                ctx.finding(Severity::Medium, codes::MALFORMED, format!("npy member {where_}: {err}"));
                numpy::Objects::Maybe
            }
            Err(err) => {
                ctx.finding(Severity::Medium, codes::MALFORMED, format!("npy member {where_}: {err}"));
                if g.capped() {
                    budget_spent(ctx, where_, "its header was not read to its end");
                }
                return;
            }
        };
        g.cap = u64::MAX;
        let mut data = BufReader::with_capacity(WALK_BUF, &mut g);
        numpy::scan_data(ctx, &format!("{where_} (object array)"), objects, &mut data);
    } else if head.starts_with(b"PK\x03\x04") {
        if depth >= limits.max_nesting {
            ctx.spend_inflate(g.read);
            ctx.finding(
                Severity::Medium,
                codes::LIMIT_EXCEEDED,
                format!("zip {where_} is nested deeper than {} levels and was not opened", limits.max_nesting),
            );
            // What it holds is unseen: the pickle verdict cannot be `safe`.
            ctx.pickle_unreadable(where_, "nested too deep");
            return;
        }
        let mut chained = head.chain(&mut g);
        let bytes = read_bounded(&mut chained, limits.max_parse_bytes, "nested zip");
        ctx.spend_inflate(g.read);
        match bytes {
            Ok(bytes) => {
                let mut cur = io::Cursor::new(bytes);
                let nested_len = cur.get_ref().len() as u64;
                let nested = ctx
                    .reader(&mut cur, nested_len)
                    .and_then(|mut nr| archive(&mut nr, &format!("{where_}!"), depth + 1, ctx));
                if let Err(err) = nested {
                    ctx.finding(Severity::Medium, codes::MALFORMED, format!("nested zip {where_}: {err}"));
                }
            }
            Err(err) => {
                ctx.finding(Severity::Medium, codes::LIMIT_EXCEEDED, format!("nested zip {where_}: {err}"));
                ctx.pickle_unreadable(where_, &format!("the nested zip was not opened: {err}"));
            }
        }
    } else {
        ctx.spend_inflate(g.read);
    }
}

fn read_upto(r: &mut dyn Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

fn label(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", clean_text(name.as_bytes(), 200))
}

/// A central-directory record the `zip` crate did not keep (an earlier entry of a duplicated
/// name): its record bytes, rewritten to stand alone.
struct Hidden {
    name: String,
    header: u64,
    compressed: u64,
    /// The record as a one-entry central directory, local offset made absolute.
    record: Vec<u8>,
}

/// The records between the directory start and its end that the crate's entries do not
/// account for. `None` when the directory cannot be walked consistently with the crate's view.
fn hidden_records(r: &mut Reader<'_>, eocd: &Eocd, kept: &[Entry]) -> Option<Vec<Hidden>> {
    let kept_at: std::collections::HashMap<u64, u64> = kept.iter().map(|e| (e.central, e.header)).collect();
    let mut pos = eocd.cd_start;
    let mut raw = Vec::new();
    for _ in 0..eocd.entries {
        r.seek_to(pos).ok()?;
        let fixed = r.array::<46>().ok()?;
        if &fixed[..4] != b"PK\x01\x02" {
            return None;
        }
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([fixed[i], fixed[i + 1]]));
        let u32_at = |i: usize| u64::from(u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]));
        let (name_len, extra_len, comment_len) = (u16_at(28), u16_at(30), u16_at(32));
        let name = r.read_vec(name_len, 0xFFFF, "zip name").ok()?;
        let extra = r.read_vec(extra_len, 0xFFFF, "zip extra").ok()?;
        // zip64 extra: the 64-bit sizes and offset, each present only when its field is saturated.
        let (mut usize_, mut csize, mut local) = (u32_at(24), u32_at(20), u32_at(42));
        let mut other_extra = Vec::new();
        let mut i = 0;
        while i + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[i], extra[i + 1]]);
            let n = usize::from(u16::from_le_bytes([extra[i + 2], extra[i + 3]]));
            let body = extra.get(i + 4..i + 4 + n)?;
            if id == 1 {
                let mut b = body;
                let mut take = |v: &mut u64| {
                    if *v == 0xFFFF_FFFF && b.len() >= 8 {
                        *v = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
                        b = &b[8..];
                    }
                };
                take(&mut usize_);
                take(&mut csize);
                take(&mut local);
            } else {
                other_extra.extend_from_slice(&extra[i..i + 4 + n]);
            }
            i += 4 + n;
        }
        raw.push((pos, fixed, name, other_extra, usize_, csize, local));
        pos = pos.checked_add(46 + name_len + extra_len + comment_len)?;
    }
    // Every record the crate kept must be among these, at the same place.
    let walked: HashSet<u64> = raw.iter().map(|x| x.0).collect();
    if !kept_at.keys().all(|k| walked.contains(k)) {
        return None;
    }
    // The crate's local offsets include the archive's offset; take it from a kept record.
    let shift = raw.iter().find_map(|(at, .., local)| kept_at.get(at).map(|h| h.wrapping_sub(*local))).unwrap_or(0);
    let mut out = Vec::new();
    for (at, fixed, name, other_extra, usize_, csize, local) in raw {
        if kept_at.contains_key(&at) {
            continue;
        }
        let header = local.wrapping_add(shift);
        let mut z64 = Vec::new();
        for v in [usize_, csize, header] {
            z64.extend_from_slice(&v.to_le_bytes());
        }
        let mut rec = fixed.to_vec();
        rec[20..24].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        rec[24..28].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        rec[42..46].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        rec[30..32].copy_from_slice(&u16::try_from(other_extra.len() + 4 + z64.len()).ok()?.to_le_bytes());
        rec[32..34].copy_from_slice(&0u16.to_le_bytes());
        rec.extend_from_slice(&name);
        rec.extend_from_slice(&[1, 0, 24, 0]);
        rec.extend_from_slice(&z64);
        rec.extend_from_slice(&other_extra);
        out.push(Hidden { name: String::from_utf8_lossy(&name).into_owned(), header, compressed: csize, record: rec });
    }
    Some(out)
}

/// The archive bytes up to `cut`, followed by `tail`: a view in which a hidden record is the
/// whole central directory, so that the `zip` crate reads that entry as it reads any other.
struct Spliced<'r, 'a> {
    r: &'r mut Reader<'a>,
    cut: u64,
    tail: Vec<u8>,
    pos: u64,
}

impl Read for Spliced<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.cut {
            let n = buf.len().min(usize::try_from(self.cut - self.pos).unwrap_or(usize::MAX));
            self.r.seek(SeekFrom::Start(self.pos))?;
            let got = self.r.read(&mut buf[..n])?;
            self.pos += got as u64;
            return Ok(got);
        }
        let off = usize::try_from(self.pos - self.cut).unwrap_or(usize::MAX);
        let rest = self.tail.get(off..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Spliced<'_, '_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.cut + self.tail.len() as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

fn open_hidden<'r, 'a>(r: &'r mut Reader<'a>, h: &Hidden) -> Result<ZipArchive<Spliced<'r, 'a>>, String> {
    // The data ends where the real central directory would start; the view ends with this
    // one record and a zip64 end of directory pointing at it.
    let cut = r.len();
    let mut tail = h.record.clone();
    let cd_len = tail.len() as u64;
    let z64_at = cut + cd_len;
    tail.extend_from_slice(b"PK\x06\x06");
    tail.extend_from_slice(&44u64.to_le_bytes());
    tail.extend_from_slice(&[45, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    tail.extend_from_slice(&1u64.to_le_bytes());
    tail.extend_from_slice(&1u64.to_le_bytes());
    tail.extend_from_slice(&cd_len.to_le_bytes());
    tail.extend_from_slice(&cut.to_le_bytes());
    tail.extend_from_slice(b"PK\x06\x07\0\0\0\0");
    tail.extend_from_slice(&z64_at.to_le_bytes());
    tail.extend_from_slice(&1u32.to_le_bytes());
    tail.extend_from_slice(b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\0\0");
    ZipArchive::new(Spliced { r, cut, tail, pos: 0 }).map_err(|e| format!("duplicate entry: {e}"))
}
