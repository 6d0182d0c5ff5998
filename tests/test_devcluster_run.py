"""`make run` and its companions (`python -m rmqfast.devcluster run|produce|consume|mqadmin`)
against the real cluster: the first message through the rmqfast proxy, the port fallback, and
no silent bypass of the proxy."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rmqfast
from rmqfast.codec import RequestCode, ResponseCode, decode_messages
from rmqfast.devcluster import DevCluster
from rmqfast.devcluster.messages import PROXY_RECORD
from rmqfast.devcluster.run import DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT

from .fakes import wait_until
from .remoting import RemotingClient, pull_fields

# Subprocesses must import the same rmqfast as this test run.
_PYTHONPATH = os.pathsep.join(
    p for p in (str(Path(rmqfast.__file__).parent.parent), os.environ.get("PYTHONPATH")) if p
)


def _env(tmp: Path) -> dict[str, str]:
    # The developer's own "last up/run" pointer stays untouched.
    return {
        **os.environ,
        "PYTHONPATH": _PYTHONPATH,
        "RMQFAST_DEVCLUSTER_CURRENT": str(tmp / "current"),
    }


def _cli(
    env: dict[str, str], *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rmqfast.devcluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def _hold(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:port; None if something else already does (it is taken either way)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the proxy binds: connections of an earlier user lingering in TIME_WAIT do not count.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
    except OSError:
        s.close()
        return None
    return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(admin: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{admin}/stats", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def _fields(line: str) -> dict[str, str]:
    """`sent topic=T broker=b ...` -> {"topic": "T", ...} (body stays JSON-quoted)."""
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))


@dataclass
class RunningProxy:
    proc: subprocess.Popen[str]
    dir: Path
    env: dict[str, str]
    tmp: Path
    lines: list[str] = field(default_factory=list)
    proxy: str = ""
    admin: str = ""

    def line(self, prefix: str) -> str:
        return next(ln for ln in self.lines if ln.lstrip().startswith(prefix))


@pytest.fixture(scope="module")
def make_run(
    rocketmq: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    """`python -m rmqfast.devcluster run` on the session cluster, with 19876 and 9901 taken."""
    tmp = tmp_path_factory.mktemp("make_run")
    held = [_hold(DEFAULT_PROXY_PORT), _hold(DEFAULT_ADMIN_PORT)]
    env = _env(tmp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmqfast.devcluster", "run", "--dir", str(rocketmq.dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    run = RunningProxy(proc, rocketmq.dir, env, tmp)

    def pump() -> None:
        assert proc.stdout is not None
        for ln in proc.stdout:
            run.lines.append(ln.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: proc.poll() is not None or any(ln.startswith("Ctrl-C") for ln in run.lines),
            120,
            "`run` to print its first message",
        )
        assert proc.poll() is None, "\n".join(run.lines)
        m = re.match(
            r"ports: proxy (127\.0\.0\.1:\d+).*admin (127\.0\.0\.1:\d+)", run.line("ports:")
        )
        assert m, run.lines
        run.proxy, run.admin = m.group(1), m.group(2)
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(10)
        reader.join(10)
        for s in held:
            if s is not None:
                s.close()
    assert rc == 0, "\n".join(run.lines)
    assert run.lines[-1].startswith("proxy stopped; the dev cluster in"), run.lines
    assert not (rocketmq.dir / PROXY_RECORD).exists()  # produce/consume won't find a dead one


@pytest.mark.integration
def test_run_falls_back_to_free_ports_and_says_so(make_run: RunningProxy) -> None:
    ports = make_run.line("ports:")
    assert f"({DEFAULT_PROXY_PORT} is taken, so a free port was chosen)" in ports
    assert f"({DEFAULT_ADMIN_PORT} is taken, so a free port was chosen)" in ports
    assert make_run.proxy.startswith("127.0.0.1:") and make_run.admin.startswith("127.0.0.1:")
    assert int(make_run.proxy.rpartition(":")[2]) != DEFAULT_PROXY_PORT
    assert int(make_run.admin.rpartition(":")[2]) != DEFAULT_ADMIN_PORT
    with urllib.request.urlopen(f"http://{make_run.admin}/ready", timeout=5) as r:
        assert r.status == 200
    record = json.loads((make_run.dir / PROXY_RECORD).read_text())
    assert (record["namesrv_addr"], record["admin_addr"]) == (make_run.proxy, make_run.admin)
    assert record["pid"] == make_run.proc.pid
    # The commands it prints for the user name the chosen port, not the default.
    assert f"-n {make_run.proxy} or NAMESRV_ADDR={make_run.proxy}" in "\n".join(make_run.lines)


@pytest.mark.integration
def test_run_sends_a_first_message_through_the_proxy(
    rocketmq: DevCluster, make_run: RunningProxy
) -> None:
    shown = {k: make_run.line(k).split(None, 1)[1] for k in ("topic", "broker", "queue", "offset")}
    msg_id = make_run.line("msgId").split()[1]
    body = make_run.line("body").split(None, 1)[1]
    broker = shown["broker"].split()[0]
    assert broker in rocketmq.brokers
    assert (
        f"({rocketmq.brokers[broker]}, reached through the proxy at 127.0.0.1:" in shown["broker"]
    )
    # Stored where it says: read it straight from the broker, bypassing the proxy.
    with RemotingClient(rocketmq.brokers[broker]) as c:
        r = c.request(
            RequestCode.PULL_MESSAGE,
            pull_fields(
                "rmqfast_run_it", shown["topic"], int(shown["queue"]), int(shown["offset"]), 1
            ),
        )
    assert r.code == ResponseCode.SUCCESS, r.remark
    [m] = decode_messages(r.body)
    assert (m.msg_id, m.body.decode(), m.tags) == (msg_id, body, "quickstart")
    # Sent and read back through the proxy, not around it.
    stats = _stats(make_run.admin)
    assert stats["send_message_v2"] >= 1 and stats["pull_message"] >= 1, stats


@pytest.mark.integration
def test_produce_and_consume_go_through_the_proxy(
    rocketmq: DevCluster, make_run: RunningProxy
) -> None:
    topic = f"run_it_{uuid.uuid4().hex[:8]}"
    before = _stats(make_run.admin)
    # No -n and no --dir: the proxy is found through what `run` recorded.
    prod = _cli(make_run.env, "produce", "--topic", topic, "--body", "hi", "--count", "3")
    assert prod.returncode == 0, prod.stdout + prod.stderr
    assert f"produce: name server {make_run.proxy} (the rmqfast proxy of `make run`" in prod.stderr
    assert f"created topic {topic} on broker-a, broker-b" in prod.stderr
    sent = [_fields(ln) for ln in prod.stdout.splitlines()]
    assert len(sent) == 3 and all(s["topic"] == topic for s in sent), prod.stdout
    assert {s["broker"] for s in sent} <= set(rocketmq.brokers)

    cons = _cli(make_run.env, "consume", "--topic", topic, "--count", "3", "--group", topic)
    assert cons.returncode == 0, cons.stdout + cons.stderr
    assert f"consume: name server {make_run.proxy}" in cons.stderr
    got = [_fields(ln) for ln in cons.stdout.splitlines()]
    assert {g["msgId"] for g in got} == {s["msgId"] for s in sent}
    assert sorted(json.loads(g["body"]) for g in got) == ["hi #1", "hi #2", "hi #3"]
    for g in got:
        [s] = [s for s in sent if s["msgId"] == g["msgId"]]
        assert (g["broker"], g["queue"], g["offset"]) == (s["broker"], s["queue"], s["offset"])

    # The group's offsets were committed: nothing new for it, and exit 1 saying so.
    again = _cli(make_run.env, "consume", "--topic", topic, "--group", topic, "--timeout", "1")
    assert again.returncode == 1, again.stdout + again.stderr
    assert again.stdout == ""
    assert "--from-beginning" in again.stderr
    reread = _cli(make_run.env, "consume", "--topic", topic, "--group", topic, "--from-beginning")
    assert reread.returncode == 0, reread.stderr
    assert len(reread.stdout.splitlines()) == 3

    after = _stats(make_run.admin)
    assert after["send_message_v2"] - before["send_message_v2"] >= 3
    assert after["pull_message"] - before["pull_message"] >= 3

    # -n is the explicit way around the proxy, and it says so.
    direct = _cli(
        make_run.env, "produce", "--topic", topic, "-n", rocketmq.namesrv_addr, "--body", "x"
    )
    assert direct.returncode == 0, direct.stderr
    assert f"name server {rocketmq.namesrv_addr} (given with -n)" in direct.stderr
    assert _stats(make_run.admin)["send_message_v2"] == after["send_message_v2"]


@pytest.mark.integration
def test_mqadmin_defaults_to_the_proxy(rocketmq: DevCluster, make_run: RunningProxy) -> None:
    proc = _cli(make_run.env, "mqadmin", "clusterList", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"mqadmin: name server {make_run.proxy} (the rmqfast proxy of `make run`" in proc.stderr
    # Through the proxy, the brokers' addresses are the proxy's per-broker ports.
    assert "broker-a" in proc.stdout and "broker-b" in proc.stdout
    for real in rocketmq.brokers.values():
        assert real not in proc.stdout
    assert "127.0.0.1:" in proc.stdout


@pytest.mark.integration
def test_second_run_refuses_while_one_serves(make_run: RunningProxy) -> None:
    proc = _cli(make_run.env, "run", "--dir", str(make_run.dir), timeout=60)
    assert proc.returncode == 2
    assert f"a `make run` proxy is already running for {make_run.dir}" in proc.stderr
    assert f"pid {make_run.proc.pid}" in proc.stderr


# -- no cluster needed ------------------------------------------------------------------------


def test_explicit_port_that_is_taken_is_an_error(tmp_path: Path) -> None:
    port = _free_port()
    holder = _hold(port)
    assert holder is not None
    try:
        t0 = time.monotonic()
        proc = _cli(_env(tmp_path), "run", "--dir", str(tmp_path / "dc"), "--proxy-port", str(port))
    finally:
        holder.close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--proxy-port {port}: 127.0.0.1:{port} is already in use" in proc.stderr
    # It fails before starting any server for the cluster.
    assert not (tmp_path / "dc" / "devcluster.json").exists()
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("command", ["produce", "consume"])
def test_no_proxy_is_an_error_not_a_bypass(command: str, tmp_path: Path) -> None:
    env = _env(tmp_path)
    # Nothing recorded at all (and no ./.devcluster in the working directory).
    proc = _cli(env, command, "--topic", "T", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: no rmqfast proxy is running: `make run` starts")
    assert "-n HOST:PORT" in proc.stderr

    # A cluster dir whose `make run` proxy has exited: its record is stale.
    dc = tmp_path / "dc"
    dc.mkdir()
    (dc / "devcluster.json").write_text(json.dumps({"namesrv_addr": "127.0.0.1:9"}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (dc / PROXY_RECORD).write_text(
        json.dumps({"namesrv_addr": "127.0.0.1:9", "admin_addr": None, "pid": gone.pid})
    )
    proc = _cli(env, command, "--topic", "T", "--dir", str(dc))
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr
    assert err.startswith(f"error: no rmqfast proxy is running for the dev cluster in {dc}")
    assert f"(pid {gone.pid}, 127.0.0.1:9) has exited" in err
    assert "start it with `make run`" in err
    assert "-n 127.0.0.1:9 talks to the cluster's own name server, bypassing the proxy" in err
