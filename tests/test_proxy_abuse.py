"""Hostile clients against the proxy, with a real RocketMQ behind it (issue 10's attacks).

Each test runs `python -m rmqfast.proxy` as a subprocess, attacks it with bounded traffic and
time, and asserts the bound (resident memory read from /proc) or the refusal, and that a
well-behaved client is still served meanwhile.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rmqfast.codec import FrameDecoder, RemotingCommand, RequestCode, ResponseCode, TopicRouteData
from rmqfast.devcluster import DevCluster

from .fakes import wait_until
from .proxyproc import CliProxy, closed_by_peer, connect, read_frames, send_frame
from .remoting import RemotingClient

MiB = 1 << 20


@pytest.fixture
def proxy(rocketmq: DevCluster, request: pytest.FixtureRequest) -> Iterator[CliProxy]:
    """The CLI proxy in front of the session cluster; a test's `proxy_args` mark adds flags."""
    mark = request.node.get_closest_marker("proxy_args")
    extra = list(mark.args) if mark else []
    cli = CliProxy("--namesrv", rocketmq.namesrv_addr, "--admin", "127.0.0.1:0", *extra)
    try:
        yield cli
    finally:
        cli.kill()


def broker_port(proxy: CliProxy, topic: str = "TBW102") -> str:
    """The proxy's listener for the first broker of `topic`'s route."""
    with RemotingClient(proxy.namesrv_addr) as c:
        r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    assert r.code == ResponseCode.SUCCESS, r.remark
    addrs = TopicRouteData.from_json(r.body).broker_addrs()
    return addrs[min(addrs)][0]


HEARTBEAT = b'{"clientID":"abuse-test","consumerDataSet":[],"producerDataSet":[]}'


def heartbeat_answered(addr: str) -> bool:
    """A well-behaved client's round trip: a HEART_BEAT gets SUCCESS from the broker."""
    with RemotingClient(addr) as c:
        r = c.request(RequestCode.HEART_BEAT, {}, body=HEARTBEAT, timeout=10)
    assert r.code == ResponseCode.SUCCESS, (r.code, r.remark)
    return True


def send_until_blocked(sock: socket.socket, data: bytes, stall: float) -> int:
    """Sends `data` until all of it went or a send made no progress for `stall` s; the bytes
    sent."""
    sock.settimeout(stall)
    sent = 0
    view = memoryview(data)
    try:
        while sent < len(data):
            sent += sock.send(view[sent : sent + MiB])
    except (TimeoutError, OSError):
        pass
    return sent


def test_pipelined_route_lookups_without_reading_keep_the_proxy_small(proxy: CliProxy) -> None:
    """400k route lookups written without reading a single answer: the name-server port stops
    reading after max_buffered_frames requests and as many answers, so the proxy stays under
    100 MiB (it grew past 1.3 GiB before) and keeps serving other clients."""
    lookup = RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"}).encode()
    flood = lookup * 400_000
    with connect(proxy.namesrv_addr) as s:
        sent = send_until_blocked(s, flood, stall=3.0)
        rss = proxy.rss_bytes()
        assert sent < len(flood), "the proxy read everything: no back-pressure"
        assert rss < 100 * MiB, f"proxy RSS {rss / MiB:.1f} MiB after {sent / MiB:.1f} MiB sent"
        # The flooder stalls only itself.
        with RemotingClient(proxy.namesrv_addr) as c:
            r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"}, timeout=10)
        assert r.code == ResponseCode.SUCCESS


