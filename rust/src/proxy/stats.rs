//! Proxy statistics: every counter and gauge declared once, relaxed atomics on the hot path,
//! one snapshot call that Python reads.
//!
//! Names follow Envoy's rocketmq_proxy filter where it has one, so operators can map one onto
//! the other; the Prometheus names are derived from these in Python (`rmqfast.stats`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::codec::codes::request as rc;

macro_rules! stat_table {
    (
        counters { $($c:ident : $chelp:literal,)* }
        gauges { $($g:ident : $ghelp:literal,)* }
    ) => {
        /// Every scalar statistic of a proxy instance.
        #[derive(Default, Debug)]
        pub struct Counters {
            $(#[doc = $chelp] pub $c: AtomicU64,)*
            $(#[doc = $ghelp] pub $g: AtomicI64,)*
        }

        /// (name, help) of every counter, in declaration order.
        pub const COUNTER_NAMES: &[(&str, &str)] = &[$((stringify!($c), $chelp),)*];
        /// (name, help) of every gauge, in declaration order.
        pub const GAUGE_NAMES: &[(&str, &str)] = &[$((stringify!($g), $ghelp),)*];

        impl Counters {
            /// Current values of every counter, by name.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($c), self.$c.load(Relaxed)),)*]
            }

            /// Current values of every gauge, by name.
            pub fn gauges(&self) -> Vec<(&'static str, i64)> {
                vec![$((stringify!($g), self.$g.load(Relaxed)),)*]
            }
        }
    };
}

stat_table! {
    counters {
        request: "Requests received from clients.",
        request_decoding_error: "Client frames that failed to decode (the connection is closed).",
        request_decoding_success: "Client frames that decoded.",
        response: "Responses relayed or answered to clients.",
        response_decoding_error: "Upstream frames that failed to decode (the connection is closed).",
        response_decoding_success: "Upstream frames that decoded.",
        response_error: "Responses to clients with a non-zero response code.",
        response_success: "Responses to clients with response code SUCCESS.",
        heartbeat: "HEART_BEAT requests.",
        unregister: "UNREGISTER_CLIENT requests.",
        get_topic_route: "GET_ROUTEINFO_BY_TOPIC requests.",
        send_message_v1: "SEND_MESSAGE requests.",
        send_message_v2: "SEND_MESSAGE_V2 requests.",
        pop_message: "POP_MESSAGE requests.",
        ack_message: "ACK_MESSAGE requests.",
        get_consumer_list: "GET_CONSUMER_LIST_BY_GROUP requests.",
        maintenance_failure: "Failed background work: route refreshes that reached no name server.",
        pull_message: "PULL_MESSAGE and LITE_PULL_MESSAGE requests.",
        send_batch_message: "SEND_BATCH_MESSAGE requests.",
        change_invisible_time: "CHANGE_MESSAGE_INVISIBLETIME requests.",
        end_transaction: "END_TRANSACTION requests.",
        get_broker_cluster_info: "GET_BROKER_CLUSTER_INFO requests.",
        broker_request: "Requests sent by brokers to clients (transaction checks, consumer notices).",
        oneway_request: "Oneway requests from clients (no response expected).",
        bytes_client_to_proxy: "Bytes read from clients.",
        bytes_proxy_to_client: "Bytes written to clients.",
        bytes_proxy_to_upstream: "Bytes written to brokers and name servers.",
        bytes_upstream_to_proxy: "Bytes read from brokers and name servers.",
        connections_total: "Client connections accepted.",
        connections_rejected: "Client connections refused by the connection limit.",
        connections_idle_closed: "Client connections closed by the idle timeout (bytes that never complete a frame do not count as activity).",
        frame_timeout: "Client connections closed because a frame was not complete within frame_timeout_ms of its first byte.",
        frame_budget_wait: "Client frames larger than 64 KiB that waited for room in frame_memory_budget.",
        upstream_connect_failure: "Failed connection attempts to brokers and name servers.",
        tls_handshake_failure: "Client connections closed because their TLS handshake failed.",
        request_denied: "Client requests refused by the request policy (answered NO_PERMISSION).",
        local_reply_timeout: "Local replies: the upstream did not answer within the timeout.",
        local_reply_upstream_unavailable: "Local replies: the broker or name server could not be reached.",
        local_reply_shutdown: "Local replies: the proxy was shutting down.",
        late_response: "Upstream responses that arrived after their local timeout reply (dropped).",
        route_cache_served: "Route answers served from the cache while every name server was down.",
        route_cache_hedged: "Route answers served from the cache because the name server had not answered within route_hedge_ms.",
        route_cache_kept: "Cached routes served instead of a name server's TOPIC_NOT_EXIST (within route_stale_limit_s).",
        route_rewrite: "Route and cluster answers whose broker addresses were rewritten.",
        broker_listener_added: "Broker ports opened for brokers found in route answers.",
        access_log_lines: "Access log lines buffered for the access log's destination.",
        access_log_dropped: "Access log lines dropped because access_log_buffer_bytes was full.",
        access_log_lost: "Access log lines lost because their destination failed (a file that could not be written).",
        config_reloads: "Configuration reloads put in place (SIGHUP or POST /reload).",
        config_reload_failures: "Configuration reloads rejected (the running configuration was kept).",
    }
    gauges {
        request_active: "Requests in flight.",
        send_message_v1_active: "SEND_MESSAGE requests in flight.",
        send_message_v2_active: "SEND_MESSAGE_V2 requests in flight.",
        pop_message_active: "POP_MESSAGE requests in flight.",
        get_topic_route_active: "GET_ROUTEINFO_BY_TOPIC requests in flight.",
        pull_message_active: "PULL_MESSAGE requests in flight (long polls included).",
        send_message_pending: "Send requests waiting for an upstream connection.",
        pop_message_pending: "POP_MESSAGE requests waiting for an upstream connection.",
        get_topic_route_pending: "Route lookups waiting for a name-server connection.",
        total_pending: "Requests waiting for an upstream connection.",
        connections_active: "Client connections open.",
        connections_namesrv_active: "Client connections open on the name-server listener.",
        connections_broker_active: "Client connections open on broker listeners.",
        upstream_connections_active: "Connections open to brokers and name servers.",
        broker_listeners: "Broker listeners open (one per real broker address).",
        frame_budget_bytes: "Bytes of frame_memory_budget reserved by client frames being read.",
    }
}

impl crate::net::frames::ReadEvents for ProxyStats {
    fn on_read_event(&self, event: crate::net::frames::ReadEvent) {
        use crate::net::frames::ReadEvent;
        match event {
            ReadEvent::BudgetWait => Self::add(&self.c.frame_budget_wait, 1),
            ReadEvent::BudgetHeld(n) => Self::gauge(&self.c.frame_budget_bytes, n),
            ReadEvent::FrameTimeout => Self::add(&self.c.frame_timeout, 1),
        }
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 15_000_000, 35_000_000,
];

/// A fixed-bucket latency histogram updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A point-in-time copy of a histogram; `buckets` are per bucket (not cumulative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[idx].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Copies the current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// Request codes with their own latency series; everything else is "other".
pub const LATENCY_CODES: &[i32] = &[
    rc::SEND_MESSAGE,
    rc::PULL_MESSAGE,
    rc::QUERY_CONSUMER_OFFSET,
    rc::UPDATE_CONSUMER_OFFSET,
    rc::UPDATE_AND_CREATE_TOPIC,
    rc::GET_BROKER_RUNTIME_INFO,
    rc::SEARCH_OFFSET_BY_TIMESTAMP,
    rc::GET_MAX_OFFSET,
    rc::GET_MIN_OFFSET,
    rc::HEART_BEAT,
    rc::UNREGISTER_CLIENT,
    rc::CONSUMER_SEND_MSG_BACK,
    rc::END_TRANSACTION,
    rc::GET_CONSUMER_LIST_BY_GROUP,
    rc::LOCK_BATCH_MQ,
    rc::UNLOCK_BATCH_MQ,
    rc::GET_ROUTEINFO_BY_TOPIC,
    rc::GET_BROKER_CLUSTER_INFO,
    rc::SEND_MESSAGE_V2,
    rc::SEND_BATCH_MESSAGE,
    rc::LITE_PULL_MESSAGE,
    rc::POP_MESSAGE,
    rc::ACK_MESSAGE,
    rc::CHANGE_MESSAGE_INVISIBLETIME,
];

/// Everything a proxy instance counts.
#[derive(Debug)]
pub struct ProxyStats {
    pub c: Counters,
    /// Envoy's `request_time_ms`: every request's time from receipt to response.
    pub request_time: Histogram,
    /// Per request code (index into `LATENCY_CODES`, last slot = other codes).
    pub request_time_by_code: Vec<Histogram>,
    /// Requests refused by the policy, per request code (touched only on a refusal).
    pub denied_by_code: std::sync::Mutex<std::collections::BTreeMap<i32, u64>>,
    /// Per-topic traffic (`metrics_max_topics`).
    pub topics: super::topics::TopicTable,
}

impl Default for ProxyStats {
    fn default() -> Self {
        ProxyStats {
            c: Counters::default(),
            request_time: Histogram::default(),
            request_time_by_code: (0..=LATENCY_CODES.len())
                .map(|_| Histogram::default())
                .collect(),
            denied_by_code: Default::default(),
            topics: super::topics::TopicTable::new(super::topics::DEFAULT_MAX_TOPICS),
        }
    }
}

/// What a proxy counts per request code: the counter and the active gauge, if it has them.
pub struct CodeStats<'a> {
    pub counter: Option<&'a AtomicU64>,
    pub active: Option<&'a AtomicI64>,
    pub pending: Option<&'a AtomicI64>,
}

impl ProxyStats {
    /// A request refused by the policy: counted in total and by its code.
    pub fn on_denied(&self, code: i32) {
        Self::add(&self.c.request_denied, 1);
        *crate::sync::lock(&self.denied_by_code)
            .entry(code)
            .or_default() += 1;
    }

    /// The code-specific counter and gauges for a request code.
    #[inline]
    pub fn for_code(&self, code: i32) -> CodeStats<'_> {
        let c = &self.c;
        let (counter, active, pending) = match code {
            rc::HEART_BEAT => (Some(&c.heartbeat), None, None),
            rc::UNREGISTER_CLIENT => (Some(&c.unregister), None, None),
            rc::GET_ROUTEINFO_BY_TOPIC => (
                Some(&c.get_topic_route),
                Some(&c.get_topic_route_active),
                Some(&c.get_topic_route_pending),
            ),
            rc::SEND_MESSAGE => (
                Some(&c.send_message_v1),
                Some(&c.send_message_v1_active),
                Some(&c.send_message_pending),
            ),
            rc::SEND_MESSAGE_V2 => (
                Some(&c.send_message_v2),
                Some(&c.send_message_v2_active),
                Some(&c.send_message_pending),
            ),
            rc::SEND_BATCH_MESSAGE => (
                Some(&c.send_batch_message),
                None,
                Some(&c.send_message_pending),
            ),
            rc::POP_MESSAGE => (
                Some(&c.pop_message),
                Some(&c.pop_message_active),
                Some(&c.pop_message_pending),
            ),
            rc::ACK_MESSAGE => (Some(&c.ack_message), None, None),
            rc::GET_CONSUMER_LIST_BY_GROUP => (Some(&c.get_consumer_list), None, None),
            rc::PULL_MESSAGE | rc::LITE_PULL_MESSAGE => {
                (Some(&c.pull_message), Some(&c.pull_message_active), None)
            }
            rc::CHANGE_MESSAGE_INVISIBLETIME => (Some(&c.change_invisible_time), None, None),
            rc::END_TRANSACTION => (Some(&c.end_transaction), None, None),
            rc::GET_BROKER_CLUSTER_INFO => (Some(&c.get_broker_cluster_info), None, None),
            _ => (None, None, None),
        };
        CodeStats {
            counter,
            active,
            pending,
        }
    }

    /// Counts a request from a client.
    #[inline]
    pub fn on_request(&self, code: i32, oneway: bool) {
        self.c.request.fetch_add(1, Relaxed);
        self.c.request_decoding_success.fetch_add(1, Relaxed);
        if oneway {
            self.c.oneway_request.fetch_add(1, Relaxed);
        }
        if let Some(counter) = self.for_code(code).counter {
            counter.fetch_add(1, Relaxed);
        }
    }

    /// Marks a request as in flight (it expects a response).
    #[inline]
    pub fn begin(&self, code: i32) {
        self.c.request_active.fetch_add(1, Relaxed);
        if let Some(g) = self.for_code(code).active {
            g.fetch_add(1, Relaxed);
        }
    }

    /// Ends an in-flight request, recording its latency.
    #[inline]
    pub fn end(&self, code: i32, elapsed: Duration) {
        self.c.request_active.fetch_sub(1, Relaxed);
        if let Some(g) = self.for_code(code).active {
            g.fetch_sub(1, Relaxed);
        }
        self.request_time.observe(elapsed);
        let idx = LATENCY_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(LATENCY_CODES.len());
        self.request_time_by_code[idx].observe(elapsed);
    }

    /// Marks a request as waiting for an upstream connection.
    #[inline]
    pub fn pending(&self, code: i32, delta: i64) {
        if let Some(g) = self.for_code(code).pending {
            g.fetch_add(delta, Relaxed);
        }
        self.c.total_pending.fetch_add(delta, Relaxed);
    }

    /// Counts a response sent to a client, by its response code.
    #[inline]
    pub fn on_response(&self, code: i32) {
        self.c.response.fetch_add(1, Relaxed);
        if code == 0 {
            self.c.response_success.fetch_add(1, Relaxed);
        } else {
            self.c.response_error.fetch_add(1, Relaxed);
        }
    }

    /// Adds to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Moves a gauge.
    #[inline]
    pub fn gauge(g: &AtomicI64, delta: i64) {
        g.fetch_add(delta, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(250));
        h.observe(Duration::from_micros(251));
        h.observe(Duration::from_secs(100));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(*s.buckets.last().unwrap(), 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_us, 250 + 251 + 100_000_000);
    }

    #[test]
    fn request_lifecycle_moves_counters_and_gauges() {
        let s = ProxyStats::default();
        s.on_request(rc::SEND_MESSAGE_V2, false);
        s.begin(rc::SEND_MESSAGE_V2);
        assert_eq!(s.c.send_message_v2_active.load(Relaxed), 1);
        assert_eq!(s.c.request_active.load(Relaxed), 1);
        s.end(rc::SEND_MESSAGE_V2, Duration::from_millis(2));
        s.on_response(0);
        assert_eq!(s.c.send_message_v2.load(Relaxed), 1);
        assert_eq!(s.c.send_message_v2_active.load(Relaxed), 0);
        assert_eq!(s.c.request_active.load(Relaxed), 0);
        assert_eq!(s.c.response_success.load(Relaxed), 1);
        let idx = LATENCY_CODES
            .iter()
            .position(|&c| c == rc::SEND_MESSAGE_V2)
            .unwrap();
        assert_eq!(s.request_time_by_code[idx].snapshot().count, 1);
    }

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut all: Vec<&str> = COUNTER_NAMES
            .iter()
            .chain(GAUGE_NAMES)
            .map(|(n, _)| *n)
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|s| s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())));
    }
}
