//! The relay's decisions, without I/O: what to do with each client frame, each broker frame
//! and each tick of the clock, for one relayed connection.
//!
//! `Relay` holds the requests in flight (with their deadlines), the connection's last
//! activity and its draining state, and counts what it decides in the proxy's stats. The two
//! I/O tasks of a connection (`super::serve`) ask it and carry out the answer: forward the
//! frame, write a local reply, or close. Every method takes `now`, so the tests drive time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::access::{AccessLog, Outcome, Peer, Pending, Reason};
use super::super::policy::{Client, Listener, Policy, Request as PolicyRequest};
use super::super::stats::ProxyStats;
use super::super::topics::{self, Labelled, TopicCache};
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::frame::FrameView;
use crate::codec::{HeaderRef, RemotingCommand, SerializeType};
use crate::sync::Local;

/// How long a broker connection that failed is left alone before the next request retries it.
pub(crate) const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The time limits of one relayed connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A request's answer is due this long after it was forwarded (plus a long poll's hold).
    pub request_timeout: Duration,
    /// After shutdown begins, requests in flight get this long to finish.
    pub drain_timeout: Duration,
    /// A connection with nothing in flight and no traffic this long is closed.
    pub idle_timeout: Option<Duration>,
}

/// What a config reload changes on connections already open: their time limits and the
/// request policy.
#[derive(Debug, Clone)]
pub(crate) struct RelaySettings {
    pub limits: Limits,
    pub policy: Arc<Policy>,
}

/// Why the proxy answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalReason {
    Timeout,
    Unavailable,
    Shutdown,
}

/// A local reply: a RocketMQ response with the request's opaque and a remark saying why.
pub(crate) fn local_reply(opaque: i32, code: i32, remark: String) -> Bytes {
    let cmd = RemotingCommand::response_to(opaque, code, Some(remark));
    // A JSON header with a short remark always encodes.
    Bytes::from(cmd.encode(SerializeType::Json).unwrap_or_default())
}

/// Counts a local reply by its reason and its response code.
pub(crate) fn count_local(stats: &ProxyStats, reason: LocalReason, response_code: i32) {
    let c = &stats.c;
    let counter = match reason {
        LocalReason::Timeout => &c.local_reply_timeout,
        LocalReason::Unavailable => &c.local_reply_upstream_unavailable,
        LocalReason::Shutdown => &c.local_reply_shutdown,
    };
    ProxyStats::add(counter, 1);
    stats.on_response(response_code);
}

fn code_name(code: i32) -> String {
    crate::codec::codes::request_name(code)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("request code {code}"))
}

/// How long the broker may legitimately hold a long-poll request before answering.
pub(crate) fn long_poll_hold(frame: &[u8], view: &FrameView) -> Duration {
    let key = match view.code {
        rc::PULL_MESSAGE | rc::LITE_PULL_MESSAGE => "suspendTimeoutMillis",
        rc::POP_MESSAGE | rc::NOTIFICATION | rc::PEEK_MESSAGE => "pollTime",
        _ => return Duration::ZERO,
    };
    // Borrowed decode: one field is needed, so nothing is copied (the body included).
    HeaderRef::decode(frame, view)
        .ok()
        .and_then(|c| c.ext(key).and_then(|v| v.parse::<u64>().ok()))
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

/// A request waiting for its response.
#[derive(Debug, Clone)]
struct Inflight {
    code: i32,
    start: Instant,
    deadline: Instant,
    /// The broker may never answer (END_TRANSACTION sent without the oneway flag): an answer
    /// is relayed if one comes, and at the deadline the entry goes quietly, with no local reply
    /// and no latency or timeout counted.
    answer_optional: bool,
    /// Its topic's counters (per-topic metrics), when it has a topic.
    labelled: Option<Labelled>,
    /// The first half of its access log line, when the access log is on.
    access: Option<Pending>,
}

/// Requests the broker answers only when something goes wrong, whatever their flag says:
/// END_TRANSACTION (rocketmq-client-go v2, for one, sends it without the oneway flag).
fn answer_optional(code: i32) -> bool {
    code == rc::END_TRANSACTION
}

/// What to do with a frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientStep {
    /// Forward it to the broker (over the connection there is).
    Forward,
    /// Forward it, but there is no broker connection: connect first, then call `connected`
    /// or `unreachable`.
    Connect,
    /// Write this local reply to the client instead.
    Reply(Bytes),
    /// Nothing: a oneway request that cannot go, or a client response with no broker to
    /// take it.
    Drop,
}

/// What to do with a frame from the broker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BrokerStep {
    /// Forward it to the client.
    Forward,
    /// Drop it: a response nobody waits for any more (answered locally after its deadline).
    Late,
}

/// What a tick of the clock decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Local replies for requests past their deadline.
    pub replies: Vec<Bytes>,
    /// Close the connection (after writing the replies).
    pub close: bool,
}

