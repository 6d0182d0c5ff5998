"""WSGI middleware (Flask, Django, any PEP 3333 app): one entry per request.

The entry is finished when the server closes the response iterable, so streamed responses are
measured to their last byte.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rmqfast.logger.records import WSGIRecord, chunk_framing

if TYPE_CHECKING:
    from rmqfast.logger.core import RocketMQLogger

__all__ = ["DjangoRouteMiddleware", "WSGIMiddleware"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_time = time.time


class WSGIMiddleware:
    """Logs every request of the WSGI `app` to `logger`."""

    def __init__(self, app: WSGIApp, logger: RocketMQLogger) -> None:
        self.app = app
        self.logger = logger
        self._put = logger.enqueue

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rec = WSGIRecord(environ, _time())
        logger = self.logger
        tee = None
        if logger.capture_request_body and "wsgi.input" in environ:
            limit_req = logger.config.max_req_body_bytes
            tee = environ["wsgi.input"] = _TeeInput(environ["wsgi.input"], rec, limit_req)
        limit = logger.config.max_resp_body_bytes if logger.capture_response_body else 0
        if limit:
            rec.resp_body = []

        def logging_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], Any]:
            rec.status = status
            rec.resp_headers = headers
            # Flask's request (for the matched url_rule) is gone from environ once the
            # response iterable is returned.
            rec.request = environ.get("werkzeug.request")
            if exc_info is not None:
                write = start_response(status, headers, exc_info)
            else:
                write = start_response(status, headers)

            def counting_write(data: bytes) -> Any:
                _count(rec, data, limit)
                return write(data)

            return counting_write

        try:
            result = self.app(environ, logging_start_response)
        except BaseException:
            rec.end = _time()
            self._put(rec)
            raise
        if tee is not None:
            # Like APISIX, which reads the body itself: what the app left unread is read now,
            # up to the limit, before the response goes out.
            tee.read_rest(environ)
        return _ClosingBody(result, rec, self._put, limit)


def _count(rec: WSGIRecord, data: bytes, limit: int) -> None:
    kept = rec.body_bytes
    rec.body_bytes = kept + len(data)
    rec.chunk_framing += chunk_framing(len(data))
    if limit and kept < limit and rec.resp_body is not None:
        rec.resp_body.append(bytes(data[: limit - kept]))


class _ClosingBody:
    """The app's iterable, counted as the server consumes it; logs the entry on close()."""

    __slots__ = ("_done", "_it", "_limit", "_put", "_rec")

    def __init__(
        self, it: Iterable[bytes], rec: WSGIRecord, put: Callable[[Any], bool], limit: int
    ) -> None:
        self._it = it
        self._rec = rec
        self._put = put
        self._limit = limit
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        rec = self._rec
        limit = self._limit
        for chunk in self._it:
            if limit:
                _count(rec, chunk, limit)
            else:
                rec.body_bytes += len(chunk)
                rec.chunk_framing += chunk_framing(len(chunk))
            yield chunk

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            self._rec.end = _time()
            self._put(self._rec)


class _TeeInput:
    """wsgi.input that keeps the first `limit` bytes the application reads."""

    def __init__(self, stream: Any, rec: WSGIRecord, limit: int) -> None:
        self._stream = stream
        self._rec = rec
        self._limit = limit
        rec.req_body = []
        rec.req_received = 0

    def _keep(self, data: bytes) -> bytes:
        rec = self._rec
        kept = rec.req_received
        rec.req_received = kept + len(data)
        if data and kept < self._limit and rec.req_body is not None:
            rec.req_body.append(bytes(data[: self._limit - kept]))
        return data

    def read_rest(self, environ: dict[str, Any]) -> None:
        """Read what the app left of the body, up to the limit (never past the body's end)."""
        rec = self._rec
        cl = str(environ.get("CONTENT_LENGTH") or "")
        if cl.isdigit():
            left = int(cl) - rec.req_received
        elif environ.get("wsgi.input_terminated"):
            left = self._limit  # the server ends the stream at the body's end
        else:
            return  # reading on could block: no length and no end of stream promised
        left = min(left, self._limit - rec.req_received)
        try:
            while left > 0:
                data = self._stream.read(min(left, 65536))
                if not data:
                    break
                self._keep(data)
                left -= len(data)
        except (OSError, ValueError):
            pass  # the client went away; log what there is

    def read(self, size: int = -1) -> bytes:
        return self._keep(self._stream.read(size) if size is not None else self._stream.read())

    def readline(self, size: int = -1) -> bytes:
        return self._keep(self._stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._keep(line) for line in self._stream.readlines(hint)]

    def readinto(self, b: bytearray | memoryview) -> int:
        # Werkzeug's LimitedStream prefers readinto when the stream has it.
        inner = getattr(self._stream, "readinto", None)
        if inner is not None:
            n = int(inner(b) or 0)
            rec = self._rec
            kept = rec.req_received
            rec.req_received = kept + n
            if n and kept < self._limit and rec.req_body is not None:
                rec.req_body.append(bytes(b[: min(n, self._limit - kept)]))
            return n
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._keep(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class DjangoRouteMiddleware:
    """Django middleware that exposes the matched URL pattern as $route / route_id, and its
    parameters as $uri_param_<name>.

    Add "rmqfast.logger.wsgi.DjangoRouteMiddleware" to MIDDLEWARE.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        environ = getattr(request, "environ", None)
        if route and isinstance(environ, dict):
            environ["rmqfast.route"] = route
            kwargs = getattr(match, "kwargs", None)
            if kwargs:
                environ["rmqfast.path_params"] = kwargs
        return response
