//! The producer the logger uses: topic routes from the name servers (failover, periodic
//! refresh, cached routes kept while the name servers are down; opt-in, TBW102's route for a
//! topic the brokers are to create, as Java's producer does), round-robin queue selection,
//! SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE, per-request timeouts, retry on another broker for
//! the response codes Java's producer retries, TLS (rustls) and AK/SK request signing.
//!
//! Everything is async and runtime-agnostic except `Producer::new`, which spawns the route
//! refresh task on the runtime handle it is given.

pub mod acl;
mod conn;
pub mod message;
pub mod route;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::codec::codes::{request, response, response_name};
use crate::codec::route::TopicRouteData;
use crate::codec::{LanguageCode, RemotingCommand, SerializeType, DEFAULT_MAX_FRAME_SIZE};

pub use crate::net::tls::TlsOptions;
pub use acl::Credentials;
pub use message::{BatchEncoder, EncodedBatch, InvalidMessage, Message, UniqIdGen};
pub use route::PublishInfo;
pub use stats::{ProducerStats, STAT_NAMES};

use conn::Pool;

/// Response codes after which Java's DefaultMQProducer retries on another broker.
pub const RETRY_RESPONSE_CODES: [i32; 8] = [
    response::TOPIC_NOT_EXIST,
    response::SERVICE_NOT_AVAILABLE,
    response::SYSTEM_ERROR,
    response::SYSTEM_BUSY,
    response::NO_PERMISSION,
    response::NO_BUYER_ID,
    response::NOT_IN_CURRENT_UNIT,
    response::GO_AWAY,
];

/// The topic a broker creates new topics from when auto-creation is on.
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Queues per broker of an auto-created topic (header `d`, Java's defaultTopicQueueNums); also
/// the cap on each broker's queues in a route borrowed from `DEFAULT_TOPIC`.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// RocketMQ's default `maxMessageSize`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Largest request body allowed: the frame limit minus room for the header.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = DEFAULT_MAX_FRAME_SIZE - 64 * 1024;

/// What went wrong, which decides whether Java's producer would retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A broker answered with a non-success code.
    Response,
    /// The name servers answered with a non-success code (17: the topic does not exist).
    NameServer,
    /// No response within the timeout.
    Timeout,
    /// Connect failed or the connection closed.
    Connection,
    /// The server's TLS certificate was refused.
    Certificate,
    /// The route has no writable queue.
    NoRoute,
    /// The message cannot be sent as given (too large, empty body...).
    InvalidMessage,
    /// The producer was closed.
    Closed,
}

/// A failed send or route lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerError {
    pub kind: ErrorKind,
    /// The RocketMQ response code if a server answered.
    pub code: Option<i32>,
    pub message: String,
}

impl ProducerError {
    pub fn new(kind: ErrorKind, code: Option<i32>, message: impl Into<String>) -> Self {
        ProducerError {
            kind,
            code,
            message: message.into(),
        }
    }

    /// The error after `close()`.
    pub fn closed() -> Self {
        ProducerError::new(ErrorKind::Closed, None, "the producer is closed")
    }

    /// Whether Java's producer would retry: its retry codes, timeouts and connection errors.
    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Response => self.code.is_some_and(|c| RETRY_RESPONSE_CODES.contains(&c)),
            // 17 from the name servers is final; anything else they say may pass.
            ErrorKind::NameServer => self.code != Some(response::TOPIC_NOT_EXIST),
            ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::NoRoute => true,
            ErrorKind::Certificate | ErrorKind::InvalidMessage | ErrorKind::Closed => false,
        }
    }

    /// The name servers said the topic does not exist (17 TOPIC_NOT_EXIST).
    pub fn topic_not_exist(&self) -> bool {
        self.kind == ErrorKind::NameServer && self.code == Some(response::TOPIC_NOT_EXIST)
    }
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProducerError {}

