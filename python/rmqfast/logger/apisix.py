"""APISIX's `rocketmq-logger` plugin configuration, as APISIX stores it, turned into
RocketMQLogger attributes with APISIX's behaviour (`RocketMQLogger.from_apisix`).

APISIX accepts keys its schema does not list (the schema has no `additionalProperties =
false`) and adds `_meta` to every plugin; both are accepted here and left out with a warning
naming them. The plugin metadata (`log_format`, `log_format_extra`, `max_pending_entries`)
applies to this logger only, with APISIX's precedence: the plugin's own `log_format` wins even
when empty, the metadata's only when it has a field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from rmqfast.logger.config import ConfigError

__all__ = ["APISIX_ATTRIBUTES", "APISIX_IGNORED", "APISIX_METADATA", "config_from_apisix"]

_log = logging.getLogger("rmqfast.logger")

APISIX_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # The plugin's schema (apisix/plugins/rocketmq-logger.lua).
        "meta_format",
        "nameserver_list",
        "topic",
        "key",
        "tag",
        "log_format",
        "log_format_extra",
        "timeout",
        "use_tls",
        "access_key",
        "secret_key",
        "include_req_body",
        "include_req_body_expr",
        "include_resp_body",
        "include_resp_body_expr",
        "max_req_body_bytes",
        "max_resp_body_bytes",
        # Added by the batch processor manager.
        "name",
        "max_retry_count",
        "retry_delay",
        "buffer_duration",
        "inactive_timeout",
        "batch_max_size",
        # Not in the schema, but APISIX accepts it and log-util honours it.
        "match",
    }
)
"""Attributes of APISIX's rocketmq-logger (3.18), all meaning the same in RocketMQLogger."""

APISIX_IGNORED: dict[str, str] = {
    "_meta": "APISIX's per-plugin settings (disable, filter, priority, error_response)",
    "producer_type": "a kafka-logger attribute that rocketmq-logger does not have",
}
"""Keys found in APISIX plugin configurations that have no meaning for the logger."""

APISIX_METADATA: frozenset[str] = frozenset(
    {"log_format", "log_format_extra", "max_pending_entries"}
)
"""Fields of the plugin's metadata (`/apisix/admin/plugin_metadata/rocketmq-logger`)."""

APISIX_DEFAULTS: dict[str, Any] = {
    # One message per batch: a JSON array, or the entry itself when batch_max_size is 1.
    "message_shape": "array",
    "apisix_compat": True,
    # The producer group lua-resty-rocketmq registers for APISIX.
    "producer_group": "apisixLogProducer",
}
"""What from_apisix sets where rmqfast's own defaults differ from APISIX's behaviour."""


def _as_mapping(what: str, v: Any) -> Mapping[str, Any]:
    if isinstance(v, (str, bytes)):
        try:
            v = json.loads(v)
        except ValueError as e:
            raise ConfigError(what, f"a JSON object ({e})", show=False) from None
    if not isinstance(v, Mapping):
        raise ConfigError(what, "a JSON object (a mapping, or its text)", v)
    return v


def config_from_apisix(
    plugin_conf: Mapping[str, Any] | str | bytes,
    metadata: Mapping[str, Any] | str | bytes | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """RocketMQLogger attributes for an APISIX rocketmq-logger configuration.

    `plugin_conf` is the plugin's object (or its JSON text), or a whole route/service/global
    rule holding it under `plugins`; `overrides` are rmqfast attributes (spool_dir, ...).
    """
    conf = _as_mapping("plugin_conf", plugin_conf)
    plugins = conf.get("plugins")
    if isinstance(plugins, Mapping) and "nameserver_list" not in conf:
        if "rocketmq-logger" not in plugins:
            raise ConfigError("plugin_conf", 'a "rocketmq-logger" entry under "plugins"')
        conf = _as_mapping("plugin_conf.plugins.rocketmq-logger", plugins["rocketmq-logger"])
    out: dict[str, Any] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    for key, value in conf.items():
        if key in APISIX_ATTRIBUTES:
            out[key] = value
        elif key in APISIX_IGNORED:
            ignored.append(key)
        else:
            unknown.append(str(key))
    meta = dict(_as_mapping("metadata", metadata)) if metadata is not None else {}
    for key in sorted(set(meta) - APISIX_METADATA):
        unknown.append(f"metadata.{key}")
    meta_format = meta.get("log_format")
    if "log_format" not in out and isinstance(meta_format, Mapping) and meta_format:
        out["log_format"] = meta_format
    if "log_format_extra" not in out and meta.get("log_format_extra") is not None:
        out["log_format_extra"] = meta["log_format_extra"]
    if meta.get("max_pending_entries") is not None:
        out["max_pending_entries"] = meta["max_pending_entries"]
    name = out.get("name", "rocketmq logger")
    meta_block = conf.get("_meta")
    if isinstance(meta_block, Mapping) and meta_block.get("disable") is True:
        _log.warning(
            "rocketmq logger %r: the APISIX configuration disables the plugin "
            "(_meta.disable); the logger is created and logs anyway",
            name,
        )
    if ignored:
        _log.info(
            "rocketmq logger %r: APISIX keys left out: %s",
            name,
            "; ".join(f"{k} ({APISIX_IGNORED[k]})" for k in ignored),
        )
    if unknown:
        _log.warning(
            "rocketmq logger %r: keys APISIX's rocketmq-logger does not have, left out as "
            "APISIX leaves them: %s",
            name,
            ", ".join(sorted(unknown)),
        )
    for key, value in APISIX_DEFAULTS.items():
        out.setdefault(key, value)
    if overrides:
        out.update(overrides)
    return out
