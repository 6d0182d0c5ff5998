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

// ---------------------------------------------------------------------------------------------
// One field, without decoding the header

/// One custom header field (`extFields[key]`), found without decoding the rest of the header:
/// what the relay reads on the frames it labels by topic. `None` when the field is absent or
/// the header around it is malformed (the relay never rejects a frame for this). Borrowed
/// unless the JSON value has escapes.
///
/// A JSON header is searched for `"key"` followed by `:`: inside a JSON string a quote is
/// always escaped, so the pattern cannot match there, and a value equal to the key is
/// followed by `,` or `}`, not `:`. No top-level field of a remoting header shares a name with
/// the extFields keys this is used for (`topic`, `b`, `consumerGroup`, `a`).
pub fn find_ext<'a>(
    header: &'a [u8],
    serialize_type: SerializeType,
    key: &ExtKey,
) -> Option<Cow<'a, str>> {
    match serialize_type {
        SerializeType::Json => find_json_ext(header, key),
        SerializeType::RocketMq => find_binary_ext(header, key.key).map(Cow::Borrowed),
    }
}

/// An extFields key to look for with `find_ext`, its JSON search prepared once (keep it in a
/// static: preparing costs more than a search).
pub struct ExtKey {
    key: &'static str,
    quoted: memchr::memmem::Finder<'static>,
    quoted_len: usize,
}

impl ExtKey {
    pub fn new(key: &'static str) -> Self {
        let quoted = format!("\"{key}\"");
        let quoted_len = quoted.len();
        ExtKey {
            key,
            quoted: memchr::memmem::Finder::new(quoted.as_bytes()).into_owned(),
            quoted_len,
        }
    }
}

fn find_json_ext<'a>(header: &'a [u8], key: &ExtKey) -> Option<Cow<'a, str>> {
    let mut from = 0;
    while let Some(at) = key.quoted.find(&header[from..]) {
        let mut s = Scanner::new_raw(header);
        s.pos = from + at + key.quoted_len;
        s.ws();
        if s.peek() == Some(b':') {
            s.pos += 1;
            s.ws();
            return s.scalar_text("a value").ok().flatten();
        }
        from += at + 1;
    }
    None
}

/// Several fields of a ROCKETMQ (binary) header in one pass over its extFields, each as
/// `find_ext` finds it; a JSON header is searched once per key.
pub fn find_exts<'a, const N: usize>(
    header: &'a [u8],
    serialize_type: SerializeType,
    keys: [&ExtKey; N],
) -> [Option<Cow<'a, str>>; N] {
    match serialize_type {
        SerializeType::Json => keys.map(|k| find_json_ext(header, k)),
        SerializeType::RocketMq => {
            let mut found: [Option<&'a str>; N] = [None; N];
            let whole = for_each_binary_ext(header, |k, v| {
                for (slot, key) in found.iter_mut().zip(keys) {
                    if k == key.key.as_bytes() {
                        *slot = std::str::from_utf8(v).ok(); // the last one wins, as in Java
                    }
                }
            });
            match whole {
                Some(()) => found.map(|f| f.map(Cow::Borrowed)),
                None => [const { None }; N],
            }
        }
    }
}

fn find_binary_ext<'a>(h: &'a [u8], key: &str) -> Option<&'a str> {
    let mut found = None;
    for_each_binary_ext(h, |k, v| {
        if k == key.as_bytes() {
            found = std::str::from_utf8(v).ok(); // the last one wins, as in Java
        }
    })?;
    found
}

/// Calls `f(key, value)` for each extFields entry of a binary header, in order; None if the
/// header is malformed (entries before the fault have been seen).
fn for_each_binary_ext<'a>(h: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let be32 = |at: usize| -> Option<usize> {
        let b = h.get(at..at + 4)?;
        usize::try_from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    // code 2, language 1, version 2, opaque 4, flag 4, then the remark's length and bytes.
    let mut pos: usize = 13;
    pos = pos.checked_add(4)?.checked_add(be32(pos)?)?;
    let ext_len = be32(pos)?;
    pos += 4;
    let end = pos.checked_add(ext_len)?.min(h.len());
    while pos + 2 <= end {
        let klen = usize::from(u16::from_be_bytes([h[pos], h[pos + 1]]));
        let k = h.get(pos + 2..pos + 2 + klen)?;
        pos += 2 + klen;
        let vlen = be32(pos)?;
        let v = h.get(pos + 4..pos.checked_add(4)?.checked_add(vlen)?)?;
        pos += 4 + vlen;
        f(k, v);
    }
    Some(())
}

