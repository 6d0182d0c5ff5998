"""Test doubles shared by the test files: a fake remoting server, topic routes, and waiting.

`FakeServer` stands in for a name server or a broker on loopback; `topic_route` builds the
route a name server hands out; `wait_until` is the one way a test waits for something.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from rmqfast.codec import (
    FLAG_RESPONSE,
    FrameDecoder,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRouteData,
)

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------
# waiting


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.01
) -> T:
    """Polls `condition` every `interval` s until it returns something truthy, and returns that.

    An exception from `condition` counts as "not yet" (a server may still be coming up); the
    last one is reported if `timeout` s pass first, which fails the test.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
        except Exception as e:
            last_error = e
        else:
            if value:
                return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f"; last error: {last_error!r}" if last_error is not None else ""
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}{detail}"
            ) from last_error
        time.sleep(min(interval, remaining))


# ------------------------------------------------------------------------------------------------
# routes


def topic_route(brokers: Mapping[str, str]) -> TopicRouteData:
    """The route of a topic on `brokers` (broker name -> master address), in cluster "C", with
    4 read/write queues on each broker, as a name server answers GET_ROUTEINFO_BY_TOPIC."""
    return TopicRouteData.from_json(
        json.dumps(
            {
                "brokerDatas": [
                    {"brokerName": name, "cluster": "C", "brokerAddrs": {"0": addr}}
                    for name, addr in brokers.items()
                ],
                "queueDatas": [
                    {"brokerName": name, "perm": 6, "readQueueNums": 4, "writeQueueNums": 4}
                    for name in brokers
                ],
            }
        )
    )


# ------------------------------------------------------------------------------------------------
# the fake remoting server


class Connection:
    """One client connection of a FakeServer; handlers answer, write or close through it."""

    def __init__(self, server: FakeServer, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self._send_lock = threading.Lock()  # frames from a timer and the serving thread whole

    def send(self, data: bytes) -> None:
        """Writes raw bytes (any frame, or garbage); counted in the server's `written`."""
        with self._send_lock:
            self.sock.sendall(data)
        self.server._count_written(len(data))

    def respond(self, request: RemotingCommand, response: RemotingCommand) -> None:
        """Sends `response` as the answer to `request` (its opaque, the response flag)."""
        response.opaque = request.opaque
        response.flag = FLAG_RESPONSE
        self.send(response.encode("json"))

    def respond_later(
        self, delay: float, request: RemotingCommand, response: RemotingCommand
    ) -> None:
        """Answers `request` after `delay` s, unless the connection or the server is gone."""

        def later() -> None:
            with contextlib.suppress(OSError):
                self.respond(request, response)

        self.server._start_timer(delay, later)

    def close(self) -> None:
        """Closes the connection both ways, as a broker that goes away does."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


Handler = Callable[[Connection, RemotingCommand], RemotingCommand | None]
"""Decides what a request gets: the response to send at once, or None (the handler answered
through the connection itself, or never answers)."""


def silent(_conn: Connection, _request: RemotingCommand) -> None:
    """Takes every request and never answers it."""


def name_server(brokers: Mapping[str, str]) -> Handler:
    """A name server that routes every topic to `brokers` (see `topic_route`) and answers any
    other request REQUEST_CODE_NOT_SUPPORTED."""
    body = topic_route(brokers).to_json()

    def handler(_conn: Connection, request: RemotingCommand) -> RemotingCommand:
        if request.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return RemotingCommand(0, body=body)
        remark = f"request code {request.code} is not supported by this fake name server"
        return RemotingCommand(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, remark=remark)

    return handler


class FakeServer:
    """A RocketMQ remoting server on loopback, one thread per connection.

    Every request is recorded in `requests`, in arrival order, then given to `handler`.
    Bounded: at most `max_connections` open connections (one more is closed on accept and
    reported), frames of at most `max_frame_size` bytes, and `close()` (also on leaving a
    `with` block) ends every connection, timer and thread within `shutdown_timeout` s. A
    handler that raised, a refused connection or a thread that did not end fails the test at
    `close()`.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_connections: int = 32,
        max_frame_size: int = 16 * 1024 * 1024,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.handler = handler
        self.max_connections = max_connections
        self.max_frame_size = max_frame_size
        self.shutdown_timeout = shutdown_timeout
        self.requests: list[RemotingCommand] = []
        self.errors: list[str] = []
        self.written = 0  # bytes sent to clients, over every connection
        self._lock = threading.Lock()
        self._closed = False
        self._connections: list[Connection] = []
        self._threads: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._start_thread("accept", self._accept)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        # Leaving on an exception: that one is the failure to report, not this server's.
        self.close(check=exc_type is None)

    def _start_thread(self, name: str, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(
            target=target, args=args, name=f"FakeServer {self.addr} {name}", daemon=True
        )
        self._threads = [*(x for x in self._threads if x.is_alive()), t]
        t.start()

    def _start_timer(self, delay: float, action: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            timer = threading.Timer(delay, action)
            timer.daemon = True
            self._timers = [*(x for x in self._timers if x.is_alive()), timer]
            timer.start()

    def _count_written(self, n: int) -> None:
        with self._lock:
            self.written += n

    def _accept(self) -> None:
        while True:
            try:
                sock, (host, port) = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                peer = f"{host}:{port}"
                refused = self._closed or len(self._connections) >= self.max_connections
                if not self._closed and refused:
                    self.errors.append(
                        f"connection from {peer} refused: max_connections is {self.max_connections}"
                    )
                if not refused:
                    conn = Connection(self, sock, peer)
                    self._connections.append(conn)
                    self._start_thread(f"serve {peer}", self._serve, conn)
            if refused:
                sock.close()

    def _serve(self, conn: Connection) -> None:
        decoder = FrameDecoder(max_frame_size=self.max_frame_size)
        try:
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    return
                for request in decoder.feed(data):
                    self.requests.append(request)
                    response = self.handler(conn, request)
                    if response is not None:
                        conn.respond(request, response)
        except OSError:
            return  # the client or close() ended the connection
        except Exception as e:
            self.errors.append(f"serving {conn.peer} failed: {e!r}")
        finally:
            conn.sock.close()
            with self._lock:
                self._connections.remove(conn)

    def close(self, check: bool = True) -> None:
        """Stops listening, ends every connection and timer, and waits for the threads; then,
        with `check`, fails if a handler raised, a connection was refused or a thread hangs."""
        with self._lock:
            first = not self._closed
            self._closed = True
            connections, timers = list(self._connections), list(self._timers)
        if first:
            # shutdown() first: close() alone does not wake a thread blocked in accept().
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            for timer in timers:
                timer.cancel()
            for conn in connections:
                conn.close()
            deadline = time.monotonic() + self.shutdown_timeout
            for t in [*self._threads, *timers]:
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    self.errors.append(
                        f"{t.name} still running {self.shutdown_timeout:g} s after close()"
                    )
        if check and self.errors:
            raise AssertionError(f"fake server {self.addr}: " + "; ".join(self.errors))
