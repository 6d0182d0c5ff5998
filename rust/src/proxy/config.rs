//! The proxy's runtime configuration, as validated and handed over by Python (JSON).

use std::net::SocketAddr;
use std::time::Duration;

use regex::Regex;

use crate::net::addr::split_host_port;
use serde::Deserialize;

/// One upstream RocketMQ cluster: its name servers.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterConfig {
    pub name: String,
    pub namesrv: Vec<String>,
}

/// How a topic is matched to a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A topic route rule: the first matching rule names the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteRule {
    #[serde(rename = "match")]
    pub matcher: TopicMatch,
    pub cluster: String,
}

fn d_listen() -> String {
    "127.0.0.1:19876".into()
}
fn d_connect_timeout_ms() -> u64 {
    3_000
}
fn d_request_timeout_ms() -> u64 {
    5_000
}
fn d_idle_timeout_s() -> u64 {
    300
}
fn d_max_connections() -> usize {
    10_000
}
fn d_max_frame_size() -> usize {
    crate::codec::DEFAULT_MAX_FRAME_SIZE
}
fn d_route_cache_ttl_s() -> u64 {
    5
}
fn d_drain_timeout_ms() -> u64 {
    5_000
}
fn d_worker_threads() -> usize {
    2
}
fn d_max_buffered_frames() -> usize {
    1024
}
fn d_route_hedge_ms() -> u64 {
    500
}
fn d_route_stale_limit_s() -> u64 {
    300
}
fn d_frame_timeout_ms() -> u64 {
    30_000
}
fn d_frame_memory_budget() -> usize {
    64 << 20
}

/// Everything the Rust data path needs; Python validates field by field before building it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where clients connect as to a name server.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Host put into rewritten broker addresses; defaults to the listen host.
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// Host the broker listeners bind; defaults to the listen host.
    #[serde(default)]
    pub broker_bind_host: Option<String>,
    /// First port for broker listeners (one per real broker address); 0 picks free ports.
    #[serde(default)]
    pub broker_port_base: u16,
    pub clusters: Vec<ClusterConfig>,
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// Cluster for topics no rule matches, and for requests without a topic.
    #[serde(default)]
    pub default_cluster: Option<String>,
    #[serde(default = "d_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time a request may wait for its response (long polls add their own suspend time).
    #[serde(default = "d_request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "d_idle_timeout_s")]
    pub idle_timeout_s: u64,
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    #[serde(default = "d_max_frame_size")]
    pub max_frame_size: usize,
    #[serde(default = "d_route_cache_ttl_s")]
    pub route_cache_ttl_s: u64,
    #[serde(default = "d_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    #[serde(default = "d_worker_threads")]
    pub worker_threads: usize,
    /// Frames queued toward one peer before the relay stops reading from the other side.
    #[serde(default = "d_max_buffered_frames")]
    pub max_buffered_frames: usize,
    /// A route lookup with a cached route waits this long for the name server, then gets the
    /// cached route (the lookup goes on and refreshes the cache).
    #[serde(default = "d_route_hedge_ms")]
    pub route_hedge_ms: u64,
    /// A cached route this young is served instead of a name server's TOPIC_NOT_EXIST, and is
    /// used for hedging; older ones only while no name server answers at all.
    #[serde(default = "d_route_stale_limit_s")]
    pub route_stale_limit_s: u64,
    /// A client frame must be complete this long after its first byte arrived.
    #[serde(default = "d_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
    /// Bytes all client connections together may hold in partial frames larger than 64 KiB.
    #[serde(default = "d_frame_memory_budget")]
    pub frame_memory_budget: usize,
    /// Speak TLS to name servers and brokers (for clusters in TLS `enforcing` mode).
    #[serde(default)]
    pub upstream_tls: bool,
    /// PEM file of CA certificates to trust upstream instead of the built-in roots.
    #[serde(default)]
    pub upstream_tls_ca_file: Option<String>,
    /// Verify upstream certificates (on unless turned off explicitly).
    #[serde(default = "d_true")]
    pub upstream_tls_verify: bool,
    /// Name to send as SNI and verify upstream certificates against, instead of each host.
    #[serde(default)]
    pub upstream_tls_server_name: Option<String>,
    /// PEM certificate chain clients are shown; with `tls_key_file`, turns on TLS toward them.
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<String>,
    /// `enforcing` (TLS only) or `permissive` (TLS and plain clients).
    #[serde(default = "d_tls_mode")]
    pub tls_mode: String,
    /// Client certificates: `none`, `optional` (verified when sent) or `require` (mutual TLS).
    #[serde(default = "d_tls_client_auth")]
    pub tls_client_auth: String,
    /// PEM file of the CA certificates client certificates are verified against.
    #[serde(default)]
    pub tls_client_ca_file: Option<String>,
    /// Request policy rules, tried in order (see `policy`).
    #[serde(default)]
    pub policy: Vec<super::policy::RuleConfig>,
    /// What no rule decides: `data-path` (refuse cluster administration) or `allow-all`.
    #[serde(default = "d_policy_default")]
    pub policy_default: String,
    /// Label sets (topic, consumer group, broker) of the per-topic metrics; past it, traffic of
    /// new ones is counted under topic `__other__`. 0 turns per-topic metrics off.
    #[serde(default = "d_metrics_max_topics")]
    pub metrics_max_topics: usize,
    // The access log (`proxy::access`); its destination's own settings are Python's.
    /// Where the access log goes: `stdout`, `file` or `rocketmq`; None (the default) is off.
    #[serde(default)]
    pub access_log: Option<String>,
    /// Log 1 in this many requests (errors, local replies and slow requests always).
    #[serde(default = "d_access_log_sample")]
    pub access_log_sample: u64,
    /// Requests slower than this are always logged; 0 = no threshold.
    #[serde(default)]
    pub access_log_slow_ms: u64,
    /// Bytes of lines waiting for the destination; past it, lines are dropped and counted.
    #[serde(default = "d_access_log_buffer_bytes")]
    pub access_log_buffer_bytes: usize,
}

