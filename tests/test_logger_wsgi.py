"""WSGIMiddleware with Flask, Django and a raw WSGI app, against an in-process producer."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.test import Client

from rmqfast.logger import RocketMQLogger, WSGIMiddleware

from .test_logger_support import FakeProducer


def flask_app() -> Flask:
    app = Flask("logger_test")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"id": item_id}, 200, {"X-App": "1"}

    @app.post("/echo")
    def echo() -> Any:
        return request.get_data().upper()

    @app.get("/stream")
    def stream() -> Response:
        def gen() -> Iterator[bytes]:
            for i in range(4):
                yield f"part{i};".encode()

        return Response(gen(), mimetype="text/plain")

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    return app


def entries(lg: RocketMQLogger, fake: FakeProducer) -> list[Any]:
    assert lg.flush(5)
    return fake.entries()


def test_flask_default_entry(make: Any, fake: FakeProducer) -> None:
    lg = make()
    client = flask_app().test_client()
    client.application.wsgi_app = WSGIMiddleware(client.application.wsgi_app, lg)  # type: ignore[method-assign]
    r = client.get("/items/5?a=1", headers={"X-Request-Id": "r-9"})
    assert r.status_code == 200
    assert fake.entries() == []
    r.close()  # the server closing the response iterable finishes the entry
    [e] = entries(lg, fake)
    req, resp = e["request"], e["response"]
    assert req["url"] == "http://localhost:80/items/5?a=1"
    assert req["uri"] == "/items/5?a=1"
    assert req["method"] == "GET"
    assert req["headers"]["x-request-id"] == "r-9"
    assert req["headers"]["host"] == "localhost"
    assert req["querystring"] == {"a": "1"}
    assert resp["status"] == 200
    assert resp["headers"]["x-app"] == "1"
    assert resp["headers"]["content-type"] == "application/json"
    assert resp["size"] > len(r.data)
    assert e["client_ip"] == "127.0.0.1"
    assert e["route_id"] == "/items/<int:item_id>"
    assert e["latency"] >= 0


def test_flask_custom_format_bodies_and_streaming(make: Any, fake: FakeProducer) -> None:
    lg = make(
        log_format={
            "s": "$status",
            "sent": "$body_bytes_sent",
            "in": "$request_body",
            "r": "$route",
        },
        max_req_body_bytes=4,
    )
    app = flask_app()
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, lg)  # type: ignore[method-assign]
    client = app.test_client()
    with client.post("/echo", data=b"abcdefgh") as r:
        assert r.data == b"ABCDEFGH"
    r = client.get("/stream")
    assert r.data == b"part0;part1;part2;part3;"
    r.close()
    got = entries(lg, fake)
    assert got[0] == {"s": 200, "sent": "8", "in": "abcd", "r": "/echo", "route_id": "/echo"}
    assert got[1] == {"s": 200, "sent": "24", "r": "/stream", "route_id": "/stream"}


def test_flask_error_is_500(make: Any, fake: FakeProducer) -> None:
    lg = make(log_format={"s": "$status"})
    app = flask_app()
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, lg)  # type: ignore[method-assign]
    with app.test_client().get("/boom") as r:
        assert r.status_code == 500
    assert entries(lg, fake) == [{"s": 500, "route_id": "/boom"}]


def environ(path: str = "/", body: bytes = b"") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST" if body else "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "srv",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
    }


def test_entry_is_finished_when_the_iterable_closes(make: Any, fake: FakeProducer) -> None:
    lg = make(log_format={"s": "$status", "sent": "$body_bytes_sent"}, include_resp_body=True)
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"aa"
            yield b"bbb"
            yield b"cccc"

        def close(self) -> None:
            closed.append(True)

    def app(env: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        write = start_response("206 Partial Content", [("Content-Type", "text/plain")])
        write(b"w")
        return Body()

    mw = WSGIMiddleware(app, lg)
    statuses: list[str] = []
    result = mw(environ(), lambda s, h, e=None: statuses.append(s) or (lambda data: None))
    it = iter(result)
    assert next(it) == b"aa"
    assert lg.stats()["accepted"] == 0  # not finished before close()
    assert next(it) == b"bbb"
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]  # twice is harmless
    assert closed == [True]
    assert statuses == ["206 Partial Content"]
    assert entries(lg, fake) == [{"s": 206, "sent": "6"}]  # 1 written + 2 + 3 consumed


def test_app_raising_before_start_response(make: Any, fake: FakeProducer) -> None:
    lg = make(log_format={"s": "$status", "u": "$uri"})

    def app(env: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise ValueError("nope")

    with pytest.raises(ValueError):
        WSGIMiddleware(app, lg)(environ("/x"), lambda *a: None)
    assert entries(lg, fake) == [{"s": 500, "u": "/x"}]


def test_request_body_tee_keeps_a_prefix(make: Any, fake: FakeProducer) -> None:
    lg = make(include_req_body=True, max_req_body_bytes=6)
    seen: list[bytes] = []

    def app(env: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = env["wsgi.input"]
        seen.append(stream.readline())
        seen.append(stream.read(3))
        seen.append(stream.read())
        start_response("200 OK", [])
        return [b"ok"]

    body = b"line1\nabcdefgh"
    result = WSGIMiddleware(app, lg)(environ("/up", body), lambda *a: None)
    assert b"".join(result) == b"ok"
    result.close()  # type: ignore[attr-defined]
    assert b"".join(seen) == body
    [e] = entries(lg, fake)
    assert e["request"]["body"] == "line1\n"
    assert e["request"]["size"] >= len(body)


def test_django(make: Any, fake: FakeProducer) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["rmqfast.logger.wsgi.DjangoRouteMiddleware"],
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    lg = make(log_format={"s": "$status", "r": "$route", "m": "$request_method", "q": "$arg_q"})
    client = Client(WSGIMiddleware(get_wsgi_application(), lg))
    r = client.get("/orders/12/?q=z")
    assert r.status_code == 200 and r.get_data() == b"order 12"
    r.close()
    assert entries(lg, fake) == [
        {
            "s": 200,
            "r": "orders/<int:order_id>/",
            "m": "GET",
            "q": "z",
            "route_id": "orders/<int:order_id>/",
        }
    ]


def _order(request: Any, order_id: int) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"order {order_id}".encode())


def __getattr__(name: str) -> Any:
    # Django reads ROOT_URLCONF's urlpatterns lazily; build them on first use so importing
    # this module does not need configured settings.
    if name == "urlpatterns":
        from django.urls import path

        return [path("orders/<int:order_id>/", _order)]
    raise AttributeError(name)
