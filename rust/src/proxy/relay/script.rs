//! The relay's decision step driven by a script of bytes, checked against a model: the fuzz
//! target `relay` (feature `fuzzing`) and the unit tests below run it.
//!
//! A script is a sequence of events for one connection (client requests, raw client frames,
//! broker answers and requests, clock ticks, a lost broker connection, the start of a
//! drain), each read from the next few bytes. The model is what a client may rely on, kept
//! independently of `Relay`'s own bookkeeping:
//!
//! - a request the policy refuses, or that arrives while draining, is never forwarded; one
//!   that is not oneway gets exactly one local reply with its opaque, and a oneway one none;
//! - every forwarded request that expects an answer gets exactly one: the broker's (relayed)
//!   or, once its deadline (timeout plus long-poll hold) has passed, a local SYSTEM_BUSY at the
//!   next tick, never both; END_TRANSACTION is never answered locally;
//! - a broker response nobody waits for is dropped as late; a broker request is relayed;
//! - the connection closes for idleness only with no answer owed, and closes at a draining
//!   tick once no answer is owed;
//! - after close, the in-flight, pending and upstream-connection gauges are back at zero, and
//!   the local replies counted equal the local replies made.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::state::{long_poll_hold, ClientStep, Limits, Relay};
use crate::codec::codes::{request as rc, response as resp};
use crate::codec::frame::FrameView;
use crate::codec::{RemotingCommand, SerializeType};
use crate::proxy::policy::{Client, Listener, Policy, Request, RuleConfig};
use crate::proxy::stats::ProxyStats;

const LIMITS: Limits = Limits {
    request_timeout: Duration::from_millis(3000),
    drain_timeout: Duration::from_millis(5000),
    idle_timeout: Some(Duration::from_secs(20)),
};

/// Request codes the scripts pick from: data path, long polls, a transaction end and
/// administration the default policy refuses.
const CODES: [i32; 12] = [
    rc::SEND_MESSAGE,
    rc::SEND_MESSAGE_V2,
    rc::SEND_BATCH_MESSAGE,
    rc::PULL_MESSAGE,
    rc::POP_MESSAGE,
    rc::HEART_BEAT,
    rc::END_TRANSACTION,
    rc::QUERY_CONSUMER_OFFSET,
    rc::UPDATE_AND_CREATE_TOPIC,
    rc::UPDATE_BROKER_CONFIG,
    rc::GET_BROKER_CONFIG,
    rc::DELETE_TOPIC_IN_BROKER,
];

/// Reads the script a byte at a time; past its end every read is zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An answer the client is owed.
#[derive(Debug, Clone, Copy)]
struct Owed {
    deadline: Instant,
    /// END_TRANSACTION: relayed if it comes, never answered locally.
    optional: bool,
}

struct Model {
    relay: Relay,
    stats: Arc<ProxyStats>,
    policy: Arc<Policy>,
    now: Instant,
    draining: bool,
    owed: HashMap<i32, Owed>,
    upstream: bool,
    local_replies: u64,
    refused_oneway: u64,
}

/// Which policy a script runs under (its first byte); compiled once per process.
fn policy_of(b: u8) -> Arc<Policy> {
    static POLICIES: OnceLock<Vec<Arc<Policy>>> = OnceLock::new();
    let all = POLICIES.get_or_init(|| (0..4).map(|i| Arc::new(compile_policy(i))).collect());
    all[usize::from(b % 4)].clone()
}

fn compile_policy(b: u8) -> Policy {
    let rules = match b % 4 {
        0 => return Policy::data_path(),
        1 => return Policy::new(&[], "allow-all").unwrap_or_else(|_| Policy::data_path()),
        2 => {
            r#"[{"action": "deny", "topics": "^secret"},
                 {"action": "allow", "codes": ["UPDATE_AND_CREATE_TOPIC"], "groups": "^ops$"}]"#
        }
        _ => {
            r#"[{"action": "allow", "access_keys": ["ak1"]},
                 {"action": "deny", "codes": [10, 310]}]"#
        }
    };
    let rules: Vec<RuleConfig> = serde_json::from_str(rules).unwrap_or_default();
    Policy::new(&rules, "data-path").unwrap_or_else(|_| Policy::data_path())
}

