//! Per-topic traffic through the proxy: messages and bytes in (sends) and out (pull and pop
//! responses), requests, errors by response code and latency, labelled by topic, consumer
//! group and broker, as RocketMQ 5's own metrics are.
//!
//! The number of label sets is bounded (`metrics_max_topics`): past the bound, traffic of a
//! new (topic, group) is counted under `topic="__other__"` for its broker, and each such
//! request is counted in `overflow`. Each relayed connection keeps the few label sets it
//! uses (`TopicCache`), so the table's lock is taken only for a connection's first request
//! on a topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use super::stats::{Histogram, HistogramSnapshot};
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::frame::FrameView;
use crate::codec::header::{count_records, find_ext, ExtKey};

/// The topic label of traffic past the label-set bound.
pub const OTHER: &str = "__other__";

/// Label sets a connection remembers before it asks the shared table again.
const CACHE_SLOTS: usize = 8;

/// Which way a labelled request moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A send: messages in.
    In,
    /// A pull or pop: messages out in its response.
    Out,
}

/// The counters of one (topic, consumer group, broker).
#[derive(Default, Debug)]
pub struct TopicStats {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub requests: AtomicU64,
    /// Responses with a code other than SUCCESS (and, for pulls, the no-message codes), by
    /// code; touched only on an error.
    pub errors: Mutex<BTreeMap<i32, u64>>,
    pub latency: Histogram,
}

/// A label set and its counters, as read for /metrics.
pub struct TopicSnapshot {
    pub topic: String,
    pub consumer_group: String,
    pub broker: String,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub requests: u64,
    pub errors: BTreeMap<i32, u64>,
    pub latency: HistogramSnapshot,
}

/// (topic, consumer group, broker).
type LabelKey = (String, String, Arc<str>);

/// The default bound on label sets (`metrics_max_topics`).
pub const DEFAULT_MAX_TOPICS: usize = 1000;

/// Every label set of a proxy, bounded.
#[derive(Debug)]
pub struct TopicTable {
    max: AtomicUsize,
    sets: RwLock<HashMap<LabelKey, Arc<TopicStats>>>,
    /// Requests counted under `__other__` because the table was full.
    pub overflow: AtomicU64,
}

impl TopicTable {
    /// A table of at most `max` label sets (plus one `__other__` per broker); 0 turns per-topic
    /// metrics off.
    pub fn new(max: usize) -> Self {
        TopicTable {
            max: AtomicUsize::new(max),
            sets: RwLock::new(HashMap::new()),
            overflow: AtomicU64::new(0),
        }
    }

    /// Whether per-topic metrics are on.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.max.load(Relaxed) > 0
    }

    /// Changes the bound (label sets already counted stay).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    /// The counters of (topic, group, broker), created if there is room, else `__other__`.
    pub fn get(&self, topic: &str, group: &str, broker: &Arc<str>) -> Arc<TopicStats> {
        let key = (topic.to_owned(), group.to_owned(), broker.clone());
        if let Some(s) = crate::sync::read(&self.sets).get(&key) {
            return s.clone();
        }
        let mut sets = crate::sync::write(&self.sets);
        let own = sets.keys().filter(|k| k.0 != OTHER).count();
        if let Some(s) = sets.get(&key) {
            return s.clone();
        }
        if own < self.max.load(Relaxed) {
            return sets.entry(key).or_default().clone();
        }
        self.overflow.fetch_add(1, Relaxed);
        sets.entry((OTHER.to_owned(), String::new(), broker.clone()))
            .or_default()
            .clone()
    }

    /// Every label set and its counters.
    pub fn snapshot(&self) -> Vec<TopicSnapshot> {
        let sets = crate::sync::read(&self.sets);
        let mut out: Vec<TopicSnapshot> = sets
            .iter()
            .map(|((topic, group, broker), s)| TopicSnapshot {
                topic: topic.clone(),
                consumer_group: group.clone(),
                broker: broker.to_string(),
                messages_in: s.messages_in.load(Relaxed),
                bytes_in: s.bytes_in.load(Relaxed),
                messages_out: s.messages_out.load(Relaxed),
                bytes_out: s.bytes_out.load(Relaxed),
                requests: s.requests.load(Relaxed),
                errors: crate::sync::lock(&s.errors).clone(),
                latency: s.latency.snapshot(),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.topic, &a.consumer_group, &a.broker).cmp(&(&b.topic, &b.consumer_group, &b.broker))
        });
        out
    }
}

static TOPIC: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("topic"));
static TOPIC_V2: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("b"));
static GROUP: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("consumerGroup"));