/// The decision state of one relayed connection.
pub(crate) struct Relay {
    broker: Arc<str>,
    /// Limits and policy, as of the last reload this connection has seen.
    settings: Local<RelaySettings>,
    stats: Arc<ProxyStats>,
    inflight: HashMap<i32, Inflight>,
    last_activity: Instant,
    upstream: bool,
    last_failure: Option<(Instant, String)>,
    drain_deadline: Option<Instant>,
    client: Client,
    topics: TopicCache,
    /// The label of the request waiting for `connected` / `unreachable`.
    connecting: Option<Labelled>,
    /// The access log, when the proxy has one, and who this connection's lines name.
    access: Option<Arc<AccessLog>>,
    peer: Peer,
    /// The access log line of the request waiting for `connected` / `unreachable`, and when
    /// it arrived.
    connecting_access: Option<(Pending, Instant)>,
}

impl Relay {
    pub fn new(broker: Arc<str>, limits: Limits, stats: Arc<ProxyStats>, now: Instant) -> Self {
        Relay {
            broker,
            settings: Local::fixed(RelaySettings {
                limits,
                policy: Arc::new(Policy::data_path()),
            }),
            stats,
            inflight: HashMap::new(),
            last_activity: now,
            upstream: false,
            last_failure: None,
            drain_deadline: None,
            client: Client::default(),
            topics: TopicCache::default(),
            connecting: None,
            access: None,
            peer: Peer::unknown(),
            connecting_access: None,
        }
    }

    /// The access log to write this connection's requests to, and who its lines name.
    pub fn with_access(mut self, access: Arc<AccessLog>, peer: Peer) -> Self {
        self.access = Some(access);
        self.peer = peer;
        self
    }

    /// Ends a request's access log line (nothing when the log is off).
    fn log(&self, pending: Option<Pending>, outcome: Outcome) {
        if let (Some(p), Some(a)) = (pending, &self.access) {
            a.finish(p, outcome);
        }
    }

    /// Logs a request the proxy answered itself with `step` (a reply with `code`), or
    /// dropped (a oneway request).
    fn log_local(
        &self,
        pending: Option<Pending>,
        reason: Reason,
        step: &ClientStep,
        code: i32,
        waited: Duration,
    ) {
        let reply = match step {
            ClientStep::Reply(b) => Some((code, b.len())),
            _ => None,
        };
        self.log(pending, Outcome::local(reason, reply, waited));
    }

