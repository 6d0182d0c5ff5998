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
