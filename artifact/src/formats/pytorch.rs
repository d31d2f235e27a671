//! The oldest `torch.save` container: a tar with `sys_info`, `pickle`, `tensors` and
//! `storages` members (PyTorch < 0.4). The zip container is `zipfile`'s and the raw legacy
//! stream `pickle`'s.
//!
//! `torch.load` opens any file that Python's `tarfile` accepts (whatever its name or magic),
//! extracts `storages` and `tensors` and unpickles the records in them, then unpickles
//! `pickle`; a file `tarfile` rejects is unpickled from its first byte instead. So this reader
//! follows `tarfile` rather than the tar specification: a header is valid when its checksum
//! matches either way `tarfile` sums it, numeric fields are read as `tarfile.nti` reads them,
//! GNU long names and PAX records (`path`, `linkpath`, `size`, global ones included) rename and
//! resize members, only regular and unknown member types are followed by data, and a hard link
//! stands for the member it names. Members named like torch's are walked whatever the rest of
//! the archive holds; one whose content cannot be read here (a symbolic link, which extraction
//! may point anywhere, a sparse file, a device) leaves the pickle judgement incomplete, and so
//! does an archive that ends in a way `tarfile` would not.
//!
//! The reader is hand-written because the `tar` crate reads GNU long-name and PAX records into
//! memory whatever size their header declares, which a hostile archive sets to gigabytes. Here
//! every header is 512 bytes, records are read only up to a bound, and member data is skipped by
//! seeking.

use std::collections::BTreeMap;

use crate::{
    formats::{Ctx, Parsed},
    io::{PResult, ParseError, Reader},
    pickle_scan::TarMember,
    pyint::py_int,
    report::{Format, Severity, codes},
};

const MAX_MEMBERS: usize = 4096;
/// Bytes of a GNU long-name record read: the name ends at its first NUL, and a name longer
/// than this cannot be one of torch's members.
const MAX_NAME_RECORD: u64 = 64 * 1024;
/// The largest PAX record block read.
const MAX_PAX_RECORD: u64 = 1 << 20;
/// GNU long-name and PAX headers chained in front of one member.
const MAX_CHAIN: u32 = 64;
const MAX_LINK_DEPTH: u32 = 8;

/// Whether `head` starts with a block `tarfile` accepts as a tar header.
pub fn is_tar(head: &[u8]) -> bool {
    head.get(..512)
        .and_then(|h| <&[u8; 512]>::try_from(h).ok())
        .is_some_and(|h| h.iter().any(|b| *b != 0) && checksum_ok(h))
}

/// `tarfile.calc_chksums`: the header summed with its checksum field as spaces, bytes taken
/// as unsigned or as signed.
fn checksum_ok(h: &[u8; 512]) -> bool {
    let Some(stored) = nti(&h[148..156]) else { return false };
    let (mut unsigned, mut signed) = (256i128, 256i128);
    for (i, b) in h.iter().enumerate() {
        if !(148..156).contains(&i) {
            unsigned += i128::from(*b);
            signed += i128::from(*b as i8);
        }
    }
    stored == unsigned || stored == signed
}

/// `tarfile.nti`: GNU base-256 (first byte 0x80 positive, 0xff negative) or an octal string
/// cut at its first NUL, read like Python's `int(s.strip() or "0", 8)`.
fn nti(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(&lead @ (0x80 | 0xff)) => {
            let mut n: i128 = 0;
            for b in &field[1..] {
                n = n.checked_mul(256)?.checked_add(i128::from(*b))?;
            }
            if lead == 0xff {
                n -= 1i128.checked_shl(8 * (field.len() as u32 - 1))?;
            }
            Some(n)
        }
        _ => {
            let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
            let s = &field[..end];
            if !s.is_ascii() {
                return None;
            }
            // str.strip() also strips the ASCII separators 0x1c..0x1f.
            let space = |b: &u8| b.is_ascii_whitespace() || matches!(b, 0x0b | 0x1c..=0x1f);
            let s: Vec<u8> = s.iter().copied().skip_while(space).collect();
            let s = &s[..s.iter().rposition(|b| !space(b)).map_or(0, |p| p + 1)];
            if s.is_empty() {
                return Some(0);
            }
            py_int(s, 8)
        }
    }
}

