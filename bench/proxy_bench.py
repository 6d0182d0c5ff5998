"""The proxy benchmark: RocketMQ's own benchmark Producer/Consumer, direct, through rmqfast and
through RocketMQ's own Proxy.

    python bench/proxy_bench.py [--rounds 3] [--duration 20] [--sizes 128,1024]
                                [--no-rocketmq-proxy] [--write]

Starts a DevCluster (1 name server, 1 broker and, unless --no-rocketmq-proxy, RocketMQ 5.3.3's
own Proxy in cluster mode) and `python -m rmqfast.proxy` as a subprocess (so its CPU time and RSS
can be read from /proc, like the RocketMQ Proxy JVM's), then runs
org.apache.rocketmq.example.benchmark.Producer (from rocketmq-example 5.5.0, resolved by
bench/pom.xml into its own lib directory, never mixed with the 5.3.3 server jars) for a fixed time
against the broker directly ("direct"), through rmqfast ("proxy") and through the RocketMQ Proxy's
remoting port ("rmqproxy"), in an order rotated every round, for every message size and round.
A consumer pass (benchmark Consumer draining the backlog, fresh group per run) follows.

Each run's figures are the benchmark's own last report line: TPS and mean RT over its last ~9 s
window (the first ~11 s are warm-up), max RT since start. Medians over rounds are printed as a
markdown table; --write puts it in bench/RESULTS.md under "## Proxy".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The installed rmqfast (make build), not python/ (which has no compiled core).
from rmqfast.devcluster import (
    CLUSTER_NAME,
    JDK17_FLAGS,
    LOGBACK_XML,
    PROXY_HEAP,
    DevCluster,
    cache_root,
    find_java,
    find_mvn,
)
from rmqfast.devcluster.remoting import call

BENCH_POM = Path(__file__).resolve().parent / "pom.xml"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START = "<!-- proxy-bench:start -->"
END = "<!-- proxy-bench:end -->"
PRODUCER_MAIN = "org.apache.rocketmq.example.benchmark.Producer"
CONSUMER_MAIN = "org.apache.rocketmq.example.benchmark.Consumer"
BENCH_JVM = ("-Xms256m", "-Xmx256m", "-XX:+UseG1GC")
CLK_TCK = os.sysconf("SC_CLK_TCK")
QUEUES = 8  # read and write queues of every bench topic
# Consumer report lines skipped after consumption starts: the tool's TPS window (~10 s).
CONSUMER_SETTLE = 10
GET_MAX_OFFSET = 30
QUERY_CONSUMER_OFFSET = 14
QUERY_NOT_FOUND = 22
MODE_NAMES = {"direct": "direct", "proxy": "rmqfast proxy", "rmqproxy": "RocketMQ Proxy"}
# --features: more rmqfast proxies, each its own process with these flags over the defaults, run
# in the same rounds as "proxy" (the defaults: per-topic metrics on, access log off), so each
# feature's cost is a ratio measured in the same run. "{work}" is the run's working directory.
FEATURES: dict[str, tuple[str, list[str]]] = {
    "metrics-off": ("per-topic metrics off", ["--metrics-max-topics", "0"]),
    "access-log": (
        "access log on (a file, every request, rotated at 64 MiB)",
        [
            "--access-log",
            "file",
            "--access-log-file",
            "{work}/access.log",
            "--access-log-sample",
            "1",
            "--access-log-max-bytes",
            str(64 << 20),
            "--access-log-backups",
            "2",
        ],
    ),
}

SEND_LINE = re.compile(
    r"Send TPS: (?P<tps>\d+) \| Max RT\(ms\): (?P<max>\d+) \| Average RT\(ms\):\s*(?P<avg>[\d.]+)"
    r" \| Send Failed: (?P<failed>\d+) \| Response Failed: (?P<rfailed>\d+)"
)
CONSUME_LINE = re.compile(
    r"Consume TPS: (?P<tps>\d+) \| AVG\(B2C\) RT\(ms\):\s*(?P<b2c>[\d.]+) \| "
    r"AVG\(S2C\) RT\(ms\):\s*(?P<s2c>[\d.]+) \| MAX\(B2C\) RT\(ms\): (?P<b2cmax>\d+) \| "
    r"MAX\(S2C\) RT\(ms\): (?P<s2cmax>\d+)"
)


def log(msg: str) -> None:
    print(f"[proxy_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# jars


def bench_lib() -> Path:
    """rocketmq-example and its own client, fetched by bench/pom.xml into a separate directory."""
    base = cache_root() / "bench-lib"
    marker = base / ".complete"
    digest = hashlib.sha256(BENCH_POM.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text().strip() == digest:
        return base
    log(f"fetching rocketmq-example with Maven into {base}")
    partial = base.with_name(f"bench-lib.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        find_mvn(),
        "-B",
        "-q",
        "-f",
        str(BENCH_POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(partial.glob("rocketmq-example-*.jar")):
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"mvn failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    shutil.rmtree(base, ignore_errors=True)
    partial.rename(base)
    marker.write_text(digest + "\n")
    return base


# ------------------------------------------------------------------------------------------------
# the proxies under test


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; after the ")" split they are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0])
    return vals["VmRSS"], vals["VmHWM"]


class ProxyProcess:
    """`python -m rmqfast.proxy` as a child process; CPU and memory read from /proc."""

    def __init__(self, namesrv: str, extra: Sequence[str] = ()) -> None:
        self.args = [
            sys.executable,
            "-m",
            "rmqfast.proxy",
            "--namesrv",
            namesrv,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--log-level",
            "warning",
            *extra,
        ]
        env = dict(os.environ)
        # the installed rmqfast (make build), not the source tree, which has no _core
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.namesrv_addr = ""
        self.admin = ""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (self.namesrv_addr and self.admin):
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"the proxy exited ({self.proc.wait()})")
            if line.startswith("rmqfast proxy: namesrv "):
                self.namesrv_addr = line.split()[-1]
            elif line.startswith("rmqfast proxy: admin "):
                self.admin = line.split()[-1].rsplit("/", 1)[0]
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "WARNING" in line or "ERROR" in line:
                log(f"proxy: {line.rstrip()}")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        return proc_memory_kib(self.proc.pid)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin}/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def requests_of(proxy: ProxyProcess) -> Callable[[], int]:
    """The proxy's relayed-request counter, read from its /stats."""
    return lambda: int(proxy.stats()["request"])