fn code_label(code: i32) -> String {
    match response_name(code) {
        Some(n) => format!("{code} {n}"),
        None => code.to_string(),
    }
}

/// Producer settings; `validate` names the field at fault.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Name server addresses, HOST:PORT, tried in order.
    pub nameservers: Vec<String>,
    pub producer_group: String,
    /// Per-request timeout (connect and TLS handshake included).
    pub timeout: Duration,
    /// TLS for every connection (name servers and brokers), when set.
    pub tls: Option<TlsOptions>,
    /// (access key, secret key) for request signing.
    pub credentials: Option<(String, String)>,
    /// Extra attempts after a retryable failure.
    pub retry_times: u32,
    pub route_refresh_interval: Duration,
    /// Largest request body (one message, or one SEND_BATCH_MESSAGE body).
    pub max_message_size: usize,
    /// For a topic the name servers do not know, send on the route of `DEFAULT_TOPIC` (TBW102)
    /// so that the brokers create it on the first message, as Java's DefaultMQProducer does.
    /// Works only with brokers that have `autoCreateTopicEnable=true` (they alone route TBW102).
    pub auto_create_topic: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            nameservers: Vec::new(),
            producer_group: "rmqfast_producer".into(),
            timeout: Duration::from_secs(3),
            tls: None,
            credentials: None,
            retry_times: 2,
            route_refresh_interval: Duration::from_secs(30),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            auto_create_topic: false,
        }
    }
}

fn validate_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > 255 {
        return Err("producer_group: expected 1 to 255 characters".into());
    }
    if !group
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
    {
        return Err(format!(
            "producer_group: {group:?} may hold only letters, digits, '%', '|', '_' and '-'"
        ));
    }
    Ok(())
}

