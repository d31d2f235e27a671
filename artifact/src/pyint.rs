//! Integers spelt the way Python spells them. Loaders parse numbers with CPython's own
//! routines (the unpickler's `INT`/`LONG`/`GET`/`PUT` lines, `tarfile`'s octal fields, NumPy
//! header literals), and a reader that accepts less than they do stops where they go on: what
//! follows the stop goes unseen. This module owns those readings; callers pick the base.

/// An optional leading sign: whether it is `-`, and the rest.
fn sign(s: &[u8]) -> (bool, &[u8]) {
    match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    }
}

/// `PyLong_FromString` over ASCII: Python's `int(text, base)` for base 2 to 36, or 0 to take
/// the base from a `0x`/`0o`/`0b` prefix (then no leading zeros on a non-zero decimal).
/// Surrounding whitespace, a sign, the prefix of the base itself and single underscores between
/// digits are accepted. `None` when Python raises or the value does not fit an `i128`.
pub(crate) fn py_int(text: &[u8], base: u32) -> Option<i128> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = text.iter().position(|b| !space(b))?;
    let end = text.iter().rposition(|b| !space(b))? + 1;
    let mut s = &text[start..end];
    let negative;
    (negative, s) = sign(s);
    let mut radix = if base == 0 { 10 } else { base };
    let mut old_octal = false;
    if s.first() == Some(&b'0') {
        let prefix = match s.get(1).map(u8::to_ascii_lowercase) {
            Some(b'x') => Some(16),
            Some(b'o') => Some(8),
            Some(b'b') => Some(2),
            _ => None,
        };
        match prefix {
            Some(p) if base == 0 || base == p => {
                radix = p;
                s = &s[2..];
                // One underscore may follow the prefix.
                if s.first() == Some(&b'_') {
                    s = &s[1..];
                }
            }
            None if base == 0 => old_octal = true,
            _ => {}
        }
    }
    if s.is_empty() || s[0] == b'_' || s[s.len() - 1] == b'_' || s.windows(2).any(|w| w == b"__") {
        return None;
    }
    let mut v: i128 = 0;
    for &b in s.iter().filter(|b| **b != b'_') {
        v = v.checked_mul(i128::from(radix))?.checked_add(i128::from((b as char).to_digit(radix)?))?;
    }
    // `int("07", 0)` is an error; `int("00", 0)` is zero.
    if old_octal && v != 0 {
        return None;
    }
    Some(if negative { -v } else { v })
}

/// C `strtol(text, &end, 0)` that must consume the whole line, as CPython's `load_int` tries
/// before falling back to [`py_int`]: leading whitespace, a sign, `0x` hex, a leading `0` for
/// octal. `None` when it stops early or overflows a C `long`.
pub(crate) fn c_strtol(text: &[u8]) -> Option<i128> {
    let mut s = text;
    while let Some((b, rest)) = s.split_first()
        && matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
    {
        s = rest;
    }
    let negative;
    (negative, s) = sign(s);
    let radix = if s.len() > 2 && s[0] == b'0' && s[1].eq_ignore_ascii_case(&b'x') && s[2].is_ascii_hexdigit() {
        s = &s[2..];
        16
    } else if s.first() == Some(&b'0') {
        8
    } else {
        10
    };
    if s.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for &b in s {
        let d = (b as char).to_digit(radix)?;
        v = v * i128::from(radix) + i128::from(d);
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if negative { -v } else { v };
    i64::try_from(v).ok().map(i128::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_int_reads_as_python_int_reads() {
        assert_eq!(py_int(b"010", 10), Some(10));
        assert_eq!(py_int(b"1_000", 10), Some(1000));
        assert_eq!(py_int(b"0x10", 10), None);
        // An explicit base takes its own prefix only; other letters are digits where valid.
        assert_eq!(
            (py_int(b"0o17", 8), py_int(b"0x_1f", 16), py_int(b"0b1", 16), py_int(b"0x1", 8)),
            (Some(15), Some(31), Some(0xb1), None)
        );
    }
}
