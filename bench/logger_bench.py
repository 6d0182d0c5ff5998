"""The logger benchmark: ASGI middleware cost per request, and entries/s delivered to a broker.

    python bench/logger_bench.py [--namesrv HOST:PORT] [--requests 50000] [--entries 300000]
                                 [--rounds 3] [--write] [--json PATH]

Without --namesrv it starts a DevCluster (1 name server, 1 broker) on loopback.

1. Per-request cost on the app's thread. The same ASGI app is called directly from one
   coroutine, alternately without and with ASGIMiddleware, request by request, in the same
   run; each call is timed with perf_counter_ns. The logger is live (default full-log entries,
   real producer, its threads rendering and sending while the loop runs), with
   max_pending_entries raised so that every request takes the accepting path. Two apps: a raw
   ASGI app (the middleware's cost with nothing around it) and a Starlette app with one route.
2. Delivery. One process logs N entries of 1 KiB JSON as fast as the pipeline takes them
   (waiting while more than 6000 are pending, so none is dropped), then flushes; entries/s is
   N over the time from the first log() to the end of flush(). Dict entries are encoded to JSON
   on the logger's thread; pre-encoded bytes entries measure the queue, batcher and producer
   alone. Both message shapes, batch_max_size 1000.

--write puts the markdown table in bench/RESULTS.md under "## Logger".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

# The installed rmqfast (make build), not python/ (which has no compiled core).
from rmqfast.codec import RequestCode
from rmqfast.devcluster import DevCluster, registered_brokers
from rmqfast.devcluster.remoting import call, create_topic_fields
from rmqfast.logger import ASGIMiddleware, RocketMQLogger
from rmqfast.logger.encode import json_default as _json_default
from rmqfast.logger.encode import make_encoder as _make_encoder

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START = "<!-- logger-bench:start -->"
END = "<!-- logger-bench:end -->"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def log(msg: str) -> None:
    print(f"[logger_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def create_topic(namesrv: str, topic: str, queues: int = 8) -> None:
    """UPDATE_AND_CREATE_TOPIC on every broker, then wait until the name server routes it."""
    for addr in registered_brokers(namesrv).values():
        r = call(
            addr,
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            create_topic_fields(topic, queues),
            timeout=10,
        )
        assert r.code == 0, r.remark
    deadline = time.monotonic() + 60
    route = RequestCode.GET_ROUTEINFO_BY_TOPIC
    while call(namesrv, route, {"topic": topic}, timeout=10).code != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no route for {topic}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# 1. per-request cost


async def raw_app(scope: Scope, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


def starlette_app() -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"item {request.path_params['item_id']}")

    app: ASGIApp = Starlette(routes=[Route("/items/{item_id:int}", item)])
    return app


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/42",
    "raw_path": b"/items/42",
    "query_string": b"page=2&sort=asc",
    "root_path": "",
    "headers": [
        (b"host", b"api.example.com"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"x-request-id", b"5f1c2b7e9a0d4c3b8e6f1a2b3c4d5e6f"),
    ],
    "client": ("10.1.2.3", 51515),
    "server": ("10.0.0.1", 8000),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def time_requests(base: ASGIApp, wrapped: ASGIApp, n: int) -> tuple[list[int], list[int]]:
    pc = time.perf_counter_ns
    a: list[int] = []
    b: list[int] = []
    for _ in range(n):
        s1 = dict(SCOPE)
        s2 = dict(SCOPE)
        t0 = pc()
        await base(s1, _receive, _send)
        t1 = pc()
        await wrapped(s2, _receive, _send)
        t2 = pc()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return a, b


def q(values: list[int], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))] / 1000.0


def overhead(namesrv: str, topic: str, n: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for label, app in (("raw ASGI app", raw_app), ("Starlette, 1 route", starlette_app())):
        meds_a, meds_b, p99_a, p99_b = [], [], [], []
        accepted = dropped = 0
        for r in range(rounds):
            lg = RocketMQLogger([namesrv], topic, max_pending_entries=10 * n, name=f"bench-{r}")
            mw = ASGIMiddleware(app, lg)
            asyncio.run(time_requests(app, mw, min(n, 5000)))  # warm-up
            a, b = asyncio.run(time_requests(app, mw, n))
            lg.close(120)
            st = lg.stats()
            accepted += st["accepted"]
            dropped += sum(st["dropped"].values())
            meds_a.append(q(a, 0.5))
            meds_b.append(q(b, 0.5))
            p99_a.append(q(a, 0.99))
            p99_b.append(q(b, 0.99))
            log(
                f"{label} round {r + 1}: median {q(a, 0.5):.2f} -> {q(b, 0.5):.2f} us, "
                f"p99 {q(a, 0.99):.2f} -> {q(b, 0.99):.2f} us; sent {st['sent']}"
            )
        rows.append(
            {
                "app": label,
                "requests": n,
                "base_median_us": statistics.median(meds_a),
                "mw_median_us": statistics.median(meds_b),
                "added_median_us": statistics.median(
                    [y - x for x, y in zip(meds_a, meds_b, strict=True)]
                ),
                "base_p99_us": statistics.median(p99_a),
                "mw_p99_us": statistics.median(p99_b),
                "added_p99_us": statistics.median(
                    [y - x for x, y in zip(p99_a, p99_b, strict=True)]
                ),
                "accepted": accepted,
                "dropped": dropped,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# 2. delivery


def entry(i: int) -> dict[str, Any]:
    e: dict[str, Any] = {
        "time": "2026-11-21T12:00:00+00:00",
        "level": "INFO",
        "logger": "app.orders",
        "request_id": f"{i:032x}",
        "status": 200,
        "latency_ms": 12.5,
        "message": "",
    }
    e["message"] = "m" * (1024 - len(json.dumps(e, separators=(",", ":"))))
    return e


def stdlib_encoder() -> Any:
    """The encoder the logger used before `_core.json_dumps`: the stdlib's, then UTF-8."""
    enc = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    ).encode

    def encode(o: Any) -> bytes:
        return enc(o).encode("utf-8", "replace")

    return encode


