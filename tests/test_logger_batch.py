"""The batch processor: flush triggers, retries, drops by reason, shapes, threads, fork, exit."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rmqfast.logger import RocketMQLogger, all_loggers, close_all, stats_items

from .fakes import wait_until
from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]


@pytest.fixture
def loggers() -> Iterator[list[RocketMQLogger]]:
    made: list[RocketMQLogger] = []
    yield made
    for lg in made:
        lg.close(timeout=2)


def new(made: list[RocketMQLogger], fake: FakeProducer, **kw: Any) -> RocketMQLogger:
    kw.setdefault("inactive_timeout", 60)
    kw.setdefault("send_concurrency", 1)  # one batch in flight: calls arrive in order
    lg = RocketMQLogger(NS, "t", producer_factory=lambda: fake, **kw)
    made.append(lg)
    return lg


def settled(lg: RocketMQLogger, logged: int) -> dict[str, Any]:
    """Stats once every logged entry has an outcome: sent, or dropped for a reason."""
    s: dict[str, Any] = wait_until(
        lambda: (
            (st := lg.stats())["pending_entries"] == 0
            and st["sent"] + sum(st["dropped"].values()) == logged
            and st
        ),
        10,
        "every entry to be sent or dropped",
    )
    assert s["pending_bytes"] == 0
    assert s["accepted"] <= logged
    return s


# -- flush triggers ------------------------------------------------------------------------------


def test_flush_on_size(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=10, buffer_duration=60)
    for i in range(25):
        assert lg.log({"i": i})
    wait_until(lambda: len(fake.calls) == 2, 10, "two full batches")
    flushed_at = time.monotonic()
    assert lg.flush(5)
    assert [(k, len(m)) for k, _, m in fake.calls] == [("batch", 10), ("batch", 10), ("batch", 5)]
    # The remaining 5 waited for the flush (the timers are 60 s): sent only after it began.
    assert fake.attempt_times[2] >= flushed_at
    assert [e["i"] for e in fake.entries()] == list(range(25))
    s = settled(lg, 25)
    assert (s["sent"], s["batches"], s["messages"]) == (25, 3, 25)


def test_flush_on_inactivity(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, inactive_timeout=0.3)
    t0 = time.monotonic()
    for i in range(3):
        lg.log({"i": i})
    wait_until(lambda: len(fake.messages()) == 3, 10, "the inactivity flush")
    elapsed = fake.attempt_times[0] - t0
    assert 0.25 <= elapsed < 3.0


def test_flush_on_buffer_duration(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, inactive_timeout=0.4, buffer_duration=0.8)
    t0 = time.monotonic()
    # An entry every 0.1 s never leaves 0.4 s of inactivity; age must trigger the flush.
    while not fake.calls and time.monotonic() - t0 < 5:
        lg.log({"t": time.monotonic()})
        time.sleep(0.1)
    assert fake.calls, "no flush while entries kept arriving"
    oldest = fake.entries()[0]["t"]
    first = fake.attempt_times[0] - oldest
    assert 0.75 <= first < 2.5


def test_batch_max_size_one_sends_each_entry_alone(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=1)
    for i in range(3):
        lg.log({"i": i})
    wait_until(lambda: len(fake.calls) == 3, 10, "three sends")
    assert [k for k, _, _ in fake.calls] == ["send"] * 3
    assert fake.bodies() == [{"i": 0}, {"i": 1}, {"i": 2}]


# -- retries and drops ---------------------------------------------------------------------------


def test_retry_then_success(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer(fail=2)
    lg = new(loggers, fake, batch_max_size=5, max_retry_count=2, retry_delay=0.1)
    for i in range(5):
        lg.log({"i": i})
    assert lg.flush(10)
    s = settled(lg, 5)
    assert (s["sent"], s["failed"], s["retried"], s["send_errors"]) == (5, 10, 10, 2)
    assert sum(s["dropped"].values()) == 0
    gaps = [b - a for a, b in zip(fake.attempt_times, fake.attempt_times[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.09 for g in gaps)


def test_retries_exhausted_are_counted(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer(fail=3)
    lg = new(loggers, fake, batch_max_size=4, max_retry_count=2, retry_delay=0.01)
    for i in range(4):
        lg.log({"i": i})
    lg.flush(10)
    s = settled(lg, 4)
    assert s["dropped"]["retries_exhausted"] == 4
    assert (s["sent"], s["failed"], s["retried"], fake.attempts) == (0, 12, 8, 3)
    # The next batch goes through.
    lg.log({"i": 4})
    assert lg.flush(10)
    assert fake.entries() == [{"i": 4}]


def test_default_is_a_single_attempt(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer(fail=1)
    lg = new(loggers, fake, batch_max_size=2)
    lg.log({"a": 1})
    lg.log({"a": 2})
    lg.flush(5)
    s = settled(lg, 2)
    assert (fake.attempts, s["dropped"]["retries_exhausted"], s["retried"]) == (1, 2, 0)


def test_permanent_errors_are_retried_then_counted_as_rejected(
    loggers: list[RocketMQLogger],
) -> None:
    fake = FakeProducer(fail=3, retryable=False)
    lg = new(loggers, fake, batch_max_size=3, max_retry_count=2, retry_delay=0.01)
    for i in range(3):
        lg.log({"i": i})
    lg.flush(5)
    s = settled(lg, 3)
    assert (fake.attempts, s["dropped"]["rejected"], s["failed"], s["retried"]) == (3, 3, 9, 6)
    assert s["dropped"]["retries_exhausted"] == 0
    # A permanent-looking error that clears up within the retry window loses nothing.
    fake.fail = 1
    lg.log({"i": 3})
    assert lg.flush(5)
    assert fake.entries() == [{"i": 3}]


def test_exponential_backoff(loggers: list[RocketMQLogger]) -> None:
    lg = new(loggers, FakeProducer(), retry_delay=0.1, backoff="exponential")
    p = lg._processor
    for attempt, nominal in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (12, 60.0)]:
        for _ in range(20):
            assert nominal * 0.8 <= p.retry_wait(attempt) <= nominal
    fixed = new(loggers, FakeProducer(), retry_delay=0.3)
    assert [fixed._processor.retry_wait(a) for a in (1, 2, 5)] == [0.3, 0.3, 0.3]


def test_queue_full_drops_without_blocking(loggers: list[RocketMQLogger]) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake, batch_max_size=1, max_pending_entries=5)
    results = []
    times = []
    for i in range(10):
        t = time.perf_counter()
        results.append(lg.log({"i": i}))
        times.append(time.perf_counter() - t)
    assert results == [True] * 5 + [False] * 5
    assert max(times) < 0.1
    s = lg.stats()
    assert (s["accepted"], s["dropped"]["queue_full"], s["pending_entries"]) == (5, 5, 5)
    gate.set()
    assert lg.flush(5)
    s = settled(lg, 10)
    assert s["sent"] == 5
    assert [e["i"] for e in fake.entries()] == [0, 1, 2, 3, 4]


def test_bytes_cap(loggers: list[RocketMQLogger]) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake, batch_max_size=1, max_pending_bytes=100)
    payload = {"p": "x" * 30}  # 40 bytes of JSON
    for _ in range(10):
        lg.log(payload)
    # At most 100 bytes are ever rendered and waiting; the rest is dropped for bytes.
    wait_until(
        lambda: (
            lg.stats()["dropped"]["bytes_full"] + lg.stats()["pending_entries"] <= 10
            and lg.stats()["pending_bytes"] > 0
            and lg.stats()["pending_entries"] <= 3
        ),
        10,
        "the byte cap to bite",
    )
    assert lg.stats()["pending_bytes"] <= 120
    gate.set()
    lg.flush(5)
    s = settled(lg, 10)
    assert s["sent"] <= 3
    assert s["sent"] + s["dropped"]["bytes_full"] == 10


def test_too_large_and_encode_errors_are_dropped(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=10, max_message_size=1024)
    circular: dict[str, Any] = {}
    circular["self"] = circular
    lg.log({"ok": 1})
    lg.log({"big": "x" * 2000})
    lg.log({"nan": math.nan})
    lg.log(circular)
    lg.log({"ok": 2})
    assert lg.flush(5)
    s = settled(lg, 5)
    assert s["dropped"]["too_large"] == 1
    assert s["dropped"]["encode_error"] == 2
    assert fake.entries() == [{"ok": 1}, {"ok": 2}]


def test_log_after_close_is_counted(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake)
    lg.log({"a": 1})
    assert lg.close(5)
    assert fake.entries() == [{"a": 1}]
    assert fake.closed
    assert lg.log({"a": 2}) is False
    s = lg.stats()
    assert (s["sent"], s["dropped"]["closed"]) == (1, 1)
    assert lg.close(1)  # idempotent
    assert lg.flush(1)


def test_close_deadline_drops_the_rest(loggers: list[RocketMQLogger]) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake, batch_max_size=2)
    for i in range(6):
        lg.log({"i": i})
    wait_until(lambda: lg.stats()["pending_entries"] == 6 and fake.gate is gate, 10, "queued")
    t = time.monotonic()
    assert lg.close(0.3) is False
    assert time.monotonic() - t < 2.0
    gate.set()  # the batch stuck in the producer call completes; the others are abandoned
    s = settled(lg, 6)
    assert s["sent"] + s["dropped"]["shutdown"] == 6
    assert s["dropped"]["shutdown"] >= 2


def test_flush_times_out_while_the_broker_is_slow(loggers: list[RocketMQLogger]) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake)
    lg.log({"a": 1})
    assert lg.flush(0.2) is False
    gate.set()
    assert lg.flush(5) is True


def test_retry_wait_ends_at_close(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    fake.down = True
    lg = new(loggers, fake, max_retry_count=100, retry_delay=30)
    lg.log({"a": 1})
    lg.log({"a": 2})
    assert lg.flush(0) is False  # starts the send, does not wait for it
    wait_until(lambda: fake.attempts == 1, 10, "the first attempt")
    t = time.monotonic()
    assert lg.close(0.3) is False
    assert time.monotonic() - t < 2.0
    s = settled(lg, 2)
    assert s["dropped"]["shutdown"] == 2


def test_concurrent_sends_and_flush_waits_for_all(loggers: list[RocketMQLogger]) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake, batch_max_size=1, send_concurrency=3)
    for i in range(5):
        lg.log({"i": i})
    wait_until(lambda: fake.in_call == 3, 10, "three sends in flight at once")
    assert lg.flush(0.2) is False  # two are still queued behind the three in flight
    gate.set()
    assert lg.flush(5)
    assert sorted(e["i"] for e in fake.entries()) == [0, 1, 2, 3, 4]
    assert fake.max_in_call == 3
    s = settled(lg, 5)
    assert s["batches"] == 5


# -- shapes and keys -----------------------------------------------------------------------------


def test_shapes_2500_entries(loggers: list[RocketMQLogger]) -> None:
    array, entry = FakeProducer(), FakeProducer()
    la = new(loggers, array, message_shape="array", batch_max_size=1000)
    le = new(loggers, entry, message_shape="entry", batch_max_size=1000)
    for i in range(2500):
        la.log({"i": i})
        le.log({"i": i})
    assert la.flush(10) and le.flush(10)
    bodies = array.bodies()
    assert [len(b) for b in bodies] == [1000, 1000, 500]
    assert [k for k, _, _ in array.calls] == ["send"] * 3
    assert [e["i"] for e in array.entries()] == list(range(2500))
    assert len(entry.messages()) == 2500
    assert [len(m) for _, _, m in entry.calls] == [1000, 1000, 500]
    assert [e["i"] for e in entry.entries()] == list(range(2500))
    assert la.stats()["messages"] == 3 and le.stats()["messages"] == 2500


def test_array_shape_with_batch_size_one_is_an_object(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, message_shape="array", batch_max_size=1)
    lg.log({"a": 1})
    assert lg.flush(5)
    assert fake.messages() == [(b'{"a":1}', None)]


def test_array_is_split_at_max_message_size(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, message_shape="array", batch_max_size=30, max_message_size=1024)
    for i in range(30):
        lg.log({"i": i, "pad": "x" * 80})
    assert lg.flush(5)
    sizes = [len(b) for b, _ in fake.messages()]
    assert len(sizes) >= 3 and all(n <= 1024 for n in sizes)
    assert [e["i"] for e in fake.entries()] == list(range(30))


def test_entry_batches_are_split_at_max_message_size(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=100, max_message_size=4096)
    for i in range(100):
        lg.log({"i": i, "pad": "y" * 200})
    assert lg.flush(5)
    for _, _, msgs in fake.calls:
        assert sum(len(b) + 118 for b, _ in msgs) <= 4096
    assert len(fake.calls) > 1
    assert [e["i"] for e in fake.entries()] == list(range(100))


def test_keys_and_tags(loggers: list[RocketMQLogger]) -> None:
    entry, array = FakeProducer(), FakeProducer()
    le = new(loggers, entry, key="$id", tag="access", batch_max_size=3)
    la = new(loggers, array, key="req-${id}", tag="$kind", message_shape="array", batch_max_size=3)
    for lg in (le, la):
        lg.log({"id": "a", "kind": "k1"})
        lg.log({"id": "b", "kind": "k2"})
        lg.log({"id": "a"})
        assert lg.flush(5)
    assert [p for _, p in entry.messages()] == [
        {"KEYS": "a", "TAGS": "access"},
        {"KEYS": "b", "TAGS": "access"},
        {"KEYS": "a", "TAGS": "access"},
    ]
    # One message: every distinct key (RocketMQ indexes each), the first entry's tag.
    assert [p for _, p in array.messages()] == [{"KEYS": "req-a req-b", "TAGS": "k1"}]


def test_missing_key_variable_sends_no_key(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, key="$id", batch_max_size=1)
    lg.log({"other": 1})
    lg.log({"id": 7})
    assert lg.flush(5)
    assert [p for _, p in fake.messages()] == [None, {"KEYS": "7"}]


def test_preencoded_entries(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=2)
    lg.log(b'{"raw":true}')
    lg.log('{"text":"é"}')
    assert lg.flush(5)
    assert fake.bodies() == [{"raw": True}, {"text": "é"}]


# -- threads, fork, exit -------------------------------------------------------------------------


def test_many_threads_lose_nothing(loggers: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = new(loggers, fake, batch_max_size=100, max_pending_entries=100000)
    n_threads, per = 8, 2000

    def work(t: int) -> None:
        for i in range(per):
            lg.log({"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert lg.flush(30)
    s = settled(lg, n_threads * per)
    assert s["sent"] == s["accepted"] == n_threads * per
    got = [(e["t"], e["i"]) for e in fake.entries()]
    assert len(got) == len(set(got)) == n_threads * per
    for t in range(n_threads):
        assert [i for tt, i in got if tt == t] == list(range(per))  # per-thread order kept


def test_fork_child_starts_empty_and_builds_its_own_producer(
    loggers: list[RocketMQLogger],
) -> None:
    parent_pid = os.getpid()
    fakes: dict[int, FakeProducer] = {}

    def factory() -> FakeProducer:
        fakes[os.getpid()] = FakeProducer()
        return fakes[os.getpid()]

    lg = RocketMQLogger(NS, "t", producer_factory=factory, batch_max_size=100, send_concurrency=1)
    loggers.append(lg)
    lg.log({"who": "parent", "i": 0})
    assert lg.flush(5)
    gate = threading.Event()
    fakes[parent_pid].gate = gate
    for i in range(1, 5):
        lg.log({"who": "parent", "i": i})
    lg._processor.flush(0)  # the batch is now stuck in the parent's producer
    wait_until(lambda: fakes[parent_pid].attempts == 1, 10, "a send in flight")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            for i in range(3):
                lg.log({"who": "child", "i": i})
            ok = lg.flush(5)
            mine = fakes.get(os.getpid())
            out = {
                "ok": ok,
                "entries": mine.entries() if mine else None,
                "stats": lg.stats(),
            }
            os.write(w, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = json.loads(data)
    assert child["ok"] is True
    assert child["entries"] == [{"who": "child", "i": i} for i in range(3)]
    assert (child["stats"]["accepted"], child["stats"]["sent"]) == (3, 3)
    gate.set()
    assert lg.flush(5)
    assert [e["i"] for e in fakes[parent_pid].entries()] == [0, 1, 2, 3, 4]
    assert all(e["who"] == "parent" for e in fakes[parent_pid].entries())


def test_interpreter_exit_flushes(tmp_path: Any) -> None:
    out = tmp_path / "sent.jsonl"
    script = textwrap.dedent(
        f"""
        from rmqfast.logger import RocketMQLogger

        class FileProducer:
            def send(self, topic, body, keys=None, tags=None, properties=None):
                with open({str(out)!r}, "ab") as f:
                    f.write(body + b"\\n")
            def send_batch(self, topic, messages):
                for body, _ in messages:
                    self.send(topic, body)
            def close(self):
                pass

        lg = RocketMQLogger(["127.0.0.1:9876"], "t", producer_factory=FileProducer,
                            inactive_timeout=600, buffer_duration=600, shutdown_timeout=10)
        for i in range(7):
            lg.log({{"i": i}})
        # no flush, no close: the atexit hook must send them
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = out.read_bytes().splitlines()
    assert [json.loads(x)["i"] for x in lines] == list(range(7))


