//! What the producer puts on the wire per message: UNIQ_KEY ids, property strings and
//! SEND_BATCH_MESSAGE bodies split below the broker's message size limit.
//!
//! Batch bodies are written straight into one buffer (no per-message allocation); request
//! boundaries are recorded as ranges of that buffer, so each request body is a cheap slice.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::message::{BatchRecord, MessageErrorKind};
use crate::codec::properties::{
    push_property, push_property_with, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, UNIQ_KEY, WAIT,
};

/// Fixed bytes of a batch record: totalSize, magic, bodyCRC, flag, bodyLen, propsLen.
pub const BATCH_RECORD_OVERHEAD: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Longest topic name RocketMQ accepts (Validators.TOPIC_MAX_LENGTH).
pub const TOPIC_MAX_LENGTH: usize = 127;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xF)]);
    }
}

/// Random bits without a dependency: std's SipHash keys are drawn from the OS per process.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Epoch milliseconds at 00:00 UTC on the first day of the month holding `ms`.
pub fn month_start_ms(ms: u64) -> u64 {
    const DAY: u64 = 86_400_000;
    let days = ms / DAY;
    // Howard Hinnant's civil_from_days, only as far as the day of the month.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    (days - (day_of_month as u64 - 1)) * DAY
}

/// Client message ids (UNIQ_KEY) laid out as Java's MessageClientIDSetter does: 16 bytes as 32
/// uppercase hex digits: IPv4 (4), pid (2), a per-producer random word (4, Java's class
/// loader hash), milliseconds since the start of the month (4) and a counter (2).
#[derive(Debug)]
pub struct UniqIdGen {
    prefix: [u8; 20],
    counter: AtomicU32,
}

impl UniqIdGen {
    /// A generator for this host address and process.
    pub fn new(ip: [u8; 4]) -> Self {
        let mut raw = Vec::with_capacity(10);
        raw.extend_from_slice(&ip);
        raw.extend_from_slice(&(std::process::id() as u16).to_be_bytes());
        let r = random_u64();
        raw.extend_from_slice(&(r as u32).to_be_bytes());
        let mut hex = Vec::with_capacity(20);
        push_hex(&mut hex, &raw);
        let mut prefix = [0u8; 20];
        prefix.copy_from_slice(&hex);
        UniqIdGen {
            prefix,
            counter: AtomicU32::new((r >> 32) as u32),
        }
    }

    /// Appends a fresh 32-character id for a message born at `now_ms`.
    pub fn write(&self, now_ms: u64, out: &mut Vec<u8>) {
        let since_month = now_ms.saturating_sub(month_start_ms(now_ms)) as u32;
        let n = self.counter.fetch_add(1, Ordering::Relaxed) as u16;
        out.extend_from_slice(&self.prefix);
        push_hex(out, &since_month.to_be_bytes());
        push_hex(out, &n.to_be_bytes());
    }

    /// A fresh id as a String.
    pub fn next_id(&self, now_ms: u64) -> String {
        let mut v = Vec::with_capacity(32);
        self.write(now_ms, &mut v);
        // Only hex digits were written.
        String::from_utf8(v).unwrap_or_default()
    }
}

/// Why a message cannot be sent as given (RocketMQ answers these with MESSAGE_ILLEGAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage {
    /// Index of the message in its batch (0 for a single send).
    pub index: usize,
    pub reason: String,
}

/// Checks a topic name as Java's Validators.checkTopic does.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic: must not be empty".into());
    }
    if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "topic: {} characters, at most {TOPIC_MAX_LENGTH} allowed",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "topic: {topic:?} contains {c:?}; only letters, digits, '%', '|', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks a property name and value can be encoded and decoded back.
pub fn validate_property(name: &str, value: &str) -> Result<(), String> {
    let bad = |s: &str| {
        s.as_bytes()
            .iter()
            .any(|&b| b == NAME_VALUE_SEPARATOR as u8 || b == PROPERTY_SEPARATOR as u8)
    };
    if name.is_empty() {
        return Err("property names must not be empty".into());
    }
    if bad(name) || bad(value) {
        return Err(format!(
            "property {name:?} contains a 0x01 or 0x02 byte, which RocketMQ uses as a separator"
        ));
    }
    Ok(())
}

/// One message for SEND_MESSAGE_V2, ready to go: the body and the encoded properties, which
/// include a UNIQ_KEY and WAIT=true.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: Bytes,
    pub properties: String,
    /// The UNIQ_KEY (SendResult.msg_id).
    pub uniq_id: String,
}

