"""rmqfast._core.Producer: against the real cluster, a TLS + ACL 2.0 cluster, and fake servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rmqfast._core import Producer, ProducerError, SendResult
from rmqfast.codec import (
    FrameDecoder,
    FrameError,
    MessageExt,
    RemotingCommand,
    decode_batch,
    decode_messages,
)
from rmqfast.devcluster import DevCluster
from rmqfast.proxy import Proxy

from .javatools import JavaTools
from .remoting import RemotingClient, create_topic_fields, pull_fields, wait_for

RETRY_CODES = {17, 14, 1, 2, 16, 204, 205, 1500}
# Plain ints: mypy cannot see the members of the dynamically built RequestCode/ResponseCode.
SUCCESS = 0
UPDATE_AND_CREATE_TOPIC = 17
GET_ROUTEINFO_BY_TOPIC = 105
PULL_MESSAGE = 11

# ---------------------------------------------------------------------------------------------
# helpers


def java_sign(fields: dict[str, str], body: bytes, access_key: str, secret_key: str) -> str:
    """AclClientRPCHook's signature, written independently of the Rust code."""
    f = {k: v for k, v in fields.items() if k != "Signature"}
    f["AccessKey"] = access_key
    # Java TreeMap order is UTF-16 code-unit order.
    data = "".join(f[k] for k in sorted(f, key=lambda s: s.encode("utf-16-be"))).encode() + body
    return base64.b64encode(hmac.new(secret_key.encode(), data, hashlib.sha1).digest()).decode()


def signed(fields: dict[str, str], body: bytes, access_key: str, secret_key: str) -> dict[str, str]:
    out = dict(fields)
    out["AccessKey"] = access_key
    out["Signature"] = java_sign(out, body, access_key, secret_key)
    return out


def refused_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


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
                UPDATE_AND_CREATE_TOPIC,
                sign(create_topic_fields(topic)),
            )
            assert r.code == SUCCESS, r.remark

    def routed() -> bool:
        with connect(namesrv) as ns:
            r = ns.request(GET_ROUTEINFO_BY_TOPIC, sign({"topic": topic}))
        if r.code != SUCCESS:
            return False
        names = {q["brokerName"] for q in json.loads(r.body)["queueDatas"]}
        return names == set(brokers)

    wait_for(routed, 30, f"route of {topic}")


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
                PULL_MESSAGE,
                sign(
                    pull_fields(
                        "rmqfast_producer_test_cg", topic, queue_id, offset + len(out), 1000
                    )
                ),
            )
            if r.code == SUCCESS:
                out.extend(decode_messages(r.body))
            elif time.monotonic() > deadline:
                raise AssertionError(f"pull {topic}/{queue_id}@{offset}: {r.code} {r.remark}")
            else:
                time.sleep(0.1)
    return out[:count]


