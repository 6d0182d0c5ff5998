//! Stored-message records (pull/pop/check-transaction bodies) and SEND_BATCH_MESSAGE bodies.
//!
//! Asserts, for whatever decodes:
//! - batch: encode -> decode gives the same messages, and encoding is a fixed point;
//! - stored: the inflated bodies stay within the budget; every message re-encodes (body
//!   uncompressed) to a record that decodes to the same message, with only what the encoder
//!   defines differently (store size recomputed, COMPRESSED cleared, V2 magic for a topic
//!   longer than 127 bytes); all records concatenated decode as one body; re-encoding the
//!   result gives the same bytes; the offset message id is 16 or 28 bytes of upper hex.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::message::{
    decode_batch, decode_messages_with_limit, encode_batch, encode_message_ext_into, sys_flag,
    MessageErrorKind, MessageExt, MAGIC_V2,
};

/// Inflate budget: small, so a decompression bomb costs the fuzzer little.
const INFLATE_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    check_batch(data);
    check_stored(data);
});

fn check_batch(data: &[u8]) {
    let Ok(msgs) = decode_batch(data) else {
        return;
    };
    let bytes = match encode_batch(&msgs) {
        Ok(b) => b,
        Err(e) => {
            // Invalid UTF-8 in properties grows by replacement characters on decode.
            assert!(
                matches!(
                    e.kind,
                    MessageErrorKind::TooLong {
                        field: "properties",
                        ..
                    }
                ),
                "batch re-encoding failed: {e}"
            );
            return;
        }
    };
    let back = decode_batch(&bytes).unwrap_or_else(|e| panic!("re-encoded batch: {e}"));
    assert_eq!(back, msgs, "batch round trip");
    assert_eq!(
        encode_batch(&back).unwrap(),
        bytes,
        "batch encoding is stable"
    );
}

fn check_stored(data: &[u8]) {
    let Ok(msgs) = decode_messages_with_limit(data, INFLATE_LIMIT) else {
        return;
    };
    let total: usize = msgs.iter().map(|m| m.body.len()).sum();
    assert!(
        total <= INFLATE_LIMIT + data.len(),
        "{total} body bytes from {} input bytes",
        data.len()
    );
    let mut encoded = Vec::new();
    let mut want = Vec::with_capacity(msgs.len());
    for m in &msgs {
        let id = m.offset_msg_id();
        assert!(
            (id.len() == 32 || id.len() == 56)
                && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
            "offset message id {id:?}"
        );
        let _ = m.msg_id();
        let start = encoded.len();
        if let Err(e) = encode_message_ext_into(m, &mut encoded) {
            assert!(
                matches!(e.kind, MessageErrorKind::TooLong { .. }),
                "stored re-encoding failed: {e}"
            );
            assert_eq!(encoded.len(), start, "a failed encoding wrote bytes");
            return;
        }
        want.push(expected_after_encode(m, encoded.len() - start));
    }
    let back = decode_messages_with_limit(&encoded, INFLATE_LIMIT)
        .unwrap_or_else(|e| panic!("re-encoded records: {e}"));
    assert_eq!(back, want, "stored round trip");
    let mut again = Vec::new();
    for m in &back {
        encode_message_ext_into(m, &mut again).unwrap();
    }
    assert_eq!(again, encoded, "stored encoding is stable");
}

/// `m` as it decodes after `encode_message_ext` wrote it in `size` bytes.
fn expected_after_encode(m: &MessageExt, size: usize) -> MessageExt {
    let mut w = m.clone();
    w.store_size = size as i32;
    // Set on a record with an empty body, which is not inflated; the encoder never sets it.
    w.sys_flag &= !sys_flag::COMPRESSED;
    if m.topic.len() > i8::MAX as usize {
        w.magic = MAGIC_V2;
    }
    w
}
