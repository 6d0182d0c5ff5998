//! Message properties: `name 0x01 value 0x02`, repeated (MessageDecoder.messageProperties2String
//! and string2messageProperties).
//!
//! Parsing follows Java exactly, so the proxy sees the same properties the broker does: a
//! fragment (text up to the next 0x02 or the end) counts only if it has a non-empty name before
//! its first 0x01 and a non-empty value after it; the value may itself contain 0x01; the final
//! 0x02 may be missing; and when a name repeats, the last value wins (Java fills a HashMap).

use std::collections::HashMap;

use memchr::memchr;

/// Separates a property name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each name/value pair.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Separates several keys inside the KEYS property.
pub const KEY_SEPARATOR: char = ' ';

/// Message keys, several joined by a space.
pub const KEYS: &str = "KEYS";
/// The message tag.
pub const TAGS: &str = "TAGS";
/// Whether the producer waits for the store ("true" by default).
pub const WAIT: &str = "WAIT";
/// Delay level 1..=18.
pub const DELAY: &str = "DELAY";
/// Original topic of a retried message.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Real topic of a delayed, transactional or timer message.
pub const REAL_TOPIC: &str = "REAL_TOPIC";
/// Real queue id of a delayed, transactional or timer message.
pub const REAL_QID: &str = "REAL_QID";
/// "true" on a half (prepared transaction) message.
pub const TRAN_MSG: &str = "TRAN_MSG";
/// Producer group.
pub const PGROUP: &str = "PGROUP";
/// Minimum queue offset (set by the broker on pulled messages).
pub const MIN_OFFSET: &str = "MIN_OFFSET";
/// Maximum queue offset (set by the broker on pulled messages).
pub const MAX_OFFSET: &str = "MAX_OFFSET";
/// Buyer id (legacy).
pub const BUYER_ID: &str = "BUYER_ID";
/// Message id of the original message of a retry.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Transfer flag (legacy).
pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
/// Correction flag (legacy).
pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
/// MQ2 flag (legacy).
pub const MQ2_FLAG: &str = "MQ2_FLAG";
/// Reconsume count of a retried message.
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
/// Region of the message.
pub const MSG_REGION: &str = "MSG_REGION";
/// Whether message tracing is on.
pub const TRACE_ON: &str = "TRACE_ON";
/// Client-generated unique message id (what SendResult.msgId shows).
pub const UNIQ_KEY: &str = "UNIQ_KEY";
/// Extended unique info.
pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
/// Maximum reconsume times.
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
/// Time consumption started (client side).
pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
/// Number of inner messages of an inner batch.
pub const INNER_NUM: &str = "INNER_NUM";
/// Base offset of an inner batch.
pub const INNER_BASE: &str = "INNER_BASE";
/// Duplicate info.
pub const DUP_INFO: &str = "DUP_INFO";
/// Seconds before a half message is first checked.
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Queue offset of the half message.
pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
/// Transaction id.
pub const TRANSACTION_ID: &str = "__transactionId__";
/// Times a half message was checked.
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Instance id (namespace).
pub const INSTANCE_ID: &str = "INSTANCE_ID";
/// Request/reply correlation id.
pub const CORRELATION_ID: &str = "CORRELATION_ID";
/// Client id a reply goes to.
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
/// Request/reply time to live.
pub const TTL: &str = "TTL";
/// Reply arrival time.
pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
/// Reply push time.
pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
/// Cluster of a request/reply message.
pub const CLUSTER: &str = "CLUSTER";
/// Message type of a request/reply message.
pub const MSG_TYPE: &str = "MSG_TYPE";
/// Pop receipt handle (extraInfo) set by the client on popped messages.
pub const POP_CK: &str = "POP_CK";
/// Pop checkpoint offset.
pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
/// Time of the first pop.
pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
/// Sharding key of a FIFO message.
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
/// Forward queue id.
pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
/// Redirect flag.
pub const REDIRECT: &str = "REDIRECT";
/// Light message queue dispatch targets.
pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
/// Light message queue offsets.
pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
/// Trace context.
pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
/// Timer delay in seconds.
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// Timer delivery time, epoch ms.
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Timer delay in milliseconds.
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
/// Timer enqueue time.
pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
/// Timer dequeue time.
pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
/// Timer roll count.
pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
/// Timer out time.
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
/// Unique key of a deleted timer message.
pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
/// Timer delay level.
pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
/// Born host recorded as a property.
pub const BORN_HOST: &str = "__BORNHOST";
/// Born timestamp recorded as a property.
pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
/// Body CRC appended by the broker when `appendPropCRC` is on.
pub const CRC32: &str = "__CRC32#";
/// Original topic of a dead-letter message.
pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
/// Original message id of a dead-letter message.
pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// Prefix of properties the broker does not store.
pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";

