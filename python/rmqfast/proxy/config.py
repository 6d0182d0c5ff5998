"""Proxy configuration: TOML file and command-line flags, validated field by field."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from rmqfast import _core

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what was expected."""


@dataclass
class Cluster:
    """An upstream RocketMQ cluster, known by its name servers."""

    name: str
    namesrv: list[str]


@dataclass
class TopicRoute:
    """Topics matching `exact`, `prefix` or `regex` (exactly one) go to `cluster`."""

    cluster: str
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


# The data path's defaults, from the Rust core that owns them (`ProxyConfig::defaults`).
_RUST: dict[str, Any] = _core.proxy_config_defaults()


@dataclass
class ProxyConfig:
    """Everything `python -m rmqfast.proxy` can be told; see the README for each field.

    Defaults of the data path's fields come from the Rust core; `admin` and `log_level` belong
    to the Python side (the admin endpoint and logging) and are defaulted here."""

    clusters: list[Cluster] = field(default_factory=list)
    routes: list[TopicRoute] = field(default_factory=list)
    default_cluster: str | None = _RUST["default_cluster"]
    listen: str = _RUST["listen"]
    advertise_host: str | None = _RUST["advertise_host"]
    broker_bind_host: str | None = _RUST["broker_bind_host"]
    broker_port_base: int = _RUST["broker_port_base"]
    admin: str | None = "127.0.0.1:9901"
    connect_timeout_ms: int = _RUST["connect_timeout_ms"]
    request_timeout_ms: int = _RUST["request_timeout_ms"]
    idle_timeout_s: int = _RUST["idle_timeout_s"]
    max_connections: int = _RUST["max_connections"]
    max_frame_size: int = _RUST["max_frame_size"]
    route_cache_ttl_s: int = _RUST["route_cache_ttl_s"]
    drain_timeout_ms: int = _RUST["drain_timeout_ms"]
    worker_threads: int = _RUST["worker_threads"]
    max_buffered_frames: int = _RUST["max_buffered_frames"]
    route_hedge_ms: int = _RUST["route_hedge_ms"]
    route_stale_limit_s: int = _RUST["route_stale_limit_s"]
    frame_timeout_ms: int = _RUST["frame_timeout_ms"]
    frame_memory_budget: int = _RUST["frame_memory_budget"]
    metrics_max_topics: int = _RUST["metrics_max_topics"]
    log_level: str = "info"
    upstream_tls: bool = _RUST["upstream_tls"]
    upstream_tls_ca_file: str | None = _RUST["upstream_tls_ca_file"]
    upstream_tls_verify: bool = _RUST["upstream_tls_verify"]
    upstream_tls_server_name: str | None = _RUST["upstream_tls_server_name"]
    tls_cert_file: str | None = _RUST["tls_cert_file"]
    tls_key_file: str | None = _RUST["tls_key_file"]
    tls_mode: str = _RUST["tls_mode"]
    tls_client_auth: str = _RUST["tls_client_auth"]
    tls_client_ca_file: str | None = _RUST["tls_client_ca_file"]
    policy: list[dict[str, Any]] = field(default_factory=list)
    policy_default: str = _RUST["policy_default"]
    # The access log: what the data path logs (Rust's defaults), then where the lines go
    # (`_ACCESS_LOG_DESTINATION`, Python's own).
    access_log: str | None = _RUST["access_log"]
    access_log_sample: int = _RUST["access_log_sample"]
    access_log_slow_ms: int = _RUST["access_log_slow_ms"]
    access_log_buffer_bytes: int = _RUST["access_log_buffer_bytes"]
    access_log_file: str | None = None
    access_log_max_bytes: int = 100 * 1024 * 1024
    access_log_backups: int = 5
    access_log_topic: str | None = None
    access_log_namesrv: str | None = None

    def validate(self) -> ProxyConfig:
        """Checks every field; raises ConfigError naming the first wrong one.

        The data path's fields are checked by the Rust core, the one owner of their rules
        (`_core.check_proxy_config`, the check the proxy itself runs at start); this adds the
        Python side's own fields (`admin`, `log_level`) and what only the TOML/flags layer can
        see (a value of the wrong type, a route with several matchers)."""
        if self.admin:
            _check_addr("admin", self.admin)
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level: expected debug, info, warning or error, got {self.log_level!r}"
            )
        if not self.clusters:
            raise ConfigError(
                "namesrv: expected at least one name server (--namesrv HOST:PORT, "
                "or `namesrv = [...]` / [[clusters]] in the config file)"
            )
        for i, r in enumerate(self.routes):
            given = [k for k in ("exact", "prefix", "regex") if getattr(r, k) is not None]
            if len(given) != 1:
                raise ConfigError(f"routes[{i}]: expected exactly one of exact, prefix or regex")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _INTS and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"{f.name}: expected a non-negative integer, got {v!r}")
            if f.name in _BOOLS and not isinstance(v, bool):
                raise ConfigError(f"{f.name}: expected true or false, got {v!r}")
            if f.name in _STRS and v is not None and not isinstance(v, str):
                raise ConfigError(f"{f.name}: expected a string, got {v!r}")
        try:
            _core.check_proxy_config(self.to_core_json())
        except ValueError as e:
            raise ConfigError(str(e)) from None
        _check_access_log(self)
        return self

    def to_core_json(self) -> str:
        """The JSON the Rust data path takes."""
        d: dict[str, Any] = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("admin", "log_level", "routes", "clusters", *_ACCESS_LOG_DESTINATION)
            and v is not None
        }
        d["clusters"] = [{"name": c.name, "namesrv": list(c.namesrv)} for c in self.clusters]
        d["routes"] = [
            {"match": {k: getattr(r, k)}, "cluster": r.cluster}
            for r in self.routes
            for k in ("exact", "prefix", "regex")
            if getattr(r, k) is not None
        ]
        return json.dumps(d)


