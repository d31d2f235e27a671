//! Identification and metadata of every supported format, from generated samples, and the
//! behaviour on truncated and corrupted variants of each.

mod generated;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::BTreeMap,
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    process::Command,
};

use generated::*;
use modelwatch_artifact::{
    AnalyzeOptions, ArtifactReport, DigestState, Format, Limits, Opset, Safety, Severity, analyze_bytes, analyze_path,
    codes,
    formats::{has_model_extension, identify, spec::spec_of},
    report::ModelMetadata,
};

/// Counts the bytes each thread holds, so that a test can bound what one analysis allocates
/// whatever the other tests running beside it do.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: allocations while a thread's locals are torn down are not counted.
    let _ = HELD.try_with(|h| {
        let held = h.get() + delta;
        h.set(held);
        let _ = PEAK.try_with(|p| p.set(p.get().max(held)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.dealloc(p, l) };
        count(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: `p` was allocated by `System` with `l`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            count(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What `f` returns, and the most bytes this thread held at once while it ran beyond what it
/// held before.
fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, usize::try_from(PEAK.with(Cell::get) - base).unwrap_or(0))
}

struct Sample {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn write(name: &str, bytes: &[u8]) -> Sample {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write sample");
    Sample { _dir: dir, path }
}

fn analyze(name: &str, bytes: &[u8]) -> ArtifactReport {
    let s = write(name, bytes);
    analyze_path(&s.path, &AnalyzeOptions::default()).expect("analyze")
}

fn codes_of(r: &ArtifactReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn gguf_llama_metadata() {
    let r = analyze("model.bin", &llama_gguf());
    assert_eq!(r.format, Format::Gguf);
    assert_eq!(r.variant.as_deref(), Some("little_endian"));
    let m = &r.metadata;
    assert_eq!(m.format_version, Some(3));
    assert_eq!(m.architecture.as_deref(), Some("llama"));
    assert_eq!(m.name.as_deref(), Some("Llama-3.1-8B-Instruct"));
    assert_eq!(m.license.as_deref(), Some("llama3.1"));
    assert_eq!(m.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(m.context_length, Some(131072));
    assert_eq!(m.tensor_count, Some(2));
    assert_eq!(m.parameter_count, Some(32 + 64));
    assert_eq!(m.dtypes, ["F32", "Q8_0"]);
    assert_eq!(m.chat_template, Some(true));
    assert_eq!(m.properties.get("general.size_label").map(String::as_str), Some("8B"));
    assert_eq!(m.properties.get("general.quantization_version").map(String::as_str), Some("2"));
    assert!(r.pickle.is_none());
    // llama3.1 is not in the default allowed list.
    assert_eq!(codes_of(&r), [codes::LICENSE_NOT_ALLOWED]);
}

#[test]
fn gguf_v2_big_endian_and_without_template() {
    let mut v2 = gguf(
        2,
        &[("general.architecture", GVal::Str("phi3")), ("phi3.context_length", GVal::U32(4096))],
        &[("w", &[8], 0)],
    );
    let r = analyze("x", &v2);
    assert_eq!((r.format, r.metadata.format_version, r.metadata.context_length), (Format::Gguf, Some(2), Some(4096)));
    assert_eq!(r.metadata.chat_template, Some(false));
    // Byte-swap the version field only: a big-endian header with nothing else is still GGUF.
    let be = b"GGUF\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let r = analyze("x", be);
    assert_eq!(
        (r.format, r.variant.as_deref(), r.metadata.format_version),
        (Format::Gguf, Some("big_endian"), Some(3))
    );
    assert!(r.findings.iter().all(|f| f.code != codes::MALFORMED), "{:?}", r.findings);
    // Unsupported version: still GGUF, flagged malformed.
    v2[4] = 9;
    let r = analyze("x", &v2);
    assert_eq!(r.format, Format::Gguf);
    assert!(codes_of(&r).contains(&codes::MALFORMED));
}

#[test]
fn gguf_hostile_counts_and_lengths() {
    // Claims 2^40 metadata entries.
    let mut h = b"GGUF\x03\x00\x00\x00".to_vec();
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let r = analyze_bytes(&h, &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Gguf);
    assert!(r.findings.iter().any(|f| f.code == codes::LIMIT_EXCEEDED), "{:?}", r.findings);
    // A key claiming 2^62 bytes.
    let mut h = b"GGUF\x03\x00\x00\x00".to_vec();
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let r = analyze_bytes(&h, &AnalyzeOptions::default());
    assert!(
        r.findings.iter().any(|f| f.code == codes::MALFORMED || f.code == codes::LIMIT_EXCEEDED),
        "{:?}",
        r.findings
    );
    // Nested arrays beyond the bound.
    let mut h = b"GGUF\x03\x00\x00\x00".to_vec();
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.push(b'k');
    h.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10 {
        h.extend_from_slice(&9u32.to_le_bytes());
        h.extend_from_slice(&1u64.to_le_bytes());
    }
    h.extend_from_slice(&[0u8; 64]);
    let r = analyze_bytes(&h, &AnalyzeOptions::default());
    assert!(r.findings.iter().any(|f| f.code == codes::LIMIT_EXCEEDED), "{:?}", r.findings);
    // Tensor data missing: the header is fine but the file is cut after it.
    let g = llama_gguf();
    let cut = &g[..g.len() - 64];
    let r = analyze_bytes(cut, &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Gguf);
    assert_eq!(r.metadata.parameter_count, Some(96));
    assert!(
        r.findings.iter().any(|f| f.code == codes::MALFORMED && f.message.contains("truncated")),
        "{:?}",
        r.findings
    );
}

#[test]
fn gguf_named_file_that_is_text_is_not_a_model() {
    let r = analyze("llama.gguf", b"<!DOCTYPE html><html><body>Not found</body></html>\n");
    assert_eq!((r.format, r.variant.as_deref()), (Format::NotAModel, Some("html")));
    assert_eq!(codes_of(&r), [codes::NOT_A_MODEL]);
    let r = analyze("llama.gguf", b"version https://git-lfs.github.com/spec/v1\noid sha256:4d2c0f6e1ab0b0aa2c8e1b8d6e3f7b8c9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d\nsize 4920734016\n");
    assert_eq!((r.format, r.variant.as_deref()), (Format::NotAModel, Some("git_lfs_pointer")));
    assert!(r.findings[0].message.contains("4d2c0f6e"));
    let r = analyze("empty.gguf", b"");
    assert_eq!((r.format, r.variant.as_deref()), (Format::NotAModel, Some("empty")));
}

#[test]
fn unknown_binary_is_unknown_whatever_the_name() {
    let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for name in ["model.gguf", "model.safetensors", "model.onnx", "weights.pt"] {
        let r = analyze(name, &noise);
        assert_eq!(r.format, Format::Unknown, "{name}");
        assert!(r.pickle.is_none());
    }
}

#[test]
fn safetensors_metadata_and_validation() {
    let r = analyze("m.safetensors", &tiny_safetensors(Some("apache-2.0")));
    assert_eq!(r.format, Format::Safetensors);
    assert_eq!(r.variant.as_deref(), Some("pt"));
    let m = &r.metadata;
    assert_eq!((m.tensor_count, m.parameter_count), (Some(2), Some(9)));
    assert_eq!(m.dtypes, ["F16", "F32"]);
    assert_eq!(m.license.as_deref(), Some("apache-2.0"));
    assert_eq!(m.properties, props(&[("format", "pt"), ("license", "apache-2.0")]));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    // Offsets past the data, a size that does not match the shape, an unknown dtype.
    let bad = safetensors(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}}"#, 16);
    let r = analyze_bytes(&bad, &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Safetensors);
    assert!(r.findings.iter().any(|f| f.code == codes::MALFORMED && f.message.contains("outside")), "{:?}", r.findings);
    let bad = safetensors(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#, 16);
    let r = analyze_bytes(&bad, &AnalyzeOptions::default());
    assert!(r.findings.iter().any(|f| f.message.contains("need 16")), "{:?}", r.findings);
    let bad = safetensors(r#"{"a":{"dtype":"Q9","shape":[4],"data_offsets":[0,8]}}"#, 16);
    let r = analyze_bytes(&bad, &AnalyzeOptions::default());
    assert!(r.findings.iter().any(|f| f.message.contains("unknown dtype")), "{:?}", r.findings);
    // Not JSON, deeply nested JSON, missing fields.
    for h in ["{not json}", &format!("{}{}", "{\"a\":".repeat(300), "1"), r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#]
    {
        let r = analyze_bytes(&safetensors(h, 8), &AnalyzeOptions::default());
        assert_eq!(r.format, Format::Safetensors, "{h}");
        assert!(codes_of_identified(&r).contains(&codes::MALFORMED), "{h}: {:?}", r.findings);
    }
}

fn codes_of_identified(r: &modelwatch_artifact::formats::Identified) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

fn with_max_parse(bytes: u64) -> AnalyzeOptions {
    AnalyzeOptions { limits: Limits { max_parse_bytes: bytes, ..Limits::default() }, ..AnalyzeOptions::default() }
}

#[test]
fn safetensors_header_memory_is_bounded() {
    // 100 000 tensors: tallied one by one, all counted.
    let mut h = String::from("{");
    for i in 0..100_000 {
        h.push_str(&format!(r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[0,1]}},"#));
    }
    h.pop();
    h.push('}');
    let many = safetensors(&h, 1);
    let (r, peak) = peak_alloc(|| analyze_bytes(&many, &AnalyzeOptions::default()));
    assert_eq!(
        (r.format, r.metadata.tensor_count, r.metadata.parameter_count),
        (Format::Safetensors, Some(100_000), Some(100_000))
    );
    assert_eq!(r.findings.len(), 0, "{:?}", r.findings);
    // The header's own bytes and the reader's buffers: no per-tensor state.
    assert!(peak < h.len() + (1 << 20), "peak {peak} for a {}-byte header", h.len());

    // A header larger than the parse bound is refused before it is read.
    let (r, peak) = peak_alloc(|| analyze_bytes(&many, &with_max_parse(1 << 20)));
    assert!(peak < 1 << 18, "peak {peak}");
    assert_eq!((r.format, r.metadata.tensor_count), (Format::Safetensors, None));
    assert_eq!(codes_of_identified(&r), [codes::LIMIT_EXCEEDED]);
    assert_eq!(
        r.findings[0].message,
        format!(
            "safetensors content is not valid: safetensors header of {} bytes exceeds the limit of 1048576",
            h.len()
        )
    );

    // A million `__metadata__` entries: all checked to be strings, the first 64 kept.
    let mut h = String::from(r#"{"__metadata__":{"#);
    for i in 0..1_000_000 {
        h.push_str(&format!(r#""k{i}":"","#));
    }
    h.pop();
    h.push_str(r#"},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#);
    let sample = safetensors(&h, 1);
    let (r, peak) = peak_alloc(|| analyze_bytes(&sample, &AnalyzeOptions::default()));
    assert_eq!(
        (r.metadata.tensor_count, r.metadata.properties.len(), r.findings.len()),
        (Some(1), 64, 0),
        "{:?}",
        r.findings
    );
    assert!(r.metadata.properties.contains_key("k63") && !r.metadata.properties.contains_key("k64"));
    assert!(peak < h.len() + (1 << 20), "peak {peak} for a {}-byte header", h.len());
    // ...and a value that is not a string after the kept ones is still an error.
    let bad = h.replacen(r#""k999999":"""#, r#""k999999":1"#, 1);
    let r = analyze_bytes(&safetensors(&bad, 1), &AnalyzeOptions::default());
    assert_eq!(codes_of_identified(&r), [codes::MALFORMED]);
    assert!(r.findings[0].message.contains("__metadata__.k999999 is not a string"), "{:?}", r.findings);

    // A shape of four million dimensions is multiplied out, not kept.
    let h = format!(r#"{{"w":{{"dtype":"U8","shape":[{}2],"data_offsets":[0,2]}}}}"#, "1,".repeat(4_000_000));
    let sample = safetensors(&h, 2);
    let (r, peak) = peak_alloc(|| analyze_bytes(&sample, &AnalyzeOptions::default()));
    assert_eq!(
        (r.metadata.tensor_count, r.metadata.parameter_count, r.findings.len()),
        (Some(1), Some(2), 0),
        "{:?}",
        r.findings
    );
    assert!(peak < h.len() + (1 << 20), "peak {peak} for a {}-byte header", h.len());
    // Its product still overflows as it did.
    let h = format!(r#"{{"w":{{"dtype":"U8","shape":[{}0],"data_offsets":[0,0]}}}}"#, "4294967296,".repeat(3));
    let r = analyze_bytes(&safetensors(&h, 0), &AnalyzeOptions::default());
    assert_eq!(codes_of_identified(&r), [codes::MALFORMED]);
    assert!(r.findings[0].message.contains("tensor w size overflows"), "{:?}", r.findings);
}

/// A GGUF header followed by `len` bytes in all, zeros after the header, without holding them:
/// counts what is read.
struct Sparse {
    head: Vec<u8>,
    len: u64,
    pos: u64,
    read: u64,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = usize::try_from(self.pos).ok().and_then(|p| self.head.get(p + i)).copied().unwrap_or(0);
        }
        self.pos += n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

impl Seek for Sparse {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

#[test]
fn gguf_array_of_a_billion_empty_strings_stops_at_the_budget() {
    // One key whose value is an array of 10^9 strings; the zeros after it are 10^9 empty
    // strings (each just its 8-byte length), in a file long enough to hold them all.
    let mut head = b"GGUF\x03\x00\x00\x00".to_vec();
    head.extend_from_slice(&0u64.to_le_bytes());
    head.extend_from_slice(&1u64.to_le_bytes());
    head.extend_from_slice(&1u64.to_le_bytes());
    head.push(b'k');
    head.extend_from_slice(&9u32.to_le_bytes());
    head.extend_from_slice(&8u32.to_le_bytes());
    head.extend_from_slice(&1_000_000_000u64.to_le_bytes());
    let len = head.len() as u64 + 8 * 1_000_000_000;
    let mut src = Sparse { head, len, pos: 0, read: 0 };
    let limits = Limits { max_parse_bytes: 1 << 20, max_pickle_bytes: 1 << 20, ..Limits::default() };
    let r = identify(&mut src, len, &limits, &modelwatch_artifact::PicklePolicy::default());
    assert_eq!(r.format, Format::Gguf);
    assert_eq!(codes_of_identified(&r), [codes::LIMIT_EXCEEDED]);
    assert_eq!(r.findings[0].message, "gguf content is not valid: GGUF header exceeds the limit of 1048576");
    // Stopped within a read buffer of the bound, not after the 8 GB of the array.
    assert!(src.read < (1 << 20) + (1 << 18), "read {} bytes", src.read);

    // The same count in a file too short to hold it: refused before the loop.
    let mut cut = src.head.clone();
    cut.extend_from_slice(&[0u8; 64]);
    let r = analyze_bytes(&cut, &AnalyzeOptions::default());
    assert_eq!(codes_of_identified(&r), [codes::MALFORMED]);
    assert_eq!(r.findings[0].message, "gguf content is not valid: truncated: array of 1000000000 elements");
}

#[test]
fn a_large_safetensors_is_identified_from_its_header_whatever_its_first_byte() {
    // The header length's first byte is `I`, the pickle opcode that reads a line: a walk
    // from byte 0 would read the whole 1 GiB of tensor data looking for a newline.
    let data = 1u64 << 30;
    let mut json = format!("{{\"w\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{data}]}}}}", data / 4);
    while json.len() & 0xff != usize::from(b'I') {
        json.push(' ');
    }
    let mut head = (json.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(json.as_bytes());
    let len = head.len() as u64 + data;
    let mut src = Sparse { head, len, pos: 0, read: 0 };
    let r = identify(&mut src, len, &Limits::default(), &modelwatch_artifact::PicklePolicy::default());
    assert_eq!(r.format, Format::Safetensors);
    assert_eq!(r.metadata.parameter_count, Some(data / 4));
    assert!(r.pickle.is_none());
    assert!(src.read < 1 << 20, "read {} bytes", src.read);
}

#[test]
fn tflite_operator_code_count_is_capped() {
    let r = analyze_bytes(&tflite_op_codes(5000), &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Tflite);
    assert_eq!(r.metadata.properties.get("operator_codes").map(String::as_str), Some("5000"));
    assert_eq!(
        (r.metadata.custom_ops.as_slice(), r.metadata.unsafe_ops.as_slice()),
        (&["FlexReadFile".to_string()][..], &["FlexReadFile".to_string()][..])
    );
    assert_eq!(codes_of_identified(&r), [codes::LIMIT_EXCEEDED, codes::UNSAFE_OPS]);
    assert_eq!(r.findings[0].message, "only the first 4096 of 5000 operator codes were examined for custom operators");
    // At the cap: nothing to say.
    let r = analyze_bytes(&tflite_op_codes(4096), &AnalyzeOptions::default());
    assert_eq!(codes_of_identified(&r), [codes::UNSAFE_OPS]);

    // A count of 2^32 - 1: refused before anything is allocated or looped over.
    // (291 is odd: no offset or vtable entry of the sample can equal it.)
    let mut b = tflite_op_codes(291);
    let count_at = b.windows(4).position(|w| w == 291u32.to_le_bytes()).expect("vector length");
    b[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = analyze_bytes(&b, &AnalyzeOptions::default());
    assert_eq!((r.format, codes_of_identified(&r)), (Format::Tflite, vec![codes::LIMIT_EXCEEDED]));
    assert_eq!(
        r.findings[0].message,
        "tflite content is not valid: vector of 4294967295 elements exceeds the limit of 1048576"
    );
}

#[test]
fn onnx_custom_ops_in_subgraphs_and_functions() {
    let node = |op: &str, domain: &str| cat(&[&pb_str(1, "x"), &pb_str(2, "y"), &pb_str(4, op), &pb_str(7, domain)]);
    let attr_g = |name: &str, g: &[u8]| pb_bytes(5, &cat(&[&pb_str(1, name), &pb_bytes(6, g)]));
    let attr_graphs = |name: &str, g: &[u8]| pb_bytes(5, &cat(&[&pb_str(1, name), &pb_bytes(11, g)]));
    // If: a custom op in its then-branch; its else-branch (a `graphs` attribute) holds a Loop
    // whose body holds another.
    let then_branch = pb_bytes(1, &node("ThenOp", "com.evil"));
    let body = pb_bytes(1, &node("LoopOp", "com.evil"));
    let loop_node = cat(&[&pb_str(4, "Loop"), &attr_g("body", &body)]);
    let else_branch = pb_bytes(1, &loop_node);
    let if_node =
        cat(&[&pb_str(4, "If"), &attr_g("then_branch", &then_branch), &attr_graphs("else_branch", &else_branch)]);
    // A model-local function: calling it is not a custom op, what it runs may be.
    let call = node("MyFn", "local.fn");
    let function = cat(&[
        &pb_str(1, "MyFn"),
        &pb_bytes(7, &node("FnOp", "com.evil")),
        &pb_bytes(7, &node("Relu", "")),
        &pb_str(10, "local.fn"),
    ]);
    let graph = cat(&[&pb_bytes(1, &if_node), &pb_bytes(1, &call), &pb_str(2, "main")]);
    let model = |graph: &[u8]| {
        cat(&[
            &pb_varint(1, 9),
            &pb_str(2, "pytorch"),
            &pb_bytes(7, graph),
            &pb_bytes(8, &pb_varint(2, 17)),
            &pb_bytes(25, &function),
        ])
    };
    let r = analyze_bytes(&model(&graph), &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Onnx);
    // Counts are the main graph's; operators are looked for everywhere.
    assert_eq!((r.metadata.node_count, r.metadata.graph_name.as_deref()), (Some(2), Some("main")));
    assert_eq!(r.metadata.custom_ops, ["com.evil::FnOp", "com.evil::LoopOp", "com.evil::ThenOp"]);
    assert_eq!(codes_of_identified(&r), [codes::CUSTOM_OPS]);
    assert_eq!(
        r.findings[0].message,
        "operators from custom domains need native code the runtime must load: com.evil::FnOp, com.evil::LoopOp, com.evil::ThenOp"
    );

    // Subgraphs nested past the bound: what was seen is kept, the rest is a limit finding.
    let mut g = pb_bytes(1, &node("Deep", "com.evil"));
    for _ in 0..20 {
        g = pb_bytes(1, &cat(&[&pb_str(4, "If"), &attr_g("then_branch", &g)]));
    }
    let r = analyze_bytes(&model(&g), &AnalyzeOptions::default());
    assert_eq!((r.format, r.metadata.node_count), (Format::Onnx, Some(1)));
    assert_eq!(r.metadata.custom_ops, Vec::<String>::new());
    assert_eq!(codes_of_identified(&r), [codes::LIMIT_EXCEEDED]);
    assert_eq!(r.findings[0].message, "onnx content is not valid: ONNX subgraph nesting exceeds the limit of 16");
}

#[test]
fn safetensors_shards_are_grouped() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 1..=2 {
        std::fs::write(dir.path().join(format!("model-0000{i}-of-00003.safetensors")), tiny_safetensors(None))
            .expect("write");
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 72}, "weight_map": {"a.weight": "model-00001-of-00003.safetensors"}}"#,
    )
    .expect("write index");
    let r = analyze_path(&dir.path().join("model-00002-of-00003.safetensors"), &AnalyzeOptions::default())
        .expect("analyze");
    let s = r.metadata.shard.expect("shard info");
    assert_eq!((s.index, s.count, s.total_size), (2, 3, Some(72)));
    assert_eq!(s.group, dir.path().join("model").to_string_lossy());
    assert_eq!(s.index_file, Some(dir.path().join("model.safetensors.index.json").to_string_lossy().into_owned()));

    let args = modelwatch_artifact::scan::ScanOptions::new(vec![dir.path().to_path_buf()]);
    let out = modelwatch_artifact::scan::execute(&args, &Default::default()).expect("scan");
    assert_eq!(out.sharded_models.len(), 1);
    let g = &out.sharded_models[0];
    assert_eq!(
        (g.shards_expected, g.shards_found.as_slice(), g.parameter_count, g.tensor_count),
        (3, &[1u32, 2][..], 18, 4)
    );
    assert_eq!(g.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(), [codes::SHARD_INCOMPLETE]);
    // The index JSON itself is walked past: not a model, no model extension.
    assert_eq!(out.artifacts.len(), 2);
}

#[test]
fn pytorch_zip_torchscript_and_legacy_containers() {
    let r = analyze("model.pt", &torch_zip(&torch_state_dict_pickle()));
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pytorch, Some("zip")));
    assert_eq!((r.metadata.tensor_count, r.metadata.entries), (Some(1), Some(4)));
    assert_eq!(r.metadata.properties.get("storage_bytes").map(String::as_str), Some("16"));
    let p = r.pickle.as_ref().expect("pickle verdict");
    assert_eq!(p.verdict, Safety::Safe);
    assert_eq!(p.globals, ["collections.OrderedDict", "torch.FloatStorage", "torch._utils._rebuild_tensor_v2"]);
    assert_eq!(p.streams, ["archive/data.pkl"]);
    assert!(p.complete && p.offending.is_empty());
    assert_eq!(codes_of(&r), [codes::LICENSE_MISSING]);

    let script = stored_zip(&[
        ("m/data.pkl", &torch_state_dict_pickle()),
        ("m/constants.pkl", b"\x80\x02).".as_slice()),
        ("m/code/__torch__.py", b"class M(Module):\n  pass\n".as_slice()),
    ]);
    let r = analyze("m.pt", &script);
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pytorch, Some("torchscript")));
    assert_eq!(
        r.pickle.as_ref().map(|p| p.streams.clone()),
        Some(vec!["m/data.pkl".to_string(), "m/constants.pkl".into()])
    );

    let r = analyze("old.pt", &torch_legacy_stream(&torch_state_dict_pickle()));
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pytorch, Some("legacy")));
    assert_eq!(r.pickle.as_ref().map(|p| p.verdict), Some(Safety::Safe));
    assert_eq!(r.metadata.format_version, Some(2));

    let r = analyze("older.pt", &torch_legacy_tar(&torch_state_dict_pickle()));
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pytorch, Some("legacy_tar")));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.streams.len()), (Safety::Safe, 4));

    let r = analyze("evil.pt", &torch_legacy_tar(&os_system_pickle()));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.offending.as_slice()), (Safety::Malicious, &["os.system".to_string()][..]));

    // A tar that is not a torch checkpoint.
    let r = analyze("x.tar", &tar(&[("README", b"hello")]));
    assert_eq!((r.format, r.variant.as_deref()), (Format::Unknown, Some("tar")));
}

#[test]
fn plain_pickle_and_joblib() {
    // {"a": [1, 2]} in protocol 4 with a frame.
    let body = cat(&[b"}\x94", &ustr("a"), b"\x94]\x94(K\x01K\x02es."]);
    let mut p4 = vec![0x80, 4, 0x95];
    p4.extend_from_slice(&(body.len() as u64).to_le_bytes());
    p4.extend_from_slice(&body);
    let r = analyze("x.pkl", &p4);
    assert_eq!((r.format, r.variant.as_deref(), r.metadata.format_version), (Format::Pickle, None, Some(4)));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.globals.len(), p.complete), (Safety::Safe, 0, true));

    // joblib inlines array bytes into the pickle stream: the walk cannot follow them.
    let joblib = cat(&[
        b"\x80\x04",
        &ustr("joblib.numpy_pickle"),
        &ustr("NumpyArrayWrapper"),
        b"\x93)\x81}\x94b",
        &[0xffu8; 32],
        b".",
    ]);
    let r = analyze("m.joblib", &joblib);
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pickle, Some("joblib")));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.complete), (Safety::Suspicious, false));
    assert!(p.offending.is_empty());
    assert!(codes_of(&r).contains(&codes::PICKLE_INCOMPLETE));

    // Protocol 0 without PROTO is found by walking.
    let r = analyze("p0", b"(lp0\nI1\naI2\na.");
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pickle, Some("protocol_0")));
    assert_eq!(r.pickle.as_ref().map(|p| p.verdict), Some(Safety::Safe));
}

