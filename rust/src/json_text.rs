//! Writing JSON text the way Python's `json.dumps(..., ensure_ascii=False, allow_nan=False)`
//! does, byte for byte: string escapes and float formatting. Pure (no Python); the object
//! walker that uses it lives in `py::json`.

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

/// Python's `str.encode("utf-8", "surrogatepass")` of a string holding lone surrogates, as text
/// with each surrogate (the three bytes `ED A0..=BF 80..=BF`) replaced by one U+FFFD.
pub fn replace_surrogates(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xED && b.len() - i >= 3 && (0xA0..=0xBF).contains(&b[i + 1]) {
            out.extend_from_slice("\u{FFFD}".as_bytes());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Anything else invalid (not from surrogatepass) still becomes U+FFFD, never a panic.
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Why a float cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite;

/// Appends a float exactly as Python's `float.__repr__` writes it: the shortest digits that
/// read back as `v`, the nearest such to `v` (ties to an even last digit), positional when
/// the decimal exponent is in -4..16, else `d.ddde+XX`. NaN and infinities are not JSON.
///
/// The digits come from zmij, which picks them by the same rule as repr (David Gay's dtoa,
/// mode 0): the fewest digits inside the double's rounding interval (bounds included only
/// for an even mantissa, the lower half narrower at a power of two), then the nearest to
/// the exact value, an exact tie going to the even digit. std's `{:e}` is not usable: it
/// breaks ties upward (562949953421312.25 gives …312.3 where repr gives …312.2).
pub fn write_f64(out: &mut Vec<u8>, v: f64) -> Result<(), NonFinite> {
    if !v.is_finite() {
        return Err(NonFinite);
    }
    let mut buf = zmij::Buffer::new();
    let text = buf.format_finite(v).as_bytes();
    // From the double nearest 1e-4 up, repr's decimal exponent is -4 or more (a double
    // below it has its whole rounding interval below 1e-4), and zmij lays out exponents
    // -5..=15 positionally and higher ones as repr does ("1e+16"): its text is repr's.
    // zmij writes zero as "0.0" / "-0.0", as repr does.
    let a = v.abs();
    if a >= 1e-4 || a == 0.0 {
        out.extend_from_slice(text);
    } else if !write_if_small_exponent(out, text) {
        write_digits(out, v, text);
    }
    Ok(())
}

/// Below 1e-4 repr writes `d.ddde-XX`. zmij does too from 1e-6 down, but with one exponent
/// digit where repr pads to two (1e-07): appends repr's text and returns true. Anything else
/// (zmij writes 1e-5 as 0.00001) is left to `write_digits`.
#[inline]
fn write_if_small_exponent(out: &mut Vec<u8>, text: &[u8]) -> bool {
    let Some(e) = text.iter().rposition(|&c| c == b'e') else {
        return false;
    };
    let digits = match &text[e + 1..] {
        [b'-', d @ ..] if (1..=3).contains(&d.len()) && d.iter().all(u8::is_ascii_digit) => d,
        _ => return false,
    };
    out.extend_from_slice(&text[..e]);
    out.extend_from_slice(b"e-");
    if digits.len() == 1 {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
    true
}

/// repr's layout built from the digits and exponent read out of zmij's `text`, whatever its
/// layout.
#[cold]
fn write_digits(out: &mut Vec<u8>, v: f64, text: &[u8]) {
    if v.is_sign_negative() {
        out.push(b'-');
    }
    if v == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let (digits, exp) = shortest_digits(text);
    let digits = digits.as_slice();
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
}

/// Up to 17 significant decimal digits, without leading or trailing zeros.
struct Digits {
    buf: [u8; 17],
    len: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The significant digits in zmij's text of a finite nonzero double and the decimal
/// exponent of the first: `|v|` is `d1.d2d3… × 10^exp`. Sign, point, leading and trailing
/// zeros and an `e` exponent may be anywhere zmij puts them.
fn shortest_digits(text: &[u8]) -> (Digits, i32) {
    let text = text.strip_prefix(b"-").unwrap_or(text);
    let mut d = Digits {
        buf: [0; 17],
        len: 0,
    };
    // Digit characters before the point (all of them when there is no point), zeros before
    // the first significant digit, and zeros seen since the last nonzero digit (written only
    // when another nonzero digit follows, so trailing zeros are dropped).
    let mut int_chars: Option<i32> = None;
    let mut chars = 0i32;
    let mut leading = 0i32;
    let mut zeros = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'.' => {
                int_chars = Some(chars);
                i += 1;
                continue;
            }
            b'0' if d.len == 0 => leading += 1,
            b'0' => zeros += 1,
            c @ b'1'..=b'9' => {
                d.buf[d.len..d.len + zeros].fill(b'0');
                d.len += zeros;
                zeros = 0;
                d.buf[d.len] = c;
                d.len += 1;
            }
            _ => break,
        }
        chars += 1;
        i += 1;
    }
    let mut exp = int_chars.unwrap_or(chars) - 1 - leading;
    // The exponent part: "e", an optional sign, decimal digits.
    if i < text.len() {
        i += 1;
        let neg = text.get(i) == Some(&b'-');
        if matches!(text.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let mut e = 0i32;
        for &c in &text[i..] {
            e = e * 10 + i32::from(c - b'0');
        }
        exp += if neg { -e } else { e };
    }
    (d, exp)
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
    fn each_lone_surrogate_becomes_one_replacement_character() {
        // "a\ud800b\udfffé" as surrogatepass writes it.
        let b = b"a\xed\xa0\x80b\xed\xbf\xbf\xc3\xa9";
        assert_eq!(replace_surrogates(b), "a\u{FFFD}b\u{FFFD}\u{e9}");
        // A U+FFFD of the input stays one; a truncated sequence is still text.
        assert_eq!(replace_surrogates("\u{FFFD}".as_bytes()), "\u{FFFD}");
        assert_eq!(replace_surrogates(b"x\xed\xa0"), "x\u{FFFD}\u{FFFD}");
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
            (1e-4, "0.0001"),
            (9.999999999999999e-5, "9.999999999999999e-05"),
            (1.234e-7, "1.234e-07"),
            (9.999999999999998e15, "9999999999999998.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (2.225073858507201e-308, "2.225073858507201e-308"),
            (1e23, "1e+23"),
            (9.5e-5, "9.5e-05"),
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v:?}");
        }
        let mut out = Vec::new();
        assert_eq!(write_f64(&mut out, f64::NAN), Err(NonFinite));
        assert_eq!(write_f64(&mut out, f64::NEG_INFINITY), Err(NonFinite));
        assert!(out.is_empty());
    }

    /// Exact ties between two shortest digit strings: repr keeps the even last digit where
    /// std's `{:e}` rounds up. Found by comparing against CPython's repr.
    #[test]
    fn ties_go_to_the_even_digit() {
        let cases = [
            // 2^49 + 0.25: …312.2 and …312.3 both read back and are 0.05 away.
            (2f64.powi(49) + 0.25, "562949953421312.2"),
            (-(2f64.powi(49) + 0.25), "-562949953421312.2"),
            (582293803876020.2, "582293803876020.2"),
            (152199032297236.12, "152199032297236.12"),
            (1034794295263148.2, "1034794295263148.2"),
            (11331251138736.812, "11331251138736.812"),
            (1.0000076293945312, "1.0000076293945312"),
            (-1.0000076293945312, "-1.0000076293945312"),
            (0.00012063980102539062, "0.00012063980102539062"),
            (1.0728836059570312e-05, "1.0728836059570312e-05"),
            // 2^-25: a power of two, so the interval is narrower below; still a tie.
            (2.9802322387695312e-08, "2.9802322387695312e-08"),
            (5.960464477539062e-07, "5.960464477539062e-07"),
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v:?}");
            assert_eq!(
                reference::Reference::new().repr(v).0,
                want,
                "reference, {v:?}"
            );
        }
        assert_eq!(f(2f64.powi(-25)), "2.9802322387695312e-08");
        // Here the even digit is the upper one.
        assert_eq!(f(2f64.powi(49) + 0.75), "562949953421312.8");
    }

    /// The fallback reads digits from any layout and agrees with the fast path everywhere.
    #[test]
    fn fallback_layout_agrees_with_fast_path() {
        let mut rng = Mix(0xfa11);
        let mut values: Vec<f64> = (0..20_000).map(|_| f64::from_bits(rng.next())).collect();
        values.extend((-330..310).map(|e| 1.2345 * 10f64.powi(e)));
        values.extend([1e-5, -1e-5, 9.5e-5, 1e16, 1e15, 5e-324, f64::MAX, -0.0, 0.0]);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            let mut fast = Vec::new();
            write_f64(&mut fast, v).unwrap();
            let mut buf = zmij::Buffer::new();
            let zmij_text = buf.format_finite(v).as_bytes().to_vec();
            let zmij_digits = shortest_digits(&zmij_text).0.as_slice().to_vec();
            // zmij's own text, then std's layouts of (except at ties) the same digits.
            for text in [zmij_text, format!("{v:e}").into(), format!("{v:?}").into()] {
                if v != 0.0 && shortest_digits(&text).0.as_slice() != zmij_digits {
                    continue;
                }
                let mut slow = Vec::new();
                write_digits(&mut slow, v, &text);
                assert_eq!(slow, fast, "{v:?} from {}", String::from_utf8_lossy(&text));
            }
        }
    }

    /// Deterministic 64-bit generator (SplitMix64) for the sampled checks.
    struct Mix(u64);

    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Checks every value against the reference; returns how many were exact ties.
    fn check_all(values: impl Iterator<Item = f64>) -> (usize, usize) {
        let r = reference::Reference::new();
        let (mut n, mut ties) = (0, 0);
        let mut out = Vec::with_capacity(32);
        for v in values {
            if !v.is_finite() {
                continue;
            }
            let (want, tie) = r.repr(v);
            out.clear();
            write_f64(&mut out, v).unwrap();
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                want,
                "bits {:#018x}",
                v.to_bits()
            );
            n += 1;
            ties += usize::from(tie);
        }
        (n, ties)
    }

    /// A window of bit patterns on each side of every power of two (every binary exponent,
    /// subnormals included), both signs for part of it.
    #[test]
    fn floats_around_every_power_of_two() {
        const W: u64 = 200;
        let around = (1u64..=2047).flat_map(|b| {
            let c = b << 52;
            (c - W..c + W).filter(|&bits| bits & 0x7ff0_0000_0000_0000 != 0x7ff0_0000_0000_0000)
        });
        let edges = (1..4 * W).chain(0x7fef_ffff_ffff_ffff - 4 * W..=0x7fef_ffff_ffff_ffff);
        let bits = around.chain(edges);
        let values = bits.map(|b| {
            let v = f64::from_bits(b);
            // Every seventh one negative.
            if b % 7 == 0 {
                -v
            } else {
                v
            }
        });
        let (n, _) = check_all(values);
        assert!(n > 800_000, "{n}");
    }

    /// Dense random bit patterns between 1e14 and 1e17, where ties are common (about 1 in
    /// 11 of these samples), plus contiguous runs at the binades' edges.
    #[test]
    fn floats_from_1e14_to_1e17() {
        let (lo, hi) = (1e14f64.to_bits(), 1e17f64.to_bits());
        let mut rng = Mix(0x1e14_1e17);
        let random = (0..1_000_000).map(move |_| f64::from_bits(lo + rng.below(hi - lo + 1)));
        let runs = [
            1e14,
            2f64.powi(47),
            2f64.powi(49),
            1e15,
            2f64.powi(50),
            1e16,
            2f64.powi(53),
            1e17,
        ]
        .into_iter()
        .flat_map(|v: f64| {
            let c = v.to_bits();
            (c - 5000..c + 5000).map(f64::from_bits)
        });
        let (n, ties) = check_all(random.chain(runs));
        assert!(n >= 1_080_000, "{n}");
        assert!(ties > 50_000, "only {ties} ties among {n}");
    }

    /// Doubles with few significant bits (small odd integers times a power of two) at every
    /// binary exponent: their exact decimal expansions are short, so this is where ties live
    /// below 1e14 (found in every decade from 1e-8 to 1e15), and uniform random bit patterns.
    #[test]
    fn floats_with_short_expansions_and_random_bits() {
        let mut rng = Mix(0x5eed);
        let mut values = Vec::with_capacity(600_000);
        for i in 0..400_000 {
            let bits = 1 + rng.below(53) as i32;
            let odd = (rng.next() >> (64 - bits)) | 1 | (1 << (bits - 1));
            // Half anywhere, half between 2^-30 and 2^52, where ties can happen.
            let exp = if i % 2 == 0 {
                rng.below(2100) as i32 - 1100
            } else {
                rng.below(83) as i32 - 30 - bits
            };
            values.push(odd as f64 * 2f64.powi(exp));
        }
        for _ in 0..200_000 {
            values.push(f64::from_bits(rng.next()));
        }
        let (n, ties) = check_all(values.into_iter().filter(|v| *v != 0.0));
        assert!(n > 500_000, "{n}");
        assert!(ties > 1_500, "only {ties} ties among {n}");
    }

    /// Python's repr of a double by its definition (David Gay's dtoa in mode 0), computed with
    /// exact integers and sharing nothing with `write_f64`: the rounding interval of the
    /// double is the set of reals that read back as it (its bounds, halfway to the
    /// neighbours, included only when the mantissa is even; the lower half is half as wide
    /// at a power of two). The output has the fewest significant digits of any decimal in
    /// the interval; of those, the one nearest the double, an exact tie going to the even
    /// last digit.
    mod reference {
        use num_bigint::BigUint;
        use num_integer::Integer as _;
        use std::cmp::Ordering;

        pub struct Reference {
            /// 10^0 ..= 10^400.
            pow10: Vec<BigUint>,
        }

        /// A double as x * 2^e2 with the interval [lo * 2^e2, hi * 2^e2].
        struct Interval {
            lo: u64,
            x: u64,
            hi: u64,
            e2: i32,
            inclusive: bool,
        }

        /// The integers c with c * 10^k inside the interval, [first, end), and the scale:
        /// `c * 10^k` compares with `y * 2^e2` as `c * den` with `y * num`.
        struct Probe {
            first: BigUint,
            end: BigUint,
            num: BigUint,
            den: BigUint,
        }

        impl Probe {
            fn found(&self) -> bool {
                self.first < self.end
            }
        }

        impl Reference {
            pub fn new() -> Self {
                let mut pow10 = vec![BigUint::from(1u32)];
                for i in 1..=400 {
                    let next = &pow10[i - 1] * 10u32;
                    pow10.push(next);
                }
                Reference { pow10 }
            }

            fn probe(&self, iv: &Interval, k: i32) -> Probe {
                let mut num = self.pow10[(-k).max(0) as usize].clone();
                let mut den = self.pow10[k.max(0) as usize].clone();
                if iv.e2 >= 0 {
                    num <<= iv.e2 as u32;
                } else {
                    den <<= (-iv.e2) as u32;
                }
                let one = BigUint::from(1u32);
                let (q, r) = (BigUint::from(iv.lo) * &num).div_rem(&den);
                let first = if r == BigUint::ZERO && iv.inclusive {
                    q
                } else {
                    q + &one
                };
                let (q, r) = (BigUint::from(iv.hi) * &num).div_rem(&den);
                let end = if r != BigUint::ZERO || iv.inclusive {
                    q + one
                } else {
                    q
                };
                Probe {
                    first,
                    end,
                    num,
                    den,
                }
            }

            /// Significant digits (no trailing zeros), the decimal exponent of the first
            /// digit, and whether the choice was an exact tie, for a finite nonzero `v`.
            pub fn digits(&self, v: f64) -> (String, i32, bool) {
                let bits = v.abs().to_bits();
                let biased = (bits >> 52) as i32;
                let frac = bits & ((1 << 52) - 1);
                assert!(biased < 0x7ff && bits != 0);
                let (m, e) = if biased == 0 {
                    (frac, -1074)
                } else {
                    (frac | 1 << 52, biased - 1075)
                };
                // In units of 2^(e-2): the neighbours are 4 units away, except the one
                // below a power of two (not the smallest normal), 2 units away.
                let below = if frac == 0 && biased > 1 { 1 } else { 2 };
                let iv = Interval {
                    lo: 4 * m - below,
                    x: 4 * m,
                    hi: 4 * m + 2,
                    e2: e - 2,
                    inclusive: m % 2 == 0,
                };
                // The fewest digits is the largest k with a multiple of 10^k in the
                // interval. Having one at 10^k implies having one at 10^(k-1), so start
                // where there surely is one (10^k at most a tenth of the interval's width)
                // and step up while there still is; the answer is a step or two away.
                let width_log10 = f64::from(e) * std::f64::consts::LOG10_2 + 0.75f64.log10();
                let mut k = width_log10.floor() as i32 - 1;
                let mut p = self.probe(&iv, k);
                assert!(p.found(), "{v:e}: nothing at 10^{k}");
                loop {
                    let next = self.probe(&iv, k + 1);
                    if !next.found() {
                        break;
                    }
                    (k, p) = (k + 1, next);
                }
                let one = BigUint::from(1u32);
                let (q, r) = (BigUint::from(iv.x) * &p.num).div_rem(&p.den);
                let up = &q + &one;
                let in_range = |c: &BigUint| *c >= p.first && *c < p.end;
                let (nearest, tie) = match (r << 1u32).cmp(&p.den) {
                    Ordering::Less => (q, false),
                    Ordering::Greater => (up, false),
                    Ordering::Equal => {
                        let both = in_range(&q) && in_range(&up);
                        (if q.bit(0) { up } else { q }, both)
                    }
                };
                // The nearest integer may fall outside the interval; then the candidate
                // nearest to it is the end of the range on its side.
                let c = if nearest < p.first {
                    p.first
                } else if nearest >= p.end {
                    p.end - one
                } else {
                    nearest
                };
                let digits = c.to_string();
                assert!(
                    !digits.ends_with('0'),
                    "{v:e}: {digits}e{k} is not the shortest"
                );
                let exp = k + digits.len() as i32 - 1;
                (digits, exp, tie)
            }

            /// `repr(v)` and whether its digits were an exact tie.
            pub fn repr(&self, v: f64) -> (String, bool) {
                let sign = if v.is_sign_negative() { "-" } else { "" };
                if v == 0.0 {
                    return (format!("{sign}0.0"), false);
                }
                let (d, exp, tie) = self.digits(v);
                // float_repr_style 'short': positional when -4 <= exponent < 16.
                let body = if (-4..16).contains(&exp) {
                    if exp < 0 {
                        format!("0.{}{d}", "0".repeat((-exp - 1) as usize))
                    } else if d.len() <= exp as usize + 1 {
                        format!("{d}{}.0", "0".repeat(exp as usize + 1 - d.len()))
                    } else {
                        let (int, frac) = d.split_at(exp as usize + 1);
                        format!("{int}.{frac}")
                    }
                } else {
                    let (first, rest) = d.split_at(1);
                    let point = if rest.is_empty() { "" } else { "." };
                    let esign = if exp < 0 { '-' } else { '+' };
                    format!("{first}{point}{rest}e{esign}{:02}", exp.unsigned_abs())
                };
                let text = format!("{sign}{body}");
                // The reference's own check: its text reads back as the same double.
                assert_eq!(text.parse::<f64>(), Ok(v), "{text}");
                (text, tie)
            }
        }
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