/// How many records a message-list body holds: a SEND_BATCH_MESSAGE body, or the messages of
/// a PULL_MESSAGE / POP_MESSAGE response. Each record starts with its own total size (4 bytes,
/// big-endian); counting stops at the first size that does not fit.
pub fn count_records(body: &[u8]) -> u64 {
    let mut n = 0;
    let mut pos = 0usize;
    while let Some(b) = body.get(pos..pos + 4) {
        let size = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if size < 4 || size as usize > body.len() - pos {
            break;
        }
        pos += size as usize;
        n += 1;
    }
    n
}

#[cfg(test)]
mod find_tests {
    use super::*;
    use crate::codec::frame::FrameView;
    use crate::codec::RemotingCommand;

    fn header_of(cmd: &RemotingCommand, st: SerializeType) -> Vec<u8> {
        let frame = cmd.encode(st).unwrap();
        let view = FrameView::parse(&frame).unwrap();
        frame[view.header].to_vec()
    }

    #[test]
    fn finds_ext_fields_in_both_encodings() {
        let mut cmd = RemotingCommand::request(310);
        cmd.remark = Some("\"b\":\"not this\"".into());
        for (k, v) in [("a", "b"), ("b", "Orders"), ("i", "x\"b\":\"y"), ("e", "3")] {
            cmd.ext_fields.insert(k.into(), v.into());
        }
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let h = header_of(&cmd, st);
            assert_eq!(
                find_ext(&h, st, &ExtKey::new("b")).as_deref(),
                Some("Orders"),
                "{st:?}"
            );
            assert_eq!(find_ext(&h, st, &ExtKey::new("a")).as_deref(), Some("b"));
            assert_eq!(find_ext(&h, st, &ExtKey::new("e")).as_deref(), Some("3"));
            assert_eq!(find_ext(&h, st, &ExtKey::new("topic")), None);
        }
    }

    #[test]
    fn json_spacing_numbers_and_escapes() {
        let h = br#"{ "code" : 11, "extFields" : { "queueId" : 3, "topic" : "T\u0041" } }"#;
        assert_eq!(
            find_ext(h, SerializeType::Json, &ExtKey::new("topic")).as_deref(),
            Some("TA")
        );
        assert_eq!(
            find_ext(h, SerializeType::Json, &ExtKey::new("queueId")).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn malformed_headers_find_nothing_and_never_panic() {
        for h in [&b""[..], b"{", br#"{"extFields":{"topic":"#, br#""topic""#] {
            assert_eq!(
                find_ext(h, SerializeType::Json, &ExtKey::new("topic")),
                None
            );
        }
        let mut h = header_of(&RemotingCommand::request(11), SerializeType::RocketMq);
        for cut in 0..h.len() {
            let _ = find_ext(&h[..cut], SerializeType::RocketMq, &ExtKey::new("topic"));
        }
        h.extend_from_slice(&[0xff; 8]);
        let _ = find_ext(&h, SerializeType::RocketMq, &ExtKey::new("topic"));
    }

    #[test]
    fn counts_records_until_one_does_not_fit() {
        let mut body = Vec::new();
        for len in [10u32, 20, 4] {
            body.extend_from_slice(&len.to_be_bytes());
            body.resize(body.len() + len as usize - 4, 0);
        }
        assert_eq!(count_records(&body), 3);
        assert_eq!(count_records(&body[..body.len() - 1]), 2);
        assert_eq!(count_records(&[0, 0, 0, 2, 1, 1]), 0);
        assert_eq!(count_records(&[]), 0);
    }
}
