//! The JSON header decoder over arbitrary header text.
//!
//! Asserts: the view and the full decode agree on the frame around the header; the decoded
//! header's `ext` (last duplicate wins) matches the owned command's map; and decode ->
//! encode -> decode gives an equal command in JSON and, where int16 holds code and version,
//! in the binary encoding too, with stable bytes on re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::header::decode_header;
use rmqfast::codec::SerializeType;
use rmqfast_fuzz::{check_encode_round_trip, check_view_agrees, frame_around};

fuzz_target!(|data: &[u8]| {
    check_view_agrees(&frame_around(SerializeType::Json, data, b"body"));
    let Ok(header) = decode_header(data, SerializeType::Json) else {
        return;
    };
    let cmd = header.clone().into_owned();
    for (k, _) in &header.ext_fields {
        assert_eq!(
            cmd.ext(k),
            header.ext(k),
            "extFields {k:?}: last value wins"
        );
    }
    assert!(
        cmd.ext_fields.len() <= header.ext_fields.len(),
        "extFields grew"
    );
    check_encode_round_trip(&cmd, SerializeType::Json);
    check_encode_round_trip(&cmd, SerializeType::RocketMq);
});