impl ProducerConfig {
    /// Checks every field; the error starts with the field name.
    pub fn validate(&self) -> Result<(), String> {
        if self.nameservers.is_empty() {
            return Err("nameservers: expected at least one HOST:PORT".into());
        }
        for (i, ns) in self.nameservers.iter().enumerate() {
            match crate::net::addr::split_host_port(ns) {
                Ok((_, 0)) => return Err(format!("nameservers[{i}]: port 0 in {ns:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("nameservers[{i}]: {e}")),
            }
        }
        validate_group(&self.producer_group)?;
        if self.timeout.is_zero() {
            return Err("timeout: expected a positive number of seconds".into());
        }
        if self.route_refresh_interval.is_zero() {
            return Err("route_refresh_interval: expected a positive number of seconds".into());
        }
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(format!(
                "max_message_size: expected 1 to {MAX_MESSAGE_SIZE_LIMIT} bytes, got {}",
                self.max_message_size
            ));
        }
        if let Some((ak, sk)) = &self.credentials {
            if ak.is_empty() {
                return Err("access_key: must not be empty".into());
            }
            if sk.is_empty() {
                return Err("secret_key: must not be empty".into());
            }
        }
        if let Some(t) = &self.tls {
            if t.insecure_skip_verify && t.ca_file.is_some() {
                return Err(
                    "tls_verify: False cannot be combined with tls_ca_file (nothing would be verified against it)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Where a send request was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The client id (UNIQ_KEY); for a batch request, the ids of its messages joined by commas.
    pub msg_id: String,
    /// The broker's id (store host + commit log offset); comma-joined for a batch request.
    pub offset_msg_id: String,
    pub queue_id: i32,
    /// Offset of the (first) message in its queue.
    pub queue_offset: i64,
    pub broker_name: String,
    pub topic: String,
    /// 0, or 10/11/12 when stored but not flushed or replicated in time.
    pub status: i32,
}

/// A topic's route as fetched from a name server.
#[derive(Debug, Clone)]
pub struct CachedRoute {
    pub data: TopicRouteData,
    pub publish: PublishInfo,
    /// When it was fetched (epoch ms).
    pub fetched_at_ms: u64,
    /// The name servers did not know the topic: this is `DEFAULT_TOPIC`'s route, queues capped
    /// at `DEFAULT_TOPIC_QUEUE_NUMS` (auto_create_topic). Provisional: every refresh asks for
    /// the topic's own route again and takes it as soon as the name servers have it.
    pub from_default_topic: bool,
}

struct TopicEntry {
    route: RwLock<Arc<CachedRoute>>,
    /// Round-robin position, kept across refreshes.
    index: AtomicUsize,
    /// The last refresh failed on every name server.
    stale: AtomicBool,
}

impl TopicEntry {
    fn current(&self) -> Arc<CachedRoute> {
        crate::sync::read(&self.route).clone()
    }
}

struct Inner {
    config: ProducerConfig,
    pool: Pool,
    credentials: Option<Credentials>,
    stats: Arc<ProducerStats>,
    ids: UniqIdGen,
    routes: RwLock<HashMap<String, Arc<TopicEntry>>>,
    lookup_lock: tokio::sync::Mutex<()>,
    ns_index: AtomicUsize,
    opaque: AtomicI32,
    closed: AtomicBool,
    refresh_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.refresh_task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
        self.pool.close();
    }
}

/// A RocketMQ producer; cheap to clone (clones share connections, routes and stats).
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("nameservers", &self.inner.config.nameservers)
            .field("producer_group", &self.inner.config.producer_group)
            .finish_non_exhaustive()
    }
}

/// The IPv4 address of this host as the first name server would see it, for message ids
/// (a UDP "connect" sends nothing); loopback when that cannot be found.
fn local_ipv4(nameservers: &[String]) -> [u8; 4] {
    let found = nameservers
        .first()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .filter(std::net::SocketAddr::is_ipv4)
        .and_then(|target| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect(target).ok()?;
            s.local_addr().ok()
        });
    match found {
        Some(std::net::SocketAddr::V4(a)) => a.ip().octets(),
        _ => [127, 0, 0, 1],
    }
}

/// What one send request carries, whatever the attempt.
struct SendSpec<'a> {
    code: i32,
    body: Bytes,
    /// Header `i`.
    properties: &'a str,
    uniq_ids: &'a str,
    born_ms: u64,
    messages: usize,
}

impl Producer {
    /// Validates the configuration and starts the route refresh task on `runtime`; nothing
    /// connects until the first send.
    pub fn new(config: ProducerConfig, runtime: &tokio::runtime::Handle) -> Result<Self, String> {
        config.validate()?;
        let tls = match &config.tls {
            Some(opts) => Some(crate::net::tls::Tls::new(opts)?),
            None => None,
        };
        let stats = Arc::new(ProducerStats::default());
        if tls.as_ref().is_some_and(crate::net::tls::Tls::insecure) {
            ProducerStats::add(&stats.tls_insecure_skip_verify, 1);
        }
        let credentials = config
            .credentials
            .as_ref()
            .map(|(ak, sk)| Credentials::new(ak, sk));
        let inner = Arc::new(Inner {
            pool: Pool::new(tls, stats.clone(), DEFAULT_MAX_FRAME_SIZE),
            credentials,
            stats,
            ids: UniqIdGen::new(local_ipv4(&config.nameservers)),
            routes: RwLock::new(HashMap::new()),
            lookup_lock: tokio::sync::Mutex::new(()),
            ns_index: AtomicUsize::new(0),
            opaque: AtomicI32::new(1),
            closed: AtomicBool::new(false),
            refresh_task: Mutex::new(None),
            config,
        });
        let task = runtime.spawn(refresh_loop(
            Arc::downgrade(&inner),
            inner.config.route_refresh_interval,
        ));
        if let Ok(mut t) = inner.refresh_task.lock() {
            *t = Some(task);
        }
        Ok(Producer { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Builds a message (UNIQ_KEY, KEYS, TAGS, WAIT and user properties).
    pub fn message<'a, I>(
        &self,
        body: Bytes,
        keys: Option<&str>,
        tags: Option<&str>,
        properties: I,
    ) -> Result<Message, ProducerError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let m = Message::build(&self.inner.ids, body, keys, tags, properties).map_err(|e| {
            ProducerError::new(
                ErrorKind::InvalidMessage,
                Some(response::MESSAGE_ILLEGAL),
                e,
            )
        })?;
        if m.body.len() > self.inner.config.max_message_size {
            return Err(ProducerError::new(
                ErrorKind::InvalidMessage,
                Some(response::MESSAGE_ILLEGAL),
                format!(
                    "the body has {} bytes, more than max_message_size ({})",
                    m.body.len(),
                    self.inner.config.max_message_size
                ),
            ));
        }
        Ok(m)
    }

    /// An encoder for one `send_batch` call.
    pub fn batch_encoder(&self, size_hint: usize) -> BatchEncoder<'_> {
        BatchEncoder::new(
            &self.inner.ids,
            self.inner.config.max_message_size,
            size_hint,
        )
    }

