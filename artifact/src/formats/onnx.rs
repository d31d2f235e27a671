//! ONNX `ModelProto` header reader (see `protobuf` for why it is hand-written): IR version,
//! producer, opsets, graph name, node and initializer counts, parameter count, element types,
//! operators from non-standard domains (they need native code the runtime loads) and
//! external-data locations (a path that leaves the model's directory is a finding).
//!
//! Operators and tensors are looked for wherever the runtime finds them: the main graph, the
//! subgraphs in node attributes (`If`, `Loop`, `Scan` bodies), model-local functions, training
//! graphs, sparse initializers and tensors held in attributes (`Constant`). Counts describe the
//! main graph only. Subgraph nesting is bounded.

use std::collections::BTreeSet;

use crate::{
    formats::{
        Ctx, Parsed,
        protobuf::{Pb, TopFields, Wire},
    },
    io::{PResult, ParseError},
    report::{Opset, Severity, codes},
};

const MAX_LISTED: usize = 256;
/// Graphs nested in attributes (or training graphs) followed this deep.
const MAX_DEPTH: u32 = 16;

fn data_type(t: u64) -> String {
    let n = match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        other => return format!("type_{other}"),
    };
    n.to_owned()
}

fn standard_domain(d: &str) -> bool {
    d.is_empty()
        || d == "ai.onnx"
        || d.starts_with("ai.onnx.")
        || d == "com.microsoft"
        || d.starts_with("com.microsoft.")
}

#[derive(Default)]
struct Stats {
    nodes: u64,
    initializers: u64,
    params: u64,
    params_overflow: bool,
    dtypes: BTreeSet<String>,
    custom: BTreeSet<(String, String)>,
    /// Model-local functions (domain, name): calling one needs no native code.
    functions: BTreeSet<(String, String)>,
    external: BTreeSet<String>,
}

/// Whether top-level fields are those of a `ModelProto`: ir_version 1, producer_name 2,
/// producer_version 3, domain 4, model_version 5, doc_string 6, graph 7, opset_import 8,
/// metadata_props 14, training_info 20, functions 25, configuration 26.
pub fn shape(top: &TopFields) -> bool {
    top.all(|n, k| match n {
        1 | 5 => k == 0,
        2 | 3 | 4 | 6 | 7 | 8 | 14 | 20 | 25 | 26 => k == 2,
        _ => false,
    }) && top.has(1)
        && (top.has(7) || top.has(8))
}

