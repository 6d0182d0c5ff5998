//! The access log: one JSON line per client request, built on the data path and appended to a
//! bounded buffer that Python drains (`ProxyServer.access_log_take`) into its destination.
//!
//! Off by default: a frame then costs one relaxed load (`AccessLog::enabled`). On, a request's
//! line is written in two halves: what the request says (time, peer, code, topic, group,
//! queue, size) when it arrives, kept with it while it is in flight, and how it ended
//! (response code, size, latency, local reply) when it does. Errors, local replies and slow
//! requests are always logged; the rest 1 in `access_log_sample`, by count, so a run is
//! repeatable. A full buffer drops the line and counts it (`access_log_dropped`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::stats::ProxyStats;
use super::ProxyConfig;
use crate::codec::codes::{request as rc, request_name, response as resp};
use crate::codec::frame::FrameView;
use crate::codec::header::{find_ext, find_exts, ExtKey};
use crate::codec::{RemotingCommand, SerializeType};
use crate::json_text::{write_i64, write_str};
use crate::sync::lock;

/// Why a request ended without the broker's answer reaching the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The upstream did not answer in time (`SYSTEM_BUSY`).
    Timeout,
    /// The broker or name server could not be reached (`SYSTEM_ERROR`).
    Unavailable,
    /// The proxy was draining (`SYSTEM_BUSY`).
    Shutdown,
    /// The request policy refused it (`NO_PERMISSION`).
    Denied,
    /// The connection closed while it was in flight: nothing was answered.
    Closed,
    /// The client sent another request with the same opaque while it was in flight.
    Orphaned,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::Shutdown => "shutdown",
            Reason::Denied => "denied",
            Reason::Closed => "closed",
            Reason::Orphaned => "orphaned",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The response code the client got; None when it got none (oneway, closed).
    pub response_code: Option<i32>,
    /// The response frame's size (0 when there was none).
    pub bytes_out: usize,
    /// Time from the request's arrival to its answer; None when nothing was waited for.
    pub latency: Option<Duration>,
    /// Why the proxy answered (or dropped) it itself.
    pub local: Option<Reason>,
}

impl Outcome {
    /// The broker's answer, relayed.
    pub fn response(code: i32, bytes_out: usize, latency: Duration) -> Self {
        Outcome {
            response_code: Some(code),
            bytes_out,
            latency: Some(latency),
            local: None,
        }
    }

    /// Sent on with no answer expected (oneway, or an END_TRANSACTION the broker left
    /// unanswered).
    pub fn no_answer() -> Self {
        Outcome {
            response_code: None,
            bytes_out: 0,
            latency: None,
            local: None,
        }
    }

    /// Answered by the proxy itself with `reply` (`code`), or dropped (a oneway request:
    /// `reply` None).
    pub fn local(reason: Reason, reply: Option<(i32, usize)>, latency: Duration) -> Self {
        Outcome {
            response_code: reply.map(|r| r.0),
            bytes_out: reply.map_or(0, |r| r.1),
            latency: Some(latency),
            local: Some(reason),
        }
    }

    /// An error, a local reply or a lost request: logged whatever the sampling.
    fn is_error(&self) -> bool {
        self.local.is_some()
            || self
                .response_code
                .is_some_and(|c| c != resp::SUCCESS && !super::topics::no_message(c))
    }
}

/// Who a connection's requests come from and where they go, for their lines.
#[derive(Debug, Clone)]
pub struct Peer {
    client: Option<SocketAddr>,
    /// The proxy address the client connected to.
    listener: Option<SocketAddr>,
    /// The real broker (None on the name-server listener).
    broker: Option<Arc<str>>,
    /// `,"client":…,"listener":…,"broker":…`, written for the connection's first line.
    json: OnceLock<Box<[u8]>>,
}

impl Peer {
    pub fn new(
        client: Option<SocketAddr>,
        listener: Option<SocketAddr>,
        broker: Option<Arc<str>>,
    ) -> Self {
        Peer {
            client,
            listener,
            broker,
            json: OnceLock::new(),
        }
    }