def new_topic(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


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


def test_unknown_topic(producer: Producer) -> None:
    with pytest.raises(ProducerError, match="does not exist") as e:
        producer.send("rmqfast_no_such_topic_" + uuid.uuid4().hex[:8], b"x")
    assert e.value.code == 17
    assert e.value.retryable is False


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
        ({"tls_insecure_skip_verify": True}, ValueError, "tls_insecure_skip_verify"),
        ({"tls_server_name": "x"}, ValueError, "tls_server_name"),
        ({"use_tls": True, "tls_ca_file": "/nonexistent.pem"}, ValueError, "tls_ca_file"),
        (
            {"use_tls": True, "tls_ca_file": "/x.pem", "tls_insecure_skip_verify": True},
            ValueError,
            "tls_insecure_skip_verify",
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


class FakeServer:
    """A remoting server on loopback; `handler` answers each request (None: never answer)."""

    def __init__(self, handler: Callable[[RemotingCommand], RemotingCommand | None]) -> None:
        self.handler = handler
        self.requests: list[RemotingCommand] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            for cmd in decoder.feed(data):
                self.requests.append(cmd)
                resp = self.handler(cmd)
                if resp is not None:
                    resp.opaque = cmd.opaque
                    resp.flag = 1
                    conn.sendall(resp.encode())

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def fake_route(brokers: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "brokerDatas": [
                {"brokerAddrs": {"0": addr}, "brokerName": name, "cluster": "C"}
                for name, addr in brokers.items()
            ],
            "queueDatas": [
                {"brokerName": name, "perm": 6, "readQueueNums": 2, "writeQueueNums": 2}
                for name in brokers
            ],
        }
    ).encode()


@pytest.fixture
def fake_pair() -> Iterator[tuple[FakeServer, FakeServer]]:
    """A name server routing every topic to one fake broker that stores everything."""

    def broker(cmd: RemotingCommand) -> RemotingCommand:
        return RemotingCommand(
            0, {"msgId": "OFFSET", "queueId": cmd.ext_fields.get("e", "0"), "queueOffset": "7"}
        )

    b = FakeServer(broker)
    ns = FakeServer(lambda cmd: RemotingCommand(0, body=fake_route({"broker-a": b.addr})))
    yield ns, b
    ns.close()
    b.close()


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
    silent = FakeServer(lambda cmd: None)
    ns = FakeServer(lambda cmd: RemotingCommand(0, body=fake_route({"broker-s": silent.addr})))
    p = Producer([ns.addr], timeout=0.3, retry_times=1)
    try:
        start = time.monotonic()
        with pytest.raises(ProducerError) as e:
            p.send("T", b"x")
        took = time.monotonic() - start
        assert e.value.code is None
        assert e.value.retryable is True
        msg = str(e.value)
        assert "broker-s" in msg and silent.addr in msg and "300 ms" in msg, msg
        assert 0.6 <= took < 3.0
        stats = p.stats()
        assert (stats["timeouts"], stats["retries"]) == (2, 1)

        async def via_asyncio() -> None:
            with pytest.raises(ProducerError) as e:
                await p.send_async("T", b"x")
            assert e.value.code is None and e.value.retryable is True

        asyncio.run(via_asyncio())
    finally:
        p.close()
        ns.close()
        silent.close()


def test_waiting_sends_release_the_gil() -> None:
    silent = FakeServer(lambda cmd: None)
    ns = FakeServer(lambda cmd: RemotingCommand(0, body=fake_route({"broker-s": silent.addr})))
    p = Producer([ns.addr], timeout=0.5, retry_times=0)
    failed: list[BaseException] = []

    def send() -> None:
        try:
            p.send("T", b"x")
        except ProducerError as e:
            failed.append(e)

    try:
        t = threading.Thread(target=send)
        t.start()
        spins = 0
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            spins += 1
        t.join()
        # Had the send held the GIL for its 0.5 s wait, this thread could not have run.
        assert spins > 10_000
        assert len(failed) == 1
    finally:
        p.close()
        ns.close()
        silent.close()


# ---------------------------------------------------------------------------------------------
# a broker with TLS enforced (certificate from our own CA) and ACL 2.0 authentication

ACL_USER, ACL_PASSWORD = "rocketmq", "12345678"


@dataclass
class SecureCluster:
    cluster: DevCluster
    ca_file: str
    topic: str

    @property
    def namesrv(self) -> str:
        return self.cluster.namesrv_addr

    def connect(self, addr: str) -> RemotingClient:
        return TlsRemotingClient(addr, self.ca_file)


class TlsRemotingClient(RemotingClient):
    """tests.remoting.RemotingClient over TLS, verified with Python's ssl module."""

    def __init__(self, addr: str, ca_file: str, timeout: float = 10.0) -> None:
        super().__init__(addr, timeout)
        ctx = ssl.create_default_context(cafile=ca_file)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=addr.rsplit(":", 1)[0])