impl Message {
    /// Builds a message: user properties first, then KEYS and TAGS (which override user
    /// entries of the same name), then WAIT and UNIQ_KEY unless the user gave them.
    pub fn build<'a, I>(
        ids: &UniqIdGen,
        body: Bytes,
        keys: Option<&str>,
        tags: Option<&str>,
        properties: I,
    ) -> Result<Message, String>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        use crate::codec::properties::{KEYS, TAGS};
        if body.is_empty() {
            return Err("the body is empty".into());
        }
        let mut out = Vec::with_capacity(96);
        let mut has_wait = false;
        let mut uniq: Option<String> = None;
        for (name, value) in properties {
            validate_property(name, value)?;
            if (name == KEYS && keys.is_some()) || (name == TAGS && tags.is_some()) {
                continue;
            }
            has_wait |= name == WAIT;
            if name == UNIQ_KEY && !value.is_empty() {
                uniq = Some(value.to_owned());
            }
            push_property(&mut out, name, value.as_bytes());
        }
        for (name, value) in [(KEYS, keys), (TAGS, tags)] {
            if let Some(v) = value {
                validate_property(name, v)?;
                push_property(&mut out, name, v.as_bytes());
            }
        }
        if !has_wait {
            push_property(&mut out, WAIT, b"true");
        }
        let uniq_id = match uniq {
            Some(u) => u,
            None => {
                let at = push_property_with(&mut out, UNIQ_KEY, |out| ids.write(now_ms(), out));
                String::from_utf8_lossy(&out[at]).into_owned()
            }
        };
        let properties = String::from_utf8(out).map_err(|e| e.to_string())?;
        if properties.len() > i16::MAX as usize {
            return Err(format!(
                "properties encode to {} bytes, at most {} allowed",
                properties.len(),
                i16::MAX
            ));
        }
        Ok(Message {
            body,
            properties,
            uniq_id,
        })
    }
}

/// One SEND_BATCH_MESSAGE request's share of an encoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChunk {
    /// Byte range of the request body within `EncodedBatch::buf`.
    pub body: Range<usize>,
    /// Index range of its messages within the caller's list.
    pub messages: Range<usize>,
    /// The UNIQ_KEYs of its messages joined by commas (Java's MessageBatch msgId).
    pub uniq_ids: String,
}

/// A batch encoded once, split into requests whose bodies stay within the size limit.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub buf: Bytes,
    pub chunks: Vec<BatchChunk>,
}

impl EncodedBatch {
    /// The body of chunk `i` (a slice of the shared buffer, no copy).
    pub fn chunk_body(&self, i: usize) -> Bytes {
        self.buf.slice(self.chunks[i].body.clone())
    }

    /// Number of messages in the batch.
    pub fn message_count(&self) -> usize {
        self.chunks.last().map(|c| c.messages.end).unwrap_or(0)
    }
}

/// Writes batch records (MessageDecoder.encodeMessage layout) into one buffer and cuts it into
/// requests of at most `max_body` bytes each.
#[derive(Debug)]
pub struct BatchEncoder<'g> {
    ids: &'g UniqIdGen,
    max_body: usize,
    buf: Vec<u8>,
    chunks: Vec<BatchChunk>,
    chunk_start: usize,
    chunk_first_msg: usize,
    uniq_ids: String,
    count: usize,
    now_ms: u64,
}

impl<'g> BatchEncoder<'g> {
    /// An encoder for request bodies of at most `max_body` bytes; `size_hint` pre-sizes the buffer.
    pub fn new(ids: &'g UniqIdGen, max_body: usize, size_hint: usize) -> Self {
        BatchEncoder {
            ids,
            max_body,
            buf: Vec::with_capacity(size_hint),
            chunks: Vec::new(),
            chunk_start: 0,
            chunk_first_msg: 0,
            uniq_ids: String::new(),
            count: 0,
            now_ms: now_ms(),
        }
    }