/// A name/value pair that `encode_properties` accepts: `(K, V)` or `&(K, V)`.
pub trait PropertyPair {
    /// The property name.
    fn name(&self) -> &str;
    /// The property value.
    fn value(&self) -> &str;
}

impl<K: AsRef<str>, V: AsRef<str>> PropertyPair for (K, V) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &str {
        self.1.as_ref()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> PropertyPair for &(K, V) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &str {
        self.1.as_ref()
    }
}

/// Encodes pairs as `name 0x01 value 0x02` each, in the given order, as Java does.
///
/// Like Java, nothing is escaped: a name containing 0x01 or 0x02, or a value containing 0x02,
/// will not decode back; an empty value is written but decodes as absent.
pub fn encode_properties<I>(pairs: I) -> String
where
    I: IntoIterator,
    I::Item: PropertyPair,
{
    let mut out = Vec::new();
    for pair in pairs {
        push_property(&mut out, pair.name(), pair.value().as_bytes());
    }
    // Only whole &str names and values and ASCII separators were written.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends one `name 0x01 value 0x02` pair: the one writer of the property layout (the
/// producer writes its messages' properties with it too).
/// Returns where the value landed.
#[inline]
pub fn push_property(out: &mut Vec<u8>, name: &str, value: &[u8]) -> std::ops::Range<usize> {
    push_property_with(out, name, |out| out.extend_from_slice(value))
}

/// Like `push_property`, with the value written by `value` straight into `out` (an id
/// generated in place); returns where the value landed.
#[inline]
pub fn push_property_with(
    out: &mut Vec<u8>,
    name: &str,
    value: impl FnOnce(&mut Vec<u8>),
) -> std::ops::Range<usize> {
    out.reserve(name.len() + 2);
    out.extend_from_slice(name.as_bytes());
    out.push(NAME_VALUE_SEPARATOR as u8);
    let start = out.len();
    value(out);
    let end = out.len();
    out.push(PROPERTY_SEPARATOR as u8);
    start..end
}

/// Iterates over the pairs Java would accept, in order, duplicates included; allocates nothing.
pub fn iter_properties(props: &str) -> PropertyIter<'_> {
    PropertyIter { rest: props }
}

/// Iterator returned by [`iter_properties`].
#[derive(Debug, Clone)]
pub struct PropertyIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let bytes = self.rest.as_bytes();
            // 0x01 and 0x02 never occur inside a multi-byte UTF-8 sequence, so every split
            // below falls on a char boundary.
            let (fragment, rest) = match memchr(PROPERTY_SEPARATOR as u8, bytes) {
                Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if let Some(sep) = memchr(NAME_VALUE_SEPARATOR as u8, fragment.as_bytes()) {
                if sep > 0 && sep + 1 < fragment.len() {
                    return Some((&fragment[..sep], &fragment[sep + 1..]));
                }
            }
        }
        None
    }
}