def acl_sign(fields: dict[str, str]) -> dict[str, str]:
    return signed(fields, b"", ACL_USER, ACL_PASSWORD)


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=rmqfast test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    d = tmp_path_factory.mktemp("secure")
    ca, cert, key = make_certs(d)
    tls_props = d / "tls.properties"
    tls_props.write_text(
        "tls.test.mode.enable=false\n"
        "tls.server.need.client.auth=none\n"
        f"tls.server.certPath={cert}\n"
        f"tls.server.keyPath={key}\n"
    )
    cluster = DevCluster(
        namesrvs=1,
        brokers=1,
        broker_props={
            "authenticationEnabled": "true",
            "authenticationProvider": (
                "org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider"
            ),
            "authenticationMetadataProvider": (
                "org.apache.rocketmq.auth.authentication.provider."
                "LocalAuthenticationMetadataProvider"
            ),
            "initAuthenticationUser": json.dumps(
                {"username": ACL_USER, "password": ACL_PASSWORD}, separators=(",", ":")
            ),
            "innerClientAuthenticationCredentials": json.dumps(
                {"accessKey": ACL_USER, "secretKey": ACL_PASSWORD}, separators=(",", ":")
            ),
        },
        broker_jvm_props={"tls.server.mode": "enforcing"},
        stop_timeout=10.0,
    )
    # The name server has no JVM-property hook in DevCluster; both JVMs read the TLS file
    # through JAVA_TOOL_OPTIONS, so the name server (permissive) presents the same cert.
    with pytest.MonkeyPatch.context() as mp:
        prior = os.environ.get("JAVA_TOOL_OPTIONS", "")
        mp.setenv("JAVA_TOOL_OPTIONS", f"{prior} -Dtls.config.file={tls_props}".strip())
        cluster.start()
    try:
        sc = SecureCluster(cluster, str(ca), new_topic("secure_it"))
        create_topic(cluster.brokers, cluster.namesrv_addr, sc.topic, sc.connect, acl_sign)
        yield sc
    finally:
        cluster.stop()


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
        tls_insecure_skip_verify=True,
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


def test_proxy_speaks_tls_upstream(secure: SecureCluster) -> None:
    """The rmqfast proxy in front of the TLS-enforcing, ACL-protected cluster: clients talk
    plain to the proxy, the proxy talks TLS (verified against the test CA) to the name server
    and the broker, and the client's AK/SK signatures pass through untouched."""
    cfg = {
        "namesrv": secure.namesrv,
        "listen": "127.0.0.1:0",
        "admin": None,
        "upstream_tls": True,
        "upstream_tls_ca_file": secure.ca_file,
    }
    with Proxy(cfg) as proxy:
        p = Producer([proxy.namesrv_addr], access_key=ACL_USER, secret_key=ACL_PASSWORD)
        try:
            r = p.send(secure.topic, b"through the proxy over TLS", keys="proxy-tls")
        finally:
            p.close()
        st = proxy.stats()
    assert (st["send_message_v2"], st["upstream_connect_failure"]) == (1, 0)
    addr = secure.cluster.brokers[r.broker_name]
    [m] = pull(addr, secure.topic, r.queue_id, r.queue_offset, 1, secure.connect, acl_sign)
    assert (m.body, m.keys, m.uniq_key) == (b"through the proxy over TLS", "proxy-tls", r.msg_id)

    # Without upstream TLS the enforcing broker drops the proxy's plain connection, so the
    # send fails (and nothing hangs).
    plain = {k: v for k, v in cfg.items() if not k.startswith("upstream_tls")}
    with Proxy(plain) as proxy:
        p = Producer(
            [proxy.namesrv_addr],
            access_key=ACL_USER,
            secret_key=ACL_PASSWORD,
            retry_times=0,
            timeout=5,
        )
        try:
            with pytest.raises(ProducerError):
                p.send(secure.topic, b"x")
        finally:
            p.close()