/// A request frame built from the script: code, opaque (few, so they collide), flag, header
/// fields and encoding.
fn request(s: &mut Bytes<'_>) -> Vec<u8> {
    let pick = s.byte();
    let code = match CODES.get(usize::from(pick) % 16) {
        Some(c) => *c,
        None => i32::from(s.byte()),
    };
    let mut c = RemotingCommand::request(code);
    c.opaque = i32::from(s.byte() % 8);
    let flags = s.byte();
    c.flag = i32::from(flags & 3);
    let fields = s.byte();
    let topics = ["TopicA", "secret-orders", "%RETRY%g"];
    c.ext_fields.insert(
        "topic".into(),
        topics[usize::from(fields) % topics.len()].into(),
    );
    if fields & 4 != 0 {
        c.ext_fields.insert("consumerGroup".into(), "ops".into());
    }
    if fields & 8 != 0 {
        c.ext_fields.insert("AccessKey".into(), "ak1".into());
    }
    if fields & 16 != 0 {
        let hold = u64::from(s.byte()) * 100;
        c.ext_fields
            .insert("suspendTimeoutMillis".into(), hold.to_string());
        c.ext_fields.insert("pollTime".into(), hold.to_string());
    }
    let st = if flags & 4 != 0 && c.code <= i32::from(i16::MAX) {
        SerializeType::RocketMq
    } else {
        SerializeType::Json
    };
    c.encode(st).unwrap_or_default()
}

/// A frame from the broker: a response to one of the opaques, or a request of its own.
fn broker_frame(s: &mut Bytes<'_>) -> Vec<u8> {
    let b = s.byte();
    let c = if b & 0x80 != 0 {
        let mut c = RemotingCommand::request(rc::CHECK_TRANSACTION_STATE);
        c.opaque = i32::from(s.byte());
        c
    } else {
        let code = [resp::SUCCESS, resp::SYSTEM_ERROR, resp::TOPIC_NOT_EXIST][usize::from(b % 3)];
        RemotingCommand::response_to(i32::from(s.byte() % 8), code, None)
    };
    c.encode(SerializeType::Json).unwrap_or_default()
}

impl Model {
    fn new(policy: Arc<Policy>) -> Self {
        let stats = Arc::new(ProxyStats::default());
        let now = Instant::now();
        let relay = Relay::new(Arc::from("broker-a:10911"), LIMITS, stats.clone(), now)
            .with_policy(policy.clone(), Client::default());
        Model {
            relay,
            stats,
            policy,
            now,
            draining: false,
            owed: HashMap::new(),
            upstream: false,
            local_replies: 0,
            refused_oneway: 0,
        }
    }

    /// Whether the policy would refuse this request (asked of the policy directly, with the
    /// header decoded in full).
    fn refused(&self, frame: &[u8], view: &FrameView) -> bool {
        let header = RemotingCommand::decode(frame).ok();
        let ext = |k: &str| header.as_ref().and_then(|h| h.ext_fields.get(k).cloned());
        let req = Request {
            code: view.code,
            listener: Listener::Broker,
            client: &Client::default(),
            ext: &ext,
        };
        if header.is_none() && self.policy.reads_header() {
            return true;
        }
        self.policy.check(&req).is_some()
    }

    fn client_frame(&mut self, frame: &[u8], s: &mut Bytes<'_>) {
        let Ok(view) = FrameView::parse(frame) else {
            return;
        };
        let hold = long_poll_hold(frame, &view);
        let refused = !view.is_response() && self.refused(frame, &view);
        let mut step = self
            .relay
            .on_client_frame(frame, &view, hold, self.now, self.draining);
        if step == ClientStep::Connect {
            assert!(!self.upstream, "Connect with a broker connection up");
            assert!(
                !refused && !self.draining,
                "a refused request would connect"
            );
            step = if s.byte() & 1 == 0 {
                self.upstream = true;
                self.relay.connected(&view, hold, self.now)
            } else {
                self.relay
                    .unreachable(&view, "connection refused".into(), self.now)
            };
        }
        if view.is_response() {
            let expect = if self.upstream {
                ClientStep::Forward
            } else {
                ClientStep::Drop
            };
            assert_eq!(step, expect, "a client's response");
            return;
        }
        match step {
            ClientStep::Forward => {
                assert!(self.upstream, "forwarded with no broker connection");
                assert!(!refused, "code {} forwarded against the policy", view.code);
                assert!(!self.draining, "forwarded while draining");
                if !view.is_oneway() {
                    // A reused opaque: the earlier request's answer is no longer owed.
                    self.owed.insert(
                        view.opaque,
                        Owed {
                            deadline: self.now + hold + LIMITS.request_timeout,
                            optional: view.code == rc::END_TRANSACTION,
                        },
                    );
                }
            }
            ClientStep::Reply(bytes) => {
                assert!(!view.is_oneway(), "a local reply to a oneway request");
                let r = RemotingCommand::decode(&bytes).expect("a local reply decodes");
                assert!(r.is_response() && r.opaque == view.opaque, "reply {r:?}");
                let want = if refused {
                    resp::NO_PERMISSION
                } else if self.draining {
                    resp::SYSTEM_BUSY
                } else {
                    resp::SYSTEM_ERROR
                };
                assert_eq!(r.code, want, "local reply code for {view:?}");
                assert!(r
                    .remark
                    .as_deref()
                    .is_some_and(|m| m.starts_with("rmqfast: ")));
                self.local_replies += 1;
                // The broker is not asked, so an earlier request with this opaque is still owed.
            }
            ClientStep::Drop => {
                assert!(view.is_oneway(), "a request dropped without an answer");
                if refused {
                    self.refused_oneway += 1;
                }
            }
            ClientStep::Connect => unreachable!("Connect was resolved above"),
        }
    }