@dataclass
class Route:
    """How a benchmark client reaches the broker: its -n address and the process in between."""

    mode: str  # direct | proxy (rmqfast) | rmqproxy (RocketMQ's own Proxy)
    namesrv: str
    pid: int | None = None  # the proxy process, None for direct
    # The proxy's own relayed-request counter; the RocketMQ Proxy has none (see Run.messages).
    requests: Callable[[], int] | None = None


# ------------------------------------------------------------------------------------------------
# benchmark runs


@dataclass
class Run:
    kind: str  # producer | consumer
    mode: str  # direct | proxy | rmqproxy
    size: int
    tps: float
    avg_rt: float
    max_rt: float
    failed: int = 0
    proxy_cpu_s: float | None = None
    proxy_requests: int | None = None
    proxy_rss_kib: int | None = None
    # Messages the broker stored (producer) or the run's group committed (consumer) during the run.
    messages: int | None = None
    # proxy_requests derived from `messages` rather than counted by the proxy (RocketMQ Proxy).
    requests_estimated: bool = False
    lines: list[str] = field(default_factory=list)


def java_cmd(lib: Path, work: Path, main: str, args: Sequence[str], tag: str) -> list[str]:
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    return [
        find_java(),
        *BENCH_JVM,
        *JDK17_FLAGS,
        f"-Duser.home={home}",
        f"-Drmq.logback.configurationFile={LOGBACK_XML}",
        f"-Drmqfast.log.file={work / f'{tag}.log'}",
        "-cp",
        os.path.join(str(lib), "*"),
        main,
        *args,
    ]


