//! `RemotingCommand`: full decode and encode of JSON and ROCKETMQ binary headers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::error::{FrameError, FrameErrorKind};
use super::frame::FrameView;
use super::header::decode_header;
use super::wire::{FLAG_ONEWAY, FLAG_RESPONSE, PRELUDE_LEN};

pub use super::header::HeaderRef;
pub use super::wire::{LanguageCode, SerializeType, DEFAULT_VERSION};

impl<'a> HeaderRef<'a> {
    /// Decodes the header of a frame whose view the caller has.
    pub fn decode(frame: &'a [u8], view: &FrameView) -> Result<HeaderRef<'a>, FrameError> {
        decode_header(&frame[view.header.clone()], view.serialize_type)
    }

    /// An owned command with this header and an empty body.
    pub fn into_owned(self) -> RemotingCommand {
        RemotingCommand {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: self.remark.map(Cow::into_owned),
            ext_fields: self
                .ext_fields
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            body: Vec::new(),
            serialize_type: self.serialize_type,
        }
    }
}

/// One remoting request or response, fully decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    /// Custom header fields, sorted by key as fastjson writes them.
    pub ext_fields: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The encoding the command arrived in (JSON for commands built locally).
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with the given code and an empty header.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            version: DEFAULT_VERSION,
            ..Default::default()
        }
    }

    /// A response to `request`: same opaque, response bit set.
    pub fn response_to(request_opaque: i32, code: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code,
            version: DEFAULT_VERSION,
            opaque: request_opaque,
            flag: FLAG_RESPONSE,
            remark,
            ..Default::default()
        }
    }

    /// Whether bit 0 of `flag` marks this as a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether bit 1 of `flag` marks this request as oneway.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// A custom header field.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// Decodes one whole frame, length prefix included.
    pub fn decode(frame: &[u8]) -> Result<RemotingCommand, FrameError> {
        let view = FrameView::parse(frame)?;
        Self::decode_with_view(frame, &view)
    }

    /// Decodes a frame whose view the caller already has.
    pub fn decode_with_view(frame: &[u8], view: &FrameView) -> Result<RemotingCommand, FrameError> {
        let mut cmd = HeaderRef::decode(frame, view)?.into_owned();
        cmd.body = frame[view.body.clone()].to_vec();
        Ok(cmd)
    }

    /// Encodes the command as one frame with the given header encoding.
    pub fn encode(&self, serialize_type: SerializeType) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(PRELUDE_LEN + 128 + self.body.len());
        out.extend_from_slice(&[0; PRELUDE_LEN]);
        match serialize_type {
            SerializeType::Json => encode_json_header(self, &mut out),
            SerializeType::RocketMq => encode_binary_header(self, &mut out)?,
        }
        let header_len = out.len() - PRELUDE_LEN;
        if header_len > 0x00FF_FFFF {
            return Err(FrameError::new(
                4,
                FrameErrorKind::Unencodable(format!(
                    "header of {header_len} bytes exceeds the 24-bit header length limit"
                )),
            ));
        }
        let length = 4 + header_len + self.body.len();
        let length = i32::try_from(length).map_err(|_| {
            FrameError::new(
                0,
                FrameErrorKind::Unencodable(format!("frame length {length} exceeds int32")),
            )
        })?;
        out[0..4].copy_from_slice(&length.to_be_bytes());
        let word = (u32::from(serialize_type.code()) << 24) | header_len as u32;
        out[4..8].copy_from_slice(&word.to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                // Control characters (0x01 and 0x02 separate message properties) as \u00NN escapes.
                let mut buf = String::with_capacity(6);
                let _ = write!(buf, "\\u{b:04x}");
                out.extend_from_slice(buf.as_bytes());
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_int(out: &mut Vec<u8>, v: i32) {
    let mut buf = itoa_buf(v);
    out.append(&mut buf);
}

fn itoa_buf(v: i32) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Writes the header as fastjson does: keys sorted, `remark` and `extFields` omitted when absent.
fn encode_json_header(cmd: &RemotingCommand, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"code\":");
    push_int(out, cmd.code);
    if !cmd.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_string(out, k);
            out.push(b':');
            push_json_string(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    push_int(out, cmd.flag);
    out.extend_from_slice(b",\"language\":");
    push_json_string(out, cmd.language.name().unwrap_or("OTHER"));
    out.extend_from_slice(b",\"opaque\":");
    push_int(out, cmd.opaque);
    if let Some(remark) = &cmd.remark {
        out.extend_from_slice(b",\"remark\":");
        push_json_string(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    push_int(out, cmd.version);
    out.push(b'}');
}

fn encode_binary_header(cmd: &RemotingCommand, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let unencodable = |m: String| FrameError::new(PRELUDE_LEN, FrameErrorKind::Unencodable(m));
    let code = i16::try_from(cmd.code).map_err(|_| {
        unencodable(format!(
            "code {} does not fit the ROCKETMQ header's int16 (use JSON)",
            cmd.code
        ))
    })?;
    let version = i16::try_from(cmd.version)
        .map_err(|_| unencodable(format!("version {} does not fit int16", cmd.version)))?;
    out.extend_from_slice(&code.to_be_bytes());
    out.push(cmd.language.0);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&cmd.opaque.to_be_bytes());
    out.extend_from_slice(&cmd.flag.to_be_bytes());
    let remark = cmd.remark.as_deref().unwrap_or("");
    out.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    out.extend_from_slice(remark.as_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    for (k, v) in &cmd.ext_fields {
        let key_len = i16::try_from(k.len()).map_err(|_| {
            unencodable(format!("extFields key of {} bytes exceeds int16", k.len()))
        })?;
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let ext_len = (out.len() - len_at - 4) as i32;
    out[len_at..len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> RemotingCommand {
        let mut c = RemotingCommand::request(310);
        c.opaque = 42;
        c.language = LanguageCode::JAVA;
        for (k, v) in [
            ("a", "PG"),
            ("b", "TopicTest"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "1"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", "KEYS\u{1}k1\u{2}TAGS\u{1}t\u{2}"),
            ("n", "broker-a"),
        ] {
            c.ext_fields.insert(k.into(), v.into());
        }
        c.body = b"hello".to_vec();
        c
    }

    #[test]
    fn json_encoding_matches_fastjson_layout() {
        let mut c = RemotingCommand::request(105);
        c.opaque = 7;
        c.ext_fields.insert("topic".into(), "T".into());
        let f = c.encode(SerializeType::Json).unwrap();
        let expected: &[u8] = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        assert_eq!(&f[8..], expected);
        assert_eq!(&f[0..4], &((4 + expected.len()) as i32).to_be_bytes());
        assert_eq!(&f[4..8], &(expected.len() as u32).to_be_bytes());
    }

    #[test]
    fn binary_encoding_byte_vector() {
        let mut c = RemotingCommand::response_to(9, 0, Some("ok".into()));
        c.language = LanguageCode::PYTHON;
        c.version = 479;
        c.ext_fields.insert("k".into(), "vv".into());
        let f = c.encode(SerializeType::RocketMq).unwrap();
        let header: Vec<u8> = [
            &[0x00, 0x00][..], // code 0
            &[3],              // PYTHON
            &[0x01, 0xDF],     // version 479
            &[0, 0, 0, 9],     // opaque
            &[0, 0, 0, 1],     // flag: response
            &[0, 0, 0, 2],
            b"ok",         // remark
            &[0, 0, 0, 9], // extFields length
            &[0, 1],
            b"k",
            &[0, 0, 0, 2],
            b"vv",
        ]
        .concat();
        assert_eq!(&f[8..], &header[..]);
        assert_eq!(f[4], 1);
        let back = RemotingCommand::decode(&f).unwrap();
        assert_eq!(back.remark.as_deref(), Some("ok"));
        assert_eq!(back.ext("k"), Some("vv"));
        assert!(back.is_response());
    }

    #[test]
    fn round_trips_both_encodings() {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let mut c = sample();
            c.serialize_type = st;
            let f = c.encode(st).unwrap();
            assert_eq!(RemotingCommand::decode(&f).unwrap(), c);
        }
    }

    #[test]
    fn json_accepts_numbers_and_unknown_keys() {
        let h = br#"{"code":11,"opaque":3,"flag":2,"language":"GO","extFields":{"queueId":1,"sub":"*","x":true,"y":null},"unknown":[1,{"a":2}],"version":401}"#;
        let mut f = ((4 + h.len()) as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&(h.len() as u32).to_be_bytes());
        f.extend_from_slice(h);
        let c = RemotingCommand::decode(&f).unwrap();
        assert_eq!(c.language.name(), Some("GO"));
        assert_eq!(c.ext("queueId"), Some("1"));
        assert_eq!(c.ext("x"), Some("true"));
        assert_eq!(c.ext("y"), None);
        assert!(c.is_oneway());
    }

    #[test]
    fn binary_duplicate_key_last_wins_and_errors_name_offsets() {
        let mut c = RemotingCommand::request(10);
        c.ext_fields.insert("a".into(), "1".into());
        let mut f = c.encode(SerializeType::RocketMq).unwrap();
        // Duplicate the single entry by hand: header grows by its 8 bytes.
        let entry = [&[0u8, 1][..], b"a", &[0, 0, 0, 1], b"2"].concat();
        f.extend_from_slice(&entry);
        let hl = f.len() - 8;
        f[0..4].copy_from_slice(&((hl + 4) as i32).to_be_bytes());
        f[5..8].copy_from_slice(&(hl as u32).to_be_bytes()[1..]);
        let ext_len_at = 8 + 17;
        let old = i32::from_be_bytes(f[ext_len_at..ext_len_at + 4].try_into().unwrap());
        f[ext_len_at..ext_len_at + 4].copy_from_slice(&(old + 8).to_be_bytes());
        assert_eq!(RemotingCommand::decode(&f).unwrap().ext("a"), Some("2"));

        // A remark length beyond the header.
        let mut bad = RemotingCommand::request(10)
            .encode(SerializeType::RocketMq)
            .unwrap();
        bad[8 + 13..8 + 17].copy_from_slice(&1000i32.to_be_bytes());
        let e = RemotingCommand::decode(&bad).unwrap_err();
        assert_eq!(e.offset, 8 + 17);
        assert!(e.to_string().contains("remark needs 1000 bytes"), "{e}");
    }

    #[test]
    fn malformed_json_names_offset() {
        let h = br#"{"code":1,"extFields":{"a":}}"#;
        let mut f = ((4 + h.len()) as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&(h.len() as u32).to_be_bytes());
        f.extend_from_slice(h);
        let e = RemotingCommand::decode(&f).unwrap_err();
        assert!(matches!(e.kind, FrameErrorKind::MalformedJson(_)), "{e}");
        assert!(e.to_string().starts_with("byte "), "{e}");
    }

    #[test]
    fn binary_refuses_codes_beyond_int16() {
        let c = RemotingCommand::request(200050);
        let e = c.encode(SerializeType::RocketMq).unwrap_err();
        assert!(e.to_string().contains("int16"), "{e}");
        assert!(c.encode(SerializeType::Json).is_ok());
    }

    fn any_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..14,
            any::<i16>(),
            any::<i32>(),
            any::<i32>(),
            proptest::option::of("[^\u{0}]{1,20}"),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", "\\PC{0,24}", 0..8),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(code, lang, version, opaque, flag, remark, ext, body)| {
                RemotingCommand {
                    code: i32::from(code),
                    language: LanguageCode(lang),
                    version: i32::from(version),
                    opaque,
                    flag,
                    remark,
                    ext_fields: ext,
                    body,
                    serialize_type: SerializeType::Json,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(mut c in any_command(), binary in any::<bool>()) {
            let st = if binary { SerializeType::RocketMq } else { SerializeType::Json };
            c.serialize_type = st;
            let f = c.encode(st).unwrap();
            let v = FrameView::parse(&f).unwrap();
            prop_assert_eq!((v.code, v.flag, v.opaque), (c.code, c.flag, c.opaque));
            prop_assert_eq!(RemotingCommand::decode(&f).unwrap(), c);
        }

        #[test]
        fn arbitrary_frames_never_panic_decode(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RemotingCommand::decode(&data);
        }

        #[test]
        fn arbitrary_binary_headers_never_panic(h in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut f = ((4 + h.len()) as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&(0x0100_0000u32 | h.len() as u32).to_be_bytes());
            f.extend_from_slice(&h);
            let _ = RemotingCommand::decode(&f);
        }
    }
}
