//! The request policy: which client requests the proxy relays.
//!
//! Rules (`[[policy]]` in the config) are tried in order and the first that matches decides;
//! when none does, `policy_default` decides: `data-path` (the default) relays what producers,
//! consumers and read-only tools send and refuses cluster administration (topic, config, ACL
//! and key-value writes, config reads); `allow-all` relays everything. A refused request gets
//! RocketMQ's `NO_PERMISSION` with a remark naming the rule, as a broker with ACL would answer.
//!
//! The decision reads the request code from the frame view, and the topic and group only when
//! a rule asks for them (a borrowed decode of the header). The view and the full decoder reject
//! the same ambiguous headers (a key given twice), so what the policy reads is what the broker
//! will read.

use std::net::IpAddr;
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use crate::codec::codes::request as rc;
use crate::codec::codes::request_name;

/// Which face of the proxy a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Namesrv,
    Broker,
}

/// A request code in the config: a number or RocketMQ's name for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CodeSpec {
    Number(i32),
    Name(String),
}

/// One `[[policy]]` rule as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in the remark of a refusal; defaults to `policy[i]`.
    #[serde(default)]
    pub name: Option<String>,
    /// `allow` or `deny`.
    pub action: String,
    /// Request codes (numbers or names); any code when absent.
    #[serde(default)]
    pub codes: Option<Vec<CodeSpec>>,
    /// Client addresses (`IP` or `IP/prefix`); any client when absent.
    #[serde(default)]
    pub clients: Option<Vec<String>>,
    /// `namesrv` and/or `broker`; both when absent.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
    /// A regular expression the request's topic must match (requests without one do not).
    #[serde(default)]
    pub topics: Option<String>,
    /// A regular expression the request's producer or consumer group must match.
    #[serde(default)]
    pub groups: Option<String>,
    /// AccessKeys of signed (ACL) requests; requests signed with another key, or unsigned, do
    /// not match. The signature itself is left to the broker to verify.
    #[serde(default)]
    pub access_keys: Option<Vec<String>>,
    /// A regular expression the subject of the client's verified TLS certificate (RFC 4514,
    /// e.g. `CN=orders,O=Acme`) must match; clients without a certificate do not match.
    #[serde(default)]
    pub subjects: Option<String>,
}

/// The keys of a `[[policy]]` rule, in `RuleConfig`'s order (a test checks it against serde's
/// own list, so the config layer in Python names unknown keys from here).
pub const RULE_KEYS: [&str; 9] = [
    "name",
    "action",
    "codes",
    "clients",
    "listeners",
    "topics",
    "groups",
    "access_keys",
    "subjects",
];

/// Who sent a request: the connection's address and, over mutual TLS, the RFC 4514 subject of
/// the certificate it presented (verified against `tls_client_ca_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub addr: Option<IpAddr>,
    pub subject: Option<Arc<str>>,
}

