//! A small JSON scanner specialised for remoting headers: no allocation unless a string has
//! escapes, offsets in every error, bounded nesting.

use std::borrow::Cow;

use memchr::memchr2;

use super::error::{FrameError, FrameErrorKind};
use super::wire::PRELUDE_LEN;

/// Nesting beyond this is not a RocketMQ header; refusing it bounds the scan's work.
const MAX_DEPTH: usize = 64;

pub(crate) struct Scanner<'a> {
    pub h: &'a [u8],
    pub pos: usize,
    /// The header as text when it is valid UTF-8 (the norm): strings are then sliced from it
    /// instead of being validated one by one.
    text: Option<&'a str>,
}

impl<'a> Scanner<'a> {
    pub fn new(h: &'a [u8]) -> Self {
        Scanner {
            h,
            pos: 0,
            text: std::str::from_utf8(h).ok(),
        }
    }

    /// A lazy scanner for the view, which never extracts strings.
    pub fn new_raw(h: &'a [u8]) -> Self {
        Scanner {
            h,
            pos: 0,
            text: None,
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.h.get(self.pos).copied()
    }

    #[inline]
    pub fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += 1;
        b
    }

    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// An error at the current position: what was expected and what was found.
    pub fn err(&self, expected: &str) -> FrameError {
        let found = match self.peek() {
            Some(b) if b.is_ascii_graphic() => format!("found {:?}", b as char),
            Some(b) => format!("found byte 0x{b:02x}"),
            None => "found the end of the header".to_string(),
        };
        FrameError::new(
            PRELUDE_LEN + self.pos.min(self.h.len()),
            FrameErrorKind::MalformedJson(format!("expected {expected}, {found}")),
        )
    }

    /// Like `err`, for the byte just consumed.
    pub fn err_back(&mut self, expected: &str) -> FrameError {
        self.pos = self.pos.saturating_sub(1);
        self.err(expected)
    }

