"""rmqfast.devcluster against real RocketMQ servers, plus its small offline helpers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rmqfast
import rmqfast.devcluster as dc
from rmqfast.codec import (
    FrameDecoder,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    decode_messages,
    encode_properties,
)
from rmqfast.devcluster import DevCluster, DevClusterError
from rmqfast.devcluster import cluster as dc_cluster

from .fakes import wait_until
from .remoting import RemotingClient, create_topic_fields, pull_fields, route_of

# Subprocesses must import the same rmqfast as this test run.
_PYTHONPATH = os.pathsep.join(
    p for p in (str(Path(rmqfast.__file__).parent.parent), os.environ.get("PYTHONPATH")) if p
)


def _accepting(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _pid_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # An orphan waiting for init to reap it is dead already.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


# -- offline --------------------------------------------------------------------------------


def _answer_once(
    reply: Callable[[RemotingCommand], list[bytes]],
) -> tuple[str, threading.Thread]:
    """A listener for one connection: it reads one request and writes what `reply` returns."""
    server = socket.create_server(("127.0.0.1", 0))
    addr = f"127.0.0.1:{server.getsockname()[1]}"

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                decoder = FrameDecoder()
                requests: list[RemotingCommand] = []
                while not requests:
                    data = conn.recv(65536)
                    if not data:
                        return
                    requests = decoder.feed(data)
                for chunk in reply(requests[0]):
                    conn.sendall(chunk)
                while conn.recv(65536):  # until the client closes
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return addr, thread


def _response(req: RemotingCommand, code: int = 0, body: bytes = b"", remark: str = "") -> bytes:
    return RemotingCommand(code, body=body, opaque=req.opaque, flag=1, remark=remark).encode()


def test_client_returns_the_response_with_its_opaque() -> None:
    seen: list[RemotingCommand] = []

    def reply(req: RemotingCommand) -> list[bytes]:
        seen.append(req)
        push = RemotingCommand(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, opaque=req.opaque)
        stale = RemotingCommand(0, opaque=req.opaque + 1000, flag=1, remark="not mine")
        # ROCKETMQ binary header, split mid-frame.
        mine = RemotingCommand(
            0, {"k": "v"}, body=b"body", opaque=req.opaque, flag=1, remark="mine"
        ).encode("rocketmq")
        return [push.encode(), stale.encode(), mine[:7], mine[7:]]

    addr, thread = _answer_once(reply)
    with dc.RemotingClient(addr, timeout=5) as client:
        r = client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"})
    thread.join(5)
    assert (r.code, r.remark, r.ext_fields, r.body) == (0, "mine", {"k": "v"}, b"body")
    [req] = seen
    assert (req.code, req.ext_fields, req.language, req.version) == (
        RequestCode.GET_ROUTEINFO_BY_TOPIC,
        {"topic": "T"},
        "PYTHON",
        479,
    )
    assert not req.is_response and not req.is_oneway


def test_client_oneway_is_flagged() -> None:
    seen: list[RemotingCommand] = []
    addr, thread = _answer_once(lambda req: seen.append(req) or [])
    with dc.RemotingClient(addr, timeout=5) as client:
        client.oneway(RequestCode.HEART_BEAT, body=b"{}")
    thread.join(5)
    [req] = seen
    assert req.is_oneway and req.body == b"{}"


def test_client_timeout_names_the_request() -> None:
    addr, thread = _answer_once(lambda req: [])
    with (
        dc.RemotingClient(addr, timeout=5) as client,
        pytest.raises(TimeoutError, match=r"request code 106 .* within 0\.2 s"),
    ):
        client.request(RequestCode.GET_BROKER_CLUSTER_INFO, timeout=0.2)
    thread.join(5)


def test_cluster_info_reads_fastjson_integer_keys() -> None:
    body = (
        b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},'
        b'"brokerName":"broker-a","cluster":"C"},"broker-b":{"brokerAddrs":{1:"127.0.0.1:10931"},'
        b'"brokerName":"broker-b","cluster":"C"}},"clusterAddrTable":{"C":["broker-a","broker-b"]}}'
    )
    addr, thread = _answer_once(lambda req: [_response(req, body=body)])
    info = dc.query_cluster_info(addr)
    thread.join(5)
    assert info["brokerAddrTable"]["broker-a"]["brokerAddrs"] == {
        "0": "127.0.0.1:10911",
        "1": "127.0.0.1:10921",
    }
    assert info["clusterAddrTable"] == {"C": ["broker-a", "broker-b"]}
    addr, thread = _answer_once(lambda req: [_response(req, body=body)])
    # broker-b has no master (brokerId 0), so it is not listed.
    assert dc.registered_brokers(addr) == {"broker-a": "127.0.0.1:10911"}
    thread.join(5)


def test_cluster_info_error_names_code_and_remark() -> None:
    addr, thread = _answer_once(lambda req: [_response(req, code=1, remark="boom")])
    with pytest.raises(DevClusterError, match=r"GET_BROKER_CLUSTER_INFO to .* code 1: boom"):
        dc.registered_brokers(addr)
    thread.join(5)


def test_missing_java_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "java" else real_which(name)
    )
    with pytest.raises(DevClusterError) as info:
        DevCluster().start()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("java not found on PATH")
    assert "openjdk-17-jdk-headless" in msg


def test_missing_mvn_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RMQFAST_CACHE", str(tmp_path))  # an empty cache forces a download
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "mvn" else real_which(name)
    )
    with pytest.raises(DevClusterError, match=r"^mvn not found on PATH: install Maven"):
        dc.ensure_jars()


def test_cli_without_java_exits_2(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": str(bin_dir), "PYTHONPATH": _PYTHONPATH}
    proc = subprocess.run(
        [sys.executable, "-m", "rmqfast.devcluster", "up", "--dir", str(tmp_path / "dc")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: java not found on PATH: install a Java 17 JDK")


# -- real servers ---------------------------------------------------------------------------


@pytest.mark.integration
def test_failed_start_reports_log_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dc_cluster, "NAMESRV_MAIN", "org.example.NoSuchMain")
    cluster = DevCluster(dir=tmp_path / "dc", brokers=0, timeout=60)
    with pytest.raises(DevClusterError) as info:
        cluster.start()
    msg = str(info.value)
    assert "namesrv-0 exited with code" in msg
    assert "org.example.NoSuchMain" in msg  # from the JVM's own output
    assert all(_pid_gone(pid) for pid in cluster.pids().values())


@pytest.mark.integration
def test_cluster_registered(rocketmq: DevCluster) -> None:
    assert rocketmq.cluster_name == "DefaultCluster"
    assert set(rocketmq.brokers) == {"broker-a", "broker-b"}
    assert rocketmq.namesrv_addr == ";".join(rocketmq.namesrv_addrs)
    assert len(rocketmq.namesrv_addrs) == 1
    assert rocketmq.proxy_addr is None
    info = dc.query_cluster_info(rocketmq.namesrv_addrs[0])
    table = info["brokerAddrTable"]
    assert set(table) == {"broker-a", "broker-b"}
    for name, addr in rocketmq.brokers.items():
        assert table[name]["brokerAddrs"] == {"0": addr}
        assert table[name]["cluster"] == "DefaultCluster"
    assert sorted(info["clusterAddrTable"]["DefaultCluster"]) == ["broker-a", "broker-b"]


@pytest.mark.integration
def test_ports_distinct_and_accepting(rocketmq: DevCluster) -> None:
    ports = [int(a.rpartition(":")[2]) for a in rocketmq.namesrv_addrs]
    for name, addr in rocketmq.brokers.items():
        assert addr.startswith("127.0.0.1:")
        bp = rocketmq.broker_ports(name)
        listen = int(addr.rpartition(":")[2])
        assert bp == {"listen": listen, "vip": listen - 2, "ha": listen + 1}
        ports += bp.values()
    assert len(set(ports)) == len(ports)
    # Probe by binding, not connecting: a connection to the HA port looks like a slave.
    for port in ports:
        assert not dc._port_free(port), f"nothing listens on {port}"
    for addr in [*rocketmq.namesrv_addrs, *rocketmq.brokers.values()]:
        assert _accepting(addr), addr
    assert (rocketmq.lib_dir / "rocketmq-broker-5.3.3.jar").is_file()
    assert rocketmq.java_classpath() == os.path.join(str(rocketmq.lib_dir), "*")
    for name in ("namesrv-0", "broker-a", "broker-b"):
        assert rocketmq.log_file(name).is_file()
        assert rocketmq.log_file(name).is_relative_to(rocketmq.dir)


@pytest.mark.integration
def test_mqadmin_cluster_list(rocketmq: DevCluster) -> None:
    proc = rocketmq.mqadmin(["clusterList"], check=True)
    assert "broker-a" in proc.stdout
    assert "broker-b" in proc.stdout
    assert "DefaultCluster" in proc.stdout


@pytest.mark.integration
def test_cli_mqadmin_from_an_empty_cache(rocketmq: DevCluster, tmp_path: Path) -> None:
    # A fresh machine's cache: nothing but the jars (linked, so nothing is downloaded again);
    # no mqadmin work dir yet.
    cache = tmp_path / "cache"
    cache.mkdir()
    jars = rocketmq.lib_dir.parent
    (cache / jars.name).symlink_to(jars, target_is_directory=True)
    env = {
        **os.environ,
        "PYTHONPATH": _PYTHONPATH,
        "RMQFAST_CACHE": str(cache),
        "RMQFAST_DEVCLUSTER_CURRENT": str(tmp_path / "current"),
    }
    cmd = [sys.executable, "-m", "rmqfast.devcluster", "mqadmin", "--dir", str(rocketmq.dir)]
    proc = subprocess.run(
        [*cmd, "clusterList"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broker-a" in proc.stdout and "broker-b" in proc.stdout
    assert (cache / "mqadmin" / "tmp").is_dir()
    # It says which name server it talks to: with no rmqfast proxy running, the cluster's own.
    assert f"mqadmin: name server {rocketmq.namesrv_addr} (the cluster's own" in proc.stderr
    assert sorted(p.name for p in cache.iterdir()) == sorted([jars.name, "mqadmin"])


@pytest.mark.integration
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_stop_and_start_broker(rocketmq: DevCluster, kill: bool) -> None:
    ns = rocketmq.namesrv_addrs[0]
    addr = rocketmq.brokers["broker-b"]
    old_pid = rocketmq.pids()["broker-b"]
    rocketmq.stop_broker("broker-b", kill=kill, wait_unregistered=False)
    assert _pid_gone(old_pid)
    wait_until(
        lambda: "broker-b" not in dc.registered_brokers(ns), 30, "broker-b to be deregistered"
    )
    assert "broker-a" in dc.registered_brokers(ns)
    assert not _accepting(addr)

    rocketmq.start_broker("broker-b")
    assert rocketmq.brokers["broker-b"] == addr
    assert rocketmq.pids()["broker-b"] != old_pid
    assert dc.registered_brokers(ns) == rocketmq.brokers
    assert _accepting(addr)


@pytest.mark.integration
def test_cli_up_status_down(tmp_path: Path) -> None:
    work = tmp_path / "dc"
    env = {
        **os.environ,
        "PYTHONPATH": _PYTHONPATH,
        # Keep the developer's own "last up" pointer untouched.
        "RMQFAST_DEVCLUSTER_CURRENT": str(tmp_path / "current"),
    }

    def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rmqfast.devcluster", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    pids: list[int] = []
    try:
        up = cli("up", "--namesrvs", "1", "--brokers", "1", "--dir", str(work), "--quiet")
        assert up.returncode == 0, up.stderr
        lines = dict(line.split(" ", 1) for line in up.stdout.splitlines())
        state = json.loads((work / "devcluster.json").read_text())
        pids = [s["pid"] for s in state["namesrvs"]] + [b["pid"] for b in state["brokers"].values()]
        assert lines["namesrv"] == state["namesrvs"][0]["addr"]
        assert lines["broker"] == f"broker-a {state['brokers']['broker-a']['addr']}"
        assert lines["dir"] == str(work)
        assert (tmp_path / "current").read_text().strip() == str(work)
        assert all(not _pid_gone(p) for p in pids)
        assert dc.registered_brokers(lines["namesrv"]) == {
            "broker-a": state["brokers"]["broker-a"]["addr"]
        }

        status = cli("status")  # no --dir: found through the pointer
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" alive ") == 2

        down = cli("down")
        assert down.returncode == 0, down.stderr
        assert all(_pid_gone(p) for p in pids)
        assert not (tmp_path / "current").exists()

        after = cli("status", "--dir", str(work))
        assert after.returncode == 1
        assert after.stdout.count(" dead ") == 2
    finally:
        if any(not _pid_gone(p) for p in pids):
            cli("down", "--dir", str(work), "--timeout", "5")
            for p in pids:
                if not _pid_gone(p):
                    os.kill(p, signal.SIGKILL)


# -- RocketMQ's own Proxy (cluster mode) -----------------------------------------------------


@pytest.fixture(scope="module")
def rocketmq_proxy() -> Iterator[DevCluster]:
    """namesrv + broker-a + RocketMQ Proxy; stopped (and checked to be gone) after the module."""
    with DevCluster(namesrvs=1, brokers=1, proxy=True, timeout=120) as cluster:
        pids = dict(cluster.pids())
        yield cluster
    assert all(_pid_gone(p) for p in pids.values()), pids
    assert cluster.proxy_addr is not None and not _accepting(cluster.proxy_addr)


@pytest.mark.integration
def test_proxy_runs_in_cluster_mode(rocketmq_proxy: DevCluster) -> None:
    c = rocketmq_proxy
    assert c.proxy_addr is not None and c.proxy_grpc_addr is not None
    remoting_port = int(c.proxy_addr.rpartition(":")[2])
    grpc_port = int(c.proxy_grpc_addr.rpartition(":")[2])
    assert remoting_port != grpc_port
    assert _accepting(c.proxy_addr) and _accepting(c.proxy_grpc_addr)

    conf = json.loads((c.dir / "proxy" / "rmq-proxy.json").read_text())
    assert conf["proxyMode"] == "cluster"
    assert conf["namesrvAddr"] == c.namesrv_addr
    assert conf["rocketMQClusterName"] == c.cluster_name
    assert (conf["remotingListenPort"], conf["grpcServerPort"]) == (remoting_port, grpc_port)
    assert conf["remotingAccessAddr"] == conf["localServeAddr"] == "127.0.0.1"

    [row] = [r for r in c.status() if r["role"] == "proxy"]
    assert row["alive"] and row["pid"] == c.pids()["proxy"]
    argv = Path(f"/proc/{row['pid']}/cmdline").read_bytes().split(b"\0")
    assert dc.PROXY_MAIN.encode() in argv
    assert argv[argv.index(b"-pc") + 1] == str(c.dir / "proxy" / "rmq-proxy.json").encode()
    assert all(flag.encode() in argv for flag in dc.PROXY_HEAP)  # a small heap, like the rest
    assert c.log_file("proxy").is_file()

    with RemotingClient(c.proxy_addr) as proxy:
        # The Proxy is not a name server: cluster info is not among its remoting codes.
        r = proxy.request(RequestCode.GET_BROKER_CLUSTER_INFO)
        assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        # Routes come from the cluster's name server, with the broker's address replaced by
        # the Proxy's own (TBW102 is the broker's auto-create template topic).
        r = proxy.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})
        assert r.code == ResponseCode.SUCCESS, r.remark
        assert TopicRouteData.from_json(r.body).broker_addrs() == {"broker-a": {0: c.proxy_addr}}


@pytest.mark.integration
def test_send_through_proxy_is_stored(rocketmq_proxy: DevCluster) -> None:
    c = rocketmq_proxy
    assert c.proxy_addr is not None
    broker_addr = c.brokers["broker-a"]
    topic = f"proxy_it_{uuid.uuid4().hex[:8]}"

    with RemotingClient(broker_addr) as broker:
        # Created on the broker: the Proxy rejects sends to a topic it does not know yet
        # (message type UNSPECIFIED vs NORMAL, code 13) instead of auto-creating it.
        created = broker.request(
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            create_topic_fields(topic),
        )
        assert created.code == ResponseCode.SUCCESS, created.remark

    with RemotingClient(c.proxy_addr) as proxy:
        data = wait_until(lambda: route_of(proxy, topic), 30, f"route of {topic} through the Proxy")
        # Routes through the Proxy point clients back at the Proxy, not at the broker.
        assert data.broker_addrs() == {"broker-a": {0: c.proxy_addr}}
        [queue] = data.queue_datas
        assert (queue["brokerName"], queue["writeQueueNums"]) == ("broker-a", 4)
        send_addr = data.broker_addrs()["broker-a"][0]

    uniq = uuid.uuid4().hex.upper()
    body = b"through the RocketMQ Proxy"
    with RemotingClient(send_addr) as sender:
        fields = {
            "a": "rmqfast_proxy_it",
            "b": topic,
            "c": "TBW102",
            "d": "4",
            "e": "1",
            "f": "0",
            "g": str(int(time.time() * 1000)),
            "h": "0",
            "i": encode_properties({"WAIT": "true", "UNIQ_KEY": uniq, "KEYS": "k1"}),
            "j": "0",
            "k": "false",
            "n": "broker-a",  # the Proxy forwards by broker name
        }
        r = sender.request(RequestCode.SEND_MESSAGE_V2, fields, body=body)
        assert r.code == ResponseCode.SUCCESS, r.remark
        assert r.ext_fields["queueId"] == "1"
        offset = int(r.ext_fields["queueOffset"])
        no_name = {k: v for k, v in fields.items() if k != "n"}
        r = sender.request(RequestCode.SEND_MESSAGE_V2, no_name, body=body)
        assert r.code == ResponseCode.VERSION_NOT_SUPPORTED  # "doesn't have field bname"

    # Stored: read it back from the broker itself, bypassing the Proxy.
    with RemotingClient(broker_addr) as broker:
        p = broker.request(
            RequestCode.PULL_MESSAGE,
            pull_fields("rmqfast_proxy_it_cg", topic, 1, offset, 32),
        )
        assert p.code == ResponseCode.SUCCESS, p.remark
        [m] = decode_messages(p.body)
        assert (m.topic, m.queue_id, m.queue_offset, m.body) == (topic, 1, offset, body)
        assert m.uniq_key == uniq
        assert m.store_host == broker_addr