# -- stats, registry, warnings -------------------------------------------------------------------


def test_stats_registry_and_prometheus(loggers: list[RocketMQLogger]) -> None:
    from rmqfast.stats import render_prometheus

    fake = FakeProducer()
    lg = new(loggers, fake, name="access-log-test", batch_max_size=1, max_pending_entries=1)
    gate = threading.Event()
    fake.gate = gate
    lg.log({"a": 1})
    lg.log({"a": 2})  # queue full
    gate.set()
    assert lg.flush(5)
    assert lg in all_loggers()
    items = dict(stats_items())
    assert items["access-log-test"]["accepted"] == 1
    text = render_prometheus(logger_stats=stats_items())
    assert 'rmqfast_logger_accepted_total{name="access-log-test"} 1' in text
    assert 'rmqfast_logger_sent_total{name="access-log-test"} 1' in text
    assert 'rmqfast_logger_dropped_total{name="access-log-test",reason="queue_full"} 1' in text
    assert 'rmqfast_logger_pending_entries{name="access-log-test"} 0' in text
    assert "# TYPE rmqfast_logger_send_latency_p99_seconds gauge" in text
    s = lg.stats()
    assert s["send_latency_max_seconds"] >= s["send_latency_p50_seconds"] > 0
    lg.close(2)
    assert lg not in all_loggers()


def test_close_all(loggers: list[RocketMQLogger]) -> None:
    a, b = FakeProducer(), FakeProducer()
    la, lb = new(loggers, a), new(loggers, b)
    la.log({"x": 1})
    lb.log({"y": 2})
    assert close_all(5)
    assert a.entries() == [{"x": 1}] and b.entries() == [{"y": 2}]
    assert la.closed and lb.closed


def test_drop_warnings_are_rate_limited(
    loggers: list[RocketMQLogger], caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    fake = FakeProducer(gate=gate)
    lg = new(loggers, fake, batch_max_size=1, max_pending_entries=1)
    caplog.set_level(logging.WARNING, logger="rmqfast.logger")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        lg.log({"a": 1})
        time.sleep(0.001)
    wait_until(
        lambda: any("dropped" in r.getMessage() for r in caplog.records), 10, "a drop warning"
    )
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(drops) <= 3
    assert "queue_full=" in drops[0].getMessage()
    gate.set()