    /// Appends one message: its body and user properties; a UNIQ_KEY is added unless given.
    /// WAIT travels once in the request header, which the broker appends to every message.
    pub fn push<'a, I>(&mut self, body: &[u8], properties: I) -> Result<(), InvalidMessage>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let index = self.count;
        let invalid = |reason: String| InvalidMessage { index, reason };
        if body.is_empty() {
            return Err(invalid("the body is empty".into()));
        }
        let record_start = self.buf.len();
        let record = BatchRecord::begin(&mut self.buf, 0, body);
        let mut uniq: Option<Range<usize>> = None;
        let mut result = Ok(());
        for (name, value) in properties {
            if let Err(e) = validate_property(name, value) {
                result = Err(e);
                break;
            }
            let at = push_property(&mut self.buf, name, value.as_bytes());
            if name == UNIQ_KEY && !value.is_empty() {
                uniq = Some(at);
            }
        }
        if let Err(e) = result {
            self.buf.truncate(record_start);
            return Err(invalid(e));
        }
        let uniq = match uniq {
            Some(r) => r,
            None => push_property_with(&mut self.buf, UNIQ_KEY, |out| {
                self.ids.write(self.now_ms, out)
            }),
        };
        let total = match record.finish(&mut self.buf) {
            Ok(total) => total,
            Err(MessageErrorKind::TooLong { field, len, max }) => {
                return Err(invalid(format!(
                    "{field} encode to {len} bytes, at most {max} allowed"
                )));
            }
            Err(other) => return Err(invalid(format!("{other:?}"))),
        };
        if total > self.max_body {
            self.buf.truncate(record_start);
            return Err(invalid(format!(
                "the message encodes to {total} bytes, more than max_message_size ({})",
                self.max_body
            )));
        }