/// The request codes that carry a topic, where it is, and where their group is.
fn labels_of(code: i32) -> Option<(Direction, &'static ExtKey, Option<&'static ExtKey>)> {
    match code {
        rc::SEND_MESSAGE => Some((Direction::In, &TOPIC, None)),
        rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE => Some((Direction::In, &TOPIC_V2, None)),
        rc::PULL_MESSAGE | rc::LITE_PULL_MESSAGE | rc::POP_MESSAGE => {
            Some((Direction::Out, &TOPIC, Some(&GROUP)))
        }
        _ => None,
    }
}

/// What a relayed request contributes to its label set once it is answered.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub stats: Arc<TopicStats>,
    pub direction: Direction,
    /// A send's messages and body bytes, counted in when the broker stored them.
    messages: u64,
    bytes: u64,
}

impl Labelled {
    /// A oneway send gets no answer: count it in as it goes.
    pub fn sent_oneway(&self) {
        if self.direction == Direction::In {
            self.stats.messages_in.fetch_add(self.messages, Relaxed);
            self.stats.bytes_in.fetch_add(self.bytes, Relaxed);
        }
    }
}

/// The label sets one relayed connection has used lately.
#[derive(Default)]
pub struct TopicCache {
    slots: Vec<(Box<str>, Box<str>, Arc<TopicStats>)>,
    next: usize,
}

impl TopicCache {
    /// Counts a client request by its topic and returns what its response must be counted
    /// against (a send's messages are counted in when the broker answers SUCCESS); None for
    /// requests without a topic, or with per-topic metrics off.
    pub fn on_request(
        &mut self,
        table: &TopicTable,
        broker: &Arc<str>,
        frame: &[u8],
        view: &FrameView,
    ) -> Option<Labelled> {
        if !table.enabled() {
            return None;
        }
        let (direction, topic_key, group_key) = labels_of(view.code)?;
        let header = frame.get(view.header.clone())?;
        let topic = find_ext(header, view.serialize_type, topic_key)?;
        let group = group_key.and_then(|k| find_ext(header, view.serialize_type, k));
        let group = group.as_deref().unwrap_or("");
        let stats = self.lookup(table, broker, &topic, group);
        stats.requests.fetch_add(1, Relaxed);
        let (messages, bytes) = if direction == Direction::In {
            // Java's producer sends batches as SEND_BATCH_MESSAGE, never as a flagged V2.
            let body = frame.get(view.body.clone()).unwrap_or_default();
            let n = if view.code == rc::SEND_BATCH_MESSAGE {
                count_records(body)
            } else {
                1
            };
            (n, body.len() as u64)
        } else {
            (0, 0)
        };
        Some(Labelled {
            stats,
            direction,
            messages,
            bytes,
        })
    }

    fn lookup(
        &mut self,
        table: &TopicTable,
        broker: &Arc<str>,
        topic: &str,
        group: &str,
    ) -> Arc<TopicStats> {
        if let Some((_, _, s)) = self
            .slots
            .iter()
            .find(|(t, g, _)| &**t == topic && &**g == group)
        {
            return s.clone();
        }
        let s = table.get(topic, group, broker);
        let entry = (topic.into(), group.into(), s.clone());
        if self.slots.len() < CACHE_SLOTS {
            self.slots.push(entry);
        } else {
            self.slots[self.next] = entry;
            self.next = (self.next + 1) % CACHE_SLOTS;
        }
        s
    }
}

/// Counts a response to a labelled request: its latency, an error by code, and for pulls and
/// pops the messages and bytes it carries out.
pub fn on_response(l: &Labelled, frame: &[u8], view: &FrameView, elapsed: Duration) {
    let s = &l.stats;
    s.latency.observe(elapsed);
    let code = view.code;
    if code == resp::SUCCESS {
        match l.direction {
            Direction::In => {
                s.messages_in.fetch_add(l.messages, Relaxed);
                s.bytes_in.fetch_add(l.bytes, Relaxed);
            }
            Direction::Out => {
                let body = frame.get(view.body.clone()).unwrap_or_default();
                s.messages_out.fetch_add(count_records(body), Relaxed);
                s.bytes_out.fetch_add(body.len() as u64, Relaxed);
            }
        }
    } else if !no_message(code) {
        on_error(l, code);
    }
}

/// A labelled request answered by the proxy itself (timeout, broker unreachable).
pub fn on_error(l: &Labelled, code: i32) {
    *crate::sync::lock(&l.stats.errors).entry(code).or_default() += 1;
}

