//! Route JSON: TopicRouteData (the GET_ROUTEINFO_BY_TOPIC body) and ClusterInfo (the
//! GET_BROKER_CLUSTER_INFO body), as fastjson writes them.
//!
//! Every struct keeps the fields it does not know in `extra`, so a proxy that rewrites broker
//! addresses passes everything else through. Known fields are declared in alphabetical order
//! because fastjson sorts fields, which makes `to_json` of a name server's answer byte-identical.
//! Parsing also accepts fastjson's bare integer keys (`{0:"127.0.0.1:10911"}`), which the name
//! server sends to clients older than 4.9.4 and always uses for the cluster-info body.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde::Serialize;
use serde_json::{Map, Value};

/// Route JSON that does not parse, with the byte offset where parsing stopped when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// Byte offset in the input (before any bare-key quoting), if serde_json reported one.
    pub offset: Option<usize>,
    /// What was expected or wrong.
    pub message: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(at) => write!(f, "route JSON at byte {at}: {}", self.message),
            None => write!(f, "route JSON: {}", self.message),
        }
    }
}

impl std::error::Error for RouteError {}

/// Reads `null` as the default, since Java may hold a null collection.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One broker group's queues for a topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// Broker group name.
    #[serde(default, deserialize_with = "nullable")]
    pub broker_name: String,
    /// Permission bits: 0x2 write, 0x4 read, 0x1 inherit, 0x8 priority.
    #[serde(default)]
    pub perm: i32,
    /// Number of readable queues.
    #[serde(default)]
    pub read_queue_nums: i32,
    /// Topic system flag.
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Number of writable queues.
    #[serde(default)]
    pub write_queue_nums: i32,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One broker group: its cluster, name and `brokerId -> "ip:port"` (0 is the master).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id to address; written with quoted keys, read with or without.
    #[serde(default, deserialize_with = "nullable")]
    pub broker_addrs: BTreeMap<i64, String>,
    /// Broker group name.
    #[serde(default, deserialize_with = "nullable")]
    pub broker_name: String,
    /// Cluster name.
    #[serde(default, deserialize_with = "nullable")]
    pub cluster: String,
    /// Whether a slave may act as master.
    #[serde(default, deserialize_with = "nullable")]
    pub enable_acting_master: bool,
    /// Zone name, omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BrokerData {
    fn rewrite(&mut self, f: &mut dyn FnMut(&str, i64, &str) -> Option<String>) {
        for (id, addr) in self.broker_addrs.iter_mut() {
            if let Some(new) = f(&self.broker_name, *id, addr) {
                *addr = new;
            }
        }
    }
}

/// The route of one topic (the body of GET_ROUTEINFO_BY_TOPIC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Broker groups serving the topic.
    #[serde(default, deserialize_with = "nullable")]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers by broker address (obsolete; empty in 5.x).
    #[serde(default, deserialize_with = "nullable")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Ordered-topic configuration ("brokerName:queueNums;..."), omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per broker group.
    #[serde(default, deserialize_with = "nullable")]
    pub queue_datas: Vec<QueueData>,
    /// Static-topic queue mapping per broker name, kept opaque; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<Map<String, Value>>,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TopicRouteData {
    /// Parses standard JSON or fastjson's bare-integer-key variant.
    pub fn from_json(json: &[u8]) -> Result<Self, RouteError> {
        parse(json)
    }
}