    /// A peer with nothing known (tests, fuzzing).
    pub fn unknown() -> Self {
        Peer::new(None, None, None)
    }

    /// The client's IP address (for the request policy).
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client.map(|a| a.ip())
    }

    fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            let mut out = Vec::with_capacity(96);
            out.extend_from_slice(b",\"client\":");
            write_addr(&mut out, self.client);
            out.extend_from_slice(b",\"listener\":");
            write_addr(&mut out, self.listener);
            out.extend_from_slice(b",\"broker\":");
            write_opt_str(&mut out, self.broker.as_deref());
            out.into_boxed_slice()
        })
    }
}

/// A batch this big wakes the drain (`take`) before its timeout.
const BATCH: usize = 64 << 10;

/// The first half of a request's line, written when it arrived.
#[derive(Debug, Clone)]
pub struct Pending {
    line: Vec<u8>,
}

/// What a request's header says, for its line.
pub(crate) struct RequestInfo<'a> {
    pub code: i32,
    pub opaque: i32,
    pub oneway: bool,
    pub bytes_in: usize,
    pub topic: Option<&'a str>,
    pub group: Option<&'a str>,
    pub queue: Option<&'a str>,
}

impl<'a> RequestInfo<'a> {
    /// The fields of a decoded request (the name-server face decodes whole commands), read by
    /// the same names as a frame's in `begin`.
    pub fn of_command(cmd: &'a RemotingCommand, bytes_in: usize) -> Self {
        RequestInfo {
            code: cmd.code,
            opaque: cmd.opaque,
            oneway: cmd.is_oneway(),
            bytes_in,
            topic: cmd.ext(TOPIC_KEY),
            group: GROUP_KEYS.iter().find_map(|k| cmd.ext(k)),
            queue: cmd.ext(QUEUE_KEY),
        }
    }
}

const TOPIC_KEY: &str = "topic";
/// Where a request's group is, in the order they are looked for: pulls, pops, acks and offsets
/// carry `consumerGroup`, a few requests `producerGroup` or `group`.
const GROUP_KEYS: [&str; 3] = ["consumerGroup", "producerGroup", "group"];
const QUEUE_KEY: &str = "queueId";
static TOPIC: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new(TOPIC_KEY));
static CONSUMER_GROUP: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new(GROUP_KEYS[0]));
static PRODUCER_GROUP: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new(GROUP_KEYS[1]));
static GROUP: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new(GROUP_KEYS[2]));
static QUEUE_ID: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new(QUEUE_KEY));
// SEND_MESSAGE_V2's short names (SendMessageRequestHeaderV2): a = producerGroup, b = topic,
// e = queueId.
static V2_GROUP: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("a"));
static V2_TOPIC: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("b"));
static V2_QUEUE: LazyLock<ExtKey> = LazyLock::new(|| ExtKey::new("e"));

