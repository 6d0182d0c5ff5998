"""rmqfast.logger: HTTP request logs and log records to RocketMQ, like APISIX rocketmq-logger.

    logger = RocketMQLogger(["127.0.0.1:9876"], "access-log", key="$request_id")
    app = ASGIMiddleware(app, logger)          # or WSGIMiddleware(app, logger)
    logging.getLogger().addHandler(LoggingHandler(logger))

The request path only captures references and queues them (`log()` never waits); templates,
JSON and sending run on the logger's own threads. See the README for every attribute.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from rmqfast.logger.batch import DROP_REASONS, BatchProcessor, Encoded, Message, keep_forever
from rmqfast.logger.batch import close_all as _close_all_processors
from rmqfast.logger.config import (
    METADATA,
    ConfigError,
    LoggerConfig,
    get_metadata,
)
from rmqfast.logger.config import set_metadata as _set_metadata
from rmqfast.logger.records import ASGIRecord, HTTPInfo, WSGIRecord
from rmqfast.logger.template import (
    CompiledTemplate,
    Getter,
    TextTemplate,
    default_entry,
    origin_text,
    variable_getter,
)

__all__ = [
    "DROP_REASONS",
    "ASGIMiddleware",
    "ConfigError",
    "LoggingHandler",
    "ProducerLike",
    "RocketMQLogger",
    "WSGIMiddleware",
    "all_loggers",
    "close_all",
    "get_metadata",
    "set_metadata",
    "stats_items",
]

_log = logging.getLogger("rmqfast.logger")

# Keyword arguments of rmqfast._core.Producer that producer_options may set.
_PRODUCER_OPTIONS = frozenset(
    {
        "producer_group",
        "timeout",
        "use_tls",
        "tls_ca_file",
        "tls_insecure_skip_verify",
        "tls_server_name",
        "access_key",
        "secret_key",
        "retry_times",
        "route_refresh_interval",
        "max_message_size",
    }
)
_MAX_KEY_LEN = 1024


class ProducerLike(Protocol):
    """What the logger needs of a producer (rmqfast._core.Producer has it)."""

    def send(
        self,
        topic: str,
        body: bytes,
        keys: str | None = None,
        tags: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Any:
        """Send one message; raise on failure (`retryable` False: do not retry)."""

    def send_batch(self, topic: str, messages: list[Message]) -> Any:
        """Send messages as one RocketMQ batch; raise on failure."""

    def close(self) -> None:
        """Release connections."""


def _version() -> str:
    try:
        from rmqfast import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - the extension is not built
        return "unknown"


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).decode("utf-8", "replace")
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _make_encoder() -> Callable[[Any], bytes]:
    """Compact JSON as UTF-8 bytes, non-ASCII kept, NaN refused.

    `_core.json_dumps` writes the same text as the stdlib encoder, several times faster; the
    stdlib's C encoder (built once, not per call) stands in when the extension lacks it.
    """
    std = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    ).encode

    def std_bytes(o: Any) -> bytes:
        return std(o).encode("utf-8", "replace")

    try:
        from rmqfast import _core

        core_dumps = _core.json_dumps

        def core_encode(o: Any) -> bytes:
            return core_dumps(o, _json_default)

        if core_encode(_PROBE) == std_bytes(_PROBE):
            return core_encode
    except Exception:  # pragma: no cover - the extension is not built
        pass
    try:  # pragma: no cover - only without the extension
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

        # No markers dict: a cycle ends in RecursionError instead (counted as encode_error).
        c_encode = c_make_encoder(
            None, _json_default, encode_basestring, None, ":", ",", False, False, False
        )

        def c_bytes(o: Any) -> bytes:
            return "".join(c_encode(o, 0)).encode("utf-8", "replace")

        if c_bytes(_PROBE) == std_bytes(_PROBE):
            return c_bytes
    except Exception:  # pragma: no cover - no C accelerator (e.g. PyPy)
        pass
    return std_bytes  # pragma: no cover


_PROBE = {"a": [1, 2.5, None, True, 1e16], "b": {"c": 'é\n"', 7: (1,)}, "d": b"x"}


class _Renderer:
    """Turns queued items into (body, key, tag) on the batcher thread."""

    def __init__(self, cfg: LoggerConfig, version: str) -> None:
        self.cfg = cfg
        self.version = version
        self._encode = _make_encoder()
        self.key_tpl = TextTemplate(cfg.key) if cfg.key else None
        self.tag_tpl = TextTemplate(cfg.tag) if cfg.tag else None
        self._getters: dict[str, Getter | None] = {}
        self.meta_version = -1
        self.template: CompiledTemplate | None = None
        self.extra: CompiledTemplate | None = None
        self.capture_req = False
        self.capture_resp = False
        self.refresh(warn=True)

    def refresh(self, warn: bool = False) -> None:
        """Recompile the templates in effect (the logger's own, else the metadata's)."""
        cfg = self.cfg
        with METADATA.lock:
            version = METADATA.version
            meta_fmt = METADATA.log_format
            meta_extra = METADATA.log_format_extra
        fmt = cfg.log_format if cfg.log_format is not None else meta_fmt
        extra_fmt = cfg.log_format_extra if cfg.log_format_extra is not None else meta_extra
        limit = cfg.max_resp_body_bytes
        template = CompiledTemplate(fmt, limit) if fmt is not None else None
        extra = CompiledTemplate(extra_fmt, limit) if extra_fmt and template is None else None
        unknown: set[str] = set()
        for t in (template, extra):
            if t is not None:
                unknown |= t.unknown
        if unknown and warn:
            _log.warning(
                "rocketmq logger %r: unknown variables %s always come out empty",
                cfg.name,
                ", ".join(sorted("$" + u for u in unknown)),
            )
        origin = cfg.meta_format == "origin"
        body_vars: set[str] = set()
        for t in (template, extra):
            if t is not None:
                body_vars |= t.body_vars
        capture_req = cfg.include_req_body or "request_body" in body_vars
        capture_resp = (cfg.include_resp_body or "resp_body" in body_vars) and not origin
        # One attribute at a time is fine: a request racing a metadata change may capture a
        # body it does not need, or miss one a brand-new template wants.
        self.template = template
        self.extra = extra
        self.capture_req = capture_req
        self.capture_resp = capture_resp
        self.meta_version = version

    def _getter(self, name: str) -> Getter | None:
        try:
            return self._getters[name]
        except KeyError:
            g = self._getters[name] = variable_getter(name, self.cfg.max_resp_body_bytes)
            return g

    def _lookup(self, info: HTTPInfo) -> Callable[[str], Any]:
        def lookup(name: str) -> Any:
            g = self._getter(name)
            return None if g is None else g(info)

        return lookup

    @staticmethod
    def _cap(text: str | None) -> str | None:
        if text is not None and len(text) > _MAX_KEY_LEN:
            return text[:_MAX_KEY_LEN]
        return text

    def render(self, item: Any) -> Encoded:
        """(body, key, tag) for one queued item; raises if it cannot be encoded."""
        if METADATA.version != self.meta_version:
            self.refresh(warn=True)
        t = type(item)
        if t is ASGIRecord or t is WSGIRecord:
            return self._render_http(item)
        lookup: Callable[[str], Any]
        if t is dict:
            body = self._encode(item)
            lookup = item.get
        elif isinstance(item, (bytes, bytearray)):
            body = bytes(item)
            lookup = _no_vars
        elif isinstance(item, str):
            body = item.encode("utf-8", "replace")
            lookup = _no_vars
        elif isinstance(item, (ASGIRecord, WSGIRecord)):
            return self._render_http(item)
        else:
            body = self._encode(dict(item))
            lookup = item.get
        key_tpl, tag_tpl = self.key_tpl, self.tag_tpl
        if key_tpl is None and tag_tpl is None:
            return body, None, None
        key = key_tpl.render(lookup) if key_tpl is not None else None
        tag = tag_tpl.render(lookup) if tag_tpl is not None else None
        return body, self._cap(key), self._cap(tag)

    def _render_http(self, rec: ASGIRecord | WSGIRecord) -> Encoded:
        cfg = self.cfg
        if isinstance(rec, ASGIRecord):
            info = HTTPInfo.from_asgi(rec, cfg.max_req_body_bytes, cfg.max_resp_body_bytes)
        else:
            info = HTTPInfo.from_wsgi(rec, cfg.max_req_body_bytes, cfg.max_resp_body_bytes)
        lookup = self._lookup(info)
        if cfg.meta_format == "origin":
            body = origin_text(info, self._include_req(lookup)).encode("utf-8", "replace")
        else:
            template = self.template
            if template is not None:
                entry = template.render(info)
                if info.route is not None:
                    entry["route_id"] = info.route
            else:
                entry = default_entry(
                    info,
                    req_body=self._include_req(lookup),
                    resp_body=self._include_resp(lookup),
                    max_resp_body_bytes=cfg.max_resp_body_bytes,
                    version=self.version,
                )
                extra = self.extra
                if extra is not None:
                    extra.render_missing(info, entry)
            body = self._encode(entry)
        key = self.key_tpl.render(lookup) if self.key_tpl is not None else None
        tag = self.tag_tpl.render(lookup) if self.tag_tpl is not None else None
        return body, self._cap(key), self._cap(tag)

    def _include_req(self, lookup: Callable[[str], Any]) -> bool:
        cfg = self.cfg
        if not cfg.include_req_body:
            return False
        return cfg.req_body_expr is None or cfg.req_body_expr.evaluate(lookup)

    def _include_resp(self, lookup: Callable[[str], Any]) -> bool:
        cfg = self.cfg
        if not cfg.include_resp_body:
            return False
        return cfg.resp_body_expr is None or cfg.resp_body_expr.evaluate(lookup)


def _no_vars(_: str) -> None:
    return None


def _json_string(body: bytes) -> bytes:
    # meta_format "origin" in array shape: each raw request text becomes a JSON string.
    return json.dumps(body.decode("utf-8", "replace"), ensure_ascii=False).encode("utf-8")


class _Sink:
    """The producer side: built lazily on the sender thread, rebuilt after fork."""

    def __init__(self, cfg: LoggerConfig, factory: Callable[[], ProducerLike] | None) -> None:
        self.cfg = cfg
        self.topic = cfg.topic
        self.factory = factory
        self.producer: ProducerLike | None = None
        self.lock = threading.Lock()

    def _make(self) -> ProducerLike:
        if self.factory is not None:
            return self.factory()
        from rmqfast import _core

        producer_cls = getattr(_core, "Producer", None)
        if producer_cls is None:
            raise _PermanentError("rmqfast._core has no Producer (extension built without it)")
        try:
            p: ProducerLike = producer_cls(**self.cfg.producer_kwargs())
        except (TypeError, ValueError) as e:
            raise _PermanentError(f"cannot create the producer: {e}") from e
        return p

    def send(self, messages: list[Message]) -> None:
        p = self.producer
        if p is None:
            with self.lock:
                if self.producer is None:
                    self.producer = self._make()
                p = self.producer
        if len(messages) == 1:
            body, props = messages[0]
            if props:
                p.send(self.topic, body, keys=props.get("KEYS"), tags=props.get("TAGS"))
            else:
                p.send(self.topic, body)
        else:
            p.send_batch(self.topic, messages)

    def close(self) -> None:
        with self.lock:
            p, self.producer = self.producer, None
        if p is not None:
            p.close()

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        p, self.producer = self.producer, None
        if p is not None:
            keep_forever(p)


class _PermanentError(Exception):
    retryable = False


_LOGGERS: weakref.WeakSet[RocketMQLogger] = weakref.WeakSet()


class RocketMQLogger:
    """Sends log entries to a RocketMQ topic in batches; APISIX rocketmq-logger attributes.

    `RocketMQLogger(nameserver_list, topic, **attributes)`; see LoggerConfig and the README for
    the attributes. `producer_factory` (tests, custom producers) builds the producer on the
    logger's thread instead of rmqfast._core.Producer.
    """

    def __init__(
        self,
        nameserver_list: list[str] | str,
        topic: str,
        *,
        producer_factory: Callable[[], ProducerLike] | None = None,
        **attributes: Any,
    ) -> None:
        conf = dict(attributes)
        conf["nameserver_list"] = nameserver_list
        conf["topic"] = topic
        self.config = LoggerConfig.from_dict(conf)
        self._setup(producer_factory)

    @classmethod
    def from_config(
        cls,
        conf: Mapping[str, Any],
        *,
        producer_factory: Callable[[], ProducerLike] | None = None,
    ) -> RocketMQLogger:
        """A logger from a plugin-style dict (as APISIX's route JSON would carry it)."""
        self = cls.__new__(cls)
        self.config = LoggerConfig.from_dict(conf)
        self._setup(producer_factory)
        return self

    def _setup(self, producer_factory: Callable[[], ProducerLike] | None) -> None:
        cfg = self.config
        bad = sorted(set(cfg.producer_options) - _PRODUCER_OPTIONS)
        if bad:
            raise ConfigError(
                "producer_options",
                f"keyword arguments of Producer (one of: {', '.join(sorted(_PRODUCER_OPTIONS))})",
                bad[0],
            )
        self.name = cfg.name
        self._renderer = _Renderer(cfg, _version())
        self._sink = _Sink(cfg, producer_factory)
        self._max_req = cfg.max_req_body_bytes
        self._max_resp = cfg.max_resp_body_bytes
        origin = cfg.meta_format == "origin"
        self._processor = BatchProcessor(
            name=cfg.name,
            render=self._renderer.render,
            send=self._sink.send,
            close_sink=self._sink.close,
            after_fork=self._sink.after_fork,
            batch_max_size=cfg.batch_max_size,
            inactive_timeout=cfg.inactive_timeout,
            buffer_duration=cfg.buffer_duration,
            max_retry_count=cfg.max_retry_count,
            retry_delay=cfg.retry_delay,
            backoff=cfg.backoff,
            max_pending_entries=cfg.max_pending_entries,
            max_pending_bytes=cfg.max_pending_bytes,
            message_shape=cfg.message_shape,
            max_message_size=cfg.max_message_size,
            array_item=_json_string if origin else None,
            shutdown_timeout=cfg.shutdown_timeout,
            send_concurrency=cfg.send_concurrency,
        )
        self._put = self._processor.put
        _LOGGERS.add(self)

    # -- logging -------------------------------------------------------------------------------

    def log(self, entry: Mapping[str, Any] | str | bytes) -> bool:
        """Queue one entry (a JSON-able mapping; str/bytes are sent as they are).

        Never blocks; returns False when the entry was dropped (queue full, closed), which
        stats() counts. `$name` in key/tag templates reads entry[name].
        """
        return self._put(entry)

    @property
    def pending_entries(self) -> int:
        """Entries accepted and not yet sent or dropped (a cheap read, no lock)."""
        return self._processor._pending

    @property
    def capture_request_body(self) -> bool:
        """Whether the middlewares should keep request bodies (include_req_body or a template)."""
        return self._renderer.capture_req

    @property
    def capture_response_body(self) -> bool:
        """Whether the middlewares should keep response bodies."""
        return self._renderer.capture_resp

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything logged so far; True if all of it was sent or dropped in time."""
        return self._processor.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush (until `timeout`, default shutdown_timeout) and stop; True if all flushed."""
        ok = self._processor.close(timeout)
        _LOGGERS.discard(self)
        return ok

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._processor.closed

    def stats(self) -> dict[str, Any]:
        """accepted, sent, failed, retried, dropped{reason}, batches, messages, send_errors,
        pending_entries, pending_bytes and send latency (seconds)."""
        return self._processor.stats()

    def __enter__(self) -> RocketMQLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"RocketMQLogger(name={cfg.name!r}, topic={cfg.topic!r}, "
            f"nameserver_list={cfg.nameserver_list!r}, message_shape={cfg.message_shape!r})"
        )


