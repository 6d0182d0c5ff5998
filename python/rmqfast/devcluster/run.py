"""`make run` (`python -m rmqfast.devcluster run`): cluster, proxy, and a first message.

Starts the dev cluster in DIR (or reuses it if it already runs), starts the rmqfast proxy in
this process on 127.0.0.1:19876 with its admin endpoint on 127.0.0.1:9901 (free ports instead
when those are taken, unless a port was asked for explicitly), waits for the admin `/ready`,
sends one message through the proxy and reads it back, prints where it went and commands to
try, then serves until SIGINT/SIGTERM. The cluster keeps running afterwards (`make down`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from rmqfast.devcluster.cluster import STATE_FILE, DevCluster
from rmqfast.devcluster.errors import DevClusterError
from rmqfast.devcluster.messages import (
    produce,
    read_message,
    remove_proxy_record,
    running_proxy,
    write_proxy_record,
)
from rmqfast.devcluster.processes import _pick_port, _set_current_dir
from rmqfast.devcluster.remoting import LOOPBACK
from rmqfast.proxy import Cluster, Proxy, ProxyConfig

__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_PROXY_PORT",
    "FIRST_TOPIC",
    "choose_port",
    "ensure_cluster",
    "run",
]

DEFAULT_PROXY_PORT = 19876
DEFAULT_ADMIN_PORT = 9901
FIRST_TOPIC = "rmqfast-quickstart"

_START_ATTEMPTS = 3


def _can_bind(port: int, host: str = LOOPBACK) -> bool:
    # SO_REUSEADDR as the proxy's own listeners set it: a port whose old connections linger in
    # TIME_WAIT (the last `make run` just stopped) is free for them, a listening one is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(explicit: int | None, default: int, what: str, flag: str) -> tuple[int, bool]:
    """(port, whether it is a fallback): `explicit` must be free; `default` may be replaced."""
    if explicit is not None:
        if not 1 <= explicit <= 65535:
            raise DevClusterError(f"{flag} {explicit}: expected a port in 1..65535")
        if not _can_bind(explicit):
            raise DevClusterError(
                f"{flag} {explicit}: {LOOPBACK}:{explicit} is already in use, so the {what} "
                f"cannot listen there; choose another port, or leave it out to get a free one"
            )
        return explicit, False
    if _can_bind(default):
        return default, False
    return _pick_port(), True


def ensure_cluster(
    dir: Path,
    *,
    namesrvs: int,
    brokers: int,
    timeout: float,
    say: Callable[[str], None],
) -> tuple[DevCluster, bool]:
    """(cluster, reused): the cluster running in `dir`, or a new one started there (detached)."""
    if (dir / STATE_FILE).exists():
        try:
            old: DevCluster | None = DevCluster.from_state(dir)
        except DevClusterError:
            old = None
        if old is not None:
            rows = old.status()
            if rows and all(r["alive"] for r in rows):
                return old, True
            dead = [r["name"] for r in rows if not r["alive"]]
            if len(dead) < len(rows):
                say(
                    f"the dev cluster in {dir} is only partly up ({', '.join(dead)} dead): "
                    "restarting it"
                )
                old.stop()
    cluster = DevCluster(
        namesrvs=namesrvs, brokers=brokers, dir=dir, detach=True, quiet=False, timeout=timeout
    )
    cluster.start()
    return cluster, False


def _wait_ready(admin_addr: str, timeout: float) -> None:
    url = f"http://{admin_addr}/ready"
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise DevClusterError(f"{url} not ready after {timeout:g} s (last answer: {last})")
        time.sleep(0.05)


_LOOPBACK_OPERATOR = {
    "name": "make run: loopback may administer",
    "action": "allow",
    "clients": ["127.0.0.1", "::1"],
}


def _start_proxy(
    upstream: list[str],
    proxy_port: tuple[int, bool],
    admin_port: tuple[int, bool],
    explicit: tuple[bool, bool],
    log_level: str,
) -> tuple[Proxy, tuple[int, bool], tuple[int, bool]]:
    """Start the proxy; a port taken since it was chosen is replaced unless it was explicit."""
    for attempt in range(_START_ATTEMPTS):
        cfg = ProxyConfig(
            clusters=[Cluster("default", list(upstream))],
            listen=f"{LOOPBACK}:{proxy_port[0]}",
            admin=f"{LOOPBACK}:{admin_port[0]}",
            log_level=log_level,
            # A developer's own cluster on loopback: the proxy's default policy refuses cluster
            # administration (topic creation included), so loopback clients are let through.
            policy=[_LOOPBACK_OPERATOR],
        )
        proxy = Proxy(cfg)
        try:
            return proxy.start(), proxy_port, admin_port
        except OSError as e:
            repick = [
                i
                for i, (port, _) in enumerate((proxy_port, admin_port))
                if not explicit[i] and not _can_bind(port)
            ]
            if not repick or attempt == _START_ATTEMPTS - 1:
                raise DevClusterError(f"cannot start the rmqfast proxy: {e}") from None
            if 0 in repick:
                proxy_port = (_pick_port(), True)
            if 1 in repick:
                admin_port = (_pick_port(), True)
    raise AssertionError("unreachable")


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        rel = path.relative_to(Path.cwd())
        return str(rel) or "."
    return str(path)


def _python() -> str:
    exe = sys.executable or "python"
    with contextlib.suppress(ValueError):
        rel = Path(exe).relative_to(Path.cwd())
        return str(rel)
    return exe


def _ports_line(
    proxy_addr: str, admin_addr: str, proxy_port: tuple[int, bool], admin_port: tuple[int, bool]
) -> str:
    def part(what: str, addr: str, chosen: tuple[int, bool], default: int) -> str:
        note = f" ({default} is taken, so a free port was chosen)" if chosen[1] else ""
        return f"{what} {addr}{note}"

    return "ports: " + ", ".join(
        [
            part("proxy", proxy_addr, proxy_port, DEFAULT_PROXY_PORT),
            part("admin", admin_addr, admin_port, DEFAULT_ADMIN_PORT),
        ]
    )


def run(
    dir: Path,
    *,
    proxy_port: int | None = None,
    admin_port: int | None = None,
    namesrvs: int = 1,
    brokers: int = 2,
    topic: str = FIRST_TOPIC,
    timeout: float = 180.0,
    log_level: str = "warning",
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Cluster + proxy + first message, then serve until `stop` is set or SIGINT/SIGTERM."""
    t0 = time.monotonic()
    stream = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=stream, flush=True)

    dir = dir.expanduser().resolve()
    dir.mkdir(parents=True, exist_ok=True)
    other = running_proxy(dir)
    if other is not None:
        raise DevClusterError(
            f"a `make run` proxy is already running for {_shown(dir)} (pid {other.pid}, "
            f"name server {other.namesrv_addr}); use it, or stop it (Ctrl-C in its terminal, "
            "or `make down`) first"
        )
    # Ports first: an explicit port that is taken fails before a cluster is started for it.
    pport = choose_port(proxy_port, DEFAULT_PROXY_PORT, "proxy", "PROXY_PORT / --proxy-port")
    aport = choose_port(
        admin_port, DEFAULT_ADMIN_PORT, "admin endpoint", "ADMIN_PORT / --admin-port"
    )

    cluster, reused = ensure_cluster(
        dir, namesrvs=namesrvs, brokers=brokers, timeout=timeout, say=say
    )
    _set_current_dir(cluster.dir)
    what = "reusing the dev cluster" if reused else "dev cluster up"
    brokers_text = ", ".join(f"{n} {a}" for n, a in cluster.brokers.items())
    say(
        f"{what} in {_shown(cluster.dir)} ({time.monotonic() - t0:.1f} s): name server "
        f"{cluster.namesrv_addr}, brokers {brokers_text}"
    )

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    proxy, pport, aport = _start_proxy(
        cluster.namesrv_addrs,
        pport,
        aport,
        (proxy_port is not None, admin_port is not None),
        log_level,
    )
    stop = stop or threading.Event()
    signum: int | None = None
    try:
        ns = proxy.namesrv_addr
        admin = proxy.admin_addr or ""
        write_proxy_record(cluster.dir, ns, admin, cluster.namesrv_addr)
        say(_ports_line(ns, admin, pport, aport))
        _wait_ready(admin, 10.0)

        t_send = time.monotonic()
        body = f"hello from make run at {time.strftime('%Y-%m-%d %H:%M:%S')}"
        key = f"first-{uuid.uuid4().hex[:8]}"
        [sent], created = produce(ns, topic, [body.encode()], tags="quickstart", keys=key)
        got = read_message(ns, topic, sent.broker, sent.queue_id, sent.queue_offset)
        if got.msg_id != sent.msg_id or got.message.body != body.encode():
            raise DevClusterError(
                f"read back {topic} {sent.broker} queue {sent.queue_id} offset "
                f"{sent.queue_offset}: expected msgId {sent.msg_id}, got {got.msg_id}"
            )
        real = cluster.brokers.get(sent.broker, "?")
        via = proxy.broker_listeners().get(real, "?")
        py = _python()
        say()
        say("First message, sent through the proxy and read back through it:")
        if created:
            say(f"  (created topic {topic} on {', '.join(created)}, 4 queues each)")
        say(f"  topic   {sent.topic}")
        say(f"  broker  {sent.broker}  ({real}, reached through the proxy at {via})")
        say(f"  queue   {sent.queue_id}")
        say(f"  offset  {sent.queue_offset}")
        say(f"  msgId   {sent.msg_id}")
        say(f"  body    {body}")
        say(
            f"  sent and read back in {time.monotonic() - t_send:.2f} s; "
            f"ready {time.monotonic() - t0:.1f} s after start"
        )
        say()
        say("Try it from another terminal (these go through the proxy):")
        say(f"  {py} -m rmqfast.devcluster produce --topic {topic} --body 'hello'")
        say(f"  {py} -m rmqfast.devcluster consume --topic {topic}")
        say(f"  {py} -m rmqfast.devcluster mqadmin topicRoute -t {topic}")
        say(f"Your own producers and consumers: give them {ns} as the name server")
        say(f"  (-n {ns} or NAMESRV_ADDR={ns}); from Python:")
        say(
            f"  {py} -c 'from rmqfast.producer import Producer; "
            f'print(Producer(["{ns}"]).send("{topic}", b"hi").msg_id)\''
        )
        say(f"Metrics: http://{admin}/metrics   Stats: http://{admin}/stats")
        say("Ctrl-C stops the proxy; the cluster keeps running until `make down`.")
        signum = _serve(stop)
        return 0
    finally:
        proxy.stop(proxy.config.drain_timeout_ms / 1000.0)
        remove_proxy_record(cluster.dir)
        if signum == signal.SIGTERM:
            # `make down` sends it, and stops the cluster next.
            say("proxy stopped (SIGTERM)")
        else:
            say(
                f"proxy stopped; the dev cluster in {_shown(cluster.dir)} is still up (`make down`)"
            )


def _serve(stop: threading.Event) -> int | None:
    """Wait for `stop` or SIGINT/SIGTERM; the signal that ended it, if one did."""
    if threading.current_thread() is not threading.main_thread():
        stop.wait()
        return None
    got: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("rmqfast.proxy").info("%s: draining", signal.Signals(signum).name)
        got.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return got[0] if got else None


def _pid_is_run(pid: int) -> bool:
    """Whether pid is a `python -m rmqfast.devcluster run` process (safe to signal)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"rmqfast.devcluster" in argv and b"run" in argv


def stop_run_proxy(dir: Path, timeout: float = 15.0) -> int | None:
    """SIGTERM the `run` process serving the proxy recorded in `dir`; its pid, or None."""
    rec = running_proxy(dir)
    if rec is None or rec.pid == os.getpid() or not _pid_is_run(rec.pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_is_run(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return rec.pid