    fn broker_frame(&mut self, frame: &[u8]) {
        if !self.upstream {
            return;
        }
        let Ok(view) = FrameView::parse(frame) else {
            return;
        };
        let step = self.relay.on_broker_frame(frame, &view, self.now);
        let owed = view.is_response() && self.owed.remove(&view.opaque).is_some();
        let forward = !view.is_response() || owed;
        assert_eq!(
            step == super::state::BrokerStep::Forward,
            forward,
            "broker frame {view:?}"
        );
    }

    /// Returns whether the connection closed.
    fn tick(&mut self, advance: Duration) -> bool {
        self.now += advance;
        let t = self.relay.on_tick(self.now, self.draining);
        let now = self.now;
        let mut due: Vec<i32> = self
            .owed
            .iter()
            .filter(|(_, o)| o.deadline <= now && !o.optional)
            .map(|(k, _)| *k)
            .collect();
        due.sort_unstable();
        let mut got: Vec<i32> = t
            .replies
            .iter()
            .map(|b| {
                let r = RemotingCommand::decode(b).expect("a timeout reply decodes");
                assert_eq!(r.code, resp::SYSTEM_BUSY, "a timeout reply");
                r.opaque
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, due, "timeout replies at {advance:?}");
        self.local_replies += got.len() as u64;
        self.owed.retain(|_, o| o.deadline > now);
        let owing = self.owed.values().any(|o| !o.optional);
        if self.draining && !owing {
            assert!(t.close, "draining with nothing owed must close");
        }
        if t.close && !self.draining {
            assert!(!owing, "closed for idleness with an answer owed");
        }
        t.close
    }

    fn finish(mut self) {
        self.relay.close(self.now);
        let c = &self.stats.c;
        assert_eq!(
            c.request_active.load(Relaxed),
            0,
            "request_active after close"
        );
        assert_eq!(
            c.total_pending.load(Relaxed),
            0,
            "total_pending after close"
        );
        assert_eq!(
            c.upstream_connections_active.load(Relaxed),
            0,
            "upstream_connections_active after close"
        );
        // Every per-code in-flight gauge too (the relay opens no client connections).
        for (name, v) in c.gauges() {
            if name.ends_with("_active") && !name.starts_with("connections") {
                assert_eq!(v, 0, "gauge {name} after close");
            }
        }
        // Refusals are counted whether or not they are answered (a oneway one is not).
        let counted = c.local_reply_timeout.load(Relaxed)
            + c.local_reply_upstream_unavailable.load(Relaxed)
            + c.local_reply_shutdown.load(Relaxed)
            + c.request_denied.load(Relaxed);
        assert_eq!(
            counted,
            self.local_replies + self.refused_oneway,
            "local replies and refusals counted vs made"
        );
    }
}

/// Runs one script (see the module docs); panics where the relay and the model disagree.
pub fn run(script: &[u8]) {
    let mut s = Bytes(script);
    let mut m = Model::new(policy_of(s.byte()));
    while !s.is_empty() {
        match s.byte() % 10 {
            0..=3 => {
                let f = request(&mut s);
                m.client_frame(&f, &mut s);
            }
            4 => {
                // A raw frame: whatever the bytes say, split as the reader would.
                let n = usize::from(s.byte());
                let raw = s.take(n).to_vec();
                if let Ok(Some(len)) = crate::codec::frame::split(&raw, 1 << 20) {
                    m.client_frame(&raw[..len], &mut s);
                }
            }
            5 | 6 => {
                let f = broker_frame(&mut s);
                m.broker_frame(&f);
            }
            7 => {
                let advance = Duration::from_millis(u64::from(s.byte()) * 200);
                if m.tick(advance) {
                    break;
                }
            }
            8 => {
                if m.upstream {
                    m.relay.upstream_lost();
                    m.upstream = false;
                    // Answers owed on a lost connection come as timeouts.
                }
            }
            _ => m.draining = true,
        }
    }
    m.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_of_every_kind_agree_with_the_model() {
        // Requests, answers, a long poll, a timeout, draining: a few fixed scripts first.
        run(&[0, 0, 1, 3, 0, 0, 0, 5, 0, 3, 7, 200]);
        run(&[0, 0, 3, 1, 0, 16, 5, 0, 7, 20, 7, 255, 9, 7, 1]);
        run(&[2, 0, 8, 2, 0, 0, 0, 0, 9, 0, 8, 1, 0, 0, 0]);
        // Then many pseudo-random ones (an LCG, so the run is repeatable).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let len = (x >> 40) as usize % 200;
            let script: Vec<u8> = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            run(&script);
        }
    }
}
