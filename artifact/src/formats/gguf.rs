//! GGUF (llama.cpp) header reader: versions 1–3, either byte order.
//!
//! Hand-written because the Rust GGUF crates either read the whole file, allocate whatever the
//! header's counts claim, or pull in a tensor library. This reader keeps only the metadata
//! values it reports, skips the rest (token tables, merges) without storing them, checks every
//! count and length against both the configured bound and the bytes left in the file, and
//! never touches tensor data beyond checking that the file is long enough to hold it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader, clean_text},
    report::{Format, Severity, codes},
};

const MAX_KV: u64 = 1 << 20;
const MAX_TENSORS: u64 = 1 << 24;
const MAX_KEY_LEN: u64 = 64 * 1024;
/// Strings kept for reporting; longer values are skipped.
const MAX_KEPT_VALUE: u64 = 1 << 20;
const MAX_ARRAY_NESTING: u32 = 4;
const MAX_DIMS: u32 = 8;

#[derive(Debug, Clone)]
enum Val {
    Uint(u64),
    Int(i64),
    Str(String),
    Other,
}

impl Val {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Val::Uint(u) => Some(u),
            Val::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }
}

struct G<'r, 'a> {
    r: &'r mut Reader<'a>,
    v1: bool,
    limit: u64,
}

impl G<'_, '_> {
    fn check_budget(&self) -> PResult<()> {
        if self.r.pos() > self.limit {
            return Err(ParseError::limit("GGUF header", self.limit));
        }
        Ok(())
    }

    fn len(&mut self) -> PResult<u64> {
        if self.v1 { self.r.u32().map(u64::from) } else { self.r.u64() }
    }

    /// Reads a string, keeping it only if it is at most `keep` bytes long.
    fn string(&mut self, keep: u64) -> PResult<Option<String>> {
        let n = self.len()?;
        if n > self.r.remaining() {
            return Err(ParseError::Truncated(format!("string of {n} bytes at offset {}", self.r.pos())));
        }
        if n > keep {
            self.r.skip(n)?;
            self.check_budget()?;
            return Ok(None);
        }
        let b = self.r.read_vec(n, keep, "string")?;
        Ok(Some(String::from_utf8_lossy(&b).into_owned()))
    }

    fn scalar_size(t: u32) -> Option<u64> {
        match t {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        }
    }

    fn value(&mut self, t: u32, depth: u32) -> PResult<Val> {
        Ok(match t {
            0 => Val::Uint(self.r.u8()?.into()),
            1 => Val::Int((self.r.u8()? as i8).into()),
            2 => Val::Uint(self.r.u16()?.into()),
            3 => Val::Int((self.r.u16()? as i16).into()),
            4 => Val::Uint(self.r.u32()?.into()),
            5 => Val::Int((self.r.u32()? as i32).into()),
            6 | 12 => {
                let n = if t == 6 { 4 } else { 8 };
                self.r.skip(n)?;
                Val::Other
            }
            7 => Val::Uint(self.r.u8()?.into()),
            8 => self.string(MAX_KEPT_VALUE)?.map_or(Val::Other, Val::Str),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(ParseError::limit("GGUF array nesting", u64::from(MAX_ARRAY_NESTING)));
                }
                let et = self.r.u32()?;
                let n = self.len()?;
                if let Some(sz) = Self::scalar_size(et) {
                    let total = n.checked_mul(sz).ok_or_else(|| ParseError::invalid("array size overflows"))?;
                    if total > self.r.remaining() {
                        return Err(ParseError::Truncated(format!("array of {n} elements")));
                    }
                    self.r.skip(total)?;
                } else if et == 8 || et == 9 {
                    // Every element takes at least its length field: a cheap bound on `n`.
                    let min = if self.v1 { 4 } else { 8 };
                    if n.saturating_mul(min) > self.r.remaining() {
                        return Err(ParseError::Truncated(format!("array of {n} elements")));
                    }
                    for _ in 0..n {
                        if et == 8 {
                            self.string(0)?;
                        } else {
                            self.value(9, depth + 1)?;
                        }
                        // Inside the loop, not only after it: an empty string is just its
                        // length field, so an array of 10^9 of them in a large file would be
                        // read through before a check after the array stopped it.
                        self.check_budget()?;
                    }
                } else {
                    return Err(ParseError::invalid(format!("unknown array element type {et}")));
                }
                self.check_budget()?;
                Val::Other
            }
            10 => Val::Uint(self.r.u64()?),
            11 => Val::Int(self.r.u64()? as i64),
            _ => return Err(ParseError::invalid(format!("unknown value type {t}"))),
        })
    }
}

