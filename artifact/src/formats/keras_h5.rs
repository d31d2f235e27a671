//! Keras models: the configuration JSON of a `.keras` zip (the zip itself is `zipfile`'s) and
//! the legacy HDF5 `.h5` format.
//!
//! HDF5 is a large format whose Rust bindings need the C library; reading a model's
//! configuration does not. Keras stores it as the `model_config` attribute of the root group,
//! a fixed-length string that sits in the root object header near the start of the file (or,
//! when that header overflowed, in a continuation block). So the reader checks the HDF5
//! signature, then searches a bounded window at the start and at the end of the file for JSON
//! objects that open like a Keras configuration, extracts each by bracket matching and
//! analyses every one of them: an earlier decoy must not hide the configuration Keras reads.
//! What this sniff cannot see (a configuration in dense attribute storage, compressed) is
//! reported as plain HDF5 rather than guessed.
//!
//! The JSON is walked while it is parsed (a `serde` visitor), so a 16 MB configuration costs
//! no tree. In it the reader flags `Lambda` layers (marshalled Python bytecode, run on load),
//! objects that name Python code outside Keras (`{"module": "os", "class_name": "function",
//! "config": "system"}`), judged with the pickle allow/deny lists, and the Keras and
//! TensorFlow callables known to switch safe mode off, fetch files or load further models.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{
    formats::{Ctx, Parsed},
    io::{JsonScalar, PResult, ParseError, Reader, clean_text},
    pickle_scan::{Import, PicklePolicy},
    report::{Format, ModelMetadata, Safety, Severity, codes},
};

pub const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Bytes searched at each end of an HDF5 file for the configuration.
const WINDOW: u64 = 32 << 20;
const MAX_CONFIG: u64 = 16 << 20;
const CHUNK: u64 = 1 << 20;
/// Configuration-like objects examined per file, and the bytes they may take together.
const MAX_CONFIGS: usize = 256;
const MAX_CONFIG_TOTAL: u64 = 2 * MAX_CONFIG;
/// Names kept per list (Lambda layers, foreign code).
const MAX_LISTED: usize = 256;

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

/// Whether the file holds an HDF5 signature where the library looks for one.
pub fn sniff(r: &mut Reader<'_>) -> bool {
    find_signature(r).ok().flatten().is_some()
}

/// The offsets of every needle in `[start, end)`, in one pass, at most `max` in all.
fn find(
    r: &mut Reader<'_>,
    start: u64,
    end: u64,
    needles: &[&[u8]],
    max: usize,
    found: &mut Vec<(usize, u64)>,
) -> PResult<()> {
    let longest = needles.iter().map(|n| n.len() as u64).max().unwrap_or(1).max(1);
    let mut pos = start;
    while pos < end && found.len() < max {
        let n = CHUNK.min(end - pos);
        r.seek_to(pos)?;
        let buf = r.read_vec(n, CHUNK, "hdf5 window")?;
        // Matches that start in the overlap are found again in the next chunk.
        let fresh = if pos + n >= end { n } else { n.saturating_sub(longest - 1) } as usize;
        for (k, needle) in needles.iter().enumerate() {
            for (i, _) in buf.windows(needle.len()).enumerate().filter(|(i, w)| *i < fresh && w == needle) {
                if found.len() < max {
                    found.push((k, pos + i as u64));
                }
            }
        }
        if pos + n >= end {
            break;
        }
        pos += n.saturating_sub(longest - 1).max(1);
    }
    Ok(())
}

