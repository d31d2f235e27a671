//! TensorFlow Lite (`TFL3` FlatBuffer) header reader.
//!
//! Hand-written: the `flatbuffers` crate needs the whole buffer in memory and the generated
//! schema code, while the sensor needs five fields of a file that can be gigabytes. Every
//! offset is resolved through [`Reader`] (so it is checked against the file length) and every
//! vector length is bounded before it is walked. Reports schema version, description,
//! subgraph/operator/tensor counts, custom operators (Flex operators embed TensorFlow ops,
//! among them file readers and writers) and metadata names.

use std::collections::BTreeSet;

use crate::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader, clean_text},
    report::{Format, Severity, codes},
};

const MAX_VEC: u64 = 1 << 20;
/// Tables of one vector visited (operator codes, subgraphs): each can sit anywhere in the file
/// and costs a buffer refill, and no real model has this many.
const MAX_TABLES: u64 = 4096;
const BUILTIN_CUSTOM: i64 = 32;

struct Fb<'r, 'a> {
    r: &'r mut Reader<'a>,
}

impl Fb<'_, '_> {
    fn u32_at(&mut self, pos: u64) -> PResult<u32> {
        self.r.seek_to(pos)?;
        self.r.u32()
    }

    fn u16_at(&mut self, pos: u64) -> PResult<u16> {
        self.r.seek_to(pos)?;
        self.r.u16()
    }

    /// The absolute position of field `i` of the table at `table`, if present.
    fn field(&mut self, table: u64, i: u16) -> PResult<Option<u64>> {
        let soff = self.u32_at(table)? as i32;
        let vt = table
            .checked_add_signed(-i64::from(soff))
            .ok_or_else(|| ParseError::invalid("vtable offset out of range"))?;
        let vt_len = self.u16_at(vt)?;
        let slot = 4 + 2 * u64::from(i);
        if slot + 2 > u64::from(vt_len) {
            return Ok(None);
        }
        let off = self.u16_at(vt + slot)?;
        Ok((off != 0).then_some(table + u64::from(off)))
    }

    /// Follows the `uoffset` stored at `pos`.
    fn deref(&mut self, pos: u64) -> PResult<u64> {
        let rel = self.u32_at(pos)?;
        pos.checked_add(u64::from(rel)).ok_or_else(|| ParseError::invalid("offset overflow"))
    }

    /// (element count, position of the first element) of the vector field `i`.
    fn vector(&mut self, table: u64, i: u16, elem: u64) -> PResult<Option<(u64, u64)>> {
        let Some(pos) = self.field(table, i)? else { return Ok(None) };
        let v = self.deref(pos)?;
        let n = u64::from(self.u32_at(v)?);
        if n > MAX_VEC {
            return Err(ParseError::limit(format!("vector of {n} elements"), MAX_VEC));
        }
        if n.saturating_mul(elem) > self.r.len().saturating_sub(v + 4) {
            return Err(ParseError::Truncated(format!("vector of {n} elements")));
        }
        Ok(Some((n, v + 4)))
    }

    fn string(&mut self, table: u64, i: u16, max: usize) -> PResult<Option<String>> {
        let Some((n, start)) = self.vector(table, i, 1)? else { return Ok(None) };
        self.r.seek_to(start)?;
        let keep = n.min(max as u64 * 4);
        let b = self.r.read_vec(keep, keep, "string")?;
        Ok(Some(clean_text(&b, max)))
    }

    /// Visits, in order, the tables of the vector field `i` of `table`, at most `max` of them;
    /// returns the vector's length (`None` when the field is absent). When there are more than
    /// `max`, `over` (if any) is reported before the visit, as "only the first `max` of `n`
    /// `over`".
    fn each_table(
        &mut self,
        ctx: &mut Ctx<'_>,
        table: u64,
        i: u16,
        max: u64,
        over: Option<(Severity, &str)>,
        mut visit: impl FnMut(&mut Self, u64) -> PResult<()>,
    ) -> PResult<Option<u64>> {
        let Some((n, start)) = self.vector(table, i, 4)? else { return Ok(None) };
        if n > max
            && let Some((severity, what)) = over
        {
            ctx.finding(severity, codes::LIMIT_EXCEEDED, format!("only the first {max} of {n} {what}"));
        }
        for k in 0..n.min(max) {
            let t = self.deref(start + 4 * k)?;
            visit(self, t)?;
        }
        Ok(Some(n))
    }

