//! Frame splitting and the cheap frame view.
//!
//! Wire layout (big-endian): `length:i32` (counts everything after itself), then
//! `serialize_type:u8 | header_len:u24`, the header, and the body up to the end of the frame.

use std::ops::Range;

use super::error::{FrameError, FrameErrorKind};
use super::json::Scanner;
use super::wire::SerializeType;
pub use super::wire::{DEFAULT_MAX_FRAME_SIZE, FLAG_ONEWAY, FLAG_RESPONSE, PRELUDE_LEN};

/// Length of the next frame at the start of `buf`.
///
/// `Ok(Some(n))`: the first `n` bytes are one whole frame. `Ok(None)`: incomplete, read more.
/// `Err`: the stream is invalid and cannot be resynchronised; close the connection.
#[inline]
pub fn split(buf: &[u8], max_frame_size: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 4 {
        return Err(FrameError::new(
            0,
            FrameErrorKind::LengthBelowMinimum(i64::from(length)),
        ));
    }
    let frame_size = length as usize + 4;
    if frame_size > max_frame_size {
        return Err(FrameError::new(
            0,
            FrameErrorKind::TooLarge {
                frame_size: frame_size as u64,
                max: max_frame_size,
            },
        ));
    }
    if buf.len() >= PRELUDE_LEN {
        // Reject a bad header word as soon as it arrives rather than after buffering the frame.
        check_header_word(buf, frame_size)?;
    }
    if buf.len() < frame_size {
        return Ok(None);
    }
    Ok(Some(frame_size))
}

#[inline]
fn check_header_word(buf: &[u8], frame_size: usize) -> Result<(SerializeType, usize), FrameError> {
    let serialize = match buf[4] {
        0 => SerializeType::Json,
        1 => SerializeType::RocketMq,
        other => {
            return Err(FrameError::new(
                4,
                FrameErrorKind::UnknownSerializeType(other),
            ))
        }
    };
    let header_len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    let available = frame_size - PRELUDE_LEN;
    if header_len > available {
        return Err(FrameError::new(
            5,
            FrameErrorKind::HeaderBeyondFrame {
                header_len,
                available,
            },
        ));
    }
    Ok((serialize, header_len))
}

/// What the relay needs to know about a frame, found without decoding the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameView {
    pub serialize_type: SerializeType,
    pub code: i32,
    pub flag: i32,
    pub opaque: i32,
    /// Byte range of the header within the frame.
    pub header: Range<usize>,
    /// Byte range of the body within the frame.
    pub body: Range<usize>,
}

impl FrameView {
    /// View one whole frame (length prefix included, nothing after it).
    #[inline]
    pub fn parse(frame: &[u8]) -> Result<FrameView, FrameError> {
        if frame.len() < PRELUDE_LEN {
            return Err(FrameError::new(
                0,
                FrameErrorKind::Incomplete {
                    needed: PRELUDE_LEN,
                    available: frame.len(),
                },
            ));
        }
        let length = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if length < 4 {
            return Err(FrameError::new(
                0,
                FrameErrorKind::LengthBelowMinimum(i64::from(length)),
            ));
        }
        let frame_size = length as usize + 4;
        if frame.len() != frame_size {
            let kind = if frame.len() < frame_size {
                FrameErrorKind::Incomplete {
                    needed: frame_size,
                    available: frame.len(),
                }
            } else {
                FrameErrorKind::TrailingBytes(frame.len() - frame_size)
            };
            let offset = frame.len().min(frame_size);
            return Err(FrameError::new(offset, kind));
        }
        let (serialize_type, header_len) = check_header_word(frame, frame_size)?;
        let header = PRELUDE_LEN..PRELUDE_LEN + header_len;
        let body = header.end..frame_size;
        let (code, flag, opaque) = match serialize_type {
            SerializeType::RocketMq => peek_binary(&frame[header.clone()])?,
            SerializeType::Json => peek_json(&frame[header.clone()])?,
        };
        Ok(FrameView {
            serialize_type,
            code,
            flag,
            opaque,
            header,
            body,
        })
    }

