"""rmqfast._core.Producer: against the real cluster, a TLS + ACL 2.0 cluster, and fake servers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from rmqfast._core import Producer, ProducerError, SendResult
from rmqfast.codec import (
    MessageExt,
    RemotingCommand,
    decode_batch,
)
from rmqfast.devcluster import DevCluster

from .fakes import Connection, FakeServer, name_server, silent, wait_until
from .remoting import RemotingClient, create_topic, new_topic, pull, route_of
from .secure import ACL_PASSWORD, ACL_USER, SecureCluster, acl_sign, java_sign

RETRY_CODES = {17, 14, 1, 2, 16, 204, 205, 1500}

# ---------------------------------------------------------------------------------------------
# helpers


def refused_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def topic(rocketmq: DevCluster) -> str:
    t = new_topic("producer_it")
    create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    return t


@pytest.fixture
def producer(rocketmq: DevCluster) -> Iterator[Producer]:
    p = Producer([rocketmq.namesrv_addr], timeout=5.0)
    yield p
    p.close()


# ---------------------------------------------------------------------------------------------
# the real cluster (2 brokers)


def test_send_and_pull_back(rocketmq: DevCluster, topic: str, producer: Producer) -> None:
    results: list[tuple[int, SendResult]] = []
    for i in range(8):
        r = producer.send(
            topic,
            f"body-{i}".encode(),
            keys=f"key-{i} other-{i}",
            tags="tagA",
            properties={"trace": str(i)},
        )
        assert isinstance(r, SendResult)
        assert r.topic == topic
        assert len(r.msg_id) == 32 and r.msg_id == r.msg_id.upper()
        results.append((i, r))
    # Round-robin over 8 write queues (4 per broker): both brokers get messages.
    assert {r.broker_name for _, r in results} == set(rocketmq.brokers)
    assert len({r.msg_id for _, r in results}) == 8
    for i, r in results:
        [m] = pull(rocketmq.brokers[r.broker_name], topic, r.queue_id, r.queue_offset, 1)
        assert m.body == f"body-{i}".encode()
        assert m.keys == f"key-{i} other-{i}"
        assert m.tags == "tagA"
        assert m.properties["trace"] == str(i)
        assert m.properties["WAIT"] == "true"
        assert m.uniq_key == r.msg_id
        assert m.offset_msg_id == r.offset_msg_id
        assert (m.queue_id, m.queue_offset) == (r.queue_id, r.queue_offset)
    stats = producer.stats()
    assert stats["requests"] == 8
    assert stats["messages_sent"] == 8
    assert stats["route_lookups"] == 1
    assert stats["connections"] == 3  # one name server, two brokers


def test_batch_of_2500_is_split_and_stored_in_order(rocketmq: DevCluster, topic: str) -> None:
    p = Producer([rocketmq.namesrv_addr], timeout=10.0, max_message_size=1024 * 1024)
    try:
        messages: list[tuple[bytes, dict[str, str] | None]] = [
            (f"{i:05d}".encode() + os.urandom(1019), {"KEYS": f"bk-{i}", "TAGS": "batch"})
            for i in range(2500)
        ]
        messages[7] = (messages[7][0], None)
        results = p.send_batch(topic, messages)
        # ~1.1 KiB per record under a 1 MiB limit: three requests at least.
        assert len(results) >= 3
        ids = [r.msg_id.split(",") for r in results]
        assert sum(len(x) for x in ids) == 2500
        assert len({i for x in ids for i in x}) == 2500
        got: list[MessageExt] = []
        for r, chunk_ids in zip(results, ids, strict=True):
            msgs = pull(
                rocketmq.brokers[r.broker_name], topic, r.queue_id, r.queue_offset, len(chunk_ids)
            )
            assert [m.uniq_key for m in msgs] == chunk_ids
            assert ",".join(m.offset_msg_id for m in msgs) == r.offset_msg_id
            got += msgs
        assert [m.body for m in got] == [b for b, _ in messages]
        assert got[7].keys is None
        assert [m.keys for m in got[8:12]] == ["bk-8", "bk-9", "bk-10", "bk-11"]
        assert all(m.tags == "batch" for m in got if m.keys)
        assert p.stats()["messages_sent"] == 2500
        assert p.stats()["requests"] == len(results)
    finally:
        p.close()


async def test_send_async_and_send_batch_async(
    rocketmq: DevCluster, topic: str, producer: Producer
) -> None:
    results = await asyncio.gather(
        *(producer.send_async(topic, f"async-{i}".encode(), keys=f"ak-{i}") for i in range(40))
    )
    assert len({r.msg_id for r in results}) == 40
    batch = await producer.send_batch_async(
        topic, [(f"ab-{i}".encode(), {"KEYS": f"abk-{i}"}) for i in range(10)]
    )
    assert len(batch) == 1
    r = results[17]
    [m] = pull(rocketmq.brokers[r.broker_name], topic, r.queue_id, r.queue_offset, 1)
    assert (m.body, m.keys, m.uniq_key) == (b"async-17", "ak-17", r.msg_id)
    b = batch[0]
    msgs = pull(rocketmq.brokers[b.broker_name], topic, b.queue_id, b.queue_offset, 10)
    assert [m.body for m in msgs] == [f"ab-{i}".encode() for i in range(10)]

    # Errors come back through the awaitable with their attributes.
    with pytest.raises(ProducerError) as e:
        await producer.send_async("no_such_topic_" + uuid.uuid4().hex[:8], b"x")
    assert e.value.code == 17
    assert e.value.retryable is False


def test_send_from_threads_releases_the_gil(topic: str, producer: Producer) -> None:
    errors: list[BaseException] = []
    done: list[SendResult] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                done.append(producer.send(topic, f"t{n}-{i}".encode()))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(done) == 80
    # Four threads shared one connection per broker.
    assert producer.stats()["connects"] == 3


def test_nameserver_failover(rocketmq: DevCluster, topic: str) -> None:
    dead = [refused_addr(), refused_addr()]
    p = Producer([*dead, rocketmq.namesrv_addr], timeout=3.0)
    try:
        r = p.send(topic, b"failover")
        assert r.broker_name in rocketmq.brokers
        assert p.stats()["namesrv_failovers"] == 2
        route = p.route(topic)
        assert {q["brokerName"] for q in route["queueDatas"]} == set(rocketmq.brokers)
        assert route["stale"] is False
        assert len(route["write_queues"]) == 8
        assert route["fetched_at"] == pytest.approx(time.time(), abs=60)
    finally:
        p.close()


NOT_EXIST_HINT = (
    "does not exist: create it (mqadmin updateTopic), or enable auto_create_topic if the brokers "
    "have autoCreateTopicEnable=true; "
)
NO_AUTO_CREATE_HINT = (
    "does not exist and no broker offers auto-creation (TBW102 route missing: "
    "autoCreateTopicEnable is off on every broker): create the topic (mqadmin updateTopic) or "
    "set autoCreateTopicEnable=true on the brokers; "
)


def test_unknown_topic(producer: Producer) -> None:
    topic = "rmqfast_no_such_topic_" + uuid.uuid4().hex[:8]
    with pytest.raises(ProducerError, match="does not exist") as e:
        producer.send(topic, b"x")
    assert e.value.code == 17
    assert e.value.retryable is False
    # What to do comes first, then what the name server said.
    assert str(e.value).startswith(f'topic "{topic}" {NOT_EXIST_HINT}name server '), str(e.value)
    assert "17 TOPIC_NOT_EXIST" in str(e.value)


def test_auto_create_topic_borrows_the_tbw102_route(rocketmq: DevCluster) -> None:
    # The dev cluster's brokers have autoCreateTopicEnable=true, so they route TBW102 (8 queues
    # each); a producer borrows it, 4 queues per broker, for a topic nobody created.
    topic = new_topic("producer_auto_route")
    p = Producer([rocketmq.namesrv_addr], auto_create_topic=True, route_refresh_interval=3600)
    try:
        route = p.route(topic)  # a lookup only: nothing is sent, so nothing is created
        assert route["from_default_topic"] is True
        assert route["write_queues"] == [(b, q) for b in sorted(rocketmq.brokers) for q in range(4)]
        assert {(q["readQueueNums"], q["writeQueueNums"]) for q in route["queueDatas"]} == {(4, 4)}
        assert p.stats()["default_topic_routes"] == 1
    finally:
        p.close()
    with RemotingClient(rocketmq.namesrv_addr) as ns:
        assert route_of(ns, topic) is None


def test_auto_create_topic_creates_it_on_the_first_send(rocketmq: DevCluster) -> None:
    topic = new_topic("producer_auto")
    with closing(Producer([rocketmq.namesrv_addr], timeout=5.0)) as plain:
        with pytest.raises(ProducerError) as e:
            plain.send(topic, b"refused")
        assert str(e.value).startswith(f'topic "{topic}" {NOT_EXIST_HINT}'), str(e.value)
        assert (e.value.code, e.value.retryable) == (17, False)

    # Refreshing every second: the route switches to the topic's own once it is registered.
    p = Producer(
        [rocketmq.namesrv_addr], timeout=5.0, auto_create_topic=True, route_refresh_interval=1.0
    )
    try:
        results = [p.send(topic, f"auto-{i}".encode(), keys=f"ak-{i}") for i in range(8)]
        assert p.stats()["default_topic_routes"] >= 1
        for i, r in enumerate(results):
            assert r.topic == topic and r.queue_id < 4
            [m] = pull(rocketmq.brokers[r.broker_name], topic, r.queue_id, r.queue_offset, 1)
            assert (m.body, m.keys, m.uniq_key) == (f"auto-{i}".encode(), f"ak-{i}", r.msg_id)

        # Each broker that got a message created the topic and registered it.
        senders = {r.broker_name for r in results}

        def routed() -> bool:
            with RemotingClient(rocketmq.namesrv_addr) as ns:
                data = route_of(ns, topic)
            return data is not None and {q["brokerName"] for q in data.queue_datas} == senders

        wait_until(routed, 45, f"the name server routing {topic} to {sorted(senders)}")
        wait_until(
            lambda: p.route(topic)["from_default_topic"] is False,
            30,
            f"the producer's route of {topic} replaced by the topic's own",
        )
        route = p.route(topic)
        assert {q["brokerName"] for q in route["queueDatas"]} == senders
        r = p.send(topic, b"on its own route")
        assert r.broker_name in senders
    finally:
        p.close()
    # Now a producer without auto-creation finds it too.
    with closing(Producer([rocketmq.namesrv_addr], timeout=5.0)) as plain:
        r = plain.send(topic, b"created")
        [m] = pull(rocketmq.brokers[r.broker_name], topic, r.queue_id, r.queue_offset, 1)
        assert m.body == b"created"


@pytest.fixture(scope="module")
def no_auto_create() -> Iterator[DevCluster]:
    """A name server and a broker with autoCreateTopicEnable=false (it routes no TBW102)."""
    with DevCluster(namesrvs=1, brokers=1, broker_props={"autoCreateTopicEnable": False}) as c:
        yield c


def test_auto_create_topic_needs_a_broker_that_allows_it(no_auto_create: DevCluster) -> None:
    ns_addr = no_auto_create.namesrv_addr
    with RemotingClient(ns_addr) as ns:
        assert route_of(ns, "TBW102") is None
    topic = new_topic("producer_no_auto")
    p = Producer([ns_addr], timeout=5.0, auto_create_topic=True)
    try:
        with pytest.raises(ProducerError) as e:
            p.send(topic, b"x")
        assert str(e.value).startswith(f'topic "{topic}" {NO_AUTO_CREATE_HINT}'), str(e.value)
        assert (e.value.code, e.value.retryable) == (17, False)
        assert p.stats()["default_topic_routes"] == 0
    finally:
        p.close()


def test_message_limits(rocketmq: DevCluster, topic: str) -> None:
    p = Producer([rocketmq.namesrv_addr], max_message_size=1000)
    try:
        p.send(topic, b"x" * 1000)  # exactly at the limit
        with pytest.raises(ProducerError, match="max_message_size") as e:
            p.send(topic, b"x" * 1001)
        assert (e.value.code, e.value.retryable) == (13, False)
        with pytest.raises(ProducerError, match=r"messages\[1\]") as e:
            p.send_batch(topic, [(b"ok", None), (b"x" * 1000, None)])
        assert (e.value.code, e.value.retryable) == (13, False)
        with pytest.raises(ProducerError, match="empty"):
            p.send(topic, b"")
        assert p.send_batch(topic, []) == []
    finally:
        p.close()


def test_close(rocketmq: DevCluster, topic: str) -> None:
    p = Producer([rocketmq.namesrv_addr])
    p.send(topic, b"before close")
    assert p.stats()["connections"] >= 2
    p.close()
    assert p.stats()["connections"] == 0
    with pytest.raises(ProducerError, match="closed") as e:
        p.send(topic, b"after close")
    assert e.value.retryable is False
    with pytest.raises(ProducerError, match="closed"):
        p.send_batch(topic, [(b"x", None)])
    p.close()  # idempotent


def test_fork_needs_a_new_producer(rocketmq: DevCluster, topic: str, producer: Producer) -> None:
    producer.send(topic, b"parent")
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, skip every cleanup
        code = 1
        try:
            try:
                producer.send(topic, b"inherited")
                code = 2
            except ProducerError as e:
                if "fork" in str(e) and not e.retryable:
                    fresh = Producer([rocketmq.namesrv_addr], timeout=5.0)
                    fresh.send(topic, b"child")
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    producer.send(topic, b"parent again")


def test_invalid_arguments() -> None:
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"nameservers": []}, ValueError, "nameservers: expected at least one HOST:PORT"),
        ({"nameservers": ["nohost"]}, ValueError, "nameservers[0]"),
        ({"nameservers": "127.0.0.1:9876"}, TypeError, "nameservers"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"route_refresh_interval": -1}, ValueError, "route_refresh_interval"),
        ({"retry_times": -1}, ValueError, "retry_times"),
        ({"max_message_size": 0}, ValueError, "max_message_size"),
        ({"max_message_size": 64 << 20}, ValueError, "max_message_size"),
        ({"producer_group": "bad group"}, ValueError, "producer_group"),
        ({"tls_ca_file": "/x.pem"}, ValueError, "tls_ca_file: only applies with use_tls=True"),
        ({"tls_verify": False}, ValueError, "tls_verify: only applies with use_tls=True"),
        ({"tls_server_name": "x"}, ValueError, "tls_server_name"),
        ({"use_tls": True, "tls_ca_file": "/nonexistent.pem"}, ValueError, "tls_ca_file"),
        (
            {"use_tls": True, "tls_ca_file": "/x.pem", "tls_verify": False},
            ValueError,
            "tls_verify: False cannot be combined with tls_ca_file",
        ),
        ({"use_tls": True, "tls_server_name": "bad name!"}, ValueError, "tls_server_name"),
        ({"access_key": "ak"}, ValueError, "secret_key"),
        ({"secret_key": "sk"}, ValueError, "access_key"),
    ]
    for kwargs, exc, text in bad:
        kwargs = {"nameservers": ["127.0.0.1:9876"], **kwargs}
        with pytest.raises(exc) as e:
            Producer(**kwargs)
        assert text in str(e.value), (kwargs, str(e.value))

    p = Producer(["127.0.0.1:9876"])
    try:
        with pytest.raises(ValueError, match="topic"):
            p.send("bad topic", b"x")
        with pytest.raises(TypeError, match="body"):
            p.send("T", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="properties"):
            p.send("T", b"x", properties={"a": 1})  # type: ignore[dict-item]
        with pytest.raises(ProducerError, match="separator"):
            p.send("T", b"x", properties={"a": "x\x02y"})
        with pytest.raises(TypeError, match=r"messages\[0\]"):
            p.send_batch("T", [b"x"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"messages\[1\]\[0\]"):
            p.send_batch("T", [(b"x", None), ("y", None)])  # type: ignore[list-item]
    finally:
        p.close()


# ---------------------------------------------------------------------------------------------
# fake servers: exact bytes on the wire, timeouts


@pytest.fixture
def fake_pair() -> Iterator[tuple[FakeServer, FakeServer]]:
    """A name server routing every topic to one fake broker that stores everything."""

    def broker(_conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return RemotingCommand(
            0, {"msgId": "OFFSET", "queueId": cmd.ext_fields.get("e", "0"), "queueOffset": "7"}
        )

    with FakeServer(broker) as b, FakeServer(name_server({"broker-a": b.addr})) as ns:
        yield ns, b


def test_signature_bytes_match_java_signing(fake_pair: tuple[FakeServer, FakeServer]) -> None:
    ns, broker = fake_pair
    p = Producer([ns.addr], access_key="AK_test", secret_key="SK_séc")
    try:
        r = p.send("T", b"body \x00\xff bytes", keys="k", properties={"ü": "ñ"})
        assert (r.broker_name, r.queue_offset, r.offset_msg_id) == ("broker-a", 7, "OFFSET")
        p.send_batch("T", [(b"one", {"KEYS": "a"}), (b"two", None)])
    finally:
        p.close()
    requests = ns.requests + broker.requests
    assert [c.code for c in requests] == [105, 310, 320]
    for cmd in requests:
        assert cmd.ext_fields["AccessKey"] == "AK_test"
        assert cmd.ext_fields["Signature"] == java_sign(
            cmd.ext_fields, cmd.body, "AK_test", "SK_séc"
        )
    batch = decode_batch(broker.requests[1].body)
    assert [m.body for m in batch] == [b"one", b"two"]
    assert broker.requests[1].ext_fields["m"] == "true"


def test_timeout_on_a_silent_broker() -> None:
    with (
        FakeServer(silent) as broker,
        FakeServer(name_server({"broker-s": broker.addr})) as ns,
        closing(Producer([ns.addr], timeout=0.3, retry_times=1)) as p,
    ):
        start = time.monotonic()
        with pytest.raises(ProducerError) as e:
            p.send("T", b"x")
        took = time.monotonic() - start
        assert e.value.code is None
        assert e.value.retryable is True
        msg = str(e.value)
        assert "broker-s" in msg and broker.addr in msg and "300 ms" in msg, msg
        assert 0.6 <= took < 3.0
        stats = p.stats()
        assert (stats["timeouts"], stats["retries"]) == (2, 1)

        async def via_asyncio() -> None:
            with pytest.raises(ProducerError) as e:
                await p.send_async("T", b"x")
            assert e.value.code is None and e.value.retryable is True

        asyncio.run(via_asyncio())


def test_waiting_sends_release_the_gil() -> None:
    failed: list[BaseException] = []

    def send(p: Producer) -> None:
        try:
            p.send("T", b"x")
        except ProducerError as e:
            failed.append(e)

    with (
        FakeServer(silent) as broker,
        FakeServer(name_server({"broker-s": broker.addr})) as ns,
        closing(Producer([ns.addr], timeout=0.5, retry_times=0)) as p,
    ):
        t = threading.Thread(target=send, args=(p,))
        t.start()
        spins = 0
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            spins += 1
        t.join()
        # Had the send held the GIL for its 0.5 s wait, this thread could not have run.
        assert spins > 10_000
        assert len(failed) == 1


def test_tls_and_acl_send(secure: SecureCluster) -> None:
    p = Producer(
        [secure.namesrv],
        use_tls=True,
        tls_ca_file=secure.ca_file,
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
    )
    try:
        r = p.send(secure.topic, b"secret payload", keys="tls-key")
        batch = p.send_batch(secure.topic, [(b"b1", None), (b"b2", {"KEYS": "tls-b2"})])
        assert p.stats()["tls_insecure_skip_verify"] == 0
    finally:
        p.close()
    addr = secure.cluster.brokers[r.broker_name]
    [m] = pull(addr, secure.topic, r.queue_id, r.queue_offset, 1, secure.connect, acl_sign)
    assert (m.body, m.keys, m.uniq_key) == (b"secret payload", "tls-key", r.msg_id)
    [b] = batch
    msgs = pull(addr, secure.topic, b.queue_id, b.queue_offset, 2, secure.connect, acl_sign)
    assert [m.body for m in msgs] == [b"b1", b"b2"]


def test_tls_server_name_override(secure: SecureCluster) -> None:
    good = Producer(
        [secure.namesrv],
        use_tls=True,
        tls_ca_file=secure.ca_file,
        tls_server_name="localhost",
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
    )
    bad = Producer(
        [secure.namesrv],
        use_tls=True,
        tls_ca_file=secure.ca_file,
        tls_server_name="mq.example.com",
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
    )
    try:
        good.send(secure.topic, b"by name")
        with pytest.raises(ProducerError, match="not valid for name") as e:
            bad.send(secure.topic, b"x")
        assert e.value.retryable is False
    finally:
        good.close()
        bad.close()


def test_acl_wrong_secret_is_refused(secure: SecureCluster) -> None:
    p = Producer(
        [secure.namesrv],
        use_tls=True,
        tls_ca_file=secure.ca_file,
        access_key=ACL_USER,
        secret_key="wrong-secret",
        retry_times=1,
    )
    try:
        with pytest.raises(ProducerError) as e:
            p.send(secure.topic, b"x")
    finally:
        p.close()
    # The broker answered (its code is kept); attempts were bounded by retry_times.
    assert e.value.code is not None and e.value.code != 0
    assert e.value.retryable == (e.value.code in RETRY_CODES)
    assert p.stats()["requests"] == (2 if e.value.retryable else 1)
    # No credentials at all: refused too.
    anon = Producer([secure.namesrv], use_tls=True, tls_ca_file=secure.ca_file, retry_times=0)
    try:
        with pytest.raises(ProducerError) as e2:
            anon.send(secure.topic, b"x")
        assert e2.value.code is not None
    finally:
        anon.close()


def test_tls_verification_needs_the_ca(secure: SecureCluster) -> None:
    # Default trust (Mozilla roots) does not know our CA: refused, not retryable.
    p = Producer([secure.namesrv], use_tls=True, access_key=ACL_USER, secret_key=ACL_PASSWORD)
    try:
        with pytest.raises(ProducerError, match="certificate") as e:
            p.send(secure.topic, b"x")
        assert "UnknownIssuer" in str(e.value) or "unknown issuer" in str(e.value).lower()
        assert e.value.code is None
        assert e.value.retryable is False
        assert p.stats()["tls_handshake_failures"] >= 1
    finally:
        p.close()
    # Skipping verification must be asked for; then it works and shows in the stats.
    p = Producer(
        [secure.namesrv],
        use_tls=True,
        tls_verify=False,
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
    )
    try:
        p.send(secure.topic, b"unverified")
        assert p.stats()["tls_insecure_skip_verify"] == 1
    finally:
        p.close()


def test_plaintext_is_refused_by_an_enforcing_broker(secure: SecureCluster) -> None:
    # The name server is permissive, so the route lookup works in plain TCP; the broker
    # (enforcing) drops the connection.
    p = Producer(
        [secure.namesrv], timeout=2.0, retry_times=0, access_key=ACL_USER, secret_key=ACL_PASSWORD
    )
    try:
        with pytest.raises(ProducerError) as e:
            p.send(secure.topic, b"x")
        assert e.value.code is None
        assert e.value.retryable is True
    finally:
        p.close()


def test_repr_of_a_batch_result_with_non_ascii_ids(topic: str, producer: Producer) -> None:
    # The caller may set UNIQ_KEY; repr shortens a long batch id by characters, not bytes.
    ids = [f"идентификатор-{i}-ключ" for i in range(4)]
    [r] = producer.send_batch(topic, [(b"m", {"UNIQ_KEY": i}) for i in ids])
    assert r.msg_id == ",".join(ids)
    text = repr(r)
    assert text.startswith("SendResult(") and f'msg_id="{r.msg_id[:32]}...(4 ids)")' in text


def test_tls_insecure_skip_verify_is_a_deprecated_alias_of_tls_verify() -> None:
    only_with_tls = "tls_verify: only applies with use_tls=True"
    with (
        pytest.warns(DeprecationWarning, match="use tls_verify=False"),
        pytest.raises(ValueError, match=only_with_tls),
    ):
        Producer(["127.0.0.1:9876"], tls_insecure_skip_verify=True)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="contradicts"):
        Producer(["127.0.0.1:9876"], tls_verify=False, tls_insecure_skip_verify=False)
