//! Keras models: the configuration JSON of a `.keras` zip (the zip itself is `zipfile`'s) and
//! the legacy HDF5 `.h5` format.
//!
//! HDF5 is a large format whose Rust bindings need the C library; reading a model's
//! configuration does not. Keras stores it as the `model_config` attribute of the root group,
//! a fixed-length string that sits in the root object header near the start of the file (or,
//! when that header overflowed, in a continuation block). So the reader checks the HDF5
//! signature, then searches a bounded window at the start and at the end of the file for the
//! JSON object, extracts it by bracket matching and parses it with `serde_json`. What this
//! sniff cannot see (a configuration in dense attribute storage, compressed) is reported as
//! plain HDF5 rather than guessed.
//!
//! In the configuration it flags `Lambda` layers (marshalled Python bytecode, run on load) and
//! objects that name Python code outside Keras (`{"module": "os", "class_name": "function",
//! "config": "system"}`), judged with the pickle allow/deny lists.

use serde_json::Value;

use crate::artifact::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader, clean_text},
    pickle_scan::{Import, ImportKind},
    report::{Format, ModelMetadata, Safety, Severity, codes},
};

pub const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Bytes searched at each end of an HDF5 file for the configuration.
const WINDOW: u64 = 32 << 20;
const MAX_CONFIG: u64 = 16 << 20;
const CHUNK: u64 = 1 << 20;

/// The offset of the HDF5 superblock signature (0, or after a 512·2ⁿ-byte user block).
pub fn find_signature(r: &mut Reader<'_>) -> PResult<Option<u64>> {
    let mut off = 0u64;
    for _ in 0..10 {
        if off + 8 > r.len() {
            break;
        }
        r.seek_to(off)?;
        if &r.array::<8>()? == SIGNATURE {
            return Ok(Some(off));
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    Ok(None)
}

/// For each needle, its first offset in `[start, end)`, in one pass.
fn find(r: &mut Reader<'_>, start: u64, end: u64, needles: &[&[u8]], found: &mut [Option<u64>]) -> PResult<()> {
    let longest = needles.iter().map(|n| n.len() as u64).max().unwrap_or(1).max(1);
    let mut pos = start;
    while pos < end {
        let n = CHUNK.min(end - pos);
        r.seek_to(pos)?;
        let buf = r.read_vec(n, CHUNK, "hdf5 window")?;
        for (needle, slot) in needles.iter().zip(found.iter_mut()) {
            if slot.is_none()
                && let Some(i) = buf.windows(needle.len()).position(|w| w == *needle)
            {
                *slot = Some(pos + i as u64);
            }
        }
        if found.iter().all(Option::is_some) || pos + n >= end {
            break;
        }
        // Overlap so a needle across the chunk boundary is found.
        pos += n.saturating_sub(longest - 1).max(1);
    }
    Ok(())
}

/// Searches the window at the start of the file, then the one at its end.
fn find_either_end(r: &mut Reader<'_>, needles: &[&[u8]]) -> PResult<Vec<Option<u64>>> {
    let len = r.len();
    let head_end = len.min(WINDOW);
    let mut found = vec![None; needles.len()];
    find(r, 0, head_end, needles, &mut found)?;
    if len > head_end && found.iter().any(Option::is_none) {
        find(r, head_end.max(len - WINDOW.min(len)), len, needles, &mut found)?;
    }
    Ok(found)
}

/// The JSON object starting at `start`, by bracket matching (strings and escapes respected).
fn json_object_at(r: &mut Reader<'_>, start: u64, max: u64) -> PResult<Vec<u8>> {
    r.seek_to(start)?;
    let avail = r.remaining().min(max);
    let mut out = Vec::new();
    let (mut depth, mut in_str, mut esc) = (0u32, false, false);
    let mut read = 0u64;
    while read < avail {
        let n = CHUNK.min(avail - read);
        let buf = r.read_vec(n, CHUNK, "keras config")?;
        for (i, &b) in buf.iter().enumerate() {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        out.extend_from_slice(&buf[..=i]);
                        return Ok(out);
                    }
                }
                0 => return Err(ParseError::invalid("NUL inside the keras configuration")),
                _ => {}
            }
        }
        out.extend_from_slice(&buf);
        read += n;
    }
    Err(ParseError::limit("keras configuration", max))
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    if find_signature(r)?.is_none() {
        return Err(ParseError::invalid("no HDF5 signature"));
    }
    let found = find_either_end(r, &[b"{\"class_name\"", b"{\"module\"", b"keras_version", b"layer_names"])?;
    let start = found.iter().take(2).flatten().min().copied();
    if let Some(start) = start {
        let max = MAX_CONFIG.min(ctx.limits.max_parse_bytes);
        let mut p = Parsed::new(Format::KerasH5, Some("model"));
        match json_object_at(r, start, max) {
            Ok(json) => keras_config(&json, ctx, &mut p.metadata),
            Err(e) => super::malformed(ctx, Format::KerasH5, &e),
        }
        return Ok(p);
    }
    if found.iter().skip(2).any(Option::is_some) {
        return Ok(Parsed::new(Format::KerasH5, Some("weights")));
    }
    Ok(Parsed::new(Format::Hdf5, None))
}

