"""APISIX's own rocketmq-logger configurations (its docs and test files, in
tests/data/apisix_rocketmq_logger_cases.json with what APISIX's code puts in each message),
fed to RocketMQLogger.from_apisix behind a Starlette app; the message bodies must match.

The file's "about" says how expected entries are matched: a subset match, where null in an
object means "present, value varies" and null in an array is a JSON null."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rmqfast.logger import ASGIMiddleware, RocketMQLogger

from .test_logger_support import FakeProducer

DATA = json.loads(
    (Path(__file__).parent / "data" / "apisix_rocketmq_logger_cases.json").read_text()
)
CASES: list[dict[str, Any]] = DATA["cases"]


# Where rmqfast differs on purpose (the README's migration table): the path is absent here.
GATEWAY_FIELDS: dict[str, dict[str, str]] = {
    "t/plugin/file-logger.t TEST 16": {
        "upstream_host": "$upstream_unresolved_host: there is no upstream, the app is the server"
    },
}


def _id(case: dict[str, Any]) -> str:
    return case["source"].split(" (")[0][:60]


def upstream(case: dict[str, Any]) -> Any:
    """The app standing in for APISIX's route and upstream: answers as the case's upstream
    did, and names the matched APISIX route (its id) the way a framework names its route."""
    route = case.get("route") or {}
    resp = case.get("upstream_response") or {}
    status = int(resp.get("status", 200))
    body = resp.get("body", "hello world\n")
    headers = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
    raw = body.encode() if isinstance(body, str) else b""
    if headers.get("content-encoding") == "gzip":
        raw = gzip.compress(raw)
    headers.setdefault("content-type", "text/plain")
    headers["content-length"] = str(len(raw))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if route.get("id") is not None:
            scope["rmqfast.route"] = str(route["id"])
        out = [(k.encode(), str(v).encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": raw})

    return app


def matches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences of `actual` from `expected` under the file's subset rules."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected an object, got {actual!r}"]
        out: list[str] = []
        for k, v in expected.items():
            p = f"{path}.{k}" if path else k
            if k not in actual:
                out.append(f"{p}: missing")
            elif v is not None:
                out += matches(v, actual[k], p)
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if e is None:
                if a is not None:
                    out.append(f"{path}[{i}]: expected null, got {a!r}")
            else:
                out += matches(e, a, f"{path}[{i}]")
        return out
    if expected != actual or type(expected) is not type(actual):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def has_path(doc: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True


def raw_diff(expected: dict[str, Any], text: str) -> list[str]:
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        return [f"no blank line after the headers in {text!r}"]
    line, *headers = head.split("\r\n")
    out = []
    if line != expected["request_line"]:
        out.append(f"request line {line!r} != {expected['request_line']!r}")
    missing = set(expected["headers"]) - set(headers)
    if missing:
        out.append(f"header lines {sorted(missing)} missing from {headers}")
    if body != (expected.get("body") or ""):
        out.append(f"body {body!r} != {expected.get('body')!r}")
    return out


@pytest.fixture
def made() -> Iterator[list[RocketMQLogger]]:
    out: list[RocketMQLogger] = []
    yield out
    for lg in out:
        lg.close(2)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_apisix_case(case: dict[str, Any], made: list[RocketMQLogger]) -> None:
    exp = case["expected"]
    fake = FakeProducer()
    fake.down = exp["messages"] == 0  # the case's name server or topic does not exist
    lg = RocketMQLogger.from_apisix(
        case["plugin_conf"], case.get("metadata"), producer_factory=lambda: fake, retry_delay=0
    )
    made.append(lg)
    client = TestClient(ASGIMiddleware(upstream(case), lg), client=("127.0.0.1", 50000))
    for r in case["requests"]:
        url = r["path"] + (f"?{r['query']}" if r.get("query") else "")
        body = r.get("body")
        client.request(
            r.get("method", "GET"),
            url,
            headers=r.get("headers") or {},
            content=body.encode() if isinstance(body, str) else None,
        )
    assert lg.flush(10)
    sent = [m for _, _, msgs in fake.calls for m in msgs]
    assert len(sent) == exp["messages"], sent
    if not sent:
        st = lg.stats()
        assert sum(st["dropped"].values()) == len(case["requests"]), st
        return
    # The key and tag exactly as configured: APISIX does not template them.
    for _, props in sent:
        props = props or {}
        assert props.get("KEYS") == exp.get("key")
        assert props.get("TAGS") == exp.get("tag")
    shape = exp["shape"]
    if shape == "raw":
        texts = [body.decode() for body, _ in sent]
    elif shape == "object":
        texts = [json.loads(body) for body, _ in sent]
    else:
        [(body, _)] = sent
        texts = json.loads(body)
        assert isinstance(texts, list)
    entries = exp["entries"]
    assert len(texts) == len(entries)
    for field in GATEWAY_FIELDS.get(case["source"], {}):
        entries = [{k: v for k, v in e.items() if k != field} for e in entries]
        assert all(field not in t for t in texts), f"{field} was expected to be absent here"
    problems: list[str] = []
    for i, (want, got) in enumerate(zip(entries, texts, strict=True)):
        if isinstance(got, str):
            problems += raw_diff(exp["raw_parts"][i], got)
            continue
        problems += matches(want, got, f"entry[{i}]")
        exact = (exp.get("exact_keys") or [None] * len(entries))[i]
        if exact is not None and set(got) != set(exact):
            problems.append(f"entry[{i}] keys {sorted(got)} != {sorted(exact)}")
        for p in (exp.get("absent") or [[]] * len(entries))[i] or []:
            if has_path(got, p):
                problems.append(f"entry[{i}].{p} should be absent")
    assert not problems, "\n".join([case["source"], *problems, "--", json.dumps(texts)[:2000]])
