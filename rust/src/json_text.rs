//! Writing JSON text the way Python's `json.dumps(..., ensure_ascii=False, allow_nan=False)`
//! does, byte for byte: string escapes and float formatting. Pure (no Python); the object
//! walker that uses it lives in `py::json`.

use std::io::Write as _;

/// What each byte needs inside a JSON string: 0 = copy, b'u' = `\u00XX`, else the letter
/// after the backslash. The same set as Python's `json.encoder.ESCAPE`: control characters,
/// `"` and `\`; everything else, non-ASCII included, is copied.
static ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when one of the 8 bytes of `w` is a control character, `"` or `\` (exact: the
/// "has zero byte" and "has byte below n" word tricks have no false negatives, and a false
/// positive only costs a byte-by-byte look at that word).
#[inline]
fn word_needs_escape(w: u64) -> bool {
    let below_space = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * b'"' as u64);
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * b'\\' as u64);
    let backslash = b.wrapping_sub(LO) & !b;
    (below_space | quote | backslash) & HI != 0
}

/// Index of the first byte of `s` at or after `from` that needs escaping, or `s.len()`.
#[inline]
fn next_escape(s: &[u8], mut i: usize) -> usize {
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        if word_needs_escape(w) {
            break;
        }
        i += 8;
    }
    while i < s.len() && ESCAPES[s[i] as usize] == 0 {
        i += 1;
    }
    i
}

/// Appends `s` as a quoted JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let i = next_escape(b, start);
        out.extend_from_slice(&b[start..i]);
        if i == b.len() {
            break;
        }
        let byte = b[i];
        match ESCAPES[byte as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 0xf) as usize]);
            }
            c => {
                out.push(b'\\');
                out.push(c);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Why a float cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite;

/// Appends a float exactly as Python's `float.__repr__` writes it (shortest digits that
/// round-trip; positional when the decimal exponent is in -4..16, else `d.ddde+XX`).
/// NaN and infinities are not JSON.
pub fn write_f64(out: &mut Vec<u8>, v: f64) -> Result<(), NonFinite> {
    if !v.is_finite() {
        return Err(NonFinite);
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7", "5e0".
    let mut sci = [0u8; 40];
    let mut cur = std::io::Cursor::new(&mut sci[..]);
    write!(cur, "{v:e}").expect("40 bytes hold any f64 in {:e} form");
    let len = cur.position() as usize;
    let sci = &sci[..len];
    let (mantissa, exp) = {
        let e = sci
            .iter()
            .position(|&c| c == b'e')
            .expect("{:e} has an exponent");
        let exp: i32 = std::str::from_utf8(&sci[e + 1..])
            .expect("ascii")
            .parse()
            .expect("{:e} exponent is an integer");
        (&sci[..e], exp)
    };
    let (neg, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, mantissa),
    };
    // Digits without the point: "12345".
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &c in mantissa {
        if c != b'.' {
            digits[nd] = c;
            nd += 1;
        }
    }
    let digits = &digits[..nd];
    if neg {
        out.push(b'-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(a).as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_python() {
        assert_eq!(s(""), r#""""#);
        assert_eq!(
            s("plain text, long enough for words"),
            r#""plain text, long enough for words""#
        );
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(s("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(s("é€😀/<>"), "\"é€😀/<>\"");
        // An escape in every position of a word.
        for i in 0..17 {
            let mut x = "m".repeat(17);
            x.replace_range(i..i + 1, "\"");
            let want = format!("\"{}\\\"{}\"", &x[..i], &x[i + 1..]);
            assert_eq!(s(&x), want, "at {i}");
        }
    }

    #[test]
    fn word_check_has_no_false_negatives() {
        for b in 0u8..=255 {
            let w = u64::from_le_bytes([b'a', b'a', b'a', b, b'a', b'a', b'a', b'a']);
            assert_eq!(
                word_needs_escape(w),
                ESCAPES[b as usize] != 0,
                "byte {b:#x}"
            );
        }
        // Non-ASCII bytes (>= 0x80) next to each other must not look like escapes.
        let w = u64::from_le_bytes("é€😀".as_bytes()[..8].try_into().unwrap());
        assert!(!word_needs_escape(w));
    }

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (12.5, "12.5"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1e-5, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1.0 / 3.0, "0.3333333333333333"),
            (9007199254740993.0, "9007199254740992.0"),
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v:?}");
        }
        let mut out = Vec::new();
        assert_eq!(write_f64(&mut out, f64::NAN), Err(NonFinite));
        assert_eq!(write_f64(&mut out, f64::NEG_INFINITY), Err(NonFinite));
        assert!(out.is_empty());
    }

    #[test]
    fn ints() {
        let mut out = Vec::new();
        write_i64(&mut out, i64::MIN);
        out.push(b',');
        write_i64(&mut out, 0);
        assert_eq!(out, b"-9223372036854775808,0");
    }
}
