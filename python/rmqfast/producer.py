"""The RocketMQ producer, implemented in Rust (`rmqfast._core`); this module is the stable face.

    from rmqfast.producer import Producer
    result = Producer(["127.0.0.1:9876"]).send("topic", b"body", keys="k1", tags="t")

Route lookup with name-server failover and periodic refresh, round-robin queue selection,
SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE, per-request timeouts, retry on another broker, TLS and
AK/SK signing. Every send releases the GIL; `send_async` and `send_batch_async` are awaitable
from asyncio. A failed send raises `ProducerError` (with `code` and `retryable`); a successful
one returns a `SendResult` per request. `auto_create_topic=True` sends to a topic nobody created
on the route of the brokers' `TBW102` template, so that brokers with `autoCreateTopicEnable=true`
create it on the first message (as Java's DefaultMQProducer does).
"""

from __future__ import annotations

from rmqfast._core import Producer, ProducerError, SendResult

__all__ = ["Producer", "ProducerError", "SendResult"]
