"""The logger's disk spool with an in-process producer: outage and replay, restart, torn and
corrupt records, the size bound, slots and config errors. The real-broker tests (50k entries
through an outage, SIGKILL mid-spool) are in test_logger_spool_acceptance.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmqfast.logger import ConfigError, RocketMQLogger

from .fakes import wait_until
from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]


@pytest.fixture
def loggers() -> Iterator[list[RocketMQLogger]]:
    made: list[RocketMQLogger] = []
    yield made
    for lg in made:
        lg.close(timeout=2)


def new(made: list[RocketMQLogger], fake: FakeProducer, spool: Path, **kw: Any) -> RocketMQLogger:
    kw.setdefault("inactive_timeout", 0.05)
    kw.setdefault("batch_max_size", 100)
    kw.setdefault("retry_delay", 0)
    kw.setdefault("send_concurrency", 1)
    lg = RocketMQLogger(NS, "t", producer_factory=lambda: fake, spool_dir=str(spool), **kw)
    made.append(lg)
    return lg


def delivered(fake: FakeProducer) -> list[int]:
    """The `i` of every entry the producer accepted, in the order it got them."""
    return [json.loads(body)["i"] for _, _, msgs in fake.calls for body, _ in msgs]


def drained(lg: RocketMQLogger, replayed: int) -> dict[str, Any]:
    st: dict[str, Any] = wait_until(
        lambda: (
            (s := lg.stats())["replayed"] >= replayed
            and s["pending_spool_entries"] == 0
            and s["pending_entries"] == 0
            and s
        ),
        20,
        f"{replayed} spooled entries to be replayed",
    )
    return st


def test_outage_spools_then_replays_everything_once_in_order(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    fake = FakeProducer()
    fake.down = True
    lg = new(loggers, fake, tmp_path, max_retry_count=1)
    for i in range(3000):
        assert lg.log({"i": i})
    st = wait_until(
        lambda: (s := lg.stats())["spooled"] == 3000 and s["pending_entries"] == 0 and s,
        10,
        "every entry to reach the spool",
    )
    assert st["sent"] == 0 and sum(st["dropped"].values()) == 0
    assert st["pending_spool_entries"] == 3000 and st["pending_spool_bytes"] > 3000 * 8
    fake.down = False
    # Logged while the spool still holds entries: queued behind them, not ahead.
    for i in range(3000, 3500):
        assert lg.log({"i": i})
    assert lg.flush(10)  # the last 500 are now sent or spooled
    st = wait_until(
        lambda: (
            (s := lg.stats())["sent"] + s["replayed"] == 3500
            and s["pending_spool_entries"] == 0
            and s
        ),
        20,
        "every entry to be delivered",
    )
    assert delivered(fake) == list(range(3500))
    # Every accepted entry was sent, dropped or spooled; every spooled one was replayed.
    assert st["accepted"] == st["sent"] + sum(st["dropped"].values()) + st["spooled"]
    assert st["spooled"] == st["replayed"] + st["spool_dropped"] + st["pending_spool_entries"]
    assert st["pending_spool_bytes"] == 0
    assert os.listdir(tmp_path / "slot-000") and not [
        f for f in os.listdir(tmp_path / "slot-000") if f.endswith(".spool")
    ], "delivered segments are deleted"


def test_a_restarted_logger_replays_what_its_predecessor_left(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    down = FakeProducer()
    down.down = True
    first = new(loggers, down, tmp_path, inactive_timeout=60, max_retry_count=5, retry_delay=5)
    for i in range(1000):
        first.log({"i": i})
    # Closing with the broker away: what is still in memory goes to disk, not to "shutdown".
    assert first.close(timeout=1) is False
    # The sender waiting to retry writes its batch too, as it stops.
    st = wait_until(lambda: (s := first.stats())["spooled"] == 1000 and s, 10, "all spooled")
    assert st["dropped"]["shutdown"] == 0 and sum(st["dropped"].values()) == 0
    up = FakeProducer()
    second = new(loggers, up, tmp_path)
    st = drained(second, 1000)
    assert sorted(delivered(up)) == list(range(1000))
    assert len(delivered(up)) == 1000
    assert st["spool_corrupt"] == 0


def _segments(slot: Path) -> list[Path]:
    return sorted(slot.glob("seg-*.spool"))


def test_a_torn_last_record_is_skipped_and_counted(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    down = FakeProducer()
    down.down = True
    first = new(loggers, down, tmp_path)
    for i in range(50):
        first.log({"i": i})
    wait_until(lambda: first.stats()["spooled"] == 50, 10, "50 entries spooled")
    first.close(timeout=1)
    seg = _segments(tmp_path / "slot-000")[-1]
    # A crash in the middle of a write: the last record's bytes stop half way.
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 5)
    up = FakeProducer()
    second = new(loggers, up, tmp_path)
    st = drained(second, 49)
    assert sorted(delivered(up)) == list(range(49))
    assert st["spool_corrupt"] == 1
    # The torn tail was cut off: appending after it is clean.
    up.down = True
    for i in range(100, 110):
        second.log({"i": i})
    wait_until(lambda: second.stats()["spooled"] == 10, 10, "10 more entries spooled")
    up.down = False
    drained(second, 59)
    assert sorted(delivered(up)) == [*range(49), *range(100, 110)]


def test_a_record_failing_its_checksum_is_never_replayed(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    down = FakeProducer()
    down.down = True
    first = new(loggers, down, tmp_path)
    for i in range(20):
        first.log({"i": i, "pad": "x" * 20})
    wait_until(lambda: first.stats()["spooled"] == 20, 10, "20 entries spooled")
    first.close(timeout=1)
    seg = _segments(tmp_path / "slot-000")[0]
    data = bytearray(seg.read_bytes())
    at = data.index(b'{"i":7,')
    data[at + 5] = ord("9")  # entry 7 now claims to be entry 9: the checksum says otherwise
    seg.write_bytes(bytes(data))
    up = FakeProducer()
    second = new(loggers, up, tmp_path)
    st = wait_until(
        lambda: (s := second.stats())["pending_spool_entries"] == 0 and s["replayed"] == 19 and s,
        20,
        "19 good records replayed",
    )
    assert sorted(delivered(up)) == [i for i in range(20) if i != 7]
    assert st["spool_corrupt"] == 1


def test_a_full_spool_drops_its_oldest_segment_and_counts_it(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    fake = FakeProducer()
    fake.down = True
    lg = new(loggers, fake, tmp_path, max_message_size=1024, spool_max_bytes=64 * 1024)
    n = 2000  # about 100 KiB of records for a 64 KiB spool
    for i in range(n):
        lg.log({"i": i, "pad": "p" * 20})
    st = wait_until(
        lambda: (s := lg.stats())["spooled"] == n and s["pending_entries"] == 0 and s,
        10,
        "every entry to reach the spool",
    )
    assert st["spool_dropped"] > 0
    assert st["pending_spool_bytes"] <= 64 * 1024
    fake.down = False
    st = drained(lg, n - st["spool_dropped"])
    got = delivered(fake)
    assert len(got) == n - st["spool_dropped"]
    # The oldest went (except a batch the drainer had already taken): the newest all came,
    # in order, once.
    assert got == sorted(set(got))
    assert got[-500:] == list(range(n - 500, n))


def test_each_process_or_logger_gets_its_own_slot(
    loggers: list[RocketMQLogger], tmp_path: Path
) -> None:
    a = new(loggers, FakeProducer(), tmp_path)
    b = new(loggers, FakeProducer(), tmp_path)
    other = RocketMQLogger(
        NS, "other_topic", producer_factory=FakeProducer, spool_dir=str(tmp_path)
    )
    loggers.append(other)
    owners = {
        p.parent.name: json.loads(p.read_text()) for p in sorted(tmp_path.glob("slot-*/owner.json"))
    }
    assert owners == {
        "slot-000": {"name": "rocketmq logger", "topic": "t"},
        "slot-001": {"name": "rocketmq logger", "topic": "t"},
        "slot-002": {"name": "rocketmq logger", "topic": "other_topic"},
    }
    a.close()
    other.close()
    # A new logger of topic t takes the freed slot of t, never the other topic's.
    c = new(loggers, FakeProducer(), tmp_path)
    d = RocketMQLogger(NS, "third", producer_factory=FakeProducer, spool_dir=str(tmp_path))
    loggers.append(d)
    assert b.stats()["pending_spool_entries"] == 0
    slots = sorted(p.name for p in tmp_path.glob("slot-*"))
    assert slots == ["slot-000", "slot-001", "slot-002", "slot-003"]
    assert json.loads((tmp_path / "slot-003" / "owner.json").read_text())["topic"] == "third"
    del c


def test_spool_config_errors_name_the_attribute(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"^spool_dir: expected a usable directory"):
        RocketMQLogger(NS, "t", producer_factory=FakeProducer, spool_dir=str(blocker / "sub"))
    with pytest.raises(ConfigError, match=r"^spool_max_bytes: expected an integer >= "):
        RocketMQLogger(NS, "t", spool_dir=str(tmp_path), spool_max_bytes=1000)
    with pytest.raises(ConfigError, match=r"^spool_fsync_interval: expected a number >= 0"):
        RocketMQLogger(NS, "t", spool_dir=str(tmp_path), spool_fsync_interval=-1)
    with pytest.raises(ConfigError, match=r"^spool_dir: expected a directory path"):
        RocketMQLogger(NS, "t", spool_dir=12)


def test_a_forked_worker_takes_its_own_slot(loggers: list[RocketMQLogger], tmp_path: Path) -> None:
    """Pre-fork servers: the child must not write into the parent's locked slot."""
    fake = FakeProducer()
    fake.down = True
    lg = new(loggers, fake, tmp_path)
    parent_slot = lg._processor._spool.slot if lg._processor._spool else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            spool = lg._processor._spool
            for i in range(5):
                lg.log({"i": 100 + i})
            wait_until(lambda: lg.stats()["spooled"] == 5, 10, "the child's entries spooled")
            os.write(w, json.dumps({"slot": spool.slot if spool else None}).encode())
            lg.close(1)
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
    child_slot = json.loads(data)["slot"]
    assert parent_slot == str(tmp_path / "slot-000")
    assert child_slot == str(tmp_path / "slot-001")
    # The parent's slot is still its own, and the child's entries wait in the child's slot.
    lg.log({"i": 1})
    wait_until(lambda: lg.stats()["spooled"] == 1, 10, "the parent's entry spooled")
    up = FakeProducer()
    heir = RocketMQLogger(NS, "t", producer_factory=lambda: up, spool_dir=str(tmp_path))
    loggers.append(heir)
    drained(heir, 5)
    assert sorted(delivered(up)) == [100, 101, 102, 103, 104]