/// Brokers and clusters known to a name server (the body of GET_BROKER_CLUSTER_INFO).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker group name to broker data.
    #[serde(default, deserialize_with = "nullable")]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name to broker group names.
    #[serde(default, deserialize_with = "nullable")]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ClusterInfo {
    /// Parses standard JSON or fastjson's bare-integer-key variant.
    pub fn from_json(json: &[u8]) -> Result<Self, RouteError> {
        parse(json)
    }

    /// Folds in another cluster's answer as one RocketMQ name server would hold both: broker
    /// groups, broker ids and cluster members are unioned (a name server keys brokers by
    /// name and adds each registering id to the group it already has); where both have a
    /// value (the same id of the same group, the group's cluster), `self`'s is kept, and so
    /// are fields this version does not know.
    pub fn merge(&mut self, other: ClusterInfo) {
        for (name, bd) in other.broker_addr_table {
            match self.broker_addr_table.entry(name) {
                Entry::Vacant(e) => {
                    e.insert(bd);
                }
                Entry::Occupied(mut e) => {
                    let mine = e.get_mut();
                    for (id, addr) in bd.broker_addrs {
                        mine.broker_addrs.entry(id).or_insert(addr);
                    }
                    for (k, v) in bd.extra {
                        mine.extra.entry(k).or_insert(v);
                    }
                }
            }
        }
        for (cluster, names) in other.cluster_addr_table {
            let mine = self.cluster_addr_table.entry(cluster).or_default();
            for n in names {
                if !mine.contains(&n) {
                    mine.push(n);
                }
            }
        }
        for (k, v) in other.extra {
            self.extra.entry(k).or_insert(v);
        }
    }
}

/// The route bodies whose broker addresses a proxy replaces (TopicRouteData, ClusterInfo):
/// the one place that knows where in each the addresses are.
pub trait BrokerAddrs {
    /// Replaces broker addresses: `f(brokerName, brokerId, addr)` returns the new one or `None`.
    fn rewrite_broker_addrs(&mut self, f: &mut dyn FnMut(&str, i64, &str) -> Option<String>);

    /// Standard JSON with quoted integer keys, fields in fastjson's order.
    fn to_json(&self) -> Vec<u8>;

    /// Every broker address in the body, in body order, repeats included.
    fn broker_addr_list(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        self.rewrite_broker_addrs(&mut |_, _, addr| {
            all.push(addr.to_owned());
            None
        });
        all
    }
}

impl BrokerAddrs for TopicRouteData {
    fn rewrite_broker_addrs(&mut self, f: &mut dyn FnMut(&str, i64, &str) -> Option<String>) {
        for bd in &mut self.broker_datas {
            bd.rewrite(f);
        }
    }

    fn to_json(&self) -> Vec<u8> {
        to_vec(self)
    }
}

impl BrokerAddrs for ClusterInfo {
    fn rewrite_broker_addrs(&mut self, f: &mut dyn FnMut(&str, i64, &str) -> Option<String>) {
        for bd in self.broker_addr_table.values_mut() {
            bd.rewrite(f);
        }
    }

    fn to_json(&self) -> Vec<u8> {
        to_vec(self)
    }
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // These types hold only strings, integers, booleans and JSON values with string keys,
    // none of which serde_json can fail to write.
    serde_json::to_vec(value).expect("route data always serializes")
}

fn parse<T: DeserializeOwned>(json: &[u8]) -> Result<T, RouteError> {
    let (text, inserted) = quote_bare_keys(json);
    serde_json::from_slice(&text).map_err(|e| {
        let offset = error_offset(&text, &e).map(|at| {
            // Report the offset in the caller's bytes, not in our quoted copy.
            at - inserted.partition_point(|&q| q < at)
        });
        let mut message = e.to_string();
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        RouteError { offset, message }
    })
}

/// serde_json reports line and byte column; turn them back into a byte offset.
fn error_offset(text: &[u8], e: &serde_json::Error) -> Option<usize> {
    if e.line() == 0 {
        return None;
    }
    let line_start = if e.line() == 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', text).nth(e.line() - 2)? + 1
    };
    Some((line_start + e.column()).min(text.len()))
}

