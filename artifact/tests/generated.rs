//! Generators of model-format samples, valid and hostile, written byte by byte so the tests do
//! not depend on Python or on the parsers they check. Included by the other tests
//! with `mod generated;`; as a test target of its own it checks a few
//! generator invariants.
#![allow(dead_code)]

use std::io::Write;

// ---------------------------------------------------------------- pickle building blocks

/// `GLOBAL module\nname\n` (protocol 0+).
pub fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

/// `SHORT_BINUNICODE` (protocol 4) or `BINUNICODE`.
pub fn ustr(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    if b.len() < 256 {
        let mut v = vec![0x8c, b.len() as u8];
        v.extend_from_slice(b);
        v
    } else {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(b.len() as u32).to_le_bytes());
        v.extend_from_slice(b);
        v
    }
}

/// `BINUNICODE` (protocol 1+).
pub fn binunicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub const TORCH_LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// What `torch.save({"weight": torch.zeros(4)})` writes as `data.pkl` (protocol 2).
pub fn torch_state_dict_pickle() -> Vec<u8> {
    cat(&[
        b"\x80\x02}q\x00(",
        &binunicode("weight"),
        b"q\x01",
        &global("torch._utils", "_rebuild_tensor_v2"),
        b"q\x02((",
        &binunicode("storage"),
        b"q\x03",
        &global("torch", "FloatStorage"),
        b"q\x04",
        &binunicode("0"),
        b"q\x05",
        &binunicode("cpu"),
        b"q\x06K\x04tq\x07QK\x00K\x04\x85q\x08K\x01\x85q\x09\x89",
        &global("collections", "OrderedDict"),
        b"q\x0a)Rq\x0btq\x0cRq\x0du.",
    ])
}

/// A protocol-2 pickle that calls `os.system("echo pwned")`.
pub fn os_system_pickle() -> Vec<u8> {
    cat(&[b"\x80\x02", &global("os", "system"), b"q\x00", &binunicode("echo pwned"), b"\x85R."])
}

// ---------------------------------------------------------------- zip

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A stored (uncompressed) zip, written by hand so that hostile shapes (duplicate names, bad
/// CRCs) are possible. `bad_crc` names entries whose CRC is written wrong.
pub fn stored_zip_with(entries: &[(&str, &[u8])], bad_crc: &[&str]) -> Vec<u8> {
    let raw: Vec<RawEntry<'_>> = entries
        .iter()
        .map(|(name, data)| {
            let mut crc = crc32(data);
            if bad_crc.contains(name) {
                crc ^= 0xDEAD_BEEF;
            }
            RawEntry { name, method: 0, data, size: data.len() as u32, crc }
        })
        .collect();
    raw_zip(&raw)
}

/// One entry of [`raw_zip`]: `data` is written as is (already compressed for `method` 8).
pub struct RawEntry<'a> {
    pub name: &'a str,
    /// 0 stored, 8 deflated.
    pub method: u16,
    pub data: &'a [u8],
    /// The uncompressed size the headers declare.
    pub size: u32,
    pub crc: u32,
}