    /// Turns an encoder refusal into the error Java gives (MESSAGE_ILLEGAL, not retryable).
    pub fn invalid_message(e: &InvalidMessage) -> ProducerError {
        ProducerError::new(
            ErrorKind::InvalidMessage,
            Some(response::MESSAGE_ILLEGAL),
            format!("messages[{}]: {}", e.index, e.reason),
        )
    }

    /// Sends one message with SEND_MESSAGE_V2.
    pub async fn send(&self, topic: &str, msg: &Message) -> Result<SendResult, ProducerError> {
        self.check_topic(topic)?;
        let spec = SendSpec {
            code: request::SEND_MESSAGE_V2,
            body: msg.body.clone(),
            properties: &msg.properties,
            uniq_ids: &msg.uniq_id,
            born_ms: message::now_ms(),
            messages: 1,
        };
        self.send_with_retry(topic, &spec).await.inspect_err(|_| {
            ProducerStats::add(&self.inner.stats.send_failures, 1);
        })
    }

    /// Sends an encoded batch as one SEND_BATCH_MESSAGE per chunk, in order; one result per
    /// request. On failure, the chunks before the failing one were stored (the error says how
    /// many messages).
    pub async fn send_batch(
        &self,
        topic: &str,
        batch: &EncodedBatch,
    ) -> Result<Vec<SendResult>, ProducerError> {
        self.check_topic(topic)?;
        let mut results = Vec::with_capacity(batch.chunks.len());
        let mut props = Vec::with_capacity(16);
        crate::codec::properties::push_property(
            &mut props,
            crate::codec::properties::WAIT,
            b"true",
        );
        let props = String::from_utf8(props).unwrap_or_default();
        for (i, chunk) in batch.chunks.iter().enumerate() {
            let spec = SendSpec {
                code: request::SEND_BATCH_MESSAGE,
                body: batch.chunk_body(i),
                properties: &props,
                uniq_ids: &chunk.uniq_ids,
                born_ms: message::now_ms(),
                messages: chunk.messages.len(),
            };
            match self.send_with_retry(topic, &spec).await {
                Ok(r) => results.push(r),
                Err(mut e) => {
                    ProducerStats::add(&self.inner.stats.send_failures, 1);
                    if i > 0 {
                        e.message = format!(
                            "{} ({} of {} requests, messages 0..{}, were stored before this failure)",
                            e.message, i, batch.chunks.len(), chunk.messages.start
                        );
                    }
                    return Err(e);
                }
            }
        }
        Ok(results)
    }