def encode_cost(n: int = 20000, rounds: int = 5) -> dict[str, float]:
    """µs per 1 KiB entry: the stdlib encoder against `_core.json_dumps`, same entries, same
    run; results kept in batches of 1000 as the logger keeps them."""
    items = [entry(i) for i in range(n)]
    out: dict[str, float] = {}
    for name, f in (("stdlib", stdlib_encoder()), ("rmqfast", _make_encoder())):

        def run(f: Any = f) -> None:
            for i in range(0, n, 1000):
                _ = [f(x) for x in items[i : i + 1000]]

        best = min(timeit.repeat(run, number=1, repeat=rounds))
        out[name] = best / n * 1e6
    log(f"JSON per 1 KiB entry: stdlib {out['stdlib']:.2f} us, rmqfast {out['rmqfast']:.2f} us")
    return out


def deliver(
    namesrv: str, n: int, shape: str, pre_encoded: bool, rounds: int, encoder: str = "rmqfast"
) -> dict[str, Any]:
    rates, cpus, sends = [], [], []
    sample = json.dumps(entry(0), separators=(",", ":")).encode()
    assert len(sample) == 1024, len(sample)
    for _ in range(rounds):
        topic = f"logger_bench_{uuid.uuid4().hex[:8]}"
        create_topic(namesrv, topic)
        lg = RocketMQLogger(
            [namesrv], topic, message_shape=shape, batch_max_size=1000, name=f"bench-{shape}"
        )
        if encoder == "stdlib":
            lg._renderer._encode = stdlib_encoder()
        # Route lookup and connection set-up are not what is measured.
        lg.log(entry(0))
        assert lg.flush(60), lg.stats()
        items: list[Any] = [
            json.dumps(entry(i), separators=(",", ":")).encode() if pre_encoded else entry(i)
            for i in range(n)
        ]
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        for it in items:
            while lg.pending_entries > 6000:
                time.sleep(0.0002)
            lg.log(it)
        ok = lg.flush(300)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - c0
        st = lg.stats()
        lg.close(30)
        assert ok and st["sent"] == n + 1 and sum(st["dropped"].values()) == 0, st
        rates.append(n / elapsed)
        cpus.append(cpu / n * 1e6)
        sends.append(st["send_latency_p50_seconds"] * 1000)
        log(
            f"{shape} {'bytes' if pre_encoded else 'dict'}: {n / elapsed:,.0f} entries/s, "
            f"{cpu / n * 1e6:.1f} us CPU/entry, {st['messages']} messages, "
            f"{st['batches']} requests, send p50 {st['send_latency_p50_seconds'] * 1000:.1f} ms"
        )
    return {
        "shape": shape,
        "entries": "bytes (pre-encoded)"
        if pre_encoded
        else ("dict, stdlib JSON (baseline)" if encoder == "stdlib" else "dict"),
        "n": n,
        "entries_per_s": statistics.median(rates),
        "best_entries_per_s": max(rates),
        "cpu_us_per_entry": statistics.median(cpus),
        "send_p50_ms": statistics.median(sends),
    }


