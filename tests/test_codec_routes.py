"""Unit tests of TopicRouteData and ClusterInfo from Python (no server needed)."""

from __future__ import annotations

import json

import pytest

from rmqfast.codec import ClusterInfo, RouteError, TopicRouteData

# fastjson's form: unquoted integer keys in brokerAddrs, as the name server writes them.
ROUTE = (
    b'{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},'
    b'"brokerName":"broker-a","cluster":"c1"},{"brokerAddrs":{0:"10.0.0.3:10911"},'
    b'"brokerName":"broker-b","cluster":"c1"}],"filterServerTable":{},"extra":[1,2],'
    b'"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,'
    b'"topicSysFlag":0,"writeQueueNums":4}]}'
)
CLUSTER = (
    b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911"},'
    b'"brokerName":"broker-a","cluster":"c1"}},"clusterAddrTable":{"c1":["broker-a"]}}'
)


def test_route_reads_rewrites_and_keeps_unknown_fields() -> None:
    r = TopicRouteData.from_json(ROUTE)
    assert r.broker_addrs() == {
        "broker-a": {0: "10.0.0.1:10911", 1: "10.0.0.2:10911"},
        "broker-b": {0: "10.0.0.3:10911"},
    }
    assert r.queue_datas[0]["writeQueueNums"] == 4
    assert [b["brokerName"] for b in r.broker_datas] == ["broker-a", "broker-b"]
    assert repr(r) == 'TopicRouteData(brokers=["broker-a", "broker-b"], queue_datas=1)'
    # A dict rewrite, then a callable one that keeps what it returns None for.
    r.rewrite_broker_addrs({"10.0.0.1:10911": "127.0.0.1:30001"})
    r.rewrite_broker_addrs(lambda name, bid, addr: "127.0.0.1:30002" if bid == 1 else None)
    assert r.broker_addrs()["broker-a"] == {0: "127.0.0.1:30001", 1: "127.0.0.1:30002"}
    assert r.broker_addrs()["broker-b"] == {0: "10.0.0.3:10911"}
    out = json.loads(r.to_json())
    assert out["extra"] == [1, 2]
    assert out["brokerDatas"][0]["brokerAddrs"] == {"0": "127.0.0.1:30001", "1": "127.0.0.1:30002"}
    # Equality is by content; a round trip through to_json is equal.
    assert TopicRouteData.from_json(r.to_json()) == r
    assert r != TopicRouteData.from_json(ROUTE)
    assert r != ClusterInfo.from_json(CLUSTER)


def test_cluster_info_reads_and_rewrites() -> None:
    c = ClusterInfo.from_json(CLUSTER)
    assert c.cluster_addr_table == {"c1": ["broker-a"]}
    assert c.broker_addr_table["broker-a"]["brokerAddrs"] == {0: "10.0.0.1:10911"}
    c.rewrite_broker_addrs({"10.0.0.1:10911": "127.0.0.1:30001"})
    assert c.broker_addrs() == {"broker-a": {0: "127.0.0.1:30001"}}
    assert ClusterInfo.from_json(c.to_json()) == c
    assert 'clusters=["c1"]' in repr(c)


def test_bad_route_bodies_say_where() -> None:
    with pytest.raises(RouteError, match="at byte 35: expected value"):
        TopicRouteData.from_json(b'{"brokerDatas":[{"brokerAddrs":{0:}}]}')
    with pytest.raises(RouteError, match=r"at byte 0: .*expected struct ClusterInfo"):
        ClusterInfo.from_json(b"[1,2]")