fn d_access_log_sample() -> u64 {
    1
}

fn d_access_log_buffer_bytes() -> usize {
    8 << 20
}

fn d_metrics_max_topics() -> usize {
    super::topics::DEFAULT_MAX_TOPICS
}

fn d_policy_default() -> String {
    "data-path".into()
}

fn d_tls_client_auth() -> String {
    "none".into()
}

fn d_tls_mode() -> String {
    "enforcing".into()
}

fn d_true() -> bool {
    true
}

/// A file option's value must name a file that can be read.
fn readable_file(name: &str, path: &Option<String>) -> Result<(), String> {
    match path {
        Some(p) if std::fs::File::open(p).is_err() => {
            Err(format!("{name}: {p:?} is not a readable file"))
        }
        _ => Ok(()),
    }
}

impl ProxyConfig {
    /// The default of every field that has one, by its config name: the one list of defaults
    /// (Python's `ProxyConfig`, `--help` and the README's table are checked against it).
    pub fn defaults() -> serde_json::Map<String, serde_json::Value> {
        let serde_json::Value::Object(map) = serde_json::json!({
            "listen": d_listen(),
            "advertise_host": null,
            "broker_bind_host": null,
            "broker_port_base": 0,
            "routes": [],
            "default_cluster": null,
            "connect_timeout_ms": d_connect_timeout_ms(),
            "request_timeout_ms": d_request_timeout_ms(),
            "idle_timeout_s": d_idle_timeout_s(),
            "max_connections": d_max_connections(),
            "max_frame_size": d_max_frame_size(),
            "route_cache_ttl_s": d_route_cache_ttl_s(),
            "drain_timeout_ms": d_drain_timeout_ms(),
            "worker_threads": d_worker_threads(),
            "max_buffered_frames": d_max_buffered_frames(),
            "route_hedge_ms": d_route_hedge_ms(),
            "route_stale_limit_s": d_route_stale_limit_s(),
            "frame_timeout_ms": d_frame_timeout_ms(),
            "frame_memory_budget": d_frame_memory_budget(),
            "upstream_tls": false,
            "upstream_tls_ca_file": null,
            "upstream_tls_verify": d_true(),
            "upstream_tls_server_name": null,
            "tls_cert_file": null,
            "tls_key_file": null,
            "tls_mode": d_tls_mode(),
            "tls_client_auth": d_tls_client_auth(),
            "tls_client_ca_file": null,
            "policy": [],
            "policy_default": d_policy_default(),
            "metrics_max_topics": d_metrics_max_topics(),
            "access_log": null,
            "access_log_sample": d_access_log_sample(),
            "access_log_slow_ms": 0,
            "access_log_buffer_bytes": d_access_log_buffer_bytes(),
        }) else {
            unreachable!("a JSON object literal")
        };
        map
    }

