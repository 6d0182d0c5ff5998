"""The proxy benchmark: RocketMQ's own benchmark Producer/Consumer, direct and through rmqfast.

    python bench/proxy_bench.py [--rounds 3] [--duration 20] [--sizes 128,1024] [--write]

Starts a DevCluster (1 name server, 1 broker) and `python -m rmqfast.proxy` as a subprocess (so
its CPU time and RSS can be read from /proc), then runs
org.apache.rocketmq.example.benchmark.Producer (from rocketmq-example 5.5.0, resolved by
bench/pom.xml into its own lib directory, never mixed with the 5.3.3 server jars) for a fixed time
against the broker directly and through the proxy, alternating, for every message size and round.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from rmqfast.devcluster import (  # noqa: E402
    CLUSTER_NAME,
    JDK17_FLAGS,
    LOGBACK_XML,
    DevCluster,
    cache_root,
    find_java,
    find_mvn,
)

BENCH_POM = Path(__file__).resolve().parent / "pom.xml"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START = "<!-- proxy-bench:start -->"
END = "<!-- proxy-bench:end -->"
PRODUCER_MAIN = "org.apache.rocketmq.example.benchmark.Producer"
CONSUMER_MAIN = "org.apache.rocketmq.example.benchmark.Consumer"
BENCH_JVM = ("-Xms256m", "-Xmx256m", "-XX:+UseG1GC")
CLK_TCK = os.sysconf("SC_CLK_TCK")

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
# the proxy under test


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
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15; after the ")" split they are at 11 and 12.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        vals = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                vals[key] = int(rest.split()[0])
        return vals["VmRSS"], vals["VmHWM"]

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


# ------------------------------------------------------------------------------------------------
# benchmark runs


@dataclass
class Run:
    kind: str  # producer | consumer
    mode: str  # direct | proxy
    size: int
    tps: float
    avg_rt: float
    max_rt: float
    failed: int = 0
    proxy_cpu_s: float | None = None
    proxy_requests: int | None = None
    proxy_rss_kib: int | None = None
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


def run_timed(cmd: list[str], pattern: re.Pattern[str], reports: int, timeout: float) -> list[str]:
    """Runs a benchmark program until it printed `reports` report lines, then stops it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    got: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if pattern.search(line):
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


@contextmanager
def measured(proxy: ProxyProcess | None) -> Iterator[dict[str, Any]]:
    out: dict[str, Any] = {}
    if proxy is None:
        yield out
        return
    cpu0, req0 = proxy.cpu_seconds(), proxy.stats()["request"]
    yield out
    out["cpu"] = proxy.cpu_seconds() - cpu0
    out["requests"] = proxy.stats()["request"] - req0
    out["rss"] = proxy.memory_kib()[0]


def producer_run(
    lib: Path,
    work: Path,
    namesrv: str,
    mode: str,
    topic: str,
    size: int,
    args: argparse.Namespace,
    proxy: ProxyProcess | None,
) -> Run:
    reports = max(1, args.duration - 9)
    cmd = java_cmd(
        lib,
        work,
        PRODUCER_MAIN,
        ["-n", namesrv, "-t", topic, "-w", str(args.threads), "-s", str(size), "-ri", "1000"],
        f"producer-{mode}-{size}",
    )
    with measured(proxy) as m:
        got = run_timed(cmd, SEND_LINE, reports, args.duration + 60)
    last = SEND_LINE.search(got[-1])
    assert last is not None
    return Run(
        "producer",
        mode,
        size,
        float(last["tps"]),
        float(last["avg"]),
        float(last["max"]),
        int(last["failed"]) + int(last["rfailed"]),
        m.get("cpu"),
        m.get("requests"),
        m.get("rss"),
        got,
    )


def consumer_run(
    lib: Path,
    work: Path,
    namesrv: str,
    mode: str,
    topic: str,
    size: int,
    args: argparse.Namespace,
    proxy: ProxyProcess | None,
) -> Run:
    reports = max(1, args.consumer_duration - 9)
    group = f"bench_cg_{uuid.uuid4().hex[:8]}"
    cmd = java_cmd(
        lib,
        work,
        CONSUMER_MAIN,
        ["-n", namesrv, "-t", topic, "-g", group, "-w", str(args.consumer_threads), "-ri", "1000"],
        f"consumer-{mode}-{size}",
    )
    with measured(proxy) as m:
        got = run_timed(cmd, CONSUME_LINE, reports, args.consumer_duration + 60)
    last = CONSUME_LINE.search(got[-1])
    assert last is not None
    return Run(
        "consumer",
        mode,
        size,
        float(last["tps"]),
        float(last["s2c"]),
        float(last["s2cmax"]),
        0,
        m.get("cpu"),
        m.get("requests"),
        m.get("rss"),
        got,
    )


def topic_backlog(dc: DevCluster, topic: str) -> int:
    """Messages stored in a topic: the sum of its queues' max offsets (mqadmin topicStatus)."""
    out = dc.mqadmin(["topicStatus", "-n", dc.namesrv_addr, "-t", topic], check=True).stdout
    total = 0
    for line in out.splitlines():
        cols = line.split()
        # broker-a  0  0  12345  2026-...  (name, queue id, min offset, max offset, time)
        if len(cols) >= 4 and cols[1].isdigit() and cols[2].isdigit() and cols[3].isdigit():
            total += int(cols[3])
    return total