    /// The request policy to apply (instead of the default, with the same limits), and who
    /// the client is for its rules.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_policy(self, policy: Arc<Policy>, client: Client) -> Self {
        let limits = self.settings.get().limits;
        self.with_settings(Local::fixed(RelaySettings { limits, policy }), client)
    }

    /// Limits and policy that a reload may replace, and who the client is for the rules.
    pub fn with_settings(mut self, settings: Local<RelaySettings>, client: Client) -> Self {
        self.settings = settings;
        self.client = client;
        self
    }

    fn limits(&self) -> Limits {
        self.settings.get().limits
    }

    /// The remark of a refusal if the policy refuses this request.
    fn refused(&self, frame: &[u8], view: &FrameView) -> Option<String> {
        let policy = &self.settings.get().policy;
        let header = if policy.reads_header() {
            match HeaderRef::decode(frame, view) {
                Ok(h) => Some(h),
                Err(e) => return Some(format!("rmqfast: the request header cannot be read: {e}")),
            }
        } else {
            None
        };
        let ext = |k: &str| header.as_ref().and_then(|h| h.ext(k)).map(str::to_owned);
        policy.check(&PolicyRequest {
            code: view.code,
            listener: Listener::Broker,
            client: &self.client,
            ext: &ext,
        })
    }

    /// Bytes arrived from either side.
    #[inline]
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// Requests waiting for their response.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// A frame from the client. `hold` is the long-poll time the broker may take on top of
    /// `request_timeout` (see `long_poll_hold`); `shutting_down`, whether the proxy is
    /// draining.
    pub fn on_client_frame(
        &mut self,
        frame: &[u8],
        view: &FrameView,
        hold: Duration,
        now: Instant,
        shutting_down: bool,
    ) -> ClientStep {
        self.settings.refresh();
        let stats = &self.stats;
        if view.is_response() {
            // The client answering a broker's request (transaction check, running info).
            ProxyStats::add(&stats.c.request_decoding_success, 1);
            return if self.upstream {
                ClientStep::Forward
            } else {
                ClientStep::Drop
            };
        }
        let oneway = view.is_oneway();
        stats.on_request(view.code, oneway);
        let label = self
            .topics
            .on_request(&stats.topics, &self.broker, frame, view);
        let pending = match &self.access {
            Some(a) => a.begin(&self.peer, frame, view),
            None => None,
        };
        // A local answer to a labelled request is an error of its topic.
        let local_error = |code: i32| {
            if let (Some(l), false) = (&label, oneway) {
                topics::on_error(l, code);
            }
        };
        if let Some(remark) = self.refused(frame, view) {
            self.stats.on_denied(view.code);
            let step = if oneway {
                ClientStep::Drop
            } else {
                local_error(resp::NO_PERMISSION);
                self.stats.on_response(resp::NO_PERMISSION);
                ClientStep::Reply(local_reply(view.opaque, resp::NO_PERMISSION, remark))
            };
            let code = resp::NO_PERMISSION;
            self.log_local(pending, Reason::Denied, &step, code, Duration::ZERO);
            return step;
        }
        if shutting_down {
            let step = if oneway {
                ClientStep::Drop
            } else {
                local_error(resp::SYSTEM_BUSY);
                count_local(&self.stats, LocalReason::Shutdown, resp::SYSTEM_BUSY);
                let remark = "rmqfast: the proxy is shutting down; retry on another broker";
                ClientStep::Reply(local_reply(view.opaque, resp::SYSTEM_BUSY, remark.into()))
            };
            let code = resp::SYSTEM_BUSY;
            self.log_local(pending, Reason::Shutdown, &step, code, Duration::ZERO);
            return step;
        }
        if !self.upstream {
            let may_try = match &self.last_failure {
                Some((at, _)) => now.saturating_duration_since(*at) >= RECONNECT_AFTER,
                None => true,
            };
            if !may_try {
                local_error(resp::SYSTEM_ERROR);
                let step = self.unreachable_reply(view);
                let code = resp::SYSTEM_ERROR;
                self.log_local(pending, Reason::Unavailable, &step, code, Duration::ZERO);
                return step;
            }
            self.connecting = label;
            self.connecting_access = pending.map(|p| (p, now));
            return ClientStep::Connect;
        }
        self.track(view, hold, now, label, pending);
        ClientStep::Forward
    }

    /// The connection `Connect` asked for is up: the frame goes out (`Forward`).
    pub fn connected(&mut self, view: &FrameView, hold: Duration, now: Instant) -> ClientStep {
        self.upstream = true;
        self.last_failure = None;
        ProxyStats::gauge(&self.stats.c.upstream_connections_active, 1);
        let label = self.connecting.take();
        let pending = self.connecting_access.take().map(|p| p.0);
        if !view.is_response() {
            self.track(view, hold, now, label, pending);
        }
        ClientStep::Forward
    }

    /// The connection `Connect` asked for failed with `why`: a local reply, or nothing for a
    /// oneway request. Requests in the next `RECONNECT_AFTER` get the same answer without a try.
    pub fn unreachable(&mut self, view: &FrameView, why: String, now: Instant) -> ClientStep {
        ProxyStats::add(&self.stats.c.upstream_connect_failure, 1);
        if let (Some(l), false) = (self.connecting.take(), view.is_oneway()) {
            topics::on_error(&l, resp::SYSTEM_ERROR);
        }
        self.last_failure = Some((now, why));
        let step = self.unreachable_reply(view);
        if let Some((pending, at)) = self.connecting_access.take() {
            let waited = now.saturating_duration_since(at);
            let code = resp::SYSTEM_ERROR;
            self.log_local(Some(pending), Reason::Unavailable, &step, code, waited);
        }
        step
    }

    fn unreachable_reply(&self, view: &FrameView) -> ClientStep {
        if view.is_oneway() {
            return ClientStep::Drop;
        }
        count_local(&self.stats, LocalReason::Unavailable, resp::SYSTEM_ERROR);
        let why = self
            .last_failure
            .as_ref()
            .map(|f| f.1.as_str())
            .unwrap_or("");
        let remark = format!(
            "rmqfast: {} not sent: broker {} is unreachable ({why})",
            code_name(view.code),
            self.broker
        );
        ClientStep::Reply(local_reply(view.opaque, resp::SYSTEM_ERROR, remark))
    }

    /// The broker connection is gone (a write failed or it closed).
    pub fn upstream_lost(&mut self) {
        if std::mem::take(&mut self.upstream) {
            ProxyStats::gauge(&self.stats.c.upstream_connections_active, -1);
        }
    }

    fn track(
        &mut self,
        view: &FrameView,
        hold: Duration,
        now: Instant,
        label: Option<Labelled>,
        access: Option<Pending>,
    ) {
        if view.is_oneway() {
            if let Some(l) = label {
                l.sent_oneway();
            }
            self.log(access, Outcome::no_answer());
            return;
        }
        let deadline = now + hold + self.limits().request_timeout;
        let optional = answer_optional(view.code);
        if !optional {
            self.stats.begin(view.code);
        }
        let prev = self.inflight.insert(
            view.opaque,
            Inflight {
                code: view.code,
                start: now,
                deadline,
                answer_optional: optional,
                labelled: label,
                access,
            },
        );
        if let Some(p) = prev {
            // A client reusing an opaque still in flight: the first is orphaned.
            self.finish(&p, now);
            let waited = now.saturating_duration_since(p.start);
            self.log(p.access, Outcome::local(Reason::Orphaned, None, waited));
        }
    }

    /// A frame from the broker: a response to a request in flight, a late one, or a request
    /// of the broker's own (transaction check, consumer-list change).
    pub fn on_broker_frame(&mut self, frame: &[u8], view: &FrameView, now: Instant) -> BrokerStep {
        let stats = &self.stats;
        ProxyStats::add(&stats.c.response_decoding_success, 1);
        if !view.is_response() {
            ProxyStats::add(&stats.c.broker_request, 1);
            return BrokerStep::Forward;
        }
        match self.inflight.remove(&view.opaque) {
            Some(req) => {
                self.finish(&req, now);
                let elapsed = now.saturating_duration_since(req.start);
                if let Some(l) = &req.labelled {
                    topics::on_response(l, frame, view, elapsed);
                }
                self.stats.on_response(view.code);
                self.log(
                    req.access,
                    Outcome::response(view.code, frame.len(), elapsed),
                );
                BrokerStep::Forward
            }
            None => {
                ProxyStats::add(&stats.c.late_response, 1);
                BrokerStep::Late
            }
        }
    }

    /// A tick: local replies for requests past their deadline; whether to close because the
    /// proxy is draining (nothing left in flight, or the drain deadline passed) or the
    /// connection is idle.
    pub fn on_tick(&mut self, now: Instant, shutting_down: bool) -> Tick {
        self.settings.refresh();
        let mut tick = Tick::default();
        let expired: Vec<i32> = self
            .inflight
            .iter()
            .filter(|(_, v)| v.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for opaque in expired {
            let Some(req) = self.inflight.remove(&opaque) else {
                continue;
            };
            if req.answer_optional {
                self.log(req.access, Outcome::no_answer());
                continue;
            }
            let waited = now.saturating_duration_since(req.start);
            self.stats.end(req.code, waited);
            if let Some(l) = &req.labelled {
                topics::on_error(l, resp::SYSTEM_BUSY);
            }
            count_local(&self.stats, LocalReason::Timeout, resp::SYSTEM_BUSY);
            let remark = format!(
                "rmqfast: broker {} did not answer {} within {} ms",
                self.broker,
                code_name(req.code),
                waited.as_millis()
            );
            let reply = local_reply(opaque, resp::SYSTEM_BUSY, remark);
            let sent = Some((resp::SYSTEM_BUSY, reply.len()));
            self.log(req.access, Outcome::local(Reason::Timeout, sent, waited));
            tick.replies.push(reply);
        }
        // Answers that may never come hold off neither draining nor the idle timeout.
        let empty = self.inflight.values().all(|r| r.answer_optional);
        if shutting_down {
            let d = *self
                .drain_deadline
                .get_or_insert(now + self.limits().drain_timeout);
            if empty || now >= d {
                tick.close = true;
                return tick;
            }
        }
        if let Some(idle) = self.limits().idle_timeout {
            if empty && now.saturating_duration_since(self.last_activity) >= idle {
                ProxyStats::add(&self.stats.c.connections_idle_closed, 1);
                tick.close = true;
            }
        }
        tick
    }

    /// The connection is closing: requests still in flight leave with it.
    pub fn close(&mut self, now: Instant) {
        for (_, req) in std::mem::take(&mut self.inflight) {
            self.finish(&req, now);
            if !req.answer_optional {
                let waited = now.saturating_duration_since(req.start);
                self.log(req.access, Outcome::local(Reason::Closed, None, waited));
            } else {
                self.log(req.access, Outcome::no_answer());
            }
        }
        self.upstream_lost();
    }

    /// A request leaves the in-flight table (answered, orphaned or closed with the
    /// connection): its latency and the in-flight gauges.
    fn finish(&self, req: &Inflight, now: Instant) {
        if !req.answer_optional {
            self.stats
                .end(req.code, now.saturating_duration_since(req.start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RemotingCommand;
    use std::sync::atomic::Ordering::Relaxed;

    const LIMITS: Limits = Limits {
        request_timeout: Duration::from_millis(1000),
        drain_timeout: Duration::from_millis(5000),
        idle_timeout: Some(Duration::from_secs(60)),
    };

    fn relay(now: Instant) -> (Relay, Arc<ProxyStats>) {
        let stats = Arc::new(ProxyStats::default());
        let r = Relay::new(Arc::from("10.0.0.1:10911"), LIMITS, stats.clone(), now);
        (r, stats)
    }

    fn frame(code: i32, opaque: i32, flag: i32) -> (Vec<u8>, FrameView) {
        let mut c = RemotingCommand::request(code);
        c.opaque = opaque;
        c.flag = flag;
        let f = c.encode(SerializeType::Json).unwrap();
        let v = FrameView::parse(&f).unwrap();
        (f, v)
    }

    fn reply_of(step: ClientStep) -> RemotingCommand {
        match step {
            ClientStep::Reply(b) => RemotingCommand::decode(&b).unwrap(),
            other => panic!("expected a local reply, got {other:?}"),
        }
    }

    #[test]
    fn the_first_request_connects_then_requests_are_tracked_until_answered() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, send) = frame(rc::SEND_MESSAGE_V2, 1, 0);
        assert_eq!(
            r.on_client_frame(&[], &send, Duration::ZERO, t0, false),
            ClientStep::Connect
        );
        assert_eq!(r.connected(&send, Duration::ZERO, t0), ClientStep::Forward);
        assert_eq!(stats.c.upstream_connections_active.load(Relaxed), 1);
        let (_, second) = frame(rc::SEND_MESSAGE_V2, 2, 0);
        assert_eq!(
            r.on_client_frame(&[], &second, Duration::ZERO, t0, false),
            ClientStep::Forward
        );
        assert_eq!(r.in_flight(), 2);
        let (_, answer) = frame(0, 2, 1);
        assert_eq!(r.on_broker_frame(&[], &answer, t0), BrokerStep::Forward);
        assert_eq!(r.in_flight(), 1);
        // The same answer again: nobody waits for it.
        assert_eq!(r.on_broker_frame(&[], &answer, t0), BrokerStep::Late);
        assert_eq!(stats.c.late_response.load(Relaxed), 1);
        r.close(t0);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(stats.c.upstream_connections_active.load(Relaxed), 0);
        assert_eq!(stats.c.send_message_v2.load(Relaxed), 2);
    }

    #[test]
    fn oneway_requests_are_forwarded_untracked_and_never_answered_locally() {
        let t0 = Instant::now();
        let (mut r, _) = relay(t0);
        let (_, oneway) = frame(rc::END_TRANSACTION, 5, 2);
        assert_eq!(
            r.on_client_frame(&[], &oneway, Duration::ZERO, t0, false),
            ClientStep::Connect
        );
        assert_eq!(
            r.unreachable(&oneway, "refused".into(), t0),
            ClientStep::Drop
        );
        assert_eq!(
            r.on_client_frame(&[], &oneway, Duration::ZERO, t0, true),
            ClientStep::Drop
        );
        assert_eq!(
            r.connected(&oneway, Duration::ZERO, t0),
            ClientStep::Forward
        );
        assert_eq!(
            r.on_client_frame(&[], &oneway, Duration::ZERO, t0, false),
            ClientStep::Forward
        );
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn end_transaction_without_the_oneway_flag_never_gets_a_local_reply() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, end) = frame(rc::END_TRANSACTION, 8, 0);
        r.on_client_frame(&[], &end, Duration::ZERO, t0, false);
        assert_eq!(r.connected(&end, Duration::ZERO, t0), ClientStep::Forward);
        assert_eq!(
            stats.c.request_active.load(Relaxed),
            0,
            "not a request in flight"
        );
        // Nothing in flight that matters: the connection may drain and close at once.
        assert!(r.on_tick(t0, true).close);
        let t = r.on_tick(t0 + LIMITS.request_timeout, false);
        assert!(
            t.replies.is_empty(),
            "no SYSTEM_BUSY for an END_TRANSACTION"
        );
        assert_eq!(stats.c.local_reply_timeout.load(Relaxed), 0);
        assert_eq!(r.in_flight(), 0, "gone at its deadline");
        // If the broker does answer (an error), the answer is relayed.
        let (_, end2) = frame(rc::END_TRANSACTION, 9, 0);
        r.on_client_frame(&[], &end2, Duration::ZERO, t0, false);
        let (_, answer) = frame(resp::SYSTEM_ERROR, 9, 1);
        assert_eq!(r.on_broker_frame(&[], &answer, t0), BrokerStep::Forward);
        assert_eq!(stats.c.late_response.load(Relaxed), 0);
        assert_eq!(stats.c.request_active.load(Relaxed), 0);
        assert_eq!(stats.c.end_transaction.load(Relaxed), 2);
    }

    #[test]
    fn the_policy_refuses_administration_with_no_permission_before_connecting() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (f, update) = frame(rc::UPDATE_BROKER_CONFIG, 12, 0);
        let reply = reply_of(r.on_client_frame(&f, &update, Duration::ZERO, t0, false));
        assert_eq!((reply.opaque, reply.code), (12, resp::NO_PERMISSION));
        assert!(reply.remark.unwrap().contains("UPDATE_BROKER_CONFIG"));
        let (f, oneway) = frame(rc::UPDATE_AND_CREATE_TOPIC, 13, 2);
        assert_eq!(
            r.on_client_frame(&f, &oneway, Duration::ZERO, t0, false),
            ClientStep::Drop
        );
        assert_eq!(stats.c.request_denied.load(Relaxed), 2);
        assert_eq!(
            *crate::sync::lock(&stats.denied_by_code)
                .get(&rc::UPDATE_BROKER_CONFIG)
                .unwrap(),
            1
        );
        assert_eq!(
            stats.c.upstream_connections_active.load(Relaxed),
            0,
            "never connected"
        );
    }

    #[test]
    fn a_topic_rule_reads_the_topic_from_the_header() {
        let rules: Vec<crate::proxy::policy::RuleConfig> =
            serde_json::from_str(r#"[{"action":"deny","topics":"^internal-"}]"#).unwrap();
        let policy = Arc::new(Policy::new(&rules, "data-path").unwrap());
        let t0 = Instant::now();
        let (r, _) = relay(t0);
        let mut r = r.with_policy(policy, Client::default());
        let mut pull = RemotingCommand::request(rc::PULL_MESSAGE);
        pull.ext_fields
            .insert("topic".into(), "internal-audit".into());
        let f = pull.encode(SerializeType::Json).unwrap();
        let v = FrameView::parse(&f).unwrap();
        let reply = reply_of(r.on_client_frame(&f, &v, Duration::ZERO, t0, false));
        assert_eq!(reply.code, resp::NO_PERMISSION);
        assert!(reply.remark.unwrap().contains("policy[0]"));
        pull.ext_fields.insert("topic".into(), "orders".into());
        let f = pull.encode(SerializeType::RocketMq).unwrap();
        let v = FrameView::parse(&f).unwrap();
        assert_eq!(
            r.on_client_frame(&f, &v, Duration::ZERO, t0, false),
            ClientStep::Connect
        );
    }

    #[test]
    fn an_unreachable_broker_is_retried_only_after_a_pause() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, hb) = frame(rc::HEART_BEAT, 9, 0);
        assert_eq!(
            r.on_client_frame(&[], &hb, Duration::ZERO, t0, false),
            ClientStep::Connect
        );
        let reply = reply_of(r.unreachable(&hb, "connection refused".into(), t0));
        assert_eq!((reply.opaque, reply.code), (9, resp::SYSTEM_ERROR));
        let remark = reply.remark.unwrap();
        assert!(remark.contains("10.0.0.1:10911") && remark.contains("connection refused"));
        // Within the pause: the same answer, no new attempt.
        let soon = t0 + RECONNECT_AFTER / 2;
        let again = reply_of(r.on_client_frame(&[], &hb, Duration::ZERO, soon, false));
        assert_eq!(again.code, resp::SYSTEM_ERROR);
        assert_eq!(stats.c.upstream_connect_failure.load(Relaxed), 1);
        assert_eq!(stats.c.local_reply_upstream_unavailable.load(Relaxed), 2);
        let later = t0 + RECONNECT_AFTER;
        assert_eq!(
            r.on_client_frame(&[], &hb, Duration::ZERO, later, false),
            ClientStep::Connect
        );
    }

    #[test]
    fn a_request_past_its_deadline_gets_system_busy_once_and_its_answer_is_late() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, send) = frame(rc::SEND_MESSAGE_V2, 3, 0);
        r.on_client_frame(&[], &send, Duration::ZERO, t0, false);
        r.connected(&send, Duration::ZERO, t0);
        assert_eq!(
            r.on_tick(t0 + LIMITS.request_timeout / 2, false),
            Tick::default()
        );
        let t = r.on_tick(t0 + LIMITS.request_timeout, false);
        assert!(!t.close);
        let [busy] = &t.replies[..] else {
            panic!("{t:?}")
        };
        let busy = RemotingCommand::decode(busy).unwrap();
        assert_eq!((busy.opaque, busy.code), (3, resp::SYSTEM_BUSY));
        assert!(busy.remark.unwrap().contains("SEND_MESSAGE_V2"));
        assert_eq!(
            r.on_tick(t0 + LIMITS.request_timeout * 2, false),
            Tick::default()
        );
        let (_, answer) = frame(0, 3, 1);
        assert_eq!(r.on_broker_frame(&[], &answer, t0), BrokerStep::Late);
        assert_eq!(stats.c.local_reply_timeout.load(Relaxed), 1);
    }

    #[test]
    fn a_long_poll_has_its_hold_time_on_top_of_the_timeout() {
        let mut pull = RemotingCommand::request(rc::PULL_MESSAGE);
        pull.opaque = 4;
        pull.ext_fields
            .insert("suspendTimeoutMillis".into(), "20000".into());
        let f = pull.encode(SerializeType::RocketMq).unwrap();
        let v = FrameView::parse(&f).unwrap();
        let hold = long_poll_hold(&f, &v);
        assert_eq!(hold, Duration::from_secs(20));
        let t0 = Instant::now();
        let (mut r, _) = relay(t0);
        r.on_client_frame(&[], &v, hold, t0, false);
        r.connected(&v, hold, t0);
        assert!(r.on_tick(t0 + hold, false).replies.is_empty());
        assert_eq!(
            r.on_tick(t0 + hold + LIMITS.request_timeout, false)
                .replies
                .len(),
            1
        );
    }

    #[test]
    fn draining_answers_new_requests_busy_and_closes_when_nothing_is_in_flight() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, a) = frame(rc::SEND_MESSAGE_V2, 1, 0);
        r.on_client_frame(&[], &a, Duration::ZERO, t0, false);
        r.connected(&a, Duration::ZERO, t0);
        let (_, b) = frame(rc::SEND_MESSAGE_V2, 2, 0);
        let busy = reply_of(r.on_client_frame(&[], &b, Duration::ZERO, t0, true));
        assert_eq!((busy.opaque, busy.code), (2, resp::SYSTEM_BUSY));
        assert_eq!(stats.c.local_reply_shutdown.load(Relaxed), 1);
        // One request still in flight: the drain waits for it.
        assert!(!r.on_tick(t0, true).close);
        let (_, answer) = frame(0, 1, 1);
        r.on_broker_frame(&[], &answer, t0);
        assert!(r.on_tick(t0, true).close);
    }

    #[test]
    fn draining_gives_up_at_its_deadline() {
        let t0 = Instant::now();
        let (mut r, _) = relay(t0);
        let (_, a) = frame(rc::PULL_MESSAGE, 1, 0);
        r.on_client_frame(&[], &a, Duration::from_secs(30), t0, false);
        r.connected(&a, Duration::from_secs(30), t0);
        assert!(!r.on_tick(t0, true).close);
        assert!(r.on_tick(t0 + LIMITS.drain_timeout, true).close);
    }

    #[test]
    fn an_idle_connection_closes_only_with_nothing_in_flight() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let idle = LIMITS.idle_timeout.unwrap();
        let (_, a) = frame(rc::PULL_MESSAGE, 1, 0);
        r.on_client_frame(&[], &a, Duration::from_secs(600), t0, false);
        r.connected(&a, Duration::from_secs(600), t0);
        assert!(
            !r.on_tick(t0 + idle, false).close,
            "a long poll is in flight"
        );
        let (_, answer) = frame(0, 1, 1);
        r.on_broker_frame(&[], &answer, t0 + idle);
        r.touch(t0 + idle);
        assert!(!r.on_tick(t0 + idle + idle / 2, false).close);
        assert!(r.on_tick(t0 + idle * 2, false).close);
        assert_eq!(stats.c.connections_idle_closed.load(Relaxed), 1);
    }

    #[test]
    fn a_reused_opaque_orphans_the_first_request() {
        let t0 = Instant::now();
        let (mut r, stats) = relay(t0);
        let (_, a) = frame(rc::SEND_MESSAGE_V2, 7, 0);
        r.on_client_frame(&[], &a, Duration::ZERO, t0, false);
        r.connected(&a, Duration::ZERO, t0);
        r.on_client_frame(&[], &a, Duration::ZERO, t0, false);
        assert_eq!(r.in_flight(), 1);
        assert_eq!(stats.c.request_active.load(Relaxed), 1);
    }

    /// A relay whose requests go to an access log that is on (sample 1).
    fn logged(now: Instant) -> (Relay, Arc<AccessLog>) {
        let (r, stats) = relay(now);
        let config = crate::proxy::ProxyConfig::from_json(
            r#"{"clusters":[{"name":"a","namesrv":["127.0.0.1:1"]}],"access_log":"file"}"#,
        )
        .unwrap();
        let log = Arc::new(AccessLog::new(&config, stats));
        let peer = Peer::new(
            Some("10.9.8.7:40000".parse().unwrap()),
            Some("127.0.0.1:30911".parse().unwrap()),
            Some(Arc::from("10.0.0.1:10911")),
        );
        (r.with_access(log.clone(), peer), log)
    }

    fn log_lines(log: &AccessLog) -> Vec<serde_json::Value> {
        let text = String::from_utf8(log.take(Duration::ZERO)).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn send_v2(topic: &str, opaque: i32, flag: i32) -> (Vec<u8>, FrameView) {
        let mut c = RemotingCommand::request(rc::SEND_MESSAGE_V2);
        c.opaque = opaque;
        c.flag = flag;
        c.ext_fields.insert("b".into(), topic.into());
        c.ext_fields.insert("e".into(), "2".into());
        let f = c.encode(SerializeType::RocketMq).unwrap();
        let v = FrameView::parse(&f).unwrap();
        (f, v)
    }

    #[test]
    fn every_request_gets_one_access_log_line_however_it_ends() {
        let t0 = Instant::now();
        let (mut r, log) = logged(t0);
        // Answered: connect, forward, the broker's answer 3 ms later.
        let (f, v) = send_v2("orders", 1, 0);
        assert_eq!(
            r.on_client_frame(&f, &v, Duration::ZERO, t0, false),
            ClientStep::Connect
        );
        assert!(log_lines(&log).is_empty(), "logged when it ends");
        r.connected(&v, Duration::ZERO, t0);
        let answer = RemotingCommand::response_to(1, resp::SUCCESS, None)
            .encode(SerializeType::Json)
            .unwrap();
        let av = FrameView::parse(&answer).unwrap();
        r.on_broker_frame(&answer, &av, t0 + Duration::from_millis(3));
        let [l] = &log_lines(&log)[..] else { panic!() };
        assert_eq!((&l["topic"], &l["queue"]), (&"orders".into(), &2.into()));
        assert_eq!(l["bytes_in"], f.len());
        assert_eq!(l["bytes_out"], answer.len());
        assert_eq!(l["latency_ms"].as_f64().unwrap(), 3.0);
        assert_eq!(l["response_code"], 0);
        assert_eq!(l["client"], "10.9.8.7:40000");
        assert_eq!(l["broker"], "10.0.0.1:10911");
        // Oneway: logged as it goes, with no response.
        let (f, v) = send_v2("orders", 2, 2);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        let [l] = &log_lines(&log)[..] else { panic!() };
        assert_eq!(
            (&l["oneway"], &l["response_code"]),
            (&true.into(), &().into())
        );
        // Timed out: the local SYSTEM_BUSY.
        let (f, v) = send_v2("orders", 3, 0);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        let t = r.on_tick(t0 + LIMITS.request_timeout, false);
        let [l] = &log_lines(&log)[..] else { panic!() };
        assert_eq!(l["local_reply"], "timeout");
        assert_eq!(l["response_code"], resp::SYSTEM_BUSY);
        assert_eq!(l["bytes_out"], t.replies[0].len());
        assert_eq!(l["latency_ms"].as_f64().unwrap(), 1000.0);
        // Refused by the policy, oneway or not.
        let (f, v) = frame(rc::UPDATE_BROKER_CONFIG, 4, 0);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        let (f, v) = frame(rc::UPDATE_BROKER_CONFIG, 5, 2);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        let lines = log_lines(&log);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["opaque"].clone(), l["response_code"].clone()))
            .collect();
        assert_eq!(
            got,
            [
                (4.into(), resp::NO_PERMISSION.into()),
                (5.into(), ().into())
            ]
        );
        assert!(lines.iter().all(|l| l["local_reply"] == "denied"));
        // Still in flight when the connection closes; and shutdown.
        let (f, v) = send_v2("orders", 6, 0);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        let (f, v) = send_v2("orders", 7, 0);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, true);
        r.close(t0);
        let lines = log_lines(&log);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["opaque"].clone(), l["local_reply"].clone()))
            .collect();
        assert_eq!(
            got,
            [(7.into(), "shutdown".into()), (6.into(), "closed".into())]
        );
    }

    #[test]
    fn an_unreachable_broker_is_in_the_access_log_with_the_connect_time() {
        let t0 = Instant::now();
        let (mut r, log) = logged(t0);
        let (f, v) = send_v2("orders", 1, 0);
        r.on_client_frame(&f, &v, Duration::ZERO, t0, false);
        r.unreachable(&v, "refused".into(), t0 + Duration::from_millis(20));
        // And within the pause, answered at once.
        let (f, v) = send_v2("orders", 2, 0);
        r.on_client_frame(
            &f,
            &v,
            Duration::ZERO,
            t0 + Duration::from_millis(30),
            false,
        );
        let lines = log_lines(&log);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["local_reply"].clone(), l["latency_ms"].as_f64().unwrap()))
            .collect();
        assert_eq!(
            got,
            [("unavailable".into(), 20.0), ("unavailable".into(), 0.0)]
        );
        assert!(lines
            .iter()
            .all(|l| l["response_code"] == resp::SYSTEM_ERROR));
    }

    #[test]
    fn client_responses_go_to_the_broker_only_when_connected() {
        let t0 = Instant::now();
        let (mut r, _) = relay(t0);
        let (_, check_answer) = frame(0, 11, 1);
        assert_eq!(
            r.on_client_frame(&[], &check_answer, Duration::ZERO, t0, false),
            ClientStep::Drop
        );
        let (_, hb) = frame(rc::HEART_BEAT, 1, 0);
        r.on_client_frame(&[], &hb, Duration::ZERO, t0, false);
        r.connected(&hb, Duration::ZERO, t0);
        assert_eq!(
            r.on_client_frame(&[], &check_answer, Duration::ZERO, t0, false),
            ClientStep::Forward
        );
        r.upstream_lost();
        assert_eq!(
            r.on_client_frame(&[], &check_answer, Duration::ZERO, t0, false),
            ClientStep::Drop
        );
    }
}
