"""A small blocking RocketMQ remoting client on `rmqfast.codec`, for the dev cluster and tests.

Frames, headers and bodies are encoded and decoded by the Rust codec; this module only owns the
socket: connect with a timeout, send a request, wait for the response carrying its opaque.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rmqfast._core import split_host_port
from rmqfast.codec import (
    FLAG_ONEWAY,
    ClusterInfo,
    FrameDecoder,
    RemotingCommand,
    RequestCode,
    ResponseCode,
)

from .errors import DevClusterError

__all__ = [
    "LOOPBACK",
    "RemotingClient",
    "call",
    "create_topic_fields",
    "query_cluster_info",
    "registered_brokers",
    "split_addr",
]

LOOPBACK = "127.0.0.1"

_RQ_GET_BROKER_CLUSTER_INFO = int(RequestCode["GET_BROKER_CLUSTER_INFO"])
_RS_SUCCESS = int(ResponseCode["SUCCESS"])

# Opaques are unique per process, so a late answer to an abandoned request never matches.
_opaques = itertools.count(1)


def split_addr(addr: str) -> tuple[str, int]:
    """(host, port) of `host:port` (`_core.split_host_port`, the one parser); a bare `:port`
    means 127.0.0.1."""
    addr = addr.strip()
    return split_host_port(LOOPBACK + addr if addr.startswith(":") else addr)


def create_topic_fields(topic: str, queues: int = 4) -> dict[str, str]:
    """extFields of an UPDATE_AND_CREATE_TOPIC request for a plain read-write topic."""
    return {
        "topic": topic,
        "defaultTopic": "TBW102",
        "readQueueNums": str(queues),
        "writeQueueNums": str(queues),
        "perm": "6",
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": "0",
        "order": "false",
    }


class RemotingClient:
    """One TCP connection speaking RocketMQ remoting, request by request."""

    def __init__(self, addr: str, timeout: float = 10.0) -> None:
        self.addr = addr
        self.timeout = timeout
        # Public so that a caller may wrap it (tests put TLS around it).
        self.sock: socket.socket = socket.create_connection(split_addr(addr), timeout=timeout)
        self._decoder = FrameDecoder()

    def __enter__(self) -> RemotingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        serialize_type: str = "json",
        timeout: float | None = None,
    ) -> RemotingCommand:
        """Send a request and return the response carrying its opaque (other frames are
        dropped); raise TimeoutError if none arrives within `timeout` (default: the client's)."""
        opaque = next(_opaques)
        limit = self.timeout if timeout is None else timeout
        self._send(code, ext_fields, body, serialize_type, opaque, 0, limit)
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no response to request code {code} (opaque {opaque}) from {self.addr} "
                    f"within {limit:g} s"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue  # the deadline check above names the request
            if not data:
                raise ConnectionError(
                    f"{self.addr} closed the connection before answering request code {code}"
                )
            for cmd in self._decoder.feed(data):
                if cmd.is_response and cmd.opaque == opaque:
                    return cmd

    def oneway(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        serialize_type: str = "json",
        timeout: float | None = None,
    ) -> None:
        """Send a request flagged oneway: the server sends no response."""
        limit = self.timeout if timeout is None else timeout
        self._send(code, ext_fields, body, serialize_type, next(_opaques), FLAG_ONEWAY, limit)

    def _send(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None,
        body: bytes,
        serialize_type: str,
        opaque: int,
        flag: int,
        timeout: float,
    ) -> None:
        cmd = RemotingCommand(code, dict(ext_fields or {}), body=body, opaque=opaque, flag=flag)
        self.sock.settimeout(timeout)
        self.sock.sendall(cmd.encode(serialize_type))


def call(
    addr: str,
    code: int,
    ext_fields: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 3.0,
) -> RemotingCommand:
    """One request on a connection of its own (connect, request, close); `timeout` bounds
    the connect and the wait for the response each."""
    with RemotingClient(addr, timeout=timeout) as client:
        return client.request(code, ext_fields, body)


def _cluster_info(namesrv: str, timeout: float) -> ClusterInfo | None:
    r = call(namesrv, _RQ_GET_BROKER_CLUSTER_INFO, timeout=timeout)
    if r.code != _RS_SUCCESS:
        raise DevClusterError(
            f"GET_BROKER_CLUSTER_INFO to {namesrv} answered code {r.code}: {r.remark}"
        )
    # A name server that knows no broker answers without a body.
    return ClusterInfo.from_json(r.body) if r.body else None


def query_cluster_info(namesrv: str, timeout: float = 3.0) -> dict[str, Any]:
    """Ask one name server for GET_BROKER_CLUSTER_INFO (106); raises OSError if unreachable."""
    info = _cluster_info(namesrv, timeout)
    if info is None:
        return {"brokerAddrTable": {}, "clusterAddrTable": {}}
    # Standard JSON (integer keys quoted), as the name server's fastjson would be read.
    out: dict[str, Any] = json.loads(info.to_json())
    return out


def registered_brokers(namesrv: str, timeout: float = 3.0) -> dict[str, str]:
    """Return broker name -> master address (brokerId 0) as one name server knows them."""
    info = _cluster_info(namesrv, timeout)
    if info is None:
        return {}
    return {name: ids[0] for name, ids in info.broker_addrs().items() if ids.get(0)}
