"""ASGIMiddleware with Starlette and FastAPI (TestClient), against an in-process producer."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from rmqfast.logger import ASGIMiddleware, RocketMQLogger

from .fakes import wait_until
from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]}, headers={"x-app": "1"})


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(body.decode().upper())


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk-{i}|".encode()
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text[::-1])
    await websocket.close()


def starlette_app(lifespan: Any = None) -> Starlette:
    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/items/{item_id:int}", item),
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            Route("/boom", boom),
            WebSocketRoute("/ws", ws),
        ],
    )


def one_entry(lg: RocketMQLogger, fake: FakeProducer) -> dict[str, Any]:
    assert lg.flush(5)
    entries = fake.entries()
    assert len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


def test_default_entry_from_starlette(make: Any, fake: FakeProducer) -> None:
    lg = make()
    client = TestClient(ASGIMiddleware(starlette_app(), lg))
    before = time.time()
    r = client.get("/items/7?x=1&x=2&flag", headers={"X-Request-Id": "abc"})
    assert r.status_code == 200
    e = one_entry(lg, fake)
    req, resp = e["request"], e["response"]
    assert req["url"] == "http://testserver:80/items/7?x=1&x=2&flag"
    assert req["uri"] == "/items/7?x=1&x=2&flag"
    assert req["method"] == "GET"
    assert req["headers"]["host"] == "testserver"
    assert req["headers"]["x-request-id"] == "abc"
    assert req["headers"]["user-agent"] == "testclient"
    assert req["querystring"] == {"x": ["1", "2"], "flag": True}
    assert isinstance(req["size"], int) and req["size"] > len("GET /items/7?x=1&x=2&flag")
    assert "body" not in req
    assert resp["status"] == 200
    assert resp["headers"]["content-type"] == "application/json"
    assert resp["headers"]["x-app"] == "1"
    assert resp["headers"]["content-length"] == str(len(r.content))
    assert resp["size"] > len(r.content)
    assert "body" not in resp
    assert e["client_ip"] == "testclient"
    assert e["route_id"] == "/items/{item_id:int}"
    assert e["server"]["hostname"]
    assert before * 1000 - 1 <= e["start_time"] <= time.time() * 1000 + 1
    assert 0 <= e["latency"] < 5000
    assert set(e) == {
        "request",
        "response",
        "server",
        "client_ip",
        "start_time",
        "latency",
        "route_id",
    }


def test_custom_format_and_streaming(make: Any, fake: FakeProducer) -> None:
    lg = make(
        log_format={
            "status": "$status",
            "sent": "$body_bytes_sent",
            "uri": "$uri",
            "route": "$route",
            "ua": "$http_user_agent",
            "ct": "$sent_http_content_type",
            "t": "$request_time",
            "nothing": "$http_x_absent",
            "const": {"service": "shop", "v": 2},
        }
    )
    client = TestClient(ASGIMiddleware(starlette_app(), lg))
    r = client.get("/stream")
    assert r.text == "chunk-0|chunk-1|chunk-2|"
    e = one_entry(lg, fake)
    assert e == {
        "status": 200,
        "sent": str(len(r.content)),
        "uri": "/stream",
        "route": "/stream",
        "route_id": "/stream",
        "ua": "testclient",
        "ct": "text/plain; charset=utf-8",
        "t": e["t"],
        "const": {"service": "shop", "v": 2},
    }
    assert isinstance(e["t"], float) and e["t"] >= 0


def test_bodies_are_captured_when_asked(make: Any, fake: FakeProducer) -> None:
    lg = make(include_req_body=True, include_resp_body=True, max_req_body_bytes=5)
    client = TestClient(ASGIMiddleware(starlette_app(), lg))
    r = client.post("/echo", content=b"hello world")
    assert r.text == "HELLO WORLD"
    e = one_entry(lg, fake)
    assert e["request"]["body"] == "hello"
    assert e["response"]["body"] == "HELLO WORLD"
    assert e["request"]["size"] >= len(b"hello world")


def test_exceptions_are_logged_as_500(make: Any, fake: FakeProducer) -> None:
    lg = make(log_format={"status": "$status", "uri": "$uri"})
    client = TestClient(ASGIMiddleware(starlette_app(), lg), raise_server_exceptions=False)
    assert client.get("/boom").status_code == 500
    assert one_entry(lg, fake) == {"status": 500, "uri": "/boom", "route_id": "/boom"}


def test_websocket_and_lifespan_pass_through(make: Any, fake: FakeProducer) -> None:
    lg = make()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = starlette_app(lifespan)
    with TestClient(ASGIMiddleware(app, lg)) as client:
        assert events == ["startup"]
        with client.websocket_connect("/ws") as sock:
            sock.send_text("abc")
            assert sock.receive_text() == "cba"
        assert lg.stats()["accepted"] == 0  # websockets are not logged
        client.get("/items/1")
        assert fake.entries() == []  # inactive_timeout is 60 s
    # Leaving the client ran lifespan shutdown, which flushed the logger first.
    assert events == ["startup", "shutdown"]
    assert len(fake.entries()) == 1


def test_request_path_never_waits_for_the_broker(make: Any) -> None:
    gate = threading.Event()
    blocked = FakeProducer(gate=gate)
    lg = RocketMQLogger(NS, "t", producer_factory=lambda: blocked, batch_max_size=1)
    try:
        client = TestClient(ASGIMiddleware(starlette_app(), lg))
        for _ in range(5):
            assert client.get("/items/1").status_code == 200
        wait_until(lambda: blocked.attempts == 0 and lg.stats()["accepted"] == 5, 10, "queued")
        gate.set()
        assert lg.flush(5)
        assert len(blocked.entries()) == 5
    finally:
        gate.set()
        lg.close(2)


def test_fastapi(make: Any, fake: FakeProducer) -> None:
    lg = make(
        log_format={"route": "$route", "id": "$request_id", "m": "$request_method"},
        key="$request_id",
        tag="$request_method",
        batch_max_size=1,
    )
    api = FastAPI()

    @api.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        return {"user_id": user_id}

    client = TestClient(ASGIMiddleware(api, lg))
    assert client.get("/users/42").json() == {"user_id": 42}
    e = one_entry(lg, fake)
    assert e["route"] == "/users/{user_id}" and e["route_id"] == "/users/{user_id}"
    assert e["m"] == "GET"
    [(_, props)] = fake.messages()
    assert props == {"KEYS": e["id"], "TAGS": "GET"}


async def test_raw_asgi_app_direct() -> None:
    fake = FakeProducer()
    lg = RocketMQLogger(
        NS,
        "t",
        producer_factory=lambda: fake,
        log_format={"s": "$status", "b": "$body_bytes_sent", "g": "$sent_http_x_gen"},
    )
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # Headers may be any iterable, even a one-shot generator.
        headers = (h for h in [(b"x-gen", b"1")])
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = ASGIMiddleware(app, lg)
    await mw({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, lg.close, 5)
    assert fake.entries() == [{"s": 204, "b": "2", "g": "1"}]
    assert list(sent[0]["headers"]) == [(b"x-gen", b"1")]  # the server still gets them