    /// Whether bit 0 of `flag` marks this frame as a response.
    #[inline]
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether bit 1 of `flag` marks this request as oneway.
    #[inline]
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }
}

fn peek_binary(h: &[u8]) -> Result<(i32, i32, i32), FrameError> {
    if h.len() < 13 {
        return Err(FrameError::new(
            PRELUDE_LEN + h.len(),
            FrameErrorKind::MalformedBinary(format!(
                "header of {} bytes is too short (expected at least 21)",
                h.len()
            )),
        ));
    }
    let code = i32::from(i16::from_be_bytes([h[0], h[1]]));
    let opaque = i32::from_be_bytes([h[5], h[6], h[7], h[8]]);
    let flag = i32::from_be_bytes([h[9], h[10], h[11], h[12]]);
    Ok((code, flag, opaque))
}

/// Finds the top-level `code`, `flag` and `opaque` of a JSON header without decoding it, in
/// one forward pass that skips every other value (extFields included) without allocating.
///
/// A header that names a top-level key twice is rejected: Java keeps the last value and a
/// reader that kept the first would see another request than the broker does (a policy keyed
/// on the code could be bypassed). The full decoder rejects it too, so both always agree.
fn peek_json(h: &[u8]) -> Result<(i32, i32, i32), FrameError> {
    let mut s = Scanner::new_raw(h);
    let (mut code, mut flag, mut opaque) = (None, None, None);
    // Top-level keys met so far, for the duplicate check (headers have about eight).
    let mut seen: [&[u8]; 16] = [&[]; 16];
    let mut n_seen = 0;
    s.ws();
    s.expect(b'{', "'{' opening the JSON header")?;
    s.ws();
    if s.peek() == Some(b'}') {
        return Err(s.err("field \"code\" (the header has no fields)"));
    }
    loop {
        s.ws();
        let key_at = s.pos;
        let key = s.string_raw()?;
        if key.contains(&b'\\') || n_seen == seen.len() {
            // An escaped key could spell one of ours, and a header of many keys is unusual:
            // let the full decoder settle both.
            return super::header::peek_json_slow(h);
        }
        if seen[..n_seen].contains(&key) {
            return Err(duplicate_key(key_at, key));
        }
        seen[n_seen] = key;
        n_seen += 1;
        s.ws();
        s.expect(b':', "':' after an object key")?;
        s.ws();
        match key {
            b"code" => code = Some(s.int("an integer value for \"code\"")?),
            b"flag" => flag = Some(s.int("an integer value for \"flag\"")?),
            b"opaque" => opaque = Some(s.int("an integer value for \"opaque\"")?),
            _ => s.skip_value(0)?,
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return Err(s.err_back("',' or '}' after a value")),
        }
    }
    match code {
        Some(c) => Ok((c, flag.unwrap_or(0), opaque.unwrap_or(0))),
        None => Err(FrameError::new(
            PRELUDE_LEN,
            FrameErrorKind::MalformedJson("missing field \"code\"".into()),
        )),
    }
}

/// A JSON header that names the top-level key `key` (at header offset `at`) a second time.
pub(crate) fn duplicate_key(at: usize, key: &[u8]) -> FrameError {
    FrameError::new(
        PRELUDE_LEN + at,
        FrameErrorKind::MalformedJson(format!(
            "top-level key {:?} appears twice (ambiguous: the header is rejected)",
            String::from_utf8_lossy(key)
        )),
    )
}

