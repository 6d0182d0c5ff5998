"""The proxy's access log against a real RocketMQ: Java producers and consumers through the proxy
with the log in a file (one line per request, each send under its topic), and the log sent to a
RocketMQ topic by rmqfast's own logger and read back."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rmqfast.codec import RequestCode
from rmqfast.devcluster import DevCluster
from rmqfast.devcluster.remoting import RemotingClient
from rmqfast.proxy import Proxy

from .fakes import wait_until
from .javatools import JavaTools
from .remoting import create_topic as create_topic_direct
from .test_logger_acceptance import consume
from .test_proxy_acceptance import OPERATOR_RULE, create_topic, unique
from .test_proxy_acceptance import java as java  # the module-scoped fixture

pytestmark = pytest.mark.integration

SENDS = ("SEND_MESSAGE", "SEND_MESSAGE_V2", "SEND_BATCH_MESSAGE")


def all_answered(proxy: Proxy) -> bool:
    """Every request the proxy took in has its line (the clients are gone, so none is coming)."""
    s = proxy.stats()
    return bool(s["request_active"] == 0 and s["access_log_lines"] == s["request"])


def test_every_request_has_one_line_and_every_send_its_topic(
    rocketmq: DevCluster, java: JavaTools, tmp_path: Path
) -> None:
    """Two topics, real Java producers (sync, async, oneway, batch) and push consumers through
    a proxy logging every request to a file: one line per request; per topic, as many
    successful SEND_MESSAGE_V2 lines as sync and async sends, SEND_BATCH_MESSAGE lines as
    batches, oneway lines as oneway sends; every pull names its topic and consumer group."""
    path = tmp_path / "access.log"
    config = {
        "namesrv": rocketmq.namesrv_addr,
        "listen": "127.0.0.1:0",
        "admin": None,
        "policy": [OPERATOR_RULE],
        "access_log": "file",
        "access_log_file": str(path),
    }
    topics = [unique(f"al{i}") for i in range(2)]
    groups = {t: unique("cg") for t in topics}
    made: dict[str, dict[str, int]] = {}
    sent: dict[str, int] = {}
    with Proxy(config) as proxy:
        for i, t in enumerate(topics):
            create_topic(proxy, t)
            r = java.run(
                "Producer",
                {
                    "namesrv": proxy.namesrv_addr,
                    "topic": t,
                    "group": unique("pg"),
                    "prefix": uuid.uuid4().hex[:8],
                    "sync": 4 + i,
                    "async": 3,
                    "oneway": 2,
                    "batch": "2x3",
                },
            ).result
            made[t] = r["requests"]
            sent[t] = sum(len(k) for k in r["keys"].values())
        for t in topics:
            with java.start(
                "PushConsumer",
                {"namesrv": proxy.namesrv_addr, "topic": t, "group": groups[t], "expect": sent[t]},
            ) as c:
                assert c.expect("DONE", 120)["deliveries"] == sent[t]
                c.finish(60)
        wait_until(lambda: all_answered(proxy), 30, "a line for every request")
        stats = proxy.stats()
    lines: list[dict[str, Any]] = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == stats["request"] == stats["access_log_lines"]
    assert stats["access_log_dropped"] == 0
    for t in topics:
        mine = [x for x in lines if x["topic"] == t and x["request"] in SENDS]
        ok = Counter((x["request"], x["oneway"]) for x in mine if x["response_code"] == 0)
        want = made[t]["send_v2_sync"] + made[t]["send_v2_async"]
        assert ok[("SEND_MESSAGE_V2", False)] == want, (t, ok)
        assert ok[("SEND_BATCH_MESSAGE", False)] == made[t]["send_batch"], (t, ok)
        oneway = [x for x in mine if x["oneway"]]
        assert len(oneway) == made[t]["send_v2_oneway"]
        assert all(x["response_code"] is None and x["local_reply"] is None for x in oneway)
        # Each send under its producer group and a queue of the topic.
        assert all(x["group"] and x["queue"] is not None for x in mine)
        pulls = [x for x in lines if x["request"] == "PULL_MESSAGE" and x["topic"] == t]
        assert pulls and all(x["group"] == groups[t] for x in pulls)
    for x in lines:
        assert x["client"].startswith("127.0.0.1:")
        if x["request"] in (*SENDS, "PULL_MESSAGE"):
            assert x["topic"] and x["broker"] in rocketmq.brokers.values(), x
        if x["request"] == "PULL_MESSAGE":
            assert x["group"], x


def test_the_access_log_goes_to_a_topic_through_rmqfasts_logger(rocketmq: DevCluster) -> None:
    """access_log = "rocketmq": lines are sent by a RocketMQLogger straight to the cluster (not
    through the proxy, so its own sends are not logged) and read back, one message per
    request; the logger's counters are in the proxy's /metrics."""
    log_topic = f"al_log_{uuid.uuid4().hex[:10]}"
    create_topic_direct(rocketmq.brokers, rocketmq.namesrv_addr, log_topic)
    config = {
        "namesrv": rocketmq.namesrv_addr,
        "listen": "127.0.0.1:0",
        "admin": None,
        "access_log": "rocketmq",
        "access_log_topic": log_topic,
    }
    looked_up = [f"probe_{i}_{uuid.uuid4().hex[:6]}" for i in range(5)]
    with Proxy(config) as proxy:
        with RemotingClient(proxy.namesrv_addr) as c:
            for t in looked_up:
                c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": t})
        wait_until(
            lambda: (
                'rmqfast_logger_accepted_total{name="rmqfast proxy access log"} 5'
                in proxy.prometheus()
            ),
            30,
            "five lines accepted by the access log's logger",
        )
    messages = consume(rocketmq.brokers, log_topic, len(looked_up))
    lines = sorted((json.loads(m.body) for m in messages), key=lambda x: x["opaque"])
    assert [x["topic"] for x in lines] == looked_up
    assert {x["request"] for x in lines} == {"GET_ROUTEINFO_BY_TOPIC"}
    # Never-created topics: the name server's own answer, relayed.
    assert {x["local_reply"] for x in lines} == {None}