#[test]
fn numpy_npy_and_npz() {
    let r = analyze("a.npy", &npy("<f4", "(3, 4)", &[0u8; 48]));
    assert_eq!((r.format, r.variant.as_deref(), r.metadata.format_version), (Format::Numpy, Some("npy"), Some(1)));
    assert_eq!((r.metadata.shape.as_slice(), r.metadata.parameter_count), (&[3u64, 4][..], Some(12)));
    assert_eq!(r.metadata.dtypes, ["<f4"]);
    assert!(r.pickle.is_none());

    let obj = npy("|O", "(1,)", &os_system_pickle());
    let r = analyze("obj.npy", &obj);
    let p = r.pickle.as_ref().expect("object arrays are pickles");
    assert_eq!((p.verdict, p.streams.as_slice()), (Safety::Malicious, &["<object array data>".to_string()][..]));

    let npz = deflated_zip(&[("x.npy", &npy("<i8", "(2,)", &[0u8; 16])), ("y.npy", &npy("<f2", "(5,)", &[0u8; 10]))]);
    let r = analyze("d.npz", &npz);
    assert_eq!((r.format, r.variant.as_deref()), (Format::Numpy, Some("npz")));
    assert_eq!((r.metadata.tensor_count, r.metadata.parameter_count), (Some(2), Some(7)));
    assert_eq!(r.metadata.dtypes, ["<f2", "<i8"]);
    assert!(r.pickle.is_none());

    let evil = stored_zip(&[("x.npy", &npy("<f4", "(1,)", &[0u8; 4])), ("y.npy", &obj)]);
    let r = analyze("e.npz", &evil);
    assert_eq!(
        r.pickle.as_ref().map(|p| (p.verdict, p.streams.clone())),
        Some((Safety::Malicious, vec!["y.npy (object array)".to_string()]))
    );

    // Hostile header: Python code in the dict literal, absurd length.
    let r = analyze_bytes(&npy("<f4', 'x': __import__('os').system('id'), '", "(1,)", &[]), &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Numpy);
    assert!(codes_of_identified(&r).contains(&codes::MALFORMED));
    // A header length past the file's end: truncated.
    let r = analyze_bytes(b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{", &AnalyzeOptions::default());
    assert!(codes_of_identified(&r).contains(&codes::MALFORMED), "{:?}", r.findings);
    // A header too long to parse (NumPy reads it when pickles are allowed): read through, and
    // the data after it still walked for a pickle.
    let mut big = b"\x93NUMPY\x02\x00".to_vec();
    let text = format!("{{'descr': '|O', 'fortran_order': False, 'shape': (1,), 'pad': '{}'}}\n", " ".repeat(2 << 20));
    big.extend_from_slice(&(text.len() as u32).to_le_bytes());
    big.extend_from_slice(text.as_bytes());
    big.extend_from_slice(&os_system_pickle());
    let r = analyze("huge-header.npy", &big);
    assert_eq!(r.format, Format::Numpy);
    assert!(codes_of(&r).contains(&codes::LIMIT_EXCEEDED), "{:?}", r.findings);
    assert_eq!(r.pickle.as_ref().map(|p| p.verdict), Some(Safety::Malicious));
}

#[test]
fn onnx_header_custom_ops_and_external_data() {
    let r = analyze("m.onnx", &onnx_model());
    assert_eq!(r.format, Format::Onnx);
    let m = &r.metadata;
    assert_eq!(m.ir_version, Some(9));
    assert_eq!((m.producer.as_deref(), m.producer_version.as_deref()), (Some("pytorch"), Some("2.3.0")));
    assert_eq!(
        m.opsets,
        [Opset { domain: String::new(), version: 17 }, Opset { domain: "com.example.custom".into(), version: 1 }]
    );
    assert_eq!(m.graph_name.as_deref(), Some("main_graph"));
    // An exporter's generic graph name is no model name.
    assert_eq!(m.name, None);
    assert_eq!((m.node_count, m.tensor_count, m.parameter_count), (Some(2), Some(2), Some(40)));
    assert_eq!(m.dtypes, ["float", "float16"]);
    assert_eq!(m.custom_ops, ["com.example.custom::EvilOp"]);
    assert_eq!(m.external_data, ["../../etc/passwd"]);
    assert_eq!(m.license.as_deref(), Some("MIT"));
    assert_eq!(codes_of(&r), [codes::EXTERNAL_DATA, codes::CUSTOM_OPS]);

    let r = analyze("c.onnx", &onnx_clean());
    assert_eq!((r.format, r.metadata.node_count, r.metadata.graph_name.as_deref()), (Format::Onnx, Some(1), Some("g")));
    // A graph with a name of its own names the model.
    assert_eq!(r.metadata.name.as_deref(), Some("g"));
    assert_eq!(codes_of(&r), [codes::LICENSE_MISSING]);
}

#[test]
fn tflite_header() {
    let r = analyze("m.tflite", &tflite());
    assert_eq!(r.format, Format::Tflite);
    let m = &r.metadata;
    assert_eq!((m.format_version, m.node_count, m.tensor_count), (Some(3), Some(2), Some(3)));
    assert_eq!(m.custom_ops, ["FlexReadFile"]);
    assert_eq!(m.unsafe_ops, ["FlexReadFile"]);
    assert_eq!(
        m.properties,
        props(&[
            ("description", "TOCO Converted."),
            ("metadata", "min_runtime_version"),
            ("operator_codes", "2"),
            ("subgraphs", "1")
        ])
    );
    assert_eq!(codes_of(&r), [codes::UNSAFE_OPS, codes::LICENSE_MISSING]);
}

#[test]
fn savedmodel_and_coreml() {
    let r = analyze("saved_model.pb", &savedmodel());
    assert_eq!(r.format, Format::TfSavedmodel);
    let m = &r.metadata;
    assert_eq!((m.format_version, m.node_count), (Some(1), Some(3)));
    assert_eq!(m.tags, ["serve"]);
    assert_eq!((m.producer.as_deref(), m.producer_version.as_deref()), (Some("tensorflow"), Some("2.15.0")));
    assert_eq!(m.unsafe_ops, ["ReadFile", "WriteFile"]);
    assert!(codes_of(&r).contains(&codes::UNSAFE_OPS));

    let r = analyze("m.mlmodel", &coreml());
    assert_eq!(r.format, Format::Coreml);
    let m = &r.metadata;
    assert_eq!((m.format_version, m.architecture.as_deref(), m.node_count), (Some(4), Some("neuralNetwork"), Some(2)));
    assert_eq!(m.license.as_deref(), Some("MIT"));
    assert_eq!(m.custom_ops, ["custom layer cust"]);
    assert_eq!(
        m.properties,
        props(&[
            ("author", "ACME"),
            ("com.github.apple.coremltools.version", "7.1"),
            ("short_description", "tiny classifier"),
            ("version", "1.0")
        ])
    );
    assert_eq!(codes_of(&r), [codes::CUSTOM_OPS]);
}

#[test]
fn keras_zip_and_h5() {
    let r = analyze("m.keras", &keras_zip(&keras_config("")));
    assert_eq!(r.format, Format::Keras);
    let m = &r.metadata;
    assert_eq!(
        (m.architecture.as_deref(), m.name.as_deref(), m.node_count),
        (Some("Sequential"), Some("sequential"), Some(2))
    );
    assert!(m.lambda_layers.is_empty());
    assert_eq!(m.properties.get("keras_version").map(String::as_str), Some("3.3.3"));

    let r = analyze("l.keras", &keras_zip(&keras_config(KERAS_LAMBDA_LAYER)));
    assert_eq!(r.metadata.lambda_layers, ["evil_lambda"]);
    assert!(codes_of(&r).contains(&codes::KERAS_LAMBDA));

    let r = analyze("o.keras", &keras_zip(&keras_config(KERAS_OS_SYSTEM_LAYER)));
    assert_eq!(r.metadata.custom_ops, ["os.system"]);
    assert_eq!(r.findings[0].code, codes::CUSTOM_OPS);
    assert_eq!(r.findings[0].severity, Severity::Critical);

    let r = analyze("m.h5", &keras_h5(&keras_h5_lambda_config()));
    assert_eq!((r.format, r.variant.as_deref()), (Format::KerasH5, Some("model")));
    assert_eq!((r.metadata.architecture.as_deref(), r.metadata.node_count), (Some("Sequential"), Some(2)));
    assert_eq!(r.metadata.lambda_layers, ["lambda"]);
    assert!(codes_of(&r).contains(&codes::KERAS_LAMBDA));

    // Behind a 512-byte user block.
    let mut ub = vec![0u8; 512];
    ub.extend_from_slice(&keras_h5(&keras_h5_lambda_config()));
    assert_eq!(analyze("u.h5", &ub).metadata.lambda_layers, ["lambda"]);

    let r = analyze("w.h5", &keras_h5_weights());
    assert_eq!((r.format, r.variant.as_deref()), (Format::KerasH5, Some("weights")));
    let r = analyze("d.h5", &plain_hdf5());
    assert_eq!((r.format, r.findings.len()), (Format::Hdf5, 0));
    // Unterminated configuration.
    let r = analyze_bytes(&keras_h5("{\"class_name\": \"Sequential\", \"config\": {"), &AnalyzeOptions::default());
    assert_eq!(r.format, Format::KerasH5);
    assert!(
        codes_of_identified(&r).iter().any(|c| *c == codes::MALFORMED || *c == codes::LIMIT_EXCEEDED),
        "{:?}",
        r.findings
    );
}

/// Layers naming the Keras functions and classes that undo safe mode or reach files
/// (CVE-2025-9906, CVE-2025-8747, `TFSMLayer`), as Keras 3 writes them.
const KERAS_SAFE_MODE_BYPASS: &str = r#", {"module": "keras.layers", "class_name": "Activation", "config": {"name": "a1", "activation": {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization", "registered_name": "function"}}}, {"module": "keras.layers", "class_name": "Activation", "config": {"name": "a2", "activation": {"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "function"}}}, {"module": "keras.layers", "class_name": "TFSMLayer", "config": {"name": "t", "filepath": "/tmp/saved"}, "registered_name": null}, {"module": "keras.models", "class_name": "function", "config": "model_from_json"}"#;

#[test]
fn keras_safe_mode_bypasses_are_flagged_in_zip_and_h5() {
    let expected = [
        "keras.config.enable_unsafe_deserialization",
        "keras.utils.get_file",
        "keras.layers.TFSMLayer",
        "keras.models.model_from_json",
    ];
    let message = format!(
        "keras configuration refers to code outside Keras or to unsafe Keras functions: {}",
        expected.join(", ")
    );
    let config = keras_config(KERAS_SAFE_MODE_BYPASS);

    let r = analyze_bytes(&keras_zip(&config), &AnalyzeOptions::default());
    assert_eq!(
        (r.format, r.metadata.architecture.as_deref(), r.metadata.node_count),
        (Format::Keras, Some("Sequential"), Some(6))
    );
    assert_eq!(r.metadata.custom_ops, expected);
    assert_eq!(codes_of_identified(&r), [codes::CUSTOM_OPS]);
    assert_eq!((r.findings[0].severity, r.findings[0].message.as_str()), (Severity::Critical, message.as_str()));

    // The same configuration as an HDF5 `model_config`, behind a decoy configuration: every
    // configuration-like object is examined, and the model is described from the one with layers.
    let decoy = r#"{"class_name": "Decoy", "config": {"name": "decoy"}}"#;
    let r =
        analyze_bytes(&keras_h5(&format!("{decoy}\0\0\0\0model_config\0\0\0\0{config}")), &AnalyzeOptions::default());
    assert_eq!((r.format, r.variant.as_deref()), (Format::KerasH5, Some("model")));
    assert_eq!(
        (r.metadata.architecture.as_deref(), r.metadata.name.as_deref(), r.metadata.node_count),
        (Some("Sequential"), Some("sequential"), Some(6))
    );
    assert_eq!(r.metadata.custom_ops, expected);
    assert_eq!(codes_of_identified(&r), [codes::CUSTOM_OPS]);
    assert_eq!((r.findings[0].severity, r.findings[0].message.as_str()), (Severity::Critical, message.as_str()));

    // Legacy HDF5 configurations name no module: Keras looks `TFSMLayer` up among its own layers.
    let legacy = r#"{"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "config": {"name": "d"}}, {"class_name": "TFSMLayer", "config": {"name": "t", "filepath": "/tmp/saved"}}]}, "keras_version": "2.13.1"}"#;
    let r = analyze_bytes(&keras_h5(legacy), &AnalyzeOptions::default());
    assert_eq!(r.metadata.custom_ops, ["TFSMLayer"]);
    assert_eq!(codes_of_identified(&r), [codes::CUSTOM_OPS]);
    assert_eq!(r.findings[0].severity, Severity::Critical);

    // Keras 3 writes every functional model under `keras.src.models`: a model, not a loader.
    let functional = r#"{"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "functional", "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "input"}}, {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "activation": {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "function"}}}]}, "registered_name": "Functional"}"#;
    let r = analyze_bytes(&keras_zip(functional), &AnalyzeOptions::default());
    assert_eq!(
        (r.format, r.metadata.architecture.as_deref(), r.metadata.node_count),
        (Format::Keras, Some("Functional"), Some(2))
    );
    assert_eq!((r.metadata.custom_ops.len(), r.findings.len()), (0, 0), "{:?}", r.findings);
    let r = analyze_bytes(&keras_h5(functional), &AnalyzeOptions::default());
    assert_eq!((r.format, r.metadata.custom_ops.len(), r.findings.len()), (Format::KerasH5, 0, 0), "{:?}", r.findings);
}

#[test]
fn digest_matches_coreutils_sha256sum() {
    let bytes = llama_gguf();
    let s = write("m.gguf", &bytes);
    let r = analyze_path(&s.path, &AnalyzeOptions::default()).expect("analyze");
    let out = Command::new("sha256sum").arg(&s.path).output().expect("run sha256sum");
    let expected = String::from_utf8(out.stdout).expect("utf8");
    let expected = expected.split_whitespace().next().expect("digest");
    let d = r.digest.expect("digest");
    assert_eq!((d.sha256_hex.as_str(), d.state, d.claimed_sha256_hex), (expected, DigestState::Verified, None));
    // And no digest when not asked for.
    let opts = AnalyzeOptions { digest: false, ..Default::default() };
    assert_eq!(analyze_path(&s.path, &opts).expect("analyze").digest, None);
}

/// Every valid sample, for the truncation and corruption sweeps.
fn all_samples() -> Vec<(&'static str, Format, Vec<u8>)> {
    vec![
        ("gguf", Format::Gguf, llama_gguf()),
        ("safetensors", Format::Safetensors, tiny_safetensors(Some("MIT"))),
        ("pytorch_zip", Format::Pytorch, torch_zip(&torch_state_dict_pickle())),
        ("pytorch_legacy", Format::Pytorch, torch_legacy_stream(&torch_state_dict_pickle())),
        ("pytorch_tar", Format::Pytorch, torch_legacy_tar(&torch_state_dict_pickle())),
        ("pickle", Format::Pickle, os_system_pickle()),
        ("npy", Format::Numpy, npy("<f4", "(3, 4)", &[0u8; 48])),
        ("npz", Format::Numpy, deflated_zip(&[("x.npy", &npy("<i8", "(2,)", &[0u8; 16]))])),
        ("onnx", Format::Onnx, onnx_model()),
        ("tflite", Format::Tflite, tflite()),
        ("savedmodel", Format::TfSavedmodel, savedmodel()),
        ("coreml", Format::Coreml, coreml()),
        ("keras", Format::Keras, keras_zip(&keras_config(KERAS_LAMBDA_LAYER))),
        ("keras_h5", Format::KerasH5, keras_h5(&keras_h5_lambda_config())),
    ]
}

#[test]
fn truncated_variants_keep_their_format_and_say_malformed() {
    let opts = AnalyzeOptions::default();
    for (name, format, bytes) in all_samples() {
        // Every cut point for small samples; a spread for larger ones.
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let r = analyze_bytes(&bytes[..cut], &opts);
            // Past the signature the format must stay identified (zip: once the first local
            // header names the contents) and the damage must be reported.
            let signature = match name {
                "onnx" | "savedmodel" | "coreml" => usize::MAX, // no signature; structure decides
                "pytorch_zip" | "npz" | "keras" => 60,
                "pytorch_legacy" => 16,
                "pytorch_tar" => 1024,
                "safetensors" => 9,
                "keras_h5" => 200,
                "pickle" => 2,
                _ => 8,
            };
            // Bytes at the end whose loss no reader can notice: GGUF alignment padding after
            // the last tensor, legacy torch raw storage bytes, the TFLite string terminator and
            // padding, HDF5 free space after the configuration.
            let tail = match name {
                "gguf" => 28,
                "pytorch_legacy" => 24,
                "tflite" => 4,
                "keras_h5" => 300,
                _ => 0,
            };
            if cut > signature && cut < bytes.len() - tail {
                assert_eq!(r.format, format, "{name} cut at {cut}/{}: {:?}", bytes.len(), r.findings);
                let damaged = r.findings.iter().any(|f| {
                    [codes::MALFORMED, codes::LIMIT_EXCEEDED, codes::PICKLE_INCOMPLETE].contains(&f.code.as_str())
                }) || r.pickle.as_ref().is_some_and(|p| !p.complete);
                assert!(damaged, "{name} cut at {cut}/{}: no damage reported: {:?}", bytes.len(), r.findings);
            }
        }
    }
}

#[test]
fn the_format_table_names_every_reported_format_and_variant() {
    let opts = AnalyzeOptions::default();
    for (name, format, bytes) in all_samples() {
        let spec = spec_of(format).expect("a row");
        assert!(spec.extensions.iter().all(|e| has_model_extension(&PathBuf::from(format!("m.{e}")))), "{name}");
        // Whole and cut: a cut zip is named by its first entry, with the variant `zip`.
        let step = (bytes.len() / 50).max(1);
        for cut in (0..=bytes.len()).step_by(step) {
            let r = analyze_bytes(&bytes[..cut], &opts);
            let Some(spec) = spec_of(r.format) else { continue };
            if let (Some(v), Some(listed)) = (&r.variant, spec.variants) {
                assert!(listed.contains(&v.as_str()), "{name} cut at {cut}: {} variant {v}", r.format);
            }
        }
    }
}

#[test]
fn protobuf_formats_cut_inside_the_graph_keep_their_format() {
    let opts = AnalyzeOptions::default();
    for (format, bytes) in
        [(Format::Onnx, onnx_model()), (Format::TfSavedmodel, savedmodel()), (Format::Coreml, coreml())]
    {
        let cut = &bytes[..bytes.len() - 3];
        let r = analyze_bytes(cut, &opts);
        assert_eq!(r.format, format);
        assert!(r.findings.iter().any(|f| f.code == codes::MALFORMED), "{format}: {:?}", r.findings);
    }
    // The metadata read before the cut survives.
    let onnx = onnx_model();
    let r = analyze_bytes(&onnx[..onnx.len() - 20], &opts);
    assert_eq!(r.metadata.producer.as_deref(), Some("pytorch"));
}

#[test]
fn corrupted_variants_never_panic() {
    let opts = AnalyzeOptions::default();
    for (name, _, bytes) in all_samples() {
        let step = (bytes.len() / 300).max(1);
        for pos in (0..bytes.len()).step_by(step) {
            for v in [0x00u8, 0xff, 0x7f, 0x80] {
                let mut b = bytes.clone();
                b[pos] = v;
                let r = analyze_bytes(&b, &opts);
                // Whatever the damage, the answer is one of the formats and judgements stay
                // consistent with the findings.
                if let Some(p) = &r.pickle
                    && p.verdict == Safety::Malicious
                {
                    assert!(r.findings.iter().any(|f| f.code == codes::PICKLE_MALICIOUS), "{name}@{pos}");
                }
                assert!(Format::ALL.contains(&r.format));
            }
        }
    }
}

#[test]
fn metadata_default_is_empty() {
    // The report of plain unknown content carries no metadata at all.
    let r = analyze_bytes(&[0xAAu8; 5000], &AnalyzeOptions::default());
    assert_eq!((r.format, r.metadata), (Format::Unknown, ModelMetadata::default()));
}

/// Writes the samples as fuzz seeds when `MW_DUMP_FUZZ_SEEDS=<fuzz corpus dir>` is set
/// (`artifact/fuzz/gen-seeds.sh`).
#[test]
#[ignore = "a tool, not a test: writes fuzz seeds to $MW_DUMP_FUZZ_SEEDS (artifact/fuzz/gen-seeds.sh)"]
fn dump_fuzz_seeds() {
    let root =
        PathBuf::from(std::env::var_os("MW_DUMP_FUZZ_SEEDS").expect("MW_DUMP_FUZZ_SEEDS names the corpus directory"));
    let mut extra: Vec<(&str, &str, Vec<u8>)> = vec![
        ("zip", "npz_object", stored_zip(&[("y.npy", &npy("|O", "(1,)", &os_system_pickle()))])),
        ("zip", "keras_os_system", keras_zip(&keras_config(KERAS_OS_SYSTEM_LAYER))),
        ("keras_h5", "weights", keras_h5_weights()),
        ("numpy", "object", npy("|O", "(1,)", &os_system_pickle())),
        ("onnx", "clean", onnx_clean()),
        (
            "manifest",
            "toml",
            format!(
                "[[model]]\nsha256 = \"{}\"\nname = \"m\"\n[[deny]]\nsha256 = \"{}\"\n",
                "a".repeat(64),
                "b".repeat(64)
            )
            .into_bytes(),
        ),
        (
            "manifest",
            "json",
            format!("{{\"model\": [{{\"sha256\": \"{}\", \"license\": \"MIT\"}}]}}", "c".repeat(64)).into_bytes(),
        ),
    ];
    for (name, _, bytes) in all_samples() {
        let target = match name {
            "pytorch_zip" | "npz" | "keras" => "zip",
            "pytorch_legacy" | "pickle" => "pickle",
            "pytorch_tar" => "torch_tar",
            "npy" => "numpy",
            other => other,
        };
        extra.push((target, name, bytes.clone()));
        extra.push(("identify", name, bytes));
    }
    for (target, name, bytes) in extra {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
    assert!(root.join("identify").is_dir());
}
