"""The codec against a real name server and broker, over a plain socket (no RocketMQ client)."""

from __future__ import annotations

import time
import uuid

from rmqfast.codec import (
    BatchMessage,
    MessageExt,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    decode_messages,
    encode_batch,
    encode_properties,
)
from rmqfast.devcluster import DevCluster

from .fakes import wait_until
from .remoting import RemotingClient, create_topic_fields, pull_fields, route_of


def send_v2_fields(topic: str, broker: str, queue_id: int, props: dict[str, str]) -> dict[str, str]:
    return {
        "a": "rmqfast_codec_it",
        "b": topic,
        "c": "TBW102",
        "d": "4",
        "e": str(queue_id),
        "f": "0",
        "g": str(int(time.time() * 1000)),
        "h": "0",
        "i": encode_properties(props),
        "j": "0",
        "k": "false",
        "n": broker,
    }


def test_create_route_send_batch_pull(rocketmq: DevCluster) -> None:
    broker_name, broker_addr = sorted(rocketmq.brokers.items())[0]
    namesrv = rocketmq.namesrv_addrs[0]
    topic = f"codec_it_{uuid.uuid4().hex[:8]}"

    with RemotingClient(broker_addr) as broker:
        created = broker.request(
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            create_topic_fields(topic),
        )
        assert created.code == ResponseCode.SUCCESS, created.remark

        def route() -> TopicRouteData | None:
            with RemotingClient(namesrv) as ns:
                return route_of(ns, topic)

        data = wait_until(route, 30, f"route of {topic} on the name server")
        assert data.broker_addrs() == {broker_name: {0: broker_addr}}
        [queue] = data.queue_datas
        assert (queue["brokerName"], queue["readQueueNums"], queue["writeQueueNums"]) == (
            broker_name,
            4,
            4,
        )
        assert queue["perm"] == 6

        sent: list[tuple[bytes, str, str]] = []
        for i, stype in enumerate(["json", "rocketmq"]):
            body = f"single-{stype}".encode()
            key, tag = f"key-{i}", f"tag{i}"
            props = {"KEYS": key, "TAGS": tag, "WAIT": "true", "UNIQ_KEY": uuid.uuid4().hex.upper()}
            r = broker.request(
                RequestCode.SEND_MESSAGE_V2,
                send_v2_fields(topic, broker_name, 0, props),
                body=body,
                serialize_type=stype,
            )
            assert r.code == ResponseCode.SUCCESS, r.remark
            assert r.ext_fields["queueId"] == "0"
            assert int(r.ext_fields["queueOffset"]) == i
            sent.append((body, key, tag))

        batch = [
            BatchMessage(
                f"batch-{i}".encode(),
                {"KEYS": f"bkey-{i}", "TAGS": "btag", "UNIQ_KEY": uuid.uuid4().hex.upper()},
            )
            for i in range(3)
        ]
        fields = send_v2_fields(topic, broker_name, 0, {"WAIT": "true"})
        fields["m"] = "true"
        r = broker.request(RequestCode.SEND_BATCH_MESSAGE, fields, body=encode_batch(batch))
        assert r.code == ResponseCode.SUCCESS, r.remark
        assert int(r.ext_fields["queueOffset"]) == 2
        assert len(r.ext_fields["msgId"].split(",")) == 3
        sent += [(f"batch-{i}".encode(), f"bkey-{i}", "btag") for i in range(3)]

        def pull() -> list[MessageExt] | None:
            p = broker.request(
                RequestCode.PULL_MESSAGE,
                pull_fields("rmqfast_codec_it_cg", topic, 0, 0, 32),
            )
            if p.code != ResponseCode.SUCCESS:
                return None
            msgs = decode_messages(p.body)
            return list(msgs) if len(msgs) == len(sent) else None

        messages = wait_until(pull, 30, "5 messages pulled back")
        got = [(m.body, m.keys, m.tags) for m in messages]
        assert got == sent
        for offset, m in enumerate(messages):
            assert m.topic == topic
            assert m.queue_id == 0
            assert m.queue_offset == offset
            assert m.store_host == broker_addr
