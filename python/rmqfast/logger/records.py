"""What the middlewares capture per request, and its normalised form for the templates.

The request path only stores references (the ASGI scope or WSGI environ, the response status
and headers, byte counts, timestamps); everything else is worked out on the logger's thread.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

__all__ = ["ASGIRecord", "HTTPInfo", "WSGIRecord"]


class ASGIRecord:
    """Raw data of one ASGI HTTP request, filled on the request path."""

    __slots__ = (
        "body_bytes",
        "chunk_framing",
        "end",
        "pathsend",
        "req_body",
        "req_received",
        "resp_body",
        "resp_headers",
        "scope",
        "start",
        "status",
    )

    def __init__(self, scope: Mapping[str, Any], start: float) -> None:
        self.scope = scope
        self.start = start
        self.end = 0.0
        self.status = 0
        self.resp_headers: Iterable[tuple[bytes, bytes]] = ()
        self.body_bytes = 0
        self.chunk_framing = 0  # bytes chunked encoding would add around the body chunks
        self.req_body: list[bytes] | None = None
        self.req_received = -1
        self.resp_body: list[bytes] | None = None
        self.pathsend: str | None = None


class WSGIRecord:
    """Raw data of one WSGI request, filled on the request path."""

    __slots__ = (
        "body_bytes",
        "chunk_framing",
        "end",
        "environ",
        "req_body",
        "req_received",
        "request",
        "resp_body",
        "resp_headers",
        "start",
        "status",
    )

    def __init__(self, environ: dict[str, Any], start: float) -> None:
        self.environ = environ
        self.start = start
        self.end = 0.0
        self.status = "500 Internal Server Error"
        self.resp_headers: list[tuple[str, str]] = []
        self.body_bytes = 0
        self.chunk_framing = 0
        self.req_body: list[bytes] | None = None
        self.req_received = -1
        self.resp_body: list[bytes] | None = None
        self.request: Any = None


def _text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _wsgi_text(s: str) -> str:
    # PEP 3333 strings carry the raw bytes as latin-1; most clients send UTF-8.
    try:
        return s.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return s


def chunk_framing(n: int) -> int:
    """Bytes HTTP/1.1 chunked encoding adds around a body chunk of n bytes (none if empty)."""
    return len(f"{n:x}") + 4 if n else 0


def _body_text(chunks: list[bytes] | None, limit: int) -> tuple[bytes | None, int]:
    if chunks is None:
        return None, 0
    data = b"".join(chunks)
    # No body at all reads as unset, like the plugin's nil.
    return (data[:limit] if data else None), len(data)


# "date: Thu, 03 Dec 2026 16:19:52 GMT" and its CRLF.
_DATE_HEADER = len("date: ") + 29 + 2

_HOSTNAME = os.uname().nodename if hasattr(os, "uname") else "localhost"


class HTTPInfo:
    """One request in normalised form: strings, ints and floats, with lazy derived views."""

    __slots__ = (
        "_args",
        "_cookies",
        "_headers_full",
        "_hmap",
        "_request_id",
        "_resp_full",
        "_rhmap",
        "args",
        "body_bytes_sent",
        "chunk_framing",
        "end",
        "headers",
        "method",
        "path_params",
        "protocol",
        "reason",
        "remote_addr",
        "remote_port",
        "req_body",
        "req_body_len",
        "request_uri",
        "resp_body",
        "resp_headers",
        "route",
        "scheme",
        "server_addr",
        "server_port",
        "start",
        "status",
        "uri",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.request_uri = "/"
        self.uri = "/"
        self.args: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.scheme = "http"
        self.protocol = "HTTP/1.1"
        self.remote_addr: str | None = None
        self.remote_port: str | None = None
        self.server_addr: str | None = None
        self.server_port: str | None = None
        self.status = 0
        self.resp_headers: list[tuple[str, str]] = []
        self.body_bytes_sent = 0
        self.chunk_framing = 0
        self.reason: str | None = None
        self.start = 0.0
        self.end = 0.0
        self.req_body: bytes | None = None
        self.req_body_len = -1
        self.resp_body: bytes | None = None
        self.route: str | None = None
        self.path_params: Mapping[str, Any] | None = None
        self._request_id: str | None = None
        self._hmap: dict[str, str] | None = None
        self._rhmap: dict[str, str] | None = None
        self._args: dict[str, Any] | None = None
        self._cookies: dict[str, str] | None = None
        self._headers_full: dict[str, Any] | None = None
        self._resp_full: dict[str, Any] | None = None

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def from_asgi(cls, rec: ASGIRecord, max_req: int, max_resp: int) -> HTTPInfo:
        """Normalise an ASGIRecord."""
        scope = rec.scope
        i = cls()
        i.method = scope.get("method", "GET")
        path = scope.get("path") or "/"
        i.uri = path
        raw_path = scope.get("raw_path")
        qs = scope.get("query_string") or b""
        base = raw_path.decode("latin-1") if raw_path else quote(path, safe="/%:@!$&'()*+,;=-._~")
        i.args = qs.decode("latin-1") if qs else None
        i.request_uri = f"{base}?{i.args}" if i.args else base
        i.headers = [(_text(k).lower(), _text(v)) for k, v in scope.get("headers") or ()]
        i.scheme = scope.get("scheme") or "http"
        i.protocol = "HTTP/" + str(scope.get("http_version") or "1.1")
        client = scope.get("client")
        if client:
            i.remote_addr = str(client[0])
            i.remote_port = str(client[1]) if len(client) > 1 and client[1] is not None else None
        server = scope.get("server")
        if server:
            i.server_addr = str(server[0])
            i.server_port = str(server[1]) if len(server) > 1 and server[1] is not None else None
        i.status = int(rec.status) if rec.status else 500
        i.resp_headers = [(_text(k).lower(), _text(v)) for k, v in rec.resp_headers or ()]
        sent = rec.body_bytes
        if rec.pathsend is not None:
            with contextlib.suppress(OSError):
                sent += os.stat(rec.pathsend).st_size
        i.body_bytes_sent = sent
        i.chunk_framing = rec.chunk_framing
        i.start = rec.start
        i.end = rec.end
        i.req_body, n = _body_text(rec.req_body, max_req)
        i.req_body_len = rec.req_received if rec.req_received >= 0 else -1
        if rec.req_body is not None and i.req_body_len < n:
            i.req_body_len = n
        i.resp_body, _ = _body_text(rec.resp_body, max_resp)
        route = scope.get("rmqfast.route")
        if route is None:
            r = scope.get("route")
            route = getattr(r, "path", None) if r is not None else None
        i.route = route if isinstance(route, str) else None
        params = scope.get("path_params")
        i.path_params = params if isinstance(params, Mapping) else None
        return i

    @classmethod
    def from_wsgi(cls, rec: WSGIRecord, max_req: int, max_resp: int) -> HTTPInfo:
        """Normalise a WSGIRecord."""
        env = rec.environ
        i = cls()
        i.method = env.get("REQUEST_METHOD", "GET")
        path = _wsgi_text(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")) or "/"
        i.uri = path
        qs = env.get("QUERY_STRING") or ""
        i.args = qs or None
        raw = env.get("RAW_URI") or env.get("REQUEST_URI")
        if raw:
            i.request_uri = raw
        else:
            base = quote(path, safe="/%:@!$&'()*+,;=-._~")
            i.request_uri = f"{base}?{qs}" if qs else base
        headers: list[tuple[str, str]] = []
        for k, v in env.items():
            if k.startswith("HTTP_"):
                headers.append((k[5:].replace("_", "-").lower(), _wsgi_text(v)))
            elif k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v:
                headers.append((k.replace("_", "-").lower(), _wsgi_text(v)))
        i.headers = headers
        i.scheme = env.get("wsgi.url_scheme", "http")
        i.protocol = env.get("SERVER_PROTOCOL") or "HTTP/1.1"
        i.remote_addr = env.get("REMOTE_ADDR") or None
        port = env.get("REMOTE_PORT")
        i.remote_port = str(port) if port else None
        i.server_addr = env.get("SERVER_NAME") or None
        sport = env.get("SERVER_PORT")
        i.server_port = str(sport) if sport else None
        try:
            code, _, reason = str(rec.status).partition(" ")
            i.status = int(code)
            i.reason = reason
        except ValueError:
            i.status = 500

        i.resp_headers = [(str(k).lower(), _wsgi_text(str(v))) for k, v in rec.resp_headers]
        i.body_bytes_sent = rec.body_bytes
        i.chunk_framing = rec.chunk_framing
        i.start = rec.start
        i.end = rec.end
        i.req_body, n = _body_text(rec.req_body, max_req)
        i.req_body_len = rec.req_received if rec.req_received >= 0 else -1
        if rec.req_body is not None and i.req_body_len < n:
            i.req_body_len = n
        i.resp_body, _ = _body_text(rec.resp_body, max_resp)
        route = env.get("rmqfast.route")
        params = env.get("rmqfast.path_params")
        if rec.request is not None:
            if route is None:
                rule = getattr(rec.request, "url_rule", None)
                route = getattr(rule, "rule", None)
            if params is None:
                params = getattr(rec.request, "view_args", None)
        i.route = route if isinstance(route, str) else None
        i.path_params = params if isinstance(params, Mapping) else None
        return i

    # -- derived values ------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """A request header by lower-case name; repeated headers joined like nginx does."""
        m = self._hmap
        if m is None:
            m = self._hmap = _join_headers(self.headers)
        return m.get(name)

    def resp_header(self, name: str) -> str | None:
        """A response header by lower-case name."""
        m = self._rhmap
        if m is None:
            m = self._rhmap = _join_headers(self.resp_headers)
        return m.get(name)

    def headers_object(self) -> dict[str, Any]:
        """Request headers as the plugin logs them: lower-case keys, repeats as arrays."""
        if self._headers_full is None:
            self._headers_full = _multi(self.headers)
        return self._headers_full

    def resp_headers_object(self) -> dict[str, Any]:
        """Response headers as the plugin logs them."""
        if self._resp_full is None:
            self._resp_full = _multi(self.resp_headers)
        return self._resp_full

    def querystring(self) -> dict[str, Any]:
        """Decoded query arguments: repeats become arrays, a bare name becomes true."""
        if self._args is None:
            out: dict[str, Any] = {}
            if self.args:
                for part in self.args.split("&"):
                    if not part:
                        continue
                    name, eq, value = part.partition("=")
                    key = unquote_plus(name)
                    if not key:
                        continue
                    val: Any = unquote_plus(value) if eq else True
                    prev = out.get(key)
                    if prev is None:
                        out[key] = val
                    elif isinstance(prev, list):
                        prev.append(val)
                    else:
                        out[key] = [prev, val]
            self._args = out
        return self._args

    def arg(self, name: str) -> str | bool | None:
        """The first value of a query argument (decoded); True for a bare `?name`, as APISIX
        gives it; None when absent."""
        v = self.querystring().get(name)
        if isinstance(v, list):
            v = v[0]
        return v if isinstance(v, (str, bool)) else None

    def path_param(self, name: str) -> str | None:
        """A parameter of the matched route's path (`/items/{id}`), as text."""
        params = self.path_params
        if not params or name not in params:
            return None
        v = params[name]
        return v if isinstance(v, str) else str(v)

    def cookie(self, name: str) -> str | None:
        """A cookie value from the Cookie header(s)."""
        if self._cookies is None:
            jar: dict[str, str] = {}
            for k, v in self.headers:
                if k != "cookie":
                    continue
                for part in v.split(";"):
                    n, eq, val = part.strip().partition("=")
                    if eq and n and n not in jar:
                        jar[n] = unquote(val.strip().strip('"'))
            self._cookies = jar
        return self._cookies.get(name)

    @property
    def host(self) -> str | None:
        """nginx $host: Host header without port, lower case; else the server address."""
        h = self.header("host")
        if h:
            h = h.strip()
            if h.startswith("["):
                end = h.find("]")
                h = h[: end + 1] if end > 0 else h
            else:
                h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
            return h.lower()
        return self.server_addr

    @property
    def request_line(self) -> str:
        """nginx $request: the request line."""
        return f"{self.method} {self.request_uri} {self.protocol}"

    @property
    def request_length(self) -> int:
        """nginx $request_length: request line, headers and body bytes (the larger of what was
        received and what Content-Length announced: the logger may stop reading at its limit)."""
        n = len(self.request_line) + 2 + 2
        for k, v in self.headers:
            n += len(k) + len(v) + 4
        cl = self.header("content-length")
        announced = int(cl) if cl and cl.isdigit() else 0
        return n + max(self.req_body_len, announced)

    @property
    def bytes_sent(self) -> int:
        """nginx $bytes_sent: the response as an HTTP/1.x server puts it on the wire.

        The status line with its reason phrase, the app's headers, the `Date` header every
        server adds, `Connection: close` when the client asked for it, chunked framing when an
        HTTP/1.1 response has no Content-Length, and the body. Headers a server adds beyond
        those (uvicorn's `server: uvicorn`, for one) are not known here."""
        if self.status < 200 or self.protocol.startswith("HTTP/2"):
            return self.body_bytes_sent
        reason = self.reason
        if reason is None:
            try:
                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""
        n = len(self.protocol) + 1 + 3 + 1 + len(reason) + 2 + 2
        names = set()
        for k, v in self.resp_headers:
            n += len(k) + len(v) + 4
            names.add(k)
        if "date" not in names:
            n += _DATE_HEADER
        if "connection" not in names and (self.header("connection") or "").lower() == "close":
            n += len("connection: close\r\n")  # servers confirm a close the client asked for
        if (
            self.protocol == "HTTP/1.1"
            and "content-length" not in names
            and self.status not in (204, 304)
            and self.method != "HEAD"
        ):
            if "transfer-encoding" not in names:
                n += len("transfer-encoding: chunked\r\n")
            n += self.chunk_framing + len("0\r\n\r\n")
        return n + self.body_bytes_sent

    @property
    def request_id(self) -> str:
        """nginx $request_id: 32 random hex digits, fixed for this request."""
        if self._request_id is None:
            self._request_id = os.urandom(16).hex()
        return self._request_id

    @property
    def request_time(self) -> float:
        """nginx $request_time: seconds with millisecond resolution."""
        return round(max(0.0, self.end - self.start), 3)

    def decoded_resp_body(self, limit: int) -> bytes | None:
        """The captured response body, gzip/deflate decoded when so encoded (bounded)."""
        body = self.resp_body
        if body is None:
            return None
        enc = (self.resp_header("content-encoding") or "").strip().lower()
        if enc in ("gzip", "x-gzip", "deflate"):
            # wbits 47 reads gzip or zlib headers; raw deflate needs -15.
            for wbits in (47,) if enc != "deflate" else (47, -15):
                try:
                    d = zlib.decompressobj(wbits)
                    return d.decompress(body, limit)
                except zlib.error:
                    continue
        return body


def _join_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        prev = out.get(k)
        if prev is None:
            out[k] = v
        else:
            out[k] = f"{prev}; {v}" if k == "cookie" else f"{prev}, {v}"
    return out


def _multi(headers: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in headers:
        prev = out.get(k)
        if prev is None:
            out[k] = v
        elif isinstance(prev, list):
            prev.append(v)
        else:
            out[k] = [prev, v]
    return out


def hostname() -> str:
    """The host name, as the plugin logs server.hostname."""
    return _HOSTNAME


def local_times(t: float) -> tuple[str, str]:
    """nginx $time_iso8601 and $time_local for the epoch time t."""
    lt = time.localtime(t)
    off = lt.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    hh, mm = divmod(abs(off) // 60, 60)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f"{sign}{hh:02d}:{mm:02d}"
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    local = (
        f"{lt.tm_mday:02d}/{months[lt.tm_mon - 1]}/{lt.tm_year}:"
        f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d} {sign}{hh:02d}{mm:02d}"
    )
    return iso, local
