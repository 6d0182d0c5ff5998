"""RocketMQLogger configuration: APISIX names and defaults, and errors that name the attribute."""

from __future__ import annotations

from typing import Any

import pytest

from rmqfast.logger import ConfigError, RocketMQLogger
from rmqfast.logger.config import LoggerConfig

from .test_logger_support import FakeProducer

NS = ["127.0.0.1:9876"]


def make(**kw: Any) -> LoggerConfig:
    conf: dict[str, Any] = {"nameserver_list": NS, "topic": "t"}
    conf.update(kw)
    return LoggerConfig.from_dict(conf)


def test_defaults_are_the_plugins() -> None:
    c = make()
    assert c.timeout == 3
    assert c.use_tls is False
    assert c.access_key == "" and c.secret_key == ""
    assert c.key is None and c.tag is None
    assert c.log_format is None and c.log_format_extra is None
    assert c.include_req_body is False and c.include_resp_body is False
    assert c.include_req_body_expr is None and c.include_resp_body_expr is None
    assert c.max_req_body_bytes == 524288 and c.max_resp_body_bytes == 524288
    assert c.meta_format == "default"
    assert c.name == "rocketmq logger"
    assert c.batch_max_size == 1000
    assert c.inactive_timeout == 5
    assert c.buffer_duration == 60
    assert c.max_retry_count == 0
    assert c.retry_delay == 1
    assert c.max_pending_entries == 8192
    # Beyond the plugin.
    assert c.message_shape == "entry"
    assert c.backoff == "fixed"
    assert c.tls_verify is True
    assert c.max_pending_bytes == 64 * 1024 * 1024
    assert c.max_message_size == 4 * 1024 * 1024
    assert c.send_concurrency == 2


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        ("nameserver_list", [], "non-empty list"),
        ("nameserver_list", ["localhost"], "host:port"),
        ("nameserver_list", ["h:99999"], "host:port"),
        ("nameserver_list", 9876, "host:port"),
        ("topic", "", "topic name"),
        ("topic", "a b", "topic name"),
        ("topic", "x" * 127, "topic name"),
        ("key", 5, "a string"),
        ("tag", "a||b", "'||'"),
        ("timeout", "3", "a number > 0"),
        ("timeout", 0, "a number > 0"),
        ("timeout", True, "a number > 0"),
        ("use_tls", "yes", "a boolean"),
        ("tls_verify", 1, "a boolean"),
        ("tls_ca_file", "/nonexistent/ca.pem", "readable PEM file"),
        ("access_key", 1, "a string"),
        ("log_format", ["$host"], "an object"),
        ("log_format", {"a": object()}, "a JSON value"),
        ("log_format_extra", "x", "an object"),
        ("include_req_body", "true", "a boolean"),
        ("include_req_body_expr", [], "non-empty array"),
        ("include_req_body_expr", ["arg_x", "==", "y"], "wrapped inside brackets"),
        ("include_resp_body_expr", [["status", "=~", 200]], "invalid operator"),
        ("include_resp_body", 1, "a boolean"),
        ("max_req_body_bytes", 0, "an integer >= 1"),
        ("max_resp_body_bytes", 1.5, "an integer >= 1"),
        ("meta_format", "raw", "'default' or 'origin'"),
        ("name", None, "a string"),
        ("batch_max_size", 0, "an integer >= 1"),
        ("inactive_timeout", -1, "a number > 0"),
        ("buffer_duration", 0, "a number > 0"),
        ("max_retry_count", -1, "an integer >= 0"),
        ("retry_delay", -0.5, "a number >= 0"),
        ("retry_delay", float("nan"), "a number >= 0"),
        ("backoff", "linear", "'fixed' or 'exponential'"),
        ("max_pending_entries", 0, "an integer >= 1"),
        ("max_pending_bytes", "1M", "an integer >= 1"),
        ("message_shape", "object", "'array' or 'entry'"),
        ("producer_group", "", "non-empty string"),
        ("max_message_size", 10, "an integer >= 1024"),
        ("shutdown_timeout", -1, "a number >= 0"),
        ("send_concurrency", 0, "an integer >= 1"),
        ("producer_options", [], "a mapping"),
    ],
)
def test_invalid_attribute_is_named(attr: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        make(**{attr: value})
    # Nested template errors name the path inside the attribute (log_format.a).
    assert e.value.attribute.split(".")[0] == attr
    assert str(e.value).startswith(f"{e.value.attribute}: expected")
    assert expected in str(e.value)


def test_required_and_unknown_attributes() -> None:
    with pytest.raises(ConfigError, match=r"^nameserver_list: expected a value") as e:
        LoggerConfig.from_dict({"topic": "t"})
    assert e.value.attribute == "nameserver_list"
    with pytest.raises(ConfigError, match=r"^topic: expected a value"):
        LoggerConfig.from_dict({"nameserver_list": NS})
    with pytest.raises(ConfigError, match=r"^producer_type: expected a known attribute"):
        make(producer_type="async")


def test_key_pair_must_be_complete() -> None:
    with pytest.raises(ConfigError, match=r"^secret_key: expected a value"):
        make(access_key="ak")
    with pytest.raises(ConfigError, match=r"^access_key: expected a value"):
        make(secret_key="sk")
    c = make(access_key="ak", secret_key="sk")
    assert "sk" not in repr(c)


def test_nameserver_list_forms() -> None:
    assert make(nameserver_list="a:1;b:2").nameserver_list == ["a:1", "b:2"]
    assert make(nameserver_list=("[::1]:9876",)).nameserver_list == ["[::1]:9876"]


def test_producer_kwargs() -> None:
    c = make(
        timeout=2,
        use_tls=True,
        tls_verify=False,
        tls_server_name="rmq",
        access_key="ak",
        secret_key="sk",
        producer_group="g",
        producer_options={"retry_times": 0, "route_refresh_interval": 1.0},
    )
    assert c.producer_kwargs() == {
        "nameservers": NS,
        "producer_group": "g",
        "timeout": 2.0,
        "use_tls": True,
        "tls_ca_file": None,
        "tls_verify": False,
        "tls_server_name": "rmq",
        "access_key": "ak",
        "secret_key": "sk",
        "max_message_size": 4194304,
        "auto_create_topic": False,
        "retry_times": 0,
        "route_refresh_interval": 1.0,
    }
    # max_retry_count counts every retry: the producer itself makes one attempt per call.
    assert make().producer_kwargs()["retry_times"] == 0
    assert make().producer_kwargs()["access_key"] is None


def test_logger_rejects_unknown_producer_options() -> None:
    with pytest.raises(ConfigError, match=r"^producer_options: expected keyword arguments"):
        RocketMQLogger(NS, "t", producer_options={"retries": 3}, producer_factory=FakeProducer)


def test_logger_constructor_and_from_config() -> None:
    with pytest.raises(ConfigError, match=r"^batch_max_size"):
        RocketMQLogger(NS, "t", batch_max_size=0, producer_factory=FakeProducer)
    with pytest.raises(TypeError):
        RocketMQLogger(NS)  # type: ignore[call-arg]
    lg = RocketMQLogger.from_config(
        {"nameserver_list": NS, "topic": "t", "name": "x"}, producer_factory=FakeProducer
    )
    try:
        assert lg.name == "x"
        assert "topic='t'" in repr(lg)
    finally:
        lg.close()
