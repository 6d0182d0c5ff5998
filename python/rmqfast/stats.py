"""Live statistics of the proxy and the logger, as dicts and as Prometheus text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rmqfast import _core

__all__ = [
    "flatten_proxy_stats",
    "logger_stats",
    "register_logger_stats",
    "render_prometheus",
]

_COUNTERS, _GAUGES = _core.proxy_stat_names()
_HELP = dict(_COUNTERS) | dict(_GAUGES)


def _histogram_ms(h: Mapping[str, Any]) -> dict[str, Any]:
    """A Rust histogram snapshot in Envoy's `request_time_ms` terms (cumulative buckets)."""
    cumulative: dict[str, int] = {}
    running = 0
    for bound, n in zip([*h["bounds_us"], None], h["buckets"], strict=True):
        running += n
        cumulative["+Inf" if bound is None else f"{bound / 1000:g}"] = running
    return {"count": h["count"], "sum": h["sum_us"] / 1000.0, "buckets": cumulative}


def flatten_proxy_stats(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Envoy-named flat stats from the Rust snapshot: counters, gauges, `request_time_ms`."""
    out: dict[str, Any] = {}
    out.update(raw["counters"])
    out.update(raw["gauges"])
    out["request_time_ms"] = _histogram_ms(raw["request_time"])
    out["request_time_ms_by_code"] = {
        code: _histogram_ms(h) for code, h in raw["request_time_by_code"].items()
    }
    out["request_denied_by_code"] = dict(raw["request_denied_by_code"])
    out["topics"] = [
        {k: v for k, v in t.items() if k != "latency"} | {"latency_ms": _histogram_ms(t["latency"])}
        for t in raw.get("topics") or []
    ]
    out["topic_label_overflow"] = raw.get("topic_label_overflow", 0)
    return out


# Set by rmqfast.logger when it is imported: (name, stats) of every open RocketMQLogger.
_logger_source: Callable[[], list[tuple[str, dict[str, Any]]]] | None = None


def register_logger_stats(source: Callable[[], list[tuple[str, dict[str, Any]]]]) -> None:
    """Make `source` the provider of logger_stats(). rmqfast.logger registers its `stats_items`
    on import, so a process that never imports the logger reports no loggers and does not
    load it."""
    global _logger_source
    _logger_source = source


def logger_stats() -> list[tuple[str, dict[str, Any]]]:
    """(name, stats) of every open RocketMQLogger of this process (none if the logger is unused)."""
    source = _logger_source
    return [] if source is None else source()


_open_logger_stats = logger_stats


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric_name(prefix: str, name: str, counter: bool) -> str:
    """Prometheus name of a stat: counters end in `_total` once (`connections_total` stays
    `..._connections_total`), bytes are in their unit's name."""
    if name.startswith("bytes_"):
        return f"{prefix}_{name[len('bytes_') :]}_bytes_total"
    if counter and not name.endswith("_total"):
        return f"{prefix}_{name}_total"
    return f"{prefix}_{name}"


def _histogram_lines(name: str, h: Mapping[str, Any], labels: str, lines: list[str]) -> None:
    running = 0
    sep = "," if labels else ""
    for bound, n in zip([*h["bounds_us"], None], h["buckets"], strict=True):
        running += n
        le = "+Inf" if bound is None else f"{bound / 1e6:g}"
        lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
    lab = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{lab} {h['sum_us'] / 1e6:.6f}")
    lines.append(f"{name}_count{lab} {h['count']}")


def render_prometheus(
    proxy_raw: Mapping[str, Any] | None = None,
    logger_stats: Iterable[tuple[str, Mapping[str, Any]]] | None = None,
) -> str:
    """Prometheus text exposition (version 0.0.4) of the given proxy stats and logger stats;
    `logger_stats=None` means every open logger of this process."""
    lines = [
        "# HELP rmqfast_build_info rmqfast build information.",
        "# TYPE rmqfast_build_info gauge",
        f'rmqfast_build_info{{version="{_escape(_core.__version__)}"}} 1',
    ]
    if proxy_raw is not None:
        for name, value in proxy_raw["counters"].items():
            metric = _metric_name("rmqfast_proxy", name, counter=True)
            lines.append(f"# HELP {metric} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {metric} counter")
            lines.append(f"{metric} {value}")
        for name, value in proxy_raw["gauges"].items():
            metric = _metric_name("rmqfast_proxy", name, counter=False)
            lines.append(f"# HELP {metric} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {metric} gauge")
            lines.append(f"{metric} {value}")
        metric = "rmqfast_proxy_request_time_seconds"
        lines.append(f"# HELP {metric} Time from a client's request to its response.")
        lines.append(f"# TYPE {metric} histogram")
        _histogram_lines(metric, proxy_raw["request_time"], "", lines)
        metric = "rmqfast_proxy_request_duration_seconds"
        lines.append(
            f"# HELP {metric} Time from a client's request to its response, by request code."
        )
        lines.append(f"# TYPE {metric} histogram")
        for code, h in proxy_raw["request_time_by_code"].items():
            _histogram_lines(metric, h, f'code="{_escape(code)}"', lines)
        metric = "rmqfast_proxy_request_denied_by_code_total"
        lines.append(f"# HELP {metric} Client requests refused by the request policy, by code.")
        lines.append(f"# TYPE {metric} counter")
        for code, n in proxy_raw["request_denied_by_code"].items():
            lines.append(f'{metric}{{code="{_escape(code)}"}} {n}')
        _topic_lines(proxy_raw, lines)
    loggers = list(_open_logger_stats() if logger_stats is None else logger_stats)
    if loggers:
        _logger_lines(loggers, lines)
    return "\n".join(lines) + "\n"


# Per-topic metrics: (name, stat, help). RocketMQ 5's own names where it has them.
TOPIC_METRICS: tuple[tuple[str, str, str], ...] = (
    ("rocketmq_messages_in_total", "messages_in", "Messages sent through the proxy and stored."),
    ("rocketmq_throughput_in_total", "bytes_in", "Body bytes of the messages counted in."),
    ("rocketmq_messages_out_total", "messages_out", "Messages in pull and pop responses."),
    ("rocketmq_throughput_out_total", "bytes_out", "Body bytes of the responses counted out."),
    ("rmqfast_topic_requests_total", "requests", "Requests that carry the topic."),
)
"""The per-topic counters in /metrics (labels topic, consumer_group, broker)."""


def _topic_lines(raw: Mapping[str, Any], lines: list[str]) -> None:
    topics = raw.get("topics") or []
    labelled = [
        (
            f'topic="{_escape(t["topic"])}",consumer_group="{_escape(t["consumer_group"])}",'
            f'broker="{_escape(t["broker"])}"',
            t,
        )
        for t in topics
    ]
    for metric, key, text in TOPIC_METRICS:
        lines.append(f"# HELP {metric} {text}")
        lines.append(f"# TYPE {metric} counter")
        lines.extend(f"{metric}{{{labels}}} {t[key]}" for labels, t in labelled)
    metric = "rmqfast_topic_errors_total"
    lines.append(f"# HELP {metric} Error responses to requests of the topic, by response code.")
    lines.append(f"# TYPE {metric} counter")
    for labels, t in labelled:
        for code, n in t["errors"].items():
            lines.append(f'{metric}{{{labels},code="{_escape(code)}"}} {n}')
    metric = "rmqfast_topic_request_duration_seconds"
    lines.append(f"# HELP {metric} Time from request to response, by topic.")
    lines.append(f"# TYPE {metric} histogram")
    for labels, t in labelled:
        _histogram_lines(metric, t["latency"], labels, lines)
    metric = "rmqfast_proxy_topic_label_overflow_total"
    lines.append(f"# HELP {metric} Requests counted under topic __other__ (metrics_max_topics).")
    lines.append(f"# TYPE {metric} counter")
    lines.append(f"{metric} {raw.get('topic_label_overflow', 0)}")


def _logger_lines(loggers: list[tuple[str, Mapping[str, Any]]], lines: list[str]) -> None:
    """Counters and gauges of every RocketMQLogger, labelled by logger name."""
    seen: dict[str, list[str]] = {}
    for name, stats in loggers:
        label = f'name="{_escape(name)}"'
        for key, value in stats.items():
            if isinstance(value, Mapping):
                for reason, n in value.items():
                    metric = f"rmqfast_logger_{key}_total"
                    seen.setdefault(metric, []).append(
                        f'{metric}{{{label},reason="{_escape(str(reason))}"}} {n}'
                    )
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                gauge = key.startswith("pending") or key.endswith("_seconds")
                metric = f"rmqfast_logger_{key}" if gauge else f"rmqfast_logger_{key}_total"
                seen.setdefault(metric, []).append(f"{metric}{{{label}}} {value}")
    for metric, samples in seen.items():
        kind = "counter" if metric.endswith("_total") else "gauge"
        lines.append(f"# TYPE {metric} {kind}")
        lines.extend(samples)
