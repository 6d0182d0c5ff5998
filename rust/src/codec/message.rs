//! Message layouts (MessageDecoder.java): the SEND_BATCH_MESSAGE body and the stored-message
//! records that pull, pop and check-transaction bodies carry.
//!
//! Decoding is strict where Java is merely lucky: record sizes must match their fields, lengths
//! must be non-negative and fit, and inflated bodies share a byte budget, so a hostile body gives
//! a `MessageError` naming the byte rather than a panic, a silent skip or a zip bomb.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::properties::{self, decode_properties, encode_properties, find_property};

/// Magic code of a stored message whose topic length is one byte.
pub const MAGIC_V1: i32 = -626843481;
/// Magic code of a stored message whose topic length is two bytes (topics over 127 bytes).
pub const MAGIC_V2: i32 = -626843477;
/// Default budget for all bodies inflated by one `decode_messages` call.
pub const DEFAULT_MAX_INFLATED: usize = 64 << 20;

/// Bits of a message's `sysFlag` (MessageSysFlag.java).
pub mod sys_flag {
    /// The body is compressed with the type in `COMPRESSION_MASK`.
    pub const COMPRESSED: i32 = 0x1;
    /// Tags hold several values.
    pub const MULTI_TAGS: i32 = 0x2;
    /// Transaction state mask.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// Half message of a transaction.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// Committed transaction message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// Rolled-back transaction message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// The born host is IPv6 (16 address bytes).
    pub const BORN_HOST_V6: i32 = 0x10;
    /// The store host is IPv6 (16 address bytes).
    pub const STORE_HOST_V6: i32 = 0x20;
    /// The message wraps an inner batch that must be unwrapped.
    pub const NEED_UNWRAP: i32 = 0x40;
    /// Inner-batch message.
    pub const INNER_BATCH: i32 = 0x80;
    /// Compression type mask (bits 8..=10).
    pub const COMPRESSION_MASK: i32 = 0x700;
    /// LZ4 frame compression.
    pub const COMPRESSION_LZ4: i32 = 0x100;
    /// Zstandard compression.
    pub const COMPRESSION_ZSTD: i32 = 0x200;
    /// zlib compression (a type of 0 also means zlib).
    pub const COMPRESSION_ZLIB: i32 = 0x300;
}

/// Which layout an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A record of a SEND_BATCH_MESSAGE body.
    Batch,
    /// A stored-message record.
    Stored,
}

