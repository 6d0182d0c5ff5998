"""Templates, nginx variables, the default full log, origin format, metadata precedence."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rmqfast.logger import RocketMQLogger, get_metadata, set_metadata
from rmqfast.logger.records import ASGIRecord, HTTPInfo, WSGIRecord, chunk_framing, hostname
from rmqfast.logger.template import CompiledTemplate, TextTemplate, default_entry, origin_text

from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]
START = 1_700_000_000.25


def asgi_record(**over: Any) -> ASGIRecord:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/items/7",
        "raw_path": b"/api/items/7",
        "query_string": b"ab=cd&ab=ef&flag&q=a%20b&e=",
        "root_path": "",
        "headers": [
            (b"host", b"Example.COM:8080"),
            (b"user-agent", b"curl/8"),
            (b"x-request-id", b"rid-1"),
            (b"cookie", b"sid=abc; theme=dark"),
            (b"accept", b"a"),
            (b"accept", b"b"),
            (b"content-length", b"11"),
        ],
        "client": ("10.0.0.5", 51234),
        "server": ("127.0.0.1", 8080),
    }
    scope.update(over.pop("scope", {}))
    rec = ASGIRecord(scope, START)
    rec.end = START + 0.0125
    rec.status = 201
    rec.resp_headers = [(b"content-type", b"application/json"), (b"x-trace", b"t1")]
    rec.body_bytes = 17
    rec.chunk_framing = chunk_framing(17)
    for k, v in over.items():
        setattr(rec, k, v)
    return rec


def info(**over: Any) -> HTTPInfo:
    return HTTPInfo.from_asgi(asgi_record(**over), 524288, 524288)


def render(fmt: dict[str, Any], i: HTTPInfo | None = None) -> dict[str, Any]:
    return CompiledTemplate(fmt).render(i or info())


@pytest.fixture(autouse=True)
def clean_metadata() -> Iterator[None]:
    set_metadata()
    yield
    set_metadata()


def test_nginx_variables_and_types() -> None:
    names = [
        "host",
        "remote_addr",
        "remote_port",
        "request_method",
        "request_uri",
        "uri",
        "args",
        "scheme",
        "server_protocol",
        "server_addr",
        "server_port",
        "status",
        "request_time",
        "request_length",
        "bytes_sent",
        "body_bytes_sent",
        "msec",
        "request",
        "is_args",
        "content_length",
    ]
    out = render({n: "$" + n for n in names})
    assert out == {
        "host": "example.com",
        "remote_addr": "10.0.0.5",
        "remote_port": "51234",
        "request_method": "POST",
        "request_uri": "/api/items/7?ab=cd&ab=ef&flag&q=a%20b&e=",
        "uri": "/api/items/7",
        "args": "ab=cd&ab=ef&flag&q=a%20b&e=",
        "scheme": "http",
        "server_protocol": "HTTP/1.1",
        "server_addr": "127.0.0.1",
        "server_port": "8080",
        "status": 201,
        "request_time": 0.013,
        "request_length": out["request_length"],
        "bytes_sent": out["bytes_sent"],
        "body_bytes_sent": "17",
        "msec": "1700000000.263",
        "request": "POST /api/items/7?ab=cd&ab=ef&flag&q=a%20b&e= HTTP/1.1",
        "is_args": "?",
        "content_length": "11",
    }
    # Numbers where the plugin has numbers, strings elsewhere.
    assert isinstance(out["status"], int) and isinstance(out["request_time"], float)
    line = len("POST /api/items/7?ab=cd&ab=ef&flag&q=a%20b&e= HTTP/1.1") + 2
    headers = sum(len(k) + len(v) + 4 for k, v in info().headers) + 2
    assert out["request_length"] == line + headers + 11  # body from Content-Length
    resp_headers = len("content-type") + len("application/json") + 4 + len("x-trace") + 6
    # As an HTTP/1.1 server sends it: reason phrase, a Date header, and chunked (one 17-byte
    # chunk, then the last) since the app gave no Content-Length.
    status_line = len("HTTP/1.1 201 Created\r\n")
    date = len("date: Thu, 03 Dec 2026 16:19:52 GMT\r\n")
    chunked = len("transfer-encoding: chunked\r\n") + len("11\r\n\r\n") + len("0\r\n\r\n")
    assert out["bytes_sent"] == status_line + resp_headers + date + chunked + 2 + 17


def test_time_variables() -> None:
    out = render({"iso": "$time_iso8601", "local": "$time_local"})
    lt = time.localtime(START + 0.0125)
    assert out["iso"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", lt))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", out["iso"])
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", out["local"])


def test_prefix_families() -> None:
    out = render(
        {
            "ua": "$http_user_agent",
            "rid": "$http_x_request_id",
            "accept": "$http_accept",
            "ab": "$arg_ab",
            "q": "$arg_q",
            "e": "$arg_e",
            "flag": "$arg_flag",
            "sid": "$cookie_sid",
            "theme": "$cookie_theme",
            "ct": "$sent_http_content_type",
            "trace": "$sent_http_x_trace",
            "nohdr": "$http_x_missing",
            "noarg": "$arg_missing",
            "nocookie": "$cookie_missing",
            "nosent": "$sent_http_x_missing",
        }
    )
    assert out == {
        "ua": "curl/8",
        "rid": "rid-1",
        "accept": "a, b",
        "ab": "cd",
        "q": "a b",
        "e": "",
        "flag": True,  # a bare ?flag, as APISIX gives it
        "sid": "abc",
        "theme": "dark",
        "ct": "application/json",
        "trace": "t1",
    }


def test_request_id_is_stable_per_request() -> None:
    i = info()
    a = render({"a": "$request_id"}, i)["a"]
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    assert render({"a": "$request_id"}, i)["a"] == a
    assert render({"a": "$request_id"})["a"] != a


def test_literals_nesting_missing_and_escape() -> None:
    fmt = {
        "n": 1,
        "f": 1.5,
        "b": False,
        "z": None,
        "s": "plain",
        "interp": "x-$host",
        "dollar": "$$host",
        "list": [1, "$host"],
        "nested": {"host": "$host", "deeper": {"status": "$status", "gone": "$http_nope"}},
        "gone": "$http_nope",
        "unknown": "$upstream_addr",
    }
    assert render(fmt) == {
        "n": 1,
        "f": 1.5,
        "b": False,
        "z": None,
        "s": "plain",
        "interp": "x-$host",
        "dollar": "$host",
        "list": [1, "example.com"],
        "nested": {"host": "example.com", "deeper": {"status": 201}},
    }
    t = CompiledTemplate(fmt)
    assert t.unknown == {"upstream_addr"}
    assert "host" in t.variables
    # Literal containers are copied per entry.
    first = t.render(info())
    first["list"].append(2)
    assert t.render(info())["list"] == [1, "example.com"]


def test_route_and_host_fallbacks() -> None:
    class Route:
        path = "/api/items/{item_id}"

    assert render({"r": "$route"}, info(scope={"route": Route()})) == {"r": "/api/items/{item_id}"}
    assert render({"r": "$route"}, info(scope={"rmqfast.route": "/x"})) == {"r": "/x"}
    assert render({"r": "$route"}) == {}
    i = info(scope={"headers": [(b"host", b"[::1]:80")]})
    assert i.host == "[::1]"
    i = info(scope={"headers": []})
    assert i.host == "127.0.0.1"
    i = info(scope={"client": None, "server": None, "raw_path": None, "query_string": b""})
    assert render(
        {"a": "$remote_addr", "p": "$server_port", "args": "$args", "u": "$request_uri"}, i
    ) == {"u": "/api/items/7"}


def test_default_entry_shape() -> None:
    i = info()
    e = default_entry(i, req_body=False, resp_body=False, max_resp_body_bytes=10, version="1.2.3")
    assert e == {
        "request": {
            "url": "http://example.com:8080/api/items/7?ab=cd&ab=ef&flag&q=a%20b&e=",
            "uri": "/api/items/7?ab=cd&ab=ef&flag&q=a%20b&e=",
            "method": "POST",
            "headers": {
                "host": "Example.COM:8080",
                "user-agent": "curl/8",
                "x-request-id": "rid-1",
                "cookie": "sid=abc; theme=dark",
                "accept": ["a", "b"],
                "content-length": "11",
            },
            "querystring": {"ab": ["cd", "ef"], "flag": True, "q": "a b", "e": ""},
            "size": i.request_length,
        },
        "response": {
            "status": 201,
            "headers": {"content-type": "application/json", "x-trace": "t1"},
            "size": i.bytes_sent,
        },
        "server": {"hostname": hostname(), "version": "1.2.3"},
        "client_ip": "10.0.0.5",
        "start_time": 1700000000250,
        "latency": pytest.approx(12.5, abs=1e-3),
    }


def test_bodies_truncation_and_gzip() -> None:
    raw = b'{"k": "' + b"v" * 100 + b'"}'
    i = HTTPInfo.from_asgi(
        asgi_record(
            req_body=[b"hello ", b"world!"],
            req_received=12,
            resp_body=[gzip.compress(raw)],
            resp_headers=[(b"content-encoding", b"gzip")],
        ),
        5,
        524288,
    )
    e = default_entry(i, req_body=True, resp_body=True, max_resp_body_bytes=20, version="v")
    assert e["request"]["body"] == "hello"  # truncated to max_req_body_bytes
    assert e["response"]["body"] == raw[:20].decode()  # decoded, then capped
    assert render({"b": "$request_body"}, i) == {"b": "hello"}
    plain = info(resp_body=[b"\xff\xfeok"])
    assert plain.decoded_resp_body(100) == b"\xff\xfeok"


def test_origin_format() -> None:
    i = info(req_body=[b"a=1"], req_received=3)
    text = origin_text(i, req_body=True)
    assert text.startswith("POST /api/items/7?ab=cd&ab=ef&flag&q=a%20b&e= HTTP/1.1\r\n")
    assert "\r\nuser-agent: curl/8\r\n" in text
    assert text.endswith("\r\n\r\na=1")
    assert origin_text(i, req_body=False).endswith("content-length: 11\r\n\r\n")


def test_wsgi_normalisation() -> None:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/caf\xc3\xa9",  # UTF-8 bytes carried as latin-1, per PEP 3333
        "QUERY_STRING": "x=1",
        "SERVER_NAME": "srv",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "REMOTE_ADDR": "1.2.3.4",
        "REMOTE_PORT": "4000",
        "HTTP_HOST": "h.example",
        "HTTP_X_FORWARDED_FOR": "9.9.9.9",
        "CONTENT_TYPE": "text/plain",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
    }
    rec = WSGIRecord(env, START)
    rec.end = START + 1
    rec.status = "404 Not Found"
    rec.resp_headers = [("Content-Type", "text/html")]
    rec.body_bytes = 9
    i = HTTPInfo.from_wsgi(rec, 100, 100)
    out = render(
        {
            "uri": "$uri",
            "ru": "$request_uri",
            "st": "$status",
            "proto": "$server_protocol",
            "xff": "$http_x_forwarded_for",
            "ct": "$http_content_type",
            "sct": "$sent_http_content_type",
            "host": "$host",
            "scheme": "$scheme",
            "sa": "$server_addr",
            "rp": "$remote_port",
        },
        i,
    )
    assert out == {
        "uri": "/app/café",
        "ru": "/app/caf%C3%A9?x=1",
        "st": 404,
        "proto": "HTTP/1.0",
        "xff": "9.9.9.9",
        "ct": "text/plain",
        "sct": "text/html",
        "host": "h.example",
        "scheme": "https",
        "sa": "srv",
        "rp": "4000",
    }
    env["RAW_URI"] = "/app/raw?x=1"
    assert HTTPInfo.from_wsgi(rec, 100, 100).request_uri == "/app/raw?x=1"


def test_text_templates() -> None:
    vals = {"request_id": "r1", "n": 5, "b": True}
    assert TextTemplate("static").render(vals.get) == "static"
    assert TextTemplate("static").static == "static"
    assert TextTemplate("$request_id").render(vals.get) == "r1"
    assert TextTemplate("req-${request_id}-$n.$b").render(vals.get) == "req-r1-5.true"
    assert TextTemplate("$$lit").render(vals.get) == "$lit"
    assert TextTemplate("$missing").render(vals.get) is None
    assert TextTemplate("a$missing").render(vals.get) == "a"
    assert TextTemplate("a$missing").variables == {"missing"}


# -- through a logger: metadata, extra, include_*_body_expr ---------------------------------------


def logged(lg: RocketMQLogger, fake: FakeProducer, rec: ASGIRecord) -> dict[str, Any]:
    assert lg._put(rec)
    assert lg.flush(5)
    entry: dict[str, Any] = fake.entries()[-1]
    return entry


def make(**kw: Any) -> tuple[RocketMQLogger, FakeProducer]:
    fake = FakeProducer()
    return RocketMQLogger(NS, "t", producer_factory=lambda: fake, **kw), fake


def test_metadata_precedence() -> None:
    set_metadata(log_format={"h": "$host"}, log_format_extra={"extra": "$status"})
    assert get_metadata() == {
        "log_format": {"h": "$host"},
        "log_format_extra": {"extra": "$status"},
    }
    own, fo = make(log_format={"m": "$request_method"})
    meta, fm = make()
    try:
        assert logged(own, fo, asgi_record()) == {"m": "POST"}
        assert logged(meta, fm, asgi_record()) == {"h": "example.com"}
        # A change reaches running loggers; an empty metadata log_format means the default log.
        set_metadata(log_format={}, log_format_extra={"extra": "$status", "client_ip": "x"})
        e = logged(meta, fm, asgi_record())
        assert e["extra"] == 201
        assert e["client_ip"] == "10.0.0.5"  # extra never overwrites a default field
        set_metadata()
        assert "extra" not in logged(meta, fm, asgi_record())
    finally:
        own.close()
        meta.close()


def test_own_log_format_extra_wins_even_when_empty() -> None:
    set_metadata(log_format_extra={"meta": 1})
    lg, fake = make(log_format_extra={})
    other, fo = make(log_format_extra={"own": "$http_x_request_id"})
    try:
        assert "meta" not in logged(lg, fake, asgi_record())
        e = logged(other, fo, asgi_record())
        assert e["own"] == "rid-1" and "meta" not in e
    finally:
        lg.close()
        other.close()


def test_custom_format_gets_route_id() -> None:
    lg, fake = make(log_format={"s": "$status", "route_id": "mine"})
    try:
        assert logged(lg, fake, asgi_record(scope={"rmqfast.route": "/r"})) == {
            "s": 201,
            "route_id": "/r",
        }
        assert logged(lg, fake, asgi_record()) == {"s": 201, "route_id": "mine"}
    finally:
        lg.close()


def test_include_body_exprs() -> None:
    lg, fake = make(
        include_req_body=True,
        include_req_body_expr=[["arg_ab", "==", "cd"]],
        include_resp_body=True,
        include_resp_body_expr=[["status", "==", 500]],
    )
    try:
        assert lg.capture_request_body and lg.capture_response_body
        e = logged(lg, fake, asgi_record(req_body=[b"in"], resp_body=[b"out"]))
        assert e["request"]["body"] == "in"
        assert "body" not in e["response"]
        e = logged(
            lg,
            fake,
            asgi_record(
                req_body=[b"in"], resp_body=[b"out"], status=500, scope={"query_string": b""}
            ),
        )
        assert "body" not in e["request"]
        assert e["response"]["body"] == "out"
    finally:
        lg.close()


def test_capture_flags_follow_templates() -> None:
    plain, _ = make()
    tpl, _ = make(log_format={"b": "$request_body", "r": "$resp_body"})
    origin, _ = make(meta_format="origin", include_req_body=True, include_resp_body=True)
    try:
        assert (plain.capture_request_body, plain.capture_response_body) == (False, False)
        assert (tpl.capture_request_body, tpl.capture_response_body) == (True, True)
        # origin never carries the response body (as in the plugin).
        assert (origin.capture_request_body, origin.capture_response_body) == (True, False)
    finally:
        for lg in (plain, tpl, origin):
            lg.close()


def test_origin_through_logger_and_array_shape() -> None:
    lg, fake = make(meta_format="origin", batch_max_size=2, message_shape="array")
    try:
        lg._put(asgi_record())
        lg._put(asgi_record())
        assert lg.flush(5)
        [body] = [b for b, _ in fake.messages()]
        texts = json.loads(body)
        assert len(texts) == 2 and texts[0].startswith("POST /api/items/7?")
    finally:
        lg.close()
    lg, fake = make(meta_format="origin", batch_max_size=1)
    try:
        lg._put(asgi_record())
        assert lg.flush(5)
        assert fake.messages()[0][0].startswith(b"POST /api/items/7?ab=cd")
    finally:
        lg.close()


def test_key_and_tag_templates_from_requests() -> None:
    lg, fake = make(key="$http_x_request_id", tag="$request_method", batch_max_size=1)
    try:
        lg._put(asgi_record())
        assert lg.flush(5)
        assert fake.messages()[0][1] == {"KEYS": "rid-1", "TAGS": "POST"}
    finally:
        lg.close()


def test_unknown_variables_are_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rmqfast.logger")
    lg, _ = make(log_format={"u": "$upstream_addr", "h": "$host", "x": "$no_such_var"})
    lg.close()
    msgs = [r.getMessage() for r in caplog.records if "unknown variables" in r.getMessage()]
    assert len(msgs) == 1 and "$no_such_var" in msgs[0] and "$host" not in msgs[0]
    # An APISIX gateway variable gets its reason.
    msgs = [r.getMessage() for r in caplog.records if "$upstream_addr" in r.getMessage()]
    assert len(msgs) == 1 and "no upstream" in msgs[0]