@pytest.mark.proxy_args("--frame-timeout-ms", "8000")
def test_partial_frames_are_held_within_the_frame_budget_then_timed_out(proxy: CliProxy) -> None:
    """32 connections each announce a 16 MiB frame and send 15 MiB of it: only what fits in
    frame_memory_budget (64 MiB) is buffered, the rest wait unread; the proxy stays under
    200 MiB (506 MiB before) and every one is closed at frame_timeout_ms."""
    target = broker_port(proxy)
    announced = 16 * MiB - 64
    partial = struct.pack(">i", announced - 4) + b"\x00" * (15 * MiB)
    socks = [connect(target) for _ in range(32)]
    sent = [0] * len(socks)

    def attack(i: int) -> None:
        sent[i] = send_until_blocked(socks[i], partial, stall=3.0)

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(len(socks))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stats = proxy.stats()
        rss = proxy.rss_bytes()
        assert rss < 200 * MiB, f"proxy RSS {rss / MiB:.1f} MiB, {sum(sent) / MiB:.0f} MiB sent"
        assert stats["frame_budget_bytes"] <= 64 * MiB
        assert stats["frame_budget_wait"] >= 1, stats
        assert sum(sent) < 32 * len(partial), "every partial frame was read in full"
        # A small request of a well-behaved client needs no budget and goes through.
        assert heartbeat_answered(target)
        # Every attacker is closed once its frame is frame_timeout_ms old.
        for s in socks:
            assert closed_by_peer(s, 30.0)
        stats = wait_until(
            lambda: (st := proxy.stats())["frame_timeout"] >= 32 and st, 10, "32 frame timeouts"
        )
        assert stats["frame_budget_bytes"] == 0
    finally:
        for s in socks:
            s.close()


@pytest.mark.proxy_args("--frame-timeout-ms", "2000", "--idle-timeout-s", "300")
def test_slowloris_connections_are_closed_at_the_frame_timeout(proxy: CliProxy) -> None:
    """200 connections trickling one byte at a time into a frame they never finish are closed
    by frame_timeout_ms, however long idle_timeout_s is."""
    target = broker_port(proxy)
    socks = [connect(target) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(struct.pack(">i", 1000))
        t0 = time.monotonic()
        open_socks = list(socks)
        while open_socks and time.monotonic() - t0 < 20:
            still = []
            for s in open_socks:
                try:
                    s.sendall(b"\x00")
                    still.append(s)
                except OSError:
                    pass
            open_socks = still
            # Paced like a slowloris: a byte per connection every 200 ms.
            time.sleep(0.2)
        for s in open_socks:
            assert closed_by_peer(s, 10.0)
        wait_until(lambda: proxy.stats()["frame_timeout"] >= 200, 10, "200 frame timeouts")
        assert proxy.stats()["connections_broker_active"] == 0
    finally:
        for s in socks:
            s.close()


def test_a_header_with_two_codes_is_refused_not_smuggled(proxy: CliProxy) -> None:
    """`{"code":34,...,"code":26}`: the broker (Java) would read GET_BROKER_CONFIG where a
    first-match reader sees HEART_BEAT. The proxy refuses the frame and closes the connection,
    and the broker never sees it."""
    target = broker_port(proxy)
    header = b'{"code":34,"extFields":{},"flag":0,"language":"JAVA","opaque":7,"code":26}'
    frame = struct.pack(">iI", 4 + len(header), len(header)) + header
    before = proxy.stats()
    with connect(target) as s:
        s.sendall(frame)
        assert closed_by_peer(s, 5.0)
    after = proxy.stats()
    assert after["request_decoding_error"] == before["request_decoding_error"] + 1
    assert after["heartbeat"] == before["heartbeat"]
    assert heartbeat_answered(target)


def test_default_policy_refuses_cluster_administration_with_no_permission(
    proxy: CliProxy, rocketmq: DevCluster
) -> None:
    """UPDATE_BROKER_CONFIG, GET_BROKER_CONFIG, UPDATE_AND_CREATE_TOPIC and KV writes get
    NO_PERMISSION from the proxy, naming the rule, and never reach the cluster."""
    target = broker_port(proxy)
    refused = [
        (target, RequestCode.UPDATE_BROKER_CONFIG, {}),
        (target, RequestCode.GET_BROKER_CONFIG, {}),
        (target, RequestCode.UPDATE_AND_CREATE_TOPIC, {"topic": "abuse_created"}),
        (target, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "TBW102"}),
        (proxy.namesrv_addr, RequestCode.PUT_KV_CONFIG, {"namespace": "n", "key": "k"}),
        (proxy.namesrv_addr, RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "TBW102"}),
    ]
    for addr, code, ext in refused:
        with RemotingClient(addr) as c:
            r = c.request(code, ext, body=b"brokerPermission=2\n", timeout=10)
        assert r.code == ResponseCode.NO_PERMISSION, (code, r.code, r.remark)
        assert code.name in (r.remark or "") and '"default"' in (r.remark or ""), r.remark
    stats = proxy.stats()
    assert stats["request_denied"] == len(refused)
    assert stats["request_denied_by_code"]["UPDATE_BROKER_CONFIG"] == 1
    # The cluster is untouched: the topic was not created and TBW102 is still routed.
    with RemotingClient(rocketmq.namesrv_addrs[0]) as ns:
        r = ns.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "abuse_created"})
        assert r.code == ResponseCode.TOPIC_NOT_EXIST
        r = ns.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})
        assert r.code == ResponseCode.SUCCESS
    # Data-path requests still pass.
    assert heartbeat_answered(target)