# The keys of a [[policy]] rule (their values are checked by the Rust core).
_POLICY_KEYS = set(_core.policy_rule_keys())


def _field_kinds() -> dict[str, set[str]]:
    """The scalar fields by the type their annotation gives: `int`, `bool`, `str` (with or
    without None) and, across those, `optional` (None allowed)."""
    kinds: dict[str, set[str]] = {"int": set(), "bool": set(), "str": set(), "optional": set()}
    for name, hint in get_type_hints(ProxyConfig).items():
        args = set(get_args(hint)) or {hint}
        if type(None) in args:
            kinds["optional"].add(name)
        for t, kind in ((bool, "bool"), (int, "int"), (str, "str")):
            if args - {type(None)} == {t}:
                kinds[kind].add(name)
    return kinds


# Field types the TOML/flags layer checks before handing the config to Rust, read from the
# dataclass's annotations (one owner: the field's declaration).
_KINDS = _field_kinds()
_INTS, _BOOLS, _STRS, _OPTIONAL = (_KINDS[k] for k in ("int", "bool", "str", "optional"))


def _check_addr(name: str, value: object, ip_only: bool = True) -> None:
    expected = "HOST:PORT" if not ip_only else "IP:PORT (e.g. 127.0.0.1:19876)"
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")
    try:
        host, _ = _core.split_host_port(value)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None
    if ip_only:
        try:
            ipaddress.ip_address(host)
        except ValueError as e:
            raise ConfigError(f"{name}: expected {expected}, got {value!r}") from e


