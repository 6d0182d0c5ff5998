"""RocketMQLogger and the process-wide registry of open loggers (metadata, close_all, stats)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from rmqfast.logger.apisix import config_from_apisix
from rmqfast.logger.batch import BatchProcessor
from rmqfast.logger.batch import close_all as _close_all_processors
from rmqfast.logger.config import ConfigError, LoggerConfig
from rmqfast.logger.config import set_metadata as _set_metadata
from rmqfast.logger.encode import json_string
from rmqfast.logger.render import Renderer
from rmqfast.logger.sink import PRODUCER_OPTIONS, ProducerLike, Sink
from rmqfast.logger.spool import Spool, SpoolError
from rmqfast.stats import register_logger_stats

__all__ = ["RocketMQLogger", "all_loggers", "close_all", "set_metadata", "stats_items"]


def _version() -> str:
    try:
        from rmqfast import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - the extension is not built
        return "unknown"


_LOGGERS: weakref.WeakSet[RocketMQLogger] = weakref.WeakSet()


class RocketMQLogger:
    """Sends log entries to a RocketMQ topic in batches; APISIX rocketmq-logger attributes.

    `RocketMQLogger(nameserver_list, topic, **attributes)`; see LoggerConfig and the README for
    the attributes. `producer_factory` (tests, custom producers) builds the producer on the
    logger's thread instead of rmqfast.producer.Producer.
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
        """A logger from a dict of RocketMQLogger attributes (for APISIX's plugin JSON, use
        from_apisix)."""
        self = cls.__new__(cls)
        self.config = LoggerConfig.from_dict(conf)
        self._setup(producer_factory)
        return self

    @classmethod
    def from_apisix(
        cls,
        plugin_conf: Mapping[str, Any] | str | bytes,
        metadata: Mapping[str, Any] | str | bytes | None = None,
        *,
        producer_factory: Callable[[], ProducerLike] | None = None,
        **overrides: Any,
    ) -> RocketMQLogger:
        """A logger that behaves like APISIX's rocketmq-logger with this configuration.

        `plugin_conf` is the plugin's JSON as APISIX stores it (a mapping or its text; a whole
        route holding it under "plugins" works too); `metadata` the plugin metadata
        (log_format, log_format_extra, max_pending_entries). Messages come out as APISIX's:
        one per batch (a JSON array, or the entry alone when batch_max_size is 1), key and
        tag as written, max_retry_count retries in all, log_format arrays and depth as APISIX
        treats them. `overrides` sets rmqfast's own attributes (spool_dir, ...).
        """
        return cls.from_config(
            config_from_apisix(plugin_conf, metadata, overrides),
            producer_factory=producer_factory,
        )

    def _setup(self, producer_factory: Callable[[], ProducerLike] | None) -> None:
        cfg = self.config
        bad = sorted(set(cfg.producer_options) - PRODUCER_OPTIONS)
        if bad:
            raise ConfigError(
                "producer_options",
                f"keyword arguments of Producer (one of: {', '.join(sorted(PRODUCER_OPTIONS))})",
                bad[0],
            )
        self.name = cfg.name
        self._renderer = Renderer(cfg, _version())
        self._sink = Sink(cfg, producer_factory)
        origin = cfg.meta_format == "origin"
        spool = None
        if cfg.spool_dir is not None:
            try:
                spool = Spool(
                    cfg.spool_dir,
                    name=cfg.name,
                    topic=cfg.topic,
                    max_bytes=cfg.spool_max_bytes,
                    fsync_interval=cfg.spool_fsync_interval,
                )
            except (SpoolError, OSError) as e:
                raise ConfigError("spool_dir", f"a usable directory ({e})", show=False) from e
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
            array_item=json_string if origin else None,
            shutdown_timeout=cfg.shutdown_timeout,
            send_concurrency=cfg.send_concurrency,
            spool=spool,
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
    def enqueue(self) -> Callable[[Any], bool]:
        """The queue's put function: `log()` without its extra call, for any item the logger
        renders (the middlewares' HTTP records too). Never blocks; False when dropped."""
        return self._put

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


register_logger_stats(stats_items)