/// The proxy's access log: settings that change in place (`apply`) and the buffer of lines.
pub struct AccessLog {
    enabled: AtomicBool,
    sample: AtomicU64,
    slow_ms: AtomicU64,
    limit: AtomicUsize,
    /// Requests that were neither errors nor slow, for 1-in-N sampling.
    seen: AtomicU64,
    buf: Mutex<Vec<u8>>,
    ready: Condvar,
    stats: Arc<ProxyStats>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.enabled.load(Relaxed))
            .field("sample", &self.sample.load(Relaxed))
            .field("slow_ms", &self.slow_ms.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// The access log of a proxy with this config, counting in `stats`.
    pub fn new(config: &ProxyConfig, stats: Arc<ProxyStats>) -> Self {
        let a = AccessLog::off(stats);
        a.apply(config);
        a
    }

    /// An access log that is off (until `apply` turns it on).
    pub fn off(stats: Arc<ProxyStats>) -> Self {
        AccessLog {
            enabled: AtomicBool::new(false),
            sample: AtomicU64::new(1),
            slow_ms: AtomicU64::new(0),
            limit: AtomicUsize::new(0),
            seen: AtomicU64::new(0),
            buf: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            stats,
        }
    }

    /// Takes the settings of `config` (`access_log`, `access_log_sample`,
    /// `access_log_slow_ms`, `access_log_buffer_bytes`) at once: requests in flight are logged
    /// by the settings in force when they end. Lines already buffered stay.
    pub fn apply(&self, config: &ProxyConfig) {
        self.sample.store(config.access_log_sample.max(1), Relaxed);
        self.slow_ms.store(config.access_log_slow_ms, Relaxed);
        self.limit.store(config.access_log_buffer_bytes, Relaxed);
        self.enabled.store(config.access_log.is_some(), Relaxed);
    }

    /// Whether requests are being logged: the one check a frame pays when the log is off.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// The first half of the line of a relayed request (None when the log is off). Reads the
    /// topic, group and queue from the header; a header that cannot be read leaves them null.
    #[inline]
    pub fn begin(&self, peer: &Peer, frame: &[u8], view: &FrameView) -> Option<Pending> {
        if !self.enabled() {
            return None;
        }
        Some(begin_frame(peer, frame, view))
    }

    /// The first half of the line of a request whose fields are at hand (the name-server
    /// face decodes whole commands); None when the log is off.
    pub(crate) fn begin_fields(&self, peer: &Peer, info: &RequestInfo<'_>) -> Option<Pending> {
        if !self.enabled() {
            return None;
        }
        Some(head(peer, info, SystemTime::now()))
    }

    /// Ends a request's line and buffers it, if it is kept (errors, local replies and slow
    /// requests always; the rest 1 in `access_log_sample`). A request that ends after the log
    /// was turned off is not logged: nothing would take its line out of the buffer.
    pub fn finish(&self, pending: Pending, outcome: Outcome) {
        if !self.enabled() || !self.keep(&outcome) {
            return;
        }
        let mut line = pending.line;
        tail(&mut line, &outcome);
        self.push(&line);
    }

    fn keep(&self, o: &Outcome) -> bool {
        if o.is_error() {
            return true;
        }
        let slow_ms = self.slow_ms.load(Relaxed);
        if slow_ms > 0
            && o.latency
                .is_some_and(|l| l >= Duration::from_millis(slow_ms))
        {
            return true;
        }
        let n = self.sample.load(Relaxed);
        n <= 1 || self.seen.fetch_add(1, Relaxed) % n == 0
    }

    fn push(&self, line: &[u8]) {
        let mut buf = lock(&self.buf);
        if buf.len() + line.len() > self.limit.load(Relaxed) {
            drop(buf);
            ProxyStats::add(&self.stats.c.access_log_dropped, 1);
            return;
        }
        let before = buf.len();
        buf.extend_from_slice(line);
        drop(buf);
        ProxyStats::add(&self.stats.c.access_log_lines, 1);
        // One wake-up per batch, not per line: a futex wake on every line cost more than
        // writing the line.
        let batch = self.batch();
        if before < batch && before + line.len() >= batch {
            self.ready.notify_all();
        }
    }

    /// What wakes the drain: a batch, or half the buffer when that is less (a 64 KiB buffer
    /// could never hold a 64 KiB batch plus the line that crosses it).
    fn batch(&self) -> usize {
        BATCH.min(self.limit.load(Relaxed) / 2).max(1)
    }

    /// Every buffered line (each ends in a newline) into `out` (its contents replaced; its
    /// allocation becomes the buffer's, so a drain that passes the same Vec each time makes
    /// the two take turns and nothing is reallocated). Waits until a batch (64 KiB) is
    /// buffered or `timeout` has passed; empty if nothing came.
    pub fn take_into(&self, out: &mut Vec<u8>, timeout: Duration) {
        out.clear();
        let buf = lock(&self.buf);
        let (mut buf, _) = self
            .ready
            .wait_timeout_while(buf, timeout, |b| b.len() < self.batch())
            .unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *buf, out);
    }

    /// `take_into` a new Vec.
    pub fn take(&self, timeout: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        self.take_into(&mut out, timeout);
        out
    }

    /// Counts `lines` taken from the buffer that their destination then failed to take (in
    /// `access_log_lost`).
    pub fn note_lost(&self, lines: u64) {
        ProxyStats::add(&self.stats.c.access_log_lost, lines);
    }

    /// Bytes buffered now.
    pub fn buffered(&self) -> usize {
        lock(&self.buf).len()
    }
}