pub fn parse(r: &mut crate::io::Reader<'_>, ctx: &mut Ctx<'_>, p: &mut Parsed) -> PResult<()> {
    let end = r.len();
    let mut pb = Pb::new(r);
    let mut st = Stats::default();
    let result = (|| -> PResult<()> {
        while let Some(f) = pb.next(end)? {
            let m = &mut p.metadata;
            match (f.number, f.wire) {
                (1, Wire::Varint(v)) => m.ir_version = Some(v as i64),
                (2, Wire::Len(n)) => m.producer = Some(pb.string(n, 128)?),
                (3, Wire::Len(n)) => m.producer_version = Some(pb.string(n, 64)?),
                (4, Wire::Len(n)) => {
                    let d = pb.string(n, 128)?;
                    m.properties.insert("domain".into(), d);
                }
                (5, Wire::Varint(v)) => {
                    m.properties.insert("model_version".into(), v.to_string());
                }
                (7, Wire::Len(n)) => {
                    let gend = pb.end_of(n);
                    graph(&mut pb, gend, &mut st, Some(m), 0)?;
                }
                // TrainingInfoProto: initialization (1) and algorithm (2) graphs.
                (20, Wire::Len(n)) => {
                    let tend = pb.end_of(n);
                    while let Some(f) = pb.next(tend)? {
                        match (f.number, f.wire) {
                            (1 | 2, Wire::Len(n)) => {
                                let gend = pb.end_of(n);
                                graph(&mut pb, gend, &mut st, None, 1)?;
                            }
                            _ => pb.skip(f)?,
                        }
                    }
                }
                (25, Wire::Len(n)) => {
                    let fend = pb.end_of(n);
                    function(&mut pb, fend, &mut st)?;
                }
                (8, Wire::Len(n)) => {
                    let oend = pb.end_of(n);
                    let mut op = Opset { domain: String::new(), version: 0 };
                    while let Some(f) = pb.next(oend)? {
                        match (f.number, f.wire) {
                            (1, Wire::Len(n)) => op.domain = pb.string(n, 128)?,
                            (2, Wire::Varint(v)) => op.version = v as i64,
                            _ => pb.skip(f)?,
                        }
                    }
                    if m.opsets.len() < MAX_LISTED {
                        m.opsets.push(op);
                    }
                }
                (14, Wire::Len(n)) => {
                    let (k, v) = pb.string_entry(n, 128, 512)?;
                    match k.to_ascii_lowercase().as_str() {
                        "license" | "licence" => m.license = Some(v.clone()),
                        "name" | "model_name" => m.name = Some(v.clone()),
                        _ => {}
                    }
                    if m.properties.len() < 64 {
                        m.properties.insert(k, v);
                    }
                }
                _ => pb.skip(f)?,
            }
        }
        Ok(())
    })();
    let m = &mut p.metadata;
    // The model's name: a `name` metadata property, else the main graph's name unless it is
    // an exporter's generic one (torch.onnx writes `main_graph` or `torch_jit`, tf2onnx `tf2onnx`).
    if m.name.is_none() {
        m.name = m.graph_name.clone().filter(|g| !is_generic_graph_name(g));
    }
    m.node_count = Some(st.nodes);
    m.tensor_count = Some(st.initializers);
    m.parameter_count = (!st.params_overflow).then_some(st.params);
    m.dtypes = st.dtypes.into_iter().collect();
    m.custom_ops = st
        .custom
        .into_iter()
        .filter(|k| !st.functions.contains(k))
        .map(|(domain, op)| format!("{domain}::{op}"))
        .collect();
    m.external_data = st.external.into_iter().collect();
    if !m.custom_ops.is_empty() {
        ctx.finding(
            Severity::Medium,
            codes::CUSTOM_OPS,
            format!(
                "operators from custom domains need native code the runtime must load: {}",
                m.custom_ops.join(", ")
            ),
        );
    }
    let escaping: Vec<&String> = m
        .external_data
        .iter()
        .filter(|l| {
            l.starts_with('/') || l.starts_with('\\') || l.split(['/', '\\']).any(|c| c == "..") || l.contains(':')
        })
        .collect();
    if !escaping.is_empty() {
        ctx.finding(
            Severity::High,
            codes::EXTERNAL_DATA,
            format!(
                "external tensor data points outside the model's directory: {}",
                escaping.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
    } else if !m.external_data.is_empty() {
        ctx.finding(
            Severity::Info,
            codes::EXTERNAL_DATA,
            format!("weights are stored in external files: {}", m.external_data.join(", ")),
        );
    }
    result
}

/// Graph names exporters write whatever the model: they say nothing about which model it is.
fn is_generic_graph_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.is_empty()
        || matches!(n.as_str(), "main_graph" | "torch_jit" | "torch-jit-export" | "tf2onnx" | "graph" | "model")
        || n.starts_with("torch_jit")
}

/// A GraphProto. `m` is set for the main graph only: its counts and name are the model's.
fn graph(
    pb: &mut Pb<'_, '_>,
    end: u64,
    st: &mut Stats,
    mut m: Option<&mut crate::report::ModelMetadata>,
    depth: u32,
) -> PResult<()> {
    if depth > MAX_DEPTH {
        return Err(ParseError::limit("ONNX subgraph nesting", u64::from(MAX_DEPTH)));
    }
    let top = m.is_some();
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Len(n)) => {
                if top {
                    st.nodes += 1;
                }
                let nend = pb.end_of(n);
                node(pb, nend, st, depth)?;
            }
            (2, Wire::Len(n)) if top => {
                let name = pb.string(n, 256)?;
                if let Some(m) = m.as_deref_mut() {
                    m.graph_name = Some(name);
                }
            }
            (5, Wire::Len(n)) => {
                if top {
                    st.initializers += 1;
                }
                let tend = pb.end_of(n);
                tensor(pb, tend, st, top)?;
            }
            (15, Wire::Len(n)) => {
                let send = pb.end_of(n);
                sparse_tensor(pb, send, st)?;
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

/// A NodeProto: its operator, and the graphs and tensors in its attributes.
fn node(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats, depth: u32) -> PResult<()> {
    let (mut op, mut domain) = (String::new(), String::new());
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (4, Wire::Len(n)) => op = pb.string(n, 128)?,
            (7, Wire::Len(n)) => domain = pb.string(n, 128)?,
            (5, Wire::Len(n)) => {
                let aend = pb.end_of(n);
                attribute(pb, aend, st, depth)?;
            }
            _ => pb.skip(f)?,
        }
    }
    if !standard_domain(&domain) && st.custom.len() < MAX_LISTED {
        st.custom.insert((domain, op));
    }
    Ok(())
}