fn nts(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `tarfile._block`: a size rounded up to whole 512-byte blocks.
fn block(size: u64) -> u64 {
    size.div_ceil(512).saturating_mul(512)
}

/// Types `tarfile` knows; data follows only regular ones and unknown ones.
fn supported(t: u8) -> bool {
    matches!(t, b'0' | 0 | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'7' | b'L' | b'K' | b'S')
}

fn has_data(t: u8) -> bool {
    matches!(t, b'0' | 0 | b'7' | b'S') || !supported(t)
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    kind: u8,
    linkname: String,
    data: u64,
    size: u64,
    sparse: bool,
}

/// How the archive ended, as `tarfile` would see it.
enum End {
    /// End-of-archive blocks.
    Marked,
    /// The file ends after a member, or inside the end-of-archive blocks.
    Unmarked,
    /// The file ends inside a header: `tarfile` stops there too.
    Truncated,
    /// `tarfile` stops or fails here, or this reader reached its own bound; the rest is unread.
    Broken(ParseError),
}

/// Why reading one header (and what it chains to) stopped.
enum Stop {
    /// A zero block: the end of the archive.
    Eof,
    /// Fewer than 512 bytes left.
    Short { empty: bool },
    /// A header `tarfile` would reject.
    Invalid(String),
    /// `tarfile` raises a `ReadError`, or a bound of this reader.
    Fatal(ParseError),
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Self {
        Stop::Fatal(e)
    }
}

struct Walker<'r, 'a> {
    r: &'r mut Reader<'a>,
    global_pax: BTreeMap<String, String>,
}

impl Walker<'_, '_> {
    /// The header at `offset` and what follows it: the member, and where the next header is.
    fn member(&mut self, offset: u64, chain: u32) -> Result<(Member, u64), Stop> {
        if chain > MAX_CHAIN {
            return Err(Stop::Fatal(ParseError::limit("chained tar extension headers", u64::from(MAX_CHAIN))));
        }
        let left = self.r.len().saturating_sub(offset);
        if left < 512 {
            return Err(Stop::Short { empty: left == 0 });
        }
        self.r.seek_to(offset)?;
        let h = self.r.array::<512>()?;
        if h.iter().all(|b| *b == 0) {
            return Err(Stop::Eof);
        }
        if !checksum_ok(&h) {
            return Err(Stop::Invalid(format!("tar header checksum mismatch at offset {offset}")));
        }
        let field = |range: std::ops::Range<usize>| nti(&h[range]);
        let (Some(size), Some(_), Some(_), Some(_), Some(_), Some(_), Some(_)) = (
            field(124..136),
            field(100..108),
            field(108..116),
            field(116..124),
            field(136..148),
            field(329..337),
            field(337..345),
        ) else {
            return Err(Stop::Invalid(format!("bad numeric field in the tar header at offset {offset}")));
        };
        let Ok(size) = u64::try_from(size) else {
            return Err(Stop::Fatal(ParseError::invalid(format!("negative tar member size at offset {offset}"))));
        };
        let mut kind = h[156];
        let mut name = nts(&h[0..100]);
        if kind == 0 && name.ends_with('/') {
            kind = b'5';
        }
        if kind == b'5' {
            name = name.trim_end_matches('/').to_owned();
        }
        let prefix = nts(&h[345..500]);
        if !prefix.is_empty() && !matches!(kind, b'L' | b'K' | b'S') {
            name = format!("{prefix}/{name}");
        }
        let data = offset + 512;
        let after =
            |n: u64| data.checked_add(block(n)).ok_or_else(|| Stop::Fatal(ParseError::invalid("tar offset overflows")));
        match kind {
            b'L' | b'K' => {
                self.r.seek_to(data.min(self.r.len()))?;
                let n = size.min(MAX_NAME_RECORD).min(self.r.remaining());
                let rec = self.r.read_vec(n, MAX_NAME_RECORD, "tar name record")?;
                let text = match rec.iter().position(|b| *b == 0) {
                    Some(p) => String::from_utf8_lossy(&rec[..p]).into_owned(),
                    None if size > MAX_NAME_RECORD => "<name longer than 64 KiB>".to_owned(),
                    None => String::from_utf8_lossy(&rec).into_owned(),
                };
                let (mut next, next_offset) = self.subsequent(after(size)?, chain)?;
                if kind == b'L' {
                    next.name = text;
                } else {
                    next.linkname = text;
                }
                Ok((next, next_offset))
            }
            b'x' | b'g' | b'X' => {
                if size > MAX_PAX_RECORD {
                    return Err(Stop::Fatal(ParseError::limit(format!("PAX header of {size} bytes"), MAX_PAX_RECORD)));
                }
                self.r.seek_to(data.min(self.r.len()))?;
                let n = block(size).min(self.r.remaining());
                let buf = self.r.read_vec(n, block(MAX_PAX_RECORD), "PAX header")?;
                let records =
                    pax_records(&buf).ok_or_else(|| Stop::Invalid(format!("bad PAX record at offset {offset}")))?;
                if kind == b'g' {
                    self.global_pax.extend(records.clone());
                }
                let mut local = self.global_pax.clone();
                local.extend(records);
                let (mut next, mut next_offset) = self.subsequent(after(size)?, chain)?;
                if local.keys().any(|k| k.starts_with("GNU.sparse.")) {
                    next.sparse = true;
                }
                if kind != b'g' {
                    apply_pax(&mut next, &local)?;
                    if local.contains_key("size") {
                        next_offset = next
                            .data
                            .checked_add(if has_data(next.kind) { block(next.size) } else { 0 })
                            .ok_or_else(|| Stop::Fatal(ParseError::invalid("tar offset overflows")))?;
                    }
                }
                Ok((next, next_offset))
            }
            b'S' => {
                // Old GNU sparse: extension blocks follow while their `isextended` flag is set.
                let mut data = data;
                let mut extended = h[482] != 0;
                while extended {
                    if self.r.len().saturating_sub(data) < 512 {
                        return Err(Stop::Fatal(ParseError::Truncated("sparse tar header".into())));
                    }
                    self.r.seek_to(data)?;
                    extended = self.r.array::<512>()?[504] != 0;
                    data += 512;
                }
                let m = Member { name, kind, linkname: nts(&h[157..257]), data, size, sparse: true };
                let next = data
                    .checked_add(block(size))
                    .ok_or_else(|| Stop::Fatal(ParseError::invalid("tar offset overflows")))?;
                Ok((m, next))
            }
            _ => {
                let next = if has_data(kind) { after(size)? } else { data };
                let mut m = Member { name, kind, linkname: nts(&h[157..257]), data, size, sparse: false };
                let global = self.global_pax.clone();
                apply_pax(&mut m, &global)?;
                if m.kind == b'5' {
                    m.name = m.name.trim_end_matches('/').to_owned();
                }
                Ok((m, next))
            }
        }
    }

    /// The header an extension header applies to: anything wrong with it is `tarfile`'s
    /// "missing or bad subsequent header", which fails the whole archive.
    fn subsequent(&mut self, offset: u64, chain: u32) -> Result<(Member, u64), Stop> {
        self.member(offset, chain + 1).map_err(|e| match e {
            Stop::Fatal(e) => Stop::Fatal(e),
            _ => Stop::Fatal(ParseError::invalid(format!(
                "missing or bad tar header at offset {offset} after an extension header"
            ))),
        })
    }
}

/// `"%d %s=%s\n"` records, as `tarfile._proc_pax` splits them. `None`: a record it rejects.
fn pax_records(buf: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() && buf[pos] != 0 {
        let digits = buf[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || buf.get(pos + digits) != Some(&b' ') {
            return None;
        }
        let length: usize = std::str::from_utf8(&buf[pos..pos + digits]).ok()?.parse().ok()?;
        let kw_start = pos + digits + 1;
        let kw_len = buf[kw_start..].iter().take_while(|b| **b != b'=').count();
        if kw_len == 0 || kw_start + kw_len >= buf.len() || length == 0 {
            return None;
        }
        let value_end = (pos + length).checked_sub(1)?;
        let value = buf.get(kw_start + kw_len + 1..value_end.max(kw_start + kw_len + 1))?;
        out.push((
            String::from_utf8_lossy(&buf[kw_start..kw_start + kw_len]).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        pos += length;
    }
    Some(out)
}

/// `TarInfo._apply_pax_info` for the keywords that matter here.
fn apply_pax(m: &mut Member, pax: &BTreeMap<String, String>) -> Result<(), Stop> {
    let int = |v: &str| py_int(v.trim().as_bytes(), 10);
    for (k, v) in pax {
        match k.as_str() {
            "path" | "GNU.sparse.name" => m.name = v.trim_end_matches('/').to_owned(),
            "linkpath" => m.linkname = v.clone(),
            // A bad number is 0 for `size`, but fails the archive for the sparse sizes.
            "size" => m.size = int(v).and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            "GNU.sparse.size" | "GNU.sparse.realsize" => {
                m.size = int(v)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| Stop::Fatal(ParseError::invalid("bad GNU sparse size")))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The members `tarfile` lists, and how the listing ended.
fn members(r: &mut Reader<'_>) -> (Vec<Member>, End) {
    let mut w = Walker { r, global_pax: BTreeMap::new() };
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        if out.len() >= MAX_MEMBERS {
            return (out, End::Broken(ParseError::limit("tar members", MAX_MEMBERS as u64)));
        }
        // tarfile reads the byte before the next header to check the last member's data.
        if offset > w.r.len() {
            return (
                out,
                End::Broken(ParseError::Truncated(format!(
                    "tar member data runs past the end ({offset} > {})",
                    w.r.len()
                ))),
            );
        }
        match w.member(offset, 0) {
            Ok((m, next)) => {
                out.push(m);
                offset = next;
            }
            Err(Stop::Eof) => {
                // The end is two zero blocks; a lone one is what a cut archive leaves.
                let second = w.r.len().saturating_sub(offset + 512) >= 512
                    && w.r.seek_to(offset + 512).is_ok()
                    && w.r.array::<512>().is_ok_and(|b| b.iter().all(|x| *x == 0));
                return (out, if second { End::Marked } else { End::Unmarked });
            }
            Err(Stop::Short { empty: true }) => return (out, End::Unmarked),
            Err(Stop::Short { empty: false }) => return (out, End::Truncated),
            Err(Stop::Invalid(why)) => return (out, End::Broken(ParseError::invalid(why))),
            Err(Stop::Fatal(e)) => return (out, End::Broken(e)),
        }
    }
}

/// posixpath.normpath, which `tarfile` applies to both sides when it resolves a link.
fn normpath(p: &str) -> String {
    let slashes = if p.starts_with("//") && !p.starts_with("///") {
        2
    } else if p.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if slashes > 0 => {}
            c => parts.push(c),
        }
    }
    let out = format!("{}{}", "/".repeat(slashes), parts.join("/"));
    if out.is_empty() { ".".into() } else { out }
}

/// Where a member's bytes come from when `tarfile` extracts it: itself, or for a hard link
/// the members it names (earlier ones; all of them here, which can only add streams).
/// `Err`: content that cannot be read here.
fn content<'m>(ms: &'m [Member], m: &'m Member, depth: u32) -> Result<Vec<&'m Member>, String> {
    if m.sparse || matches!(m.kind, b'S') {
        return Err("it is a sparse file".into());
    }
    match m.kind {
        b'1' => {
            if depth >= MAX_LINK_DEPTH {
                return Err("hard links nest too deeply".into());
            }
            let target = normpath(&m.linkname);
            let mut out = Vec::new();
            for t in ms.iter().filter(|t| !std::ptr::eq(*t, m) && normpath(&t.name) == target) {
                out.extend(content(ms, t, depth + 1)?);
            }
            Ok(out)
        }
        b'2' => {
            Err(format!("it is a symbolic link to `{}`, which extraction may point outside the archive", m.linkname))
        }
        b'3' | b'4' | b'6' => Err("it is a device or a FIFO".into()),
        b'5' => Ok(Vec::new()),
        _ => Ok(vec![m]),
    }
}

fn base(n: &str) -> &str {
    n.trim_start_matches("./")
}

pub fn parse_tar(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> PResult<Parsed> {
    let (ms, end) = members(r);
    let torch_name = |m: &Member| matches!(base(&m.name), "pickle" | "storages" | "tensors");
    let clean = matches!(end, End::Marked);
    let torch = ms.iter().any(torch_name)
        // torch.save writes sys_info first: enough to recognise a truncated archive.
        || (!clean && ms.first().is_some_and(|m| base(&m.name) == "sys_info"));
    let format = if torch { Format::Pytorch } else { Format::Unknown };
    match end {
        End::Marked => {}
        End::Unmarked => {
            ctx.finding(Severity::Low, codes::MALFORMED, "tar ends without its end-of-archive blocks (truncated?)");
        }
        End::Truncated => ctx.finding(Severity::Medium, codes::MALFORMED, "tar ends inside a header (truncated?)"),
        End::Broken(e) => {
            if ms.is_empty() {
                return Err(e);
            }
            super::malformed(ctx, format, &e);
            // The members past this point are unseen, and torch may load them.
            ctx.pickle_unreadable("<tar>", &format!("the archive was not read to its end: {e}"));
        }
    }
    let mut p = Parsed::new(format, Some(if torch { "legacy_tar" } else { "tar" }));
    p.metadata.entries = Some(ms.len() as u64);
    // torch extracts `storages` and `tensors` and opens `pickle`; `sys_info` is walked too.
    for m in ms.iter().filter(|m| torch_name(m) || base(&m.name) == "sys_info") {
        if ctx.deadline.hit().is_some() {
            break; // every read fails from here on; `identify_until` reports the cut
        }
        let name = base(&m.name);
        let sources = match content(&ms, m, 0) {
            Ok(s) => s,
            Err(why) => {
                ctx.pickle_unreadable(name, &why);
                continue;
            }
        };
        for s in sources {
            let label = if std::ptr::eq(s, m) { name.to_owned() } else { format!("{name} (hard link to {})", s.name) };
            let end = s.data.saturating_add(s.size);
            if end > r.len() {
                ctx.finding(
                    Severity::Medium,
                    codes::MALFORMED,
                    format!("tar member {label} runs past the end of the file"),
                );
                continue;
            }
            r.seek_to(s.data)?;
            match name {
                "storages" => ctx.scan_torch_tar_member(&label, TarMember::Storages, r, end),
                "tensors" => ctx.scan_torch_tar_member(&label, TarMember::Tensors, r, end),
                _ => {
                    let mut member = std::io::Read::take(&mut *r, s.size);
                    ctx.scan_pickle(&label, &mut member);
                }
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_paths_as_tarfile_reads_them() {
        assert_eq!(nti(b"0000644\0"), Some(0o644));
        assert_eq!(nti(b" 0o7_7 \0"), Some(0o77));
        assert_eq!(nti(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(nti(b"\x80\0\0\0\0\0\0\x01"), Some(1));
        assert_eq!(nti(b"\xff\xff\xff\xff\xff\xff\xff\xff"), Some(-1));
        assert_eq!(nti(b"9\0"), None);
        assert_eq!(normpath("./a//b/../storages"), "a/storages");
        assert_eq!(normpath("/../x"), "/x");
        assert_eq!(normpath(""), ".");
        assert_eq!(
            pax_records(b"20 path=storages/xy\n12 size=100\n"),
            Some(vec![("path".into(), "storages/xy".into()), ("size".into(), "100".into())])
        );
        assert_eq!(pax_records(b"x path=y\n"), None);
    }
}
