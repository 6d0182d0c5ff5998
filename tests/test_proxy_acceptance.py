"""Acceptance: the real Java client (rocketmq-client 5.3.3) and mqadmin through the proxy.

Every program uses the proxy as its name server, so route lookups are answered with the proxy's
per-broker ports and all broker traffic is relayed. The programs are in tests/java and print
what they did; the tests compare that with what the brokers delivered and with the proxy's
stats (deltas around each program).
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rmqfast.codec import RequestCode, ResponseCode, TopicRouteData
from rmqfast.devcluster import CLUSTER_NAME, DevCluster, run_mqadmin
from rmqfast.proxy import Proxy

from .fakes import wait_until
from .javatools import JavaTools, StatsDelta
from .remoting import RemotingClient
from .remoting import create_topic as create_topic_on

pytestmark = pytest.mark.integration

BROKERS = ("broker-a", "broker-b")


@pytest.fixture(scope="module")
def java(
    rocketmq: DevCluster, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> JavaTools:
    # Classes are cached across sessions by source hash (in a temporary dir without the cache).
    cache = getattr(request.config, "cache", None)
    work = tmp_path_factory.mktemp("java")
    build = cache.mkdir("rmqfast-java") if cache is not None else work / "build"
    tools = JavaTools(rocketmq.lib_dir, build, work)
    tools.classes()
    return tools


# The tests create their topics with mqadmin through the proxy, as an operator would: the one
# request the default policy refuses that they need is opened to loopback clients. Everything
# else (producers, consumers, transactions, mqadmin's read commands) runs under the default.
OPERATOR_RULE = {
    "name": "operator",
    "action": "allow",
    "codes": ["UPDATE_AND_CREATE_TOPIC"],
    "clients": ["127.0.0.1"],
}


@pytest.fixture
def proxy(rocketmq: DevCluster) -> Iterator[Proxy]:
    config = {
        "namesrv": rocketmq.namesrv_addr,
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "policy": [OPERATOR_RULE],
    }
    with Proxy(config) as p:
        yield p


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def mqadmin(proxy: Proxy, *args: str) -> str:
    """mqadmin with the proxy as its name server; fails the test on a non-zero exit."""
    proc: subprocess.CompletedProcess[str] = run_mqadmin(
        [args[0], "-n", proxy.namesrv_addr, *args[1:]], proxy.namesrv_addr, timeout=90
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mqadmin {' '.join(args)} exited {proc.returncode}:\n{out}"
    return out


def proxy_route(proxy: Proxy, topic: str) -> TopicRouteData | None:
    with RemotingClient(proxy.namesrv_addr) as ns:
        r = ns.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    if r.code != ResponseCode.SUCCESS:
        return None
    return TopicRouteData.from_json(r.body)


def create_topic(proxy: Proxy, topic: str) -> TopicRouteData:
    """updateTopic through the proxy on the whole cluster; waits until both brokers serve it.

    No `-a +message.type=MIXED`: the 5.3.3 broker rejects MIXED (code 29), and only RocketMQ's
    own Proxy checks message types, so transactional messages go to a NORMAL topic here.
    """
    out = mqadmin(
        proxy,
        "updateTopic",
        "-c",
        CLUSTER_NAME,
        "-t",
        topic,
        "-r",
        "4",
        "-w",
        "4",
    )
    assert out.count("create topic to ") == 2, out

    def ready() -> TopicRouteData | None:
        route = proxy_route(proxy, topic)
        if route is None:
            return None
        names = sorted(q["brokerName"] for q in route.queue_datas)
        return route if names == list(BROKERS) else None

    return wait_until(ready, 30, f"route of {topic} through the proxy")


def snapshot(proxy: Proxy) -> StatsDelta:
    return StatsDelta({k: v for k, v in proxy.stats().items() if isinstance(v, int)})


def finish(delta: StatsDelta, proxy: Proxy) -> StatsDelta:
    delta.after = {k: v for k, v in proxy.stats().items() if isinstance(v, int)}
    return delta


def wait_idle(proxy: Proxy, what: str) -> None:
    """Every request the proxy took in has been answered (nothing in flight)."""
    wait_until(lambda: proxy.stats()["request_active"] == 0, 30, f"{what}: no request in flight")


def code_count(proxy: Proxy, code_name: str) -> int:
    """Completed requests of one code, from the per-code latency histogram."""
    by_code: dict[str, Any] = proxy.stats()["request_time_ms_by_code"]
    h = by_code.get(code_name)
    return int(h["count"]) if h else 0


def assert_balanced(d: StatsDelta, what: str) -> None:
    """Every request that expects an answer got exactly one (relayed or local)."""
    assert d["request"] > 0, what
    assert d["response"] == d["request"] - d["oneway_request"], (
        f"{what}: {d['response']} responses for {d['request']} requests "
        f"({d['oneway_request']} oneway)"
    )
    assert d["request_decoding_error"] == 0, what
    assert d["response_decoding_error"] == 0, what


# ------------------------------------------------------------------------------------------------


def test_mqadmin_update_topic_route_and_cluster_list(proxy: Proxy, rocketmq: DevCluster) -> None:
    topic = unique("acc_admin")
    before_17 = code_count(proxy, "UPDATE_AND_CREATE_TOPIC")
    d = snapshot(proxy)
    create_topic(proxy, topic)
    finish(d, proxy)
    # updateTopic -c: one cluster lookup, then UPDATE_AND_CREATE_TOPIC to each master, through
    # the proxy's broker ports.
    assert d["get_broker_cluster_info"] >= 1
    assert code_count(proxy, "UPDATE_AND_CREATE_TOPIC") - before_17 == 2
    listeners = proxy.broker_listeners()
    assert sorted(listeners) == sorted(rocketmq.brokers.values())
    proxied = set(listeners.values())

    out = mqadmin(proxy, "topicRoute", "-t", topic)
    # fastjson's pretty output, with bare integer keys ({0:"ip:port"}).
    route = TopicRouteData.from_json(out[out.index("{") : out.rindex("}") + 1].encode())
    assert route.broker_addrs() == {
        name: {0: listeners[real]} for name, real in rocketmq.brokers.items()
    }
    assert sorted((q["brokerName"], q["writeQueueNums"]) for q in route.queue_datas) == [
        ("broker-a", 4),
        ("broker-b", 4),
    ]

    out = mqadmin(proxy, "clusterList")
    shown = set(re.findall(r"\b127\.0\.0\.1:\d+\b", out))
    assert shown == proxied, out
    for name in BROKERS:
        assert name in out
    for real in rocketmq.brokers.values():
        assert real not in out
    wait_idle(proxy, "mqadmin")
    finish(d, proxy)
    assert d["get_topic_route"] >= 1
    assert d["route_rewrite"] >= 2
    assert_balanced(d, "mqadmin")


def test_default_policy_refuses_mqadmin_update_topic_with_no_permission(
    rocketmq: DevCluster,
) -> None:
    """Without the operator rule, mqadmin's updateTopic fails with the proxy's NO_PERMISSION
    (CODE: 16, the remark naming the rule) and its read commands keep working."""
    topic = unique("acc_refused")
    config = {"namesrv": rocketmq.namesrv_addr, "listen": "127.0.0.1:0", "admin": None}
    with Proxy(config) as p:
        proc = run_mqadmin(
            ["updateTopic", "-n", p.namesrv_addr, "-c", CLUSTER_NAME, "-t", topic],
            p.namesrv_addr,
            timeout=90,
        )
        out = proc.stdout + proc.stderr
        assert "CODE: 16" in out and 'policy rule "default"' in out, out
        assert p.stats()["request_denied_by_code"].get("UPDATE_AND_CREATE_TOPIC", 0) >= 1
        assert proxy_route(p, topic) is None
        out = mqadmin(p, "clusterList")
        assert all(name in out for name in BROKERS), out


def test_send_modes_and_push_consumer(proxy: Proxy, java: JavaTools) -> None:
    topic = unique("acc_send")
    create_topic(proxy, topic)
    prefix = uuid.uuid4().hex[:8]
    d = snapshot(proxy)
    r = java.run(
        "Producer",
        {
            "namesrv": proxy.namesrv_addr,
            "topic": topic,
            "group": unique("pg"),
            "prefix": prefix,
            "sync": 20,
            "async": 20,
            "oneway": 10,
            "batch": "4x5",
            "queue": 10,
            "queue_broker": "broker-b",
            "queue_id": 2,
        },
    ).result
    wait_idle(proxy, "producer")
    finish(d, proxy)
    keys: dict[str, list[str]] = r["keys"]
    assert {m: len(k) for m, k in keys.items()} == {
        "sync": 20,
        "async": 20,
        "oneway": 10,
        "batch": 20,
        "queue": 10,
    }
    # Round-robin over the 8 queues reaches both brokers.
    assert set(r["brokers"]) == set(BROKERS), r["brokers"]
    assert r["queue"] == {"broker": "broker-b", "queue_id": 2}

    # Stats: exactly the requests the producer made.
    assert d["send_message_v2"] == 20 + 20 + 10 + 10
    assert d["send_batch_message"] == 4
    assert d["send_message_v1"] == 0
    assert d["oneway_request"] == 10
    assert d["heartbeat"] >= 1
    assert d["get_topic_route"] >= 1
    assert d["pull_message"] == 0
    # Every send was answered SUCCESS (oneway sends get no answer).
    assert d["response_error"] == 0
    assert d["response_success"] >= 20 + 20 + 4 + 10
    assert d["local_reply_timeout"] == 0
    assert d["local_reply_upstream_unavailable"] == 0
    assert_balanced(d, "producer")

    # A push consumer (long-polling pulls) receives every message exactly once.
    sent = {k for ks in keys.values() for k in ks}
    d = snapshot(proxy)
    with java.start(
        "PushConsumer",
        {"namesrv": proxy.namesrv_addr, "topic": topic, "group": unique("cg"), "expect": 80},
    ) as c:
        done = c.expect("DONE", 120)
        assert done == {"distinct": 80, "deliveries": 80}
        # With nothing left to read, the broker holds the consumer's pulls (long polling).
        wait_until(
            lambda: proxy.stats()["pull_message_active"] >= 1, 30, "a long-poll pull in flight"
        )
        res = c.finish(60).result
    finish(d, proxy)
    received: dict[str, list[Any]] = res["received"]
    assert set(received) == sent
    assert res["deliveries"] == 80
    assert all(n == 1 for _, _, n in received.values())
    for key in keys["queue"]:
        assert received[key][:2] == ["broker-b", 2]
    queues_used = {(b, q) for b, q, _ in received.values()}
    assert {b for b, _ in queues_used} == set(BROKERS)
    assert d["pull_message"] >= len(queues_used)
    assert d["heartbeat"] >= 1
    assert d["get_consumer_list"] >= 1
    assert d["send_message_v2"] == 0
    # Held pulls are not cut short by the proxy's request timeout.
    assert d["local_reply_timeout"] == 0
    assert d["late_response"] == 0
    wait_idle(proxy, "consumer shutdown")


def test_transaction_resolved_by_check_back(proxy: Proxy, java: JavaTools) -> None:
    topic = unique("acc_tx")
    create_topic(proxy, topic)
    d = snapshot(proxy)
    with java.start(
        "TxProducer",
        {
            "namesrv": proxy.namesrv_addr,
            "topic": topic,
            "group": unique("txg"),
            "prefix": uuid.uuid4().hex[:8],
            "count": 2,
        },
    ) as p:
        p.expect("DONE", 90)
        # The broker's CHECK_TRANSACTION_STATE came over the producer's relayed connection; the
        # client's END_TRANSACTION answers it (oneway), after the first one of each send.
        wait_until(
            lambda: (
                proxy.stats()["end_transaction"] - d.before["end_transaction"]
                >= 2 + proxy.stats()["broker_request"] - d.before["broker_request"]
            ),
            30,
            "END_TRANSACTION after each check",
        )
        res = p.finish(60).result
    wait_idle(proxy, "transactional producer")
    finish(d, proxy)
    assert res["executed"] == 2
    assert res["checks"] >= 2
    assert sorted(res["checked_keys"]) == sorted(res["keys"])
    assert d["broker_request"] == res["checks"]
    assert d["end_transaction"] == res["executed"] + res["checks"]
    assert d["send_message_v2"] == 2  # the half messages
    assert d["oneway_request"] == d["end_transaction"]
    assert_balanced(d, "transactional producer")

    # Committed by the check: the messages are delivered.
    with java.start(
        "PushConsumer",
        {"namesrv": proxy.namesrv_addr, "topic": topic, "group": unique("cg"), "expect": 2},
    ) as c:
        c.expect("DONE", 90)
        got = c.finish(60).result
    assert sorted(got["received"]) == sorted(res["keys"])
    # Each COMMIT the producer answers a check with may store the message once more: when the
    # broker checks a half message again before the first commit has landed, both commits are
    # stored (transactional messages are at-least-once). A third check made one run here see
    # 3 deliveries of 2 messages; what cannot happen is more copies than commits.
    assert 2 <= got["deliveries"] <= res["checks"], (got, res)


def test_pop_consumer_ack_and_change_invisible_time(proxy: Proxy, java: JavaTools) -> None:
    topic = unique("acc_pop")
    group = unique("popg")
    create_topic(proxy, topic)
    out = mqadmin(
        proxy,
        "setConsumeMode",
        "-c",
        CLUSTER_NAME,
        "-t",
        topic,
        "-g",
        group,
        "-m",
        "POP",
        "-q",
        "8",
    )
    assert out.count("set consume mode to ") == 2, out
    r = java.run(
        "Producer",
        {
            "namesrv": proxy.namesrv_addr,
            "topic": topic,
            "group": unique("pg"),
            "prefix": uuid.uuid4().hex[:8],
            "sync": 12,
        },
    ).result
    sent = set(r["keys"]["sync"])
    assert set(r["brokers"]) == set(BROKERS)

    d = snapshot(proxy)
    with java.start(
        "PopConsumer",
        {"namesrv": proxy.namesrv_addr, "topic": topic, "group": group, "expect": 12},
    ) as c:
        c.expect("DONE", 150)

        def settled() -> bool:
            s = proxy.stats()
            return (
                s["ack_message"] - d.before["ack_message"] >= 12
                and s["change_invisible_time"] - d.before["change_invisible_time"] >= 12
            )

        wait_until(settled, 30, "the consumer's acks and invisible-time changes")
        res = c.finish(60).result
    wait_idle(proxy, "pop consumer shutdown")
    finish(d, proxy)
    assert set(res["acked"]) == sent
    # Each message: RECONSUME_LATER once (CHANGE_MESSAGE_INVISIBLETIME), then acknowledged.
    assert res["later"] == 12
    assert res["success"] == 12
    assert all(n == 2 for n in res["seen"].values()), res["seen"]
    assert d["change_invisible_time"] == res["later"]
    assert d["ack_message"] == res["success"]
    assert d["pop_message"] >= 2
    # (The group's retry topic stays in PULL mode, so its queues are still long-polled.)
    assert d["heartbeat"] >= 1
    assert d["local_reply_timeout"] == 0
    assert d["late_response"] == 0


def test_broker_stopped_and_restarted_while_sending(
    proxy: Proxy, java: JavaTools, rocketmq: DevCluster
) -> None:
    topic = unique("acc_failover")
    create_topic(proxy, topic)
    admin = proxy.admin_addr
    assert admin is not None
    stopped = False
    with java.start(
        "Producer",
        {
            "namesrv": proxy.namesrv_addr,
            "topic": topic,
            "group": unique("pg"),
            "prefix": uuid.uuid4().hex[:8],
            "loop": 1,
            "interval_ms": 40,
            "max": 20000,
        },
    ) as p:
        try:
            seen: list[dict[str, Any]] = []

            def until(pred: Callable[[], bool], timeout: float, what: str) -> None:
                deadline = time.monotonic() + timeout
                while not pred():
                    remaining = deadline - time.monotonic()
                    assert remaining > 0, f"timed out waiting for {what}; last sends: {seen[-5:]}"
                    seen.append(p.expect("SENT", remaining))

            until(lambda: {s.get("broker") for s in seen if s["ok"]} >= set(BROKERS), 60, "both")
            rocketmq.stop_broker("broker-b")
            stopped = True
            # Once broker-b is gone from the name server, 30 sends in a row land on broker-a.
            mark = len(seen)
            until(
                lambda: (
                    len(seen) - mark >= 30
                    and all(s.get("broker") == "broker-a" for s in seen[-30:])
                ),
                60,
                "30 sends in a row to broker-a",
            )
            # The proxy is up: live, and it answers route lookups with broker-a only.
            with urllib.request.urlopen(f"http://{admin}/live", timeout=5) as resp:
                assert resp.status == 200
            route = proxy_route(proxy, topic)
            assert route is not None
            assert {q["brokerName"] for q in route.queue_datas} == {"broker-a"}

            rocketmq.start_broker("broker-b")
            stopped = False
            mark = len(seen)
            until(
                lambda: any(s.get("broker") == "broker-b" and s["ok"] for s in seen[mark:]),
                90,
                "a send to broker-b after its restart",
            )
            res = p.finish(60).result
        finally:
            if stopped:
                rocketmq.start_broker("broker-b")
    assert res["failed"] == 0, res["errors"]
    assert res["sent"] >= 60
    assert set(res["brokers"]) == set(BROKERS)
    assert proxy.running
    assert proxy_route(proxy, topic) is not None


def test_per_topic_metrics_count_exactly_what_clients_sent_and_consumed(
    proxy: Proxy, java: JavaTools
) -> None:
    """Three topics, real Java producers (sync, async, oneway, batch) and push consumers:
    /metrics has each topic's messages in and out, exactly."""
    topics = {unique(f"tm{i}"): i for i in range(3)}
    groups = {t: unique("cg") for t in topics}
    sent: dict[str, int] = {}
    for t, i in topics.items():
        create_topic(proxy, t)
        r = java.run(
            "Producer",
            {
                "namesrv": proxy.namesrv_addr,
                "topic": t,
                "group": unique("pg"),
                "prefix": uuid.uuid4().hex[:8],
                "sync": 5 + i,
                "async": 3,
                "oneway": 2,
                "batch": f"2x{i + 2}",
            },
        ).result
        sent[t] = sum(len(k) for k in r["keys"].values())
    # Oneway sends get no answer: they are counted as they go.
    wait_until(
        lambda: {t: m for t, m in in_counts(proxy).items() if t in topics} == sent,
        30,
        f"messages in per topic to be {sent}",
    )
    for t in topics:
        with java.start(
            "PushConsumer",
            {"namesrv": proxy.namesrv_addr, "topic": t, "group": groups[t], "expect": sent[t]},
        ) as c:
            assert c.expect("DONE", 120)["deliveries"] == sent[t]
            c.finish(60)
    # Summed over the two brokers: a label set is per broker.
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for r in proxy.stats()["topics"]:
        acc = rows.setdefault((r["topic"], r["consumer_group"]), {})
        for k in ("messages_in", "messages_out", "bytes_out", "requests"):
            acc[k] = acc.get(k, 0) + r[k]
        acc["errors"] = acc.get("errors", 0) + sum(r["errors"].values())
    for t in topics:
        out = rows[(t, groups[t])]
        assert out["messages_out"] == sent[t], out
        assert out["bytes_out"] > 0 and out["requests"] >= 1
        assert rows[(t, "")]["messages_in"] == sent[t]
        assert rows[(t, "")]["errors"] == 0
    text = proxy.prometheus()
    samples = re.findall(r"^rocketmq_messages_(in|out)_total\{(.*)\} (\S+)$", text, re.M)
    for t in topics:
        total_in = sum(int(v) for d, lab, v in samples if d == "in" and f'topic="{t}"' in lab)
        mine = f'topic="{t}",consumer_group="{groups[t]}"'
        total_out = sum(int(v) for d, lab, v in samples if d == "out" and mine in lab)
        assert (total_in, total_out) == (sent[t], sent[t])
    assert "rmqfast_topic_request_duration_seconds_bucket{" in text
    assert proxy.stats()["topic_label_overflow"] == 0


