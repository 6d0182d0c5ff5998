"""The disk spool against a real broker: 50k entries logged through an outage longer than the
retry window all arrive; a process killed with SIGKILL mid-spool loses nothing it had written,
and its successor replays it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmqfast.devcluster import DevCluster
from rmqfast.logger import RocketMQLogger

from .fakes import wait_until
from .remoting import create_topic
from .test_logger_acceptance import consume, new_topic

BROKER = "broker-a"


@pytest.fixture
def broker_back(lone_cluster: DevCluster) -> Iterator[DevCluster]:
    """The lone cluster; its broker is running again after the test whatever happened."""
    yield lone_cluster
    if BROKER not in lone_cluster.pids():
        lone_cluster.start_broker(BROKER)


def entry(i: int) -> dict[str, Any]:
    return {"i": i, "route": "/orders", "status": 200, "pad": "x" * 150}


def ids_of(bodies: list[bytes]) -> list[int]:
    """The `i` of every message; fails on anything that is not one of our entries."""
    out = []
    for body in bodies:
        doc = json.loads(body)
        assert doc["pad"] == "x" * 150, f"a message that is not a whole entry: {body[:80]!r}"
        out.append(doc["i"])
    return out


def log_paced(lg: RocketMQLogger, ids: range) -> None:
    """Log like a busy service would: never more than 4000 ahead of the logger's threads."""
    for i in ids:
        if lg.pending_entries >= 4000:
            wait_until(lambda: lg.pending_entries < 2000, 30, "the logger to catch up")
        assert lg.log(entry(i)), f"entry {i} refused: {lg.stats()['dropped']}"


def test_fifty_thousand_entries_survive_an_outage_longer_than_the_retry_window(
    broker_back: DevCluster, tmp_path: Path
) -> None:
    c = broker_back
    topic = new_topic("spool_outage")
    create_topic(c.brokers, c.namesrv_addr, topic)
    brokers = dict(c.brokers)
    with RocketMQLogger(
        [c.namesrv_addr],
        topic,
        spool_dir=str(tmp_path / "spool"),
        max_retry_count=2,
        retry_delay=0.2,  # the retry window: about half a second
        inactive_timeout=0.2,
    ) as lg:
        log_paced(lg, range(1000))
        assert lg.flush(30)
        assert lg.stats()["sent"] == 1000
        c.stop_broker(BROKER)
        t0 = time.monotonic()
        log_paced(lg, range(1000, 51000))
        st = wait_until(
            lambda: (
                (s := lg.stats())["pending_entries"] == 0
                and s["sent"] + s["spooled"] == 51000
                and s
            ),
            60,
            "every entry sent before the outage or spooled",
        )
        assert sum(st["dropped"].values()) == 0, st["dropped"]
        assert st["spooled"] == 50000
        c.start_broker(BROKER)
        outage = time.monotonic() - t0  # until the broker is registered again
        t1 = time.monotonic()
        st = wait_until(
            lambda: (
                (s := lg.stats())["replayed"] == s["spooled"]
                and s["pending_spool_entries"] == 0
                and s
            ),
            120,
            "the spool to be replayed",
        )
        replay = time.monotonic() - t1
        assert st["spool_dropped"] == 0 and st["spool_corrupt"] == 0
        assert st["pending_spool_bytes"] == 0
    ids = ids_of([m.body for m in consume(brokers, topic, 51000, exact=False, timeout=120)])
    duplicates = len(ids) - len(set(ids))
    print(
        f"outage {outage:.1f} s (retry window ~0.5 s), spool replayed {replay:.1f} s later, "
        f"{len(ids)} messages, {duplicates} duplicates"
    )
    assert set(ids) == set(range(51000))
    # At-least-once: a duplicate needs a send that timed out after the broker stored it.
    assert duplicates <= 1000, f"{duplicates} duplicates"


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from rmqfast.logger import RocketMQLogger
    ns, topic, spool = sys.argv[1:4]
    lg = RocketMQLogger([ns], topic, spool_dir=spool, max_retry_count=0,
                        inactive_timeout=0.05, batch_max_size=500, spool_fsync_interval=1)
    i = 0
    last = 0.0
    while True:
        while lg.pending_entries >= 2000:
            time.sleep(0.001)
        lg.log({"i": i, "route": "/orders", "status": 200, "pad": "x" * 150})
        i += 1
        now = time.monotonic()
        if now - last >= 0.05:
            last = now
            print(json.dumps({"logged": i, "spooled": lg.stats()["spooled"]}), flush=True)
    """
)


def test_a_process_killed_mid_spool_loses_nothing_it_wrote(
    broker_back: DevCluster, tmp_path: Path
) -> None:
    c = broker_back
    topic = new_topic("spool_kill")
    create_topic(c.brokers, c.namesrv_addr, topic)
    brokers = dict(c.brokers)
    spool = str(tmp_path / "spool")
    c.stop_broker(BROKER)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, c.namesrv_addr, topic, spool],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    spooled = logged = 0
    deadline = time.monotonic() + 60
    try:
        # Kill it while it is still logging and spooling, well past 20k entries on disk.
        for line in child.stdout:
            rec = json.loads(line)
            spooled, logged = rec["spooled"], rec["logged"]
            if spooled >= 20000:
                break
            assert time.monotonic() < deadline, f"only {spooled} spooled after 60 s"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert spooled >= 20000
    c.start_broker(BROKER)
    with RocketMQLogger([c.namesrv_addr], topic, spool_dir=spool, inactive_timeout=0.2) as lg:
        st = lg.stats()
        # What the killed process had written is on disk (no fsync needed: the OS has it).
        # (The drainer may already have delivered some.)
        inherited = st["pending_spool_entries"] + st["replayed"]
        assert inherited >= spooled
        st = wait_until(
            lambda: (s := lg.stats())["pending_spool_entries"] == 0 and s,
            120,
            "the predecessor's spool to be replayed",
        )
        assert st["replayed"] == inherited
        assert st["spool_corrupt"] <= 1  # at most the record the kill cut short
    ids = ids_of([m.body for m in consume(brokers, topic, inherited, exact=False, timeout=120)])
    duplicates = len(ids) - len(set(ids))
    print(
        f"killed after logging {logged}, {spooled} reported spooled, {inherited} found on disk, "
        f"{len(set(ids))} delivered, {duplicates} duplicates, corrupt {st['spool_corrupt']}"
    )
    assert len(set(ids)) == inherited
    # At least once: a send that timed out after the broker stored it goes again.
    assert duplicates <= 500, f"{duplicates} duplicates"
    assert max(ids) < logged + 2000  # nothing made up