    /// The TLS client for upstream connections, when `upstream_tls` is on; errors name the
    /// option at fault.
    pub fn upstream_tls(&self) -> Result<Option<std::sync::Arc<crate::net::tls::Tls>>, String> {
        self.check_upstream_tls()?;
        if !self.upstream_tls {
            return Ok(None);
        }
        let opts = crate::net::tls::TlsOptions {
            ca_file: self.upstream_tls_ca_file.clone(),
            insecure_skip_verify: !self.upstream_tls_verify,
            server_name: self.upstream_tls_server_name.clone(),
        };
        crate::net::tls::Tls::new(&opts)
            .map(|t| Some(std::sync::Arc::new(t)))
            .map_err(|e| {
                if e.starts_with("tls_") {
                    format!("upstream_{e}")
                } else {
                    e
                }
            })
    }

    /// TLS toward clients, when a certificate and key are configured.
    pub(crate) fn client_tls(&self) -> Result<Option<crate::net::io::ServerTls>, String> {
        self.check_client_tls()?;
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => crate::net::io::ServerTls::new(
                c,
                k,
                self.tls_mode == "permissive",
                self.client_certs()?,
            )
            .map(Some),
            _ => Ok(None),
        }
    }

    /// Parses and checks the JSON handed over by Python.
    pub fn from_json(s: &str) -> Result<ProxyConfig, String> {
        let c: ProxyConfig = serde_json::from_str(s).map_err(|e| format!("proxy config: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every field, naming the first wrong one and what was expected: the one
    /// validation of the proxy's config (Python's `ProxyConfig.validate` calls it through
    /// `_core.check_proxy_config` and adds only its own fields, `admin` and `log_level`).
    pub fn validate(&self) -> Result<(), String> {
        let ip_port = self.listen.parse::<SocketAddr>().is_ok();
        if !ip_port {
            return Err(format!(
                "listen: expected IP:PORT (e.g. 127.0.0.1:19876), got {:?}",
                self.listen
            ));
        }
        if self.clusters.is_empty() {
            return Err("clusters: expected at least one cluster with name servers".into());
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if c.name.is_empty() {
                return Err(format!("clusters[{i}].name: expected a non-empty string"));
            }
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                return Err(format!(
                    "clusters[{i}].name: cluster {:?} is defined twice",
                    c.name
                ));
            }
            if c.namesrv.is_empty() {
                return Err(format!(
                    "clusters[{i}].namesrv: expected at least one HOST:PORT"
                ));
            }
            for a in &c.namesrv {
                split_host_port(a).map_err(|e| format!("clusters[{i}].namesrv: {e}"))?;
            }
        }
        TopicRouter::new(self)?;
        super::policy::Policy::new(&self.policy, &self.policy_default)?;
        let ranges: [(&str, u64, u64, u64); 15] = [
            ("broker_port_base", self.broker_port_base.into(), 0, 65_535),
            ("connect_timeout_ms", self.connect_timeout_ms, 1, 3_600_000),
            ("request_timeout_ms", self.request_timeout_ms, 1, 3_600_000),
            ("idle_timeout_s", self.idle_timeout_s, 0, 7 * 86_400),
            (
                "max_connections",
                self.max_connections as u64,
                1,
                10_000_000,
            ),
            ("max_frame_size", self.max_frame_size as u64, 1024, 1 << 30),
            ("route_cache_ttl_s", self.route_cache_ttl_s, 0, 86_400),
            ("drain_timeout_ms", self.drain_timeout_ms, 0, 3_600_000),
            ("worker_threads", self.worker_threads as u64, 1, 256),
            (
                "max_buffered_frames",
                self.max_buffered_frames as u64,
                1,
                1 << 20,
            ),
            ("frame_timeout_ms", self.frame_timeout_ms, 1, 3_600_000),
            ("route_hedge_ms", self.route_hedge_ms, 1, 3_600_000),
            (
                "route_stale_limit_s",
                self.route_stale_limit_s,
                0,
                7 * 86_400,
            ),
            (
                "frame_memory_budget",
                self.frame_memory_budget as u64,
                1 << 20,
                1 << 40,
            ),
            (
                "metrics_max_topics",
                self.metrics_max_topics as u64,
                0,
                1_000_000,
            ),
        ];
        for (name, v, low, high) in ranges {
            if !(low..=high).contains(&v) {
                return Err(format!(
                    "{name}: expected an integer from {low} to {high}, got {v}"
                ));
            }
        }
        if self.frame_memory_budget < self.max_frame_size {
            return Err(format!(
                "frame_memory_budget: expected at least max_frame_size ({}), got {}",
                self.max_frame_size, self.frame_memory_budget
            ));
        }
        for (name, v) in [
            ("advertise_host", &self.advertise_host),
            ("broker_bind_host", &self.broker_bind_host),
        ] {
            if let Some(h) = v {
                let bare = h.trim_start_matches('[').trim_end_matches(']');
                let v6 = bare.parse::<std::net::Ipv6Addr>().is_ok();
                if h.is_empty() || (bare.contains(':') && !v6) {
                    return Err(format!(
                        "{name}: expected a host name or IP address, got {h:?}"
                    ));
                }
            }
        }
        self.check_access_log()?;
        self.check_client_tls()?;
        self.check_upstream_tls()
    }

    /// What `tls_client_auth` and `tls_client_ca_file` ask of clients; errors name the field.
    fn client_certs(&self) -> Result<Option<crate::net::io::ClientCerts<'_>>, String> {
        let required = match self.tls_client_auth.as_str() {
            "none" => {
                if self.tls_client_ca_file.is_some() {
                    return Err("tls_client_ca_file: only applies with tls_client_auth = \
                                optional or require"
                        .into());
                }
                return Ok(None);
            }
            "optional" => false,
            "require" => true,
            other => {
                return Err(format!(
                    "tls_client_auth: expected none, optional or require, got {other:?}"
                ))
            }
        };
        if self.tls_cert_file.is_none() {
            return Err(
                "tls_client_auth: client certificates need TLS toward clients \
                        (tls_cert_file and tls_key_file)"
                    .into(),
            );
        }
        let Some(ca_file) = self.tls_client_ca_file.as_deref() else {
            return Err(
                "tls_client_ca_file: expected with tls_client_auth = optional or \
                        require (the CA certificates client certificates must chain to)"
                    .into(),
            );
        };
        Ok(Some(crate::net::io::ClientCerts { ca_file, required }))
    }

    fn check_access_log(&self) -> Result<(), String> {
        if let Some(d) = &self.access_log {
            if !matches!(d.as_str(), "stdout" | "file" | "rocketmq") {
                return Err(format!(
                    "access_log: expected stdout, file or rocketmq, got {d:?}"
                ));
            }
        }
        for (name, v, low, high) in [
            ("access_log_sample", self.access_log_sample, 1, 1_000_000),
            ("access_log_slow_ms", self.access_log_slow_ms, 0, 3_600_000),
            (
                "access_log_buffer_bytes",
                self.access_log_buffer_bytes as u64,
                64 << 10,
                1 << 30,
            ),
        ] {
            if !(low..=high).contains(&v) {
                return Err(format!(
                    "{name}: expected an integer from {low} to {high}, got {v}"
                ));
            }
        }
        Ok(())
    }

    fn check_client_tls(&self) -> Result<(), String> {
        if !matches!(self.tls_mode.as_str(), "enforcing" | "permissive") {
            return Err(format!(
                "tls_mode: expected enforcing or permissive, got {:?}",
                self.tls_mode
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err("tls_key_file: expected together with tls_cert_file".into())
            }
            (None, Some(_)) => {
                return Err("tls_cert_file: expected together with tls_key_file".into())
            }
            _ => {}
        }
        for (name, v) in [
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
            ("tls_client_ca_file", &self.tls_client_ca_file),
        ] {
            readable_file(name, v)?;
        }
        self.client_certs().map(|_| ())
    }

    fn check_upstream_tls(&self) -> Result<(), String> {
        for (name, v) in [
            ("upstream_tls_ca_file", &self.upstream_tls_ca_file),
            ("upstream_tls_server_name", &self.upstream_tls_server_name),
        ] {
            if v.as_deref() == Some("") {
                return Err(format!("{name}: expected a non-empty string, got \"\""));
            }
        }
        if !self.upstream_tls {
            for (set, name) in [
                (self.upstream_tls_ca_file.is_some(), "upstream_tls_ca_file"),
                (!self.upstream_tls_verify, "upstream_tls_verify"),
                (
                    self.upstream_tls_server_name.is_some(),
                    "upstream_tls_server_name",
                ),
            ] {
                if set {
                    return Err(format!("{name}: only applies with upstream_tls = true"));
                }
            }
            return Ok(());
        }
        readable_file("upstream_tls_ca_file", &self.upstream_tls_ca_file)?;
        if self.upstream_tls_ca_file.is_some() && !self.upstream_tls_verify {
            return Err("upstream_tls_verify: false skips verification, so \
                        upstream_tls_ca_file would be ignored; set one or the other"
                .into());
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_s > 0).then(|| Duration::from_secs(self.idle_timeout_s))
    }
    pub fn route_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.route_cache_ttl_s)
    }
    pub fn route_hedge(&self) -> Duration {
        Duration::from_millis(self.route_hedge_ms)
    }
    pub fn route_stale_limit(&self) -> Duration {
        Duration::from_secs(self.route_stale_limit_s)
    }
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// The host clients are told to connect to for brokers.
    pub fn advertise_host(&self) -> String {
        match &self.advertise_host {
            Some(h) => h.clone(),
            None => self
                .listen
                .parse::<SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "127.0.0.1".into()),
        }
    }

    /// The host broker listeners bind to.
    pub fn broker_bind_host(&self) -> String {
        match &self.broker_bind_host {
            Some(h) => h.clone(),
            None => self
                .listen
                .parse::<SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "127.0.0.1".into()),
        }
    }
}