    /// The route of `topic`: the cached one, else looked up now (with auto_create_topic, that of
    /// `DEFAULT_TOPIC` for a topic the name servers do not know: see
    /// `CachedRoute::from_default_topic`). Also says whether the last refresh failed (the route
    /// is being served from cache).
    pub async fn route(&self, topic: &str) -> Result<(CachedRoute, bool), ProducerError> {
        self.check_open()?;
        let entry = self.topic_entry(topic).await?;
        let stale = entry.stale.load(Ordering::Relaxed);
        Ok(((*entry.current()).clone(), stale))
    }

    /// Refreshes every cached route now (the background task calls this periodically). A route
    /// borrowed from `DEFAULT_TOPIC` is replaced by the topic's own once the name servers know
    /// the topic.
    pub async fn refresh_routes(&self) {
        let entries: Vec<(String, Arc<TopicEntry>)> = crate::sync::read(&self.inner.routes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (topic, entry) in entries {
            if self.inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let provisional = entry.current().from_default_topic;
            let fetched = match self.fetch_route(&topic).await {
                // Still unknown: borrow the default topic's route again (its brokers may have
                // changed too).
                Err(e) if provisional && e.topic_not_exist() => {
                    self.default_topic_route(&topic).await
                }
                other => other,
            };
            match fetched {
                Ok(route) => {
                    *crate::sync::write(&entry.route) = Arc::new(route);
                    entry.stale.store(false, Ordering::Relaxed);
                    ProducerStats::add(&self.inner.stats.route_refreshes, 1);
                }
                Err(_) => {
                    entry.stale.store(true, Ordering::Relaxed);
                    ProducerStats::add(&self.inner.stats.route_refresh_failures, 1);
                }
            }
        }
    }

    /// Every statistic by name.
    pub fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats.snapshot()
    }

    /// Stops the refresh task and closes every connection; later sends fail.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Ok(mut t) = self.inner.refresh_task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
        self.inner.pool.close();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Whether TLS certificate verification is off.
    pub fn tls_insecure(&self) -> bool {
        self.inner.pool.tls_insecure()
    }

    fn check_open(&self) -> Result<(), ProducerError> {
        if self.is_closed() {
            Err(ProducerError::closed())
        } else {
            Ok(())
        }
    }

    fn check_topic(&self, topic: &str) -> Result<(), ProducerError> {
        self.check_open()?;
        message::validate_topic(topic).map_err(|e| {
            ProducerError::new(
                ErrorKind::InvalidMessage,
                Some(response::MESSAGE_ILLEGAL),
                e,
            )
        })
    }