/// Quotes bare integer object keys outside strings; returns the text and where quotes went in.
///
/// Borrowed (and no allocation) when the input has no bare keys, as all standard JSON does.
fn quote_bare_keys(json: &[u8]) -> (Cow<'_, [u8]>, Vec<usize>) {
    let mut out: Option<Vec<u8>> = None;
    let mut inserted = Vec::new();
    let mut copied = 0;
    // true for an object, false for an array; only an object can have a key after `{` or `,`.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i = skip_string(json, i + 1);
                expect_key = false;
                continue;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&true),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'-' | b'0'..=b'9' if expect_key => {
                let digits = json[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let end = i + 1 + digits;
                let colon = json[end..]
                    .iter()
                    .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                    .map(|p| end + p);
                let is_key =
                    (json[i] != b'-' || digits > 0) && colon.is_some_and(|c| json[c] == b':');
                if is_key {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 16));
                    buf.extend_from_slice(&json[copied..i]);
                    inserted.push(buf.len());
                    buf.push(b'"');
                    buf.extend_from_slice(&json[i..end]);
                    inserted.push(buf.len());
                    buf.push(b'"');
                    copied = end;
                }
                i = end;
                expect_key = false;
                continue;
            }
            _ => expect_key = false,
        }
        i += 1;
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&json[copied..]);
            (Cow::Owned(buf), inserted)
        }
        None => (Cow::Borrowed(json), inserted),
    }
}