def run_timed(
    cmd: list[str],
    pattern: re.Pattern[str],
    reports: int,
    timeout: float,
    settle: int = 0,
) -> list[str]:
    """Runs a benchmark program until it printed `reports` report lines, then stops it.

    With `settle`, report lines count only from the `settle`-th after the first one whose `tps`
    is above 0: the tools' TPS is an average over their last ~10 one-second snapshots, so a
    window that includes a slow start (a push consumer whose first rebalance found no queues
    waits 20 s for the next) would be averaged with seconds of nothing.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    got: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        since_start: int | None = None if settle else settle
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = pattern.search(line)
            if m is None:
                continue
            if since_start is None:
                if float(m["tps"]) == 0:
                    continue
                since_start = 0
            since_start += 1
            if since_start > settle:
                got.append(line.rstrip())
                if len(got) >= reports:
                    done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if len(got) < reports:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"{cmd[-1]}: {len(got)} of {reports} reports:\n{tail}")
    return got


def _broker_offset(broker: str, code: int, fields: dict[str, str]) -> int:
    r = call(broker, code, fields, timeout=5.0)
    if code == QUERY_CONSUMER_OFFSET and r.code == QUERY_NOT_FOUND:
        return 0
    if r.code != 0:
        raise RuntimeError(f"request {code} to {broker}: {r.code} {r.remark}")
    return int(r.ext_fields["offset"])


def stored_messages(broker: str, topic: str) -> int:
    """Messages the broker holds in a topic: the sum of its queues' max offsets."""
    return sum(
        _broker_offset(broker, GET_MAX_OFFSET, {"topic": topic, "queueId": str(q)})
        for q in range(QUEUES)
    )


def committed_messages(broker: str, topic: str, group: str) -> int:
    """Messages a (fresh) consumer group has committed: the sum of its queues' offsets."""
    return sum(
        _broker_offset(
            broker,
            QUERY_CONSUMER_OFFSET,
            {"consumerGroup": group, "topic": topic, "queueId": str(q)},
        )
        for q in range(QUEUES)
    )


@contextmanager
def measured(route: Route, count: Callable[[], int]) -> Iterator[dict[str, Any]]:
    """CPU, relayed requests and RSS of the route's proxy, and `count()`'s growth, over a run."""
    out: dict[str, Any] = {}
    msg0 = count()
    cpu0 = proc_cpu_seconds(route.pid) if route.pid else 0.0
    req0 = route.requests() if route.requests else 0
    yield out
    out["messages"] = count() - msg0
    if route.pid:
        out["cpu"] = proc_cpu_seconds(route.pid) - cpu0
        out["rss"] = proc_memory_kib(route.pid)[0]
    if route.requests:
        out["requests"] = route.requests() - req0


def producer_run(
    lib: Path,
    work: Path,
    broker: str,
    route: Route,
    topic: str,
    size: int,
    args: argparse.Namespace,
) -> Run:
    reports = max(1, args.duration - 9)
    tool_args = ["-n", route.namesrv, "-t", topic, "-w", str(args.threads), "-s", str(size)]
    tool_args += ["-ri", "1000"]
    cmd = java_cmd(lib, work, PRODUCER_MAIN, tool_args, f"producer-{route.mode}-{size}")
    with measured(route, lambda: stored_messages(broker, topic)) as m:
        got = run_timed(cmd, SEND_LINE, reports, args.duration + 60)
    last = SEND_LINE.search(got[-1])
    assert last is not None
    requests = m.get("requests")
    estimated = False
    if requests is None and route.pid:
        # One sync send per message (plus a heartbeat and a route query every 30 s).
        requests, estimated = m["messages"], True
    return Run(
        "producer",
        route.mode,
        size,
        float(last["tps"]),
        float(last["avg"]),
        float(last["max"]),
        int(last["failed"]) + int(last["rfailed"]),
        m.get("cpu"),
        requests,
        m.get("rss"),
        m["messages"],
        estimated,
        got,
    )