    /// Encodes a request with an empty body in the header part and the body length counted
    /// in the frame length, so the body can be written from its own buffer. Signs it first.
    fn encode_request(
        &self,
        code: i32,
        ext_fields: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<(Vec<u8>, i32), ProducerError> {
        let opaque = self.inner.opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let mut cmd = RemotingCommand::request(code);
        cmd.language = LanguageCode::PYTHON;
        cmd.opaque = opaque;
        cmd.ext_fields = ext_fields;
        if let Some(c) = &self.inner.credentials {
            c.sign(&mut cmd.ext_fields, body);
        }
        let mut head = cmd.encode(SerializeType::Json).map_err(|e| {
            ProducerError::new(
                ErrorKind::InvalidMessage,
                None,
                format!("cannot encode the request: {e}"),
            )
        })?;
        let length =
            i32::from_be_bytes([head[0], head[1], head[2], head[3]]) as i64 + body.len() as i64;
        let length = i32::try_from(length).map_err(|_| {
            ProducerError::new(ErrorKind::InvalidMessage, None, "the request is too large")
        })?;
        head[0..4].copy_from_slice(&length.to_be_bytes());
        Ok((head, opaque))
    }

    async fn topic_entry(&self, topic: &str) -> Result<Arc<TopicEntry>, ProducerError> {
        let cached = |p: &Producer| crate::sync::read(&p.inner.routes).get(topic).cloned();
        if let Some(e) = cached(self) {
            return Ok(e);
        }
        // One lookup at a time: concurrent first sends to a topic share its result.
        let _g = self.inner.lookup_lock.lock().await;
        if let Some(e) = cached(self) {
            return Ok(e);
        }
        match self.lookup_route(topic).await {
            Ok(route) => {
                ProducerStats::add(&self.inner.stats.route_lookups, 1);
                let entry = Arc::new(TopicEntry {
                    route: RwLock::new(Arc::new(route)),
                    // Java starts each topic at a random queue.
                    index: AtomicUsize::new(message::random_u64() as usize % 1024),
                    stale: AtomicBool::new(false),
                });
                crate::sync::write(&self.inner.routes).insert(topic.to_owned(), entry.clone());
                Ok(entry)
            }
            Err(e) => {
                ProducerStats::add(&self.inner.stats.route_lookup_failures, 1);
                Err(e)
            }
        }
    }

    /// The route to publish a topic not cached yet on: its own, else (auto_create_topic, and the
    /// name servers do not know it) the default topic's. The errors say what to do.
    async fn lookup_route(&self, topic: &str) -> Result<CachedRoute, ProducerError> {
        let missing = match self.fetch_route(topic).await {
            Err(e) if e.topic_not_exist() => e,
            other => return other,
        };
        if self.inner.config.auto_create_topic {
            return self.default_topic_route(topic).await;
        }
        Err(ProducerError::new(
            ErrorKind::NameServer,
            missing.code,
            format!(
                "topic {topic:?} does not exist: create it (mqadmin updateTopic), or enable \
                 auto_create_topic if the brokers have autoCreateTopicEnable=true; {}",
                missing.message
            ),
        ))
    }

    /// `DEFAULT_TOPIC`'s route, capped as Java caps it, to send `topic` on until the brokers
    /// have created it (they do on its first message: sends name the default topic).
    async fn default_topic_route(&self, topic: &str) -> Result<CachedRoute, ProducerError> {
        match self.fetch_route(DEFAULT_TOPIC).await {
            Ok(mut route) => {
                route::cap_default_topic_queues(&mut route.data, DEFAULT_TOPIC_QUEUE_NUMS);
                route.publish = PublishInfo::from_route(&route.data);
                route.from_default_topic = true;
                ProducerStats::add(&self.inner.stats.default_topic_routes, 1);
                Ok(route)
            }
            Err(e) if e.topic_not_exist() => Err(ProducerError::new(
                ErrorKind::NameServer,
                e.code,
                format!(
                    "topic {topic:?} does not exist and no broker offers auto-creation \
                     ({DEFAULT_TOPIC} route missing: autoCreateTopicEnable is off on every \
                     broker): create the topic (mqadmin updateTopic) or set \
                     autoCreateTopicEnable=true on the brokers; {}",
                    e.message
                ),
            )),
            Err(mut e) => {
                e.message = format!(
                    "topic {topic:?} does not exist and the route of {DEFAULT_TOPIC}, to create \
                     it from, could not be fetched: {}",
                    e.message
                );
                Err(e)
            }
        }
    }

    /// GET_ROUTEINFO_BY_TOPIC from the name servers, starting with the one that last worked.
    /// 17 (the topic does not exist) comes back as a `NameServer` error whose message is only
    /// what the name server said; the callers say what it means.
    async fn fetch_route(&self, topic: &str) -> Result<CachedRoute, ProducerError> {
        let ns = &self.inner.config.nameservers;
        let n = ns.len();
        let start = self.inner.ns_index.load(Ordering::Relaxed);
        let mut errors: Vec<String> = Vec::new();
        let mut answered_code: Option<i32> = None;
        let mut all_certificate = true;
        for i in 0..n {
            self.check_open()?;
            let idx = (start + i) % n;
            let addr = &ns[idx];
            if i > 0 {
                ProducerStats::add(&self.inner.stats.namesrv_failovers, 1);
            }
            let mut ext = BTreeMap::new();
            ext.insert("topic".to_owned(), topic.to_owned());
            let (head, opaque) = self.encode_request(request::GET_ROUTEINFO_BY_TOPIC, ext, b"")?;
            let peer = format!("name server {addr}");
            let resp = self
                .inner
                .pool
                .call(
                    addr,
                    &peer,
                    "GET_ROUTEINFO_BY_TOPIC",
                    head,
                    Bytes::new(),
                    opaque,
                    self.inner.config.timeout,
                )
                .await;
            match resp {
                Ok(r) if r.code == response::SUCCESS => match TopicRouteData::from_json(&r.body) {
                    Ok(data) => {
                        self.inner.ns_index.store(idx, Ordering::Relaxed);
                        let publish = PublishInfo::from_route(&data);
                        return Ok(CachedRoute {
                            data,
                            publish,
                            fetched_at_ms: message::now_ms(),
                            from_default_topic: false,
                        });
                    }
                    Err(e) => {
                        all_certificate = false;
                        errors.push(format!("{peer} sent a route that does not parse: {e}"));
                    }
                },
                Ok(r) if r.code == response::TOPIC_NOT_EXIST => {
                    self.inner.ns_index.store(idx, Ordering::Relaxed);
                    self.inner.stats.error_code(r.code);
                    return Err(ProducerError::new(
                        ErrorKind::NameServer,
                        Some(r.code),
                        format!(
                            "{peer} answered {}{}",
                            code_label(r.code),
                            r.remark.map(|m| format!(" ({m})")).unwrap_or_default()
                        ),
                    ));
                }
                Ok(r) => {
                    all_certificate = false;
                    self.inner.stats.error_code(r.code);
                    answered_code = Some(r.code);
                    errors.push(format!(
                        "{peer} answered {}{}",
                        code_label(r.code),
                        r.remark.map(|m| format!(" ({m})")).unwrap_or_default()
                    ));
                }
                Err(e) => {
                    if e.kind == ErrorKind::Closed {
                        return Err(e);
                    }
                    all_certificate &= e.kind == ErrorKind::Certificate;
                    errors.push(e.message);
                }
            }
        }
        let (kind, code) = match answered_code {
            Some(c) => (ErrorKind::NameServer, Some(c)),
            None if all_certificate => (ErrorKind::Certificate, None),
            None => (ErrorKind::Connection, None),
        };
        Err(ProducerError::new(
            kind,
            code,
            format!(
                "no route for topic {topic:?}: every name server failed: {}",
                errors.join("; ")
            ),
        ))
    }

    async fn send_with_retry(
        &self,
        topic: &str,
        spec: &SendSpec<'_>,
    ) -> Result<SendResult, ProducerError> {
        let entry = self.topic_entry(topic).await?;
        let attempts = 1 + self.inner.config.retry_times as usize;
        let mut last_broker: Option<String> = None;
        let mut last_err: Option<ProducerError> = None;
        for attempt in 0..attempts {
            self.check_open()?;
            if attempt > 0 {
                ProducerStats::add(&self.inner.stats.retries, 1);
            }
            let route = entry.current();
            if entry.stale.load(Ordering::Relaxed) {
                ProducerStats::add(&self.inner.stats.cached_route_served, 1);
            }
            let Some(q) = route.publish.select(&entry.index, last_broker.as_deref()) else {
                let borrowed = if route.from_default_topic {
                    format!(" (its route is {DEFAULT_TOPIC}'s, for auto-creation)")
                } else {
                    String::new()
                };
                last_err = Some(ProducerError::new(
                    ErrorKind::NoRoute,
                    None,
                    format!(
                        "topic {topic:?} has no writable queue on a broker with a master{borrowed}"
                    ),
                ));
                break;
            };
            let broker = route.publish.broker(q);
            match self.send_once(topic, broker, q.queue_id, spec).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    ProducerStats::add(&self.inner.stats.errors, 1);
                    if !e.retryable() {
                        return Err(e);
                    }
                    last_broker = Some(broker.name.clone());
                    last_err = Some(e);
                }
            }
        }
        let mut e = last_err.unwrap_or_else(ProducerError::closed);
        if attempts > 1 && e.kind != ErrorKind::NoRoute {
            e.message = format!("{} (after {attempts} attempts)", e.message);
        }
        Err(e)
    }

    async fn send_once(
        &self,
        topic: &str,
        broker: &route::BrokerTarget,
        queue_id: i32,
        spec: &SendSpec<'_>,
    ) -> Result<SendResult, ProducerError> {
        let batch = spec.code == request::SEND_BATCH_MESSAGE;
        let cfg = &self.inner.config;
        let mut ext = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            ext.insert(k.to_owned(), v);
        };
        put("a", cfg.producer_group.clone());
        put("b", topic.to_owned());
        put("c", DEFAULT_TOPIC.to_owned());
        put("d", DEFAULT_TOPIC_QUEUE_NUMS.to_string());
        put("e", queue_id.to_string());
        put("f", "0".to_owned());
        put("g", spec.born_ms.to_string());
        put("h", "0".to_owned());
        put("i", spec.properties.to_owned());
        put("j", "0".to_owned());
        put("k", "false".to_owned());
        put("m", if batch { "true" } else { "false" }.to_owned());
        put("n", broker.name.clone());
        let (head, opaque) = self.encode_request(spec.code, ext, &spec.body)?;
        let what = if batch {
            "SEND_BATCH_MESSAGE"
        } else {
            "SEND_MESSAGE_V2"
        };
        let peer = format!("broker {} ({})", broker.name, broker.addr);
        let stats = &self.inner.stats;
        ProducerStats::add(&stats.requests, 1);
        let resp = self
            .inner
            .pool
            .call(
                &broker.addr,
                &peer,
                what,
                head,
                spec.body.clone(),
                opaque,
                cfg.timeout,
            )
            .await?;
        ProducerStats::add(&stats.responses, 1);
        match resp.code {
            response::SUCCESS
            | response::FLUSH_DISK_TIMEOUT
            | response::SLAVE_NOT_AVAILABLE
            | response::FLUSH_SLAVE_TIMEOUT => {
                ProducerStats::add(&stats.send_ok, 1);
                ProducerStats::add(&stats.messages_sent, spec.messages as u64);
                match resp.code {
                    response::FLUSH_DISK_TIMEOUT => {
                        ProducerStats::add(&stats.sent_flush_disk_timeout, 1)
                    }
                    response::SLAVE_NOT_AVAILABLE => {
                        ProducerStats::add(&stats.sent_slave_not_available, 1)
                    }
                    response::FLUSH_SLAVE_TIMEOUT => {
                        ProducerStats::add(&stats.sent_flush_slave_timeout, 1)
                    }
                    _ => {}
                }
                Ok(SendResult {
                    msg_id: spec.uniq_ids.to_owned(),
                    offset_msg_id: resp.ext("msgId").unwrap_or_default().to_owned(),
                    queue_id: resp
                        .ext("queueId")
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(queue_id),
                    queue_offset: resp
                        .ext("queueOffset")
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(-1),
                    broker_name: broker.name.clone(),
                    topic: topic.to_owned(),
                    status: resp.code,
                })
            }
            code => {
                stats.error_code(code);
                Err(ProducerError::new(
                    ErrorKind::Response,
                    Some(code),
                    format!(
                        "{peer} refused {what} to topic {topic:?}: {}{}",
                        code_label(code),
                        resp.remark.map(|m| format!(" ({m})")).unwrap_or_default()
                    ),
                ))
            }
        }
    }
}

async fn refresh_loop(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        Producer { inner }.refresh_routes().await;
    }
}

#[cfg(test)]
mod tests;