/// `begin` once the log is known to be on.
fn begin_frame(peer: &Peer, frame: &[u8], view: &FrameView) -> Pending {
    let header = frame.get(view.header.clone()).unwrap_or_default();
    let st = view.serialize_type;
    let find = |k: &ExtKey| find_ext(header, st, k);
    let (topic, group, queue) = match (view.code, st) {
        (rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE, _) => {
            let [t, g, q] = find_exts(header, st, [&V2_TOPIC, &V2_GROUP, &V2_QUEUE]);
            (t, g, q)
        }
        // One pass over a binary header's fields; a JSON one is searched key by key, the
        // group's other names only when the first is absent.
        (_, SerializeType::RocketMq) => {
            let keys: [&ExtKey; 5] = [&TOPIC, &CONSUMER_GROUP, &PRODUCER_GROUP, &GROUP, &QUEUE_ID];
            let [t, cg, pg, g, q] = find_exts(header, st, keys);
            (t, cg.or(pg).or(g), q)
        }
        (_, SerializeType::Json) => (
            find(&TOPIC),
            find(&CONSUMER_GROUP)
                .or_else(|| find(&PRODUCER_GROUP))
                .or_else(|| find(&GROUP)),
            find(&QUEUE_ID),
        ),
    };
    let info = RequestInfo {
        code: view.code,
        opaque: view.opaque,
        oneway: view.is_oneway(),
        bytes_in: frame.len(),
        topic: topic.as_deref(),
        group: group.as_deref(),
        queue: queue.as_deref(),
    };
    head(peer, &info, SystemTime::now())
}

/// The most of a topic or group a line carries, in bytes (RocketMQ's own limits are 127 for a
/// topic and 255 for a group): a header's value is the client's to choose, and escaped as JSON
/// a control byte takes six, so an unbounded copy would let one request allocate several times
/// its frame for a line the buffer then refuses.
const MAX_FIELD: usize = 255;

/// `v` as a JSON string, cut to `MAX_FIELD` bytes (at a character boundary), or null.
fn write_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => {
            let mut end = s.len().min(MAX_FIELD);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            write_str(out, &s[..end]);
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn write_addr(out: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        Some(a) => write_str(out, &a.to_string()),
        None => out.extend_from_slice(b"null"),
    }
}

