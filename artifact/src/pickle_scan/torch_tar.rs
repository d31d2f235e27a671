//! The members of a legacy (tar) `torch.save` archive that interleave pickles with raw blocks:
//! `storages` and `tensors`. Torch computes each raw block's length from the pickle before it;
//! this module does the same, so that every pickle torch would unpickle is walked and no raw
//! block is taken for opcodes.

use std::io::Read;

use super::{
    policy::PicklePolicy,
    stream::Src,
    values::V,
    walker::{Machine, Step, Walk},
};
use crate::io::Reader;

/// The members of the legacy torch tar that interleave pickles with raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarMember {
    /// A count, then per storage a `(key, location, storage_type)` pickle and the storage
    /// bytes (an `int64` element count and the elements), then the storage views.
    Storages,
    /// A count, then per tensor a `(key, storage_id, type)` pickle and a fixed record: `int32`
    /// ndim, 4 padding bytes, ndim `int64` sizes and strides, an `int64` storage offset.
    Tensors,
}

/// Element sizes of the typed storage classes a legacy torch tar names.
fn storage_element_size(v: &V) -> Option<u64> {
    let V::Tuple(items) = v else { return None };
    let [_, _, V::Global(Some(class))] = &items[..] else { return None };
    Some(match class.strip_prefix("torch.")? {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Walks a `storages` or `tensors` member of the legacy torch tar, the data of which is
/// `r[r.pos()..end]`, reading exactly what torch's `legacy_load` reads: its pickles are walked
/// and its raw blocks skipped. Where the length of a raw block depends on something the walker
/// does not model, the walk stops incomplete.
pub fn walk_torch_tar_member(
    member: TarMember,
    r: &mut Reader<'_>,
    end: u64,
    budget: u64,
    policy: &PicklePolicy,
) -> Walk {
    let mut m = Machine::new(policy);
    let used = std::cell::Cell::new(0u64);
    let next = |m: &mut Machine<'_>, r: &mut Reader<'_>| -> Step {
        let left = end.saturating_sub(r.pos());
        let deadline = r.deadline().clone();
        let mut take = Read::take(&mut *r, left);
        let mut src = Src::new(&mut take, budget.saturating_sub(used.get()), &deadline);
        // The walker reads byte by byte and never past a STOP, so the reader ends up right
        // after the pickle (or where the walk stopped).
        let step = m.next_pickle(&mut src);
        used.set(used.get() + src.pos());
        step
    };
    let unmodelled = |m: &mut Machine<'_>, what: &str| {
        m.out.error = Some(format!("{what}: the walker cannot tell where the next pickle starts"));
    };
    let raw = |r: &mut Reader<'_>, n: u64| -> Option<Vec<u8>> {
        (end.saturating_sub(r.pos()) >= n).then(|| r.read_vec(n, n, "raw record").ok()).flatten()
    };
    let count = match next(&mut m, r) {
        Step::Value(V::Int(n)) => n,
        Step::Value(_) if r.pos() < end => {
            unmodelled(&mut m, "the record count is not an integer the walker knows");
            0
        }
        Step::End => {
            m.out.error = Some("empty member".into());
            0
        }
        // A count torch cannot iterate over ends the load, and so does a failed walk.
        Step::Value(_) | Step::Stopped => 0,
    };
    let mut done: i128 = 0;
    let mut finished = m.out.error.is_none() && !m.out.limited;
    while finished && done < count {
        done += 1;
        let args = match next(&mut m, r) {
            Step::Value(v) => v,
            // The walk stopped, or torch's load fails here and nothing after it runs.
            Step::End | Step::Stopped => {
                finished = false;
                break;
            }
        };
        if let V::Tuple(items) = &args
            && items.len() != 3
        {
            // The three-way unpacking raises.
            finished = false;
            break;
        }
        let skip = match member {
            TarMember::Storages => {
                let Some(size) = storage_element_size(&args) else {
                    unmodelled(&mut m, "a storage record does not name a typed storage class the walker knows");
                    finished = false;
                    break;
                };
                let Some(b) = raw(r, 8) else {
                    finished = false;
                    break;
                };
                let n = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                match u64::try_from(n).ok().and_then(|n| n.checked_mul(size)) {
                    Some(bytes) => bytes,
                    None => {
                        unmodelled(&mut m, &format!("a storage of {n} elements"));
                        finished = false;
                        break;
                    }
                }
            }
            TarMember::Tensors => {
                // A short read or a negative ndim makes torch's struct.unpack raise.
                let Some(ndim) = raw(r, 4).and_then(|b| u64::try_from(i32::from_le_bytes(b.try_into().ok()?)).ok())
                else {
                    finished = false;
                    break;
                };
                4 + 16 * ndim + 8
            }
        };
        // Raw data that runs past the member makes torch's read fail.
        if skip > end.saturating_sub(r.pos()) || r.skip(skip).is_err() {
            finished = false;
            break;
        }
    }
    if member == TarMember::Storages && finished {
        // The storage views follow the last storage.
        next(&mut m, r);
    }
    m.out.bytes = used.get();
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle_scan::testing::{cat, names};

    fn tar_member(member: TarMember, data: &[u8]) -> Walk {
        let mut c = std::io::Cursor::new(data);
        let mut r = Reader::new(&mut c, data.len() as u64).expect("reader");
        walk_torch_tar_member(member, &mut r, data.len() as u64, u64::MAX, &PicklePolicy::default())
    }

    #[test]
    fn torch_tar_members_are_walked_past_their_raw_blocks() {
        let record = b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\n\x87.";
        let storages = cat(&[
            b"\x80\x02K\x02.",
            record,
            &2u64.to_le_bytes(),
            &[0xffu8; 8],
            record,
            &1u64.to_le_bytes(),
            b"cos\n",
            b"cos\nsystem\n.",
        ]);
        let r = tar_member(TarMember::Storages, &storages);
        assert_eq!((names(&r), r.pickles), (vec!["torch.FloatStorage".to_string(), "os.system".into()], 4), "{r:?}");
        // The raw block lengths come from the records: a storage type the walker cannot size
        // leaves the member incomplete.
        let odd =
            cat(&[b"\x80\x02K\x01.", b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpucmylib\nS\n\x87.", &[0u8; 16]]);
        assert!(!tar_member(TarMember::Storages, &odd).complete());
        let tensors = cat(&[
            b"\x80\x02K\x01.",
            b"\x80\x02K\x00K\x00N\x87.",
            &1i32.to_le_bytes(),
            &[0u8; 4 + 16 + 8],
            b"cos\nsystem\n.",
        ]);
        // After its records nothing more of `tensors` is unpickled.
        let r = tar_member(TarMember::Tensors, &tensors);
        assert!(r.complete() && names(&r).is_empty(), "{r:?}");
        let r = tar_member(
            TarMember::Tensors,
            &cat(&[
                b"\x80\x02K\x02.",
                b"\x80\x02K\x00K\x00N\x87.",
                &0i32.to_le_bytes(),
                &[0u8; 12],
                b"cos\nsystem\n(tR.",
            ]),
        );
        assert_eq!(names(&r), ["os.system"]);
    }
}
