"""The producer side of a logger: what it needs of a producer, and the sink that builds the
producer lazily on the sender thread and sends batches through it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from rmqfast.logger.batch import Message, keep_forever
from rmqfast.logger.config import LoggerConfig

__all__ = ["PRODUCER_OPTIONS", "PermanentError", "ProducerLike", "Sink"]

PRODUCER_OPTIONS = frozenset(
    {
        "producer_group",
        "timeout",
        "use_tls",
        "tls_ca_file",
        "tls_verify",
        "tls_insecure_skip_verify",
        "tls_server_name",
        "access_key",
        "secret_key",
        "retry_times",
        "route_refresh_interval",
        "max_message_size",
        "auto_create_topic",
    }
)
"""Keyword arguments of rmqfast.producer.Producer that producer_options may set."""


class ProducerLike(Protocol):
    """What the logger needs of a producer (rmqfast.producer.Producer has it)."""

    def send(
        self,
        topic: str,
        body: bytes,
        keys: str | None = None,
        tags: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Any:
        """Send one message; raise on failure (`retryable` False: do not retry)."""

    def send_batch(self, topic: str, messages: list[Message]) -> Any:
        """Send messages as one RocketMQ batch; raise on failure."""

    def close(self) -> None:
        """Release connections."""


class Sink:
    """The producer side: built lazily on the sender thread, rebuilt after fork."""

    def __init__(self, cfg: LoggerConfig, factory: Callable[[], ProducerLike] | None) -> None:
        self.cfg = cfg
        self.topic = cfg.topic
        self.factory = factory
        self.producer: ProducerLike | None = None
        self.lock = threading.Lock()

    def _make(self) -> ProducerLike:
        if self.factory is not None:
            return self.factory()
        try:
            from rmqfast.producer import Producer
        except ImportError as e:
            raise PermanentError(f"cannot import rmqfast.producer.Producer: {e}") from e
        try:
            p: ProducerLike = Producer(**self.cfg.producer_kwargs())
        except (TypeError, ValueError) as e:
            raise PermanentError(f"cannot create the producer: {e}") from e
        return p

    def send(self, messages: list[Message]) -> None:
        p = self.producer
        if p is None:
            with self.lock:
                if self.producer is None:
                    self.producer = self._make()
                p = self.producer
        if len(messages) == 1:
            body, props = messages[0]
            if props:
                p.send(self.topic, body, keys=props.get("KEYS"), tags=props.get("TAGS"))
            else:
                p.send(self.topic, body)
        else:
            p.send_batch(self.topic, messages)

    def close(self) -> None:
        with self.lock:
            p, self.producer = self.producer, None
        if p is not None:
            p.close()

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        p, self.producer = self.producer, None
        if p is not None:
            keep_forever(p)


class PermanentError(Exception):
    """A failure no retry can fix (the producer cannot be created)."""

    retryable = False
