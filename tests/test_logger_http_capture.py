"""What the middlewares measure against what really happens: request bodies the app never
reads, request sizes, and response sizes compared with the bytes real servers (uvicorn, the
stdlib's wsgiref) put on the wire."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from rmqfast.logger import ASGIMiddleware, RocketMQLogger, WSGIMiddleware

from .fakes import wait_until
from .test_logger_support import FakeProducer

BODY = bytes(range(256)) * 400  # 102,400 bytes


def one_entry(lg: RocketMQLogger, fake: FakeProducer) -> dict[str, Any]:
    assert lg.flush(5)
    entries = fake.entries()
    assert len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


class Client:
    """An ASGI server's side of one request: the body in chunks, the response collected."""

    def __init__(self, body: bytes, chunk: int = 10240) -> None:
        self.messages = [
            {
                "type": "http.request",
                "body": body[i : i + chunk],
                "more_body": i + chunk < len(body),
            }
            for i in range(0, len(body), chunk)
        ] or [{"type": "http.request", "body": b"", "more_body": False}]
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.received < len(self.messages):
            self.received += 1
            return self.messages[self.received - 1]
        await asyncio.sleep(3600)  # a real server would wait for a disconnect
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "headers": [(b"host", b"x"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def ignores_body(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def reads_after_start(scope: Any, receive: Any, send: Any) -> None:
    """Starts its response, then streams the request body back as it reads it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        m = await receive()
        await send({"type": "http.response.body", "body": m["body"], "more_body": True})
        if not m.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


def test_asgi_reads_a_body_the_app_never_reads(make: Any, fake: FakeProducer) -> None:
    lg = make(include_req_body=True, max_req_body_bytes=15000)
    c = Client(BODY)
    asyncio.run(ASGIMiddleware(ignores_body, lg)(scope(BODY), c.receive, c.send))
    e = one_entry(lg, fake)
    assert e["request"]["body"] == BODY[:15000].decode("utf-8", "replace")
    # Only what the limit needed was read: two 10 KiB messages of ten.
    assert c.received == 2
    line = len("POST /upload HTTP/1.1") + 2
    headers = len("host") + 1 + 4 + len("content-length") + 6 + 4 + 2
    assert e["request"]["size"] == line + headers + len(BODY)


def test_asgi_app_reading_after_its_response_started_still_gets_everything(
    make: Any, fake: FakeProducer
) -> None:
    lg = make(include_req_body=True, max_req_body_bytes=25000)
    c = Client(BODY)
    asyncio.run(ASGIMiddleware(reads_after_start, lg)(scope(BODY), c.receive, c.send))
    echoed = b"".join(m.get("body", b"") for m in c.sent if m["type"] == "http.response.body")
    assert echoed == BODY
    e = one_entry(lg, fake)
    assert e["request"]["body"] == BODY[:25000].decode("utf-8", "replace")
    assert e["response"]["size"] > len(BODY)


def test_asgi_without_include_req_body_reads_nothing_ahead(make: Any, fake: FakeProducer) -> None:
    lg = make()
    c = Client(BODY)
    asyncio.run(ASGIMiddleware(ignores_body, lg)(scope(BODY), c.receive, c.send))
    assert c.received == 0
    e = one_entry(lg, fake)
    assert "body" not in e["request"]
    assert e["request"]["size"] > len(BODY)  # from Content-Length


def wsgi_environ(body: bytes, *, length: bool = True, terminated: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/upload",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "HTTP_HOST": "x",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    if length:
        env["CONTENT_LENGTH"] = str(len(body))
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def wsgi_ignores_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def run_wsgi(app: Any, env: dict[str, Any]) -> None:
    it = app(env, lambda status, headers, exc_info=None: lambda data: None)
    for _ in it:
        pass
    it.close()


@pytest.mark.parametrize(
    ("length", "terminated", "logged"),
    [(True, False, 15000), (False, True, 15000), (False, False, 0)],
)
def test_wsgi_reads_a_body_the_app_never_reads(
    make: Any, fake: FakeProducer, length: bool, terminated: bool, logged: int
) -> None:
    lg = make(include_req_body=True, max_req_body_bytes=15000)
    env = wsgi_environ(BODY, length=length, terminated=terminated)
    stream = env["wsgi.input"]
    run_wsgi(WSGIMiddleware(wsgi_ignores_body, lg), env)
    e = one_entry(lg, fake)
    if logged:
        assert e["request"]["body"] == BODY[:logged].decode("utf-8", "replace")
        assert stream.tell() == logged  # read up to the limit, not beyond
    else:
        # No length and no promised end: reading on could block, so nothing is read.
        assert "body" not in e["request"] and stream.tell() == 0


# -- response sizes against real servers ---------------------------------------------------------


def raw_request(port: int, request: bytes) -> bytes:
    """Everything the server sends back, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = bytearray()
        while chunk := s.recv(65536):
            out += chunk
    return bytes(out)


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":  # no Content-Length: uvicorn chunks it
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        for part in (b"a" * 10, b"b" * 300, b"c" * 5000):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def uvicorn_port(make: Any) -> Iterator[tuple[int, RocketMQLogger]]:
    lg = make()
    config = uvicorn.Config(
        ASGIMiddleware(asgi_app, lg),
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        server_header=False,  # the one header of uvicorn's own the logger cannot know
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    wait_until(lambda: server.started, 10, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield port, lg
    server.should_exit = True
    t.join(10)


@pytest.mark.parametrize("path", ["/stream", "/json"])
def test_response_size_is_what_uvicorn_put_on_the_wire(
    uvicorn_port: tuple[int, RocketMQLogger], fake: FakeProducer, path: str
) -> None:
    port, lg = uvicorn_port
    wire = raw_request(
        port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert wire.startswith(b"HTTP/1.1 20")
    e = one_entry(lg, fake)
    assert e["response"]["size"] == len(wire), wire[:300]


def test_response_size_is_what_wsgiref_put_on_the_wire(make: Any, fake: FakeProducer) -> None:
    lg = make()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # wsgiref adds Content-Length and Server headers itself unless the app sets them;
        # headers a server adds are not visible to the middleware (Date excepted).
        start_response("404 Not Found", [("Content-Length", "9"), ("Server", "app")])
        return [b"not found"]

    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, WSGIMiddleware(app, lg), handler_class=Quiet
    )
    t = threading.Thread(target=httpd.handle_request, daemon=True)
    t.start()
    try:
        wire = raw_request(httpd.server_port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        t.join(10)
        httpd.server_close()
    assert wire.startswith(b"HTTP/1.0 404 Not Found\r\n")
    e = one_entry(lg, fake)
    assert e["response"]["size"] == len(wire), wire
