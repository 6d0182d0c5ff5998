"""RocketMQLogger end to end: real brokers, real producer, messages pulled back and checked."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from rmqfast.codec import MessageExt, RequestCode, ResponseCode, decode_messages
from rmqfast.devcluster import DevCluster
from rmqfast.logger import ASGIMiddleware, RocketMQLogger, WSGIMiddleware

from .fakes import wait_until
from .remoting import RemotingClient, create_topic, pull_fields
from .secure import ACL_PASSWORD, ACL_USER, SecureCluster, acl_sign

Sign = Callable[[dict[str, str]], dict[str, str]]
QUEUES = 4  # create_topic makes 4 read/write queues per broker


def new_topic(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def no_sign(fields: dict[str, str]) -> dict[str, str]:
    return fields


def consume(
    brokers: dict[str, str],
    topic: str,
    expected: int,
    connect: Callable[[str], RemotingClient] = RemotingClient,
    sign: Sign = no_sign,
    timeout: float = 60.0,
    exact: bool = True,
) -> list[MessageExt]:
    """Every message of `topic` on `brokers`; fails unless exactly `expected` are there."""
    clients = {addr: connect(addr) for addr in brokers.values()}
    offsets = {(addr, q): 0 for addr in clients for q in range(QUEUES)}
    out: list[MessageExt] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            got_any = False
            for (addr, q), offset in offsets.items():
                r = clients[addr].request(
                    RequestCode.PULL_MESSAGE,
                    sign(pull_fields("rmqfast_logger_it_cg", topic, q, offset, 1000)),
                )
                if r.code == ResponseCode.SUCCESS:
                    msgs = decode_messages(r.body)
                    out.extend(msgs)
                    offsets[(addr, q)] = offset + len(msgs)
                    got_any = got_any or bool(msgs)
            # flush() returned before we got here, so nothing else is on its way: one pass
            # that finds nothing new after reaching the count proves there is no extra.
            if len(out) >= expected and not got_any:
                break
            if time.monotonic() > deadline:
                break
            if not got_any:  # not there yet: poll again
                time.sleep(0.1)
    finally:
        for c in clients.values():
            c.close()
    if exact:
        assert len(out) == expected, f"{len(out)} messages in {topic}, expected {expected}"
    return out


@pytest.fixture(scope="module")
def topic(rocketmq: DevCluster) -> str:
    t = new_topic("logger_it")
    create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    return t


@pytest.fixture
def make(rocketmq: DevCluster) -> Iterator[Callable[..., RocketMQLogger]]:
    made: list[RocketMQLogger] = []

    def factory(topic: str, **kw: Any) -> RocketMQLogger:
        kw.setdefault("inactive_timeout", 60)
        lg = RocketMQLogger([rocketmq.namesrv_addr], topic, **kw)
        made.append(lg)
        return lg

    yield factory
    for lg in made:
        lg.close(10)


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


def test_starlette_default_entry(rocketmq: DevCluster, make: Callable[..., RocketMQLogger]) -> None:
    t = new_topic("logger_asgi")
    create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    lg = make(t, key="$http_x_request_id", tag="access", batch_max_size=10)
    app = ASGIMiddleware(Starlette(routes=[Route("/items/{item_id:int}", item)]), lg)
    client = TestClient(app)
    before = time.time() * 1000
    for i in range(3):
        r = client.get(f"/items/{i}?page={i}", headers={"X-Request-Id": f"req-{i}"})
        assert r.status_code == 200
    assert lg.flush(30)
    msgs = consume(rocketmq.brokers, t, 3)
    by_key = {m.keys: m for m in msgs}
    assert set(by_key) == {"req-0", "req-1", "req-2"}
    for i in range(3):
        m = by_key[f"req-{i}"]
        assert m.tags == "access"
        e = json.loads(m.body)
        assert set(e) == {
            "request",
            "response",
            "server",
            "client_ip",
            "start_time",
            "latency",
            "route_id",
        }
        assert e["request"]["url"] == f"http://testserver:80/items/{i}?page={i}"
        assert e["request"]["uri"] == f"/items/{i}?page={i}"
        assert e["request"]["method"] == "GET"
        assert e["request"]["headers"]["x-request-id"] == f"req-{i}"
        assert e["request"]["querystring"] == {"page": str(i)}
        assert isinstance(e["request"]["size"], int) and e["request"]["size"] > 0
        assert e["response"]["status"] == 200
        assert e["response"]["headers"]["content-type"] == "application/json"
        assert e["response"]["size"] > len(json.dumps({"id": i}))
        assert e["server"]["hostname"] and e["server"]["version"]
        assert e["client_ip"] == "testclient"
        assert before - 1 <= e["start_time"] <= time.time() * 1000 + 1
        assert 0 <= e["latency"] < 10000
        assert e["route_id"] == "/items/{item_id:int}"
    s = lg.stats()
    assert (s["accepted"], s["sent"], s["batches"], sum(s["dropped"].values())) == (3, 3, 1, 0)


def test_flask_custom_log_format(rocketmq: DevCluster, make: Callable[..., RocketMQLogger]) -> None:
    t = new_topic("logger_wsgi")
    create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    lg = make(
        t,
        key="user-$arg_user",
        tag="$request_method",
        message_shape="array",
        batch_max_size=1,
        log_format={
            "host": "$host",
            "client": {"addr": "$remote_addr", "ua": "$http_user_agent"},
            "status": "$status",
            "route": "$route",
            "body": "$request_body",
            "t": "$request_time",
            "service": "shop",
            "version": 3,
            "absent": "$http_x_not_sent",
        },
    )
    app = Flask("logger_it")

    @app.route("/orders/<int:order_id>", methods=["GET", "POST"])
    def order(order_id: int) -> Any:
        return {"order": order_id, "echo": request.get_data(as_text=True)}

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, lg)  # type: ignore[method-assign]
    client = app.test_client()
    with client.post("/orders/5?user=ann", data="note", headers={"User-Agent": "it/1"}) as r:
        assert r.status_code == 200
    with client.get("/orders/6?user=bob") as r:
        assert r.status_code == 200
    assert lg.flush(30)
    msgs = consume(rocketmq.brokers, t, 2)
    by_key = {m.keys: m for m in msgs}
    ann, bob = by_key["user-ann"], by_key["user-bob"]
    assert (ann.tags, bob.tags) == ("POST", "GET")
    e = json.loads(ann.body)  # batch_max_size 1: a single object, as in the plugin
    assert e == {
        "host": "localhost",
        "client": {"addr": "127.0.0.1", "ua": "it/1"},
        "status": 200,
        "route": "/orders/<int:order_id>",
        "route_id": "/orders/<int:order_id>",
        "body": "note",
        "t": e["t"],
        "service": "shop",
        "version": 3,
    }
    assert isinstance(e["t"], float)
    e = json.loads(bob.body)
    assert "body" not in e and e["client"]["ua"].startswith("Werkzeug")


def test_2500_entries_array_and_entry_shapes(
    rocketmq: DevCluster, make: Callable[..., RocketMQLogger]
) -> None:
    ta, te = new_topic("logger_array"), new_topic("logger_entry")
    for t in (ta, te):
        create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    la = make(ta, message_shape="array", batch_max_size=1000, key="$n")
    le = make(te, message_shape="entry", batch_max_size=1000, key="$n")
    for i in range(2500):
        entry = {"n": i, "pad": "x" * 100}
        assert la.log(entry)
        assert le.log(entry)
    assert la.flush(60) and le.flush(60)
    arrays = consume(rocketmq.brokers, ta, 3)
    sizes = sorted(len(json.loads(m.body)) for m in arrays)
    assert sizes == [500, 1000, 1000]
    got = sorted(e["n"] for m in arrays for e in json.loads(m.body))
    assert got == list(range(2500))
    assert all(len(m.keys.split(" ")) == len(json.loads(m.body)) for m in arrays if m.keys)
    singles = consume(rocketmq.brokers, te, 2500)
    assert sorted(json.loads(m.body)["n"] for m in singles) == list(range(2500))
    assert all(m.keys == str(json.loads(m.body)["n"]) for m in singles)
    assert la.stats()["messages"] == 3 and la.stats()["sent"] == 2500
    assert le.stats()["messages"] == 2500 and le.stats()["sent"] == 2500


def test_from_apisix_messages_read_back_from_the_broker(rocketmq: DevCluster) -> None:
    """An APISIX route's plugin JSON, as stored: what reaches the broker is APISIX's message
    (one JSON array per batch, the key and tag as written)."""
    t = new_topic("logger_apisix")
    create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    route = {
        "uri": "/items/*",
        "plugins": {
            "rocketmq-logger": {
                "nameserver_list": [rocketmq.namesrv_addr],
                "topic": t,
                "key": "order$1",
                "tag": "access",
                "batch_max_size": 3,
                "inactive_timeout": 60,
                "producer_type": "sync",
                "_meta": {"disable": False},
            }
        },
    }
    with RocketMQLogger.from_apisix(json.dumps(route)) as lg:
        client = TestClient(ASGIMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]), lg))
        for i in range(3):
            assert client.get(f"/items/{i}?flag").status_code == 200
        assert lg.flush(30)
    [msg] = consume(rocketmq.brokers, t, 1)
    entries = json.loads(msg.body)
    assert [e["request"]["uri"] for e in entries] == [f"/items/{i}?flag" for i in range(3)]
    assert all(e["request"]["querystring"] == {"flag": True} for e in entries)
    assert all(e["service_id"] == "" and "apisix_latency" in e for e in entries)
    assert msg.keys == "order$1" and msg.tags == "access"


def test_auto_create_topic(rocketmq: DevCluster, make: Callable[..., RocketMQLogger]) -> None:
    """A topic nobody created: refused with a hint by default; created through the TBW102
    route with auto_create_topic (the dev brokers have autoCreateTopicEnable)."""
    t = new_topic("logger_autocreate")
    plain = make(t, batch_max_size=1)
    plain.log({"n": 0})
    assert plain.flush(30)
    st = plain.stats()
    assert st["dropped"]["rejected"] == 1, st
    auto = make(t, batch_max_size=1, auto_create_topic=True)
    for i in range(3):
        auto.log({"n": i})
    assert auto.flush(30)
    assert auto.stats()["sent"] == 3, auto.stats()
    got = consume(rocketmq.brokers, t, 3, exact=False)
    assert sorted(json.loads(m.body)["n"] for m in got) == [0, 1, 2]


def test_broker_outage_retry_window(
    rocketmq: DevCluster, make: Callable[..., RocketMQLogger]
) -> None:
    """Inside the retry window nothing is lost; past it, the drops are counted exactly."""
    name = sorted(rocketmq.brokers)[-1]
    only = {name: rocketmq.brokers[name]}
    t = new_topic("logger_outage")
    create_topic(only, rocketmq.namesrv_addr, t)
    opts = {"route_refresh_interval": 1.0, "retry_times": 0}
    short = make(
        t, batch_max_size=50, max_retry_count=1, retry_delay=0.2, timeout=2, producer_options=opts
    )
    long = make(
        t, batch_max_size=50, max_retry_count=120, retry_delay=1, timeout=2, producer_options=opts
    )
    for lg, who in ((short, "short"), (long, "long")):
        for i in range(10):
            lg.log({"who": who, "phase": "before", "i": i})
        assert lg.flush(30)
        assert lg.stats()["sent"] == 10
    rocketmq.stop_broker(name)
    try:
        for i in range(120):
            short.log({"who": "short", "phase": "during", "i": i})
        short.flush(60)
        s = short.stats()
        assert s["pending_entries"] == 0
        assert s["sent"] == 10
        dropped = s["dropped"]["retries_exhausted"] + s["dropped"]["rejected"]
        assert dropped == 120 == sum(s["dropped"].values())
        assert s["failed"] == 240 and s["retried"] == 120  # 3 batches x 2 attempts

        for i in range(120):
            long.log({"who": "long", "phase": "during", "i": i})
        long.flush(0)
        wait_until(lambda: long.stats()["failed"] >= 50, 30, "failing sends")
    finally:
        rocketmq.start_broker(name)
    assert long.flush(120)
    s = long.stats()
    assert (s["sent"], sum(s["dropped"].values()), s["pending_entries"]) == (130, 0, 0)
    assert s["retried"] >= 50
    # 10 + 10 before the outage, the long window's 120; none of the short window's 120.
    msgs = consume(only, t, 140)
    seen = [(e["who"], e["phase"], e["i"]) for e in (json.loads(m.body) for m in msgs)]
    want = {(w, "before", i) for w in ("short", "long") for i in range(10)}
    want |= {("long", "during", i) for i in range(120)}
    assert len(seen) == len(set(seen)) == 140
    assert set(seen) == want


def test_acl_and_tls(secure: SecureCluster) -> None:
    base: dict[str, Any] = {
        "use_tls": True,
        "tls_ca_file": secure.ca_file,
        "batch_max_size": 5,
        "inactive_timeout": 60,
        "key": "$k",
    }
    ns = [secure.namesrv]
    good = RocketMQLogger(ns, secure.topic, **base, access_key=ACL_USER, secret_key=ACL_PASSWORD)
    wrong = RocketMQLogger(ns, secure.topic, **base, access_key=ACL_USER, secret_key="nope")
    unverified = RocketMQLogger(
        [secure.namesrv],
        secure.topic,
        **{**base, "tls_ca_file": None},
        tls_verify=False,
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
    )
    plaintext = RocketMQLogger(
        [secure.namesrv],
        secure.topic,
        **{**base, "use_tls": False, "tls_ca_file": None},
        access_key=ACL_USER,
        secret_key=ACL_PASSWORD,
        timeout=2,
    )
    tag = uuid.uuid4().hex[:8]
    try:
        for i in range(5):
            good.log({"k": f"{tag}-good-{i}"})
            wrong.log({"k": f"{tag}-wrong-{i}"})
            unverified.log({"k": f"{tag}-unverified-{i}"})
            plaintext.log({"k": f"{tag}-plain-{i}"})
        for lg in (good, wrong, unverified, plaintext):
            lg.flush(60)
        g = good.stats()
        assert (g["sent"], g["failed"], sum(g["dropped"].values())) == (5, 0, 0)
        assert unverified.stats()["sent"] == 5
        w = wrong.stats()
        assert (w["sent"], w["failed"], sum(w["dropped"].values())) == (0, 5, 5)
        p = plaintext.stats()
        assert (p["sent"], p["failed"], sum(p["dropped"].values())) == (0, 5, 5)
    finally:
        for lg in (good, wrong, unverified, plaintext):
            lg.close(10)
    total = _count_expected(secure)
    msgs = consume(secure.cluster.brokers, secure.topic, total, secure.connect, acl_sign)
    keys = [m.keys for m in msgs if m.keys and m.keys.startswith(tag)]
    for who in ("good", "unverified"):
        assert sorted(k for k in keys if f"-{who}-" in k) == [f"{tag}-{who}-{i}" for i in range(5)]
    assert not [k for k in keys if "-wrong-" in k]
    # Nothing is asserted about the plaintext logger's entries: RocketMQ 5.3.3 in enforcing
    # mode closes a plaintext connection but still executes the request already read, so
    # they may be stored (once per producer attempt) although every send reported failure.


def _count_expected(sc: SecureCluster) -> int:
    # The producer tests share this topic; count what is there now and check ours within it.
    total = 0
    for addr in sc.cluster.brokers.values():
        with sc.connect(addr) as c:
            for q in range(QUEUES):
                r = c.request(
                    RequestCode.GET_MAX_OFFSET,
                    acl_sign({"topic": sc.topic, "queueId": str(q)}),
                )
                assert r.code == ResponseCode.SUCCESS, r.remark
                total += int(r.ext_fields["offset"])
    return total
