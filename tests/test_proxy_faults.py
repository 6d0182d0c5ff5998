"""Fault handling of the proxy: upstreams that are down or silent, bad clients, limits, shutdown.

Most cases use a tiny fake upstream (a Python socket server) to pin one behaviour down; the
"other connections are untouched" checks use the real brokers of the session cluster.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rmqfast.codec import FrameDecoder, RemotingCommand, RequestCode, ResponseCode, TopicRouteData
from rmqfast.devcluster import DevCluster
from rmqfast.proxy import Proxy

from .fakes import Connection, FakeServer, Handler, name_server, silent, wait_until
from .proxyproc import CliProxy, closed_by_peer, connect, read_frames, refused, send_frame
from .remoting import RemotingClient

SYSTEM_ERROR = 1
SYSTEM_BUSY = 2


# ------------------------------------------------------------------------------------------------
# fake upstreams (tests/fakes.py) and helpers


def answer_after(delay: float) -> Handler:
    """Answers every request, oneway ones aside, with SUCCESS after `delay` s."""

    def handler(conn: Connection, cmd: RemotingCommand) -> None:
        if not cmd.is_oneway:
            conn.respond_later(delay, cmd, RemotingCommand(0))

    return handler


def closed_port() -> str:
    """An address nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def start_proxy(namesrv: str, **over: Any) -> Proxy:
    cfg: dict[str, Any] = {
        "namesrv": namesrv,
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        **over,
    }
    return Proxy(cfg).start()


@pytest.fixture
def fake_ns() -> Iterator[FakeServer]:
    with FakeServer(silent) as f:
        yield f


# ------------------------------------------------------------------------------------------------
# upstream faults


def test_broker_that_never_answers_gets_system_busy_within_the_timeout(
    fake_ns: FakeServer,
) -> None:
    with FakeServer(silent) as broker:
        proxy = start_proxy(fake_ns.addr, request_timeout_ms=600)
        try:
            port = proxy.open_broker(broker.addr)
            with RemotingClient(port) as c:
                t0 = time.monotonic()
                r = c.request(RequestCode.SEND_MESSAGE_V2, {"b": "T"}, timeout=10)
                took = time.monotonic() - t0
                assert r.code == SYSTEM_BUSY
                assert "did not answer" in (r.remark or "") and broker.addr in (r.remark or "")
                assert 0.55 <= took < 0.6 + 1.0, took
                s = proxy.stats()
                assert s["local_reply_timeout"] == 1
                assert s["response_error"] == 1
                assert s["request_active"] == 0
                assert s["send_message_v2_active"] == 0
                # The connection still works for the next request (same silent broker).
                r2 = c.request(RequestCode.HEART_BEAT, timeout=10)
                assert r2.code == SYSTEM_BUSY
                assert proxy.stats()["local_reply_timeout"] == 2
            assert len(broker.requests) == 2
        finally:
            proxy.stop(1)


def test_oneway_to_silent_or_unreachable_broker_gets_no_reply(fake_ns: FakeServer) -> None:
    with FakeServer(silent) as broker:
        proxy = start_proxy(fake_ns.addr, request_timeout_ms=300)
        try:
            for upstream in (broker.addr, closed_port()):
                port = proxy.open_broker(upstream)
                with connect(port) as s:
                    dec = FrameDecoder()
                    send_frame(s, RequestCode.SEND_MESSAGE_V2, oneway=True)
                    marker = send_frame(s, RequestCode.HEART_BEAT)
                    # The first frame back answers the request sent after the oneway one (after
                    # its timeout, or at once when unreachable). A reply to the oneway request
                    # would come no later than that, so a second request's answer being the
                    # next frame shows none ever comes: the barrier, not a quiet window.
                    frames = read_frames(s, dec, 1, 5)
                    barrier = send_frame(s, RequestCode.HEART_BEAT)
                    frames += read_frames(s, dec, 1, 5)
                    assert [(f.opaque, f.is_response) for f in frames] == [
                        (marker, True),
                        (barrier, True),
                    ]
            st = proxy.stats()
            assert st["oneway_request"] == 2
            assert st["response"] == 4  # the two requests after each oneway one
            assert st["local_reply_timeout"] == 2
            assert st["local_reply_upstream_unavailable"] == 2
        finally:
            proxy.stop(1)


def test_unreachable_broker_gets_system_error_at_once(fake_ns: FakeServer) -> None:
    dead = closed_port()
    proxy = start_proxy(fake_ns.addr, connect_timeout_ms=2000, request_timeout_ms=2000)
    try:
        port = proxy.open_broker(dead)
        with RemotingClient(port) as c:
            t0 = time.monotonic()
            r = c.request(RequestCode.PULL_MESSAGE, {"topic": "T"}, timeout=10)
            assert time.monotonic() - t0 < 2.0
            assert r.code == SYSTEM_ERROR
            assert "unreachable" in (r.remark or "") and dead in (r.remark or "")
        s = proxy.stats()
        assert s["local_reply_upstream_unavailable"] == 1
        assert s["upstream_connect_failure"] >= 1
        assert s["response_error"] == 1
        assert proxy.running
    finally:
        proxy.stop(1)