/// Incremental splitter over a byte stream; offsets in its errors count from the stream start.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    consumed: usize,
    max_frame_size: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame_size` bytes (prefix included).
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            consumed: 0,
            max_frame_size,
            failed: None,
        }
    }

    /// The configured frame size limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends `data` and returns every whole frame now available, each with its stream offset.
    ///
    /// After an error the stream cannot be resynchronised: every later call returns it again.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<(usize, Vec<u8>)>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut start = 0;
        loop {
            match split(&self.buf[start..], self.max_frame_size) {
                Ok(Some(n)) => {
                    frames.push((self.consumed + start, self.buf[start..start + n].to_vec()));
                    start += n;
                }
                Ok(None) => break,
                Err(e) => {
                    let e = e.shifted(self.consumed + start);
                    self.buf.drain(..start);
                    self.consumed += start;
                    self.failed = Some(e.clone());
                    if frames.is_empty() {
                        return Err(e);
                    }
                    // Hand over the good frames first; the error surfaces on the next call.
                    return Ok(frames);
                }
            }
        }
        self.buf.drain(..start);
        self.consumed += start;
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(serialize: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
        f.push(serialize);
        f.extend_from_slice(&(header.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(header);
        f.extend_from_slice(body);
        f
    }

    const JAVA_V2: &[u8] = br#"{"code":310,"extFields":{"a":"PG","b":"T","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000000","h":"0","i":"KEYS\u0001k\u0002","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":479}"#;

    #[test]
    fn splits_exact_frame_and_reports_incomplete() {
        let f = frame(0, JAVA_V2, b"hello");
        for cut in 0..f.len() {
            assert_eq!(
                split(&f[..cut], DEFAULT_MAX_FRAME_SIZE),
                Ok(None),
                "cut {cut}"
            );
        }
        assert_eq!(split(&f, DEFAULT_MAX_FRAME_SIZE), Ok(Some(f.len())));
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert_eq!(split(&two, DEFAULT_MAX_FRAME_SIZE), Ok(Some(f.len())));
    }

    #[test]
    fn length_below_four_is_invalid() {
        for n in [-1i32, 0, 3, i32::MIN] {
            let e = split(&n.to_be_bytes(), DEFAULT_MAX_FRAME_SIZE).unwrap_err();
            assert_eq!(e.offset, 0);
            assert_eq!(e.kind, FrameErrorKind::LengthBelowMinimum(i64::from(n)));
            assert!(e.to_string().contains("below 4"), "{e}");
        }
    }

    #[test]
    fn frame_limit_counts_the_prefix() {
        let max = 1024;
        let ok = ((max - 4) as i32).to_be_bytes();
        assert_eq!(split(&ok, max), Ok(None));
        let over = ((max - 3) as i32).to_be_bytes();
        let e = split(&over, max).unwrap_err();
        assert_eq!(
            e.kind,
            FrameErrorKind::TooLarge {
                frame_size: 1025,
                max
            }
        );
        assert!(e
            .to_string()
            .starts_with("byte 0: frame of 1025 bytes exceeds"));
    }

    #[test]
    fn header_beyond_frame_is_invalid_before_the_body_arrives() {
        let mut f = frame(0, b"{}", b"");
        f[7] = 200; // header length 200 in a frame with room for 2
        let e = split(&f[..8], DEFAULT_MAX_FRAME_SIZE).unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(
            e.kind,
            FrameErrorKind::HeaderBeyondFrame {
                header_len: 200,
                available: 2
            }
        );
    }

    #[test]
    fn unknown_serialize_type_is_invalid() {
        let f = frame(7, b"{}", b"");
        let e = split(&f, DEFAULT_MAX_FRAME_SIZE).unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(e.kind, FrameErrorKind::UnknownSerializeType(7));
    }

    #[test]
    fn views_a_java_json_frame() {
        let f = frame(0, JAVA_V2, b"0123456789");
        let v = FrameView::parse(&f).unwrap();
        assert_eq!(v.serialize_type, SerializeType::Json);
        assert_eq!((v.code, v.flag, v.opaque), (310, 0, 42));
        assert_eq!(v.header, 8..8 + JAVA_V2.len());
        assert_eq!(&f[v.body.clone()], b"0123456789");
        assert!(!v.is_response() && !v.is_oneway());
    }

    #[test]
    fn view_ignores_lookalike_keys_inside_strings_and_objects() {
        let h = br#"{"remark":"\"opaque\":5","extFields":{"code":"9","flag":"3"},"code":-7,"flag":3,"opaque":-2147483648}"#;
        let v = FrameView::parse(&frame(0, h, b"")).unwrap();
        assert_eq!((v.code, v.flag, v.opaque), (-7, 3, i32::MIN));
        assert!(v.is_response() && v.is_oneway());
    }

    #[test]
    fn view_handles_remarks_with_escaped_quotes() {
        let h = br#"{"code":1,"extFields":{"k":"v"},"flag":1,"language":"JAVA","opaque":9,"remark":"x\\\",\"opaque\":5","serializeTypeCurrentRPC":"JSON","version":479}"#;
        let v = FrameView::parse(&frame(0, h, b"")).unwrap();
        assert_eq!((v.code, v.flag, v.opaque), (1, 1, 9));
        let c = crate::codec::RemotingCommand::decode(&frame(0, h, b"")).unwrap();
        assert_eq!(c.remark.as_deref(), Some("x\\\",\"opaque\":5"));
    }

    #[test]
    fn a_top_level_key_given_twice_is_rejected_by_the_view_and_the_decoder() {
        let smuggled: [&[u8]; 5] = [
            br#"{"code":34,"code":26,"flag":0,"opaque":1}"#,
            br#"{"code":34,"extFields":{"a":"b"},"flag":0,"opaque":1,"code":26}"#,
            br#"{"code":34,"flag":0,"flag":2,"opaque":1}"#,
            br#"{"code":34,"extFields":{},"extFields":{"topic":"T"}}"#,
            // Escaped: the decoder's unescaping sees "code" twice.
            br#"{"code":34,"c\u006fde":26}"#,
        ];
        for h in smuggled {
            let text = String::from_utf8_lossy(h);
            let e = FrameView::parse(&frame(0, h, b"")).unwrap_err();
            assert!(e.to_string().contains("appears twice"), "{text}: {e}");
            let e = crate::codec::header::decode_json_header(h).unwrap_err();
            assert!(e.to_string().contains("appears twice"), "{text}: {e}");
        }
        // The same key inside extFields is another object: allowed (the last one wins, as in
        // Java's map).
        let ok = br#"{"code":34,"extFields":{"code":"1","code":"2"},"opaque":1}"#;
        assert_eq!(FrameView::parse(&frame(0, ok, b"")).unwrap().code, 34);
    }

    #[test]
    fn view_of_binary_header() {
        let mut h = Vec::new();
        h.extend_from_slice(&105i16.to_be_bytes());
        h.push(0);
        h.extend_from_slice(&479i16.to_be_bytes());
        h.extend_from_slice(&77i32.to_be_bytes());
        h.extend_from_slice(&1i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        let v = FrameView::parse(&frame(1, &h, b"x")).unwrap();
        assert_eq!(v.serialize_type, SerializeType::RocketMq);
        assert_eq!((v.code, v.flag, v.opaque), (105, 1, 77));
    }

    #[test]
    fn view_errors_name_offsets() {
        let e = FrameView::parse(&frame(0, br#"{"code":"x"}"#, b"")).unwrap_err();
        assert_eq!(e.offset, 8 + 8);
        assert!(e.to_string().contains("integer value for \"code\""), "{e}");
        let e = FrameView::parse(&frame(0, br#"{"flag":1}"#, b"")).unwrap_err();
        assert!(e.to_string().contains("missing field \"code\""), "{e}");
        let e = FrameView::parse(&frame(0, br#"{"code":1,"#, b"")).unwrap_err();
        assert_eq!(e.offset, 8 + 10);
        let e = FrameView::parse(&frame(1, &[0; 5], b"")).unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
        let mut f = frame(0, br#"{"code":1}"#, b"");
        f.push(0);
        let e = FrameView::parse(&f).unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::TrailingBytes(1));
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let mut h = b"{\"x\":".to_vec();
        h.extend(std::iter::repeat_n(b'[', 10_000));
        let e = FrameView::parse(&frame(0, &h, b"")).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn decoder_yields_frames_across_arbitrary_chunks() {
        let a = frame(0, JAVA_V2, b"first");
        let b = frame(0, br#"{"code":11,"opaque":2}"#, b"");
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        for chunk in 1..stream.len() {
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                got.extend(d.feed(piece).unwrap());
            }
            assert_eq!(got, vec![(0, a.clone()), (a.len(), b.clone())]);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn decoder_error_offset_is_a_stream_offset_and_sticks() {
        let a = frame(0, br#"{"code":1}"#, b"");
        let mut stream = a.clone();
        stream.extend_from_slice(&2i32.to_be_bytes());
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(d.feed(&stream).unwrap(), vec![(0, a.clone())]);
        let e = d.feed(b"").unwrap_err();
        assert_eq!(e.offset, a.len());
        assert_eq!(d.feed(b"more").unwrap_err(), e);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = split(&data, 1 << 12);
            let _ = FrameView::parse(&data);
            let mut d = FrameDecoder::new(1 << 12);
            let _ = d.feed(&data);
        }

        #[test]
        fn arbitrary_headers_never_panic_the_view(
            ser in 0u8..2,
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let _ = FrameView::parse(&frame(ser, &header, b""));
        }

        #[test]
        fn view_agrees_with_full_decode(cut in 0usize..JAVA_V2.len(), byte in proptest::num::u8::ANY) {
            let mut h = JAVA_V2.to_vec();
            h[cut] = byte;
            let f = frame(0, &h, b"");
            if let (Ok(v), Ok(c)) = (FrameView::parse(&f), crate::codec::RemotingCommand::decode(&f)) {
                proptest::prop_assert_eq!((v.code, v.flag, v.opaque), (c.code, c.flag, c.opaque));
            }
        }

        /// Headers built from the keys that matter, in any order, repeated or escaped: the view
        /// and the full decoder accept the same ones and read the same code, flag and opaque.
        #[test]
        fn view_and_full_decoder_agree_on_any_key_sequence(
            fields in proptest::collection::vec((0usize..8, -3i32..400), 1..7),
        ) {
            let keys = ["code", "flag", "opaque", "remark", "extFields", "version", "c\\u006fde", "opaqu\\u0065"];
            let body: Vec<String> = fields
                .iter()
                .map(|&(k, v)| match keys[k] {
                    "remark" => format!("\"remark\":\"r{v}\""),
                    "extFields" => format!("\"extFields\":{{\"code\":\"{v}\"}}"),
                    key => format!("\"{key}\":{v}"),
                })
                .collect();
            let h = format!("{{{}}}", body.join(","));
            let view = FrameView::parse(&frame(0, h.as_bytes(), b""));
            let full = crate::codec::header::decode_json_header(h.as_bytes());
            proptest::prop_assert_eq!(view.is_ok(), full.is_ok(), "{}", h);
            if let (Ok(v), Ok(c)) = (view, full) {
                proptest::prop_assert_eq!((v.code, v.flag, v.opaque), (c.code, c.flag, c.opaque), "{}", h);
            }
        }

        #[test]
        fn mangled_json_headers_never_panic_the_view(cut in 0usize..JAVA_V2.len(), byte in proptest::num::u8::ANY) {
            let mut h = JAVA_V2.to_vec();
            h[cut] = byte;
            let _ = FrameView::parse(&frame(0, &h, b""));
            let _ = FrameView::parse(&frame(0, &JAVA_V2[..cut], b""));
        }
    }
}
