"""rmqfast's logger against the official RocketMQ 5.x Python client: entries/s and CPU per entry.

    python bench/client_bench.py [--official-python PATH] [--rounds 5] [--entries 200000]
                                 [--official-entries 8000] [--in-flight 256] [--max-seconds 30]
                                 [--no-via-proxy] [--no-warmup] [--write] [--json PATH]

`make bench-clients` installs rocketmq-python-client 5.1.2 into a venv of its own
(target/bench-official, so the test venv never sees it) and runs this script with that venv's
interpreter as --official-python; `make bench` runs it too.

One DevCluster on loopback: 1 name server, 1 broker and RocketMQ 5.3.3's own Proxy, whose gRPC
port is the only way in for the official 5.x client. Every run is a subprocess of its own, so
that its CPU time is its client's alone, and sends the same 1 KiB JSON bodies (pre-encoded
bytes, identical for every client) to a fresh topic with 8 queues:

- rmqfast: `RocketMQLogger([name server], topic)` with the logger's defaults (entry message
  shape, batch_max_size 1000, send_concurrency 2, max_pending_entries 8192); `log(body)` N
  times, then `flush()`. log() never blocks and drops when its queue is full, so the loop waits
  (short sleeps) while more than 6000 entries are pending: back-pressure instead of drops.
- rmqfast via RocketMQ Proxy (unless --no-via-proxy): the same, the Proxy's remoting port given
  as the name server, so the messages take the official client's path (client -> Proxy ->
  broker). A control row: how much of the difference is the extra hop.
- official send: `rocketmq.v5.producer.Producer.send(Message)`, one call after the other (each
  waits for its SendReceipt), N times.
- official send_async: `Producer.send_async(Message)`, which returns a
  concurrent.futures.Future; at most --in-flight futures outstanding (a semaphore released by
  each future's done-callback), N times, then wait for the last.

Before the timed part each worker starts its client and sends one message (route lookup and
connections are not measured), then waits for the go; the parent samples the broker's and the
Proxy's CPU time (/proc) then and after. Timed: from the first send/log to the last receipt /
the end of flush(); CPU: getrusage(RUSAGE_SELF) user+system over the same span (every thread of
the process: the Rust producer's, gRPC's, the client's own). Delivery is checked twice: by the
client (logger stats: all sent, none dropped; official: a receipt for every message, no
exception) and by the broker (the topic's queues' max offsets add up to N + 1). Kinds take turns
in an order rotated every round; medians over rounds. An untimed first pass (one run of every kind)
warms the broker's and the Proxy's JVMs (--no-warmup skips it).

--write puts the markdown table in bench/RESULTS.md under "## Against the official Python client".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
START = "<!-- client-bench:start -->"
END = "<!-- client-bench:end -->"
SECTION = "## Against the official Python client"
OFFICIAL_PACKAGE = "rocketmq-python-client"
DEFAULT_OFFICIAL_PYTHON = ROOT / "target" / "bench-official" / "bin" / "python"

QUEUES = 8
BODY_SIZE = 1024
POOL = 4096  # distinct bodies, cycled
BLOCK = 512  # rmqfast: entries logged between two looks at the queue and the clock
HIGH_WATER = 6000  # rmqfast: wait while more are pending (the default queue holds 8192)
WARMUP = 1.0  # the untimed first pass sends this share of a run's entries
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


def log(msg: str) -> None:
    print(f"[client_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bodies() -> list[bytes]:
    """POOL distinct 1 KiB compact-JSON log entries (the logger bench's shape)."""
    out = []
    for i in range(POOL):
        e: dict[str, Any] = {
            "time": "2026-11-21T12:00:00+00:00",
            "level": "INFO",
            "logger": "app.orders",
            "request_id": f"{i:032x}",
            "status": 200,
            "latency_ms": 12.5,
            "message": "",
        }
        e["message"] = "m" * (BODY_SIZE - len(json.dumps(e, separators=(",", ":"))))
        b = json.dumps(e, separators=(",", ":")).encode()
        assert len(b) == BODY_SIZE, len(b)
        out.append(b)
    return out


# ------------------------------------------------------------------------------------------------
# Workers: one client each, in a process of its own. They print one JSON line when ready, wait
# for a line on stdin, run, print one JSON line with their figures.


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _await_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("client_bench worker: no go from the parent")


def worker_rmqfast(target: str, topic: str, n: int, max_seconds: float) -> None:
    from rmqfast import __version__
    from rmqfast.logger import RocketMQLogger

    pool = bodies()
    blocks = [pool[i : i + BLOCK] for i in range(0, POOL, BLOCK)]
    lg = RocketMQLogger([target], topic, name="client-bench")
    lg.log(pool[0])
    if not lg.flush(60):
        raise SystemExit(f"warm-up message not sent: {lg.stats()}")
    _say({"ready": True, "versions": {"rmqfast": __version__}})
    _await_go()

    put = lg.log
    sleep = time.sleep
    logged = 0
    b = 0
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds
    while logged < n:
        while lg.pending_entries > HIGH_WATER:
            sleep(0.0002)
        block = blocks[b]
        b = (b + 1) % len(blocks)
        if n - logged < BLOCK:
            block = block[: n - logged]
        for body in block:
            put(body)
        logged += len(block)
        if time.perf_counter() >= stop_at:
            break
    flushed = lg.flush(max_seconds + 60)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    st = lg.stats()
    _say(
        {
            "entries": logged,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "client_ok": st["sent"] - 1,
            "client_failed": sum(st["dropped"].values()) + (0 if flushed else 1),
            "errors": [] if flushed else ["flush timed out"],
            "requests": st["batches"],
            "send_p50_ms": st["send_latency_p50_seconds"] * 1000,
        }
    )
    lg.close(30)


def worker_official(target: str, topic: str, n: int, max_seconds: float, in_flight: int) -> None:
    """in_flight 0: Producer.send, one after the other; else Producer.send_async, bounded."""
    from importlib.metadata import version

    from rocketmq.v5.client import ClientConfiguration, Credentials
    from rocketmq.v5.model import Message
    from rocketmq.v5.producer import Producer

    pool = bodies()
    producer: Any = Producer(ClientConfiguration(target, Credentials()), (topic,))
    producer.startup()

    def message(body: bytes) -> Any:
        m: Any = Message()
        m.topic = topic
        m.body = body
        return m

    producer.send(message(pool[0]))
    versions = {p: version(p) for p in (OFFICIAL_PACKAGE, "grpcio", "protobuf")}
    _say({"ready": True, "versions": versions})
    _await_go()

    ok = failed = 0
    errors: list[str] = []
    lock = threading.Lock()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds
    issued = 0
    if in_flight == 0:
        send = producer.send
        while issued < n:
            try:
                send(message(pool[issued % POOL]))
                ok += 1
            except Exception as e:
                failed += 1
                if len(errors) < 5:
                    errors.append(f"{type(e).__name__}: {e}")
            issued += 1
            if time.perf_counter() >= stop_at:
                break
    else:
        slots = threading.Semaphore(in_flight)

        def done(f: Any) -> None:
            nonlocal ok, failed
            exc = f.exception()
            with lock:
                if exc is None:
                    ok += 1
                else:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
            slots.release()

        send_async = producer.send_async
        while issued < n:
            slots.acquire()
            try:
                send_async(message(pool[issued % POOL])).add_done_callback(done)
            except Exception as e:
                slots.release()
                with lock:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}")
            issued += 1
            if time.perf_counter() >= stop_at:
                break
        deadline = time.monotonic() + 60
        for _ in range(in_flight):
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                with lock:
                    errors.append("futures still outstanding after 60 s")
                break
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    with lock:
        result = {
            "entries": issued,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "client_ok": ok,
            "client_failed": failed,
            "errors": list(errors),
            "requests": issued,
        }
    _say(result)
    producer.shutdown()


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--entries", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, required=True)
    ap.add_argument("--in-flight", type=int, default=0)
    a = ap.parse_args(argv)
    if a.worker == "rmqfast":
        worker_rmqfast(a.target, a.topic, a.entries, a.max_seconds)
    elif a.worker == "official":
        worker_official(a.target, a.topic, a.entries, a.max_seconds, a.in_flight)
    else:
        raise SystemExit(f"unknown worker {a.worker!r}")


