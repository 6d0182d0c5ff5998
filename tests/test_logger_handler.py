"""LoggingHandler: structured records, never blocking, never feeding on its own records."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest

from rmqfast.logger import LoggingHandler, RocketMQLogger

from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]


@pytest.fixture
def setup() -> Iterator[tuple[RocketMQLogger, FakeProducer, logging.Logger, LoggingHandler]]:
    fake = FakeProducer()
    lg = RocketMQLogger(NS, "t", producer_factory=lambda: fake, inactive_timeout=60)
    handler = LoggingHandler(lg)
    app_log = logging.getLogger("app.handler_test")
    app_log.setLevel(logging.DEBUG)
    app_log.propagate = False
    app_log.addHandler(handler)
    yield lg, fake, app_log, handler
    app_log.removeHandler(handler)
    lg.close(2)


def test_records_are_structured(
    setup: tuple[RocketMQLogger, FakeProducer, logging.Logger, LoggingHandler],
) -> None:
    lg, fake, app_log, _ = setup
    app_log.info("user %s logged in", "ann", extra={"user_id": 7, "obj": object()})
    try:
        raise KeyError("k")
    except KeyError:
        app_log.exception("failed")
    assert lg.flush(5)
    first, second = fake.entries()
    assert first["message"] == "user ann logged in"
    assert first["level"] == "INFO"
    assert first["logger"] == "app.handler_test"
    assert first["function"] == "test_records_are_structured"
    assert first["module"] == "test_logger_handler"
    assert isinstance(first["line"], int) and first["file"].endswith("test_logger_handler.py")
    assert first["thread"] == threading.current_thread().name
    assert abs(first["timestamp"] - time.time()) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", first["time"])
    assert first["extra"]["user_id"] == 7
    assert first["extra"]["obj"].startswith("<object object at")
    assert "exception" not in first
    assert second["level"] == "ERROR"
    assert "KeyError: 'k'" in second["exception"]
    assert "Traceback" in second["exception"]


def test_formatter_is_used_for_the_message(
    setup: tuple[RocketMQLogger, FakeProducer, logging.Logger, LoggingHandler],
) -> None:
    lg, fake, app_log, handler = setup
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    app_log.warning("hi")
    assert lg.flush(5)
    assert fake.entries()[0]["message"] == "[WARNING] hi"


def test_own_records_are_not_sent(
    setup: tuple[RocketMQLogger, FakeProducer, logging.Logger, LoggingHandler],
) -> None:
    lg, fake, _, handler = setup
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("rmqfast.logger").warning("drop summary")
        logging.getLogger("rmqfast").warning("other")
        record = logging.LogRecord("thirdparty", logging.WARNING, __file__, 1, "x", None, None)
        record.threadName = "rmqfast-logger-sender[x]"
        handler.handle(record)
        logging.getLogger("rmqfastish").warning("not ours")
    finally:
        root.removeHandler(handler)
    assert lg.flush(5)
    assert [e["message"] for e in fake.entries()] == ["not ours"]


def test_handler_never_blocks(
    setup: tuple[RocketMQLogger, FakeProducer, logging.Logger, LoggingHandler],
) -> None:
    gate = threading.Event()
    blocked = FakeProducer(gate=gate)
    lg = RocketMQLogger(
        NS, "t", producer_factory=lambda: blocked, batch_max_size=1, max_pending_entries=2
    )
    handler = LoggingHandler(lg)
    log = logging.getLogger("app.blocking_test")
    log.propagate = False
    log.addHandler(handler)
    try:
        t = time.monotonic()
        for i in range(200):
            log.warning("m %d", i)
        assert time.monotonic() - t < 2.0
        s = lg.stats()
        assert s["accepted"] == 2 and s["dropped"]["queue_full"] == 198
    finally:
        gate.set()
        log.removeHandler(handler)
        lg.close(2)