        if self.buf.len() - self.chunk_start > self.max_body {
            self.close_chunk(record_start);
        }
        if !self.uniq_ids.is_empty() {
            self.uniq_ids.push(',');
        }
        // UNIQ_KEY bytes came from a &str or from hex digits.
        self.uniq_ids
            .push_str(std::str::from_utf8(&self.buf[uniq]).unwrap_or_default());
        self.count += 1;
        Ok(())
    }

    fn close_chunk(&mut self, end: usize) {
        self.chunks.push(BatchChunk {
            body: self.chunk_start..end,
            messages: self.chunk_first_msg..self.count,
            uniq_ids: std::mem::take(&mut self.uniq_ids),
        });
        self.chunk_start = end;
        self.chunk_first_msg = self.count;
    }

    /// Messages pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded batch; empty input gives no chunks.
    pub fn finish(mut self) -> EncodedBatch {
        if self.buf.len() > self.chunk_start {
            let end = self.buf.len();
            self.close_chunk(end);
        }
        EncodedBatch {
            buf: Bytes::from(self.buf),
            chunks: self.chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::message::decode_batch;
    use crate::codec::properties::{find_property, KEYS};

    fn ids() -> UniqIdGen {
        UniqIdGen::new([127, 0, 0, 1])
    }

    #[test]
    fn month_start() {
        // 2024-03-15T12:34:56.789Z -> 2024-03-01T00:00:00Z
        assert_eq!(month_start_ms(1_710_506_096_789), 1_709_251_200_000);
        // 2024-02-29T23:59:59.999Z (leap day) -> 2024-02-01
        assert_eq!(month_start_ms(1_709_251_199_999), 1_706_745_600_000);
        // exactly at a month start
        assert_eq!(month_start_ms(1_709_251_200_000), 1_709_251_200_000);
        assert_eq!(month_start_ms(0), 0);
    }

    #[test]
    fn uniq_ids_are_32_hex_and_distinct() {
        let g = ids();
        let a = g.next_id(1_710_506_096_789);
        let b = g.next_id(1_710_506_096_789);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        assert_ne!(a, b);
        assert!(a.starts_with("7F000001"));
        assert_eq!(&a[..24], &b[..24]);
        // ms since month start: 14 days 12:34:56.789 = 1_254_896_789 = 0x4ACC_3495
        assert_eq!(&a[20..28], "4ACC3495");
    }

    #[test]
    fn topic_validation() {
        assert!(validate_topic("T_1-a%b|c").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a b").unwrap_err().contains("' '"));
        assert!(validate_topic(&"x".repeat(128)).is_err());
        assert!(validate_topic(&"x".repeat(127)).is_ok());
    }

    #[test]
    fn message_properties() {
        let g = ids();
        let m = Message::build(
            &g,
            Bytes::from_static(b"hi"),
            Some("k1 k2"),
            Some("tagA"),
            [("a", "1"), ("KEYS", "ignored")],
        )
        .unwrap();
        assert_eq!(find_property(&m.properties, KEYS), Some("k1 k2"));
        assert_eq!(find_property(&m.properties, "TAGS"), Some("tagA"));
        assert_eq!(find_property(&m.properties, "WAIT"), Some("true"));
        assert_eq!(find_property(&m.properties, "a"), Some("1"));
        assert_eq!(
            find_property(&m.properties, UNIQ_KEY),
            Some(m.uniq_id.as_str())
        );
        assert!(!m.properties.contains("ignored"));
        assert_eq!(m.uniq_id.len(), 32);

        let body = Bytes::from_static(b"x");
        let m = Message::build(&g, body.clone(), None, None, [("UNIQ_KEY", "MINE")]).unwrap();
        assert_eq!(m.uniq_id, "MINE");
        assert_eq!(m.properties.matches("UNIQ_KEY").count(), 1);
        assert!(Message::build(&g, body.clone(), None, None, [("a", "x\u{2}y")]).is_err());
        assert!(Message::build(&g, Bytes::new(), None, None, []).is_err());
    }

    fn encode(max: usize, bodies: &[usize]) -> EncodedBatch {
        let g = ids();
        let mut e = BatchEncoder::new(&g, max, 0);
        for (i, &n) in bodies.iter().enumerate() {
            let body = vec![b'a' + (i % 26) as u8; n];
            e.push(&body, [("KEYS", "k")]).unwrap();
        }
        e.finish()
    }

    /// Size of one record with a 1-character KEYS value and a generated UNIQ_KEY.
    fn record_len(body: usize) -> usize {
        BATCH_RECORD_OVERHEAD + body + "KEYS\u{1}k\u{2}".len() + "UNIQ_KEY\u{1}\u{2}".len() + 32
    }

    #[test]
    fn batch_round_trips_through_the_codec() {
        let b = encode(1 << 20, &[3, 5, 7]);
        assert_eq!(b.chunks.len(), 1);
        let decoded = decode_batch(&b.chunk_body(0)).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1].body, b"bbbbb");
        assert_eq!(decoded[2].property("KEYS"), Some("k"));
        let ids: Vec<&str> = b.chunks[0].uniq_ids.split(',').collect();
        assert_eq!(ids.len(), 3);
        for (m, id) in decoded.iter().zip(&ids) {
            assert_eq!(m.property(UNIQ_KEY), Some(*id));
        }
    }

    #[test]
    fn batch_split_boundaries() {
        let r = record_len(100);
        // Exactly at the limit: one request.
        let b = encode(3 * r, &[100, 100, 100]);
        assert_eq!(b.chunks.len(), 1);
        assert_eq!(b.chunks[0].body, 0..3 * r);
        // One byte under: the third message starts a second request.
        let b = encode(3 * r - 1, &[100, 100, 100]);
        assert_eq!(b.chunks.len(), 2);
        assert_eq!(b.chunks[0].body, 0..2 * r);
        assert_eq!(b.chunks[0].messages, 0..2);
        assert_eq!(b.chunks[1].body, 2 * r..3 * r);
        assert_eq!(b.chunks[1].messages, 2..3);
        for (i, c) in b.chunks.iter().enumerate() {
            let decoded = decode_batch(&b.chunk_body(i)).unwrap();
            assert_eq!(decoded.len(), c.messages.len());
            assert_eq!(c.uniq_ids.split(',').count(), c.messages.len());
        }
        // A single message exactly at the limit is fine; one byte over is refused.
        let b = encode(record_len(100), &[100]);
        assert_eq!(b.chunks.len(), 1);
        let g = ids();
        let mut e = BatchEncoder::new(&g, record_len(100), 0);
        e.push(&[1u8; 100], [("KEYS", "k")]).unwrap();
        let err = e.push(&[1u8; 101], [("KEYS", "k")]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.reason.contains("max_message_size"), "{}", err.reason);
        // The refused message left nothing behind.
        let b = e.finish();
        assert_eq!(b.buf.len(), record_len(100));
        assert_eq!(b.message_count(), 1);
    }

    #[test]
    fn batch_many_chunks_cover_everything() {
        let bodies: Vec<usize> = (0..500).map(|i| 1 + (i * 37) % 900).collect();
        let b = encode(8 * 1024, &bodies);
        assert!(b.chunks.len() > 10);
        let mut next = 0;
        let mut msgs = 0;
        for (i, c) in b.chunks.iter().enumerate() {
            assert_eq!(c.body.start, next);
            assert!(c.body.len() <= 8 * 1024);
            next = c.body.end;
            assert_eq!(c.messages.start, msgs);
            msgs = c.messages.end;
            assert_eq!(
                decode_batch(&b.chunk_body(i)).unwrap().len(),
                c.messages.len()
            );
        }
        assert_eq!(next, b.buf.len());
        assert_eq!(msgs, 500);
    }

    #[test]
    fn batch_rejects_empty_body_and_bad_properties() {
        let g = ids();
        let mut e = BatchEncoder::new(&g, 1 << 20, 0);
        assert!(e.push(b"", []).is_err());
        assert!(e.push(b"x", [("a\u{1}", "v")]).is_err());
        assert!(e.is_empty());
        assert_eq!(e.finish().chunks.len(), 0);
    }
}
