"""An in-process producer with rmqfast._core.Producer's interface, for the logger unit tests."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest


class FakeProducerError(Exception):
    """Like rmqfast._core.ProducerError: `code` and `retryable`."""

    def __init__(self, message: str, retryable: bool = True, code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class FakeProducer:
    """Records what is sent. `fail` calls fail first; while `down`, every call fails;
    `gate` (an Event) blocks each call until set."""

    def __init__(
        self,
        fail: int = 0,
        retryable: bool = True,
        gate: threading.Event | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, list[tuple[bytes, dict[str, str] | None]]]] = []
        self.attempts = 0
        self.fail = fail
        self.retryable = retryable
        self.down = False
        self.gate = gate
        self.closed = False
        self.attempt_times: list[float] = []
        self.in_call = 0
        self.max_in_call = 0

    def _call(self, kind: str, topic: str, msgs: list[tuple[bytes, dict[str, str] | None]]) -> Any:
        with self.lock:
            self.in_call += 1
            self.max_in_call = max(self.max_in_call, self.in_call)
        try:
            return self._attempt(kind, topic, msgs)
        finally:
            with self.lock:
                self.in_call -= 1

    def _attempt(
        self, kind: str, topic: str, msgs: list[tuple[bytes, dict[str, str] | None]]
    ) -> Any:
        if self.gate is not None:
            self.gate.wait()
        with self.lock:
            self.attempts += 1
            self.attempt_times.append(time.monotonic())
            if self.down:
                raise FakeProducerError("broker down", retryable=self.retryable, code=1)
            if self.fail > 0:
                self.fail -= 1
                raise FakeProducerError("scripted failure", retryable=self.retryable, code=1)
            self.calls.append((kind, topic, msgs))
        return object()

    def send(
        self,
        topic: str,
        body: bytes,
        keys: str | None = None,
        tags: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Any:
        props: dict[str, str] = {}
        if keys is not None:
            props["KEYS"] = keys
        if tags is not None:
            props["TAGS"] = tags
        return self._call("send", topic, [(body, props or None)])

    def send_batch(self, topic: str, messages: list[tuple[bytes, dict[str, str] | None]]) -> Any:
        return self._call("batch", topic, list(messages))

    def close(self) -> None:
        self.closed = True

    # -- views -----------------------------------------------------------------------------

    def messages(self) -> list[tuple[bytes, dict[str, str] | None]]:
        """Every message delivered, in order."""
        with self.lock:
            return [m for _, _, msgs in self.calls for m in msgs]

    def bodies(self) -> list[Any]:
        """Every delivered message body, JSON-decoded."""
        return [json.loads(b) for b, _ in self.messages()]

    def entries(self) -> list[Any]:
        """Every delivered entry (array bodies flattened)."""
        out: list[Any] = []
        for body in self.bodies():
            out.extend(body if isinstance(body, list) else [body])
        return out


def test_fake_producer_fails_as_scripted() -> None:
    p = FakeProducer(fail=1, retryable=False)
    with pytest.raises(FakeProducerError) as e:
        p.send("t", b"{}")
    assert e.value.retryable is False
    p.send("t", b'{"a":1}', keys="k", tags="t")
    p.send_batch("t", [(b"[1]", None), (b"2", {"KEYS": "x"})])
    assert p.attempts == 3
    assert p.messages() == [
        (b'{"a":1}', {"KEYS": "k", "TAGS": "t"}),
        (b"[1]", None),
        (b"2", {"KEYS": "x"}),
    ]
    assert p.entries() == [{"a": 1}, 1, 2]
