//! ONNX `ModelProto` header reader (see `protobuf` for why it is hand-written): IR version,
//! producer, opsets, graph name, node and initializer counts, parameter count, element types,
//! operators from non-standard domains (they need native code the runtime loads) and
//! external-data locations (a path that leaves the model's directory is a finding).

use std::collections::BTreeSet;

use crate::artifact::{
    formats::{
        Ctx, Parsed,
        protobuf::{Pb, Wire},
    },
    io::PResult,
    report::{Opset, Severity, codes},
};

const MAX_LISTED: usize = 256;

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
    d.is_empty() || d == "ai.onnx" || d.starts_with("ai.onnx.") || d == "com.microsoft" || d.starts_with("com.microsoft.")
}

#[derive(Default)]
struct Stats {
    nodes: u64,
    initializers: u64,
    params: u64,
    params_overflow: bool,
    dtypes: BTreeSet<String>,
    custom: BTreeSet<String>,
    external: BTreeSet<String>,
}

pub fn parse(r: &mut crate::artifact::io::Reader<'_>, ctx: &mut Ctx<'_>, p: &mut Parsed) -> PResult<()> {
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
                    graph(&mut pb, gend, &mut st, m)?;
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
                    if matches!(k.to_ascii_lowercase().as_str(), "license" | "licence") {
                        m.license = Some(v.clone());
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
    m.node_count = Some(st.nodes);
    m.tensor_count = Some(st.initializers);
    m.parameter_count = (!st.params_overflow).then_some(st.params);
    m.dtypes = st.dtypes.into_iter().collect();
    m.custom_ops = st.custom.into_iter().collect();
    m.external_data = st.external.into_iter().collect();
    if !m.custom_ops.is_empty() {
        ctx.finding(
            Severity::Medium,
            codes::CUSTOM_OPS,
            format!("operators from custom domains need native code the runtime must load: {}", m.custom_ops.join(", ")),
        );
    }
    let escaping: Vec<&String> = m
        .external_data
        .iter()
        .filter(|l| l.starts_with('/') || l.starts_with('\\') || l.split(['/', '\\']).any(|c| c == "..") || l.contains(':'))
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

fn graph(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats, m: &mut crate::artifact::report::ModelMetadata) -> PResult<()> {
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Len(n)) => {
                st.nodes += 1;
                let nend = pb.end_of(n);
                let (mut op, mut domain) = (String::new(), String::new());
                while let Some(f) = pb.next(nend)? {
                    match (f.number, f.wire) {
                        (4, Wire::Len(n)) => op = pb.string(n, 128)?,
                        (7, Wire::Len(n)) => domain = pb.string(n, 128)?,
                        _ => pb.skip(f)?,
                    }
                }
                if !standard_domain(&domain) && st.custom.len() < MAX_LISTED {
                    st.custom.insert(format!("{domain}::{op}"));
                }
            }
            (2, Wire::Len(n)) => m.graph_name = Some(pb.string(n, 256)?),
            (5, Wire::Len(n)) => {
                st.initializers += 1;
                let tend = pb.end_of(n);
                tensor(pb, tend, st)?;
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

fn tensor(pb: &mut Pb<'_, '_>, end: u64, st: &mut Stats) -> PResult<()> {
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
                    return Err(crate::artifact::io::ParseError::invalid("packed dims run past their field"));
                }
            }
            (2, Wire::Varint(t)) => {
                if st.dtypes.len() < 64 {
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
    match elems.and_then(|e| st.params.checked_add(e)) {
        Some(p) => st.params = p,
        None => st.params_overflow = true,
    }
    if let Some(l) = location
        && st.external.len() < MAX_LISTED
    {
        st.external.insert(l);
    }
    Ok(())
}