# ------------------------------------------------------------------------------------------------


def table(over: list[dict[str, Any]], deliv: list[dict[str, Any]], args: Any) -> str:
    lines = [
        "Per-request cost on the app's thread (µs; median over rounds of each round's figure):",
        "",
        "| app | without: median / p99 | with middleware: median / p99 | added: median / p99 |",
        "|---|---|---|---|",
    ]
    for r in over:
        lines.append(
            f"| {r['app']} | {r['base_median_us']:.2f} / {r['base_p99_us']:.2f} "
            f"| {r['mw_median_us']:.2f} / {r['mw_p99_us']:.2f} "
            f"| **{r['added_median_us']:.2f}** / {r['added_p99_us']:.2f} |"
        )
    lines += [
        "",
        "Delivered to one broker from one process, 1 KiB entries, batch_max_size 1000:",
        "",
        "| message shape | entries | entries/s: median (best) | process CPU µs per entry "
        "| send p50 (ms) |",
        "|---|---|---|---|---|",
    ]
    for d in deliv:
        lines.append(
            f"| {d['shape']} | {d['entries']} | **{d['entries_per_s']:,.0f}** "
            f"({d['best_entries_per_s']:,.0f}) "
            f"| {d['cpu_us_per_entry']:.1f} | {d['send_p50_ms']:.1f} |"
        )
    lines += [
        "",
        "- Targets: at most 5 µs added per request at the median; at least 100k entries/s.",
        "- Per request, the middleware only keeps references (scope, status, headers, byte "
        "counts, two timestamps) and queues them; rendering the entry (about 15-20 µs here for "
        "the default full log) and JSON happen on the logger's thread, so they show in the p99 "
        "(GIL hand-offs) rather than the median.",
        "- Delivery: the process CPU column is everything in this process per entry (log(), "
        "JSON, batching, the Rust producer); the broker runs on the same two cores. dict "
        "entries are encoded by `rmqfast._core.json_dumps` (Rust; the same bytes as the "
        f"stdlib's compact `json.dumps`): {args.encode['rmqfast']:.2f} µs per 1 KiB entry "
        f"against {args.encode['stdlib']:.2f} µs for the stdlib's C encoder in the same run "
        f"({args.encode['stdlib'] / args.encode['rmqfast']:.1f} times as fast); the "
        "'stdlib JSON (baseline)' row is the logger with the stdlib encoder swapped back in. "
        "entry shape makes the broker store one message per entry, array shape one per "
        "batch. Rounds vary with what else runs on the machine; best-of-rounds in brackets.",
        "",
        f"Command: `python bench/logger_bench.py --requests {args.requests} --entries "
        f"{args.entries} --rounds {args.rounds} --write` ({time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, RocketMQ DevCluster with "
        "1 name server and 1 broker on the same cores; 1-minute load average "
        f"{args.load_before:.2f} before, {os.getloadavg()[0]:.2f} after).",
    ]
    return "\n".join(lines)


def write_section(text: str, start: str, end: str, heading: str) -> None:
    """Put `text` between the markers `start` and `end` in bench/RESULTS.md, or append it
    under `heading` the first time (shared by the benches that record results)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    RESULTS.write_text(new)


def write_results(text: str) -> None:
    write_section(text, START, END, "## Logger")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--namesrv", help="use this name server instead of starting a DevCluster")
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--entries", type=int, default=300000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-delivery", action="store_true")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    args.load_before = os.getloadavg()[0]
    cluster = None
    namesrv = args.namesrv
    if namesrv is None:
        log("starting a DevCluster (1 name server, 1 broker)")
        cluster = DevCluster(namesrvs=1, brokers=1).start()
        namesrv = cluster.namesrv_addr
    try:
        topic = f"logger_bench_{uuid.uuid4().hex[:8]}"
        create_topic(namesrv, topic)
        over = overhead(namesrv, topic, args.requests, args.rounds)
        deliv: list[dict[str, Any]] = []
        args.encode = encode_cost()
        if not args.skip_delivery:
            for pre in (False, True):
                for shape in ("entry", "array"):
                    deliv.append(deliver(namesrv, args.entries, shape, pre, args.rounds))
            # Same run, the stdlib encoder the logger used before: the baseline for dict rows.
            deliv.insert(
                1, deliver(namesrv, args.entries, "entry", False, args.rounds, encoder="stdlib")
            )
    finally:
        if cluster is not None:
            cluster.stop()
    text = table(over, deliv, args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"overhead": over, "delivery": deliv}, indent=2))
    if args.write:
        write_results(text)
        log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