/// Searches the window at the start of the file and the one at its end.
fn find_either_end(r: &mut Reader<'_>, needles: &[&[u8]]) -> PResult<Vec<(usize, u64)>> {
    let len = r.len();
    let head_end = len.min(WINDOW);
    let mut found = Vec::new();
    find(r, 0, head_end, needles, MAX_CONFIGS * 4, &mut found)?;
    if len > head_end {
        find(r, head_end.max(len - WINDOW.min(len)), len, needles, MAX_CONFIGS * 4, &mut found)?;
    }
    found.sort_by_key(|(_, off)| *off);
    found.dedup();
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
    let starts: Vec<u64> = found.iter().filter(|(k, _)| *k < 2).map(|(_, off)| *off).collect();
    if starts.is_empty() {
        if !found.is_empty() {
            return Ok(Parsed::new(Format::KerasH5, Some("weights")));
        }
        return Ok(Parsed::new(Format::Hdf5, None));
    }
    let mut p = Parsed::new(Format::KerasH5, Some("model"));
    let mut scan = Scan::default();
    let mut best: Option<Summary> = None;
    let (mut covered, mut spent, mut examined) = (0u64, 0u64, 0usize);
    let mut first_error = None;
    let max = MAX_CONFIG.min(ctx.limits.max_parse_bytes);
    for start in starts {
        if start < covered {
            continue; // inside a configuration already examined
        }
        if examined >= MAX_CONFIGS || spent >= MAX_CONFIG_TOTAL {
            ctx.finding(
                Severity::Medium,
                codes::LIMIT_EXCEEDED,
                format!("the HDF5 file holds more configuration-like JSON than is examined ({MAX_CONFIGS} objects, {MAX_CONFIG_TOTAL} bytes)"),
            );
            break;
        }
        examined += 1;
        match json_object_at(r, start, max.min(MAX_CONFIG_TOTAL - spent)) {
            Ok(json) => {
                spent += json.len() as u64;
                covered = start + json.len() as u64;
                match scan_config(&json, ctx.policy, &mut scan) {
                    // Keras reads the model from the configuration that has layers.
                    Ok(s) if best.as_ref().is_none_or(|b| b.config_layers.is_none() && s.config_layers.is_some()) => {
                        best = Some(s);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        first_error.get_or_insert_with(|| {
                            ParseError::invalid(format!("keras configuration is not JSON: {e}"))
                        });
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        super::malformed(ctx, Format::KerasH5, &e);
    }
    if let Some(s) = best {
        s.describe(&mut p.metadata);
    }
    scan.report(ctx, &mut p.metadata);
    Ok(p)
}

#[derive(serde::Deserialize)]
struct KerasMetadata {
    keras_version: Option<JsonScalar>,
    date_saved: Option<JsonScalar>,
}

/// `metadata.json` of a `.keras` zip.
pub fn keras_metadata(json: &[u8], md: &mut ModelMetadata) {
    if let Ok(m) = serde_json::from_slice::<KerasMetadata>(json) {
        for (key, v) in [("keras_version", m.keras_version), ("date_saved", m.date_saved)] {
            if let Some(JsonScalar::Str(s)) = v {
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

/// Keras and TensorFlow callables a configuration can name to switch safe mode off
/// (CVE-2025-9906: `keras.config.enable_unsafe_deserialization`), fetch or read files
/// (CVE-2025-8747: `keras.utils.get_file`), run Python or load further models. Matched by name
/// in any Keras or TensorFlow module, since each is exported under several paths.
const KERAS_DENY_NAMES: &[&str] = &[
    "enable_unsafe_deserialization",
    "get_file",
    "load_model",
    "load_weights",
    "save_model",
    "save_weights",
    "TFSMLayer",
    "py_func",
    "py_function",
    "numpy_function",
    "eager_py_func",
    "read_file",
    "write_file",
    "load_library",
    "load_op_library",
    "exec",
    "eval",
];

/// Keras and TensorFlow modules whose every callable reads, writes or fetches files or loads
/// models.
const KERAS_DENY_MODULES: &[&str] = &[
    "tensorflow.io",
    "tensorflow.compat.v1.io",
    "tensorflow.compat.v2.io",
    "tensorflow.gfile",
    "tensorflow.compat.v1.gfile",
    "tensorflow.saved_model",
    "tensorflow.compat.v1.saved_model",
    "tensorflow.python.ops.script_ops",
    "tensorflow.python.lib.io",
    "keras.src.utils.file_utils",
    "keras.utils.file_utils",
    "keras.src.saving",
    "keras.saving",
    "tf_keras.src.saving",
    "tf_keras.saving",
];

/// Keras modules whose functions load or save models, but whose classes are the models
/// themselves: Keras 3 writes every functional model as `keras.src.models.functional.Functional`.
const KERAS_DENY_FUNCTION_MODULES: &[&str] =
    &["keras.models", "keras.src.models", "tf_keras.models", "tf_keras.src.models"];

fn in_module(module: &str, list: &[&str]) -> bool {
    list.iter().any(|d| module == *d || module.strip_prefix(d).is_some_and(|r| r.starts_with('.')))
}

/// Keras objects that the configuration names by module: `keras.layers.Dense` is Keras' own,
/// `os.system` is not. Without a module (legacy HDF5 configurations) Keras looks the name up
/// among its own objects, so only the unsafe Keras names are judged.
fn judge_object(policy: &PicklePolicy, module: Option<&str>, name: &str, function: bool) -> Safety {
    let Some(module) = module else {
        return if KERAS_DENY_NAMES.contains(&name) { Safety::Malicious } else { Safety::Safe };
    };
    if is_keras_module(module) {
        let denied = KERAS_DENY_NAMES.contains(&name)
            || in_module(module, KERAS_DENY_MODULES)
            || (function && in_module(module, KERAS_DENY_FUNCTION_MODULES));
        return if denied { Safety::Malicious } else { Safety::Safe };
    }
    policy.judge(&Import::Named { module: module.to_owned(), name: name.to_owned() })
}

/// What the configurations hold, gathered while they are parsed.
#[derive(Default)]
struct Scan {
    lambdas: Vec<String>,
    foreign: Vec<(Safety, String)>,
}

impl Scan {
    fn report(self, ctx: &mut Ctx<'_>, md: &mut ModelMetadata) {
        if !self.lambdas.is_empty() {
            ctx.finding(
                Severity::High,
                codes::KERAS_LAMBDA,
                format!(
                    "Lambda layers ({}) carry Python bytecode that runs when the model is loaded without safe_mode",
                    self.lambdas.join(", ")
                ),
            );
        }
        if !self.foreign.is_empty() {
            let worst = self.foreign.iter().map(|(s, _)| *s).max().unwrap_or(Safety::Suspicious);
            let names: Vec<String> = self.foreign.iter().map(|(_, g)| g.clone()).collect();
            ctx.finding(
                if worst == Safety::Malicious { Severity::Critical } else { Severity::Medium },
                codes::CUSTOM_OPS,
                format!(
                    "keras configuration refers to code outside Keras or to unsafe Keras functions: {}",
                    names.join(", ")
                ),
            );
            md.custom_ops = names;
        }
        md.lambda_layers = self.lambdas;
    }
}

/// What a parent needs to know about one JSON value.
#[derive(Default)]
struct Summary {
    /// The value, when it is a string.
    string: Option<String>,
    /// The length, when it is an array.
    len: Option<u64>,
    /// For an object: its `class_name`, its `name`, its `layers` count, and from its `config`
    /// member that member's `name` and `layers` count.
    class_name: Option<String>,
    name: Option<String>,
    layers: Option<u64>,
    config_name: Option<String>,
    config_layers: Option<u64>,
}

impl Summary {
    fn describe(self, md: &mut ModelMetadata) {
        let short = |s: String| clean_text(s.as_bytes(), 128);
        md.architecture = self.class_name.map(short);
        md.name = self.config_name.map(short);
        md.node_count = self.config_layers;
    }
}

struct Node<'s> {
    scan: &'s mut Scan,
    policy: &'s PicklePolicy,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Summary;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Summary, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Summary, E> {
        Ok(Summary::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Summary, E> {
        Ok(Summary::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Summary, E> {
        Ok(Summary::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Summary, E> {
        Ok(Summary::default())
    }
    fn visit_unit<E>(self) -> Result<Summary, E> {
        Ok(Summary::default())
    }
    fn visit_str<E>(self, s: &str) -> Result<Summary, E> {
        // Names longer than this are not names; keep the summary small.
        let s = if s.len() > 4096 { clean_text(s.as_bytes(), 1024) } else { s.to_owned() };
        Ok(Summary { string: Some(s), ..Summary::default() })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        let mut n = 0u64;
        while seq.next_element_seed(Node { scan: &mut *self.scan, policy: self.policy })?.is_some() {
            n += 1;
        }
        Ok(Summary { len: Some(n), ..Summary::default() })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        let mut out = Summary::default();
        let (mut module, mut config_str) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(Node { scan: &mut *self.scan, policy: self.policy })?;
            match key.as_str() {
                "class_name" => out.class_name = v.string,
                "module" => module = v.string,
                "name" => out.name = v.string,
                "layers" => out.layers = v.len,
                "config" => {
                    config_str = v.string;
                    out.config_name = v.name;
                    out.config_layers = v.layers;
                }
                _ => {}
            }
        }
        let scan = self.scan;
        if out.class_name.as_deref() == Some("Lambda") && scan.lambdas.len() < MAX_LISTED {
            let name = out.config_name.as_deref().map_or_else(|| "<unnamed>".into(), |n| clean_text(n.as_bytes(), 128));
            scan.lambdas.push(name);
        }
        if let Some(class) = out.class_name.as_deref() {
            // Keras 3 serialises functions as {"class_name": "function", "config": "<name>"}.
            let (name, function) = match (class, config_str.as_deref()) {
                ("function", Some(f)) => (f, true),
                _ => (class, false),
            };
            let verdict = judge_object(self.policy, module.as_deref(), name, function);
            if verdict != Safety::Safe && scan.foreign.len() < MAX_LISTED {
                let shown = match &module {
                    Some(module) => clean_text(format!("{module}.{name}").as_bytes(), 200),
                    None => clean_text(name.as_bytes(), 200),
                };
                if !scan.foreign.iter().any(|(_, g)| *g == shown) {
                    scan.foreign.push((verdict, shown));
                }
            }
        }
        Ok(out)
    }
}

/// Walks one configuration, adding to `scan`; returns the summary of its top object.
fn scan_config(json: &[u8], policy: &PicklePolicy, scan: &mut Scan) -> Result<Summary, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let s = Node { scan, policy }.deserialize(&mut de)?;
    de.end()?;
    Ok(s)
}

/// Analyses a Keras model configuration (`config.json` of a `.keras` zip).
pub fn keras_config(json: &[u8], ctx: &mut Ctx<'_>, md: &mut ModelMetadata) {
    let mut scan = Scan::default();
    match scan_config(json, ctx.policy, &mut scan) {
        Ok(s) => s.describe(md),
        Err(e) => ctx.finding(Severity::Medium, codes::MALFORMED, format!("keras configuration is not JSON: {e}")),
    }
    scan.report(ctx, md);
}