def all_loggers() -> list[RocketMQLogger]:
    """Every RocketMQLogger of this process that is not closed."""
    return [lg for lg in list(_LOGGERS) if not lg.closed]


def stats_items() -> list[tuple[str, dict[str, Any]]]:
    """(name, stats) of every open logger: the `logger_stats` of
    rmqfast.stats.render_prometheus."""
    return [(lg.name, lg.stats()) for lg in all_loggers()]


def set_metadata(
    *,
    log_format: Mapping[str, Any] | None = None,
    log_format_extra: Mapping[str, Any] | None = None,
) -> None:
    """Process-wide log_format / log_format_extra (the plugin's metadata); None clears.

    A logger's own log_format (or log_format_extra) wins over the metadata's.
    """
    _set_metadata(log_format=log_format, log_format_extra=log_format_extra)
    for lg in all_loggers():
        with contextlib.suppress(Exception):
            lg._renderer.refresh()


def close_all(timeout: float | None = None) -> bool:
    """Close every logger with one shared deadline (also done at interpreter exit)."""
    ok = _close_all_processors(timeout)
    for lg in list(_LOGGERS):
        _LOGGERS.discard(lg)
    return ok


from rmqfast.logger.asgi import ASGIMiddleware  # noqa: E402
from rmqfast.logger.handler import LoggingHandler  # noqa: E402
from rmqfast.logger.wsgi import WSGIMiddleware  # noqa: E402
