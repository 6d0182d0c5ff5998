//! The ROCKETMQ (binary) header decoder over arbitrary header bytes.
//!
//! Asserts: the view and the full decode agree on the frame around the header; decode ->
//! encode -> decode gives an equal command in the binary encoding and in JSON, with stable
//! bytes on re-encoding; and a header whose extFields keys are strictly ascending (what the
//! encoder writes) re-encodes to exactly the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::frame::PRELUDE_LEN;
use rmqfast::codec::header::decode_header;
use rmqfast::codec::SerializeType;
use rmqfast_fuzz::{check_encode_round_trip, check_view_agrees, frame_around};

fuzz_target!(|data: &[u8]| {
    check_view_agrees(&frame_around(SerializeType::RocketMq, data, b"body"));
    let Ok(header) = decode_header(data, SerializeType::RocketMq) else {
        return;
    };
    let ascending = header.ext_fields.windows(2).all(|w| w[0].0 < w[1].0);
    let cmd = header.into_owned();
    if ascending {
        let frame = cmd
            .encode(SerializeType::RocketMq)
            .expect("a decoded binary header encodes");
        assert_eq!(
            &frame[PRELUDE_LEN..],
            data,
            "canonical header re-encodes byte for byte"
        );
    }
    check_encode_round_trip(&cmd, SerializeType::RocketMq);
    check_encode_round_trip(&cmd, SerializeType::Json);
});