def test_late_answer_after_local_timeout_is_dropped(fake_ns: FakeServer) -> None:
    with FakeServer(answer_after(1.2)) as broker:
        proxy = start_proxy(fake_ns.addr, request_timeout_ms=400)
        try:
            with connect(proxy.open_broker(broker.addr)) as s:
                dec = FrameDecoder()
                op = send_frame(s, RequestCode.SEND_MESSAGE_V2)
                [busy] = read_frames(s, dec, 1, 5)
                assert (busy.opaque, busy.code) == (op, SYSTEM_BUSY)
                # The broker's own answer arrives later and is not passed on: one answer each.
                wait_until(lambda: proxy.stats()["late_response"] == 1, 5, "the late answer")
                op2 = send_frame(s, RequestCode.HEART_BEAT)
                # The next frame answers op2 (timed out too: 400 ms < 1.2 s), so the late
                # answer to `op` was not passed on in between.
                [ok] = read_frames(s, dec, 1, 5)
                assert ok.opaque == op2
        finally:
            proxy.stop(1)


def test_long_poll_is_not_cut_by_the_request_timeout(fake_ns: FakeServer) -> None:
    # The broker may hold a pull for suspendTimeoutMillis; the proxy's timeout starts after that.
    with FakeServer(answer_after(1.5)) as broker:
        proxy = start_proxy(fake_ns.addr, request_timeout_ms=500)
        try:
            with RemotingClient(proxy.open_broker(broker.addr)) as c:
                r = c.request(
                    RequestCode.PULL_MESSAGE,
                    {"topic": "T", "suspendTimeoutMillis": "1500"},
                    timeout=10,
                )
                assert r.code == ResponseCode.SUCCESS
                assert proxy.stats()["local_reply_timeout"] == 0
                # Without a hold, the same wait is a timeout.
                r = c.request(RequestCode.SEND_MESSAGE_V2, {"b": "T"}, timeout=10)
                assert r.code == SYSTEM_BUSY
        finally:
            proxy.stop(1)


def test_name_server_down_route_lookup_gets_error_response() -> None:
    dead = closed_port()
    proxy = start_proxy(dead, connect_timeout_ms=1000, request_timeout_ms=1000)
    try:
        with RemotingClient(proxy.namesrv_addr) as c:
            t0 = time.monotonic()
            r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"}, timeout=10)
            assert time.monotonic() - t0 < 1.0
            assert r.code == SYSTEM_ERROR
            assert dead in (r.remark or "")
            r = c.request(RequestCode.GET_BROKER_CLUSTER_INFO, timeout=10)
            assert r.code == SYSTEM_ERROR
        s = proxy.stats()
        assert s["local_reply_upstream_unavailable"] == 2
        assert s["upstream_connect_failure"] >= 2
    finally:
        proxy.stop(1)


def test_silent_name_server_answered_within_the_request_timeout(fake_ns: FakeServer) -> None:
    # The name-server face retries a timed-out lookup once, with a fresh full timeout
    # (UpstreamClient::request in rust/src/proxy/upstream.rs), so this answer came after 2x.
    proxy = start_proxy(fake_ns.addr, request_timeout_ms=700)
    try:
        with RemotingClient(proxy.namesrv_addr) as c:
            t0 = time.monotonic()
            r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"}, timeout=10)
            took = time.monotonic() - t0
        assert r.code in (SYSTEM_ERROR, SYSTEM_BUSY)
        assert "did not answer" in (r.remark or "")
        # "within the configured timeout": 700 ms, with scheduling slack.
        assert took < 0.7 + 0.5, f"answered after {took:.2f} s"
    finally:
        proxy.stop(1)


def test_broker_closing_with_request_in_flight_closes_the_client(fake_ns: FakeServer) -> None:
    def close_on_request(conn: Connection, _cmd: RemotingCommand) -> None:
        conn.close()

    with FakeServer(close_on_request) as broker:
        proxy = start_proxy(fake_ns.addr, request_timeout_ms=5000)
        try:
            with connect(proxy.open_broker(broker.addr)) as s:
                send_frame(s, RequestCode.SEND_MESSAGE_V2)
                # As a direct connection would: closed at once, not after the 5 s timeout.
                assert closed_by_peer(s, 2.0)
            wait_until(lambda: proxy.stats()["connections_active"] == 0, 5, "the relay to end")
            st = proxy.stats()
            assert st["request_active"] == 0
            assert st["upstream_connections_active"] == 0
            assert proxy.running
        finally:
            proxy.stop(1)