/// Decodes properties to pairs in first-seen order; a repeated name keeps its last value.
pub fn decode_properties(props: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    // Linear search is fastest for the usual handful of properties; a hostile string of
    // thousands of pairs switches to a hash index so decoding stays linear.
    let mut index: Option<HashMap<&str, usize>> = None;
    for (name, value) in iter_properties(props) {
        let slot = match &index {
            Some(map) => map.get(name).copied(),
            None => pairs.iter().position(|(n, _)| *n == name),
        };
        match slot {
            Some(i) => pairs[i].1 = value,
            None => {
                if let Some(map) = &mut index {
                    map.insert(name, pairs.len());
                }
                pairs.push((name, value));
                if index.is_none() && pairs.len() > 32 {
                    index = Some(
                        pairs
                            .iter()
                            .enumerate()
                            .map(|(i, (n, _))| (*n, i))
                            .collect(),
                    );
                }
            }
        }
    }
    pairs
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// The value Java would give `name` (the last non-empty one), without allocating.
pub fn find_property<'a>(props: &'a str, name: &str) -> Option<&'a str> {
    let mut found = None;
    for (n, v) in iter_properties(props) {
        if n == name {
            found = Some(v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A literal port of Java's string2messageProperties, as the reference.
    fn java_parse(s: &str) -> HashMap<String, String> {
        let chars: Vec<char> = s.chars().collect();
        let index_of = |c: char, from: usize| {
            chars[from.min(chars.len())..]
                .iter()
                .position(|&x| x == c)
                .map(|p| (p + from) as isize)
                .unwrap_or(-1)
        };
        let len = chars.len();
        let mut map = HashMap::new();
        let mut index = 0usize;
        while index < len {
            let mut new_index = index_of('\u{2}', index);
            if new_index < 0 {
                new_index = len as isize;
            }
            if new_index - index as isize >= 3 {
                let kv = index_of('\u{1}', index);
                if kv > index as isize && kv < new_index - 1 {
                    let k: String = chars[index..kv as usize].iter().collect();
                    let v: String = chars[kv as usize + 1..new_index as usize].iter().collect();
                    map.insert(k, v);
                }
            }
            index = new_index as usize + 1;
        }
        map
    }

    #[test]
    fn encodes_exact_bytes() {
        let s = encode_properties([(KEYS, "k1 k2"), (TAGS, "TagA"), (WAIT, "true")]);
        assert_eq!(s, "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}");
        let owned = vec![("a".to_string(), "1".to_string())];
        assert_eq!(encode_properties(&owned), "a\u{1}1\u{2}");
        let map: std::collections::BTreeMap<&str, &str> = [("x", "y")].into();
        assert_eq!(encode_properties(map), "x\u{1}y\u{2}");
        assert_eq!(encode_properties(Vec::<(&str, &str)>::new()), "");
    }

    #[test]
    fn decodes_with_and_without_trailing_separator() {
        let want = vec![
            ("UNIQ_KEY".to_string(), "ABC".to_string()),
            ("TAGS".to_string(), "t".to_string()),
        ];
        assert_eq!(
            decode_properties("UNIQ_KEY\u{1}ABC\u{2}TAGS\u{1}t\u{2}"),
            want
        );
        assert_eq!(decode_properties("UNIQ_KEY\u{1}ABC\u{2}TAGS\u{1}t"), want);
        assert_eq!(
            find_property("UNIQ_KEY\u{1}ABC\u{2}TAGS\u{1}t", TAGS),
            Some("t")
        );
        assert_eq!(find_property("UNIQ_KEY\u{1}ABC\u{2}TAGS\u{1}t", KEYS), None);
        assert!(decode_properties("").is_empty());
    }

    #[test]
    fn follows_java_quirks() {
        // Empty value, empty name, no separator, stray separators: all skipped.
        let s = "a\u{1}\u{2}\u{1}b\u{2}nosep\u{2}\u{2}\u{2}ok\u{1}v\u{1}w\u{2}x\u{1}";
        assert_eq!(decode_properties(s), vec![("ok".into(), "v\u{1}w".into())]);
        // The last value of a repeated name wins; the position is the first.
        let s = "a\u{1}1\u{2}b\u{1}2\u{2}a\u{1}3\u{2}";
        assert_eq!(
            decode_properties(s),
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(find_property(s, "a"), Some("3"));
        // Multi-byte characters are fine next to separators.
        let s = "é\u{1}ü\u{2}";
        assert_eq!(find_property(s, "é"), Some("ü"));
    }

    #[test]
    fn many_duplicates_use_the_index_consistently() {
        let mut pairs = Vec::new();
        for round in 0..3 {
            for i in 0..100 {
                pairs.push((format!("k{i}"), format!("{round}")));
            }
        }
        let s = encode_properties(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let d = decode_properties(&s);
        assert_eq!(d.len(), 100);
        assert_eq!(d[0], ("k0".into(), "2".into()));
        assert_eq!(d[99], ("k99".into(), "2".into()));
    }

    fn plain() -> impl Strategy<Value = String> {
        "[^\u{1}\u{2}]{1,12}"
    }

    proptest! {
        #[test]
        fn round_trip(map in proptest::collection::btree_map(plain(), plain(), 0..12)) {
            let encoded = encode_properties(&map);
            let decoded = decode_properties(&encoded);
            let want: Vec<(String, String)> = map.into_iter().collect();
            prop_assert_eq!(decoded, want);
        }

        #[test]
        fn matches_java_on_any_input(s in "[ab\u{1}\u{2}é]{0,40}") {
            let java = java_parse(&s);
            let ours: HashMap<String, String> = decode_properties(&s).into_iter().collect();
            prop_assert_eq!(&ours, &java);
            for name in ["a", "b", "ab", "é", "aa"] {
                prop_assert_eq!(find_property(&s, name), java.get(name).map(String::as_str));
            }
        }

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = decode_properties(&s);
            let _ = find_property(&s, "a");
        }
    }
}