def in_counts(proxy: Proxy) -> dict[str, int]:
    """Messages in per topic (summed over brokers)."""
    out: dict[str, int] = {}
    for r in proxy.stats()["topics"]:
        if r["consumer_group"] == "":
            out[r["topic"]] = out.get(r["topic"], 0) + r["messages_in"]
    return out


def test_a_reload_moves_a_topic_to_another_cluster_with_no_client_error(
    rocketmq: DevCluster, lone_cluster: DevCluster, java: JavaTools
) -> None:
    """A Java producer sends through the proxy in a loop while a reload moves its topic from
    the session cluster to another one: its next route refresh goes to the new cluster's broker,
    and no send fails, before, during or after."""
    topic = unique("moving")
    create_topic_on(rocketmq.brokers, rocketmq.namesrv_addr, topic)
    create_topic_on(lone_cluster.brokers, lone_cluster.namesrv_addr, topic)
    old = set(rocketmq.brokers.values())
    [new] = lone_cluster.brokers.values()

    def config(cluster: str) -> dict[str, Any]:
        return {
            "clusters": [
                {"name": "main", "namesrv": [rocketmq.namesrv_addr]},
                {"name": "lone", "namesrv": [lone_cluster.namesrv_addr]},
            ],
            "routes": [{"cluster": cluster, "exact": topic}],
            "default_cluster": "main",
            "listen": "127.0.0.1:0",
            "admin": None,
        }

    def sent_to() -> dict[str, int]:
        """Messages in of the topic, by real broker address."""
        return {
            r["broker"]: r["messages_in"]
            for r in proxy.stats()["topics"]
            if r["topic"] == topic and r["messages_in"]
        }

    with (
        Proxy(config("main")) as proxy,
        java.start(
            "Producer",
            {
                "namesrv": proxy.namesrv_addr,
                "topic": topic,
                "group": unique("pg"),
                "prefix": uuid.uuid4().hex[:8],
                "loop": 1,
                "interval_ms": 20,
                "max": 20000,
            },
        ) as p,
    ):
        wait_until(lambda: sum(sent_to().values()) >= 20, 60, "sends to the first cluster")
        assert set(sent_to()) <= old
        assert proxy.reload(config("lone")).changed == ["routes"]
        # The producer refreshes its route every second (poll_ms), through the proxy.
        wait_until(lambda: sent_to().get(new, 0) >= 20, 60, "sends to the new cluster")
        moved = sent_to()
        res = p.finish(60).result
    assert res["failed"] == 0, res["errors"]
    # Once the producer's sends reached the new cluster, none went to the old one any more;
    # every send it made was stored, by one cluster or the other.
    final = sent_to()
    assert {b: n for b, n in final.items() if b in old} == {
        b: n for b, n in moved.items() if b in old
    }
    assert sum(final.values()) == res["sent"]
    assert proxy.stats()["config_reloads"] == 1
