//! Producer statistics: relaxed atomics declared once, read as one snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

macro_rules! producer_stats {
    ($($name:ident : $help:literal,)*) => {
        /// Every counter of one producer.
        #[derive(Debug, Default)]
        pub struct ProducerStats {
            $(#[doc = $help] pub $name: AtomicU64,)*
            /// Open connections (name servers and brokers).
            pub connections: AtomicI64,
            /// Non-success response codes from brokers and name servers, by code.
            errors_by_code: Mutex<BTreeMap<i32, u64>>,
        }

        /// (name, help) of every counter, in declaration order.
        pub const STAT_NAMES: &[(&str, &str)] = &[
            $((stringify!($name), $help),)*
            ("connections", "Open connections to name servers and brokers (a gauge)."),
        ];

        impl ProducerStats {
            /// Every counter and the connections gauge by name, then `errors_code_<N>` for
            /// each response code seen.
            pub fn snapshot(&self) -> Vec<(String, i64)> {
                let mut out: Vec<(String, i64)> = vec![
                    $((stringify!($name).to_owned(), self.$name.load(Relaxed) as i64),)*
                    ("connections".to_owned(), self.connections.load(Relaxed)),
                ];
                for (code, n) in crate::sync::lock(&self.errors_by_code).iter() {
                    out.push((format!("errors_code_{code}"), *n as i64));
                }
                out
            }
        }
    };
}

producer_stats! {
    requests: "Send requests written to brokers (SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE, retries included).",
    responses: "Responses to send requests, whatever their code.",
    send_ok: "Send requests the broker stored (codes 0, 10, 11, 12).",
    messages_sent: "Messages the broker stored.",
    send_failures: "send/send_batch calls that raised after all attempts.",
    errors: "Send attempts that failed (error response, timeout or connection problem).",
    timeouts: "Requests that got no response within the timeout.",
    retries: "Send attempts repeated after a retryable failure.",
    connection_errors: "Requests lost to connect failures or closed connections.",
    tls_handshake_failures: "TLS handshakes that failed (certificate refused or connection lost).",
    connects: "Connections opened.",
    sent_flush_disk_timeout: "Sends stored with FLUSH_DISK_TIMEOUT (10).",
    sent_slave_not_available: "Sends stored with SLAVE_NOT_AVAILABLE (11).",
    sent_flush_slave_timeout: "Sends stored with FLUSH_SLAVE_TIMEOUT (12).",
    route_lookups: "Route lookups for topics not cached yet that succeeded.",
    route_lookup_failures: "Route lookups for uncached topics that failed on every name server.",
    default_topic_routes: "Routes borrowed from TBW102 for topics the name servers did not know (auto_create_topic), at lookup or refresh.",
    route_refreshes: "Background route refreshes that succeeded.",
    route_refresh_failures: "Background route refreshes that failed on every name server (the cached route stays).",
    cached_route_served: "Send attempts served from a cached route whose last refresh failed.",
    namesrv_failovers: "Name server requests that moved on to the next name server.",
    bytes_sent: "Bytes written to brokers and name servers.",
    bytes_received: "Bytes read from brokers and name servers.",
    tls_insecure_skip_verify: "1 if certificate verification is off (tls_insecure_skip_verify=True).",
}

impl ProducerStats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Counts one non-success response code.
    pub fn error_code(&self, code: i32) {
        *crate::sync::lock(&self.errors_by_code)
            .entry(code)
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_every_counter_and_codes() {
        let s = ProducerStats::default();
        ProducerStats::add(&s.requests, 3);
        s.error_code(16);
        s.error_code(16);
        let snap: BTreeMap<String, i64> = s.snapshot().into_iter().collect();
        assert_eq!(snap["requests"], 3);
        assert_eq!(snap["errors_code_16"], 2);
        assert_eq!(snap["connections"], 0);
        for (name, _) in STAT_NAMES {
            assert!(snap.contains_key(*name), "{name}");
        }
    }
}