/// The data-path codes `policy_default = "data-path"` relays: everything a producer, a
/// consumer (pull, push, pop, lite pull, orderly), a transaction and a read-only tool sends.
/// Broker-to-client requests (transaction checks, consumer notices) and clients' answers to
/// them are not client requests and are always relayed.
pub const fn is_data_path(code: i32) -> bool {
    matches!(
        code,
        // producers
        rc::SEND_MESSAGE
            | rc::SEND_MESSAGE_V2
            | rc::SEND_BATCH_MESSAGE
            | rc::SEND_REPLY_MESSAGE
            | rc::SEND_REPLY_MESSAGE_V2
            | rc::END_TRANSACTION
            | rc::RECALL_MESSAGE
            | rc::CONSUMER_SEND_MSG_BACK
            // consumers: pull, offsets, queries, locks, pop
            | rc::PULL_MESSAGE
            | rc::LITE_PULL_MESSAGE
            | rc::QUERY_MESSAGE
            | rc::VIEW_MESSAGE_BY_ID
            | rc::QUERY_CONSUMER_OFFSET
            | rc::UPDATE_CONSUMER_OFFSET
            | rc::QUERY_BROKER_OFFSET
            | rc::GET_MAX_OFFSET
            | rc::GET_MIN_OFFSET
            | rc::GET_EARLIEST_MSG_STORETIME
            | rc::SEARCH_OFFSET_BY_TIMESTAMP
            | rc::GET_CONSUMER_LIST_BY_GROUP
            | rc::LOCK_BATCH_MQ
            | rc::UNLOCK_BATCH_MQ
            | rc::CHECK_CLIENT_CONFIG
            | rc::QUERY_ASSIGNMENT
            | rc::SET_MESSAGE_REQUEST_MODE
            | rc::POP_MESSAGE
            | rc::ACK_MESSAGE
            | rc::BATCH_ACK_MESSAGE
            | rc::PEEK_MESSAGE
            | rc::CHANGE_MESSAGE_INVISIBLETIME
            | rc::NOTIFICATION
            | rc::POLLING_INFO
            | rc::POP_ROLLBACK
            // every client
            | rc::HEART_BEAT
            | rc::UNREGISTER_CLIENT
            | rc::GET_ROUTEINFO_BY_TOPIC
            | rc::GET_BROKER_CLUSTER_INFO
            // read-only tools (mqadmin's clusterList, topicList, topicStatus, consumerProgress,
            // consumerConnection, producerConnection, brokerStatus, queryMsgById, ...)
            | rc::GET_BROKER_RUNTIME_INFO
            | rc::GET_TOPIC_STATS_INFO
            | rc::GET_CONSUMER_CONNECTION_LIST
            | rc::GET_PRODUCER_CONNECTION_LIST
            | rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
            | rc::GET_CONSUME_STATS
            | rc::GET_TOPICS_BY_CLUSTER
            | rc::QUERY_TOPIC_CONSUME_BY_WHO
            | rc::QUERY_CONSUME_TIME_SPAN
            | rc::GET_SYSTEM_TOPIC_LIST_FROM_NS
            | rc::GET_SYSTEM_TOPIC_LIST_FROM_BROKER
            | rc::GET_CONSUMER_RUNNING_INFO
            | rc::GET_BROKER_CONSUME_STATS
            | rc::VIEW_BROKER_STATS_DATA
            | rc::WHO_CONSUME_THE_MESSAGE
            | rc::QUERY_TOPICS_BY_CONSUMER
            | rc::QUERY_SUBSCRIPTION_BY_CONSUMER
            | rc::QUERY_CONSUME_QUEUE
    )
}

/// What the rules decide when none matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Default {
    DataPath,
    AllowAll,
}

#[derive(Debug, Clone)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Result<Net, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("expected an IP address or IP/prefix, got {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "expected a prefix length from 0 to {max}, got {s:?}"
                    ))
                }
            },
        };
        Ok(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            // An IPv4 client seen through an IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    allow: bool,
    codes: Option<Vec<i32>>,
    clients: Option<Vec<Net>>,
    listeners: Option<Vec<Listener>>,
    topics: Option<Regex>,
    groups: Option<Regex>,
    access_keys: Option<Vec<String>>,
    subjects: Option<Regex>,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Default,
    /// Whether any rule reads the topic or group (only then is the header decoded).
    reads_header: bool,
}

/// What the policy needs to know about one request.
pub struct Request<'a> {
    pub code: i32,
    pub listener: Listener,
    pub client: &'a Client,
    /// The request's header fields by name, read only if a rule needs the topic or group.
    pub ext: &'a dyn Fn(&str) -> Option<String>,
}

/// The header fields that name a request's topic, and its group, across request types
/// (`b` and `a` are SEND_MESSAGE_V2's short names).
const TOPIC_KEYS: [&str; 2] = ["topic", "b"];
const GROUP_KEYS: [&str; 4] = ["consumerGroup", "producerGroup", "group", "a"];