def consumer_run(
    lib: Path,
    work: Path,
    broker: str,
    route: Route,
    topic: str,
    size: int,
    args: argparse.Namespace,
) -> Run:
    reports = max(1, args.consumer_duration - 9)
    group = f"bench_cg_{uuid.uuid4().hex[:8]}"
    tool_args = ["-n", route.namesrv, "-t", topic, "-g", group]
    tool_args += ["-w", str(args.consumer_threads), "-ri", "1000"]
    cmd = java_cmd(lib, work, CONSUMER_MAIN, tool_args, f"consumer-{route.mode}-{size}")
    with measured(route, lambda: committed_messages(broker, topic, group)) as m:
        got = run_timed(
            cmd, CONSUME_LINE, reports, args.consumer_duration + 60, settle=CONSUMER_SETTLE
        )
    last = CONSUME_LINE.search(got[-1])
    assert last is not None
    # The RocketMQ Proxy's pulls are estimated later (estimate_consumer_requests).
    return Run(
        "consumer",
        route.mode,
        size,
        float(last["tps"]),
        float(last["s2c"]),
        float(last["s2cmax"]),
        0,
        m.get("cpu"),
        m.get("requests"),
        m.get("rss"),
        m["messages"],
        False,
        got,
    )


def estimate_consumer_requests(runs: list[Run]) -> None:
    """Fill in the RocketMQ Proxy consumer runs' requests, which nothing counts.

    The pulls a run makes follow from the messages it gets (up to 32 per pull) and the client's
    fixed background (offset commits, heartbeats): the same client and backlog through the
    rmqfast proxy, which does count, give the requests per committed message.
    """
    for r in runs:
        if (r.kind, r.mode) != ("consumer", "rmqproxy") or r.proxy_requests is not None:
            continue
        ratios = [
            p.proxy_requests / p.messages
            for p in runs
            if (p.kind, p.mode, p.size) == ("consumer", "proxy", r.size)
            and p.proxy_requests
            and p.messages
        ]
        if ratios and r.messages:
            r.proxy_requests = round(r.messages * median(ratios))
            r.requests_estimated = True


# ------------------------------------------------------------------------------------------------
# report


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _cpu_per_100k(runs: list[Run]) -> float:
    return median(
        [r.proxy_cpu_s / r.proxy_requests * 1e5 for r in runs if r.proxy_cpu_s and r.proxy_requests]
    )


def _rss_mib(runs: list[Run]) -> float:
    return max((r.proxy_rss_kib or 0) for r in runs) / 1024 if runs else float("nan")


def _rt(runs: list[Run]) -> str:
    return f"{median([r.avg_rt for r in runs]):.2f} / {median([r.max_rt for r in runs]):.0f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1%}" if b else "n/a"


