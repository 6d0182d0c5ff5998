"""RocketMQ remoting codec: frames, headers, properties, batches, stored messages, routes.

Everything here is implemented in Rust (`rmqfast._core`); this module is the stable face.
"""

from __future__ import annotations

from enum import IntEnum

from rmqfast._core import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    BatchMessage,
    ClusterInfo,
    FrameDecoder,
    FrameError,
    MessageError,
    MessageExt,
    RemotingCommand,
    RouteError,
    TopicRouteData,
    decode,
    decode_batch,
    decode_messages,
    decode_properties,
    encode_batch,
    encode_properties,
    request_codes,
    response_codes,
    view,
)

RequestCode = IntEnum("RequestCode", request_codes())  # type: ignore[misc]
"""RocketMQ's request codes, with Java's names (RequestCode.java)."""

ResponseCode = IntEnum("ResponseCode", response_codes())  # type: ignore[misc]
"""RocketMQ's response codes, with Java's names (ResponseCode.java)."""

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FLAG_ONEWAY",
    "FLAG_RESPONSE",
    "BatchMessage",
    "ClusterInfo",
    "FrameDecoder",
    "FrameError",
    "MessageError",
    "MessageExt",
    "RemotingCommand",
    "RequestCode",
    "ResponseCode",
    "RouteError",
    "TopicRouteData",
    "decode",
    "decode_batch",
    "decode_messages",
    "decode_properties",
    "encode_batch",
    "encode_properties",
    "view",
]