# ------------------------------------------------------------------------------------------------
# bad clients, against the real cluster: only the offending connection goes


@pytest.mark.integration
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"\x00\x00\x00\x10" + b"\xff" * 16, id="bad-header-length"),
        pytest.param(b"\x00\x00\x00\x02\x00\x00", id="frame-shorter-than-header"),
        pytest.param((2 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 64, id="oversized"),
    ],
)
@pytest.mark.parametrize("face", ["namesrv", "broker"])
def test_garbage_closes_only_that_connection(
    rocketmq: DevCluster, garbage: bytes, face: str
) -> None:
    proxy = start_proxy(rocketmq.namesrv_addr, max_frame_size=1024 * 1024)
    try:
        broker_port = proxy.open_broker(rocketmq.brokers["broker-a"])
        target = proxy.namesrv_addr if face == "namesrv" else broker_port
        with (
            RemotingClient(proxy.namesrv_addr) as ns,
            RemotingClient(broker_port) as br,
            connect(target) as bad,
        ):
            assert ns.request(RequestCode.GET_BROKER_CLUSTER_INFO).code == 0
            assert br.request(RequestCode.GET_BROKER_RUNTIME_INFO).code == 0
            before = proxy.stats()
            bad.sendall(garbage)
            assert closed_by_peer(bad, 5.0)
            wait_until(
                lambda: (
                    proxy.stats()["request_decoding_error"] == before["request_decoding_error"] + 1
                ),
                5,
                "the decoding error to be counted",
            )
            # The other connections (same listener and the other face) are untouched.
            assert ns.request(RequestCode.GET_BROKER_CLUSTER_INFO).code == 0
            assert br.request(RequestCode.GET_BROKER_RUNTIME_INFO).code == 0
            after = proxy.stats()
            assert after["request"] == before["request"] + 2
            wait_until(
                lambda: proxy.stats()["connections_active"] == before["connections_active"] - 1,
                5,
                "the bad connection to be gone",
            )
            assert proxy.running
    finally:
        proxy.stop(1)


# ------------------------------------------------------------------------------------------------
# limits


def test_slow_reader_back_pressure_bounds_buffering(fake_ns: FakeServer) -> None:
    frame_body = b"x" * (64 * 1024)
    frames = 2048  # 128 MiB in all

    def flood(conn: Connection, cmd: RemotingCommand) -> None:
        conn.respond(cmd, RemotingCommand(0))
        for i in range(frames):
            # Broker-to-client requests (like consumer notices): relayed as they come.
            conn.send(RemotingCommand(40, {}, body=frame_body, opaque=i + 1).encode("json"))

    with FakeServer(flood) as broker:
        proxy = start_proxy(fake_ns.addr, max_buffered_frames=16)
        try:
            with connect(proxy.open_broker(broker.addr)) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
                send_frame(s, RequestCode.HEART_BEAT)
                # The client reads nothing: the broker's writes must stall.
                last = [-1]

                def stalled() -> bool:
                    w = broker.written
                    same = w == last[0]
                    last[0] = w
                    return same

                wait_until(stalled, 30, "the flooding broker to block", interval=0.5)
                held = broker.written
                assert held < 40 * 1024 * 1024, f"{held} bytes accepted from a broker"
                # Then reading resumes and every frame arrives, whole and in order.
                dec = FrameDecoder(max_frame_size=1 << 20)
                got = read_frames(s, dec, frames + 1, 60)
                assert len(got) == frames + 1
                assert [c.opaque for c in got[1:]] == list(range(1, frames + 1))
                assert all(c.body == frame_body for c in got[1:])
            assert proxy.stats()["broker_request"] == frames
        finally:
            proxy.stop(1)


def test_idle_timeout_spares_connections_with_requests_in_flight(fake_ns: FakeServer) -> None:
    with FakeServer(silent) as broker:
        proxy = start_proxy(fake_ns.addr, idle_timeout_s=1, request_timeout_ms=2500)
        try:
            with (
                connect(proxy.namesrv_addr) as idle_ns,
                connect(proxy.open_broker(broker.addr)) as b,
            ):
                t0 = time.monotonic()
                op = send_frame(b, RequestCode.SEND_MESSAGE_V2)
                assert closed_by_peer(idle_ns, 5.0)
                assert time.monotonic() - t0 < 3.0
                # The broker connection waits for its request: the local timeout reply comes
                # after 2.5 s, although the connection saw no bytes for longer than 1 s.
                dec = FrameDecoder()
                [r] = read_frames(b, dec, 1, 6)
                assert (r.opaque, r.code) == (op, SYSTEM_BUSY)
                assert time.monotonic() - t0 >= 2.4
                # Then, idle, it is closed too.
                assert closed_by_peer(b, 4.0)
            assert proxy.stats()["connections_idle_closed"] == 2
        finally:
            proxy.stop(1)


