//! safetensors header reader, and the grouping of sharded checkpoints
//! (`model-00001-of-00005.safetensors` + `model.safetensors.index.json`).
//!
//! The `safetensors` crate validates a header only after the whole file is mapped into memory,
//! which the sensor must not do for a 40 GB model; the header is an 8-byte length plus JSON.
//! It is read with a `serde` visitor that tallies each tensor entry as it is parsed, so a
//! 100 MB header costs its own bytes and no JSON tree (`serde_json` bounds the nesting): no
//! shape is kept as a vector and only the `__metadata__` entries that are reported are kept.

use std::{borrow::Cow, collections::BTreeSet, fmt, path::Path};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{
    Limits,
    formats::{Ctx, Parsed},
    io::{JsonScalar, PResult, ParseError, Reader, clean_text, read_bounded},
    report::{Format, Severity, ShardInfo, codes},
};

/// The reference implementation (`safetensors::tensor::MAX_HEADER_SIZE`) refuses headers
/// larger than this.
const MAX_HEADER: u64 = 100_000_000;
const MAX_PROPERTIES: usize = 64;

/// Whether `head` starts like a safetensors file: a plausible little-endian header length and
/// a JSON object right after it. (A length past the end is a truncated file, which the parser
/// reports.)
pub fn sniff(head: &[u8]) -> bool {
    let Some(n) = head.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else {
        return false;
    };
    (2..=MAX_HEADER).contains(&n) && head.get(8) == Some(&b'{')
}

/// Bits per element of each dtype the format defines (`None`: unknown size).
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

#[derive(serde::Deserialize)]
struct TensorInfo<'a> {
    #[serde(borrow)]
    dtype: Option<Cow<'a, str>>,
    shape: Option<Elements>,
    data_offsets: Option<(u64, u64)>,
}

/// A tensor's element count, multiplied out of its `shape` while the shape is parsed
/// (`None`: the product overflows).
struct Elements(Option<u64>);

impl<'de> serde::Deserialize<'de> for Elements {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elements;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a shape as an array of unsigned integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elements, A::Error> {
                let mut elems = Some(1u64);
                while let Some(d) = seq.next_element::<u64>()? {
                    elems = elems.and_then(|e| e.checked_mul(d));
                }
                Ok(Elements(elems))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The header's totals, gathered entry by entry.
struct Header {
    data_len: u64,
    params: u64,
    tensors: u64,
    dtypes: BTreeSet<String>,
    problems: Vec<String>,
    problem_count: usize,
    metadata: Vec<(String, String)>,
}

impl<'de> Visitor<'de> for &mut Header {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            if name == "__metadata__" {
                map.next_value_seed(MetaEntries(&mut self.metadata))?;
                continue;
            }
            let tname = clean_text(name.as_bytes(), 64);
            let t: TensorInfo<'_> = map.next_value()?;
            let dtype = t.dtype.ok_or_else(|| A::Error::custom(format!("tensor {tname} has no dtype")))?;
            let shape = t.shape.ok_or_else(|| A::Error::custom(format!("tensor {tname} has no shape")))?;
            let (begin, end) =
                t.data_offsets.ok_or_else(|| A::Error::custom(format!("tensor {tname} has no valid data_offsets")))?;
            let elems = shape.0.ok_or_else(|| A::Error::custom(format!("tensor {tname} size overflows")))?;
            self.params =
                self.params.checked_add(elems).ok_or_else(|| A::Error::custom("parameter count overflows"))?;
            self.tensors += 1;
            if self.dtypes.len() < 64 {
                self.dtypes.insert(clean_text(dtype.as_bytes(), 32));
            }
            let problem = if begin > end || end > self.data_len {
                Some(format!("tensor {tname} data [{begin}, {end}) lies outside the {} data bytes", self.data_len))
            } else {
                match dtype_bits(&dtype) {
                    Some(Some(bits)) => {
                        elems.checked_mul(bits).map(|b| b.div_ceil(8)).filter(|want| *want != end - begin).map(|want| {
                            format!("tensor {tname} has {} bytes, its shape and dtype need {want}", end - begin)
                        })
                    }
                    Some(None) => None,
                    None => Some(format!("tensor {tname} has unknown dtype {}", clean_text(dtype.as_bytes(), 32))),
                }
            };
            if let Some(p) = problem {
                self.problem_count += 1;
                if self.problems.is_empty() {
                    self.problems.push(p);
                }
            }
        }
        Ok(())
    }
}

/// Reads `__metadata__` into the list, in order: every value must be a string, but only the
/// first [`MAX_PROPERTIES`] entries are kept (a header can hold millions).
struct MetaEntries<'m>(&'m mut Vec<(String, String)>);

impl<'de> DeserializeSeed<'de> for MetaEntries<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetaEntries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("__metadata__ as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let JsonScalar::Str(s) = map.next_value::<JsonScalar>()? else {
                return Err(A::Error::custom(format!("__metadata__.{} is not a string", clean_text(k.as_bytes(), 64))));
            };
            if self.0.len() < MAX_PROPERTIES {
                self.0.push((k.into_owned(), s));
            }
        }
        Ok(())
    }
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let n = r.u64()?;
    let max = MAX_HEADER.min(ctx.limits.max_parse_bytes);
    let header = r.read_vec(n, max, "safetensors header")?;
    let mut h = Header {
        data_len: r.remaining(),
        params: 0,
        tensors: 0,
        dtypes: BTreeSet::new(),
        problems: Vec::new(),
        problem_count: 0,
        metadata: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(&header);
    de.deserialize_map(&mut h)
        .and_then(|_| de.end())
        .map_err(|e| ParseError::invalid(format!("header is not a valid safetensors JSON object: {e}")))?;
    let mut p = Parsed::new(Format::Safetensors, None);
    for (k, s) in h.metadata {
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
    if let Some(first) = h.problems.first() {
        let more = if h.problem_count > 1 { format!(" (and {} more)", h.problem_count - 1) } else { String::new() };
        ctx.finding(Severity::Medium, codes::MALFORMED, format!("safetensors header is inconsistent: {first}{more}"));
    }
    p.metadata.tensor_count = Some(h.tensors);
    p.metadata.parameter_count = Some(h.params);
    p.metadata.dtypes = h.dtypes.into_iter().collect();
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
        #[derive(serde::Deserialize)]
        struct Index {
            metadata: Option<IndexMetadata>,
        }
        #[derive(serde::Deserialize)]
        struct IndexMetadata {
            total_size: Option<JsonScalar>,
        }
        if let Ok(bytes) = read_bounded(&mut f, limits.max_parse_bytes.min(64 << 20), "index")
            && let Ok(Index { metadata: Some(IndexMetadata { total_size: Some(JsonScalar::U64(n)) }) }) =
                serde_json::from_slice(&bytes)
        {
            info.total_size = Some(n);
        }
    }
    Some(info)
}