/// What was wrong; `MessageError` adds where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageErrorKind {
    /// A field runs past the end of its record or of the buffer.
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    /// The record's size field is below the minimum or larger than what remains.
    BadRecordSize {
        field: &'static str,
        size: i64,
        min: usize,
        remaining: usize,
    },
    /// The record's fields end before or after the size its size field declares.
    SizeMismatch {
        field: &'static str,
        declared: usize,
        actual: usize,
    },
    /// The magic code is neither V1 nor V2.
    UnknownMagic(i32),
    /// A length field is negative.
    NegativeLength { field: &'static str, value: i64 },
    /// A host's port is outside 0..=65535.
    BadPort { field: &'static str, port: i32 },
    /// The compression type bits name no known codec.
    UnknownCompression(i32),
    /// The compressed body does not decompress.
    Decompress { codec: &'static str, reason: String },
    /// Inflating would exceed the byte budget.
    InflateLimit { codec: &'static str, limit: usize },
    /// A value is too long for its length field (encoding only).
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

/// An invalid or unencodable message: the layout, the record's start, the byte at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    /// Which layout was being read or written.
    pub layout: Layout,
    /// Byte offset of the record's first byte (for encoding: the message's index).
    pub record: usize,
    /// Byte offset of the field at fault (for encoding: the message's index).
    pub offset: usize,
    /// What was wrong.
    pub kind: MessageErrorKind,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.layout {
            Layout::Batch => "batch message",
            Layout::Stored => "stored message",
        };
        if let MessageErrorKind::TooLong { field, len, max } = &self.kind {
            return write!(
                f,
                "cannot encode {what} {}: {field} is {len} bytes (expected at most {max})",
                self.record
            );
        }
        write!(f, "{what} at offset {}: ", self.record)?;
        let at = self.offset;
        match &self.kind {
            MessageErrorKind::Truncated {
                field,
                needed,
                available,
            } => write!(
                f,
                "{field} at offset {at} needs {needed} bytes but only {available} remain"
            ),
            MessageErrorKind::BadRecordSize {
                field,
                size,
                min,
                remaining,
            } => {
                if *size < *min as i64 {
                    write!(
                        f,
                        "{field} {size} is below the minimum record size of {min}"
                    )
                } else {
                    write!(f, "{field} {size} exceeds the {remaining} remaining bytes")
                }
            }
            MessageErrorKind::SizeMismatch {
                field,
                declared,
                actual,
            } => write!(
                f,
                "{field} says {declared} bytes but the fields end after {actual} bytes"
            ),
            MessageErrorKind::UnknownMagic(m) => write!(
                f,
                "unknown magic code {:#010X} at offset {at} (expected {:#010X} or {:#010X})",
                *m as u32, MAGIC_V1 as u32, MAGIC_V2 as u32
            ),
            MessageErrorKind::NegativeLength { field, value } => write!(
                f,
                "{field} {value} at offset {at} is negative (expected a length >= 0)"
            ),
            MessageErrorKind::BadPort { field, port } => {
                write!(f, "{field} port {port} at offset {at} is outside 0..=65535")
            }
            MessageErrorKind::UnknownCompression(t) => write!(
                f,
                "unknown compression type {t} in sysFlag at offset {at} \
                 (expected 0 or 3 zlib, 1 LZ4, 2 zstd)"
            ),
            MessageErrorKind::Decompress { codec, reason } => {
                write!(
                    f,
                    "{codec} body at offset {at} does not decompress: {reason}"
                )
            }
            MessageErrorKind::InflateLimit { codec, limit } => write!(
                f,
                "{codec} body at offset {at} inflates past the limit of {limit} bytes"
            ),
            MessageErrorKind::TooLong { .. } => Ok(()),
        }
    }
}

impl std::error::Error for MessageError {}

/// Bounds-checked big-endian reader over one record.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    record: usize,
    layout: Layout,
}

impl<'a> Reader<'a> {
    fn err(&self, offset: usize, kind: MessageErrorKind) -> MessageError {
        MessageError {
            layout: self.layout,
            record: self.record,
            offset,
            kind,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        let available = self.end - self.pos;
        if n > available {
            return Err(self.err(
                self.pos,
                MessageErrorKind::Truncated {
                    field,
                    needed: n,
                    available,
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, MessageError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, MessageError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A length prefix of the given signed width, rejected when negative.
    fn len(&mut self, width: usize, field: &'static str) -> Result<usize, MessageError> {
        let at = self.pos;
        let v = match width {
            1 => i64::from(self.array::<1>(field)?[0] as i8),
            2 => i64::from(self.i16(field)?),
            _ => i64::from(self.i32(field)?),
        };
        usize::try_from(v)
            .map_err(|_| self.err(at, MessageErrorKind::NegativeLength { field, value: v }))
    }

    fn host(&mut self, v6: bool, field: &'static str) -> Result<SocketAddr, MessageError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?))
        };
        let at = self.pos;
        let port = self.i32(field)?;
        let port = u16::try_from(port)
            .map_err(|_| self.err(at, MessageErrorKind::BadPort { field, port }))?;
        Ok(SocketAddr::new(ip, port))
    }
}

/// Reads the leading size field of a record and bounds the reader to it.
fn open_record<'a>(
    buf: &'a [u8],
    start: usize,
    layout: Layout,
    field: &'static str,
    min: usize,
) -> Result<Reader<'a>, MessageError> {
    let mut r = Reader {
        buf,
        pos: start,
        end: buf.len(),
        record: start,
        layout,
    };
    let size = r.i32(field)?;
    let remaining = buf.len() - start;
    if size < min as i32 || size as usize > remaining {
        return Err(r.err(
            start,
            MessageErrorKind::BadRecordSize {
                field,
                size: i64::from(size),
                min,
                remaining,
            },
        ));
    }
    r.end = start + size as usize;
    Ok(r)
}

/// Fails unless the fields ended exactly where the size field said.
fn close_record(r: &Reader<'_>, field: &'static str) -> Result<(), MessageError> {
    if r.pos != r.end {
        return Err(r.err(
            r.record,
            MessageErrorKind::SizeMismatch {
                field,
                declared: r.end - r.record,
                actual: r.pos - r.record,
            },
        ));
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> String {
    // Java decodes with replacement characters, so invalid UTF-8 is not an error there either.
    String::from_utf8_lossy(bytes).into_owned()
}

/// One message of a SEND_BATCH_MESSAGE body: only flag, body and properties travel per message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchMessage {
    /// The free-form int32 flag.
    pub flag: i32,
    /// The body, as given.
    pub body: Vec<u8>,
    /// Encoded properties (`name 0x01 value 0x02`...); see `properties`.
    pub properties: String,
}

impl BatchMessage {
    /// A message with this body, properties and flag 0.
    pub fn new(body: impl Into<Vec<u8>>, properties: impl Into<String>) -> Self {
        BatchMessage {
            flag: 0,
            body: body.into(),
            properties: properties.into(),
        }
    }

    /// The value of one property, as Java would read it.
    pub fn property(&self, name: &str) -> Option<&str> {
        find_property(&self.properties, name)
    }
}

/// Fixed bytes of a batch record: totalSize, magic, bodyCRC, flag, bodyLen, propsLen.
const BATCH_FIXED: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// One SEND_BATCH_MESSAGE record being written (MessageDecoder.encodeMessages): the one owner
/// of the record layout, used by `encode_batch` and by the producer, which writes properties
/// (and generated ids) straight into the buffer between `begin` and `finish`.
///
/// Layout: totalSize:i32 = 22 + bodyLen + propsLen, magic:i32 = 0, bodyCRC:i32 = 0 (as Java's
/// client writes them; the broker ignores both), flag:i32, bodyLen:i32, body,
/// propsLen:i16, properties.
#[derive(Debug)]
pub struct BatchRecord {
    start: usize,
    props_len_at: usize,
}

impl BatchRecord {
    /// Appends the record's fixed fields and body to `out`; the properties go next.
    pub fn begin(out: &mut Vec<u8>, flag: i32, body: &[u8]) -> BatchRecord {
        let start = out.len();
        out.reserve(BATCH_FIXED + body.len());
        out.extend_from_slice(&[0; 8]); // totalSize (patched by `finish`), magic
        out.extend_from_slice(&0i32.to_be_bytes()); // bodyCRC
        out.extend_from_slice(&flag.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        let props_len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        BatchRecord {
            start,
            props_len_at,
        }
    }

    /// Patches propsLen and totalSize and returns the record's length. A field too long for
    /// its length field is an error, and the record is removed from `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<usize, MessageErrorKind> {
        let props_len = out.len() - self.props_len_at - 2;
        let total = out.len() - self.start;
        let fail = |out: &mut Vec<u8>, field, len, max| {
            out.truncate(self.start);
            Err(MessageErrorKind::TooLong { field, len, max })
        };
        if props_len > i16::MAX as usize {
            return fail(out, "properties", props_len, i16::MAX as usize);
        }
        if total > i32::MAX as usize {
            let body_len = total - BATCH_FIXED - props_len;
            return fail(
                out,
                "body",
                body_len,
                i32::MAX as usize - BATCH_FIXED - props_len,
            );
        }
        out[self.props_len_at..self.props_len_at + 2]
            .copy_from_slice(&(props_len as i16).to_be_bytes());
        out[self.start..self.start + 4].copy_from_slice(&(total as i32).to_be_bytes());
        Ok(total)
    }
}

/// Encodes a SEND_BATCH_MESSAGE body: one `BatchRecord` per message.
pub fn encode_batch(messages: &[BatchMessage]) -> Result<Vec<u8>, MessageError> {
    let total: usize = messages
        .iter()
        .map(|m| BATCH_FIXED + m.body.len() + m.properties.len())
        .sum();
    let mut out = Vec::with_capacity(total);
    for (i, m) in messages.iter().enumerate() {
        let record = BatchRecord::begin(&mut out, m.flag, &m.body);
        out.extend_from_slice(m.properties.as_bytes());
        record.finish(&mut out).map_err(|kind| MessageError {
            layout: Layout::Batch,
            record: i,
            offset: i,
            kind,
        })?;
    }
    Ok(out)
}

/// Decodes a SEND_BATCH_MESSAGE body; magic and bodyCRC are ignored, as the broker does.
pub fn decode_batch(body: &[u8]) -> Result<Vec<BatchMessage>, MessageError> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let mut r = open_record(body, start, Layout::Batch, "totalSize", BATCH_FIXED)?;
        r.take(8, "magic and bodyCRC")?;
        let flag = r.i32("flag")?;
        let body_len = r.len(4, "bodyLen")?;
        let msg_body = r.take(body_len, "body")?.to_vec();
        let props_len = r.len(2, "propertiesLength")?;
        let props = utf8(r.take(props_len, "properties")?);
        close_record(&r, "totalSize")?;
        out.push(BatchMessage {
            flag,
            body: msg_body,
            properties: props,
        });
        start = r.end;
    }
    Ok(out)
}

/// A stored message as pull, pop and check-transaction bodies carry it (MessageExt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// Record size in bytes, as read (recomputed on encode).
    pub store_size: i32,
    /// `MAGIC_V1` or `MAGIC_V2`.
    pub magic: i32,
    /// CRC32 of the stored body, masked to 31 bits (see `body_crc`).
    pub body_crc: i32,
    /// Queue id.
    pub queue_id: i32,
    /// The producer's free-form flag.
    pub flag: i32,
    /// Offset within the consume queue.
    pub queue_offset: i64,
    /// Physical offset in the commit log.
    pub commit_log_offset: i64,
    /// `sys_flag` bits; `COMPRESSED` is cleared once the body is inflated, as Java does.
    pub sys_flag: i32,
    /// Producer time, epoch ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker store time, epoch ms.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Times the message was redelivered.
    pub reconsume_times: i32,
    /// Commit-log offset of the half message, for transaction messages.
    pub prepared_transaction_offset: i64,
    /// The body, inflated.
    pub body: Vec<u8>,
    /// Topic.
    pub topic: String,
    /// Properties in first-seen order (a repeated name keeps its last value).
    pub properties: Vec<(String, String)>,
}

impl Default for MessageExt {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        MessageExt {
            store_size: 0,
            magic: MAGIC_V1,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: unspecified,
            store_timestamp: 0,
            store_host: unspecified,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Vec::new(),
            topic: String::new(),
            properties: Vec::new(),
        }
    }
}

impl MessageExt {
    /// The value of one property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The TAGS property.
    pub fn tags(&self) -> Option<&str> {
        self.property(properties::TAGS)
    }

    /// The KEYS property (several keys are separated by a space).
    pub fn keys(&self) -> Option<&str> {
        self.property(properties::KEYS)
    }

    /// The UNIQ_KEY property: the client-generated message id.
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(properties::UNIQ_KEY)
    }

    /// The offset message id: store IP (4 or 16 bytes), port, commit-log offset, in upper hex.
    pub fn offset_msg_id(&self) -> String {
        let mut raw = [0u8; 28];
        let mut n = 0;
        // Java turns a 16-byte IPv4-mapped store host into an Inet4Address, writes only its 4
        // bytes and still returns the 28-byte buffer, leaving 12 zero bytes at the end.
        let ip_len = if self.sys_flag & sys_flag::STORE_HOST_V6 != 0 {
            16
        } else {
            4
        };
        match self.store_host.ip() {
            IpAddr::V4(ip) => {
                raw[..4].copy_from_slice(&ip.octets());
                n += 4;
            }
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => {
                    raw[..4].copy_from_slice(&v4.octets());
                    n += 4;
                }
                None => {
                    raw[..16].copy_from_slice(&ip.octets());
                    n += 16;
                }
            },
        }
        raw[n..n + 4].copy_from_slice(&u32::from(self.store_host.port()).to_be_bytes());
        raw[n + 4..n + 12].copy_from_slice(&self.commit_log_offset.to_be_bytes());
        let len = (n + 12).max(ip_len + 12);
        hex_upper(&raw[..len])
    }

    /// The id a Java consumer shows as msgId: UNIQ_KEY if present, else the offset message id.
    pub fn msg_id(&self) -> String {
        match self.uniq_key() {
            Some(k) => k.to_owned(),
            None => self.offset_msg_id(),
        }
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xF)] as char);
    }
    s
}

