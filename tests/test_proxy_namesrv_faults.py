"""The proxy's name-server face when the real name server misbehaves: frozen (SIGSTOP) and
restarted empty, with a real broker behind it (issue 10's name-server faults)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rmqfast.codec import RequestCode, ResponseCode
from rmqfast.devcluster import DevCluster
from rmqfast.proxy import Proxy

from .fakes import wait_until
from .remoting import RemotingClient, create_topic, new_topic, route_of

# The Java client gives a route lookup 3 s (DefaultMQProducer's mqClientApiTimeout).
JAVA_ROUTE_TIMEOUT_S = 3.0


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: it holds its sockets but answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def lookup(addr: str, topic: str, timeout: float) -> tuple[int, float]:
    """A route lookup's response code and how long it took."""
    t0 = time.monotonic()
    with RemotingClient(addr, timeout=timeout) as c:
        r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=timeout)
    return r.code, time.monotonic() - t0


def proxy_config(cluster: DevCluster) -> dict[str, object]:
    # No fresh-cache window: every lookup asks the name server, so the fallbacks are what
    # answers while it misbehaves.
    return {
        "namesrv": cluster.namesrv_addr,
        "listen": "127.0.0.1:0",
        "admin": None,
        "route_cache_ttl_s": 0,
    }


def test_a_frozen_name_server_gets_the_cached_route_within_the_hedge_delay(
    lone_cluster: DevCluster,
) -> None:
    """With the name server frozen, a lookup with a cached route is answered from the cache
    after `route_hedge_ms` (500 ms), well within the Java client's 3 s (it took 5 s before);
    without a cached route the client gets an error answer, not silence."""
    topic = new_topic("frozen_ns")
    create_topic(lone_cluster.brokers, lone_cluster.namesrv_addr, topic)
    with Proxy(proxy_config(lone_cluster)) as proxy:
        code, _ = lookup(proxy.namesrv_addr, topic, 10)
        assert code == ResponseCode.SUCCESS
        with frozen(lone_cluster.pids()["namesrv-0"]):
            code, took = lookup(proxy.namesrv_addr, topic, JAVA_ROUTE_TIMEOUT_S)
            assert code == ResponseCode.SUCCESS
            st = proxy.stats()
            assert st["route_cache_hedged"] == 1
            # A topic never looked up has no cached route to fall back on.
            code, _ = lookup(proxy.namesrv_addr, new_topic("never_seen"), 30)
            assert code != ResponseCode.SUCCESS
        print(f"frozen name server: cached route served after {took * 1000:.0f} ms")
        # Thawed, lookups reach the name server again.
        wait_until(lambda: lookup(proxy.namesrv_addr, topic, 10)[0] == 0, 30, "a fresh lookup")


def test_a_name_server_restarted_empty_does_not_hide_a_known_route(
    lone_cluster: DevCluster,
) -> None:
    """The name server restarts empty while the broker cannot re-register yet (frozen): it
    answers TOPIC_NOT_EXIST, but the proxy serves its cached route (younger than
    `route_stale_limit_s`) and counts it, until the broker is back in the name server."""
    topic = new_topic("restarted_ns")
    create_topic(lone_cluster.brokers, lone_cluster.namesrv_addr, topic)
    with Proxy(proxy_config(lone_cluster)) as proxy:
        with RemotingClient(proxy.namesrv_addr) as c:
            before = route_of(c, topic)
        assert before is not None
        with frozen(lone_cluster.pids()["broker-a"]):
            lone_cluster.stop_namesrv(kill=True)
            lone_cluster.start_namesrv()
            code, _ = lookup(lone_cluster.namesrv_addr, topic, 10)
            assert code == ResponseCode.TOPIC_NOT_EXIST, "the restarted name server is empty"
            with RemotingClient(proxy.namesrv_addr) as c:
                during = route_of(c, topic)
            assert during is not None
            assert during.broker_addrs() == before.broker_addrs()
            assert proxy.stats()["route_cache_kept"] >= 1
        # The broker registers again at its next heartbeat (within 30 s); lookups then come
        # from the name server.
        wait_until(
            lambda: lookup(lone_cluster.namesrv_addr, topic, 10)[0] == ResponseCode.SUCCESS,
            60,
            "the broker to register with the restarted name server",
        )
        with RemotingClient(proxy.namesrv_addr) as c:
            assert route_of(c, topic) is not None