/// Pull and pop answers that mean "nothing to read now", not a failure (for the per-topic
/// errors and the access log alike).
pub(crate) fn no_message(code: i32) -> bool {
    matches!(
        code,
        resp::PULL_NOT_FOUND | resp::PULL_RETRY_IMMEDIATELY | resp::POLLING_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RemotingCommand, SerializeType};

    fn frame(code: i32, fields: &[(&str, &str)], body: &[u8], st: SerializeType) -> Vec<u8> {
        let mut cmd = RemotingCommand::request(code);
        for (k, v) in fields {
            cmd.ext_fields.insert((*k).into(), (*v).into());
        }
        cmd.body = body.to_vec();
        cmd.encode(st).unwrap()
    }

    fn answer(l: &Labelled, opaque: i32, code: i32) {
        let f = RemotingCommand::response_to(opaque, code, None)
            .encode(SerializeType::Json)
            .unwrap();
        on_response(
            l,
            &f,
            &FrameView::parse(&f).unwrap(),
            Duration::from_millis(1),
        );
    }

    fn records(sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for &n in sizes {
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.resize(out.len() + n - 4, 7);
        }
        out
    }

    #[test]
    fn sends_count_messages_and_bytes_by_topic() {
        let table = TopicTable::new(10);
        let broker: Arc<str> = "b1".into();
        let mut cache = TopicCache::default();
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let f = frame(310, &[("a", "pg"), ("b", "Orders")], b"hello", st);
            let v = FrameView::parse(&f).unwrap();
            let l = cache.on_request(&table, &broker, &f, &v).unwrap();
            answer(&l, v.opaque, 0);
            let batch = records(&[20, 30, 40]);
            let f = frame(320, &[("b", "Orders"), ("m", "true")], &batch, st);
            let v = FrameView::parse(&f).unwrap();
            let l = cache.on_request(&table, &broker, &f, &v).unwrap();
            answer(&l, v.opaque, 0);
            // Refused by the broker: not in, but an error.
            let l = cache.on_request(&table, &broker, &f, &v).unwrap();
            answer(&l, v.opaque, resp::MESSAGE_ILLEGAL);
        }
        let [s] = &table.snapshot()[..] else {
            panic!("one label set")
        };
        assert_eq!(
            (s.topic.as_str(), s.consumer_group.as_str()),
            ("Orders", "")
        );
        assert_eq!(
            (s.messages_in, s.bytes_in, s.requests),
            (8, 2 * (5 + 90), 6)
        );
        assert_eq!(s.errors, BTreeMap::from([(resp::MESSAGE_ILLEGAL, 2)]));
    }

    #[test]
    fn pulls_count_what_their_responses_carry_out() {
        let table = TopicTable::new(10);
        let broker: Arc<str> = "b1".into();
        let mut cache = TopicCache::default();
        let f = frame(
            11,
            &[("topic", "T"), ("consumerGroup", "G")],
            b"",
            SerializeType::Json,
        );
        let v = FrameView::parse(&f).unwrap();
        let l = cache.on_request(&table, &broker, &f, &v).unwrap();
        let body = records(&[100, 50]);
        let mut r = RemotingCommand::response_to(v.opaque, 0, None);
        r.body = body;
        let rf = r.encode(SerializeType::Json).unwrap();
        on_response(
            &l,
            &rf,
            &FrameView::parse(&rf).unwrap(),
            Duration::from_millis(3),
        );
        let nf = RemotingCommand::response_to(v.opaque, resp::PULL_NOT_FOUND, None)
            .encode(SerializeType::Json)
            .unwrap();
        on_response(
            &l,
            &nf,
            &FrameView::parse(&nf).unwrap(),
            Duration::from_millis(3),
        );
        let ef = RemotingCommand::response_to(v.opaque, resp::SYSTEM_ERROR, None)
            .encode(SerializeType::Json)
            .unwrap();
        on_response(
            &l,
            &ef,
            &FrameView::parse(&ef).unwrap(),
            Duration::from_millis(3),
        );
        let s = &table.snapshot()[0];
        assert_eq!((s.topic.as_str(), s.consumer_group.as_str()), ("T", "G"));
        assert_eq!((s.messages_out, s.bytes_out), (2, 150));
        assert_eq!(s.errors, BTreeMap::from([(resp::SYSTEM_ERROR, 1)]));
        assert_eq!(s.latency.count, 3);
    }

    #[test]
    fn label_sets_are_bounded() {
        let table = TopicTable::new(2);
        let broker: Arc<str> = "b1".into();
        for t in ["A", "B", "C", "D", "A"] {
            table.get(t, "", &broker).requests.fetch_add(1, Relaxed);
        }
        let snap = table.snapshot();
        let names: Vec<_> = snap
            .iter()
            .map(|s| (s.topic.as_str(), s.requests))
            .collect();
        assert_eq!(names, vec![("A", 2), ("B", 1), (OTHER, 2)]);
        assert_eq!(table.overflow.load(Relaxed), 2);
    }

    #[test]
    fn off_means_nothing_is_read() {
        let table = TopicTable::new(0);
        let f = frame(310, &[("b", "T")], b"x", SerializeType::Json);
        let v = FrameView::parse(&f).unwrap();
        let broker: Arc<str> = "b".into();
        assert!(TopicCache::default()
            .on_request(&table, &broker, &f, &v)
            .is_none());
        assert!(table.snapshot().is_empty());
    }
}
