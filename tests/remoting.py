"""Remoting helpers for tests, on the dev cluster's client (`rmqfast.devcluster.remoting`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from rmqfast.codec import (
    MessageExt,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    decode_messages,
)
from rmqfast.devcluster.remoting import RemotingClient, create_topic_fields

from .fakes import wait_until

__all__ = [
    "RemotingClient",
    "create_topic",
    "create_topic_fields",
    "new_topic",
    "pull",
    "pull_fields",
    "route_of",
]


def route_of(client: RemotingClient, topic: str) -> TopicRouteData | None:
    """The topic's route as `client` (a name server or a proxy) answers it; None if unknown."""
    r = client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    return TopicRouteData.from_json(r.body) if r.code == ResponseCode.SUCCESS else None


def pull_fields(
    group: str, topic: str, queue_id: int, offset: int, max_nums: int = 32
) -> dict[str, str]:
    """extFields of a PULL_MESSAGE request that reads without holding (no long poll) and
    commits nothing."""
    return {
        "consumerGroup": group,
        "topic": topic,
        "queueId": str(queue_id),
        "queueOffset": str(offset),
        "maxMsgNums": str(max_nums),
        "sysFlag": str(0x4),
        "commitOffset": "0",
        "suspendTimeoutMillis": "0",
        "subscription": "*",
        "subVersion": "0",
        "expressionType": "TAG",
    }


def new_topic(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_topic(
    brokers: dict[str, str],
    namesrv: str,
    topic: str,
    connect: Callable[[str], RemotingClient] = RemotingClient,
    sign: Callable[[dict[str, str]], dict[str, str]] = lambda f: f,
) -> None:
    """UPDATE_AND_CREATE_TOPIC on every broker, then wait until the name server routes it."""
    for addr in brokers.values():
        with connect(addr) as b:
            r = b.request(
                RequestCode.UPDATE_AND_CREATE_TOPIC,
                sign(create_topic_fields(topic)),
            )
            assert r.code == ResponseCode.SUCCESS, r.remark

    def routed() -> bool:
        with connect(namesrv) as ns:
            r = ns.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, sign({"topic": topic}))
        if r.code != ResponseCode.SUCCESS:
            return False
        names = {q["brokerName"] for q in json.loads(r.body)["queueDatas"]}
        return names == set(brokers)

    wait_until(routed, 30, f"route of {topic}")


def pull(
    broker_addr: str,
    topic: str,
    queue_id: int,
    offset: int,
    count: int,
    connect: Callable[[str], RemotingClient] = RemotingClient,
    sign: Callable[[dict[str, str]], dict[str, str]] = lambda f: f,
) -> list[MessageExt]:
    """`count` messages from one queue, starting at `offset`."""
    out: list[MessageExt] = []
    deadline = time.monotonic() + 30
    with connect(broker_addr) as b:
        while len(out) < count:
            r = b.request(
                RequestCode.PULL_MESSAGE,
                sign(
                    pull_fields(
                        "rmqfast_producer_test_cg", topic, queue_id, offset + len(out), 1000
                    )
                ),
            )
            if r.code == ResponseCode.SUCCESS:
                out.extend(decode_messages(r.body))
            elif time.monotonic() > deadline:
                raise AssertionError(f"pull {topic}/{queue_id}@{offset}: {r.code} {r.remark}")
            else:
                time.sleep(0.1)
    return out[:count]
