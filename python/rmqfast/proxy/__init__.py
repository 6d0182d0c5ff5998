"""The RocketMQ-aware proxy: `python -m rmqfast.proxy`, or `Proxy(config)` in-process.

Python owns configuration, signals and the admin endpoint; the data path is Rust
(`rmqfast._core.ProxyServer`) and runs without the GIL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
    "TopicRoute",
    "from_mapping",
    "load_file",
]

log = logging.getLogger("rmqfast.proxy")


class Proxy:
    """An in-process proxy; use as a context manager or call start() and stop()."""

    def __init__(self, config: ProxyConfig | Mapping[str, Any], *, admin: bool = True) -> None:
        if not isinstance(config, ProxyConfig):
            config = from_mapping(config)
        self.config = config.validate()
        self._server = _core.ProxyServer(self.config.to_core_json())
        self._admin: AdminServer | None = None
        self._want_admin = admin and bool(self.config.admin)
        # Drains the access log into its destination while it is on.
        self.access_log = AccessLogWriter(self._server.access_log_take)

    def start(self) -> Proxy:
        """Opens the listeners (and the admin endpoint); returns self."""
        self._server.start()
        try:
            self.access_log.reconfigure(self.config)
        except (OSError, ValueError):
            self._server.stop(0)
            raise
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
        self._server.stop(timeout)
        self.access_log.close()

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
