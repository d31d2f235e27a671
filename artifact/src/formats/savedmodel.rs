//! TensorFlow SavedModel (`saved_model.pb`) reader (see `protobuf` for why it is
//! hand-written): MetaGraph tags, TensorFlow version, node count and the operators used by the
//! graph and its function library. Operators that read or write files or call back into
//! Python (`ReadFile`, `WriteFile`, `PyFunc`, ...) run when the graph does and are flagged.

use std::collections::BTreeSet;

use crate::{
    formats::{
        Ctx, Parsed,
        protobuf::{Pb, TopFields, Wire},
    },
    io::{PResult, Reader},
    report::{Severity, codes},
};

/// Operators that reach outside the tensor computation.
pub const UNSAFE_OPS: &[&str] = &[
    "ReadFile",
    "WriteFile",
    "MatchingFiles",
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "ImmutableConst",
    "DebugIdentityV2",
    "DebugIdentityV3",
];

const MAX_OPS: usize = 4096;

#[derive(Default)]
struct St {
    nodes: u64,
    ops: BTreeSet<String>,
    tags: BTreeSet<String>,
    tf_version: Option<String>,
}

/// Whether top-level fields are those of a `SavedModel`: saved_model_schema_version 1,
/// meta_graphs 2.
pub fn shape(top: &TopFields) -> bool {
    top.all(|n, k| (n == 1 && k == 0) || (n == 2 && k == 2)) && top.has(2) && top.has(1)
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>, p: &mut Parsed) -> PResult<()> {
    let end = r.len();
    let mut pb = Pb::new(r);
    let mut st = St::default();
    let result = (|| -> PResult<()> {
        while let Some(f) = pb.next(end)? {
            match (f.number, f.wire) {
                (1, Wire::Varint(v)) => p.metadata.format_version = Some(v),
                (2, Wire::Len(n)) => {
                    let mend = pb.end_of(n);
                    meta_graph(&mut pb, mend, &mut st)?;
                }
                _ => pb.skip(f)?,
            }
        }
        Ok(())
    })();
    let m = &mut p.metadata;
    m.node_count = Some(st.nodes);
    m.tags = st.tags.into_iter().collect();
    if let Some(v) = st.tf_version {
        m.producer = Some("tensorflow".into());
        m.producer_version = Some(v);
    }
    m.unsafe_ops = st.ops.iter().filter(|o| UNSAFE_OPS.contains(&o.as_str())).cloned().collect();
    m.properties.insert("op_types".into(), st.ops.len().to_string());
    if !m.unsafe_ops.is_empty() {
        ctx.finding(
            Severity::High,
            codes::UNSAFE_OPS,
            format!("the graph uses operators that touch files or run Python: {}", m.unsafe_ops.join(", ")),
        );
    }
    result
}

fn meta_graph(pb: &mut Pb<'_, '_>, end: u64, st: &mut St) -> PResult<()> {
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Len(n)) => {
                let iend = pb.end_of(n);
                while let Some(f) = pb.next(iend)? {
                    match (f.number, f.wire) {
                        (4, Wire::Len(n)) => {
                            let t = pb.string(n, 64)?;
                            if st.tags.len() < 64 {
                                st.tags.insert(t);
                            }
                        }
                        (5, Wire::Len(n)) => st.tf_version = Some(pb.string(n, 64)?),
                        _ => pb.skip(f)?,
                    }
                }
            }
            (2, Wire::Len(n)) => {
                let gend = pb.end_of(n);
                while let Some(f) = pb.next(gend)? {
                    match (f.number, f.wire) {
                        (1, Wire::Len(n)) => {
                            let nend = pb.end_of(n);
                            node(pb, nend, st)?;
                        }
                        (2, Wire::Len(n)) => {
                            let lend = pb.end_of(n);
                            while let Some(f) = pb.next(lend)? {
                                match (f.number, f.wire) {
                                    (1, Wire::Len(n)) => {
                                        let fend = pb.end_of(n);
                                        while let Some(f) = pb.next(fend)? {
                                            match (f.number, f.wire) {
                                                (3, Wire::Len(n)) => {
                                                    let nend = pb.end_of(n);
                                                    node(pb, nend, st)?;
                                                }
                                                _ => pb.skip(f)?,
                                            }
                                        }
                                    }
                                    _ => pb.skip(f)?,
                                }
                            }
                        }
                        _ => pb.skip(f)?,
                    }
                }
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

fn node(pb: &mut Pb<'_, '_>, end: u64, st: &mut St) -> PResult<()> {
    st.nodes += 1;
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (2, Wire::Len(n)) => {
                let op = pb.string(n, 128)?;
                if st.ops.len() < MAX_OPS {
                    st.ops.insert(op);
                }
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}
