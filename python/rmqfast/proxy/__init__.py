"""The RocketMQ-aware proxy: `python -m rmqfast.proxy`, or `Proxy(config)` in-process.

Python owns configuration, signals and the admin endpoint; the data path is Rust
(`rmqfast._core.ProxyServer`) and runs without the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from rmqfast import _core
from rmqfast.proxy.access_log import AccessLogWriter
from rmqfast.proxy.admin import AdminServer
from rmqfast.proxy.config import (
    Cluster,
    ConfigError,
    ProxyConfig,
    TopicRoute,
    from_mapping,
    load_file,
)
from rmqfast.stats import flatten_proxy_stats, render_prometheus

__all__ = [
    "Cluster",
    "ConfigError",
    "Proxy",
    "ProxyConfig",
    "ReloadResult",
    "TopicRoute",
    "from_mapping",
    "load_file",
]

log = logging.getLogger("rmqfast.proxy")

# Fields only the Python side reads at start (the admin endpoint's address); like the data
# path's restart-only fields (`_core.proxy_restart_only_fields()`), a reload keeps them.
PY_RESTART_ONLY = ("admin",)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload changed: the fields whose values differ, and those among them that only a
    restart applies (they keep their running values)."""

    changed: list[str]
    restart_needed: list[str]


class Proxy:
    """An in-process proxy; use as a context manager or call start() and stop().

    `reload_source`, when given, is what `reload()` with no argument (SIGHUP, POST /reload)
    reads the new config from: `python -m rmqfast.proxy` passes one that reads the config file
    again and applies the command line's flags over it."""

    def __init__(
        self,
        config: ProxyConfig | Mapping[str, Any],
        *,
        admin: bool = True,
        reload_source: Callable[[], ProxyConfig] | None = None,
    ) -> None:
        if not isinstance(config, ProxyConfig):
            config = from_mapping(config)
        self.config = config.validate()
        self._server = _core.ProxyServer(self.config.to_core_json())
        self._admin: AdminServer | None = None
        self._want_admin = admin and bool(self.config.admin)
        # Drains the access log into its destination while it is on.
        self.access_log = AccessLogWriter(
            self._server.access_log_take, self._server.access_log_lost
        )
        self._reload_source = reload_source
        self._reload_lock = threading.Lock()

    def start(self) -> Proxy:
        """Opens the listeners (and the admin endpoint); returns self."""
        destination = self.access_log.prepare(self.config)
        try:
            self._server.start()
        except BaseException:
            self.access_log.discard(destination)
            raise
        self.access_log.install(destination)
        if self._want_admin and self.config.admin:
            try:
                self._admin = AdminServer(self.config.admin, self)
                self._admin.start()
            except OSError:
                self._server.stop(0)
                self.access_log.close()
                raise
        log.info(
            "rmqfast proxy listening on %s (name servers: %s)",
            self.namesrv_addr,
            "; ".join(f"{c.name}={','.join(c.namesrv)}" for c in self.config.clusters),
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops accepting, lets in-flight requests finish for up to `timeout` s, then closes."""
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        # After any reload under way, which could otherwise start the access log again.
        with self._reload_lock:
            self._server.stop(timeout)
            self.access_log.close()

    def reload(self, config: ProxyConfig | Mapping[str, Any] | None = None) -> ReloadResult:
        """Puts a new config in place without dropping a connection; with no argument, reads it
        from `reload_source`. Clusters, topic routes, timeouts, the request policy and
        `metrics_max_topics` change at once, on open connections too; TLS certificates (read
        again from their files) and a new `listen` address apply to connections accepted from
        now on. Fields only a restart applies keep their running values and are named in the
        result. A config with any error is rejected whole with ConfigError naming the field,
        and the running one stays; both outcomes are counted (`config_reloads`,
        `config_reload_failures`)."""
        with self._reload_lock:
            try:
                if config is None:
                    if self._reload_source is None:
                        raise ConfigError(
                            "reload: this proxy was given its config in-process, so there is no "
                            "file to read again; call reload(config)"
                        )
                    new = self._reload_source()
                elif isinstance(config, ProxyConfig):
                    new = config
                else:
                    new = from_mapping(config)
                new.validate()
                destination = self.access_log.prepare(new)
            except ConfigError as e:
                self._server.note_reload_failure()
                log.error("config reload rejected, the running config stays: %s", e)
                raise
            try:
                kept = self._server.reload(new.to_core_json())
            except ValueError as e:
                self.access_log.discard(destination)
                log.error("config reload rejected, the running config stays: %s", e)
                raise ConfigError(str(e)) from None
            except BaseException:
                self.access_log.discard(destination)
                raise
            old = self.config
            changed = [
                f.name for f in fields(ProxyConfig) if getattr(new, f.name) != getattr(old, f.name)
            ]
            kept += [f for f in PY_RESTART_ONLY if getattr(new, f) != getattr(old, f)]
            for name in kept:
                setattr(new, name, getattr(old, name))
            self.config = new
            self.access_log.install(destination)
            if kept:
                log.warning(
                    "config reloaded; %s changed but only apply at restart (kept as running)",
                    ", ".join(kept),
                )
            log.info("config reloaded: %s", ", ".join(changed) or "nothing changed")
            return ReloadResult(changed=changed, restart_needed=kept)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the data path is running."""
        return self._server.running

    @property
    def namesrv_addr(self) -> str:
        """The address to give clients as their name server."""
        return self._server.namesrv_addr

    @property
    def admin_addr(self) -> str | None:
        """Where /metrics, /stats, /ready and /live are served, if enabled."""
        return self._admin.addr if self._admin is not None else None

    def broker_listeners(self) -> dict[str, str]:
        """Real broker address → the proxy address clients are given for it."""
        return dict(self._server.broker_listeners())

    def open_broker(self, real_addr: str) -> str:
        """Opens the listener for a broker now rather than at its first route lookup."""
        return self._server.open_broker(real_addr)

    def stats(self) -> dict[str, Any]:
        """Every statistic by its Envoy name, plus `request_time_ms` histograms."""
        return flatten_proxy_stats(self._server.stats())

    def prometheus(self) -> str:
        """The stats as Prometheus text, with those of any RocketMQLogger in this process."""
        return render_prometheus(self._server.stats())