def test_proxy_serves_tls_clients(secure: SecureCluster) -> None:
    """TLS on both sides: clients reach the proxy over TLS (its certificate from the test CA),
    the proxy reaches the cluster over TLS. `enforcing` refuses plain clients (counted),
    `permissive` serves both."""
    certs = Path(secure.ca_file).parent
    cfg: dict[str, Any] = {
        "namesrv": secure.namesrv,
        "listen": "127.0.0.1:0",
        "admin": None,
        "upstream_tls": True,
        "upstream_tls_ca_file": secure.ca_file,
        "tls_cert_file": str(certs / "server.pem"),
        "tls_key_file": str(certs / "server.key"),
    }
    with Proxy(cfg) as proxy:
        p = Producer(
            [proxy.namesrv_addr],
            use_tls=True,
            tls_ca_file=secure.ca_file,
            access_key=ACL_USER,
            secret_key=ACL_PASSWORD,
        )
        try:
            r = p.send(secure.topic, b"TLS end to end", keys="tls-e2e")
        finally:
            p.close()
        # A plain client gets a TLS alert (not a frame), then the connection closes.
        with RemotingClient(proxy.namesrv_addr) as c, pytest.raises((OSError, FrameError)):
            c.request(GET_ROUTEINFO_BY_TOPIC, {"topic": secure.topic}, timeout=5)
        wait_for(
            lambda: proxy.stats()["tls_handshake_failure"] >= 1, 10, "the refused plain client"
        )
    addr = secure.cluster.brokers[r.broker_name]
    [m] = pull(addr, secure.topic, r.queue_id, r.queue_offset, 1, secure.connect, acl_sign)
    assert (m.body, m.keys) == (b"TLS end to end", "tls-e2e")

    with Proxy({**cfg, "tls_mode": "permissive"}) as proxy:
        for client in (secure.connect(proxy.namesrv_addr), RemotingClient(proxy.namesrv_addr)):
            with client as c:
                route = c.request(GET_ROUTEINFO_BY_TOPIC, {"topic": secure.topic})
                assert route.code == SUCCESS, route.remark
        assert proxy.stats()["tls_handshake_failure"] == 0


def test_java_client_over_tls_through_the_proxy(
    secure: SecureCluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """RocketMQ's Java client with TLS on (verifying the proxy's certificate against the test
    CA) and ACL signing, through the proxy with TLS on both sides, to the enforcing broker."""
    cache = getattr(request.config, "cache", None)
    build = cache.mkdir("rmqfast-java") if cache is not None else tmp_path / "build"
    java = JavaTools(secure.cluster.lib_dir, build, tmp_path)
    certs = Path(secure.ca_file).parent
    cfg = {
        "namesrv": secure.namesrv,
        "listen": "127.0.0.1:0",
        "admin": None,
        "upstream_tls": True,
        "upstream_tls_ca_file": secure.ca_file,
        "tls_cert_file": str(certs / "server.pem"),
        "tls_key_file": str(certs / "server.key"),
    }
    prefix = uuid.uuid4().hex[:8]
    with Proxy(cfg) as proxy:
        r = java.run(
            "Producer",
            {
                "namesrv": proxy.namesrv_addr,
                "topic": secure.topic,
                "group": f"rmqfast_tls_pg_{prefix}",
                "prefix": prefix,
                "sync": 5,
                "access_key": ACL_USER,
                "secret_key": ACL_PASSWORD,
            },
            jvm_props={
                "tls.enable": "true",
                "tls.test.mode.enable": "false",
                "tls.client.authServer": "true",
                "tls.client.trustCertPath": secure.ca_file,
            },
        ).result
        st = proxy.stats()
    assert r["keys"]["sync"] == [f"{prefix}-sync-{i}" for i in range(5)]
    assert st["send_message_v2"] == 5
    assert st["tls_handshake_failure"] == 0
