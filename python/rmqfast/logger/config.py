"""RocketMQLogger configuration: APISIX rocketmq-logger attributes, defaults and checks."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rmqfast.logger.expr import CompiledExpr, ExprError, compile_expr

__all__ = [
    "ConfigError",
    "LoggerConfig",
    "Metadata",
    "get_metadata",
    "set_metadata",
]

_TOPIC_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")
_ADDR_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:;,\[\]]+):(\d{1,5})$")
_MAX_TOPIC_LEN = 127


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the attribute and what was expected."""

    def __init__(self, attribute: str, expected: str, value: Any = ..., *, show: bool = True):
        self.attribute = attribute
        msg = f"{attribute}: expected {expected}"
        if value is not ... and show:
            text = repr(value)
            if len(text) > 80:
                text = text[:77] + "..."
            msg += f", got {text} ({type(value).__name__})"
        super().__init__(msg)


@dataclass
class LoggerConfig:
    """Every attribute of a RocketMQLogger; names and defaults follow APISIX rocketmq-logger."""

    nameserver_list: list[str]
    topic: str
    key: str | None = None
    tag: str | None = None
    timeout: float = 3
    use_tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
    include_req_body: bool = False
    include_req_body_expr: list[Any] | None = None
    include_resp_body: bool = False
    include_resp_body_expr: list[Any] | None = None
    match: list[Any] | None = None
    max_req_body_bytes: int = 524288
    max_resp_body_bytes: int = 524288
    meta_format: str = "default"
    name: str = "rocketmq logger"
    batch_max_size: int = 1000
    inactive_timeout: float = 5
    buffer_duration: float = 60
    max_retry_count: int = 0
    retry_delay: float = 1
    backoff: str = "fixed"
    max_pending_entries: int = 8192
    max_pending_bytes: int = 64 * 1024 * 1024
    message_shape: str = "entry"
    producer_group: str = "rmqfast_logger"
    max_message_size: int = 4 * 1024 * 1024
    shutdown_timeout: float = 5
    send_concurrency: int = 2
    auto_create_topic: bool = False
    apisix_compat: bool = False
    spool_dir: str | None = None
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_fsync_interval: float = 1
    producer_options: dict[str, Any] = field(default_factory=dict)

    # Compiled forms, filled by validate().
    req_body_expr: CompiledExpr | None = field(default=None, init=False, repr=False)
    resp_body_expr: CompiledExpr | None = field(default=None, init=False, repr=False)
    match_exprs: list[CompiledExpr] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> LoggerConfig:
        """A validated config from a plugin-style dict; unknown attributes are an error."""
        if not isinstance(conf, Mapping):
            raise ConfigError("config", "a mapping of attribute names to values", conf)
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(str(k) for k in conf if k not in known)
        if unknown:
            raise ConfigError(
                unknown[0], f"a known attribute (one of: {', '.join(sorted(known))})", show=False
            )
        for required in ("nameserver_list", "topic"):
            if required not in conf:
                raise ConfigError(required, "a value (the attribute is required)", show=False)
        return cls(**dict(conf)).validate()

    def validate(self) -> LoggerConfig:
        """Check and normalise every attribute; raises ConfigError naming the first wrong one."""
        self.nameserver_list = _nameservers(self.nameserver_list)
        self.topic = _topic(self.topic)
        self.key = _opt_str("key", self.key)
        self.tag = _opt_str("tag", self.tag)
        if self.tag is not None and "||" in self.tag:
            raise ConfigError("tag", "a tag without '||' (it separates tags in subscriptions)")
        self.timeout = _number("timeout", self.timeout, minimum=0, exclusive=True)
        self.use_tls = _bool("use_tls", self.use_tls)
        self.tls_verify = _bool("tls_verify", self.tls_verify)
        self.tls_ca_file = _opt_str("tls_ca_file", self.tls_ca_file)
        if self.tls_ca_file is not None and not os.access(self.tls_ca_file, os.R_OK):
            raise ConfigError("tls_ca_file", "a readable PEM file", self.tls_ca_file)
        self.tls_server_name = _opt_str("tls_server_name", self.tls_server_name)
        self.access_key = _str("access_key", self.access_key)
        if not isinstance(self.secret_key, str):
            raise ConfigError("secret_key", "a string", show=False)
        if bool(self.access_key) != bool(self.secret_key):
            missing = "secret_key" if self.access_key else "access_key"
            raise ConfigError(missing, "a value, since the other half of the key pair is set")
        self.log_format = _template("log_format", self.log_format)
        self.log_format_extra = _template("log_format_extra", self.log_format_extra)
        self.include_req_body = _bool("include_req_body", self.include_req_body)
        self.include_resp_body = _bool("include_resp_body", self.include_resp_body)
        self.req_body_expr = _expr("include_req_body_expr", self.include_req_body_expr)
        self.resp_body_expr = _expr("include_resp_body_expr", self.include_resp_body_expr)
        if self.match is not None:
            if not isinstance(self.match, (list, tuple)) or not self.match:
                raise ConfigError("match", "a non-empty array of lua-resty-expr rules", self.match)
            self.match_exprs = [
                e for i, rule in enumerate(self.match) if (e := _expr(f"match[{i}]", rule))
            ]
        self.max_req_body_bytes = _int("max_req_body_bytes", self.max_req_body_bytes, 1)
        self.max_resp_body_bytes = _int("max_resp_body_bytes", self.max_resp_body_bytes, 1)
        self.meta_format = _choice("meta_format", self.meta_format, ("default", "origin"))
        self.name = _str("name", self.name)
        self.batch_max_size = _int("batch_max_size", self.batch_max_size, 1)
        self.inactive_timeout = _number("inactive_timeout", self.inactive_timeout, 0, True)
        self.buffer_duration = _number("buffer_duration", self.buffer_duration, 0, True)
        self.max_retry_count = _int("max_retry_count", self.max_retry_count, 0)
        self.retry_delay = _number("retry_delay", self.retry_delay, 0, False)
        self.backoff = _choice("backoff", self.backoff, ("fixed", "exponential"))
        self.max_pending_entries = _int("max_pending_entries", self.max_pending_entries, 1)
        self.max_pending_bytes = _int("max_pending_bytes", self.max_pending_bytes, 1)
        self.message_shape = _choice("message_shape", self.message_shape, ("array", "entry"))
        self.producer_group = _str("producer_group", self.producer_group)
        if not self.producer_group:
            raise ConfigError("producer_group", "a non-empty string", self.producer_group)
        self.max_message_size = _int("max_message_size", self.max_message_size, 1024)
        self.shutdown_timeout = _number("shutdown_timeout", self.shutdown_timeout, 0, False)
        self.send_concurrency = _int("send_concurrency", self.send_concurrency, 1)
        self.auto_create_topic = _bool("auto_create_topic", self.auto_create_topic)
        self.apisix_compat = _bool("apisix_compat", self.apisix_compat)
        if self.spool_dir is not None:
            if not isinstance(self.spool_dir, (str, os.PathLike)) or not str(self.spool_dir):
                raise ConfigError("spool_dir", "a directory path or None", self.spool_dir)
            self.spool_dir = os.fspath(self.spool_dir)
        self.spool_max_bytes = _int(
            "spool_max_bytes", self.spool_max_bytes, 4 * self.max_message_size
        )
        self.spool_fsync_interval = _number(
            "spool_fsync_interval", self.spool_fsync_interval, 0, False
        )
        if not isinstance(self.producer_options, Mapping) or not all(
            isinstance(k, str) for k in self.producer_options
        ):
            raise ConfigError(
                "producer_options", "a mapping of Producer keyword arguments", self.producer_options
            )
        self.producer_options = dict(self.producer_options)
        return self

    def producer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `rmqfast.producer.Producer`."""
        kwargs: dict[str, Any] = {
            "nameservers": list(self.nameserver_list),
            "producer_group": self.producer_group,
            "timeout": float(self.timeout),
            "use_tls": self.use_tls,
            "tls_ca_file": self.tls_ca_file,
            "tls_verify": self.tls_verify,
            "tls_server_name": self.tls_server_name,
            "access_key": self.access_key or None,
            "secret_key": self.secret_key or None,
            "max_message_size": self.max_message_size,
            "auto_create_topic": self.auto_create_topic,
            # max_retry_count counts every retry: the producer makes one attempt per call.
            "retry_times": 0,
        }
        kwargs.update(self.producer_options)
        return kwargs


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(name, "a boolean", v)
    return v


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(name, "a string", v)
    return v


def _opt_str(name: str, v: Any) -> str | None:
    if v is None:
        return None
    s = _str(name, v)
    return s or None


def _int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(name, f"an integer >= {minimum}", v)
    if v < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", v)
    return v


def _number(name: str, v: Any, minimum: float, exclusive: bool) -> float:
    what = f"a number {'>' if exclusive else '>='} {minimum:g} (seconds)"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(name, what, v)
    if v != v or v in (float("inf"), float("-inf")) or v < minimum or (exclusive and v == minimum):
        raise ConfigError(name, what, v)
    return v


def _choice(name: str, v: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(name, " or ".join(repr(c) for c in choices), v)
    return v


def _nameservers(v: Any) -> list[str]:
    what = 'a non-empty list of "host:port" strings'
    if isinstance(v, str):
        v = [p for p in re.split(r"[;,\s]+", v) if p]
    if not isinstance(v, (list, tuple)) or not v:
        raise ConfigError("nameserver_list", what, v)
    out: list[str] = []
    for item in v:
        m = _ADDR_RE.match(item) if isinstance(item, str) else None
        if m is None or not 0 < int(m.group(2)) < 65536:
            raise ConfigError("nameserver_list", what, item)
        out.append(item)
    return out


def _topic(v: Any) -> str:
    what = f"a topic name of 1 to {_MAX_TOPIC_LEN - 1} characters from [%|a-zA-Z0-9_-]"
    if not isinstance(v, str) or not _TOPIC_RE.match(v) or len(v) >= _MAX_TOPIC_LEN:
        raise ConfigError("topic", what, v)
    return v


_JSON_SCALARS = (str, int, float, bool, type(None))


def _check_json(name: str, v: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ConfigError(name, "a template nested at most 32 levels deep", show=False)
    if isinstance(v, Mapping):
        for k, item in v.items():
            if not isinstance(k, str):
                raise ConfigError(name, "string keys", k)
            _check_json(f"{name}.{k}", item, depth + 1)
    elif isinstance(v, (list, tuple)):
        for i, item in enumerate(v):
            _check_json(f"{name}[{i}]", item, depth + 1)
    elif not isinstance(v, _JSON_SCALARS):
        raise ConfigError(name, "a JSON value (object, array, string, number, bool, null)", v)


def _template(name: str, v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ConfigError(name, "an object mapping field names to values or $variables", v)
    _check_json(name, v)
    return dict(v)


def _expr(name: str, v: Any) -> CompiledExpr | None:
    if v is None:
        return None
    try:
        return compile_expr(v, name)
    except ExprError as e:
        text = str(e)
        if text.startswith(name):
            text = text[len(name) :].lstrip(": [0-9]")
        raise ConfigError(name, f"a lua-resty-expr rule ({text})", show=False) from None


class Metadata:
    """Process-wide defaults shared by every logger, like the plugin's metadata."""

    def __init__(self) -> None:
        self.log_format: dict[str, Any] | None = None
        self.log_format_extra: dict[str, Any] | None = None
        self.version = 0
        self.lock = threading.Lock()


METADATA = Metadata()


def set_metadata(
    *,
    log_format: Mapping[str, Any] | None = None,
    log_format_extra: Mapping[str, Any] | None = None,
) -> None:
    """Set the process-wide log_format / log_format_extra (None clears); loggers pick them up."""
    fmt = _template("log_format", log_format)
    extra = _template("log_format_extra", log_format_extra)
    with METADATA.lock:
        METADATA.log_format = fmt or None
        METADATA.log_format_extra = extra
        METADATA.version += 1


def get_metadata() -> dict[str, Any]:
    """The process-wide metadata: {"log_format": ..., "log_format_extra": ...}."""
    with METADATA.lock:
        return {"log_format": METADATA.log_format, "log_format_extra": METADATA.log_format_extra}