    #[inline]
    pub fn expect(&mut self, b: u8, what: &str) -> Result<(), FrameError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// A string's raw bytes (escapes left in place), positioned after its closing quote.
    #[inline]
    pub fn string_raw(&mut self) -> Result<&'a [u8], FrameError> {
        self.string_raw_esc().map(|(s, _)| s)
    }

    /// Like `string_raw`, also telling whether the string holds any escape.
    #[inline]
    pub fn string_raw_esc(&mut self) -> Result<(&'a [u8], bool), FrameError> {
        self.expect(b'"', "'\"' opening a string")?;
        let start = self.pos;
        // Header strings are mostly short: look at a few bytes before paying for memchr.
        let short_end = (start + 24).min(self.h.len());
        for i in start..short_end {
            match self.h[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok((&self.h[start..i], false));
                }
                b'\\' => break,
                _ => {}
            }
        }
        let mut escaped = false;
        loop {
            match memchr2(b'"', b'\\', &self.h[self.pos..]) {
                Some(i) if self.h[self.pos + i] == b'"' => {
                    let s = &self.h[start..self.pos + i];
                    self.pos += i + 1;
                    return Ok((s, escaped));
                }
                Some(i) => {
                    escaped = true;
                    self.pos += i + 2;
                }
                None => {
                    self.pos = self.h.len();
                    return Err(self.err("'\"' closing a string"));
                }
            }
            if self.pos > self.h.len() {
                self.pos = self.h.len();
                return Err(self.err("'\"' closing a string"));
            }
        }
    }

    /// A string value, unescaped; borrowed when it has no escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, FrameError> {
        let start = self.pos + 1;
        let (raw, escaped) = self.string_raw_esc()?;
        let text = self.text;
        let utf8 = |bytes: &'a [u8], at: usize| {
            // Quotes and backslashes are ASCII, so these ranges fall on char boundaries.
            if let Some(t) = text.and_then(|t| t.get(at..at + bytes.len())) {
                return Ok(t);
            }
            std::str::from_utf8(bytes).map_err(|e| {
                FrameError::new(
                    PRELUDE_LEN + at + e.valid_up_to(),
                    FrameErrorKind::MalformedJson("expected UTF-8 text in a string".into()),
                )
            })
        };
        if !escaped {
            return Ok(Cow::Borrowed(utf8(raw, start)?));
        }
        let mut out = String::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let run_end = memchr::memchr(b'\\', &raw[i..]).map_or(raw.len(), |j| i + j);
            out.push_str(utf8(&raw[i..run_end], start + i)?);
            i = run_end;
            if i >= raw.len() {
                break;
            }
            let at = start + i;
            let bad = |what: &str| {
                FrameError::new(PRELUDE_LEN + at, FrameErrorKind::MalformedJson(what.into()))
            };
            let esc = *raw
                .get(i + 1)
                .ok_or_else(|| bad("expected an escape after '\\'"))?;
            i += 2;
            let c = match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = hex4(raw, i).ok_or_else(|| bad("expected 4 hex digits after \\u"))?;
                    i += 4;
                    if (0xD800..0xDC00).contains(&hi) {
                        let lo = (raw.get(i) == Some(&b'\\') && raw.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(raw, i + 2))
                            .flatten()
                            .filter(|lo| (0xDC00..0xE000).contains(lo))
                            .ok_or_else(|| bad("expected a low surrogate after a high one"))?;
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            .ok_or_else(|| bad("expected a valid surrogate pair"))?
                    } else {
                        char::from_u32(hi).ok_or_else(|| bad("expected a valid \\u escape"))?
                    }
                }
                _ => return Err(bad("expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u")),
            };
            out.push(c);
        }
        Ok(Cow::Owned(out))
    }

    /// A JSON integer that fits i32.
    pub fn int(&mut self, what: &str) -> Result<i32, FrameError> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let mut v: i64 = 0;
        let digits_start = self.pos;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v * 10 + i64::from(d - b'0');
            if v > i64::from(u32::MAX) + 1 {
                self.pos = start;
                return Err(self.err(&format!("{what} within 32 bits")));
            }
            self.pos += 1;
        }
        if self.pos == digits_start {
            self.pos = start;
            return Err(self.err(what));
        }
        let v = if neg { -v } else { v };
        i32::try_from(v).map_err(|_| {
            self.pos = start;
            self.err(&format!("{what} within 32 bits"))
        })
    }

    /// A scalar as text (strings unescaped, numbers and booleans verbatim); None for null.
    pub fn scalar_text(&mut self, what: &str) -> Result<Option<Cow<'a, str>>, FrameError> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            Some(b'n') if self.h[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(None)
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f') => {
                let start = self.pos;
                self.skip_value(0)?;
                let text =
                    std::str::from_utf8(&self.h[start..self.pos]).map_err(|_| self.err(what))?;
                if text != "true" && text != "false" && text.parse::<f64>().is_err() {
                    self.pos = start;
                    return Err(self.err(what));
                }
                Ok(Some(Cow::Borrowed(text)))
            }
            _ => Err(self.err(what)),
        }
    }

    /// Skips one value of any kind.
    pub fn skip_value(&mut self, depth: usize) -> Result<(), FrameError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested at most 64 levels deep"));
        }
        match self.peek() {
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string_raw()?;
                        self.ws();
                        self.expect(b':', "':' after an object key")?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(c) if c == close => return Ok(()),
                        _ => {
                            return Err(self.err_back(if open == b'{' {
                                "',' or '}' in an object"
                            } else {
                                "',' or ']' in an array"
                            }))
                        }
                    }
                }
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.err("a JSON value"));
                }
                Ok(())
            }
            _ => Err(self.err("a JSON value")),
        }
    }

    /// After the last value: only whitespace may follow.
    pub fn end(&mut self) -> Result<(), FrameError> {
        self.ws();
        if self.pos < self.h.len() {
            return Err(self.err("the end of the header after the closing '}'"));
        }
        Ok(())
    }
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// Top-level `code`, `flag` and `opaque` read backwards from the end of a fastjson header.
///
/// fastjson sorts keys, so `code` comes first and `flag`/`opaque` sit in the short run of
/// scalars after `extFields`. Reading that run from the end touches a few dozen bytes instead
/// of the whole header. Returns None whenever the layout is not the expected one, and the
/// caller falls back to the forward scan.
pub(crate) fn peek_tail(h: &[u8]) -> Option<(i32, i32, i32)> {
    let code = {
        let rest = h.strip_prefix(b"{\"code\":")?;
        parse_int_prefix(rest)?
    };
    let mut end = h.len();
    while end > 0 && h[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    if end == 0 || h[end - 1] != b'}' {
        return None;
    }
    end -= 1; // now just past the last value
    let (mut flag, mut opaque) = (None, None);
    for _ in 0..8 {
        // value: a string or a bare scalar, read backwards
        let value_start = if h.get(end.checked_sub(1)?) == Some(&b'"') {
            string_start_back(h, end - 1)?
        } else {
            let mut s = end;
            while s > 0 && matches!(h[s - 1], b'0'..=b'9' | b'-' | b'a'..=b'z') {
                s -= 1;
            }
            if s == end {
                return None;
            }
            s
        };
        if h.get(value_start.checked_sub(1)?) != Some(&b':') {
            return None;
        }
        let before_colon = &h[..value_start - 1];
        // Only fastjson's own tail keys are expected here, compared as literals; anything
        // else (an escaped key included) is another layout, left to the forward scan.
        let (key, key_start) = TAIL_KEYS.iter().find_map(|k| {
            let quoted_len = k.len() + 2;
            let at = before_colon.len().checked_sub(quoted_len)?;
            let q = &before_colon[at..];
            (q[0] == b'"' && q[quoted_len - 1] == b'"' && &q[1..quoted_len - 1] == *k)
                .then_some((*k, at))
        })?;
        let value = &h[value_start..end];
        match key {
            b"opaque" => opaque = Some(parse_int_exact(value)?),
            b"flag" => flag = Some(parse_int_exact(value)?),
            _ => {}
        }
        if let (Some(f), Some(o)) = (flag, opaque) {
            return Some((code, f, o));
        }
        let sep = *h.get(key_start.checked_sub(1)?)?;
        if sep != b',' {
            return None;
        }
        end = key_start - 1;
    }
    None
}

/// The keys fastjson writes after `extFields`, in the order met when reading backwards.
const TAIL_KEYS: [&[u8]; 6] = [
    b"version",
    b"serializeTypeCurrentRPC",
    b"remark",
    b"opaque",
    b"language",
    b"flag",
];

/// Index of the opening quote of the string whose closing quote is at `close`.
fn string_start_back(h: &[u8], close: usize) -> Option<usize> {
    let mut i = close;
    loop {
        // Tail strings are short; a plain loop beats memrchr's setup, which remarks can afford.
        i = match h[..i].iter().rev().take(32).position(|&b| b == b'"') {
            Some(back) => i - 1 - back,
            None => memchr::memrchr(b'"', &h[..i])?,
        };
        let mut backslashes = 0;
        while i > backslashes && h[i - 1 - backslashes] == b'\\' {
            backslashes += 1;
        }
        if backslashes % 2 == 0 {
            return Some(i);
        }
    }
}

fn parse_int_prefix(s: &[u8]) -> Option<i32> {
    let mut len = usize::from(s.first() == Some(&b'-'));
    while s.get(len).is_some_and(u8::is_ascii_digit) {
        len += 1;
    }
    match s.get(len) {
        Some(b',' | b'}') => parse_int_exact(&s[..len]),
        _ => None,
    }
}

/// A decimal i32 spelled exactly by `s` (optional '-', 1 to 10 digits, no overflow).
#[inline]
fn parse_int_exact(s: &[u8]) -> Option<i32> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    i32::try_from(if neg { -v } else { v }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_fast_path_reads_fastjson_headers() {
        let h = br#"{"code":310,"extFields":{"a":"x","i":"KEYS\u0001k\u0002"},"flag":2,"language":"JAVA","opaque":123456,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        assert_eq!(peek_tail(h), Some((310, 2, 123456)));
        let with_remark = br#"{"code":0,"flag":1,"language":"JAVA","opaque":-5,"remark":"a \"b\" \\","serializeTypeCurrentRPC":"JSON","version":479}"#;
        assert_eq!(peek_tail(with_remark), Some((0, 1, -5)));
        // Other layouts are left to the forward scan.
        assert_eq!(peek_tail(br#"{"opaque":1,"flag":0,"code":5}"#), None);
        assert_eq!(
            peek_tail(br#"{"code":5,"extFields":{"flag":"1","opaque":"2"}}"#),
            None
        );
    }
}