/// A zip of entries whose bytes are given as they are to be stored.
pub fn raw_zip(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let n = e.name.as_bytes();
        let m = e.method.to_le_bytes();
        // local file header: version, flags, method, time, date
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, m[0], m[1], 0, 0, 0x21, 0]);
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&(n.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(n);
        out.extend_from_slice(e.data);
        // central directory header
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, m[0], m[1], 0, 0, 0x21, 0]);
        central.extend_from_slice(&e.crc.to_le_bytes());
        central.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        central.extend_from_slice(&e.size.to_le_bytes());
        central.extend_from_slice(&(n.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&0o100644u32.wrapping_shl(16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(n);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Writes bits into a deflate stream, least significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// `value`'s low `count` bits, as deflate writes header fields and extra bits.
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code of `len` bits: deflate writes codes from their most significant bit.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn align(&mut self) {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
    }
}

/// A raw deflate stream that inflates `prefix`, then `period` repeated for about
/// `1032 * body_bytes` bytes, then `suffix`; returns it with the inflated length. The body is
/// one dynamic-Huffman block holding only "copy 258 bytes from `period.len()` back" (two bits
/// each), the ratio deflate's format caps at; prefix and suffix are stored blocks. `period`
/// must be 1 or 2 bytes and `prefix` must end with it.
pub fn deflate_bomb(prefix: &[u8], period: &[u8], suffix: &[u8], body_bytes: usize) -> (Vec<u8>, u64) {
    assert!(matches!(period.len(), 1 | 2) && prefix.ends_with(period));
    let mut b = Bits::default();
    let stored = |b: &mut Bits, data: &[u8], last: bool| {
        b.put(u64::from(last), 1);
        b.put(0, 2);
        b.align();
        b.put(data.len() as u64, 16);
        b.put(!(data.len() as u64) & 0xFFFF, 16);
        b.out.extend_from_slice(data);
    };
    stored(&mut b, prefix, false);
    // Dynamic block: literal/length codes 0..=285 with only 256 (end) and 285 (length 258) of
    // one bit each; distance codes 0..=period (distance 1 or 2) with only the last of one bit.
    b.put(0, 1);
    b.put(2, 2);
    b.put(29, 5); // HLIT: 286 codes
    b.put(period.len() as u64 - 1, 5); // HDIST
    b.put(15, 4); // HCLEN: 19 code-length codes (which also makes the header an even number of bits)
    // Code-length code lengths in deflate's order (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4,
    // 12, 3, 13, 2, 14, 1, 15): 18 (a run of zeros) one bit, 0 and 1 two bits.
    for len in [0u64, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0] {
        b.put(len, 3);
    }
    // Canonical codes: 18 -> 0, 0 -> 10, 1 -> 11.
    let zeros = |b: &mut Bits, mut n: u64| {
        while n > 0 {
            let run = if n > 138 && n - 138 < 11 { n - 11 } else { n.min(138) };
            b.code(0, 1);
            b.put(run - 11, 7);
            n -= run;
        }
    };
    let one = |b: &mut Bits| b.code(0b11, 2);
    zeros(&mut b, 256);
    one(&mut b); // 256: end of block
    zeros(&mut b, 28);
    one(&mut b); // 285: length 258
    if period.len() == 2 {
        b.code(0b10, 2); // distance code 0 (distance 1): unused
    }
    one(&mut b); // the distance code of `period.len()`
    // Canonical: 256 -> 0, 285 -> 1, the one distance code -> 0; a copy is the bits 1, 0.
    let mut copies = 0u64;
    while b.n != 0 {
        b.code(1, 1);
        b.code(0, 1);
        copies += 1;
    }
    let body = b.out.len();
    b.out.resize(body + body_bytes, 0x55);
    copies += 4 * body_bytes as u64;
    b.code(0, 1); // end of block
    stored(&mut b, suffix, true);
    b.align();
    (b.out, prefix.len() as u64 + 258 * copies + suffix.len() as u64)
}

/// A `torch.save` zip whose `data.pkl` is a deflate bomb: `PROTO 2`, then `NONE POP` (a
/// valid, endless run of opcodes for a walker) for about `1032 * body_bytes` bytes, then
/// `NONE STOP`. About 2 GB of opcodes for a 2 MB file.
pub fn torch_zip_bomb(body_bytes: usize) -> (Vec<u8>, u64) {
    let (pkl, inflated) = deflate_bomb(b"\x80\x02N0", b"N0", b"N.", body_bytes);
    let zip = raw_zip(&[
        RawEntry {
            name: "archive/data.pkl",
            method: 8,
            data: &pkl,
            size: inflated.min(u64::from(u32::MAX)) as u32,
            crc: 0,
        },
        RawEntry { name: "archive/byteorder", method: 0, data: b"little", size: 6, crc: crc32(b"little") },
        RawEntry { name: "archive/data/0", method: 0, data: &[0; 16], size: 16, crc: crc32(&[0; 16]) },
        RawEntry { name: "archive/version", method: 0, data: b"3\n", size: 2, crc: crc32(b"3\n") },
    ]);
    (zip, inflated)
}

pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    stored_zip_with(entries, &[])
}

/// A stored zip with one entry, listed in the central directory under `aliases` names that
/// all point at the same local header (each one is a full read for a naive reader).
pub fn aliased_zip(name: &str, data: &[u8], aliases: usize) -> Vec<u8> {
    let names: Vec<String> = (0..aliases).map(|i| format!("{i}-{name}")).collect();
    alias_entry(&stored_zip(&[(name, data)]), &names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`aliased_zip`] with the entry deflated.
pub fn aliased_deflated_zip(name: &str, data: &[u8], aliases: usize) -> Vec<u8> {
    let names: Vec<String> = (0..aliases).map(|i| format!("{i}-{name}")).collect();
    alias_entry(&deflated_zip(&[(name, data)]), &names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Rewrites a one-entry zip (no archive comment) so that its central directory lists the
/// entry once under each of `names`, every record pointing at the one local header.
pub fn alias_entry(one: &[u8], names: &[&str]) -> Vec<u8> {
    let eocd = one.len() - 22;
    assert_eq!(&one[eocd..eocd + 4], b"PK\x05\x06", "one-entry zip without a comment");
    let le16 = |i: usize| usize::from(u16::from_le_bytes([one[i], one[i + 1]]));
    let cd_start = u32::from_le_bytes(one[eocd + 16..eocd + 20].try_into().expect("4 bytes")) as usize;
    let rec = &one[cd_start..eocd];
    let (name_len, extra_len, comment_len) = (le16(cd_start + 28), le16(cd_start + 30), le16(cd_start + 32));
    let extra = &rec[46 + name_len..46 + name_len + extra_len + comment_len];
    let mut out = one[..cd_start].to_vec();
    let mut central = Vec::new();
    for alias in names {
        let mut r = rec[..46].to_vec();
        r[28..30].copy_from_slice(&(alias.len() as u16).to_le_bytes());
        r.extend_from_slice(alias.as_bytes());
        r.extend_from_slice(extra);
        central.extend_from_slice(&r);
    }
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(names.len() as u16).to_le_bytes());
    out.extend_from_slice(&(names.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&(cd_start as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A zip with deflated entries (through the `zip` crate).
pub fn deflated_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).expect("start entry");
        w.write_all(data).expect("write entry");
    }
    w.finish().expect("finish zip").into_inner()
}

/// `torch.save` zip of `data_pkl` with one 16-byte storage.
pub fn torch_zip(data_pkl: &[u8]) -> Vec<u8> {
    stored_zip(&[
        ("archive/data.pkl", data_pkl),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &[0u8; 16]),
        ("archive/version", b"3\n"),
    ])
}

// ---------------------------------------------------------------- tar

fn tar_header(name: &str, size: usize) -> [u8; 512] {
    tar_header_with(name, size, b'0', "")
}

/// A ustar header with the given type flag and link name (checksum summed unsigned).
pub fn tar_header_with(name: &str, size: usize, typeflag: u8, linkname: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[157..157 + linkname.len()].copy_from_slice(linkname.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    tar_checksum(&mut h, false);
    h
}

/// Writes the checksum field the way `tarfile` accepts it: bytes summed unsigned or signed.
pub fn tar_checksum(h: &mut [u8; 512], signed: bool) {
    h[148..156].copy_from_slice(b"        ");
    let sum: i64 = h.iter().map(|b| if signed { i64::from(*b as i8) } else { i64::from(*b) }).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// A header followed by its data, padded to whole blocks.
pub fn tar_block(header: [u8; 512], data: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        out.extend_from_slice(&tar_block(tar_header(name, data.len()), data));
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A `storages` member of the legacy torch tar: a count, then per storage the
/// `(key, location, storage_type)` record and the raw storage (an `int64` element count and
/// the elements), then the storage views.
pub fn torch_tar_storages(records: &[&[u8]]) -> Vec<u8> {
    let mut out = cat(&[b"\x80\x02K", &[records.len() as u8], b"."]);
    for (i, rec) in records.iter().enumerate() {
        out.extend_from_slice(rec);
        out.extend_from_slice(&4u64.to_le_bytes());
        out.extend_from_slice(&[i as u8; 16]);
    }
    out.extend_from_slice(b"\x80\x02].");
    out
}

/// One storage record of [`torch_tar_storages`]: key, `cpu`, `torch.FloatStorage`.
pub fn torch_tar_storage_record(key: &str) -> Vec<u8> {
    cat(&[b"\x80\x02(", &binunicode(key), &binunicode("cpu"), &global("torch", "FloatStorage"), b"tq\x00."])
}

/// PyTorch < 0.4 `torch.save` tar.
pub fn torch_legacy_tar(main_pickle: &[u8]) -> Vec<u8> {
    let sys_info = cat(&[
        b"\x80\x02}q\x00(",
        &binunicode("protocol_version"),
        b"M\xe9\x03",
        &binunicode("little_endian"),
        b"\x88u.",
    ]);
    let storages = torch_tar_storages(&[&torch_tar_storage_record("0")]);
    let tensors = b"\x80\x02K\x00.".to_vec();
    tar(&[("sys_info", &sys_info), ("pickle", main_pickle), ("storages", &storages), ("tensors", &tensors)])
}

/// A legacy torch tar with the given `storages` member and main pickle.
pub fn torch_legacy_tar_with(storages: &[u8], main_pickle: &[u8]) -> Vec<u8> {
    tar(&[("sys_info", b"\x80\x02}."), ("pickle", main_pickle), ("storages", storages), ("tensors", b"\x80\x02K\x00.")])
}

/// PyTorch 0.4–1.5 `torch.save(..., _use_new_zipfile_serialization=False)` stream.
pub fn torch_legacy_stream(main_pickle: &[u8]) -> Vec<u8> {
    torch_legacy_stream_with(b"\x80\x02M\xe9\x03.", main_pickle)
}

/// The legacy stream with its second pickle (the protocol version) replaced.
pub fn torch_legacy_stream_with(second: &[u8], main_pickle: &[u8]) -> Vec<u8> {
    cat(&[
        b"\x80\x02\x8a\x0a",
        &TORCH_LEGACY_MAGIC,
        b".",
        second,
        b"\x80\x02}q\x00(",
        &binunicode("little_endian"),
        b"\x88u.",
        main_pickle,
        b"\x80\x02]q\x00",
        &binunicode("0"),
        b"a.",
        &4u64.to_le_bytes(),
        &[0u8; 16],
    ])
}

/// `os.system("id")` in protocol 0: no PROTO opcode, only text.
pub const OS_SYSTEM_P0: &[u8] = b"cos\nsystem\n(S'id'\ntR.";

// ---------------------------------------------------------------- GGUF

pub enum GVal<'a> {
    U32(u32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    StrArr(&'a [&'a str]),
    I32Arr(&'a [i32]),
}

fn gstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A little-endian GGUF v`version` (2 or 3) file with real (zero) tensor data.
/// Tensor types: 0 F32, 8 Q8_0.
pub fn gguf(version: u32, kvs: &[(&str, GVal<'_>)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        gstr(&mut out, k);
        match v {
            GVal::U32(x) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            GVal::U64(x) => {
                out.extend_from_slice(&10u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            GVal::F32(x) => {
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            GVal::Bool(x) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(u8::from(*x));
            }
            GVal::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                gstr(&mut out, s);
            }
            GVal::StrArr(a) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for s in *a {
                    gstr(&mut out, s);
                }
            }
            GVal::I32Arr(a) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for x in *a {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for (name, dims, ty) in tensors {
        gstr(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let elems: u64 = dims.iter().product();
        let bytes = match ty {
            0 => elems * 4,
            8 => elems / 32 * 34,
            _ => panic!("generator supports F32 and Q8_0"),
        };
        sizes.push(bytes);
        offset += bytes.div_ceil(32) * 32;
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    for s in sizes {
        out.extend(std::iter::repeat_n(0u8, s.div_ceil(32) as usize * 32));
    }
    out
}

/// A Llama-3.1-8B-Instruct-like GGUF (tiny tensors).
pub fn llama_gguf() -> Vec<u8> {
    gguf(
        3,
        &[
            ("general.architecture", GVal::Str("llama")),
            ("general.name", GVal::Str("Llama-3.1-8B-Instruct")),
            ("general.license", GVal::Str("llama3.1")),
            ("general.file_type", GVal::U32(15)),
            ("general.size_label", GVal::Str("8B")),
            ("llama.context_length", GVal::U32(131072)),
            ("llama.rope.freq_base", GVal::F32(500000.0)),
            ("tokenizer.ggml.tokens", GVal::StrArr(&["<s>", "</s>", "hello", "world"])),
            ("tokenizer.ggml.token_type", GVal::I32Arr(&[3, 3, 1, 1])),
            ("tokenizer.ggml.add_bos_token", GVal::Bool(true)),
            ("tokenizer.chat_template", GVal::Str("{% for m in messages %}{{ m.content }}{% endfor %}")),
            ("general.quantization_version", GVal::U32(2)),
        ],
        &[("token_embd.weight", &[4, 8], 0), ("blk.0.attn_q.weight", &[32, 2], 8)],
    )
}

// ---------------------------------------------------------------- safetensors

pub fn safetensors(header_json: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header_json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header_json.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

pub fn tiny_safetensors(license: Option<&str>) -> Vec<u8> {
    let meta = match license {
        Some(l) => format!(r#""__metadata__":{{"format":"pt","license":"{l}"}},"#),
        None => r#""__metadata__":{"format":"pt"},"#.to_owned(),
    };
    let h = format!(
        r#"{{{meta}"a.weight":{{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}},"b.bias":{{"dtype":"F32","shape":[3],"data_offsets":[12,24]}}}}"#
    );
    safetensors(&h, 24)
}

// ---------------------------------------------------------------- NumPy

pub fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    npy_descr(&format!("'{descr}'"), shape, data)
}

/// An `.npy` whose `descr` is the Python literal `descr` as written (prefixes, escapes, lists).
pub fn npy_descr(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------- protobuf

pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Protobuf field helpers.
pub fn pb_varint(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field) << 3, &mut out);
    varint(v, &mut out);
    out
}

pub fn pb_bytes(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((u64::from(field) << 3) | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

pub fn pb_str(field: u32, s: &str) -> Vec<u8> {
    pb_bytes(field, s.as_bytes())
}

/// An ONNX model with a custom-domain operator and an external-data path that escapes.
pub fn onnx_model() -> Vec<u8> {
    let node1 = cat(&[&pb_str(1, "x"), &pb_str(2, "y"), &pb_str(4, "MatMul")]);
    let node2 = cat(&[&pb_str(1, "y"), &pb_str(2, "z"), &pb_str(4, "EvilOp"), &pb_str(7, "com.example.custom")]);
    let init1 =
        cat(&[&pb_varint(1, 4), &pb_varint(1, 8), &pb_varint(2, 1), &pb_str(8, "w"), &pb_bytes(9, &[0u8; 128])]);
    let mut packed = Vec::new();
    varint(8, &mut packed);
    let ext = cat(&[&pb_str(1, "location"), &pb_str(2, "../../etc/passwd")]);
    let init2 =
        cat(&[&pb_bytes(1, &packed), &pb_varint(2, 10), &pb_str(8, "b"), &pb_bytes(13, &ext), &pb_varint(14, 1)]);
    let graph = cat(&[
        &pb_bytes(1, &node1),
        &pb_bytes(1, &node2),
        &pb_str(2, "main_graph"),
        &pb_bytes(5, &init1),
        &pb_bytes(5, &init2),
    ]);
    let opset1 = cat(&[&pb_str(1, ""), &pb_varint(2, 17)]);
    let opset2 = cat(&[&pb_str(1, "com.example.custom"), &pb_varint(2, 1)]);
    let lic = cat(&[&pb_str(1, "license"), &pb_str(2, "MIT")]);
    cat(&[
        &pb_varint(1, 9),
        &pb_str(2, "pytorch"),
        &pb_str(3, "2.3.0"),
        &pb_bytes(7, &graph),
        &pb_bytes(8, &opset1),
        &pb_bytes(8, &opset2),
        &pb_bytes(14, &lic),
    ])
}

/// A minimal, clean ONNX model (one Relu).
pub fn onnx_clean() -> Vec<u8> {
    let node = cat(&[&pb_str(1, "x"), &pb_str(2, "y"), &pb_str(4, "Relu")]);
    let graph = cat(&[&pb_bytes(1, &node), &pb_str(2, "g")]);
    cat(&[&pb_varint(1, 8), &pb_str(2, "onnx-example"), &pb_bytes(7, &graph), &pb_bytes(8, &pb_varint(2, 13))])
}

pub fn savedmodel() -> Vec<u8> {
    let info = cat(&[&pb_str(4, "serve"), &pb_str(5, "2.15.0")]);
    let n1 = cat(&[&pb_str(1, "x"), &pb_str(2, "Placeholder")]);
    let n2 = cat(&[&pb_str(1, "r"), &pb_str(2, "ReadFile")]);
    let fnode = cat(&[&pb_str(1, "w"), &pb_str(2, "WriteFile")]);
    let func = pb_bytes(3, &fnode);
    let library = pb_bytes(1, &func);
    let graph = cat(&[&pb_bytes(1, &n1), &pb_bytes(1, &n2), &pb_bytes(2, &library)]);
    let mg = cat(&[&pb_bytes(1, &info), &pb_bytes(2, &graph)]);
    cat(&[&pb_varint(1, 1), &pb_bytes(2, &mg)])
}

pub fn coreml() -> Vec<u8> {
    let feature = pb_str(1, "input");
    let user = cat(&[&pb_str(1, "com.github.apple.coremltools.version"), &pb_str(2, "7.1")]);
    let meta = cat(&[
        &pb_str(1, "tiny classifier"),
        &pb_str(2, "1.0"),
        &pb_str(3, "ACME"),
        &pb_str(4, "MIT"),
        &pb_bytes(100, &user),
    ]);
    let desc = cat(&[&pb_bytes(1, &feature), &pb_bytes(100, &meta)]);
    let l1 = pb_str(1, "dense");
    let l2 = cat(&[&pb_str(1, "cust"), &pb_bytes(500, &pb_str(1, "MyLayer"))]);
    let nn = cat(&[&pb_bytes(1, &l1), &pb_bytes(1, &l2)]);
    cat(&[&pb_varint(1, 4), &pb_bytes(2, &desc), &pb_bytes(500, &nn)])
}

// ---------------------------------------------------------------- TFLite (FlatBuffer)

/// A tiny FlatBuffer builder laying objects out forward: tables are written with their vtable
/// just before them, and reference fields are patched once their targets exist.
pub struct Fb {
    pub buf: Vec<u8>,
}

pub enum Slot {
    Absent,
    U32(u32),
    /// A reference to be patched later with [`Fb::patch`].
    Ref,
}

impl Default for Fb {
    fn default() -> Self {
        Self::new()
    }
}

impl Fb {
    pub fn new() -> Self {
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(b"TFL3");
        Self { buf }
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Writes a table; returns (table position, position of each slot's field or 0).
    pub fn table(&mut self, slots: &[Slot]) -> (usize, Vec<usize>) {
        self.align();
        let vt = self.buf.len();
        let vt_len = 4 + 2 * slots.len();
        let present = slots.iter().filter(|s| !matches!(s, Slot::Absent)).count();
        let tbl_len = 4 + 4 * present;
        self.buf.extend_from_slice(&(vt_len as u16).to_le_bytes());
        self.buf.extend_from_slice(&(tbl_len as u16).to_le_bytes());
        let mut off = 4u16;
        for s in slots {
            if matches!(s, Slot::Absent) {
                self.buf.extend_from_slice(&0u16.to_le_bytes());
            } else {
                self.buf.extend_from_slice(&off.to_le_bytes());
                off += 4;
            }
        }
        self.align();
        let table = self.buf.len();
        self.buf.extend_from_slice(&((table - vt) as i32).to_le_bytes());
        let mut positions = Vec::new();
        for s in slots {
            match s {
                Slot::Absent => positions.push(0),
                Slot::U32(v) => {
                    positions.push(self.buf.len());
                    self.buf.extend_from_slice(&v.to_le_bytes());
                }
                Slot::Ref => {
                    positions.push(self.buf.len());
                    self.buf.extend_from_slice(&0u32.to_le_bytes());
                }
            }
        }
        (table, positions)
    }

    /// Points the reference field at `field` to `target`.
    pub fn patch(&mut self, field: usize, target: usize) {
        let rel = (target - field) as u32;
        self.buf[field..field + 4].copy_from_slice(&rel.to_le_bytes());
    }

    pub fn string(&mut self, s: &str) -> usize {
        self.align();
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        pos
    }

    /// A vector of `n` table references; returns (vector position, element positions).
    pub fn ref_vector(&mut self, n: usize) -> (usize, Vec<usize>) {
        self.align();
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        let elems = (0..n)
            .map(|_| {
                let p = self.buf.len();
                self.buf.extend_from_slice(&0u32.to_le_bytes());
                p
            })
            .collect();
        (pos, elems)
    }
}

/// A TFLite model: version 3, two operator codes (FULLY_CONNECTED and the Flex op
/// `FlexReadFile`), one subgraph with 3 tensors and 2 operators, a description and metadata.
pub fn tflite() -> Vec<u8> {
    let mut fb = Fb::new();
    // Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers, 5 metadata_buffer, 6 metadata
    let (model, mf) = fb.table(&[Slot::U32(3), Slot::Ref, Slot::Ref, Slot::Ref, Slot::Absent, Slot::Absent, Slot::Ref]);
    fb.patch(0, model);
    let (codes, ce) = fb.ref_vector(2);
    fb.patch(mf[1], codes);
    // OperatorCode: 0 deprecated_builtin_code, 1 custom_code, 2 version, 3 builtin_code
    let (c0, _) = fb.table(&[Slot::U32(9), Slot::Absent, Slot::U32(1), Slot::U32(9)]);
    fb.patch(ce[0], c0);
    let (c1, c1f) = fb.table(&[Slot::U32(32), Slot::Ref, Slot::U32(1), Slot::U32(32)]);
    fb.patch(ce[1], c1);
    let s = fb.string("FlexReadFile");
    fb.patch(c1f[1], s);
    let (subs, se) = fb.ref_vector(1);
    fb.patch(mf[2], subs);
    // SubGraph: 0 tensors, 1 inputs, 2 outputs, 3 operators, 4 name
    let (sg, sgf) = fb.table(&[Slot::Ref, Slot::Absent, Slot::Absent, Slot::Ref, Slot::Ref]);
    fb.patch(se[0], sg);
    let (tv, te) = fb.ref_vector(3);
    fb.patch(sgf[0], tv);
    for e in te {
        let (t, _) = fb.table(&[Slot::Absent]);
        fb.patch(e, t);
    }
    let (ov, oe) = fb.ref_vector(2);
    fb.patch(sgf[3], ov);
    for e in oe {
        let (t, _) = fb.table(&[Slot::U32(0)]);
        fb.patch(e, t);
    }
    let name = fb.string("main");
    fb.patch(sgf[4], name);
    let d = fb.string("TOCO Converted.");
    fb.patch(mf[3], d);
    let (mv, me) = fb.ref_vector(1);
    fb.patch(mf[6], mv);
    // Metadata: 0 name, 1 buffer
    let (m0, m0f) = fb.table(&[Slot::Ref, Slot::U32(1)]);
    fb.patch(me[0], m0);
    let n = fb.string("min_runtime_version");
    fb.patch(m0f[0], n);
    fb.buf
}

/// A TFLite model whose `operator_codes` vector holds `n` references, all to one `FlexReadFile`
/// operator code, and nothing else.
pub fn tflite_op_codes(n: usize) -> Vec<u8> {
    let mut fb = Fb::new();
    let (model, mf) = fb.table(&[Slot::U32(3), Slot::Ref]);
    fb.patch(0, model);
    let (codes, ce) = fb.ref_vector(n);
    fb.patch(mf[1], codes);
    let (c, cf) = fb.table(&[Slot::U32(32), Slot::Ref, Slot::U32(1), Slot::U32(32)]);
    for e in ce {
        fb.patch(e, c);
    }
    let s = fb.string("FlexReadFile");
    fb.patch(cf[1], s);
    fb.buf
}

// ---------------------------------------------------------------- Keras / HDF5

pub const HDF5_SIG: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

pub fn keras_config(extra_layer: &str) -> String {
    format!(
        r#"{{"module": "keras", "class_name": "Sequential", "config": {{"name": "sequential", "layers": [{{"module": "keras.layers", "class_name": "InputLayer", "config": {{"name": "input"}}}}, {{"module": "keras.layers", "class_name": "Dense", "config": {{"name": "dense", "units": 4}}}}{extra_layer}]}}}}"#
    )
}

pub const KERAS_LAMBDA_LAYER: &str = r#", {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "evil_lambda", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}}}"#;
pub const KERAS_OS_SYSTEM_LAYER: &str = r#", {"module": "keras.layers", "class_name": "Activation", "config": {"name": "act", "activation": {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}}}"#;

pub fn keras_zip(config: &str) -> Vec<u8> {
    stored_zip(&[
        ("metadata.json", br#"{"keras_version": "3.3.3", "date_saved": "2024-05-01@12:00:00"}"#),
        ("config.json", config.as_bytes()),
        ("model.weights.h5", HDF5_SIG),
    ])
}

/// An HDF5-shaped file whose root object header holds a Keras `model_config` attribute.
pub fn keras_h5(model_config: &str) -> Vec<u8> {
    let mut out = HDF5_SIG.to_vec();
    out.extend_from_slice(&[0u8; 88]);
    out.extend_from_slice(b"\x01\x00\x00\x00model_config\x00\x00\x00\x00");
    out.extend_from_slice(model_config.as_bytes());
    out.extend_from_slice(b"\x00\x00\x00\x00keras_version\x00\x00\x002.13.1\x00");
    out.extend_from_slice(&[0u8; 256]);
    out
}

pub fn keras_h5_lambda_config() -> String {
    r#"{"class_name": "Sequential", "config": {"name": "sequential", "layers": [{"class_name": "Dense", "config": {"name": "dense"}}, {"class_name": "Lambda", "config": {"name": "lambda", "function": ["4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMMAAAAdABkAYMBAQB8AFMAKQJOegJpZCkB2gVwcmludCkB2gF4qQByAwAAAPoeL3RtcC9pcHlrZXJuZWwvMzQyNjk1MDQ3OC5wedoIPGxhbWJkYT4BAAAA8wAAAAA=", null, null], "function_type": "lambda"}}]}, "keras_version": "2.13.1", "backend": "tensorflow"}"#.to_owned()
}

/// HDF5 weights file (`model.save_weights`): no model_config, but Keras attribute names.
pub fn keras_h5_weights() -> Vec<u8> {
    let mut out = HDF5_SIG.to_vec();
    out.extend_from_slice(&[0u8; 120]);
    out.extend_from_slice(b"layer_names\x00\x00\x00\x00\x00backend\x00tensorflow\x00");
    out.extend_from_slice(&[0u8; 128]);
    out
}

pub fn plain_hdf5() -> Vec<u8> {
    let mut out = HDF5_SIG.to_vec();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn generators_are_self_consistent() {
    // GGUF: data section 32-aligned, tensor bytes present.
    let g = llama_gguf();
    assert_eq!(&g[..4], b"GGUF");
    assert_eq!(g.len() % 32, 0);
    // zip from the hand-written writer is readable by the zip crate.
    let z = torch_zip(&torch_state_dict_pickle());
    let mut za = zip::ZipArchive::new(std::io::Cursor::new(z)).expect("zip");
    assert_eq!(za.len(), 4);
    let mut s = String::new();
    std::io::Read::read_to_string(&mut za.by_name("archive/version").expect("entry"), &mut s).expect("read");
    assert_eq!(s, "3\n");
    // CRC matches a known vector.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    // tar headers carry valid checksums and sizes.
    let t = tar(&[("pickle", b"abc")]);
    assert_eq!(t.len(), 512 * 2 + 1024);
    assert_eq!(&t[124..135], b"00000000003");
    // The deflate bomb inflates to what it says, through the zip crate's inflater.
    let (z, inflated) = torch_zip_bomb(1000);
    let mut za = zip::ZipArchive::new(std::io::Cursor::new(z)).expect("zip");
    let mut pkl = Vec::new();
    let opts = zip::read::ZipReadOptions::new().ignore_crc32(true);
    std::io::Read::read_to_end(&mut za.by_index_with_options(0, opts).expect("entry"), &mut pkl).expect("inflate");
    assert_eq!(pkl.len() as u64, inflated);
    assert!(inflated > 1000 * 1032);
    assert!(pkl.starts_with(b"\x80\x02N0N0") && pkl.ends_with(b"N0N0N."));
}

// ---------------------------------------------------------------- trees

/// A directory tree for the scan tests: a model, a malicious torch zip, text, a fake model, a
/// model without an extension in a subdirectory, a symlink loop and a link to a model.
pub fn scan_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("llama.gguf"), llama_gguf()).expect("write");
    std::fs::write(d.join("evil.pt"), torch_zip(&os_system_pickle())).expect("write");
    std::fs::write(d.join("notes.txt"), "just notes\n").expect("write");
    std::fs::write(d.join("fake.gguf"), "<html>404</html>\n").expect("write");
    std::fs::create_dir(d.join("sub")).expect("mkdir");
    std::fs::write(d.join("sub/weights"), tiny_safetensors(Some("MIT"))).expect("write");
    // A loop and a link to a model: neither is followed during the walk.
    std::os::unix::fs::symlink(d, d.join("sub/loop")).expect("symlink");
    std::os::unix::fs::symlink(d.join("evil.pt"), d.join("sub/link.pt")).expect("symlink");
    dir
}