/// An AttributeProto: tensors (`t`, `tensors`, sparse ones) and graphs (`g`, `graphs`).
fn attribute(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats, depth: u32) -> PResult<()> {
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (5 | 10, Wire::Len(n)) => {
                let tend = pb.end_of(n);
                tensor(pb, tend, st, false)?;
            }
            (6 | 11, Wire::Len(n)) => {
                let gend = pb.end_of(n);
                graph(pb, gend, st, None, depth + 1)?;
            }
            (22 | 23, Wire::Len(n)) => {
                let send = pb.end_of(n);
                sparse_tensor(pb, send, st)?;
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

/// A SparseTensorProto: its values (1) and indices (2) are tensors.
fn sparse_tensor(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats) -> PResult<()> {
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1 | 2, Wire::Len(n)) => {
                let tend = pb.end_of(n);
                tensor(pb, tend, st, false)?;
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

/// A FunctionProto: its name (1) and domain (10), and its nodes (7).
fn function(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats) -> PResult<()> {
    let (mut name, mut domain) = (String::new(), String::new());
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Len(n)) => name = pb.string(n, 128)?,
            (10, Wire::Len(n)) => domain = pb.string(n, 128)?,
            (7, Wire::Len(n)) => {
                let nend = pb.end_of(n);
                node(pb, nend, st, 1)?;
            }
            _ => pb.skip(f)?,
        }
    }
    if st.functions.len() < MAX_LISTED {
        st.functions.insert((domain, name));
    }
    Ok(())
}

/// A TensorProto: its element type and size count only for main-graph initializers; its
/// external-data location counts wherever it is.
fn tensor(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats, count: bool) -> PResult<()> {
    let mut elems: Option<u64> = Some(1);
    let mut location = None;
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Varint(d)) => elems = elems.and_then(|e| e.checked_mul(d)),
            (1, Wire::Len(n)) => {
                let dend = pb.end_of(n);
                while pb.r.pos() < dend {
                    let d = pb.varint()?;
                    elems = elems.and_then(|e| e.checked_mul(d));
                }
                if pb.r.pos() != dend {
                    return Err(ParseError::invalid("packed dims run past their field"));
                }
            }
            (2, Wire::Varint(t)) => {
                if count && st.dtypes.len() < 64 {
                    st.dtypes.insert(data_type(t));
                }
            }
            (13, Wire::Len(n)) => {
                let (k, v) = pb.string_entry(n, 64, 512)?;
                if k == "location" {
                    location = Some(v);
                }
            }
            _ => pb.skip(f)?,
        }
    }
    if count {
        match elems.and_then(|e| st.params.checked_add(e)) {
            Some(p) => st.params = p,
            None => st.params_overflow = true,
        }
    }
    if let Some(l) = location
        && st.external.len() < MAX_LISTED
    {
        st.external.insert(l);
    }
    Ok(())
}