/// CRC32 of a body as the broker stores it (UtilAll.crc32: masked to 31 bits).
pub fn body_crc(body: &[u8]) -> i32 {
    let mut crc = flate2::Crc::new();
    crc.update(body);
    (crc.sum() & 0x7FFF_FFFF) as i32
}

/// Fixed bytes of a stored record with IPv4 hosts and empty body, topic and properties (V1).
const STORED_MIN: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;

/// Decodes the stored-message records of a pull, pop or check-transaction body.
pub fn decode_messages(body: &[u8]) -> Result<Vec<MessageExt>, MessageError> {
    decode_messages_with_limit(body, DEFAULT_MAX_INFLATED)
}

/// Like `decode_messages`, with `max_inflated` bytes allowed for all inflated bodies together.
pub fn decode_messages_with_limit(
    body: &[u8],
    max_inflated: usize,
) -> Result<Vec<MessageExt>, MessageError> {
    let mut out = Vec::new();
    let mut budget = max_inflated;
    let mut start = 0;
    while start < body.len() {
        let (msg, end) = decode_one(body, start, &mut budget)?;
        out.push(msg);
        start = end;
    }
    Ok(out)
}

fn decode_one(
    buf: &[u8],
    start: usize,
    budget: &mut usize,
) -> Result<(MessageExt, usize), MessageError> {
    let mut r = open_record(buf, start, Layout::Stored, "storeSize", STORED_MIN)?;
    let store_size = (r.end - start) as i32;
    let magic_at = r.pos;
    let magic = r.i32("magic")?;
    let topic_len_width = match magic {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        other => return Err(r.err(magic_at, MessageErrorKind::UnknownMagic(other))),
    };
    let body_crc = r.i32("bodyCRC")?;
    let queue_id = r.i32("queueId")?;
    let flag = r.i32("flag")?;
    let queue_offset = r.i64("queueOffset")?;
    let commit_log_offset = r.i64("commitLogOffset")?;
    let sys_flag_at = r.pos;
    let mut sys_flag = r.i32("sysFlag")?;
    let born_timestamp = r.i64("bornTimestamp")?;
    let born_host = r.host(sys_flag & sys_flag::BORN_HOST_V6 != 0, "bornHost")?;
    let store_timestamp = r.i64("storeTimestamp")?;
    let store_host = r.host(sys_flag & sys_flag::STORE_HOST_V6 != 0, "storeHost")?;
    let reconsume_times = r.i32("reconsumeTimes")?;
    let prepared_transaction_offset = r.i64("preparedTransactionOffset")?;
    let body_len = r.len(4, "bodyLength")?;
    let body_at = r.pos;
    let raw_body = r.take(body_len, "body")?;
    let body = if sys_flag & sys_flag::COMPRESSED != 0 && !raw_body.is_empty() {
        let codec = match (sys_flag & sys_flag::COMPRESSION_MASK) >> 8 {
            0 | 3 => Codec::Zlib,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            t => return Err(r.err(sys_flag_at, MessageErrorKind::UnknownCompression(t))),
        };
        let inflated = inflate(codec, raw_body, *budget).map_err(|kind| r.err(body_at, kind))?;
        *budget -= inflated.len();
        sys_flag &= !sys_flag::COMPRESSED;
        inflated
    } else {
        raw_body.to_vec()
    };
    let topic_len = r.len(topic_len_width, "topicLength")?;
    let topic = utf8(r.take(topic_len, "topic")?);
    let props_len = r.len(2, "propertiesLength")?;
    let props = decode_properties(&String::from_utf8_lossy(r.take(props_len, "properties")?));
    close_record(&r, "storeSize")?;
    let msg = MessageExt {
        store_size,
        magic,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties: props,
    };
    Ok((msg, r.end))
}