def test_a_policy_rule_opens_administration_to_a_client_network(
    rocketmq: DevCluster, tmp_path: Path
) -> None:
    """With an `allow` rule for loopback, GET_BROKER_CONFIG reaches the real broker."""
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[[policy]]\nname = "ops"\naction = "allow"\n'
        'codes = ["GET_BROKER_CONFIG"]\nclients = ["127.0.0.0/8"]\n'
    )
    cli = CliProxy(
        "--namesrv", rocketmq.namesrv_addr, "--admin", "127.0.0.1:0", "--config", str(cfg)
    )
    try:
        with RemotingClient(broker_port(cli)) as c:
            r = c.request(RequestCode.GET_BROKER_CONFIG, {}, timeout=10)
        assert r.code == ResponseCode.SUCCESS, r.remark
        assert b"brokerName" in r.body
        assert cli.stats()["request_denied"] == 0
    finally:
        cli.kill()


@pytest.mark.proxy_args("--request-timeout-ms", "1000")
def test_end_transaction_without_the_oneway_flag_gets_no_local_timeout_reply(
    proxy: CliProxy,
) -> None:
    """Some clients send END_TRANSACTION without the oneway flag; the broker may not answer
    it. The proxy never answers it itself (no SYSTEM_BUSY, no timeout counted)."""
    target = broker_port(proxy)
    fields = {
        "producerGroup": "abuse_tx",
        "tranStateTableOffset": "0",
        "commitLogOffset": "0",
        "commitOrRollback": "12",  # rollback of a half message that does not exist
        "fromTransactionCheck": "false",
        "msgId": "00000000000000000000000000000000",
    }
    with connect(target) as s:
        dec = FrameDecoder()
        op = send_frame(s, RequestCode.END_TRANSACTION, **fields)
        t0 = time.monotonic()
        # Past the request timeout (1 s) and the tick after it; HEART_BEATs keep the
        # connection busy meanwhile and their answers come back in order.
        got = []
        try:
            while time.monotonic() - t0 < 2.5:
                hb = send_frame(s, RequestCode.HEART_BEAT)
                # The broker may answer END_TRANSACTION (an error) after a later heartbeat,
                # even in the same read: wait for the heartbeat's answer among them.
                frames = read_frames(s, dec, 1, 10)
                while all(f.opaque != hb for f in frames):
                    frames += read_frames(s, dec, 1, 10)
                got += frames
        except TimeoutError as e:
            keys = ("request", "response", "heart_beat", "late_response", "request_active")
            st = {k: v for k, v in proxy.stats().items() if k in keys or k.startswith("local")}
            raise AssertionError(f"no answer to HEART_BEAT {hb} after {len(got)}: {st}") from e
        stray = [f for f in got if f.opaque == op]
        assert all(f.code != ResponseCode.SYSTEM_BUSY for f in stray), [
            (f.code, f.remark) for f in stray
        ]
    stats = proxy.stats()
    assert stats["local_reply_timeout"] == 0
    assert stats["end_transaction"] == 1