/// `{"time":…` up to and including `"bytes_in":N`.
fn head(peer: &Peer, r: &RequestInfo<'_>, at: SystemTime) -> Pending {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"time\":\"");
    write_time(&mut out, at);
    out.push(b'"');
    out.extend_from_slice(peer.json());
    out.extend_from_slice(b",\"request\":");
    match request_name(r.code) {
        Some(name) => write_str(&mut out, name),
        None => write_str(&mut out, &r.code.to_string()),
    }
    out.extend_from_slice(b",\"code\":");
    write_i64(&mut out, r.code.into());
    out.extend_from_slice(b",\"opaque\":");
    write_i64(&mut out, r.opaque.into());
    out.extend_from_slice(b",\"oneway\":");
    out.extend_from_slice(if r.oneway { b"true" } else { b"false" });
    out.extend_from_slice(b",\"topic\":");
    write_opt_str(&mut out, r.topic);
    out.extend_from_slice(b",\"group\":");
    write_opt_str(&mut out, r.group);
    out.extend_from_slice(b",\"queue\":");
    match r.queue.and_then(|q| q.trim().parse::<i32>().ok()) {
        Some(q) => write_i64(&mut out, q.into()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_in\":");
    write_i64(&mut out, r.bytes_in as i64);
    Pending { line: out }
}

/// `,"bytes_out":…}` and the newline.
fn tail(out: &mut Vec<u8>, o: &Outcome) {
    out.extend_from_slice(b",\"bytes_out\":");
    write_i64(out, o.bytes_out as i64);
    out.extend_from_slice(b",\"latency_ms\":");
    match o.latency {
        Some(l) => {
            // Microsecond resolution, as milliseconds with three decimals.
            let us = u64::try_from(l.as_micros()).unwrap_or(u64::MAX);
            write_i64(out, (us / 1000) as i64);
            out.push(b'.');
            let frac = us % 1000;
            out.extend_from_slice(&[
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"response_code\":");
    match o.response_code {
        Some(c) => write_i64(out, c.into()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"local_reply\":");
    write_opt_str(out, o.local.map(Reason::as_str));
    out.extend_from_slice(b"}\n");
}

thread_local! {
    /// The last second written by this thread and its text up to the seconds' digits.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC with milliseconds: `2025-01-31T23:59:59.123Z`.
fn write_time(out: &mut Vec<u8>, at: SystemTime) {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let second = ms / 1000;
    let (cached, mut text) = SECOND.get();
    if cached != second {
        let mut t = Vec::with_capacity(24);
        write_second(&mut t, second);
        text.copy_from_slice(&t[..19]);
        SECOND.set((second, text));
    }
    out.extend_from_slice(&text);
    let milli = ms % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

/// `2025-01-31T23:59:59` for seconds since the epoch (19 bytes; years past 9999 are cut).
fn write_second(out: &mut Vec<u8>, second: u64) {
    let days = (second / 86_400) as i64;
    let in_day = second % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let digits = |out: &mut Vec<u8>, v: u64, n: u32| {
        for i in (0..n).rev() {
            out.push(b'0' + (v / 10u64.pow(i) % 10) as u8);
        }
    };
    digits(out, u64::try_from(year).unwrap_or(0), 4);
    out.push(b'-');
    digits(out, month as u64, 2);
    out.push(b'-');
    digits(out, day as u64, 2);
    out.push(b'T');
    digits(out, in_day / 3600, 2);
    out.push(b':');
    digits(out, in_day / 60 % 60, 2);
    out.push(b':');
    digits(out, in_day % 60, 2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RemotingCommand, SerializeType};

    fn config(extra: &str) -> ProxyConfig {
        ProxyConfig::from_json(&format!(
            r#"{{"clusters":[{{"name":"a","namesrv":["127.0.0.1:9876"]}}]{extra}}}"#
        ))
        .unwrap()
    }

    fn log(extra: &str) -> (AccessLog, Arc<ProxyStats>) {
        let stats = Arc::new(ProxyStats::default());
        (AccessLog::new(&config(extra), stats.clone()), stats)
    }

    fn peer() -> Peer {
        Peer::new(
            Some("10.1.2.3:50123".parse().unwrap()),
            Some("127.0.0.1:30911".parse().unwrap()),
            Some(Arc::from("10.0.0.1:10911")),
        )
    }

    fn request(code: i32, fields: &[(&str, &str)], st: SerializeType) -> (Vec<u8>, FrameView) {
        let mut c = RemotingCommand::request(code);
        c.opaque = 42;
        for (k, v) in fields {
            c.ext_fields.insert((*k).into(), (*v).into());
        }
        let f = c.encode(st).unwrap();
        let v = FrameView::parse(&f).unwrap();
        (f, v)
    }

    fn lines(a: &AccessLog) -> Vec<serde_json::Value> {
        let text = String::from_utf8(a.take(Duration::ZERO)).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn ok(latency_ms: u64) -> Outcome {
        Outcome::response(resp::SUCCESS, 50, Duration::from_millis(latency_ms))
    }

    #[test]
    fn a_line_has_every_field_and_escapes_what_it_must() {
        let (a, stats) = log(r#","access_log":"stdout""#);
        let topic = "we\"ird\\topic\n\u{1}é";
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let (f, v) = request(
                rc::SEND_MESSAGE_V2,
                &[("a", "pg"), ("b", topic), ("e", "3")],
                st,
            );
            let p = a.begin(&peer(), &f, &v).unwrap();
            a.finish(
                p,
                Outcome::response(resp::SUCCESS, 77, Duration::from_micros(1_234_567)),
            );
        }
        let got = lines(&a);
        assert_eq!(got.len(), 2);
        for l in &got {
            let time = l["time"].as_str().unwrap();
            assert_eq!(time.len(), "2025-01-31T23:59:59.123Z".len(), "{time}");
            assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
            assert_eq!(l["client"], "10.1.2.3:50123");
            assert_eq!(l["listener"], "127.0.0.1:30911");
            assert_eq!(l["broker"], "10.0.0.1:10911");
            assert_eq!(l["request"], "SEND_MESSAGE_V2");
            assert_eq!(l["code"], 310);
            assert_eq!(l["opaque"], 42);
            assert_eq!(l["oneway"], false);
            assert_eq!(l["topic"], topic);
            assert_eq!(l["group"], "pg");
            assert_eq!(l["queue"], 3);
            assert!(l["bytes_in"].as_u64().unwrap() > 20);
            assert_eq!(l["bytes_out"], 77);
            assert_eq!(l["latency_ms"].as_f64().unwrap(), 1234.567);
            assert_eq!(l["response_code"], 0);
            assert_eq!(l["local_reply"], serde_json::Value::Null);
        }
        assert_eq!(stats.c.access_log_lines.load(Relaxed), 2);
    }

    #[test]
    fn pulls_carry_topic_group_and_queue_and_unknown_codes_their_number() {
        let (a, _) = log(r#","access_log":"file""#);
        let (f, v) = request(
            rc::PULL_MESSAGE,
            &[("topic", "T"), ("consumerGroup", "G"), ("queueId", "1")],
            SerializeType::RocketMq,
        );
        let p = a.begin(&peer(), &f, &v).unwrap();
        a.finish(p, ok(2));
        let (f, v) = request(99_999, &[], SerializeType::Json);
        let p = a.begin(&Peer::unknown(), &f, &v).unwrap();
        a.finish(p, Outcome::no_answer());
        // A frame whose header cannot be read: the fields are null, nothing panics.
        let (_, v) = request(rc::PULL_MESSAGE, &[], SerializeType::Json);
        let p = a.begin(&peer(), &[], &v).unwrap();
        a.finish(p, ok(0));
        let got = lines(&a);
        assert_eq!(
            (&got[0]["topic"], &got[0]["group"], &got[0]["queue"]),
            (&"T".into(), &"G".into(), &1.into())
        );
        assert_eq!(got[1]["request"], "99999");
        assert_eq!(got[1]["client"], serde_json::Value::Null);
        assert_eq!(got[1]["response_code"], serde_json::Value::Null);
        assert_eq!(got[1]["latency_ms"], serde_json::Value::Null);
        assert_eq!(got[2]["topic"], serde_json::Value::Null);
        assert_eq!(got[2]["bytes_in"], 0);
    }

    #[test]
    fn sampling_keeps_one_in_n_and_every_error_local_reply_and_slow_request() {
        let (a, _) =
            log(r#","access_log":"stdout","access_log_sample":4,"access_log_slow_ms":100"#);
        let (f, v) = request(rc::HEART_BEAT, &[], SerializeType::Json);
        let end = |o: Outcome| a.finish(a.begin(&peer(), &f, &v).unwrap(), o);
        for _ in 0..7 {
            end(ok(1));
        }
        end(Outcome::response(resp::SYSTEM_ERROR, 10, Duration::ZERO));
        // A pull's "nothing new" answers are not errors.
        end(Outcome::response(resp::PULL_NOT_FOUND, 10, Duration::ZERO));
        end(Outcome::local(
            Reason::Timeout,
            Some((resp::SYSTEM_BUSY, 60)),
            Duration::from_secs(5),
        ));
        end(Outcome::local(Reason::Denied, None, Duration::ZERO));
        end(ok(100));
        let got = lines(&a);
        let codes: Vec<_> = got
            .iter()
            .map(|l| (l["response_code"].clone(), l["local_reply"].clone()))
            .collect();
        use serde_json::json;
        assert_eq!(
            codes,
            vec![
                (json!(0), json!(null)),
                (json!(0), json!(null)),
                (json!(resp::SYSTEM_ERROR), json!(null)),
                (json!(resp::SYSTEM_BUSY), json!("timeout")),
                (json!(null), json!("denied")),
                (json!(0), json!(null)),
            ],
            "requests 1 and 5 of the first 7, not the PULL_NOT_FOUND (the 8th), the rest always"
        );
        assert_eq!(got[5]["latency_ms"].as_f64().unwrap(), 100.0);
    }

    #[test]
    fn a_hostile_topic_or_group_is_cut_not_copied_whole() {
        let (a, _) = log(r#","access_log":"stdout""#);
        // 1 MiB of control bytes (six bytes each as JSON) and a group of multi-byte characters
        // whose 255th byte falls inside one.
        let topic = "\u{1}".repeat(1 << 20);
        let group = "é".repeat(1000);
        for st in [SerializeType::RocketMq, SerializeType::Json] {
            let (f, v) = request(
                rc::PULL_MESSAGE,
                &[("topic", &topic), ("consumerGroup", &group)],
                st,
            );
            let pending = a.begin(&peer(), &f, &v).unwrap();
            assert!(pending.line.len() < 4096, "{} bytes", pending.line.len());
            a.finish(pending, ok(1));
            let line = &lines(&a)[0];
            assert_eq!(line["topic"].as_str().unwrap(), &topic[..MAX_FIELD]);
            assert_eq!(line["group"].as_str().unwrap(), &group[..254]);
            assert_eq!(line["bytes_in"].as_u64().unwrap(), f.len() as u64);
        }
    }

    #[test]
    fn a_request_that_ends_after_the_log_is_turned_off_leaves_no_line() {
        let (a, stats) = log(r#","access_log":"stdout""#);
        let (f, v) = request(rc::SEND_MESSAGE_V2, &[("b", "T")], SerializeType::Json);
        let pending = a.begin(&peer(), &f, &v).unwrap();
        a.apply(&config(""));
        a.finish(pending, ok(1));
        assert_eq!(a.buffered(), 0);
        assert_eq!(stats.c.access_log_lines.load(Relaxed), 0);
    }

    #[test]
    fn the_smallest_buffer_still_wakes_the_drain_before_its_timeout() {
        let (a, _) = log(r#","access_log":"stdout","access_log_buffer_bytes":65536"#);
        let a = Arc::new(a);
        let writer = a.clone();
        let t = std::thread::spawn(move || {
            let (f, v) = request(rc::SEND_MESSAGE_V2, &[("b", "T")], SerializeType::Json);
            while writer.buffered() < 32 << 10 {
                writer.finish(writer.begin(&peer(), &f, &v).unwrap(), ok(1));
            }
        });
        let started = std::time::Instant::now();
        let got = a.take(Duration::from_secs(60));
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(got.len() >= 32 << 10);
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let (a, stats) = log(r#","access_log":"stdout","access_log_buffer_bytes":65536"#);
        let (f, v) = request(rc::SEND_MESSAGE_V2, &[("b", "T")], SerializeType::Json);
        let mut n = 0;
        while stats.c.access_log_dropped.load(Relaxed) == 0 {
            a.finish(a.begin(&peer(), &f, &v).unwrap(), ok(1));
            n += 1;
        }
        let kept = stats.c.access_log_lines.load(Relaxed);
        assert_eq!(kept + 1, n);
        assert!(a.buffered() <= 65536);
        assert_eq!(lines(&a).len() as u64, kept);
        // Drained: room again.
        a.finish(a.begin(&peer(), &f, &v).unwrap(), ok(1));
        assert_eq!(stats.c.access_log_lines.load(Relaxed), kept + 1);
    }

    #[test]
    fn apply_changes_the_settings_in_place() {
        let (a, stats) = log("");
        let (f, v) = request(rc::HEART_BEAT, &[], SerializeType::Json);
        assert!(!a.enabled());
        assert!(a.begin(&peer(), &f, &v).is_none());
        a.apply(&config(r#","access_log":"file","access_log_sample":2"#));
        assert!(a.enabled());
        for _ in 0..4 {
            a.finish(a.begin(&peer(), &f, &v).unwrap(), ok(1));
        }
        assert_eq!(lines(&a).len(), 2);
        a.apply(&config(r#","access_log":"file","access_log_slow_ms":5"#));
        for ms in [1, 5, 1] {
            a.finish(a.begin(&peer(), &f, &v).unwrap(), ok(ms));
        }
        assert_eq!(lines(&a).len(), 3, "sample 1 again");
        a.apply(&config(""));
        assert!(!a.enabled());
        assert!(a.begin(&peer(), &f, &v).is_none());
        assert_eq!(stats.c.access_log_lines.load(Relaxed), 5);
    }

    #[test]
    fn a_reload_turns_the_access_log_on_and_off_in_place() {
        let json = |extra: &str| {
            ProxyConfig::from_json(&format!(
                r#"{{"listen":"127.0.0.1:0","clusters":[{{"name":"a","namesrv":["127.0.0.1:1"]}}],"worker_threads":1{extra}}}"#
            ))
            .unwrap()
        };
        let mut p = super::super::ProxyServer::start(json("")).unwrap();
        let log = p.access_log();
        assert!(!log.enabled());
        p.reload(json(r#","access_log":"file","access_log_sample":3"#))
            .unwrap();
        assert!(log.enabled());
        assert_eq!(log.sample.load(Relaxed), 3);
        p.reload(json("")).unwrap();
        assert!(!log.enabled());
        p.stop(Duration::ZERO);
    }

    #[test]
    fn take_waits_for_a_batch_or_the_timeout() {
        let (a, _) = log(r#","access_log":"stdout""#);
        let a = Arc::new(a);
        let (f, v) = request(rc::HEART_BEAT, &[], SerializeType::Json);
        assert!(a.take(Duration::from_millis(10)).is_empty());
        // Less than a batch: returned at the timeout.
        a.finish(a.begin(&peer(), &f, &v).unwrap(), ok(1));
        let mut out = vec![b'x'; 10];
        a.take_into(&mut out, Duration::from_millis(10));
        assert!(out.starts_with(b"{") && out.ends_with(b"}\n"), "{out:?}");
        // A batch wakes a long wait.
        let writer = a.clone();
        let t = std::thread::spawn(move || {
            while writer.buffered() < BATCH {
                writer.finish(writer.begin(&peer(), &f, &v).unwrap(), ok(1));
            }
        });
        let started = std::time::Instant::now();
        let got = a.take(Duration::from_secs(60));
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(got.len() >= BATCH && got.ends_with(b"}\n"));
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let mut out = Vec::new();
        write_time(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(951_782_400_007),
        );
        assert_eq!(out, b"2000-02-29T00:00:00.007Z");
        out.clear();
        write_time(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_735_689_599_999),
        );
        assert_eq!(out, b"2024-12-31T23:59:59.999Z");
    }
}