def table(
    runs: list[Run],
    args: argparse.Namespace,
    peak_kib: int,
    load: tuple[float, float],
    rmq_peak_kib: int | None = None,
) -> str:
    with_rmq = any(r.mode == "rmqproxy" for r in runs)
    header = (
        "| workload | size | direct msg/s | proxy msg/s | proxy/direct | direct RT mean / max (ms) "
        "| proxy RT mean / max (ms) | proxy CPU s per 100k req | proxy RSS (MiB) |"
    )
    if with_rmq:
        header += (
            " RocketMQ Proxy msg/s | rmqfast/RocketMQ Proxy | RocketMQ Proxy RT mean / max (ms) "
            "| RocketMQ Proxy CPU s per 100k req | RocketMQ Proxy RSS (MiB) |"
        )
    rows = [header, "|---" * (14 if with_rmq else 9) + "|"]
    keys = sorted({(r.kind, r.size) for r in runs}, key=lambda k: (k[0] != "producer", k[1]))
    for kind, size in keys:
        d = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "direct")]
        p = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "proxy")]
        q = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "rmqproxy")]
        dt, pt, qt = (median([r.tps for r in x]) for x in (d, p, q))
        if kind == "producer":
            what, drt, prt, qrt = "send (sync)", _rt(d), _rt(p), _rt(q)
        else:
            # Draining a backlog: the consumer's latencies are the messages' age, not RT.
            what, drt, prt, qrt = "consume (push, backlog)", "n/a", "n/a", "n/a"
        row = (
            f"| {what} | {size} B | {dt:,.0f} | {pt:,.0f} | {_ratio(pt, dt)} | {drt} | {prt} "
            f"| {_cpu_per_100k(p):.2f} | {_rss_mib(p):.1f} |"
        )
        if with_rmq:
            row += (
                f" {qt:,.0f} | {_ratio(pt, qt)} | {qrt} | {_cpu_per_100k(q):.2f} "
                f"| {_rss_mib(q):.1f} |"
            )
        rows.append(row)
    cmd = "python bench/proxy_bench.py " + " ".join(sys.argv[1:])
    notes = [
        "",
        f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"{args.rounds} rounds, medians; {args.duration} s per run, figures from the last ~9 s "
        f"window of each run ({args.consumer_duration} s for the consumer); producer "
        f"`-w {args.threads}`, consumer `-w {args.consumer_threads}`"
        + (f"; proxy flags `{args.proxy_args}`" if args.proxy_args else "")
        + ").",
        "",
        "- Clients: `org.apache.rocketmq.example.benchmark.{Producer,Consumer}` from "
        "rocketmq-example 5.5.0 (bench/pom.xml), servers RocketMQ 5.3.3 (DevCluster: 1 name "
        "server, 1 broker), everything on the same 2 cores, so the proxy's CPU is taken from "
        "the broker and the client.",
        "- direct = client → broker; proxy = client → `python -m rmqfast.proxy` (its own "
        f"process, {proxy_workers(args.proxy_args)} worker threads) → broker"
        + (
            "; RocketMQ Proxy = client → RocketMQ 5.3.3's own Proxy (`rocketmq-proxy`, "
            "ProxyStartup in cluster mode, the client's `-n` is its remoting port, its own JVM "
            f"with `{' '.join(PROXY_HEAP)}`) → broker. Within each round the runs go in turn "
            "through all three, in an order rotated every round."
            if with_rmq
            else ". Runs alternate direct/proxy within each round."
        ),
        "- Mean RT / max RT: the producer's send RT (mean over the window, max since the "
        "start of the run, JIT warm-up included). The consumer drains the backlog the "
        "producer runs left (a fresh group per run starts at offset 0), so its figure is "
        "delivery throughput; its latencies are the messages' age and are not shown. Its "
        f"window starts {CONSUMER_SETTLE} reports after the first message arrived, so a slow "
        "first rebalance (the next comes 20 s later) is not averaged in.",
        "- Proxy CPU: utime+stime of the proxy process during the run (/proc/PID/stat) divided "
        "by the requests it relayed; RSS: VmRSS after the run "
        f"(peak VmHWM {peak_kib / 1024:.1f} MiB)"
        + (
            ". The same for the RocketMQ Proxy's JVM (peak VmHWM "
            f"{(rmq_peak_kib or 0) / 1024:.1f} MiB), which counts no requests: for sends they "
            "are the messages the broker stored during the run (one sync send each), for "
            "consumer pulls the messages the run's group committed times the requests per "
            "committed message that the rmqfast proxy counted for the same client and backlog."
            if with_rmq
            else "."
        ),
        f"- 1-minute load average before the first run: {load[0]:.1f} (above 1 means other "
        "jobs were running and the figures are noisier); at the end: "
        f"{load[1]:.1f} (the benchmark's own JVMs and client threads).",
    ]
    return "\n".join(rows + notes)