/// llama.cpp `LLAMA_FTYPE_*` (general.file_type) names.
pub fn file_type_name(ft: u64) -> String {
    let n = match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        other => return format!("file_type_{other}"),
    };
    n.to_owned()
}

/// ggml tensor type names and, where certain, (elements per block, bytes per block).
pub fn ggml_type(t: u32) -> (String, Option<(u64, u64)>) {
    let (name, block) = match t {
        0 => ("F32", Some((1, 4))),
        1 => ("F16", Some((1, 2))),
        2 => ("Q4_0", Some((32, 18))),
        3 => ("Q4_1", Some((32, 20))),
        6 => ("Q5_0", Some((32, 22))),
        7 => ("Q5_1", Some((32, 24))),
        8 => ("Q8_0", Some((32, 34))),
        9 => ("Q8_1", Some((32, 36))),
        10 => ("Q2_K", Some((256, 84))),
        11 => ("Q3_K", Some((256, 110))),
        12 => ("Q4_K", Some((256, 144))),
        13 => ("Q5_K", Some((256, 176))),
        14 => ("Q6_K", Some((256, 210))),
        15 => ("Q8_K", None),
        16 => ("IQ2_XXS", None),
        17 => ("IQ2_XS", None),
        18 => ("IQ3_XXS", None),
        19 => ("IQ1_S", None),
        20 => ("IQ4_NL", None),
        21 => ("IQ3_S", None),
        22 => ("IQ2_S", None),
        23 => ("IQ4_XS", None),
        24 => ("I8", Some((1, 1))),
        25 => ("I16", Some((1, 2))),
        26 => ("I32", Some((1, 4))),
        27 => ("I64", Some((1, 8))),
        28 => ("F64", Some((1, 8))),
        29 => ("IQ1_M", None),
        30 => ("BF16", Some((1, 2))),
        34 => ("TQ1_0", None),
        35 => ("TQ2_0", None),
        39 => ("MXFP4", None),
        other => return (format!("type_{other}"), None),
    };
    (name.to_owned(), block)
}

