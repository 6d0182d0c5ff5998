"""Route lookups through the proxy against fake name servers: rewriting, topic routing to
clusters, and cached routes served while every name server is down."""

from __future__ import annotations

from rmqfast.codec import RemotingCommand, RequestCode, ResponseCode, TopicRouteData
from rmqfast.proxy import Proxy

from .fakes import FakeServer
from .remoting import RemotingClient


def topics(ns: FakeServer) -> list[str]:
    """The topics `ns` was asked for, in order."""
    return [r.ext_fields.get("topic", "") for r in ns.requests]


def lookup(proxy: Proxy, topic: str) -> RemotingCommand:
    with RemotingClient(proxy.namesrv_addr) as c:
        return c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=10)


def test_topics_route_to_clusters_and_addresses_are_rewritten(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, b = two_clusters
    cfg = {
        "clusters": [{"name": "a", "namesrv": [a.addr]}, {"name": "b", "namesrv": [b.addr]}],
        "routes": [
            {"cluster": "b", "exact": "orders"},
            {"cluster": "b", "prefix": "audit_"},
            {"cluster": "b", "regex": "^m[0-9]+$"},
        ],
        "default_cluster": "a",
        "listen": "127.0.0.1:0",
        "admin": None,
    }
    with Proxy(cfg) as p:
        expect = {"orders": "b", "audit_x": "b", "m42": "b", "m42x": "a", "other": "a"}
        for topic, cluster in expect.items():
            r = lookup(p, topic)
            assert r.code == ResponseCode.SUCCESS
            route = TopicRouteData.from_json(r.body)
            [(broker, addrs)] = route.broker_addrs().items()
            assert broker == ("broker-b" if cluster == "b" else "broker-a")
            real = "127.0.0.1:20911" if cluster == "b" else "127.0.0.1:10911"
            assert addrs[0] == p.broker_listeners()[real]
            assert addrs[0] != real
        assert sorted(topics(b)) == ["audit_x", "m42", "orders"]
        assert sorted(topics(a)) == ["m42x", "other"]
        s = p.stats()
        assert s["get_topic_route"] == 5
        assert s["route_rewrite"] == 5
        assert s["broker_listeners"] == 2


def test_cached_routes_are_served_while_the_name_servers_are_down(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, _ = two_clusters
    cfg = {
        "namesrv": a.addr,
        "listen": "127.0.0.1:0",
        "admin": None,
        "route_cache_ttl_s": 0,
        "request_timeout_ms": 1000,
    }
    with Proxy(cfg) as p:
        first = lookup(p, "T")
        assert first.code == ResponseCode.SUCCESS
        assert lookup(p, "T").body == first.body  # asked upstream again (TTL 0)
        assert topics(a) == ["T", "T"]
        a.close()  # every name server of the cluster is now down
        again = lookup(p, "T")
        assert again.code == ResponseCode.SUCCESS
        assert again.body == first.body
        unknown = lookup(p, "never-seen")
        assert unknown.code == ResponseCode.SYSTEM_ERROR
        assert unknown.remark is not None and "no cached route" in unknown.remark
        s = p.stats()
        assert s["route_cache_served"] == 1
        assert s["maintenance_failure"] == 2