impl Policy {
    /// The policy of `rules` with `default` (`data-path` or `allow-all`); errors name the field.
    pub fn new(rules: &[RuleConfig], default: &str) -> Result<Policy, String> {
        let default = match default {
            "data-path" => Default::DataPath,
            "allow-all" => Default::AllowAll,
            other => {
                return Err(format!(
                    "policy_default: expected \"data-path\" or \"allow-all\", got {other:?}"
                ))
            }
        };
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let field = |f: &str| format!("policy[{i}].{f}");
            let allow = match r.action.as_str() {
                "allow" => true,
                "deny" => false,
                other => {
                    return Err(format!(
                        "{}: expected \"allow\" or \"deny\", got {other:?}",
                        field("action")
                    ))
                }
            };
            let codes = match &r.codes {
                None => None,
                Some(list) => {
                    let mut v = Vec::with_capacity(list.len());
                    for c in list {
                        v.push(match c {
                            CodeSpec::Number(n) => *n,
                            CodeSpec::Name(name) => rc::code(name).ok_or_else(|| {
                                format!(
                                    "{}: expected a request code or RocketMQ's name for one \
                                     (e.g. UPDATE_BROKER_CONFIG), got {name:?}",
                                    field("codes")
                                )
                            })?,
                        });
                    }
                    Some(v)
                }
            };
            let clients = match &r.clients {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|s| Net::parse(s).map_err(|e| format!("{}: {e}", field("clients"))))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let listeners = match &r.listeners {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|s| match s.as_str() {
                            "namesrv" => Ok(Listener::Namesrv),
                            "broker" => Ok(Listener::Broker),
                            other => Err(format!(
                                "{}: expected \"namesrv\" or \"broker\", got {other:?}",
                                field("listeners")
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let regex = |f: &str, s: &Option<String>| -> Result<Option<Regex>, String> {
                s.as_deref()
                    .map(|p| {
                        Regex::new(p).map_err(|e| {
                            format!("{}: not a valid regular expression: {e}", field(f))
                        })
                    })
                    .transpose()
            };
            out.push(Rule {
                name: r.name.clone().unwrap_or_else(|| format!("policy[{i}]")),
                allow,
                codes,
                clients,
                listeners,
                topics: regex("topics", &r.topics)?,
                groups: regex("groups", &r.groups)?,
                access_keys: r.access_keys.clone(),
                subjects: regex("subjects", &r.subjects)?,
            });
        }
        let reads_header = out
            .iter()
            .any(|r| r.topics.is_some() || r.groups.is_some() || r.access_keys.is_some());
        Ok(Policy {
            rules: out,
            default,
            reads_header,
        })
    }

    /// The default policy: data-path codes only, no rules.
    pub fn data_path() -> Policy {
        Policy {
            rules: Vec::new(),
            default: Default::DataPath,
            reads_header: false,
        }
    }

    /// Whether a decision may need the request's header fields.
    pub fn reads_header(&self) -> bool {
        self.reads_header
    }

    /// `None` to relay the request, or the remark of the `NO_PERMISSION` refusal.
    pub fn check(&self, req: &Request<'_>) -> Option<String> {
        let lookup = |keys: &[&str]| keys.iter().find_map(|k| (req.ext)(k));
        for rule in &self.rules {
            if let Some(codes) = &rule.codes {
                if !codes.contains(&req.code) {
                    continue;
                }
            }
            if let Some(ls) = &rule.listeners {
                if !ls.contains(&req.listener) {
                    continue;
                }
            }
            if let Some(nets) = &rule.clients {
                match req.client.addr {
                    Some(ip) if nets.iter().any(|n| n.contains(ip)) => {}
                    _ => continue,
                }
            }
            if let Some(re) = &rule.subjects {
                match &req.client.subject {
                    Some(s) if re.is_match(s) => {}
                    _ => continue,
                }
            }
            if let Some(re) = &rule.topics {
                match lookup(&TOPIC_KEYS) {
                    Some(t) if re.is_match(&t) => {}
                    _ => continue,
                }
            }
            if let Some(re) = &rule.groups {
                match lookup(&GROUP_KEYS) {
                    Some(g) if re.is_match(&g) => {}
                    _ => continue,
                }
            }
            if let Some(keys) = &rule.access_keys {
                match (req.ext)("AccessKey") {
                    Some(k) if keys.contains(&k) => {}
                    _ => continue,
                }
            }
            return (!rule.allow).then(|| {
                format!(
                    "rmqfast: {} refused by the proxy's policy rule {:?}",
                    describe(req.code),
                    rule.name
                )
            });
        }
        match self.default {
            Default::AllowAll => None,
            Default::DataPath if is_data_path(req.code) => None,
            Default::DataPath => Some(format!(
                "rmqfast: {} refused by the proxy's policy rule \"default\" (policy_default = \
                 \"data-path\" relays only producer, consumer and read-only requests; an \
                 operator can allow it with a [[policy]] rule)",
                describe(req.code)
            )),
        }
    }
}

fn describe(code: i32) -> String {
    match request_name(code) {
        Some(n) => format!("request code {code} ({n})"),
        None => format!("request code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Result<Policy, String> {
        let r: Vec<RuleConfig> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Policy::new(&r, "data-path")
    }

    fn check(p: &Policy, code: i32, client: &str, topic: Option<&str>) -> Option<String> {
        let topic = topic.map(str::to_owned);
        let ext = move |k: &str| match k {
            "topic" => topic.clone(),
            "AccessKey" => Some("ops-key".to_owned()),
            _ => None,
        };
        p.check(&Request {
            code,
            listener: Listener::Broker,
            client: &Client {
                addr: Some(client.parse().unwrap()),
                subject: None,
            },
            ext: &ext,
        })
    }

    #[test]
    fn the_default_relays_the_data_path_and_refuses_administration() {
        let p = Policy::data_path();
        for code in [
            rc::SEND_MESSAGE_V2,
            rc::PULL_MESSAGE,
            rc::POP_MESSAGE,
            rc::HEART_BEAT,
            rc::END_TRANSACTION,
            rc::GET_ROUTEINFO_BY_TOPIC,
        ] {
            assert_eq!(check(&p, code, "10.0.0.1", None), None, "{code}");
        }
        for code in [17, 25, 26, 100, 101, 102, 215, 216, 318, 3001, 999_999] {
            let remark = check(&p, code, "10.0.0.1", None).expect("refused");
            assert!(remark.contains("\"default\""), "{remark}");
            assert!(remark.contains(&format!("request code {code}")), "{remark}");
        }
        assert!(check(&p, 25, "10.0.0.1", None)
            .unwrap()
            .contains("UPDATE_BROKER_CONFIG"));
    }

    #[test]
    fn rules_match_in_order_by_code_client_and_topic() {
        let p = rules(
            r#"[
                {"name": "ops", "action": "allow", "codes": ["UPDATE_AND_CREATE_TOPIC", 26], "clients": ["10.1.0.0/16", "::1"]},
                {"action": "deny", "codes": [310], "topics": "^secret-"}
            ]"#,
        )
        .unwrap();
        assert_eq!(check(&p, 17, "10.1.2.3", None), None);
        assert_eq!(check(&p, 26, "::1", None), None);
        assert_eq!(check(&p, 26, "::ffff:10.1.0.9", None), None, "IPv4-mapped");
        let r = check(&p, 17, "10.2.0.1", None).unwrap();
        assert!(r.contains("\"default\""), "{r}");
        let r = check(&p, 310, "10.2.0.1", Some("secret-x")).unwrap();
        assert!(r.contains("\"policy[1]\""), "{r}");
        assert_eq!(check(&p, 310, "10.2.0.1", Some("public")), None);
        assert_eq!(
            check(&p, 310, "10.2.0.1", None),
            None,
            "no topic: the rule does not match"
        );
        assert!(p.reads_header());
    }

    #[test]
    fn a_rule_can_name_the_access_key_of_signed_requests() {
        let p = rules(r#"[{"action":"allow","codes":[25],"access_keys":["ops-key"]}]"#).unwrap();
        assert_eq!(check(&p, 25, "10.0.0.1", None), None);
        let p = rules(r#"[{"action":"allow","codes":[25],"access_keys":["other"]}]"#).unwrap();
        assert!(check(&p, 25, "10.0.0.1", None).is_some());
        assert!(p.reads_header());
    }

    #[test]
    fn rule_keys_are_the_config_fields() {
        let e = serde_json::from_str::<RuleConfig>(r#"{"action":"allow","nope":1}"#)
            .unwrap_err()
            .to_string();
        let listed: Vec<&str> = e
            .split("expected one of ")
            .nth(1)
            .unwrap()
            .split(" at line")
            .next()
            .unwrap()
            .split(", ")
            .map(|k| k.trim_matches('`'))
            .collect();
        assert_eq!(listed, RULE_KEYS, "{e}");
    }

    #[test]
    fn a_rule_can_name_the_certificate_subject_of_mutual_tls_clients() {
        let p = rules(
            r#"[{"action":"deny","subjects":"^CN=revoked,"},
                {"action":"allow","codes":["UPDATE_BROKER_CONFIG"],"subjects":"^CN=ops,O=Acme$"}]"#,
        )
        .unwrap();
        assert!(!p.reads_header(), "the subject comes from the connection");
        let ask = |code: i32, subject: Option<&str>| {
            p.check(&Request {
                code,
                listener: Listener::Broker,
                client: &Client {
                    addr: None,
                    subject: subject.map(Arc::from),
                },
                ext: &|_| None,
            })
        };
        assert_eq!(ask(rc::UPDATE_BROKER_CONFIG, Some("CN=ops,O=Acme")), None);
        // A lookalike value is escaped in RFC 4514 form, so it cannot pass for the real one.
        assert!(ask(rc::UPDATE_BROKER_CONFIG, Some("CN=x\\,CN=ops,O=Acme")).is_some());
        assert!(ask(rc::UPDATE_BROKER_CONFIG, Some("CN=app,O=Acme")).is_some());
        assert!(
            ask(rc::UPDATE_BROKER_CONFIG, None).is_some(),
            "no certificate, no match"
        );
        let denied = ask(rc::SEND_MESSAGE_V2, Some("CN=revoked,O=Acme")).unwrap();
        assert!(denied.contains("policy[0]"), "{denied}");
        assert_eq!(ask(rc::SEND_MESSAGE_V2, None), None);
    }

    #[test]
    fn allow_all_relays_what_no_rule_refuses() {
        let r: Vec<RuleConfig> =
            serde_json::from_str(r#"[{"action":"deny","codes":[25]}]"#).unwrap();
        let p = Policy::new(&r, "allow-all").unwrap();
        assert_eq!(check(&p, 17, "10.0.0.1", None), None);
        assert!(check(&p, 25, "10.0.0.1", None).is_some());
        assert!(!p.reads_header());
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (r#"[{"action":"maybe"}]"#, "policy[0].action: expected"),
            (
                r#"[{"action":"allow","codes":["NOPE"]}]"#,
                "policy[0].codes: expected a request code",
            ),
            (
                r#"[{"action":"allow"},{"action":"allow","clients":["10.0.0.0/40"]}]"#,
                "policy[1].clients: expected a prefix length",
            ),
            (
                r#"[{"action":"allow","clients":["host"]}]"#,
                "policy[0].clients: expected an IP",
            ),
            (
                r#"[{"action":"allow","listeners":["admin"]}]"#,
                "policy[0].listeners: expected",
            ),
            (
                r#"[{"action":"allow","topics":"("}]"#,
                "policy[0].topics: not a valid regular expression",
            ),
            (
                r#"[{"action":"allow","subjects":"[CN"}]"#,
                "policy[0].subjects: not a valid regular expression",
            ),
        ];
        for (json, want) in cases {
            let e = rules(json).unwrap_err();
            assert!(e.starts_with(want), "{json}: {e}");
        }
        let e = Policy::new(&[], "open").unwrap_err();
        assert!(e.starts_with("policy_default: expected"), "{e}");
    }
}
