//! Route JSON (TopicRouteData, ClusterInfo) and the proxy's broker-address rewrite.
//!
//! Asserts, for whatever parses as either type: `to_json` parses back to an equal value and
//! is stable; the rewrite visits exactly the addresses the structure holds, with their
//! broker name and id; after rewriting every address to one fixed address, serialising and
//! parsing again, every address is that one and none was lost; and (ClusterInfo) merging a
//! cluster with itself or with nothing changes nothing.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::route::{BrokerAddrs, BrokerData, ClusterInfo, TopicRouteData};

const FIXED: &str = "203.0.113.7:10911";

fuzz_target!(|data: &[u8]| {
    if let Ok(route) = TopicRouteData::from_json(data) {
        let held = triples(route.broker_datas.iter());
        check(route, held, TopicRouteData::from_json);
    }
    if let Ok(cluster) = ClusterInfo::from_json(data) {
        let held = triples(cluster.broker_addr_table.values());
        let mut twice = cluster.clone();
        twice.merge(cluster.clone());
        assert_eq!(twice, cluster, "merging a cluster with itself");
        let mut with_nothing = cluster.clone();
        with_nothing.merge(ClusterInfo::default());
        assert_eq!(with_nothing, cluster, "merging nothing");
        check(cluster, held, ClusterInfo::from_json);
    }
});

type Triple = (String, i64, String);

fn triples<'a>(brokers: impl Iterator<Item = &'a BrokerData>) -> Vec<Triple> {
    brokers
        .flat_map(|bd| {
            bd.broker_addrs
                .iter()
                .map(|(id, addr)| (bd.broker_name.clone(), *id, addr.clone()))
        })
        .collect()
}

fn check<T, E>(mut value: T, held: Vec<Triple>, parse: fn(&[u8]) -> Result<T, E>)
where
    T: BrokerAddrs + PartialEq + Debug,
    E: Debug,
{
    let json = value.to_json();
    let back = parse(&json).unwrap_or_else(|e| panic!("to_json does not parse: {e:?}"));
    assert_eq!(back, value, "to_json round trip");
    assert_eq!(back.to_json(), json, "to_json is stable");

    let mut visited = Vec::new();
    value.rewrite_broker_addrs(&mut |name, id, addr| {
        visited.push((name.to_owned(), id, addr.to_owned()));
        Some(FIXED.to_owned())
    });
    assert_eq!(
        visited, held,
        "rewrite visits every address with its broker and id"
    );

    let rewritten = value.to_json();
    let mut reparsed =
        parse(&rewritten).unwrap_or_else(|e| panic!("rewritten route does not parse: {e:?}"));
    assert_eq!(reparsed, value, "rewritten route round trip");
    let addrs = reparsed.broker_addr_list();
    assert_eq!(
        addrs.len(),
        held.len(),
        "addresses lost or added by the rewrite"
    );
    assert!(
        addrs.iter().all(|a| a == FIXED),
        "an address escaped the rewrite: {addrs:?}"
    );
}
