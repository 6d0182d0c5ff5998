"""rmqfast.logger: HTTP request logs and log records to RocketMQ, like APISIX rocketmq-logger.

    logger = RocketMQLogger(["127.0.0.1:9876"], "access-log", key="$request_id")
    app = ASGIMiddleware(app, logger)          # or WSGIMiddleware(app, logger)
    logging.getLogger().addHandler(LoggingHandler(logger))

The request path only captures references and queues them (`log()` never waits); templates,
JSON and sending run on the logger's own threads. See the README for every attribute.

Layout: `core` (RocketMQLogger and the process-wide registry), `config` (attributes and
metadata), `render` (templates and JSON on the batcher thread), `encode` (the JSON encoder),
`sink` (the producer side), `batch` (queue, batches, retries), `records` and `template`
(request data and log_format), `expr` (include_*_body_expr), and the front ends `asgi`, `wsgi`
and `handler`.
"""

from rmqfast.logger.asgi import ASGIMiddleware
from rmqfast.logger.batch import DROP_REASONS
from rmqfast.logger.config import ConfigError, get_metadata
from rmqfast.logger.core import (
    RocketMQLogger,
    all_loggers,
    close_all,
    set_metadata,
    stats_items,
)
from rmqfast.logger.handler import LoggingHandler
from rmqfast.logger.sink import ProducerLike
from rmqfast.logger.wsgi import WSGIMiddleware

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
