//! The oldest `torch.save` container: a tar with `sys_info`, `pickle`, `tensors` and
//! `storages` members (PyTorch < 0.4). The zip container is `zipfile`'s and the raw legacy
//! stream `pickle`'s.
//!
//! The tar reader is hand-written because the `tar` crate reads GNU long-name and PAX records
//! into memory whatever size their header declares, which a hostile archive sets to gigabytes.
//! Here every header is 512 bytes, names come only from bounded records, and member data is
//! skipped by seeking. `sys_info` and `pickle` are walked completely; `tensors` and `storages`
//! interleave pickles with raw data, and are walked up to their first raw block.

use crate::artifact::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader},
    report::{Format, Severity, codes},
};

const MAX_MEMBERS: usize = 4096;
const MAX_NAME_RECORD: u64 = 64 * 1024;
const TORCH_MEMBERS: [&str; 4] = ["sys_info", "pickle", "tensors", "storages"];

pub fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// Octal (NUL/space padded) or GNU base-256 numeric field.
fn number(field: &[u8]) -> PResult<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v.checked_mul(256).and_then(|v| v.checked_add(u64::from(b))).ok_or_else(|| ParseError::invalid("tar size overflows"))?;
        }
        return Ok(v);
    }
    let s: String = field.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| ParseError::invalid("bad octal number in tar header"))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

struct Member {
    name: String,
    data: u64,
    size: u64,
}

enum End {
    /// End-of-archive blocks.
    Marked,
    /// The file simply ends after a member.
    Unmarked,
    Broken(ParseError),
}

/// The members read before the archive ended (or broke).
fn members(r: &mut Reader<'_>) -> (Vec<Member>, End) {
    let mut out = Vec::new();
    match walk_members(r, &mut out) {
        Ok(true) => (out, End::Marked),
        Ok(false) => (out, End::Unmarked),
        Err(e) => (out, End::Broken(e)),
    }
}

fn walk_members(r: &mut Reader<'_>, out: &mut Vec<Member>) -> PResult<bool> {
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    loop {
        if out.len() >= MAX_MEMBERS {
            return Err(ParseError::limit("tar members", MAX_MEMBERS as u64));
        }
        if r.len().saturating_sub(pos) < 512 {
            // A tar ends with zero blocks; a missing end is tolerated, a cut header is not.
            if pos == r.len() {
                return Ok(false);
            }
            return Err(ParseError::Truncated("tar header".into()));
        }
        r.seek_to(pos)?;
        let h = r.array::<512>()?;
        if h.iter().all(|b| *b == 0) {
            // The end is two zero blocks; a lone one is what a cut archive leaves.
            let second = r.len().saturating_sub(pos + 512) >= 512 && r.array::<512>()?.iter().all(|b| *b == 0);
            return Ok(second);
        }
        let sum: u64 = h.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
        if number(&h[148..156])? != sum {
            return Err(ParseError::invalid(format!("tar header checksum mismatch at offset {pos}")));
        }
        let size = number(&h[124..136])?;
        let data = pos + 512;
        if size > r.len().saturating_sub(data) {
            return Err(ParseError::Truncated(format!("tar member of {size} bytes at offset {data}")));
        }
        let typeflag = h[156];
        match typeflag {
            b'L' | b'x' => {
                if size <= MAX_NAME_RECORD {
                    r.seek_to(data)?;
                    let rec = r.read_vec(size, MAX_NAME_RECORD, "tar name record")?;
                    long_name = if typeflag == b'L' {
                        Some(cstr(&rec))
                    } else {
                        // PAX: "<len> path=<name>\n" records.
                        String::from_utf8_lossy(&rec)
                            .lines()
                            .find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_owned()))
                            .or(long_name)
                    };
                }
            }
            b'g' => {}
            _ => {
                let mut name = cstr(&h[0..100]);
                if &h[257..262] == b"ustar" {
                    let prefix = cstr(&h[345..500]);
                    if !prefix.is_empty() {
                        name = format!("{prefix}/{name}");
                    }
                }
                if let Some(l) = long_name.take() {
                    name = l;
                }
                if matches!(typeflag, b'0' | 0 | b'7') {
                    out.push(Member { name, data, size });
                }
            }
        }
        pos = data.checked_add(size.div_ceil(512) * 512).ok_or_else(|| ParseError::invalid("tar offset overflows"))?;
    }
}

pub fn parse_tar(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let (ms, end) = members(r);
    let base = |n: &str| n.trim_start_matches("./").to_owned();
    let torch = (ms.iter().any(|m| base(&m.name) == "pickle")
        && ms.iter().any(|m| matches!(base(&m.name).as_str(), "storages" | "sys_info" | "tensors")))
        // torch.save writes sys_info first: enough to recognise a truncated archive.
        || (!matches!(end, End::Marked) && ms.first().is_some_and(|m| base(&m.name) == "sys_info"));
    let format = if torch { Format::Pytorch } else { Format::Unknown };
    match end {
        End::Marked => {}
        End::Unmarked => ctx.finding(Severity::Low, codes::MALFORMED, "tar ends without its end-of-archive blocks (truncated?)"),
        End::Broken(e) => {
            if ms.is_empty() {
                return Err(e);
            }
            super::malformed(ctx, format, &e);
        }
    }
    if !torch {
        let mut p = Parsed::new(Format::Unknown, Some("tar"));
        p.metadata.entries = Some(ms.len() as u64);
        return Ok(p);
    }
    let mut p = Parsed::new(Format::Pytorch, Some("legacy_tar"));
    p.metadata.entries = Some(ms.len() as u64);
    for m in &ms {
        let name = base(&m.name);
        if !TORCH_MEMBERS.contains(&name.as_str()) {
            continue;
        }
        r.seek_to(m.data)?;
        let mut member = std::io::Read::take(&mut *r, m.size);
        ctx.scan_pickle(&name, &mut member);
    }
    Ok(p)
}
