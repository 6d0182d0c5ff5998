//! Properties shared by the fuzz targets: the view/full-decode agreement and the command
//! round trip, which the frame and both header targets all check.

use rmqfast::codec::error::FrameErrorKind;
use rmqfast::codec::frame::PRELUDE_LEN;
use rmqfast::codec::header::decode_header;
use rmqfast::codec::{FrameView, LanguageCode, RemotingCommand, SerializeType};

/// A whole frame around raw header bytes: length prefix, header-length word, header, body.
///
/// Only for headers no `RemotingCommand` can produce (the fuzzer's); `RemotingCommand::encode`
/// writes every frame the codec itself sends.
pub fn frame_around(serialize_type: SerializeType, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(PRELUDE_LEN + header.len() + body.len());
    f.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    f.push(serialize_type.code());
    f.extend_from_slice(&(header.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(header);
    f.extend_from_slice(body);
    f
}

/// How a header reads in a panic message: JSON as text, binary as hex.
fn show(serialize_type: SerializeType, header: &[u8]) -> String {
    match serialize_type {
        SerializeType::Json => format!("{:?}", String::from_utf8_lossy(header)),
        SerializeType::RocketMq => format!("{header:02x?}"),
    }
}

/// One truth for the request code: wherever `FrameView::parse` and the full header decode
/// both accept `frame`, they agree on code, flag, opaque and serialize type; the view's
/// ranges tile the frame; and `RemotingCommand::decode` accepts exactly then, with the full
/// decode's fields and the view's body.
pub fn check_view_agrees(frame: &[u8]) {
    let view = match FrameView::parse(frame) {
        Ok(v) => v,
        Err(e) => {
            let decoded = RemotingCommand::decode(frame);
            assert!(
                decoded.is_err(),
                "decode accepted a frame the view rejects ({e}): {decoded:?}"
            );
            return;
        }
    };
    assert_eq!(view.header.start, PRELUDE_LEN, "view header start");
    assert_eq!(
        view.header.end, view.body.start,
        "view header/body boundary"
    );
    assert_eq!(view.body.end, frame.len(), "view body end");
    assert_eq!(view.serialize_type.code(), frame[4], "view serialize type");
    let header = &frame[view.header.clone()];
    let full = decode_header(header, view.serialize_type);
    let decoded = RemotingCommand::decode(frame);
    match full {
        Ok(h) => {
            assert_eq!(
                (view.code, view.flag, view.opaque, view.serialize_type),
                (h.code, h.flag, h.opaque, h.serialize_type),
                "view and full decode disagree (code, flag, opaque, serialize type) on header {}",
                show(view.serialize_type, header)
            );
            let mut want = h.into_owned();
            want.body = frame[view.body.clone()].to_vec();
            match decoded {
                Ok(c) => assert_eq!(c, want, "decode differs from view + header decode"),
                Err(e) => panic!("decode rejects ({e}) a frame the view and header decode accept"),
            }
        }
        Err(e) => assert_eq!(
            decoded,
            Err(e),
            "decode and header decode reject differently"
        ),
    }
}

/// Encodes `cmd` as `serialize_type`, decodes it again and expects `cmd` back (what that
/// encoding cannot carry normalised: an empty binary remark is absent, a language byte Java
/// has no name for is OTHER in JSON); encoding the result again gives the same bytes, and
/// the view agrees with the decode. Binary encoding may refuse only what int16 cannot hold.
pub fn check_encode_round_trip(cmd: &RemotingCommand, serialize_type: SerializeType) {
    let frame = match cmd.encode(serialize_type) {
        Ok(f) => f,
        Err(e) => {
            let beyond_i16 = i16::try_from(cmd.code).is_err()
                || i16::try_from(cmd.version).is_err()
                || cmd.ext_fields.keys().any(|k| k.len() > i16::MAX as usize);
            assert!(
                serialize_type == SerializeType::RocketMq
                    && beyond_i16
                    && matches!(e.kind, FrameErrorKind::Unencodable(_)),
                "{serialize_type:?} encoding failed ({e}) for {cmd:?}"
            );
            return;
        }
    };
    let back = RemotingCommand::decode(&frame).unwrap_or_else(|e| {
        panic!("{serialize_type:?} encoding does not decode ({e}): {cmd:?} -> {frame:02x?}")
    });
    let mut want = cmd.clone();
    want.serialize_type = serialize_type;
    match serialize_type {
        SerializeType::RocketMq => {
            if want.remark.as_deref() == Some("") {
                want.remark = None;
            }
        }
        SerializeType::Json => {
            if want.language.name().is_none() {
                want.language = LanguageCode::OTHER;
            }
        }
    }
    assert_eq!(back, want, "{serialize_type:?} round trip");
    let again = back
        .encode(serialize_type)
        .expect("a decoded command encodes again");
    assert_eq!(again, frame, "{serialize_type:?} re-encoding is not stable");
    check_view_agrees(&frame);
}