    fn scalar_i64(&mut self, table: u64, i: u16, size: u8) -> PResult<Option<i64>> {
        let Some(pos) = self.field(table, i)? else { return Ok(None) };
        self.r.seek_to(pos)?;
        Ok(Some(match size {
            1 => i64::from(self.r.u8()? as i8),
            _ => i64::from(self.r.u32()? as i32),
        }))
    }
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let mut p = Parsed::new(Format::Tflite, None);
    let mut fb = Fb { r };
    let root = fb.deref(0)?;
    if let Some(pos) = fb.field(root, 0)? {
        p.metadata.format_version = Some(u64::from(fb.u32_at(pos)?));
    }
    if let Some(d) = fb.string(root, 3, 256)? {
        p.metadata.properties.insert("description".into(), d);
    }
    // operator_codes: custom operators.
    let mut custom = BTreeSet::new();
    let over = (Severity::Medium, "operator codes were examined for custom operators");
    let op_kinds = fb.each_table(ctx, root, 1, MAX_TABLES, Some(over), |fb, t| {
        let deprecated = fb.scalar_i64(t, 0, 1)?.unwrap_or(0);
        let builtin = fb.scalar_i64(t, 3, 4)?.unwrap_or(deprecated).max(deprecated);
        if builtin == BUILTIN_CUSTOM
            && let Some(c) = fb.string(t, 1, 128)?
            && custom.len() < 256
        {
            custom.insert(c);
        }
        Ok(())
    })?;
    // subgraphs: operators and tensors.
    let (mut ops, mut tensors) = (0u64, 0u64);
    let over = (Severity::Low, "subgraphs were counted");
    let subgraphs = fb.each_table(ctx, root, 2, MAX_TABLES, Some(over), |fb, t| {
        if let Some((c, _)) = fb.vector(t, 0, 4)? {
            tensors += c;
        }
        if let Some((c, _)) = fb.vector(t, 3, 4)? {
            ops += c;
        }
        Ok(())
    })?;
    if let Some(n) = subgraphs {
        p.metadata.properties.insert("subgraphs".into(), n.to_string());
    }
    // metadata names (e.g. min_runtime_version, TFLITE_METADATA).
    let mut names = Vec::new();
    fb.each_table(ctx, root, 6, 64, None, |fb, t| {
        if let Some(s) = fb.string(t, 0, 64)? {
            names.push(s);
        }
        Ok(())
    })?;
    if !names.is_empty() {
        p.metadata.properties.insert("metadata".into(), names.join(","));
    }
    p.metadata.node_count = Some(ops);
    p.metadata.tensor_count = Some(tensors);
    p.metadata.properties.insert("operator_codes".into(), op_kinds.unwrap_or(0).to_string());
    let flex_unsafe: Vec<String> = custom
        .iter()
        .filter_map(|c| c.strip_prefix("Flex"))
        .filter(|op| super::savedmodel::UNSAFE_OPS.contains(op))
        .map(|op| format!("Flex{op}"))
        .collect();
    p.metadata.custom_ops = custom.into_iter().collect();
    if !flex_unsafe.is_empty() {
        ctx.finding(
            Severity::High,
            codes::UNSAFE_OPS,
            format!("Flex operators touch files or run Python: {}", flex_unsafe.join(", ")),
        );
        p.metadata.unsafe_ops = flex_unsafe;
    } else if !p.metadata.custom_ops.is_empty() {
        ctx.finding(
            Severity::Low,
            codes::CUSTOM_OPS,
            format!("custom operators need code registered by the application: {}", p.metadata.custom_ops.join(", ")),
        );
    }
    Ok(p)
}