def feature_table(runs: list[Run], features: list[str], ends: dict[str, dict[str, Any]]) -> str:
    """Each proxy variant against the default proxy of the same rounds: throughput and CPU.

    `ends` is each variant's /stats at the end, to show the feature did its work.
    """
    rows = [
        "| workload | size | proxy | msg/s | vs default | CPU s per 100k req | vs default |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.kind, r.size) for r in runs}, key=lambda k: (k[0] != "producer", k[1]))
    for kind, size in keys:
        base = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "proxy")]
        bt, bc = median([r.tps for r in base]), _cpu_per_100k(base)
        what = "send (sync)" if kind == "producer" else "consume (push, backlog)"
        rows.append(f"| {what} | {size} B | default | {bt:,.0f} | | {bc:.2f} | |")
        for f in features:
            v = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, f)]
            vt, vc = median([r.tps for r in v]), _cpu_per_100k(v)
            rows.append(
                f"| {what} | {size} B | {FEATURES[f][0]} | {vt:,.0f} | {_ratio(vt, bt)} "
                f"| {vc:.2f} | {_ratio(vc, bc)} |"
            )
    return "\n".join(
        [
            "Feature cost: the default proxy (per-topic metrics on, access log off) against a "
            "proxy process per variant (`--features`), each run in the same rounds and order "
            "rotation as the others.",
            "",
            *rows,
            *(
                [
                    "",
                    f"The access-log proxy wrote {ends['access-log'].get('access_log_lines', 0):,} "
                    f"lines and dropped {ends['access-log'].get('access_log_dropped', 0):,}.",
                ]
                if "access-log" in ends
                else []
            ),
        ]
    )


def proxy_workers(proxy_args: str) -> int:
    """The rmqfast proxy's worker threads as the flags set them (2 by default)."""
    words = proxy_args.replace("=", " ").split()
    for i, w in enumerate(words[:-1]):
        if w == "--worker-threads":
            return int(words[i + 1])
    return 2


def write_results(text: str) -> None:
    block = f"{START}\n{text}\n{END}"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END) :]
    elif "## Proxy" in old:
        i = old.index("## Proxy")
        j = old.find("\n## ", i + 1)
        section = f"## Proxy\n\n{block}\n"
        new = old[:i] + section + ("" if j < 0 else old[j:])
    else:
        new = old.rstrip("\n") + f"\n\n## Proxy\n\n{block}\n"
    RESULTS.write_text(new)


# ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=20, help="seconds per run (>= 10)")
    ap.add_argument("--sizes", default="128,1024")
    ap.add_argument("--threads", type=int, default=64, help="producer -w (the tool's default) [64]")
    ap.add_argument("--consumer-threads", type=int, default=20, help="consumer -w")
    ap.add_argument("--consumer-rounds", type=int, default=2, help="0 skips the consumer pass")
    ap.add_argument(
        "--consumer-duration",
        type=int,
        default=12,
        help="seconds per consumer run; short, so the backlog outlasts it [12]",
    )
    ap.add_argument(
        "--proxy-args",
        default="",
        help="extra flags for python -m rmqfast.proxy, e.g. '--worker-threads 1'",
    )
    ap.add_argument(
        "--rocketmq-proxy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run through RocketMQ's own Proxy (cluster mode, remoting) [on]",
    )
    ap.add_argument(
        "--features",
        default="",
        help="comma-separated proxy variants to run beside the default one, from: "
        + ", ".join(f"{k} ({v[0]})" for k, v in FEATURES.items()),
    )
    ap.add_argument("--warmup", type=int, default=1, help="1: a discarded run per mode first [1]")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = ap.parse_args()
    features = [f for f in args.features.split(",") if f]
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        ap.error(f"--features: unknown {unknown[0]!r} (expected some of {', '.join(FEATURES)})")
    sizes = [int(s) for s in args.sizes.split(",")]
    lib = bench_lib()
    t_start = time.monotonic()
    load_start = os.getloadavg()[0]
    runs: list[Run] = []
    rmq_peak: int | None = None
    with DevCluster(namesrvs=1, brokers=1, proxy=args.rocketmq_proxy) as dc:
        work = dc.dir / "bench"
        work.mkdir(parents=True, exist_ok=True)
        broker = dc.brokers["broker-a"]
        proxy = ProxyProcess(dc.namesrv_addr, args.proxy_args.split())
        variants = {
            f: ProxyProcess(
                dc.namesrv_addr,
                args.proxy_args.split() + [a.format(work=work) for a in FEATURES[f][1]],
            )
            for f in features
        }
        try:
            routes = [
                Route("direct", dc.namesrv_addr),
                Route(
                    "proxy",
                    proxy.namesrv_addr,
                    proxy.proc.pid,
                    requests_of(proxy),
                ),
            ]
            for f, v in variants.items():
                routes.append(Route(f, v.namesrv_addr, v.proc.pid, requests_of(v)))
            if args.rocketmq_proxy:
                assert dc.proxy_addr is not None
                routes.append(Route("rmqproxy", dc.proxy_addr, dc.pids()["proxy"]))

            def order(rnd: int) -> list[Route]:
                k = rnd % len(routes)
                return routes[k:] + routes[:k]

            topics = {s: f"bench_{s}_{uuid.uuid4().hex[:6]}" for s in sizes}
            for t in topics.values():
                dc.mqadmin(
                    [
                        "updateTopic",
                        "-n",
                        dc.namesrv_addr,
                        "-c",
                        CLUSTER_NAME,
                        "-t",
                        t,
                        "-r",
                        str(QUEUES),
                        "-w",
                        str(QUEUES),
                    ],
                    check=True,
                )
            if args.warmup:
                # Discarded: the broker's (and the RocketMQ Proxy's) JIT and the page cache warm
                # up on the first runs.
                for route in routes:
                    w = producer_run(lib, work, broker, route, topics[sizes[0]], sizes[0], args)
                    log(f"warm-up {route.mode}: {w.tps:.0f} msg/s (discarded)")
            for rnd in range(args.rounds):
                for size in sizes:
                    for route in order(rnd):
                        r = producer_run(lib, work, broker, route, topics[size], size, args)
                        runs.append(r)
                        log(
                            f"round {rnd + 1} producer {size} B {r.mode}: {r.tps:.0f} msg/s, "
                            f"RT {r.avg_rt:.2f}/{r.max_rt:.0f} ms, {r.messages} stored"
                            + (
                                f", {MODE_NAMES.get(r.mode, r.mode)} {r.proxy_cpu_s:.1f} CPU s for "
                                f"{r.proxy_requests} req"
                                if r.proxy_cpu_s is not None
                                else ""
                            )
                        )
            size = sizes[0]
            if args.consumer_rounds:
                backlog = stored_messages(broker, topics[size])
                log(f"consumer pass: backlog of {backlog} messages in {topics[size]}")
                if args.warmup:
                    # The broker's pull path, and the RocketMQ Proxy's JIT for it.
                    for route in routes:
                        if route.mode == "proxy" or route.mode in variants:
                            continue
                        w = consumer_run(lib, work, broker, route, topics[size], size, args)
                        log(f"consumer warm-up {route.mode}: {w.tps:.0f} msg/s (discarded)")
            for rnd in range(args.consumer_rounds):
                for route in order(rnd):
                    r = consumer_run(lib, work, broker, route, topics[size], size, args)
                    runs.append(r)
                    log(
                        f"round {rnd + 1} consumer {size} B {r.mode}: {r.tps:.0f} msg/s, "
                        f"{r.messages} committed"
                        + (
                            f", {MODE_NAMES.get(r.mode, r.mode)} {r.proxy_cpu_s:.1f} CPU s"
                            + (f" for {r.proxy_requests} req" if r.proxy_requests else "")
                            if r.proxy_cpu_s is not None
                            else ""
                        )
                    )
                    if r.tps * args.consumer_duration > backlog:
                        log("WARNING: the backlog may have run out during this consumer run")
                    if r.tps == 0:
                        log(f"WARNING: nothing consumed through {MODE_NAMES.get(r.mode, r.mode)}")
            peak = proxy.memory_kib()[1]
            ends = {f: v.stats() for f, v in variants.items()}
            if args.rocketmq_proxy:
                rmq_peak = proc_memory_kib(dc.pids()["proxy"])[1]
        finally:
            proxy.stop()
            for v in variants.values():
                v.stop()
    estimate_consumer_requests(runs)
    load = (load_start, os.getloadavg()[0])
    text = table(runs, args, peak, load, rmq_peak)
    if features:
        text += "\n\n" + feature_table(runs, features, ends)
    print(text)
    log(f"total {time.monotonic() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=1))
    if args.write:
        write_results(text)
        log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