#[derive(Clone, Copy)]
enum Codec {
    Zlib,
    Lz4,
    Zstd,
}

/// Inflates `data`, failing once the output would exceed `limit` bytes.
fn inflate(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, MessageErrorKind> {
    let (name, result) = match codec {
        // Java's ZlibCompressor uses InflaterInputStream: zlib framing, not raw deflate.
        Codec::Zlib => (
            "zlib",
            read_capped(flate2::read::ZlibDecoder::new(data), limit),
        ),
        // Java's Lz4Compressor uses lz4-java's LZ4FrameOutputStream: the standard LZ4 frame.
        Codec::Lz4 => (
            "LZ4",
            read_capped(lz4_flex::frame::FrameDecoder::new(data), limit),
        ),
        Codec::Zstd => (
            "zstd",
            zstd::stream::read::Decoder::with_buffer(data).and_then(|d| read_capped(d, limit)),
        ),
    };
    match result {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(MessageErrorKind::InflateLimit { codec: name, limit }),
        Err(e) => Err(MessageErrorKind::Decompress {
            codec: name,
            reason: e.to_string(),
        }),
    }
}

/// Reads to the end, or `None` if there is more than `limit` bytes.
fn read_capped(reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

/// Encodes one stored-message record with the body uncompressed.
///
/// `sys_flag` is fixed to match: `COMPRESSED` is cleared and the two IPv6 bits follow the
/// hosts. `store_size` is recomputed; V2 is used when `magic` says so or the topic needs it.
pub fn encode_message_ext(msg: &MessageExt) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::new();
    encode_message_ext_into(msg, &mut out)?;
    Ok(out)
}

/// Appends one stored-message record to `out` (see `encode_message_ext`).
pub fn encode_message_ext_into(msg: &MessageExt, out: &mut Vec<u8>) -> Result<(), MessageError> {
    let too_long = |field, len, max| MessageError {
        layout: Layout::Stored,
        record: 0,
        offset: 0,
        kind: MessageErrorKind::TooLong { field, len, max },
    };
    let props = encode_properties(&msg.properties);
    if props.len() > i16::MAX as usize {
        return Err(too_long("properties", props.len(), i16::MAX as usize));
    }
    if msg.topic.len() > i16::MAX as usize {
        return Err(too_long("topic", msg.topic.len(), i16::MAX as usize));
    }
    let v2 = msg.magic == MAGIC_V2 || msg.topic.len() > i8::MAX as usize;
    let host_len = |h: &SocketAddr| if h.is_ipv6() { 16 } else { 4 };
    let fixed =
        STORED_MIN - 8 + host_len(&msg.born_host) + host_len(&msg.store_host) + usize::from(v2);
    let max_body = i32::MAX as usize - fixed - msg.topic.len() - props.len();
    if msg.body.len() > max_body {
        return Err(too_long("body", msg.body.len(), max_body));
    }
    let size = fixed + msg.body.len() + msg.topic.len() + props.len();

    let mut sys_flag =
        msg.sys_flag & !(sys_flag::COMPRESSED | sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if msg.born_host.is_ipv6() {
        sys_flag |= sys_flag::BORN_HOST_V6;
    }
    if msg.store_host.is_ipv6() {
        sys_flag |= sys_flag::STORE_HOST_V6;
    }
    let put_host = |out: &mut Vec<u8>, h: &SocketAddr| {
        match h.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&i32::from(h.port()).to_be_bytes());
    };

    out.reserve(size);
    out.extend_from_slice(&(size as i32).to_be_bytes());
    out.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    out.extend_from_slice(&msg.body_crc.to_be_bytes());
    out.extend_from_slice(&msg.queue_id.to_be_bytes());
    out.extend_from_slice(&msg.flag.to_be_bytes());
    out.extend_from_slice(&msg.queue_offset.to_be_bytes());
    out.extend_from_slice(&msg.commit_log_offset.to_be_bytes());
    out.extend_from_slice(&sys_flag.to_be_bytes());
    out.extend_from_slice(&msg.born_timestamp.to_be_bytes());
    put_host(out, &msg.born_host);
    out.extend_from_slice(&msg.store_timestamp.to_be_bytes());
    put_host(out, &msg.store_host);
    out.extend_from_slice(&msg.reconsume_times.to_be_bytes());
    out.extend_from_slice(&msg.prepared_transaction_offset.to_be_bytes());
    out.extend_from_slice(&(msg.body.len() as i32).to_be_bytes());
    out.extend_from_slice(&msg.body);
    if v2 {
        out.extend_from_slice(&(msg.topic.len() as i16).to_be_bytes());
    } else {
        out.push(msg.topic.len() as u8);
    }
    out.extend_from_slice(msg.topic.as_bytes());
    out.extend_from_slice(&(props.len() as i16).to_be_bytes());
    out.extend_from_slice(props.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    #[test]
    fn batch_of_two_exact_bytes() {
        let msgs = vec![
            BatchMessage {
                flag: 7,
                body: b"hi".to_vec(),
                properties: "a\u{1}b\u{2}".into(),
            },
            BatchMessage::new(Vec::new(), ""),
        ];
        let bytes = encode_batch(&msgs).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0, 0, 0, 28,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 7,  // size 22+2+4, magic, crc, flag
            0, 0, 0, 2,  b'h', b'i',                             // body
            0, 4,  b'a', 1, b'b', 2,                             // properties
            0, 0, 0, 22,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
            0, 0, 0, 0,
            0, 0,
        ];
        assert_eq!(bytes, want);
        assert_eq!(decode_batch(&bytes).unwrap(), msgs);
        assert_eq!(msgs[0].property("a"), Some("b"));
        assert_eq!(decode_batch(&[]).unwrap(), vec![]);
    }

    #[test]
    fn batch_errors_name_the_offset() {
        let mut bytes = encode_batch(&[BatchMessage::new(b"x".to_vec(), "")]).unwrap();
        bytes[3] = 24;
        bytes.push(0);
        assert_eq!(
            decode_batch(&bytes).unwrap_err().to_string(),
            "batch message at offset 0: totalSize says 24 bytes but the fields end after 23 bytes"
        );
        let mut bytes = encode_batch(&[BatchMessage::new(b"x".to_vec(), "")]).unwrap();
        bytes[16] = 0xFF;
        assert_eq!(
            decode_batch(&bytes).unwrap_err().to_string(),
            "batch message at offset 0: bodyLen -16777215 at offset 16 is negative \
             (expected a length >= 0)"
        );
        let ok = encode_batch(&[BatchMessage::new(b"abc".to_vec(), "k\u{1}v\u{2}")]).unwrap();
        let two = [ok.clone(), ok.clone()].concat();
        for cut in 1..two.len() {
            if cut == ok.len() {
                continue;
            }
            let err = decode_batch(&two[..cut]).unwrap_err();
            assert!(err.to_string().contains("offset"), "{err}");
            assert_eq!(err.record, if cut > ok.len() { ok.len() } else { 0 });
        }
        let err = decode_batch(&two[..ok.len() + 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch message at offset 29: totalSize at offset 29 needs 4 bytes but only 3 remain"
        );
    }

    #[test]
    fn batch_encode_rejects_long_properties() {
        let m = BatchMessage::new(Vec::new(), "x".repeat(40000));
        assert_eq!(
            encode_batch(&[BatchMessage::default(), m])
                .unwrap_err()
                .to_string(),
            "cannot encode batch message 1: properties is 40000 bytes (expected at most 32767)"
        );
    }

    /// Builds a stored record field by field, independently of the encoder.
    fn stored_v1_ipv4() -> Vec<u8> {
        let props = b"UNIQ_KEY\x01AC110001000018B4AAC2\x02TAGS\x01tg\x02KEYS\x01k1 k2\x02";
        let mut b = Vec::new();
        let size =
            4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 5 + 1 + 5 + 2 + props.len();
        b.extend_from_slice(&(size as i32).to_be_bytes());
        b.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // MAGIC_V1
        b.extend_from_slice(&123i32.to_be_bytes()); // bodyCRC
        b.extend_from_slice(&3i32.to_be_bytes()); // queueId
        b.extend_from_slice(&9i32.to_be_bytes()); // flag
        b.extend_from_slice(&42i64.to_be_bytes()); // queueOffset
        b.extend_from_slice(&0x1234_5678i64.to_be_bytes()); // commitLogOffset
        b.extend_from_slice(&0i32.to_be_bytes()); // sysFlag
        b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // bornTimestamp
        b.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0xD4, 0x31]); // bornHost 10.0.0.1:54321
        b.extend_from_slice(&1_700_000_000_123i64.to_be_bytes()); // storeTimestamp
        b.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0x2A, 0x9F]); // storeHost 127.0.0.1:10911
        b.extend_from_slice(&2i32.to_be_bytes()); // reconsumeTimes
        b.extend_from_slice(&0i64.to_be_bytes()); // preparedTransactionOffset
        b.extend_from_slice(&5i32.to_be_bytes());
        b.extend_from_slice(b"hello");
        b.push(5);
        b.extend_from_slice(b"Topic");
        b.extend_from_slice(&(props.len() as i16).to_be_bytes());
        b.extend_from_slice(props);
        assert_eq!(b.len(), size);
        b
    }

    #[test]
    fn stored_v1_ipv4_fields() {
        let bytes = stored_v1_ipv4();
        let msgs = decode_messages(&bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.store_size as usize, bytes.len());
        assert_eq!(m.magic, MAGIC_V1);
        assert_eq!((m.body_crc, m.queue_id, m.flag), (123, 3, 9));
        assert_eq!((m.queue_offset, m.commit_log_offset), (42, 0x1234_5678));
        assert_eq!(m.born_host, "10.0.0.1:54321".parse().unwrap());
        assert_eq!(m.store_host, "127.0.0.1:10911".parse().unwrap());
        assert_eq!(m.born_timestamp, 1_700_000_000_000);
        assert_eq!(m.store_timestamp, 1_700_000_000_123);
        assert_eq!(m.reconsume_times, 2);
        assert_eq!(m.body, b"hello");
        assert_eq!(m.topic, "Topic");
        assert_eq!(m.tags(), Some("tg"));
        assert_eq!(m.keys(), Some("k1 k2"));
        assert_eq!(m.uniq_key(), Some("AC110001000018B4AAC2"));
        assert_eq!(m.msg_id(), "AC110001000018B4AAC2");
        assert_eq!(m.offset_msg_id(), "7F00000100002A9F0000000012345678");
        assert_eq!(encode_message_ext(m).unwrap(), bytes);
    }

    #[test]
    fn stored_v2_ipv6_fields() {
        let mut b = Vec::new();
        let size = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 20 + 8 + 20 + 4 + 8 + 4 + 2 + 2 + 3 + 2;
        b.extend_from_slice(&(size as i32).to_be_bytes());
        b.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xAB]); // MAGIC_V2
        b.extend_from_slice(&[0; 12]); // bodyCRC, queueId, flag
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&0x0102_0304_0506i64.to_be_bytes());
        b.extend_from_slice(&0x34i32.to_be_bytes()); // both hosts v6 + TRANSACTION_PREPARED
        b.extend_from_slice(&1i64.to_be_bytes());
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&80i32.to_be_bytes());
        b.extend_from_slice(&2i64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&10911i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&99i64.to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"hi");
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(b"T6x");
        b.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(b.len(), size);
        let m = &decode_messages(&b).unwrap()[0];
        assert_eq!(m.magic, MAGIC_V2);
        assert_eq!(m.born_host, "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(m.store_host, "[::1]:10911".parse().unwrap());
        assert_eq!(m.sys_flag, 0x34);
        assert_eq!(m.prepared_transaction_offset, 99);
        assert_eq!((m.body.as_slice(), m.topic.as_str()), (&b"hi"[..], "T6x"));
        assert!(m.properties.is_empty());
        assert_eq!(m.msg_id(), m.offset_msg_id());
        assert_eq!(
            m.offset_msg_id(),
            "0000000000000000000000000000000100002A9F0000010203040506"
        );
        assert_eq!(encode_message_ext(m).unwrap(), b);
    }

    #[test]
    fn offset_msg_id_keeps_javas_ipv4_mapped_quirk() {
        let m = MessageExt {
            store_host: "[::ffff:127.0.0.1]:10911".parse().unwrap(),
            sys_flag: sys_flag::STORE_HOST_V6,
            commit_log_offset: 1,
            ..Default::default()
        };
        assert_eq!(
            m.offset_msg_id(),
            "7F00000100002A9F0000000000000001000000000000000000000000"
        );
    }

    fn compressed(codec: i32, body: &[u8]) -> Vec<u8> {
        let packed = match codec {
            sys_flag::COMPRESSION_LZ4 => {
                // lz4-java's LZ4FrameOutputStream defaults: 4 MiB independent blocks, no checksums.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max4MB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                enc.write_all(body).unwrap();
                let out = enc.finish().unwrap();
                assert_eq!(out[..6], [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70]);
                out
            }
            sys_flag::COMPRESSION_ZSTD => zstd::encode_all(body, 5).unwrap(),
            _ => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
                enc.write_all(body).unwrap();
                enc.finish().unwrap()
            }
        };
        let m = MessageExt {
            body: packed,
            topic: "T".into(),
            ..Default::default()
        };
        let mut bytes = encode_message_ext(&m).unwrap();
        // sysFlag lives at offset 36; the encoder clears COMPRESSED, so set it by hand.
        bytes[36..40].copy_from_slice(&(sys_flag::COMPRESSED | codec).to_be_bytes());
        bytes
    }

    #[test]
    fn inflates_every_codec() {
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            0,
            sys_flag::COMPRESSION_ZLIB,
            sys_flag::COMPRESSION_LZ4,
            sys_flag::COMPRESSION_ZSTD,
        ] {
            let bytes = compressed(codec, &body);
            assert!(bytes.len() < body.len());
            let m = &decode_messages(&bytes).unwrap()[0];
            assert_eq!(m.body, body, "codec {codec:#x}");
            assert_eq!(m.sys_flag, codec, "COMPRESSED cleared, type kept");
        }
    }

    #[test]
    fn inflate_budget_stops_zip_bombs() {
        let zeros = vec![0u8; 4 << 20];
        for codec in [
            sys_flag::COMPRESSION_ZLIB,
            sys_flag::COMPRESSION_LZ4,
            sys_flag::COMPRESSION_ZSTD,
        ] {
            let one = compressed(codec, &zeros);
            let err = decode_messages_with_limit(&one, 1 << 20).unwrap_err();
            assert!(
                matches!(err.kind, MessageErrorKind::InflateLimit { limit, .. } if limit == 1 << 20),
                "{err}"
            );
            assert_eq!(err.offset, 88, "{err}");
            // The budget is shared: two bodies of 4 MiB do not fit in 6 MiB.
            let two = [one.clone(), one.clone()].concat();
            assert_eq!(decode_messages_with_limit(&two, 8 << 20).unwrap().len(), 2);
            let err = decode_messages_with_limit(&two, 6 << 20).unwrap_err();
            assert_eq!(err.record, one.len());
        }
    }

    #[test]
    fn corrupt_or_unknown_compression_is_an_error() {
        for codec in [
            sys_flag::COMPRESSION_ZLIB,
            sys_flag::COMPRESSION_LZ4,
            sys_flag::COMPRESSION_ZSTD,
        ] {
            let mut bytes = compressed(codec, b"some body that compresses a little body body");
            let n = bytes.len();
            bytes[n - 12] ^= 0xFF; // inside the compressed body
            bytes[n - 20] ^= 0x55;
            let err = decode_messages(&bytes);
            if let Err(e) = err {
                assert!(e.to_string().contains("body at offset 88"), "{e}");
            }
        }
        let mut bytes = compressed(sys_flag::COMPRESSION_ZLIB, b"abc");
        bytes[36..40].copy_from_slice(&0x501i32.to_be_bytes());
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            "stored message at offset 0: unknown compression type 5 in sysFlag at offset 36 \
             (expected 0 or 3 zlib, 1 LZ4, 2 zstd)"
        );
        let mut bytes = compressed(sys_flag::COMPRESSION_ZLIB, b"abc");
        bytes[88 + 2] ^= 0xFF; // zlib header/first block
        let e = decode_messages(&bytes).unwrap_err();
        assert!(
            matches!(e.kind, MessageErrorKind::Decompress { codec: "zlib", .. }),
            "{e}"
        );
    }

    #[test]
    fn errors_name_offsets_and_expectations() {
        let mut bytes = stored_v1_ipv4();
        bytes[4..8].copy_from_slice(&0x1234_5678i32.to_be_bytes());
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            "stored message at offset 0: unknown magic code 0x12345678 at offset 4 \
             (expected 0xDAA320A7 or 0xDAA320AB)"
        );
        let good = stored_v1_ipv4();
        let mut bytes = [good.clone(), good.clone()].concat();
        let second = good.len();
        bytes[second..second + 4].copy_from_slice(&9999i32.to_be_bytes());
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            format!(
                "stored message at offset {second}: storeSize 9999 exceeds the {} remaining bytes",
                good.len()
            )
        );
        let mut bytes = stored_v1_ipv4();
        bytes[52..56].copy_from_slice(&70000i32.to_be_bytes());
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            "stored message at offset 0: bornHost port 70000 at offset 52 is outside 0..=65535"
        );
        let mut bytes = stored_v1_ipv4();
        let topic_len_at = 4 * 5 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 5;
        bytes[topic_len_at] = 0x80;
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            format!(
                "stored message at offset 0: topicLength -128 at offset {topic_len_at} is \
                 negative (expected a length >= 0)"
            )
        );
        let mut bytes = stored_v1_ipv4();
        bytes[3] -= 1;
        bytes.pop();
        assert!(decode_messages(&bytes)
            .unwrap_err()
            .to_string()
            .starts_with("stored message at offset 0: properties at offset"));
        let bytes = [0u8, 0, 0, 3];
        assert_eq!(
            decode_messages(&bytes).unwrap_err().to_string(),
            "stored message at offset 0: storeSize 3 is below the minimum record size of 91"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let one = stored_v1_ipv4();
        let two = [one.clone(), compressed(sys_flag::COMPRESSION_ZLIB, b"body")].concat();
        for cut in 1..two.len() {
            match decode_messages(&two[..cut]) {
                Ok(msgs) => assert_eq!((cut, msgs.len()), (one.len(), 1)),
                Err(e) => {
                    assert!(e.to_string().contains("offset"), "{e}");
                    assert_eq!(e.record, if cut < one.len() { 0 } else { one.len() });
                }
            }
        }
    }

    #[test]
    fn body_crc_matches_java() {
        // CRC32("123456789") = 0xCBF43926; Java masks off the top bit.
        assert_eq!(body_crc(b"123456789"), 0x4BF4_3926);
    }

    #[test]
    fn encode_picks_v2_for_long_topics() {
        let m = MessageExt {
            topic: "t".repeat(200),
            ..Default::default()
        };
        let d = &decode_messages(&encode_message_ext(&m).unwrap()).unwrap()[0];
        assert_eq!((d.magic, d.topic.len()), (MAGIC_V2, 200));
    }

    fn host() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    fn message() -> impl Strategy<Value = MessageExt> {
        let plain = "[^\u{1}\u{2}]{1,8}";
        (
            (any::<[i32; 5]>(), any::<[i64; 5]>(), any::<bool>()),
            (host(), host()),
            proptest::collection::vec(any::<u8>(), 0..64),
            "\\PC{0,140}",
            proptest::collection::btree_map(plain, plain, 0..6),
        )
            .prop_map(|((i, l, v2), (born, store), body, topic, props)| {
                let mut m = MessageExt {
                    magic: if v2 { MAGIC_V2 } else { MAGIC_V1 },
                    body_crc: i[0],
                    queue_id: i[1],
                    flag: i[2],
                    sys_flag: i[3] & !sys_flag::COMPRESSED,
                    reconsume_times: i[4],
                    queue_offset: l[0],
                    commit_log_offset: l[1],
                    born_timestamp: l[2],
                    store_timestamp: l[3],
                    prepared_transaction_offset: l[4],
                    born_host: born,
                    store_host: store,
                    body,
                    topic,
                    properties: props.into_iter().collect(),
                    ..Default::default()
                };
                m.sys_flag &= !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
                if born.is_ipv6() {
                    m.sys_flag |= sys_flag::BORN_HOST_V6;
                }
                if store.is_ipv6() {
                    m.sys_flag |= sys_flag::STORE_HOST_V6;
                }
                if m.topic.len() > 127 {
                    m.magic = MAGIC_V2;
                }
                m
            })
    }

    fn batch_message() -> impl Strategy<Value = BatchMessage> {
        (
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::btree_map("[^\u{1}\u{2}]{1,8}", "[^\u{1}\u{2}]{1,8}", 0..5),
        )
            .prop_map(|(flag, body, props)| BatchMessage {
                flag,
                body,
                properties: encode_properties(&props),
            })
    }

    proptest! {
        #[test]
        fn stored_round_trip(msgs in proptest::collection::vec(message(), 0..4)) {
            let mut bytes = Vec::new();
            for m in &msgs {
                encode_message_ext_into(m, &mut bytes).unwrap();
            }
            let decoded = decode_messages(&bytes).unwrap();
            prop_assert_eq!(decoded.len(), msgs.len());
            for (d, mut m) in decoded.into_iter().zip(msgs) {
                m.store_size = d.store_size;
                prop_assert_eq!(d, m);
            }
        }

        #[test]
        fn batch_round_trip(msgs in proptest::collection::vec(batch_message(), 0..6)) {
            let bytes = encode_batch(&msgs).unwrap();
            prop_assert_eq!(decode_batch(&bytes).unwrap(), msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_messages(&bytes);
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn mutated_records_never_panic(
            m in message(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            codec in 0..4i32,
        ) {
            let mut bytes = if codec == 0 {
                encode_message_ext(&m).unwrap()
            } else {
                compressed(codec << 8, &m.body)
            };
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
            let _ = decode_messages(&bytes);
            let _ = decode_batch(&bytes);
        }
    }
}