def parse_namesrv(value: str | list[str]) -> list[str]:
    """Name-server lists as RocketMQ writes them ("a:9876;b:9876") or as a list."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"namesrv: expected HOST:PORT strings, got {item!r}")
        out.extend(p.strip() for p in re.split(r"[;,]", item) if p.strip())
    return out


_SCALARS = {f.name for f in fields(ProxyConfig)} - {"clusters", "routes", "policy"}


def from_mapping(data: Mapping[str, Any], source: str = "config") -> ProxyConfig:
    """Builds a config from a parsed TOML/JSON document, naming unknown or mistyped keys."""
    cfg = ProxyConfig()
    for key, value in data.items():
        if key == "namesrv":
            cfg.clusters.append(Cluster("default", parse_namesrv(value)))
        elif key == "clusters":
            if not isinstance(value, list):
                raise ConfigError(f"{source}: clusters: expected an array of tables")
            for i, c in enumerate(value):
                if not isinstance(c, Mapping) or set(c) - {"name", "namesrv"}:
                    raise ConfigError(
                        f"{source}: clusters[{i}]: expected a table with name and namesrv, "
                        f"got {c!r}"
                    )
                cfg.clusters.append(
                    Cluster(str(c.get("name", "")), parse_namesrv(c.get("namesrv", [])))
                )
        elif key == "routes":
            if not isinstance(value, list):
                raise ConfigError(f"{source}: routes: expected an array of tables")
            for i, r in enumerate(value):
                allowed = {"cluster", "exact", "prefix", "regex"}
                if not isinstance(r, Mapping) or set(r) - allowed or "cluster" not in r:
                    raise ConfigError(
                        f"{source}: routes[{i}]: expected a table with cluster and one of "
                        f"exact, prefix or regex, got {r!r}"
                    )
                cfg.routes.append(TopicRoute(**{k: r[k] for k in r}))
        elif key == "policy":
            if not isinstance(value, list):
                raise ConfigError(f"{source}: policy: expected an array of tables ([[policy]])")
            for i, r in enumerate(value):
                if not isinstance(r, Mapping):
                    raise ConfigError(f"{source}: policy[{i}]: expected a table, got {r!r}")
                unknown = sorted(set(r) - _POLICY_KEYS)
                if unknown:
                    raise ConfigError(
                        f"{source}: policy[{i}].{unknown[0]}: unknown key (expected one of "
                        f"{', '.join(sorted(_POLICY_KEYS))})"
                    )
                if "action" not in r:
                    raise ConfigError(f"{source}: policy[{i}].action: expected allow or deny")
                cfg.policy.append(dict(r))
        elif key in _SCALARS and value is None and key in _OPTIONAL:
            setattr(cfg, key, None)
        elif key in _SCALARS:
            default = getattr(ProxyConfig(), key)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
            elif isinstance(default, int) and (
                not isinstance(value, int) or isinstance(value, bool)
            ):
                raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
            if isinstance(default, str) and not isinstance(value, str):
                raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
            setattr(cfg, key, value)
        else:
            raise ConfigError(
                f"{source}: {key}: unknown setting (expected one of "
                f"{', '.join(sorted(_SCALARS | {'namesrv', 'clusters', 'routes', 'policy'}))})"
            )
    return cfg


def load_file(path: str | Path) -> ProxyConfig:
    """Reads a TOML config file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"--config: cannot read {p}: {e.strerror}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return from_mapping(data, source=str(p))


# The access log's destination settings: Python's alone (the Rust core only fills the buffer).
_ACCESS_LOG_DESTINATION = (
    "access_log_file",
    "access_log_max_bytes",
    "access_log_backups",
    "access_log_topic",
    "access_log_namesrv",
)


def access_log_namesrv(cfg: ProxyConfig) -> list[str]:
    """The name servers the `rocketmq` access log sends to: `access_log_namesrv`, else those
    of the default cluster (`default_cluster`, else the first)."""
    if cfg.access_log_namesrv:
        return parse_namesrv(cfg.access_log_namesrv)
    for c in cfg.clusters:
        if c.name == cfg.default_cluster:
            return list(c.namesrv)
    return list(cfg.clusters[0].namesrv) if cfg.clusters else []


def _check_access_log(cfg: ProxyConfig) -> None:
    """The destination settings of the access log (its data-path settings are Rust's)."""
    if cfg.access_log_max_bytes != 0 and cfg.access_log_max_bytes < 4096:
        raise ConfigError(
            "access_log_max_bytes: expected 0 (never rotate) or at least 4096, "
            f"got {cfg.access_log_max_bytes}"
        )
    if cfg.access_log_backups > 1000:
        raise ConfigError(
            f"access_log_backups: expected an integer from 0 to 1000, got {cfg.access_log_backups}"
        )
    if cfg.access_log == "file":
        if not cfg.access_log_file:
            raise ConfigError('access_log_file: expected a file path with access_log = "file"')
        parent = Path(cfg.access_log_file).parent
        if not parent.is_dir():
            raise ConfigError(f"access_log_file: directory {str(parent)!r} does not exist")
    if cfg.access_log == "rocketmq":
        if not cfg.access_log_topic:
            raise ConfigError('access_log_topic: expected a topic with access_log = "rocketmq"')
        from rmqfast.logger.config import ConfigError as LoggerConfigError
        from rmqfast.logger.config import LoggerConfig

        ours = {"topic": "access_log_topic", "nameserver_list": "access_log_namesrv"}
        try:
            LoggerConfig.from_dict(
                {"topic": cfg.access_log_topic, "nameserver_list": access_log_namesrv(cfg)}
            )
        except LoggerConfigError as e:
            name = ours.get(e.attribute, e.attribute)
            raise ConfigError(name + str(e)[len(e.attribute) :]) from None
