//! Zip containers: PyTorch checkpoints (`*/data.pkl`, TorchScript), NumPy `.npz` and Keras
//! v3 `.keras`, plus the pickles and zips hidden inside any zip.
//!
//! Uses the `zip` crate for the container itself and adds what hostile input needs on top: the
//! entry count is checked from the end-of-central-directory record before the crate reads the
//! directory, every entry is read through a decompression-ratio guard, nested zips are opened
//! only to `max_nesting` and only up to `max_parse_bytes`, CRCs are ignored (a lenient loader
//! ignores them too, and a scanner that gives up on a bad CRC is a known bypass) and every
//! entry — duplicates included — is looked at, not just the one a loader would pick by name.

use std::io::{self, Cursor, Read, Seek};

use zip::{ZipArchive, read::ZipReadOptions};

use crate::artifact::{
    formats::{Ctx, Parsed, keras_h5, numpy},
    io::{PResult, ParseError, Reader, clean_text, read_bounded},
    report::{Format, Severity, codes},
};

/// Reads through an entry, failing once the output outgrows its compressed size by more than
/// the allowed ratio (a zip bomb), or outgrows `cap`.
struct RatioGuard<'a> {
    inner: &'a mut dyn Read,
    read: u64,
    max: u64,
}

impl<'a> RatioGuard<'a> {
    fn new(inner: &'a mut dyn Read, compressed: u64, ratio: u64, cap: u64) -> Self {
        let max = compressed.saturating_mul(ratio).saturating_add(64 * 1024).min(cap);
        Self { inner, read: 0, max }
    }
}

impl Read for RatioGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::other(format!(
                "entry inflates beyond {} bytes (decompression ratio or size bound)",
                self.max
            )));
        }
        Ok(n)
    }
}