def test_connection_limit(fake_ns: FakeServer) -> None:
    proxy = start_proxy(fake_ns.addr, max_connections=2, request_timeout_ms=300)
    a, b = connect(proxy.namesrv_addr), connect(proxy.namesrv_addr)
    try:
        wait_until(lambda: proxy.stats()["connections_active"] == 2, 5, "two connections")
        with connect(proxy.namesrv_addr) as third:
            assert closed_by_peer(third, 5.0)
        assert proxy.stats()["connections_rejected"] == 1
        # The two accepted connections are served meanwhile (the silent name server's lookups
        # are answered by the proxy itself, but answered).
        for sock in (a, b):
            op = send_frame(sock, RequestCode.GET_BROKER_CLUSTER_INFO)
            [r] = read_frames(sock, FrameDecoder(), 1, 5)
            assert (r.opaque, r.code) == (op, SYSTEM_ERROR)
        # Once one closes, a new connection is served.
        a.close()
        wait_until(lambda: proxy.stats()["connections_active"] == 1, 5, "one connection")
        with RemotingClient(proxy.namesrv_addr) as c:
            r = c.request(RequestCode.GET_BROKER_CLUSTER_INFO, timeout=5)
            assert r.code == SYSTEM_ERROR
        assert proxy.stats()["connections_rejected"] == 1
        assert proxy.stats()["connections_total"] == 4
    finally:
        a.close()
        b.close()
        proxy.stop(1)


# ------------------------------------------------------------------------------------------------
# graceful shutdown of the CLI


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_requests_then_exits(sig: signal.Signals) -> None:
    with (
        FakeServer(answer_after(1.5)) as broker,
        FakeServer(name_server({"fake-broker": broker.addr})) as ns,
    ):
        cli = CliProxy("--namesrv", ns.addr, "--admin", "127.0.0.1:0", "--drain-timeout-ms", "8000")
        try:
            with RemotingClient(cli.namesrv_addr) as c:
                r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"})
            assert r.code == 0
            [[broker_port]] = [
                list(a.values()) for a in TopicRouteData.from_json(r.body).broker_addrs().values()
            ]
            with connect(broker_port) as s:
                dec = FrameDecoder()
                inflight = send_frame(s, RequestCode.SEND_MESSAGE_V2)
                wait_until(lambda: cli.stats()["request_active"] == 1, 5, "the request in flight")
                t0 = time.monotonic()
                cli.proc.send_signal(sig)
                # Stops accepting at once ...
                wait_until(lambda: refused(cli.namesrv_addr) and refused(broker_port), 3, "refusal")
                # ... answers new requests on open connections with SYSTEM_BUSY ...
                late = send_frame(s, RequestCode.SEND_MESSAGE_V2)
                frames = read_frames(s, dec, 2, 10)
                by_opaque = {f.opaque: f for f in frames}
                assert by_opaque[late].code == SYSTEM_BUSY
                assert "shutting down" in (by_opaque[late].remark or "")
                # ... lets the one in flight finish with the broker's own answer, then closes.
                assert by_opaque[inflight].code == ResponseCode.SUCCESS
                assert closed_by_peer(s, 3.0)
            assert cli.proc.wait(10) == 0
            assert time.monotonic() - t0 < 8.0
            assert "rmqfast proxy: stopped" in cli.lines
        finally:
            cli.kill()


def test_drain_deadline_bounds_shutdown_with_a_request_that_never_ends() -> None:
    with (
        FakeServer(silent) as broker,
        FakeServer(name_server({"fake-broker": broker.addr})) as ns,
    ):
        cli = CliProxy(
            "--namesrv",
            ns.addr,
            "--admin",
            "127.0.0.1:0",
            "--drain-timeout-ms",
            "1500",
            "--request-timeout-ms",
            "60000",
        )
        try:
            with RemotingClient(cli.namesrv_addr) as c:
                r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"})
            [[broker_port]] = [
                list(a.values()) for a in TopicRouteData.from_json(r.body).broker_addrs().values()
            ]
            with connect(broker_port) as s:
                send_frame(s, RequestCode.SEND_MESSAGE_V2)
                wait_until(lambda: cli.stats()["request_active"] == 1, 5, "the request in flight")
                t0 = time.monotonic()
                cli.proc.send_signal(signal.SIGTERM)
                assert cli.proc.wait(15) == 0
                took = time.monotonic() - t0
                assert 1.4 <= took < 1.5 + 3.0, took
                assert closed_by_peer(s, 2.0)
        finally:
            cli.kill()