/// `metadata.json` of a `.keras` zip.
pub fn keras_metadata(json: &[u8], md: &mut ModelMetadata) {
    if let Ok(v) = serde_json::from_slice::<Value>(json) {
        for key in ["keras_version", "date_saved"] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                md.properties.insert(key.to_owned(), clean_text(s.as_bytes(), 64));
            }
        }
    }
}

fn is_keras_module(m: &str) -> bool {
    ["keras", "tf_keras", "keras_nlp", "keras_hub", "keras_cv", "tensorflow"]
        .iter()
        .any(|k| m == *k || m.strip_prefix(k).is_some_and(|r| r.starts_with('.')))
}

/// Analyses a Keras model configuration (`config.json`, or `model_config` from HDF5).
pub fn keras_config(json: &[u8], ctx: &mut Ctx<'_>, md: &mut ModelMetadata) {
    let v: Value = match serde_json::from_slice(json) {
        Ok(v) => v,
        Err(e) => {
            ctx.finding(Severity::Medium, codes::MALFORMED, format!("keras configuration is not JSON: {e}"));
            return;
        }
    };
    let s = |x: Option<&Value>| x.and_then(Value::as_str).map(|t| clean_text(t.as_bytes(), 128));
    md.architecture = s(v.get("class_name"));
    md.name = s(v.pointer("/config/name"));
    md.node_count = v.pointer("/config/layers").and_then(Value::as_array).map(|a| a.len() as u64);
    let mut lambdas = Vec::new();
    let mut foreign: Vec<(Safety, String)> = Vec::new();
    // Iterative walk: serde_json already bounds nesting at 128.
    let mut stack = vec![&v];
    let mut visited = 0usize;
    while let Some(node) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 {
            break;
        }
        match node {
            Value::Object(o) => {
                let class = o.get("class_name").and_then(Value::as_str);
                if class == Some("Lambda") {
                    let name = s(o.get("config").and_then(|c| c.get("name"))).unwrap_or_else(|| "<unnamed>".into());
                    if lambdas.len() < 256 {
                        lambdas.push(name);
                    }
                }
                if let (Some(module), Some(class)) = (o.get("module").and_then(Value::as_str), class)
                    && !is_keras_module(module)
                {
                    // Keras 3 serialises functions as {"class_name": "function", "config": "<name>"}.
                    let name = match (class, o.get("config").and_then(Value::as_str)) {
                        ("function", Some(f)) => f,
                        _ => class,
                    };
                    let imp = Import {
                        kind: ImportKind::Named { module: module.to_owned(), name: name.to_owned() },
                        opcode: "keras",
                        offset: 0,
                    };
                    let verdict = ctx.policy.judge(&imp);
                    let shown = clean_text(imp.display().as_bytes(), 200);
                    if verdict != Safety::Safe && foreign.len() < 256 && !foreign.iter().any(|(_, g)| *g == shown) {
                        foreign.push((verdict, shown));
                    }
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    if !lambdas.is_empty() {
        ctx.finding(
            Severity::High,
            codes::KERAS_LAMBDA,
            format!(
                "Lambda layers ({}) carry Python bytecode that runs when the model is loaded without safe_mode",
                lambdas.join(", ")
            ),
        );
    }
    if !foreign.is_empty() {
        let worst = foreign.iter().map(|(s, _)| *s).max().unwrap_or(Safety::Suspicious);
        let names: Vec<String> = foreign.iter().map(|(_, g)| g.clone()).collect();
        ctx.finding(
            if worst == Safety::Malicious { Severity::Critical } else { Severity::Medium },
            codes::CUSTOM_OPS,
            format!("keras configuration refers to code outside Keras: {}", names.join(", ")),
        );
        md.custom_ops = names;
    }
    md.lambda_layers = lambdas;
}