/// Keys copied into `properties` when present.
const PROPERTY_KEYS: &[&str] = &[
    "general.basename",
    "general.finetune",
    "general.size_label",
    "general.version",
    "general.organization",
    "general.license.name",
    "general.license.link",
    "general.source.url",
    "general.source.huggingface.repository",
    "general.quantized_by",
    "general.quantization_version",
];

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let magic = r.array::<4>()?;
    if &magic != b"GGUF" {
        return Err(ParseError::invalid("no GGUF magic"));
    }
    let raw = r.array::<4>()?;
    let (version, big) = match (u32::from_le_bytes(raw), u32::from_be_bytes(raw)) {
        (v @ 1..=3, _) => (v, false),
        (_, v @ 1..=3) => (v, true),
        (v, _) => return Err(ParseError::invalid(format!("unsupported GGUF version {v}"))),
    };
    r.big_endian = big;
    let mut p = Parsed::new(Format::Gguf, Some(if big { "big_endian" } else { "little_endian" }));
    p.metadata.format_version = Some(version.into());
    let limit = ctx.limits.max_parse_bytes;
    let mut g = G { r, v1: version == 1, limit };
    let n_tensors = g.len()?;
    let n_kv = g.len()?;
    if n_tensors > MAX_TENSORS {
        return Err(ParseError::limit(format!("tensor count {n_tensors}"), MAX_TENSORS));
    }
    if n_kv > MAX_KV {
        return Err(ParseError::limit(format!("metadata count {n_kv}"), MAX_KV));
    }
    p.metadata.tensor_count = Some(n_tensors);

    let mut kv: BTreeMap<String, Val> = BTreeMap::new();
    let mut context_lengths: BTreeMap<String, u64> = BTreeMap::new();
    let mut chat_template = false;
    let mut alignment: u64 = 32;
    for _ in 0..n_kv {
        let key = g.string(MAX_KEY_LEN)?.ok_or_else(|| ParseError::limit("metadata key", MAX_KEY_LEN))?;
        let t = g.r.u32()?;
        let v = g.value(t, 0)?;
        g.check_budget()?;
        if key == "tokenizer.chat_template" || key.starts_with("tokenizer.chat_template.") {
            chat_template = true;
            continue;
        }
        if let Some(arch) = key.strip_suffix(".context_length")
            && let Some(n) = v.as_u64()
        {
            context_lengths.insert(arch.to_owned(), n);
        }
        if key == "general.alignment" {
            alignment = v.as_u64().unwrap_or(0);
            if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 20 {
                return Err(ParseError::invalid(format!("general.alignment {alignment} is not a power of two")));
            }
        }
        if key.starts_with("general.") && kv.len() < 256 {
            kv.insert(key, v);
        }
    }
    let text = |v: Option<&Val>| match v {
        Some(Val::Str(s)) => Some(clean_text(s.as_bytes(), 256)),
        _ => None,
    };
    let m = &mut p.metadata;
    m.architecture = text(kv.get("general.architecture"));
    m.name = text(kv.get("general.name"));
    m.license = text(kv.get("general.license"));
    m.quantization = kv.get("general.file_type").and_then(Val::as_u64).map(file_type_name);
    m.chat_template = Some(chat_template);
    m.context_length = m.architecture.as_ref().and_then(|a| context_lengths.get(a).copied());
    for key in PROPERTY_KEYS {
        match kv.get(*key) {
            Some(Val::Str(s)) => {
                m.properties.insert((*key).to_owned(), clean_text(s.as_bytes(), 512));
            }
            Some(v) => {
                if let Some(n) = v.as_u64() {
                    m.properties.insert((*key).to_owned(), n.to_string());
                }
            }
            None => {}
        }
    }

    // Tensor infos: the parameter count comes from here, not from any claimed metadata.
    let mut params: u64 = 0;
    let mut dtypes = BTreeSet::new();
    let mut data_needed: u64 = 0;
    for i in 0..n_tensors {
        g.string(0)?;
        let n_dims = g.r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(ParseError::invalid(format!("tensor {i} has {n_dims} dimensions")));
        }
        let mut elems: u64 = 1;
        for _ in 0..n_dims {
            let d = g.len()?;
            elems = elems.checked_mul(d).ok_or_else(|| ParseError::invalid(format!("tensor {i} size overflows")))?;
        }
        let t = g.r.u32()?;
        let offset = g.r.u64()?;
        g.check_budget()?;
        params = params.checked_add(elems).ok_or_else(|| ParseError::invalid("parameter count overflows"))?;
        let (name, block) = ggml_type(t);
        let bytes = match block {
            Some((per, size)) if elems.is_multiple_of(per) => (elems / per).checked_mul(size),
            _ => Some(0),
        };
        let end =
            bytes.and_then(|b| offset.checked_add(b)).ok_or_else(|| ParseError::invalid("tensor extent overflows"))?;
        data_needed = data_needed.max(end);
        if dtypes.len() < 64 {
            dtypes.insert(name);
        }
    }
    let header_end = g.r.pos();
    p.metadata.parameter_count = Some(params);
    p.metadata.dtypes = dtypes.into_iter().collect();
    let data_start = header_end.div_ceil(alignment) * alignment;
    let len = g.r.len();
    if n_tensors > 0 && data_start.saturating_add(data_needed) > len {
        ctx.finding(
            Severity::Medium,
            codes::MALFORMED,
            format!(
                "GGUF tensor data needs {} bytes but the file has {len}: truncated (incomplete download?)",
                data_start.saturating_add(data_needed)
            ),
        );
    }
    Ok(p)
}
