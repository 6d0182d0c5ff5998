//! Header decoding: JSON and ROCKETMQ headers into a `HeaderRef` that borrows from the frame.

use std::borrow::Cow;

use super::error::{FrameError, FrameErrorKind};
use super::json::Scanner;
use super::wire::{LanguageCode, SerializeType, PRELUDE_LEN};

/// A decoded header borrowing from its frame: every field, no copies unless a JSON string
/// has escapes. What the data path uses when it must read a header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<Cow<'a, str>>,
    /// Custom header fields in wire order; a repeated key is resolved by `ext` (last wins).
    pub ext_fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub serialize_type: SerializeType,
}

impl<'a> HeaderRef<'a> {
    pub(crate) fn empty(serialize_type: SerializeType) -> Self {
        HeaderRef {
            code: 0,
            language: LanguageCode::JAVA,
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: Vec::with_capacity(16),
            serialize_type,
        }
    }

    /// A custom header field (the last one when a key repeats).
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Decodes a header (the bytes after the prelude) in the given encoding.
pub fn decode_header(
    header: &[u8],
    serialize_type: SerializeType,
) -> Result<HeaderRef<'_>, FrameError> {
    match serialize_type {
        SerializeType::Json => decode_json_header(header),
        SerializeType::RocketMq => decode_binary_header(header),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON headers

pub(crate) fn decode_json_header(header: &[u8]) -> Result<HeaderRef<'_>, FrameError> {
    let mut s = Scanner::new(header);
    let mut out = HeaderRef::empty(SerializeType::Json);
    let mut code = None;
    s.ws();
    s.expect(b'{', "'{' opening the JSON header")?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        let mut seen: Vec<Cow<'_, str>> = Vec::with_capacity(8);
        loop {
            s.ws();
            let key_at = s.pos;
            let key = s.string()?;
            // Java keeps a repeated key's last value; the view would see its first: reject.
            if seen.contains(&key) {
                return Err(super::frame::duplicate_key(key_at, key.as_bytes()));
            }
            seen.push(key.clone());
            s.ws();
            s.expect(b':', "':' after an object key")?;
            s.ws();
            let is_null = s.h[s.pos..].starts_with(b"null");
            match key.as_ref() {
                _ if is_null => s.pos += 4,
                "code" => code = Some(s.int("an integer value for \"code\"")?),
                "flag" => out.flag = s.int("an integer value for \"flag\"")?,
                "opaque" => out.opaque = s.int("an integer value for \"opaque\"")?,
                "version" => out.version = s.int("an integer value for \"version\"")?,
                "language" => {
                    let name = s.string()?;
                    // Java decodes an unknown name as null; keep what we can say about it.
                    out.language = LanguageCode::from_name(&name).unwrap_or(LanguageCode::OTHER);
                }
                "remark" => out.remark = Some(s.string()?),
                "extFields" => decode_ext_fields(&mut s, &mut out.ext_fields)?,
                _ => s.skip_value(0)?,
            }
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(s.err_back("',' or '}' after a value")),
            }
        }
    }
    s.end()?;
    out.code = code.ok_or_else(|| {
        FrameError::new(
            PRELUDE_LEN,
            FrameErrorKind::MalformedJson("missing field \"code\"".into()),
        )
    })?;
    Ok(out)
}

/// extFields values as strings; other SDKs send numbers and booleans, which Java accepts too.
fn decode_ext_fields<'a>(
    s: &mut Scanner<'a>,
    out: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
) -> Result<(), FrameError> {
    s.expect(b'{', "'{' opening extFields")?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
        return Ok(());
    }
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.expect(b':', "':' after an extFields key")?;
        s.ws();
        if let Some(v) = s.scalar_text("a string, number, boolean or null extFields value")? {
            out.push((key, v));
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => return Ok(()),
            _ => return Err(s.err_back("',' or '}' in extFields")),
        }
    }
}

/// The view's fallback when a key carries escapes: decode fully, keep three fields.
pub(crate) fn peek_json_slow(header: &[u8]) -> Result<(i32, i32, i32), FrameError> {
    let c = decode_json_header(header)?;
    Ok((c.code, c.flag, c.opaque))
}

// ---------------------------------------------------------------------------------------------
// ROCKETMQ binary headers

struct Reader<'a> {
    h: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, at: usize, msg: String) -> FrameError {
        FrameError::new(PRELUDE_LEN + at, FrameErrorKind::MalformedBinary(msg))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        let remaining = self.h.len() - self.pos;
        if n > remaining {
            return Err(self.err(
                self.pos,
                format!("{what} needs {n} bytes but only {remaining} remain in the header"),
            ));
        }
        let s = &self.h[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i16(&mut self, what: &str) -> Result<i16, FrameError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, FrameError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, len: i64, what: &str) -> Result<&'a str, FrameError> {
        let at = self.pos;
        if len < 0 {
            return Err(self.err(at, format!("{what} length {len} is negative")));
        }
        let bytes = self.take(len as usize, what)?;
        std::str::from_utf8(bytes)
            .map_err(|e| self.err(at + e.valid_up_to(), format!("{what} is not UTF-8")))
    }
}

fn decode_binary_header(h: &[u8]) -> Result<HeaderRef<'_>, FrameError> {
    let mut r = Reader { h, pos: 0 };
    let code = i32::from(r.i16("code")?);
    let language = LanguageCode(r.take(1, "language")?[0]);
    let version = i32::from(r.i16("version")?);
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.i32("remark length")?;
    let remark = match remark_len {
        0 => None,
        n => Some(Cow::Borrowed(r.string(i64::from(n), "remark")?)),
    };
    let ext_len_at = r.pos;
    let ext_len = r.i32("extFields length")?;
    if ext_len < 0 || ext_len as usize > h.len() - r.pos {
        return Err(r.err(
            ext_len_at,
            format!(
                "extFields length {ext_len} is outside the {} bytes left in the header",
                h.len() - r.pos
            ),
        ));
    }
    let ext_end = r.pos + ext_len as usize;
    let mut ext_fields = Vec::with_capacity(16);
    while r.pos < ext_end {
        let key_len = r.i16("extFields key length")?;
        let key = r.string(i64::from(key_len), "extFields key")?;
        let val_len = r.i32("extFields value length")?;
        let value = r.string(i64::from(val_len), "extFields value")?;
        if r.pos > ext_end {
            return Err(r.err(
                ext_end,
                format!("extFields entry {key:?} runs past the extFields length {ext_len}"),
            ));
        }
        // FastCodesHeader writers may repeat a key; the last one wins, as in Java.
        ext_fields.push((Cow::Borrowed(key), Cow::Borrowed(value)));
    }
    if r.pos != h.len() {
        return Err(r.err(
            r.pos,
            format!("{} unexpected bytes after extFields", h.len() - r.pos),
        ));
    }
    Ok(HeaderRef {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
    })
}