/// Checks the declared entry count from the end-of-central-directory record (and its zip64
/// form) before the `zip` crate reads the directory.
fn precheck(r: &mut Reader<'_>, max_entries: usize) -> PResult<()> {
    let len = r.len();
    let tail = len.min(65_557);
    r.seek_to(len - tail)?;
    let buf = r.read_vec(tail, tail, "zip tail")?;
    let Some(i) = buf.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(()); // Let the zip crate produce its error.
    };
    let Some(eocd) = buf.get(i..i + 22) else {
        return Err(ParseError::Truncated("zip end-of-directory record".into()));
    };
    let mut entries = u64::from(u16::from_le_bytes([eocd[10], eocd[11]]));
    if entries == 0xFFFF && i >= 20 && buf.get(i - 20..i - 16) == Some(b"PK\x06\x07") {
        let off = buf
            .get(i - 12..i - 4)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(u64::MAX);
        if off < len {
            r.seek_to(off)?;
            let rec = r.read_vec(56.min(len - off), 56, "zip64 record")?;
            if rec.len() == 56 && rec.starts_with(b"PK\x06\x06") {
                entries = rec
                    .get(32..40)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_le_bytes)
                    .unwrap_or(u64::MAX);
            }
        }
    }
    if entries > max_entries as u64 {
        return Err(ParseError::limit(format!("zip with {entries} entries"), max_entries as u64));
    }
    Ok(())
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let result = precheck(r, ctx.limits.max_zip_entries).and_then(|_| {
        r.seek_to(0)?;
        archive(&mut *r, "", 1, ctx)
    });
    match result {
        Ok(p) => Ok(p),
        Err(e) => {
            // The central directory is unreadable (typically a cut download). The first local
            // header still names the first entry, which says what the archive was meant to be.
            let guess = first_entry_name(r).map(|n| guess_from_name(&n)).unwrap_or(Format::Unknown);
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
    if name.split_once('/').is_some_and(|(root, rest)| !root.is_empty() && (rest == "data.pkl" || rest == "version" || rest == "byteorder" || rest.starts_with("data/"))) {
        Format::Pytorch
    } else if name.ends_with(".npy") {
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

fn archive<R: Read + Seek>(src: R, prefix: &str, depth: u32, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let mut za = ZipArchive::new(src).map_err(|e| ParseError::invalid(format!("zip container: {e}")))?;
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
        });
    }
    if za.has_duplicate_names() {
        ctx.finding(
            Severity::High,
            codes::ZIP_DUPLICATE_NAMES,
            format!("zip {}has several entries with the same name: loaders and scanners may read different ones", label(prefix, "")),
        );
    }
    let files: Vec<&Entry> = entries.iter().filter(|e| !e.is_dir).collect();
    let torch = files.iter().any(|e| is_torch_pickle(&e.name));
    let npz = !files.is_empty() && files.iter().all(|e| e.name.ends_with(".npy"));
    let keras = files.iter().any(|e| e.name == "config.json")
        && files.iter().any(|e| e.name == "model.weights.h5" || e.name == "metadata.json");

    let mut p = if torch {
        let script = files.iter().any(|e| {
            e.name.split_once('/').is_some_and(|(_, rest)| rest == "constants.pkl" || rest.starts_with("code/"))
        });
        let mut p = Parsed::new(Format::Pytorch, Some(if script { "torchscript" } else { "zip" }));
        let storages: Vec<&&Entry> = files.iter().filter(|e| is_torch_storage(&e.name)).collect();
        p.metadata.tensor_count = Some(storages.len() as u64);
        p.metadata.properties.insert(
            "storage_bytes".into(),
            storages.iter().fold(0u64, |a, e| a.saturating_add(e.size)).to_string(),
        );
        p
    } else if npz {
        Parsed::new(Format::Numpy, Some("npz"))
    } else if keras {
        Parsed::new(Format::Keras, None)
    } else {
        Parsed::new(Format::Unknown, Some("zip"))
    };
    p.metadata.entries = Some(n as u64);

    let limits = ctx.limits;
    let mut npz_params: u64 = 0;
    let mut npz_dtypes = std::collections::BTreeSet::new();
    for e in &files {
        let where_ = label(prefix, &e.name);
        if torch && is_torch_storage(&e.name) {
            continue; // raw tensor bytes: torch never unpickles them
        }
        if npz {
            let mut f = match open(&mut za, e.index) {
                Ok(f) => f,
                Err(why) => {
                    ctx.finding(Severity::Medium, codes::MALFORMED, format!("npz entry {where_} cannot be read: {why}"));
                    continue;
                }
            };
            let mut g = RatioGuard::new(&mut f, e.compressed, limits.max_zip_ratio, u64::MAX);
            match numpy::read_header(&mut g) {
                Ok(h) => {
                    npz_params = npz_params.saturating_add(h.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).unwrap_or(0));
                    if npz_dtypes.len() < 64 {
                        npz_dtypes.insert(h.descr.clone());
                    }
                    if h.has_object {
                        ctx.scan_pickle(&format!("{where_} (object array)"), &mut g);
                    }
                }
                Err(err) => ctx.finding(Severity::Medium, codes::MALFORMED, format!("npz entry {where_}: {err}")),
            }
            continue;
        }
        let named_pickle = e.name.ends_with(".pkl") || e.name.ends_with(".pickle");
        let mut f = match open(&mut za, e.index) {
            Ok(f) => f,
            Err(why) => {
                if named_pickle {
                    ctx.pickle_unreadable(&where_, &why);
                }
                continue;
            }
        };
        let mut g = RatioGuard::new(&mut f, e.compressed, limits.max_zip_ratio, u64::MAX);
        if named_pickle {
            ctx.scan_pickle(&where_, &mut g);
            continue;
        }
        if keras && (e.name == "config.json" || e.name == "metadata.json") {
            match read_bounded(&mut g, limits.max_parse_bytes.min(64 << 20), "keras config") {
                Ok(bytes) if e.name == "config.json" => keras_h5::keras_config(&bytes, ctx, &mut p.metadata),
                Ok(bytes) => keras_h5::keras_metadata(&bytes, &mut p.metadata),
                Err(err) => ctx.finding(Severity::Medium, codes::MALFORMED, format!("{where_}: {err}")),
            }
            continue;
        }
        // Anything else: a pickle or a zip in disguise?
        let mut head = [0u8; 4];
        let got = read_upto(&mut g, &mut head);
        let head = &head[..got];
        if head.starts_with(&[0x80]) && head.get(1).is_some_and(|v| (2..=5).contains(v)) {
            let mut chained = head.chain(&mut g);
            ctx.scan_pickle(&where_, &mut chained);
        } else if head == b"PK\x03\x04" {
            if depth >= limits.max_nesting {
                ctx.finding(
                    Severity::Medium,
                    codes::LIMIT_EXCEEDED,
                    format!("zip {where_} is nested deeper than {} levels and was not opened", limits.max_nesting),
                );
                // What it holds is unseen: the pickle verdict cannot be `safe`.
                ctx.pickle_unreadable(&where_, "nested too deep");
                continue;
            }
            let mut chained = head.chain(&mut g);
            match read_bounded(&mut chained, limits.max_parse_bytes, "nested zip") {
                Ok(bytes) => {
                    let mut cur = Cursor::new(bytes);
                    let nested_len = cur.get_ref().len() as u64;
                    let nested = Reader::new(&mut cur, nested_len)
                        .and_then(|mut nr| precheck(&mut nr, limits.max_zip_entries).map(|_| nr))
                        .and_then(|mut nr| {
                            nr.seek_to(0)?;
                            archive(&mut nr, &format!("{where_}!"), depth + 1, ctx)
                        });
                    if let Err(err) = nested {
                        ctx.finding(Severity::Medium, codes::MALFORMED, format!("nested zip {where_}: {err}"));
                    }
                }
                Err(err) => ctx.finding(Severity::Medium, codes::LIMIT_EXCEEDED, format!("nested zip {where_}: {err}")),
            }
        }
    }
    if npz {
        p.metadata.tensor_count = Some(files.len() as u64);
        p.metadata.parameter_count = Some(npz_params);
        p.metadata.dtypes = npz_dtypes.into_iter().collect();
    }
    Ok(p)
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
