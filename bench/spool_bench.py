"""The logger's disk spool: entries/s written to it during an outage and replayed from it to a
real broker, against live sending to the same broker in the same run.

    python bench/spool_bench.py [--namesrv HOST:PORT] [--entries 100000] [--rounds 3] [--write]

Without --namesrv it starts a DevCluster (1 name server, 1 broker) on loopback. Per round, on a
fresh topic, with the same 1 KiB JSON entries as bench/logger_bench.py, message_shape "entry",
batch_max_size 1000, and the logger's other defaults:

1. live: broker up, no spool: N entries from the first log() to the end of flush() (the
   baseline).
2. spool write: the producer fails every send (an outage, without waiting for a broker to
   stop): N entries from the first log() until all N are counted as spooled. After the first
   failed batch the batcher writes straight to the spool, so this is render + frame + write.
3. replay: a new logger on the same spool_dir and the real broker replays those N entries;
   from its creation until the spool is empty (replayed == N).

CPU is the process's user + system time over each phase, per entry. --write puts the table in
bench/RESULTS.md under "## Logger spool".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# The installed rmqfast (make build), not python/ (which has no compiled core).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from logger_bench import cpu_seconds, create_topic, entry, write_section
from rmqfast.devcluster import DevCluster
from rmqfast.logger import RocketMQLogger

START = "<!-- spool-bench:start -->"
END = "<!-- spool-bench:end -->"


def log(msg: str) -> None:
    print(f"[spool_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Outage(Exception):
    retryable = True


class DownProducer:
    """A producer whose broker is away: every send fails at once."""

    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise Outage("broker down (bench)")

    def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise Outage("broker down (bench)")

    def close(self) -> None:
        pass


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


def feed(lg: RocketMQLogger, items: list[dict[str, Any]]) -> None:
    for it in items:
        while lg.pending_entries > 6000:
            time.sleep(0.0002)
        assert lg.log(it)


def one_round(namesrv: str, n: int, spool_root: Path) -> dict[str, tuple[float, float]]:
    items = [entry(i) for i in range(n)]
    out: dict[str, tuple[float, float]] = {}

    topic = f"spool_bench_{uuid.uuid4().hex[:8]}"
    create_topic(namesrv, topic)
    lg = RocketMQLogger([namesrv], topic, batch_max_size=1000, name="bench-live")
    lg.log(entry(0))
    assert lg.flush(60), lg.stats()
    c0, t0 = cpu_seconds(), time.perf_counter()
    feed(lg, items)
    assert lg.flush(300)
    out["live"] = (time.perf_counter() - t0, cpu_seconds() - c0)
    st = lg.stats()
    lg.close(30)
    assert st["sent"] == n + 1 and sum(st["dropped"].values()) == 0, st

    spool_dir = str(spool_root / uuid.uuid4().hex[:8])
    lg = RocketMQLogger(
        [namesrv],
        topic,
        batch_max_size=1000,
        name="bench-spool",
        spool_dir=spool_dir,
        producer_factory=DownProducer,
    )
    c0, t0 = cpu_seconds(), time.perf_counter()
    feed(lg, items)
    wait_for(lambda: lg.stats()["spooled"] == n, 300, "every entry spooled")
    out["spool write"] = (time.perf_counter() - t0, cpu_seconds() - c0)
    st = lg.stats()
    assert sum(st["dropped"].values()) == 0, st
    lg.close(30)

    c0, t0 = cpu_seconds(), time.perf_counter()
    lg = RocketMQLogger(
        [namesrv], topic, batch_max_size=1000, name="bench-spool", spool_dir=spool_dir
    )
    wait_for(lambda: lg.stats()["pending_spool_entries"] == 0, 300, "the spool replayed")
    out["replay"] = (time.perf_counter() - t0, cpu_seconds() - c0)
    st = lg.stats()
    lg.close(30)
    assert st["replayed"] == n and st["spool_corrupt"] == 0, st
    for phase, (secs, cpu) in out.items():
        log(f"{phase}: {n / secs:,.0f} entries/s, {cpu / n * 1e6:.1f} us CPU/entry")
    return out


def table(rounds: list[dict[str, tuple[float, float]]], n: int, cmd: str) -> str:
    live = statistics.median(n / r["live"][0] for r in rounds)
    lines = [
        f"`{cmd}`, {len(rounds)} rounds of {n:,} entries of 1 KiB, medians "
        f"({time.strftime('%Y-%m-%d')}, 2-core VM, loopback, 1 broker):",
        "",
        "| phase | entries/s | CPU µs/entry | rate vs live |",
        "|---|---|---|---|",
    ]
    for phase in ("live", "spool write", "replay"):
        rate = statistics.median(n / r[phase][0] for r in rounds)
        cpu = statistics.median(r[phase][1] / n * 1e6 for r in rounds)
        lines.append(f"| {phase} | {rate:,.0f} | {cpu:.1f} | {rate / live:.2f}x |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    write_section(text, START, END, "## Logger spool")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--namesrv", help="use this name server instead of starting a DevCluster")
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    cmd = "python bench/spool_bench.py" + (
        f" --entries {args.entries}" if args.entries != 100000 else ""
    )

    def run(namesrv: str) -> list[dict[str, tuple[float, float]]]:
        with tempfile.TemporaryDirectory(prefix="spool-bench-") as d:
            return [one_round(namesrv, args.entries, Path(d)) for _ in range(args.rounds)]

    if args.namesrv:
        rounds = run(args.namesrv)
    else:
        with DevCluster(namesrvs=1, brokers=1) as c:
            rounds = run(c.namesrv_addr)
    text = table(rounds, args.entries, cmd)
    print(text)
    if args.write:
        write_results(text)


if __name__ == "__main__":
    main()