def test_admin_endpoint_closes_half_sent_requests_quietly(proxy: CliProxy) -> None:
    """Half-sent HTTP requests are closed after the admin I/O timeout instead of holding a
    thread each, and clients that hang up leave no traceback in the proxy's output."""
    host, port = proxy.admin_url.removeprefix("http://").rsplit(":", 1)
    halves = [socket.create_connection((host, int(port)), timeout=15) for _ in range(50)]
    try:
        for s in halves:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
        # Meanwhile the endpoint answers.
        assert proxy.stats()["connections_active"] >= 0
        for s in halves:
            assert closed_by_peer(s, 15.0)
    finally:
        for s in halves:
            s.close()
    # Clients that send a request and hang up before the answer.
    for _ in range(20):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert proxy.stats()["connections_active"] >= 0
    assert not [x for x in proxy.lines if "Traceback" in x], proxy.lines


def open_idle(addr: str, n: int, request: RemotingCommand | None) -> list[socket.socket]:
    """`n` connections to `addr`, each (when `request` is given) after one answered request."""
    socks = []
    frame = request.encode() if request is not None else b""
    for _ in range(n):
        s = connect(addr)
        socks.append(s)
        if request is not None:
            s.sendall(frame)
            read_frames(s, FrameDecoder(), 1, 10)
    return socks


@pytest.mark.proxy_args("--max-connections", "12000")
def test_ten_thousand_idle_connections_fit_in_little_memory(proxy: CliProxy) -> None:
    """10,000 idle clients: 4,000 on the name-server port after a route lookup, 4,000 on a broker
    port that never sent anything, 2,000 on it after a heartbeat (each with its own broker
    connection). Each costs the proxy at most 8 KiB of resident memory, a new client is still
    served (max_connections leaves headroom), and every connection is accounted for."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 11_000, f"this test holds 10,000 sockets; the open-file limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 11_000), hard))
    broker = broker_port(proxy)
    assert heartbeat_answered(broker)
    lookup = RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})
    beat = RemotingCommand(RequestCode.HEART_BEAT, {}, body=HEARTBEAT)
    groups = [
        ("namesrv port, after a route lookup", proxy.namesrv_addr, 4000, lookup),
        ("broker port, silent", broker, 4000, None),
        ("broker port, after a heartbeat", broker, 2000, beat),
    ]
    held: list[socket.socket] = []

    def active_is(n: int) -> Callable[[], bool]:
        return lambda: proxy.stats()["connections_active"] == n

    try:
        costs = []
        for what, addr, n, req in groups:
            before = proxy.rss_bytes()
            held += open_idle(addr, n, req)
            wait_until(active_is(len(held)), 30, "the connections")
            costs.append((what, (proxy.rss_bytes() - before) / n))
        print(
            "resident memory per idle connection:", [(w, f"{c / 1024:.1f} KiB") for w, c in costs]
        )
        for what, cost in costs:
            assert cost <= 8 * 1024, f"{what}: {cost / 1024:.1f} KiB per idle connection"
        assert heartbeat_answered(broker)
        assert proxy.stats()["connections_rejected"] == 0
    finally:
        for s in held:
            s.close()
    wait_until(lambda: proxy.stats()["connections_active"] == 0, 60, "every connection closed")
    # Each broker-port client's own broker connection closes with it (the name-server
    # connection the proxy keeps for lookups stays).
    wait_until(
        lambda: proxy.stats()["upstream_connections_active"] <= 1, 30, "the broker connections"
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
