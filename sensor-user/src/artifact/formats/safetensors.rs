//! safetensors header reader, and the grouping of sharded checkpoints
//! (`model-00001-of-00005.safetensors` + `model.safetensors.index.json`).
//!
//! The `safetensors` crate validates a header only after the whole file is mapped into memory,
//! which the sensor must not do for a 40 GB model; the header is an 8-byte length plus JSON,
//! so reading it with `serde_json` (which bounds nesting) is the whole job.

use std::{
    collections::BTreeSet,
    path::Path,
};

use serde_json::Value;

use crate::artifact::{
    Limits,
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader, clean_text, read_bounded},
    report::{Format, Severity, ShardInfo, codes},
};

/// The reference implementation refuses headers larger than this.
const MAX_HEADER: u64 = 100 << 20;
const MAX_PROPERTIES: usize = 64;

/// Whether `head` starts like a safetensors file: a plausible little-endian header length and
/// a JSON object right after it.
pub fn sniff(head: &[u8], len: u64) -> bool {
    let Some(n) = head.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else {
        return false;
    };
    // A length past the end is a truncated file, which the parser reports.
    let _ = len;
    (2..=MAX_HEADER).contains(&n) && head.get(8) == Some(&b'{')
}

/// Bytes per element of each dtype the format defines (None: sub-byte or unknown size).
fn dtype_bits(d: &str) -> Option<Option<u64>> {
    Some(match d {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => Some(8),
        "I16" | "U16" | "F16" | "BF16" => Some(16),
        "I32" | "U32" | "F32" => Some(32),
        "I64" | "U64" | "F64" | "C64" => Some(64),
        "F4" => Some(4),
        "F6_E2M3" | "F6_E3M2" => Some(6),
        _ => return None,
    })
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let n = r.u64()?;
    let max = MAX_HEADER.min(ctx.limits.max_parse_bytes);
    let header = r.read_vec(n, max, "safetensors header")?;
    let data_len = r.remaining();
    let v: Value = serde_json::from_slice(&header)
        .map_err(|e| ParseError::invalid(format!("header is not JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(ParseError::invalid("header is not a JSON object"));
    };
    let mut p = Parsed::new(Format::Safetensors, None);
    let mut params: u64 = 0;
    let mut tensors: u64 = 0;
    let mut dtypes = BTreeSet::new();
    let mut problems: Vec<String> = Vec::new();
    for (name, entry) in &map {
        if name == "__metadata__" {
            let Value::Object(meta) = entry else {
                return Err(ParseError::invalid("__metadata__ is not an object"));
            };
            for (k, v) in meta.iter().take(MAX_PROPERTIES) {
                let Value::String(s) = v else {
                    return Err(ParseError::invalid(format!("__metadata__.{} is not a string", clean_text(k.as_bytes(), 64))));
                };
                let key = clean_text(k.as_bytes(), 128);
                let val = clean_text(s.as_bytes(), 512);
                match key.to_ascii_lowercase().as_str() {
                    "license" | "licence" | "license_name" => p.metadata.license = Some(val.clone()),
                    "format" => p.variant = Some(val.clone()),
                    "name" | "model_name" => p.metadata.name = Some(val.clone()),
                    "architecture" | "modelspec.architecture" => p.metadata.architecture = Some(val.clone()),
                    _ => {}
                }
                p.metadata.properties.insert(key, val);
            }
            continue;
        }
        let tname = clean_text(name.as_bytes(), 64);
        let dtype = entry.get("dtype").and_then(Value::as_str).ok_or_else(|| ParseError::invalid(format!("tensor {tname} has no dtype")))?;
        let shape = entry.get("shape").and_then(Value::as_array).ok_or_else(|| ParseError::invalid(format!("tensor {tname} has no shape")))?;
        let offs = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| ParseError::invalid(format!("tensor {tname} has no valid data_offsets")))?;
        let mut elems: u64 = 1;
        for d in shape {
            let d = d.as_u64().ok_or_else(|| ParseError::invalid(format!("tensor {tname} has a non-integer dimension")))?;
            elems = elems.checked_mul(d).ok_or_else(|| ParseError::invalid(format!("tensor {tname} size overflows")))?;
        }
        params = params.checked_add(elems).ok_or_else(|| ParseError::invalid("parameter count overflows"))?;
        tensors += 1;
        if dtypes.len() < 64 {
            dtypes.insert(clean_text(dtype.as_bytes(), 32));
        }
        let (begin, end) = offs;
        if begin > end || end > data_len {
            problems.push(format!("tensor {tname} data [{begin}, {end}) lies outside the {data_len} data bytes"));
        } else if let Some(bits) = dtype_bits(dtype) {
            if let Some(bits) = bits
                && let Some(want) = elems.checked_mul(bits).map(|b| b.div_ceil(8))
                && want != end - begin
            {
                problems.push(format!("tensor {tname} has {} bytes, its shape and dtype need {want}", end - begin));
            }
        } else {
            problems.push(format!("tensor {tname} has unknown dtype {}", clean_text(dtype.as_bytes(), 32)));
        }
    }
    if let Some(first) = problems.first() {
        let more = if problems.len() > 1 { format!(" (and {} more)", problems.len() - 1) } else { String::new() };
        ctx.finding(Severity::Medium, codes::MALFORMED, format!("safetensors header is inconsistent: {first}{more}"));
    }
    p.metadata.tensor_count = Some(tensors);
    p.metadata.parameter_count = Some(params);
    p.metadata.dtypes = dtypes.into_iter().collect();
    Ok(p)
}

/// Splits `model-00001-of-00005.safetensors` into ("model", 1, 5).
pub fn shard_name(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = file_name.strip_suffix(".safetensors")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    let (index, count): (u32, u32) = (index.parse().ok()?, count.parse().ok()?);
    if index == 0 || index > count {
        return None;
    }
    Some((prefix, index, count))
}

/// Shard information for a safetensors file whose name says it is one shard of several,
/// with the totals from the index file beside it when there is one.
pub fn shard_info(path: &Path, limits: &Limits) -> Option<ShardInfo> {
    let file_name = path.file_name()?.to_str()?;
    let (prefix, index, count) = shard_name(file_name)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let index_path = dir.join(format!("{prefix}.safetensors.index.json"));
    let mut info = ShardInfo {
        index,
        count,
        group: dir.join(prefix).to_string_lossy().into_owned(),
        index_file: None,
        total_size: None,
    };
    if let Ok(f) = std::fs::File::open(&index_path)
        && f.metadata().is_ok_and(|m| m.is_file())
    {
        info.index_file = Some(index_path.to_string_lossy().into_owned());
        let mut f = f;
        if let Ok(bytes) = read_bounded(&mut f, limits.max_parse_bytes.min(64 << 20), "index")
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        {
            info.total_size = v.pointer("/metadata/total_size").and_then(Value::as_u64);
        }
    }
    Some(info)
}