# ------------------------------------------------------------------------------------------------
# The parent: cluster, topics, workers, delivery checks, table.


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    api: str
    path: str
    worker: str  # "rmqfast" or "official"
    in_flight: int = 0


def kinds(via_proxy: bool, in_flight: int) -> list[Kind]:
    out = [
        Kind(
            "rmqfast",
            "rmqfast",
            f"`RocketMQLogger.log()` {TIMES}N, `flush()`",
            "remoting → broker",
            "rmqfast",
        )
    ]
    if via_proxy:
        out.append(
            Kind(
                "rmqfast-proxy",
                "rmqfast via RocketMQ Proxy",
                f"`RocketMQLogger.log()` {TIMES}N, `flush()`",
                "remoting → Proxy → broker",
                "rmqfast",
            )
        )
    out += [
        Kind(
            "official-sync",
            "official client, send",
            f"`Producer.send(Message)` {TIMES}N",
            "gRPC → Proxy → broker",
            "official",
        ),
        Kind(
            "official-async",
            "official client, send_async",
            f"`Producer.send_async(Message)` {TIMES}N, ≤ {in_flight} in flight",
            "gRPC → Proxy → broker",
            "official",
            in_flight,
        ),
    ]
    return out


class Worker:
    """A worker subprocess and its line protocol, every read under a deadline."""

    def __init__(self, cmd: list[str], env: dict[str, str], stderr: IO[bytes]) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        self._buf = b""

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the worker within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    rc = self.proc.wait(10)
                    raise RuntimeError(f"the worker exited ({rc}) before answering")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        out: dict[str, Any] = json.loads(line)
        return out

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("the worker did not exit in time; killed") from None
        if rc != 0:
            raise RuntimeError(f"the worker exited with {rc}")


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (every thread), in seconds, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="rmqfast-client-bench-"))
        self.official_home = self.work / "official-home"  # the client logs to ~/logs/...
        self.official_home.mkdir()
        self.versions: dict[str, str] = {}
        self.cluster: Any = None
        self.namesrv = ""
        self.broker = ""
        self.pids: dict[str, int] = {}

    # -- cluster and topics ------------------------------------------------------------------

    def start(self) -> None:
        from rmqfast.devcluster import DevCluster

        log("starting a DevCluster (1 name server, 1 broker, RocketMQ Proxy)")
        self.cluster = DevCluster(namesrvs=1, brokers=1, proxy=True).start()
        self.namesrv = self.cluster.namesrv_addr
        (self.broker,) = self.cluster.brokers.values()
        pids = self.cluster.pids()
        self.pids = {
            "broker": pids[next(iter(self.cluster.brokers))],
            "proxy": pids["proxy"],
            "namesrv": pids["namesrv-0"],
        }
        log(
            f"name server {self.namesrv}, broker {self.broker}, Proxy remoting "
            f"{self.cluster.proxy_addr}, gRPC {self.cluster.proxy_grpc_addr}"
        )

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def create_topic(self) -> str:
        from rmqfast.codec import RequestCode
        from rmqfast.devcluster.remoting import call, create_topic_fields

        topic = f"client_bench_{uuid.uuid4().hex[:10]}"
        r = call(
            self.broker,
            RequestCode["UPDATE_AND_CREATE_TOPIC"],
            create_topic_fields(topic, QUEUES),
            timeout=10,
        )
        if r.code != 0:
            raise RuntimeError(f"creating {topic}: {r.code} {r.remark}")
        deadline = time.monotonic() + 60
        route = RequestCode["GET_ROUTEINFO_BY_TOPIC"]
        while call(self.namesrv, route, {"topic": topic}, timeout=10).code != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no route for {topic}")
            time.sleep(0.1)
        return topic

    def stored(self, topic: str) -> int:
        """Messages the broker holds in the topic: the sum of its queues' max offsets."""
        from rmqfast.codec import RequestCode
        from rmqfast.devcluster.remoting import call

        total = 0
        for q in range(QUEUES):
            fields = {"topic": topic, "queueId": str(q)}
            r = call(self.broker, RequestCode["GET_MAX_OFFSET"], fields, timeout=5.0)
            if r.code != 0:
                raise RuntimeError(f"GET_MAX_OFFSET {topic}/{q}: {r.code} {r.remark}")
            total += int(r.ext_fields["offset"])
        return total

    def wait_stored(self, topic: str, want: int, timeout: float = 30) -> int:
        """The topic's message count once it reaches `want` (the broker's consume queues are
        built asynchronously), or what it is at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.stored(topic)
            if got >= want or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    # -- one run -----------------------------------------------------------------------------

    def run(self, kind: Kind, n: int) -> dict[str, Any]:
        args = self.args
        topic = self.create_topic()
        if kind.worker == "rmqfast":
            python = sys.executable
            target = self.namesrv if kind.key == "rmqfast" else self.cluster.proxy_addr
            env = dict(os.environ)
        else:
            python = str(args.official_python)
            target = self.cluster.proxy_grpc_addr
            env = {**os.environ, "HOME": str(self.official_home)}
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "--worker",
            kind.worker,
            "--target",
            target,
            "--topic",
            topic,
            "--entries",
            str(n),
            "--max-seconds",
            str(args.max_seconds),
            "--in-flight",
            str(kind.in_flight),
        ]
        err_path = self.work / f"{kind.key}.stderr"
        with err_path.open("ab") as err:
            w = Worker(cmd, env, err)
            try:
                ready = w.read(120)
                self.versions.update(ready.get("versions", {}))
                srv0 = {k: proc_cpu(pid) for k, pid in self.pids.items()}
                busy0, wall0 = machine_busy(), time.monotonic()
                w.go()
                res = w.read(args.max_seconds + 180)
                srv1 = {k: proc_cpu(pid) for k, pid in self.pids.items()}
                busy1, wall1 = machine_busy(), time.monotonic()
                w.finish(60)
            except BaseException:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                tail = err_path.read_text(errors="replace")[-3000:]
                log(f"{kind.key} worker failed; its stderr ends with:\n{tail}")
                raise
        want = res["client_ok"] + 1  # and the warm-up message
        stored = self.wait_stored(topic, want)
        delivered = stored - 1
        if res["client_failed"] or res["errors"] or res["client_ok"] != res["entries"]:
            raise RuntimeError(f"{kind.key}: the client reports failures: {res}")
        if stored != want:
            raise RuntimeError(
                f"{kind.key}: broker holds {stored} messages in {topic}, want {want}"
            )
        e = delivered
        row = {
            "kind": kind.key,
            "entries": e,
            "seconds": res["seconds"],
            "rate": e / res["seconds"],
            "cpu_us": res["cpu_seconds"] / e * 1e6,
            "broker_cpu_us": (srv1["broker"] - srv0["broker"]) / e * 1e6,
            "proxy_cpu_us": (srv1["proxy"] - srv0["proxy"]) / e * 1e6,
            "requests": res["requests"],
            # What else kept the cores busy meanwhile (other jobs on the machine), in cores.
            "other_cores": max(
                0.0,
                (busy1 - busy0 - res["cpu_seconds"] - sum(srv1[k] - srv0[k] for k in srv0))
                / (wall1 - wall0),
            ),
        }
        log(
            f"{kind.label}: {e:,} entries in {res['seconds']:.2f} s = {row['rate']:,.0f}/s, "
            f"client CPU {row['cpu_us']:.1f} µs/entry, broker {row['broker_cpu_us']:.1f}, "
            f"Proxy {row['proxy_cpu_us']:.1f} µs/entry; {res['requests']:,} send requests; "
            f"broker holds {stored:,}; other processes {row['other_cores']:.2f} cores"
        )
        return row

    def client_log_errors(self) -> int:
        path = self.official_home / "logs" / "rocketmq_python" / "rocketmq_client.log"
        if not path.exists():
            return 0
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if "[ERROR]" in ln]
        for ln in lines[:5]:
            log(f"official client log: {ln}")
        return len(lines)


def med(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def summarise(ks: list[Kind], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for k in ks:
        rows = [r for r in runs if r["kind"] == k.key]
        out.append(
            {
                "kind": k.key,
                "label": k.label,
                "api": k.api,
                "path": k.path,
                "rounds": len(rows),
                "entries": int(statistics.median(r["entries"] for r in rows)),
                "rate": med(rows, "rate"),
                "rate_min": min(r["rate"] for r in rows),
                "rate_max": max(r["rate"] for r in rows),
                "cpu_us": med(rows, "cpu_us"),
                "broker_cpu_us": med(rows, "broker_cpu_us"),
                "proxy_cpu_us": med(rows, "proxy_cpu_us"),
                "other_cores": med(rows, "other_cores"),
                "other_cores_max": max(r["other_cores"] for r in rows),
            }
        )
    return out


def table(summary: list[dict[str, Any]], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    base = summary[0]
    lines = [
        f"| client | API | path | entries per run | entries/s: median (min{DASH}max) "
        "| client CPU µs per entry | broker CPU µs per entry | Proxy CPU µs per entry "
        "| rmqfast rate ÷ this | this CPU ÷ rmqfast CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        rate_x = cpu_x = ""
        if s is not base:
            rate_x = f"**{base['rate'] / s['rate']:.1f}{TIMES}**"
            cpu_x = f"**{s['cpu_us'] / base['cpu_us']:.0f}{TIMES}**"
        lines.append(
            f"| {s['label']} | {s['api']} | {s['path']} | {s['entries']:,} "
            f"| **{s['rate']:,.0f}** ({s['rate_min']:,.0f}{DASH}{s['rate_max']:,.0f}) "
            f"| {s['cpu_us']:.1f} | {s['broker_cpu_us']:.1f} | {s['proxy_cpu_us']:.1f} "
            f"| {rate_x} | {cpu_x} |"
        )
    official = [s for s in summary if s["kind"].startswith("official")]
    best = max(official, key=lambda s: s["rate"])
    rate_x = base["rate"] / best["rate"]
    cpu_x = best["cpu_us"] / base["cpu_us"]
    met = "met" if rate_x >= 3 and cpu_x >= 3 else "not met"
    lines += [
        "",
        f"- Goal (rmqfast at least 3{TIMES} the official client's send rate at no more than "
        f"1/3 of its CPU per entry), against its fastest row ({best['label']}): "
        f"{rate_x:.1f}{TIMES} the rate at 1/{cpu_x:.0f} of the CPU per entry: **{met}**.",
        "- Other processes' CPU during the timed runs (the machine's busy time less the "
        "client's and the three servers'), median (max) per row, in cores: "
        + "; ".join(
            f"{s['label']} {s['other_cores']:.2f} ({s['other_cores_max']:.2f})" for s in summary
        )
        + ".",
        "",
        f"Command: `{meta['command']}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()} for both clients, "
        f"rmqfast {meta['versions'].get('rmqfast', '?')}, {OFFICIAL_PACKAGE} "
        f"{meta['versions'].get(OFFICIAL_PACKAGE, '?')} (grpcio "
        f"{meta['versions'].get('grpcio', '?')}, protobuf {meta['versions'].get('protobuf', '?')})"
        f", RocketMQ 5.3.3 DevCluster: 1 name server, 1 broker and the Proxy on the same cores; "
        f"{args.rounds} rounds, medians; 1-minute load average {meta['load_before']:.2f} before, "
        f"{meta['load_after']:.2f} after; {meta['client_log_errors']} ERROR lines in the "
        "official client's log).",
    ]
    return "\n".join(lines)


def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    RESULTS.write_text(new)


@contextlib.contextmanager
def bench_cluster(args: argparse.Namespace) -> Iterator[Bench]:
    b = Bench(args)
    try:
        b.start()
        yield b
    finally:
        b.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument(
        "--official-python",
        type=Path,
        default=DEFAULT_OFFICIAL_PYTHON,
        help=f"an interpreter with {OFFICIAL_PACKAGE} installed (default: %(default)s)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--entries", type=int, default=200_000, help="per rmqfast run")
    ap.add_argument("--official-entries", type=int, default=8_000, help="per official run")
    ap.add_argument("--in-flight", type=int, default=256, help="send_async futures outstanding")
    ap.add_argument(
        "--max-seconds", type=float, default=30, help="a run stops sending after this long"
    )
    ap.add_argument("--no-via-proxy", action="store_true", help="skip the rmqfast-via-Proxy row")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed first pass")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args()
    if not Path(args.official_python).exists():
        raise SystemExit(
            f"{args.official_python} not found: `make bench-clients` makes it, or pass "
            f"--official-python with an interpreter that has {OFFICIAL_PACKAGE}"
        )
    load_before = os.getloadavg()[0]
    ks = kinds(not args.no_via_proxy, args.in_flight)

    def count(k: Kind, scale: float = 1.0) -> int:
        n = args.entries if k.worker == "rmqfast" else args.official_entries
        return max(1, int(n * scale))

    runs: list[dict[str, Any]] = []
    with bench_cluster(args) as b:
        if not args.no_warmup:
            log("warm-up pass (not recorded)")
            for k in ks:
                b.run(k, count(k, WARMUP))
        for r in range(args.rounds):
            order = ks[r % len(ks) :] + ks[: r % len(ks)]
            log(f"round {r + 1} of {args.rounds}: {', '.join(k.key for k in order)}")
            for k in order:
                runs.append({"round": r + 1, **b.run(k, count(k))})
        errors = b.client_log_errors()
        versions = dict(b.versions)
    summary = summarise(ks, runs)
    flags = [f"--rounds {args.rounds}", f"--entries {args.entries}"]
    flags += [f"--official-entries {args.official_entries}", f"--in-flight {args.in_flight}"]
    if args.no_via_proxy:
        flags.append("--no-via-proxy")
    meta = {
        "command": f"python bench/client_bench.py {' '.join(flags)}"
        + (" --write" if args.write else ""),
        "versions": versions,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "client_log_errors": errors,
    }
    text = table(summary, args, meta)
    print(text)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2)
        )
    if args.write:
        write_results(text)
        log(f"wrote {RESULTS}")


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        worker_main(sys.argv[1:])
    else:
        main()
