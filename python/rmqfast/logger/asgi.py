"""Pure ASGI middleware: one log entry per HTTP request, built off the event loop.

On the request path it stores a reference to the scope, the response status and headers, byte
counts and two timestamps, then queues that record without waiting. Lifespan and websocket
scopes pass through untouched, except that the logger is flushed (in a worker thread) before
the application reports `lifespan.shutdown.complete`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from rmqfast.logger.records import ASGIRecord, chunk_framing

if TYPE_CHECKING:
    from rmqfast.logger.core import RocketMQLogger

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_time = time.time


class ASGIMiddleware:
    """Logs every HTTP request of `app` to `logger` (Starlette, FastAPI, any ASGI 3 app)."""

    def __init__(
        self,
        app: ASGIApp,
        logger: RocketMQLogger,
        *,
        flush_on_shutdown: bool = True,
        shutdown_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.logger = logger
        self.flush_on_shutdown = flush_on_shutdown
        self.shutdown_timeout = (
            logger.config.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self._put = logger.enqueue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.flush_on_shutdown:
                await self.app(scope, receive, self._lifespan_send(send))
                return
            await self.app(scope, receive, send)
            return
        rec = ASGIRecord(scope, _time())
        logger = self.logger
        if logger.capture_request_body:
            body = _RequestBody(receive, rec, logger.config.max_req_body_bytes)
            receive = body.receive
            # Like APISIX, which reads the body itself: if the app answers without having read
            # it, the body (up to the limit) is read before the response starts, and handed to
            # the app should it ask afterwards.
            send = body.reading_before_start(send)
        if logger.capture_response_body:
            send_wrapper = _capturing_send(send, rec, logger.config.max_resp_body_bytes)
        else:

            async def send_wrapper(message: Message) -> None:
                t = message["type"]
                if t == "http.response.body":
                    n = len(message.get("body", b""))
                    rec.body_bytes += n
                    rec.chunk_framing += chunk_framing(n)
                elif t == "http.response.start":
                    rec.status = message["status"]
                    rec.resp_headers = _keep_headers(message)
                elif t == "http.response.pathsend":
                    rec.pathsend = message.get("path")
                await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            rec.end = _time()
            self._put(rec)

    def _lifespan_send(self, send: Send) -> Send:
        logger = self.logger
        timeout = self.shutdown_timeout

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, logger.flush, timeout)
            await send(message)

        return lifespan_send


def _keep_headers(message: Message) -> Any:
    headers = message.get("headers", ())
    if type(headers) is not list and type(headers) is not tuple:
        # Any iterable is allowed; the server may consume a one-shot one before we read it.
        headers = message["headers"] = list(headers)
    return headers


class _RequestBody:
    """The request body, kept up to `limit` bytes as the app reads it, or read ahead of the
    response when the app never asks for it."""

    __slots__ = ("_chunks", "_done", "_held", "_limit", "_rec", "_receive")

    def __init__(self, receive: Receive, rec: ASGIRecord, limit: int) -> None:
        self._receive = receive
        self._rec = rec
        self._limit = limit
        self._chunks: list[bytes] = []
        rec.req_body = self._chunks
        rec.req_received = 0
        self._done = False  # the last body message (or a disconnect) has been seen
        self._held: list[Message] = []  # read ahead, not yet given to the app

    def _keep(self, message: Message) -> Message:
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                rec = self._rec
                kept = rec.req_received
                rec.req_received = kept + len(body)
                if kept < self._limit:
                    self._chunks.append(bytes(body[: self._limit - kept]))
            if not message.get("more_body", False):
                self._done = True
        else:
            self._done = True
        return message

    async def receive(self) -> Message:
        if self._held:
            return self._held.pop(0)
        return self._keep(await self._receive())

    def reading_before_start(self, send: Send) -> Send:
        async def send_after_reading(message: Message) -> None:
            if message["type"] == "http.response.start":
                while not self._done and self._rec.req_received < self._limit:
                    self._held.append(self._keep(await self._receive()))
            await send(message)

        return send_after_reading


def _capturing_send(send: Send, rec: ASGIRecord, limit: int) -> Send:
    rec.resp_body = chunks = []

    async def capturing_send(message: Message) -> None:
        t = message["type"]
        if t == "http.response.body":
            body = message.get("body", b"")
            kept = rec.body_bytes
            rec.body_bytes = kept + len(body)
            rec.chunk_framing += chunk_framing(len(body))
            if body and kept < limit:
                chunks.append(bytes(body[: limit - kept]))
        elif t == "http.response.start":
            rec.status = message["status"]
            rec.resp_headers = _keep_headers(message)
        elif t == "http.response.pathsend":
            rec.pathsend = message.get("path")
        await send(message)

    return capturing_send
