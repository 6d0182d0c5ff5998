"""RocketMQLogger.from_apisix: APISIX's rocketmq-logger configurations, taken as APISIX stores
them, give the messages APISIX's code gives (shape, key and tag, retries, log_format rules)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from rmqfast.logger import ASGIMiddleware, ConfigError, RocketMQLogger
from rmqfast.logger.apisix import APISIX_ATTRIBUTES, APISIX_IGNORED, APISIX_METADATA
from rmqfast.logger.config import LoggerConfig
from rmqfast.logger.template import (
    APISIX_MAX_DEPTH,
    GATEWAY_ONLY,
    KNOWN_VARIABLES,
    CompiledTemplate,
)

from .test_logger_support import FakeProducer
from .test_logger_template import info

NS = ["127.0.0.1:9876"]


@pytest.fixture
def made() -> Iterator[list[RocketMQLogger]]:
    out: list[RocketMQLogger] = []
    yield out
    for lg in out:
        lg.close(2)


def apisix(
    made: list[RocketMQLogger],
    conf: Any,
    metadata: Any = None,
    fake: FakeProducer | None = None,
    **over: Any,
) -> tuple[RocketMQLogger, FakeProducer]:
    fake = fake or FakeProducer()
    lg = RocketMQLogger.from_apisix(conf, metadata, producer_factory=lambda: fake, **over)
    made.append(lg)
    return lg, fake


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello world\n")


def client(lg: RocketMQLogger) -> TestClient:
    app = Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"])])
    return TestClient(ASGIMiddleware(app, lg))


def bodies(fake: FakeProducer) -> list[tuple[bytes, dict[str, str] | None]]:
    return [m for _, _, msgs in fake.calls for m in msgs]


# A configuration copied from an APISIX route, with what APISIX adds or accepts.
ROUTE = {
    "id": "1",
    "uri": "/hello",
    "plugins": {
        "rocketmq-logger": {
            "nameserver_list": ["127.0.0.1:9876"],
            "topic": "test2",
            "key": "order$1",
            "tag": "tag$x",
            "timeout": 3,
            "batch_max_size": 3,
            "inactive_timeout": 60,
            "producer_type": "async",
            "_meta": {"disable": False, "priority": 10},
        }
    },
    "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"},
}


def test_a_route_as_apisix_stores_it(
    made: list[RocketMQLogger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rmqfast.logger")
    lg, fake = apisix(made, json.dumps(ROUTE))
    c = client(lg)
    for i in range(3):
        assert c.get(f"/hello?i={i}").status_code == 200
    assert lg.flush(5)
    [(body, props)] = bodies(fake)
    # One message per batch: a JSON array of the default entries.
    entries = json.loads(body)
    assert isinstance(entries, list) and len(entries) == 3
    assert [e["request"]["querystring"] for e in entries] == [{"i": "0"}, {"i": "1"}, {"i": "2"}]
    for e in entries:
        assert e["service_id"] == "" and e["apisix_latency"] == e["latency"]
        assert e["response"]["status"] == 200
    # Key and tag as written: APISIX does not template them.
    assert props == {"KEYS": "order$1", "TAGS": "tag$x"}
    text = caplog.text
    assert "_meta" in text and "producer_type" in text
    cfg = lg.config
    assert cfg.message_shape == "array" and cfg.apisix_compat and cfg.topic == "test2"
    assert cfg.producer_group == "apisixLogProducer"


def test_batch_max_size_one_sends_the_entry_itself(made: list[RocketMQLogger]) -> None:
    conf = {"nameserver_list": NS, "topic": "t", "batch_max_size": 1}
    lg, fake = apisix(made, conf)
    client(lg).get("/hello")
    assert lg.flush(5)
    [(body, props)] = bodies(fake)
    assert isinstance(json.loads(body), dict) and props is None


def test_origin_with_batches_is_an_array_of_strings(made: list[RocketMQLogger]) -> None:
    conf = {"nameserver_list": NS, "topic": "t", "meta_format": "origin", "batch_max_size": 2}
    lg, fake = apisix(made, conf, inactive_timeout=60)
    c = client(lg)
    c.get("/hello?ab=cd")
    c.get("/hello")
    assert lg.flush(5)
    [(body, _)] = bodies(fake)
    texts = json.loads(body)
    assert texts[0].startswith("GET /hello?ab=cd HTTP/1.1\r\n") and texts[0].endswith("\r\n\r\n")


def test_metadata_precedence(made: list[RocketMQLogger]) -> None:
    meta = {"log_format": {"host": "$host", "m": "$request_method"}, "max_pending_entries": 77}
    base = {"nameserver_list": NS, "topic": "t", "batch_max_size": 1}
    lg, fake = apisix(made, base, meta)
    client(lg).get("/hello")
    assert lg.flush(5)
    assert json.loads(bodies(fake)[0][0]) == {
        "host": "testserver",
        "m": "GET",
        "route_id": "/hello",
    }
    assert lg.config.max_pending_entries == 77
    # The plugin's own log_format wins, even an empty one (APISIX: an empty table is true).
    lg, fake = apisix(made, {**base, "log_format": {}}, meta)
    client(lg).get("/hello")
    assert lg.flush(5)
    assert json.loads(bodies(fake)[0][0]) == {"route_id": "/hello"}
    # An empty metadata log_format is no format: the full entry, plus log_format_extra.
    lg, fake = apisix(made, base, {"log_format": {}, "log_format_extra": {"env": "prod"}})
    client(lg).get("/hello")
    assert lg.flush(5)
    e = json.loads(bodies(fake)[0][0])
    assert e["env"] == "prod" and e["request"]["method"] == "GET"


def test_overrides_and_errors(made: list[RocketMQLogger], tmp_path: Any) -> None:
    conf = {"nameserver_list": NS, "topic": "t"}
    lg, _ = apisix(made, conf, spool_dir=str(tmp_path), message_shape="entry")
    assert lg.config.spool_dir == str(tmp_path) and lg.config.message_shape == "entry"
    with pytest.raises(ConfigError, match=r"^plugin_conf: expected a JSON object"):
        RocketMQLogger.from_apisix("{not json")
    with pytest.raises(ConfigError, match=r'^plugin_conf: expected a "rocketmq-logger" entry'):
        RocketMQLogger.from_apisix({"plugins": {"kafka-logger": {}}})
    with pytest.raises(ConfigError, match=r"^timeout: expected a number > 0"):
        RocketMQLogger.from_apisix({**conf, "timeout": "10"})


def test_unknown_keys_are_left_out_with_a_warning(
    made: list[RocketMQLogger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rmqfast.logger")
    apisix(made, {"nameserver_list": NS, "topic": "t", "vars": [1]}, {"color": "x"})
    assert "vars" in caplog.text and "metadata.color" in caplog.text


def test_max_retry_count_counts_every_attempt(made: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    fake.down = True
    conf = {"nameserver_list": NS, "topic": "t", "batch_max_size": 1, "max_retry_count": 2}
    lg, _ = apisix(made, conf, fake=fake, retry_delay=0)
    lg.log({"a": 1})
    lg.flush(5)
    assert fake.attempts == 3  # 1 + max_retry_count, and the producer itself retries none
    assert lg.config.producer_kwargs()["retry_times"] == 0
    assert lg.stats()["dropped"]["retries_exhausted"] == 1


# -- log_format: arrays, depth, empties ----------------------------------------------------------


def test_variables_inside_arrays_are_substituted() -> None:
    fmt = {"a": ["$host", "$http_nope", 1, {"m": "$request_method"}, ["$status"]]}
    out = CompiledTemplate(fmt).render(info())
    # A variable without a value keeps its place as null (APISIX: a hole, encoded null).
    assert out == {"a": ["example.com", None, 1, {"m": "POST"}, [201]]}


def test_apisix_depth_and_empty_rules() -> None:
    # APISIX's http-logger-log-format.t TEST 21: the a..e chain stays, "f" is cut to {}.
    deep = {"a": {"b": {"c": {"d": {"e": {"f": {"g": "$host"}}}}}}}
    out = CompiledTemplate(deep, apisix=True).render(info())
    assert out == {"a": {"b": {"c": {"d": {"e": {}}}}}}
    assert APISIX_MAX_DEPTH == 5
    # rmqfast's own mode keeps every level.
    assert CompiledTemplate(deep).render(info())["a"]["b"]["c"]["d"]["e"]["f"] == {
        "g": "example.com"
    }
    # APISIX encodes an empty table as {}; rmqfast keeps [] as [].
    empties = {"x": [], "y": {}}
    assert CompiledTemplate(empties, apisix=True).render(info()) == {"x": {}, "y": {}}
    assert CompiledTemplate(empties).render(info()) == {"x": [], "y": {}}


def test_keys_and_tags_are_templates_unless_apisix(made: list[RocketMQLogger]) -> None:
    fake = FakeProducer()
    lg = RocketMQLogger(
        NS, "t", key="order$$1-$id", tag="t$$", producer_factory=lambda: fake, batch_max_size=1
    )
    made.append(lg)
    lg.log({"id": 7})
    assert lg.flush(5)
    assert bodies(fake)[0][1] == {"KEYS": "order$1-7", "TAGS": "t$"}


# -- the README documents every attribute, variable and APISIX key ---------------------------


def _readme_section(start: str, end: str) -> str:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    return text[text.index(start) : text.index(end)]


def test_readme_documents_every_attribute_variable_and_apisix_key() -> None:
    logger_doc = _readme_section("## The logger:", "## Stats")
    attributes = _readme_section("| attribute | default | meaning |", "### Variables")
    missing = [f.name for f in fields(LoggerConfig) if f.init and f"`{f.name}`" not in attributes]
    assert not missing, f"logger attributes missing from the README table: {missing}"
    variables = _readme_section("| variable | value |", "### Coming from APISIX")
    for v in KNOWN_VARIABLES:
        shown = f"`${v[:-1]}<" if v.endswith("*") else f"`${v}`"
        assert shown in variables, f"${v} is missing from the README's variable table"
    for v in GATEWAY_ONLY:
        assert f"`${v}`" in logger_doc, f"${v} is missing from the README"
    migration = _readme_section("| plugin attribute | APISIX |", "| default-entry field |")
    for key in [*APISIX_ATTRIBUTES, *APISIX_IGNORED]:
        assert f"`{key}`" in migration, (
            f"APISIX attribute {key} is missing from the migration table"
        )
    for key in APISIX_METADATA:
        assert f"metadata `{key}`" in migration, f"metadata {key} is missing"


def test_match_logs_only_the_requests_a_rule_holds_for(made: list[RocketMQLogger]) -> None:
    conf = {
        "nameserver_list": NS,
        "topic": "t",
        "batch_max_size": 1,
        "match": [[["arg_log", "==", "yes"]], [["request_method", "==", "POST"]]],
    }
    lg, fake = apisix(made, conf)
    c = client(lg)
    c.get("/hello?log=yes")
    c.get("/hello?log=no")
    c.post("/hello")
    assert lg.flush(5)
    got = [json.loads(b)["request"]["uri"] for b, _ in bodies(fake)]
    assert got == ["/hello?log=yes", "/hello"]
    st = lg.stats()
    assert st["filtered"] == 1 and st["sent"] == 2 and st["accepted"] == 3
    with pytest.raises(ConfigError, match=r"^match: expected a non-empty array"):
        RocketMQLogger(NS, "t", match=[])
    with pytest.raises(ConfigError, match=r"^match\[0\]: expected a lua-resty-expr rule"):
        RocketMQLogger(NS, "t", match=[["arg_x", "==", "1"]])
