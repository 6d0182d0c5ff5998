"""logging.Handler that sends structured log records through a RocketMQLogger."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rmqfast.logger.core import RocketMQLogger

__all__ = ["LoggingHandler"]

# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class LoggingHandler(logging.Handler):
    """Queues each record as a JSON object; never blocks, never logs its own library's records.

    Fields: time (ISO 8601, local offset), timestamp (epoch seconds), level, logger, message,
    module, function, line, file, process, thread; exception and stack when present; extra
    (the record's `extra=` attributes) when any.
    """

    def __init__(self, logger: RocketMQLogger, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        # The library's own warnings (and anything logged on its threads) would feed back
        # into the queue they are about.
        if name == "rmqfast" or name.startswith("rmqfast."):
            return
        thread_name = record.threadName or ""
        if thread_name.startswith("rmqfast-logger-"):
            return
        try:
            message = self.format(record) if self.formatter is not None else record.getMessage()
            entry: dict[str, Any] = {
                "time": datetime.fromtimestamp(record.created)
                .astimezone()
                .isoformat(timespec="milliseconds"),
                "timestamp": record.created,
                "level": record.levelname,
                "logger": name,
                "message": message,
                "module": record.module,
                "function": record.funcName,
                "line": record.lineno,
                "file": record.pathname,
                "process": record.process,
                "thread": thread_name,
            }
            if record.exc_info:
                entry["exception"] = _formatter.formatException(record.exc_info)
            elif record.exc_text:
                entry["exception"] = record.exc_text
            if record.stack_info:
                entry["stack"] = record.stack_info
            extra = {
                k: v if isinstance(v, _SCALARS) else _safe_str(v)
                for k, v in record.__dict__.items()
                if k not in _STANDARD
            }
            if extra:
                entry["extra"] = extra
            self.logger.log(entry)
        except Exception:
            self.handleError(record)


_formatter = logging.Formatter()
_SCALARS = (str, int, float, bool, type(None))


def _safe_str(v: Any) -> str:
    # Converted now, on the caller's thread: the object may change or not be thread-safe later.
    try:
        return str(v)
    except Exception:
        return f"<unprintable {type(v).__name__}>"