# ------------------------------------------------------------------------------------------------
# report


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(
    runs: list[Run], args: argparse.Namespace, peak_kib: int, load: tuple[float, float]
) -> str:
    rows = [
        "| workload | size | direct msg/s | proxy msg/s | proxy/direct | direct RT mean / max (ms) "
        "| proxy RT mean / max (ms) | proxy CPU s per 100k req | proxy RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.kind, r.size) for r in runs}, key=lambda k: (k[0] != "producer", k[1]))
    for kind, size in keys:
        d = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "direct")]
        p = [r for r in runs if (r.kind, r.size, r.mode) == (kind, size, "proxy")]
        dt, pt = median([r.tps for r in d]), median([r.tps for r in p])
        per100k = median(
            [
                r.proxy_cpu_s / r.proxy_requests * 1e5
                for r in p
                if r.proxy_cpu_s and r.proxy_requests
            ]
        )
        rss = max((r.proxy_rss_kib or 0) for r in p) / 1024 if p else float("nan")
        if kind == "producer":
            what = "send (sync)"
            drt = f"{median([r.avg_rt for r in d]):.2f} / {median([r.max_rt for r in d]):.0f}"
            prt = f"{median([r.avg_rt for r in p]):.2f} / {median([r.max_rt for r in p]):.0f}"
        else:
            # Draining a backlog: the consumer's latencies are the messages' age, not RT.
            what, drt, prt = "consume (push, backlog)", "n/a", "n/a"
        rows.append(
            f"| {what} | {size} B | {dt:,.0f} | {pt:,.0f} | {pt / dt:.1%} | {drt} | {prt} "
            f"| {per100k:.2f} | {rss:.1f} |"
        )
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
        "process, 2 worker threads) → broker. Runs alternate direct/proxy within each round.",
        "- Mean RT / max RT: the producer's send RT (mean over the window, max since the "
        "start of the run, JIT warm-up included). The consumer drains the backlog the "
        "producer runs left (a fresh group per run starts at offset 0), so its figure is "
        "delivery throughput; its latencies are the messages' age and are not shown.",
        "- Proxy CPU: utime+stime of the proxy process during the run (/proc/PID/stat) divided "
        "by the requests it relayed; RSS: VmRSS after the run "
        f"(peak VmHWM {peak_kib / 1024:.1f} MiB).",
        f"- 1-minute load average at the start / end of the benchmark: {load[0]:.1f} / "
        f"{load[1]:.1f} (above 2 means other jobs shared the 2 cores and the figures are noisy).",
    ]
    return "\n".join(rows + notes)


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
        "--warmup", type=int, default=1, help="1: a discarded direct+proxy run first [1]"
    )
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lib = bench_lib()
    t_start = time.monotonic()
    load_start = os.getloadavg()[0]
    runs: list[Run] = []
    with DevCluster(namesrvs=1, brokers=1) as dc:
        work = dc.dir / "bench"
        work.mkdir(parents=True, exist_ok=True)
        proxy = ProxyProcess(dc.namesrv_addr, args.proxy_args.split())
        try:
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
                        "8",
                        "-w",
                        "8",
                    ],
                    check=True,
                )
            if args.warmup:
                # Discarded: the broker's JIT and page cache warm up on the first runs.
                for mode in ("direct", "proxy"):
                    ns = dc.namesrv_addr if mode == "direct" else proxy.namesrv_addr
                    w = producer_run(
                        lib,
                        work,
                        ns,
                        mode,
                        topics[sizes[0]],
                        sizes[0],
                        args,
                        proxy if mode == "proxy" else None,
                    )
                    log(f"warm-up {mode}: {w.tps:.0f} msg/s (discarded)")
            for rnd in range(args.rounds):
                for size in sizes:
                    order = ("direct", "proxy") if rnd % 2 == 0 else ("proxy", "direct")
                    for mode in order:
                        ns = dc.namesrv_addr if mode == "direct" else proxy.namesrv_addr
                        r = producer_run(
                            lib,
                            work,
                            ns,
                            mode,
                            topics[size],
                            size,
                            args,
                            proxy if mode == "proxy" else None,
                        )
                        runs.append(r)
                        log(
                            f"round {rnd + 1} producer {size} B {mode}: {r.tps:.0f} msg/s, "
                            f"RT {r.avg_rt:.2f}/{r.max_rt:.0f} ms"
                            + (
                                f", proxy {r.proxy_cpu_s:.1f} CPU s for {r.proxy_requests} req"
                                if r.proxy_cpu_s is not None
                                else ""
                            )
                        )
            size = sizes[0]
            if args.consumer_rounds:
                backlog = topic_backlog(dc, topics[size])
                log(f"consumer pass: backlog of {backlog} messages in {topics[size]}")
                if args.warmup:
                    w = consumer_run(
                        lib, work, dc.namesrv_addr, "direct", topics[size], size, args, None
                    )
                    log(f"consumer warm-up direct: {w.tps:.0f} msg/s (discarded)")
            for rnd in range(args.consumer_rounds):
                order = ("direct", "proxy") if rnd % 2 == 0 else ("proxy", "direct")
                for mode in order:
                    ns = dc.namesrv_addr if mode == "direct" else proxy.namesrv_addr
                    r = consumer_run(
                        lib,
                        work,
                        ns,
                        mode,
                        topics[size],
                        size,
                        args,
                        proxy if mode == "proxy" else None,
                    )
                    runs.append(r)
                    log(f"round {rnd + 1} consumer {size} B {mode}: {r.tps:.0f} msg/s")
                    if r.tps * args.consumer_duration > backlog:
                        log("WARNING: the backlog may have run out during this consumer run")
            peak = proxy.memory_kib()[1]
        finally:
            proxy.stop()
    load = (load_start, os.getloadavg()[0])
    text = table(runs, args, peak, load)
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