/// Compiled topic routing: exact, prefix and regex rules in order, then the default.
#[derive(Debug)]
pub struct TopicRouter {
    rules: Vec<(Matcher, usize)>,
    default: usize,
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl TopicRouter {
    /// Builds the router; cluster indexes refer to `config.clusters`.
    pub fn new(config: &ProxyConfig) -> Result<TopicRouter, String> {
        let index = |field: String, n: &str| {
            config
                .clusters
                .iter()
                .position(|c| c.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        config.clusters.iter().map(|c| c.name.as_str()).collect();
                    format!("{field}: expected one of {names:?}, got {n:?}")
                })
        };
        let mut rules = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let cluster = index(format!("routes[{i}].cluster"), &r.cluster)?;
            let m = match &r.matcher {
                TopicMatch::Exact(s) => Matcher::Exact(s.clone()),
                TopicMatch::Prefix(s) => Matcher::Prefix(s.clone()),
                TopicMatch::Regex(s) => Matcher::Regex(Regex::new(s).map_err(|e| {
                    format!("routes[{i}].regex: not a valid regular expression: {e}")
                })?),
            };
            rules.push((m, cluster));
        }
        let default = match &config.default_cluster {
            Some(d) => index("default_cluster".into(), d)?,
            None => 0,
        };
        Ok(TopicRouter { rules, default })
    }

    /// Index of the cluster serving `topic`.
    pub fn cluster_for(&self, topic: &str) -> usize {
        for (m, c) in &self.rules {
            let hit = match m {
                Matcher::Exact(s) => s == topic,
                Matcher::Prefix(p) => topic.starts_with(p.as_str()),
                Matcher::Regex(r) => r.is_match(topic),
            };
            if hit {
                return *c;
            }
        }
        self.default
    }

    /// Index of the default cluster.
    pub fn default_cluster(&self) -> usize {
        self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::from_json(&format!(
            r#"{{"clusters":[{{"name":"a","namesrv":["127.0.0.1:9876"]}},{{"name":"b","namesrv":["127.0.0.1:9877"]}}]{extra}}}"#
        ))
    }

    #[test]
    fn defaults_are_the_fields_own_defaults() {
        // Every key is a field (unknown fields are refused), and spelling every default out
        // gives the same config as leaving every field out.
        let mut given = ProxyConfig::defaults();
        given.insert(
            "clusters".into(),
            serde_json::json!([{"name": "a", "namesrv": ["127.0.0.1:9876"]}]),
        );
        let spelled = ProxyConfig::from_json(&serde_json::Value::Object(given).to_string());
        let omitted =
            ProxyConfig::from_json(r#"{"clusters":[{"name":"a","namesrv":["127.0.0.1:9876"]}]}"#);
        assert_eq!(
            format!("{:?}", spelled.unwrap()),
            format!("{:?}", omitted.unwrap())
        );
        // The documented defaults of the two fields that once drifted.
        assert_eq!(ProxyConfig::defaults()["request_timeout_ms"], 5000);
        assert_eq!(ProxyConfig::defaults()["route_cache_ttl_s"], 5);
    }

    #[test]
    fn upstream_tls_options_are_checked() {
        assert!(cfg("").unwrap().upstream_tls().unwrap().is_none());
        let e = cfg(r#","upstream_tls_ca_file":"/ca.pem""#).unwrap_err();
        assert_eq!(
            e,
            "upstream_tls_ca_file: only applies with upstream_tls = true"
        );
        let e =
            cfg(r#","upstream_tls":true,"upstream_tls_ca_file":"/nonexistent.pem""#).unwrap_err();
        assert_eq!(
            e,
            "upstream_tls_ca_file: \"/nonexistent.pem\" is not a readable file"
        );
        let e = cfg(r#","upstream_tls":true,"upstream_tls_server_name":"""#).unwrap_err();
        assert!(e.starts_with("upstream_tls_server_name: "), "{e}");
        // A name rustls cannot use is found when the TLS client is built.
        let e = cfg(r#","upstream_tls":true,"upstream_tls_server_name":"bad name!""#)
            .unwrap()
            .upstream_tls()
            .unwrap_err();
        assert!(e.starts_with("upstream_tls_server_name: "), "{e}");
        let t = cfg(r#","upstream_tls":true,"upstream_tls_verify":false"#)
            .unwrap()
            .upstream_tls()
            .unwrap()
            .unwrap();
        assert!(t.insecure());
    }

    #[test]
    fn client_tls_options_are_checked() {
        assert!(cfg("").unwrap().client_tls().unwrap().is_none());
        assert_eq!(
            cfg(r#","tls_mode":"strict""#).unwrap_err(),
            "tls_mode: expected enforcing or permissive, got \"strict\""
        );
        assert_eq!(
            cfg(r#","tls_cert_file":"/c.pem""#).unwrap_err(),
            "tls_key_file: expected together with tls_cert_file"
        );
        assert_eq!(
            cfg(r#","tls_key_file":"/k.pem""#).unwrap_err(),
            "tls_cert_file: expected together with tls_key_file"
        );
        let e = cfg(r#","tls_cert_file":"/nonexistent.pem","tls_key_file":"/k.pem""#).unwrap_err();
        assert_eq!(
            e,
            "tls_cert_file: \"/nonexistent.pem\" is not a readable file"
        );
        let td = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let tls = format!(
            r#","tls_cert_file":"{td}/producer/testdata/server.pem","tls_key_file":"{td}/producer/testdata/server.key""#
        );
        let ca = format!(r#","tls_client_ca_file":"{td}/net/testdata/client-ca.pem""#);
        for (extra, want) in [
            (
                r#","tls_client_auth":"always""#.to_string(),
                "tls_client_auth: expected none, optional or require, got \"always\"",
            ),
            (
                format!(r#"{tls},"tls_client_auth":"require""#),
                "tls_client_ca_file: expected with tls_client_auth = optional or require",
            ),
            (
                format!(r#"{tls}{ca}"#),
                "tls_client_ca_file: only applies with tls_client_auth = optional or require",
            ),
            (
                format!(r#"{ca},"tls_client_auth":"optional""#),
                "tls_client_auth: client certificates need TLS toward clients",
            ),
            (
                format!(r#"{tls},"tls_client_auth":"require","tls_client_ca_file":"/no.pem""#),
                "tls_client_ca_file: \"/no.pem\" is not a readable file",
            ),
        ] {
            let e = cfg(&extra).unwrap_err();
            assert!(e.starts_with(want), "{extra}: {e}");
        }
        let c = cfg(&format!(r#"{tls}{ca},"tls_client_auth":"require""#)).unwrap();
        assert!(c.client_tls().unwrap().is_some());
    }

    #[test]
    fn routes_topics_in_rule_order_then_default() {
        let c = cfg(r#","default_cluster":"b","routes":[{"match":{"exact":"orders"},"cluster":"a"},{"match":{"prefix":"log_"},"cluster":"a"},{"match":{"regex":"^m[0-9]+$"},"cluster":"a"}]"#).unwrap();
        let r = TopicRouter::new(&c).unwrap();
        assert_eq!(r.cluster_for("orders"), 0);
        assert_eq!(r.cluster_for("orders2"), 1);
        assert_eq!(r.cluster_for("log_x"), 0);
        assert_eq!(r.cluster_for("m12"), 0);
        assert_eq!(r.cluster_for("m12x"), 1);
        assert_eq!(r.default_cluster(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let e = cfg(r#","default_cluster":"zz""#).unwrap_err();
        assert!(e.starts_with("default_cluster:"), "{e}");
        let e = cfg(r#","routes":[{"match":{"regex":"("},"cluster":"a"}]"#).unwrap_err();
        assert!(
            e.starts_with("routes[0].regex: not a valid regular expression"),
            "{e}"
        );
        let e = cfg(r#","worker_threads":0"#).unwrap_err();
        assert_eq!(
            e,
            "worker_threads: expected an integer from 1 to 256, got 0"
        );
        let e = cfg(r#","advertise_host":"a:b""#).unwrap_err();
        assert!(e.starts_with("advertise_host: expected a host name"), "{e}");
        let e = ProxyConfig::from_json(
            r#"{"clusters":[{"name":"a","namesrv":["h:1"]},{"name":"a","namesrv":["h:2"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e, "clusters[1].name: cluster \"a\" is defined twice");
        let e = cfg(r#","listen":"nowhere""#).unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = cfg(r#","access_log":"syslog""#).unwrap_err();
        assert_eq!(
            e,
            "access_log: expected stdout, file or rocketmq, got \"syslog\""
        );
        let e = cfg(r#","access_log_sample":0"#).unwrap_err();
        assert!(
            e.starts_with("access_log_sample: expected an integer"),
            "{e}"
        );
        let e = cfg(r#","bogus":1"#).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