/// Index just past the closing quote of a string whose body starts at `i` (or the end).
fn skip_string(json: &[u8], mut i: usize) -> usize {
    while let Some(p) = memchr::memchr2(b'"', b'\\', &json[i..]) {
        i += p;
        if json[i] == b'"' {
            return i + 1;
        }
        i += 2;
        if i >= json.len() {
            return json.len();
        }
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMESRV: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
    const NAMESRV_BARE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    #[test]
    fn numbers_past_u64_in_unknown_fields_round_trip() {
        // Found by the `route` fuzz target: an integer too big for u64 is read as the nearest
        // double, and must be read as that same double again from what to_json writes (serde_json
        // reads floats correctly rounded only with its float_roundtrip feature).
        let json =
            br#"{"brokerAddrTable":{},"clusterAddrTable":{},"x":[22222222222260824687,2.5,null]}"#;
        let c = ClusterInfo::from_json(json).unwrap();
        let again = ClusterInfo::from_json(&c.to_json()).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.to_json(), c.to_json());
    }

    #[test]
    fn name_server_route_round_trips_byte_for_byte() {
        let r = TopicRouteData::from_json(NAMESRV.as_bytes()).unwrap();
        assert_eq!(r.broker_datas.len(), 1);
        let bd = &r.broker_datas[0];
        assert_eq!(bd.broker_name, "broker-a");
        assert_eq!(bd.cluster, "DefaultCluster");
        assert_eq!(
            bd.broker_addrs.get(&0).map(String::as_str),
            Some("127.0.0.1:10911")
        );
        assert_eq!(bd.zone_name, None);
        let q = &r.queue_datas[0];
        assert_eq!((q.perm, q.read_queue_nums, q.write_queue_nums), (6, 4, 4));
        assert_eq!(r.order_topic_conf, None);
        assert_eq!(String::from_utf8(r.to_json()).unwrap(), NAMESRV);
    }

    #[test]
    fn bare_integer_keys_parse_like_quoted_ones() {
        let bare = TopicRouteData::from_json(NAMESRV_BARE.as_bytes()).unwrap();
        assert_eq!(bare, TopicRouteData::from_json(NAMESRV.as_bytes()).unwrap());
        assert_eq!(String::from_utf8(bare.to_json()).unwrap(), NAMESRV);
        let spaced = br#"{ "brokerDatas" : [ { "brokerAddrs" : { 0 : "a:1" ,
            -1:"c:3", 12 :"b:2" } } ] }"#;
        let r = TopicRouteData::from_json(spaced).unwrap();
        let addrs: Vec<_> = r.broker_datas[0].broker_addrs.iter().collect();
        assert_eq!(
            addrs,
            [
                (&-1, &"c:3".to_string()),
                (&0, &"a:1".into()),
                (&12, &"b:2".into())
            ]
        );
    }

    #[test]
    fn quoting_leaves_strings_arrays_and_values_alone() {
        let cases: &[&[u8]] = &[
            br#"{"a":"{0:1}","b":[1,2,{3:4}],"c":-5,"d":"x\"{7:"}"#,
            br#"[0, {1:2}, "\\", {"k":[{5:6}]}]"#,
            br#"{"s":"unterminated"#,
            b"{0",
            b"{-:1}",
        ];
        let (out, _) = quote_bare_keys(cases[0]);
        assert_eq!(
            &*out,
            br#"{"a":"{0:1}","b":[1,2,{"3":4}],"c":-5,"d":"x\"{7:"}"#
        );
        let (out, _) = quote_bare_keys(cases[1]);
        assert_eq!(&*out, br#"[0, {"1":2}, "\\", {"k":[{"5":6}]}]"#);
        for c in &cases[2..] {
            let (out, ins) = quote_bare_keys(c);
            assert!(matches!(out, Cow::Borrowed(_)) && ins.is_empty());
        }
        assert!(matches!(
            quote_bare_keys(NAMESRV.as_bytes()).0,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let json = br#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"b","cluster":"C","enableActingMaster":true,"zoneName":"z","newBrokerField":[1,{"x":null}]}],"filterServerTable":{},"orderTopicConf":"b:4","queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8,"newQueueField":1.5}],"topicQueueMappingByBroker":{"b":{"bname":"b","epoch":3}},"zzz":"top"}"#;
        let r = TopicRouteData::from_json(json).unwrap();
        assert_eq!(r.extra["zzz"], "top");
        assert_eq!(
            r.broker_datas[0].extra["newBrokerField"][1]["x"],
            Value::Null
        );
        assert_eq!(r.queue_datas[0].extra["newQueueField"], 1.5);
        assert_eq!(r.to_json(), json.to_vec());
        let mut r = TopicRouteData::from_json(json).unwrap();
        assert_eq!(r.broker_addr_list(), ["10.0.0.1:10911", "10.0.0.2:10911"]);
        r.rewrite_broker_addrs(&mut |name, id, addr| {
            assert_eq!(name, "b");
            (id == 0).then(|| format!("proxy:{}", addr.len()))
        });
        let text = String::from_utf8(r.to_json()).unwrap();
        assert_eq!(
            text,
            String::from_utf8(json.to_vec())
                .unwrap()
                .replace("\"0\":\"10.0.0.1:10911\"", "\"0\":\"proxy:14\"")
        );
    }

    #[test]
    fn nulls_read_as_empty() {
        let r = TopicRouteData::from_json(
            br#"{"brokerDatas":null,"queueDatas":[{"brokerName":null}],"orderTopicConf":null}"#,
        )
        .unwrap();
        assert!(r.broker_datas.is_empty());
        assert_eq!(r.queue_datas[0].broker_name, "");
        assert_eq!(
            r.to_json(),
            br#"{"brokerDatas":[],"filterServerTable":{},"queueDatas":[{"brokerName":"","perm":0,"readQueueNums":0,"topicSysFlag":0,"writeQueueNums":0}]}"#
        );
    }

    #[test]
    fn cluster_info_from_fastjson_default_output() {
        let json = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let mut c = ClusterInfo::from_json(json).unwrap();
        assert_eq!(c.cluster_addr_table["DefaultCluster"], ["broker-a"]);
        c.rewrite_broker_addrs(&mut |name, id, _| Some(format!("{name}/{id}")));
        assert_eq!(
            c.to_json(),
            br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{"0":"broker-a/0"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
        let mut same = ClusterInfo::from_json(json).unwrap();
        same.rewrite_broker_addrs(&mut |_, _, _| None);
        assert_eq!(
            ClusterInfo::from_json(&same.to_json()).unwrap(),
            ClusterInfo::from_json(json).unwrap()
        );
    }

    #[test]
    fn cluster_info_merge_unions_brokers_and_members() {
        let a = br#"{"brokerAddrTable":{"b1":{"brokerAddrs":{0:"m1"},"brokerName":"b1","cluster":"C"}},"clusterAddrTable":{"C":["b1"]}}"#;
        let b = br#"{"brokerAddrTable":{"b1":{"brokerAddrs":{0:"other",1:"s1"},"brokerName":"b1","cluster":"C"},"b2":{"brokerAddrs":{0:"m2"},"brokerName":"b2","cluster":"D"}},"clusterAddrTable":{"C":["b1"],"D":["b2"]}}"#;
        let mut m = ClusterInfo::from_json(a).unwrap();
        m.merge(ClusterInfo::from_json(b).unwrap());
        let b1 = &m.broker_addr_table["b1"].broker_addrs;
        assert_eq!((b1[&0].as_str(), b1[&1].as_str()), ("m1", "s1"));
        assert_eq!(m.broker_addr_table["b2"].broker_addrs[&0], "m2");
        assert_eq!(m.cluster_addr_table["C"], ["b1"]);
        assert_eq!(m.cluster_addr_table["D"], ["b2"]);
    }

    #[test]
    fn errors_give_byte_offsets_in_the_callers_input() {
        let e = TopicRouteData::from_json(br#"{"queueDatas":[{"perm":"x"}]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"route JSON at byte 26: invalid type: string "x", expected i32"#
        );
        // Same error after a bare key: the two inserted quotes are not counted.
        let e =
            TopicRouteData::from_json(br#"{"brokerDatas":[{"brokerAddrs":{0:"a"},"cluster":7}]}"#)
                .unwrap_err();
        assert_eq!(e.offset, Some(50), "{e}");
        let e = TopicRouteData::from_json(b"{\n\"queueDatas\":\n  [1]}").unwrap_err();
        assert_eq!(e.offset, Some(20), "{e}");
        let e = TopicRouteData::from_json(b"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "route JSON at byte 0: EOF while parsing a value"
        );
        assert!(TopicRouteData::from_json(b"[]").is_err());
        assert!(
            TopicRouteData::from_json(br#"{"brokerDatas":[{"brokerAddrs":{"x":"a"}}]}"#).is_err()
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "\\PC{0,12}"
    }

    fn route() -> impl Strategy<Value = TopicRouteData> {
        let broker = (
            proptest::collection::btree_map(any::<i64>(), name(), 0..4),
            name(),
            name(),
            any::<bool>(),
            proptest::option::of(name()),
        )
            .prop_map(|(addrs, broker_name, cluster, acting, zone)| BrokerData {
                broker_addrs: addrs,
                broker_name,
                cluster,
                enable_acting_master: acting,
                zone_name: zone,
                extra: Map::new(),
            });
        let queue = (name(), any::<[i32; 4]>()).prop_map(|(broker_name, n)| QueueData {
            broker_name,
            perm: n[0],
            read_queue_nums: n[1],
            topic_sys_flag: n[2],
            write_queue_nums: n[3],
            extra: Map::new(),
        });
        (
            proptest::collection::vec(broker, 0..4),
            proptest::collection::vec(queue, 0..4),
            proptest::option::of(name()),
            proptest::collection::btree_map("x[a-z]{0,5}", name(), 0..3),
        )
            .prop_map(|(brokers, queues, order, extra)| TopicRouteData {
                broker_datas: brokers,
                queue_datas: queues,
                order_topic_conf: order,
                extra: extra
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn route_round_trip(r in route()) {
            let json = r.to_json();
            prop_assert_eq!(TopicRouteData::from_json(&json).unwrap(), r);
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = TopicRouteData::from_json(&bytes);
            let _ = ClusterInfo::from_json(&bytes);
        }

        #[test]
        fn json_like_input_never_panics(s in "[{}\\[\\]:,\"\\\\0-9a -]{0,64}") {
            if let Err(e) = TopicRouteData::from_json(s.as_bytes()) {
                prop_assert!(e.offset.is_none_or(|o| o <= s.len()));
            }
        }
    }
}
