"""The admin endpoint: /metrics (Prometheus), /stats (JSON), /ready and /live; POST /reload
from loopback re-reads the config."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from rmqfast import _core
from rmqfast.proxy.config import ConfigError

if TYPE_CHECKING:
    from rmqfast.proxy import Proxy


# A client has this long to send its request and to take the answer (per socket operation):
# half-sent requests cannot hold the endpoint's threads.
ADMIN_IO_TIMEOUT_S = 5.0

_log = logging.getLogger("rmqfast.proxy.admin")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (socketserver's default is 5: a burst of scrapers would see SYNs
    # dropped and connect only after the kernel's retransmit, seconds later).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hangs up or times out is routine, not a traceback on stderr.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            _log.debug("admin client %s: %s", client_address, exc)
            return
        _log.warning("admin request from %s failed", client_address, exc_info=True)


class AdminServer:
    """A small HTTP server on its own thread. Every route is GET but one: POST /reload, which
    only a client on a loopback address may call (whatever address the endpoint listens on)."""

    def __init__(self, addr: str, proxy: Proxy) -> None:
        host, port = _core.split_host_port(addr)
        proxy_ref = proxy

        class Handler(BaseHTTPRequestHandler):
            server_version = "rmqfast-admin"
            timeout = ADMIN_IO_TIMEOUT_S

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, proxy_ref.prometheus(), "text/plain; version=0.0.4")
                elif path == "/stats":
                    body = json.dumps(proxy_ref.stats(), indent=1, sort_keys=True)
                    self._send(200, body, "application/json")
                elif path == "/ready":
                    ok = proxy_ref.running
                    self._send(200 if ok else 503, "ready\n" if ok else "stopping\n")
                elif path == "/live":
                    self._send(200, "live\n")
                else:
                    self._send(404, "not found: try /metrics, /stats, /ready or /live\n")

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path != "/reload":
                    self._send(405, "only /reload takes POST; the other routes are GET\n")
                    return
                if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                    self._send(403, "POST /reload is only taken from a loopback address\n")
                    return
                try:
                    result = proxy_ref.reload()
                except ConfigError as e:
                    body = json.dumps({"reloaded": False, "error": str(e)})
                    self._send(400, body + "\n", "application/json")
                    return
                body = json.dumps({"reloaded": True, **dataclasses.asdict(result)})
                self._send(200, body + "\n", "application/json")

            def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the proxy's own log

        self._httpd = _Server((host, port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="rmqfast-admin", daemon=True
        )

    @property
    def addr(self) -> str:
        """The bound host:port."""
        host, port = self._httpd.server_address[:2]
        host_s = host.decode() if isinstance(host, bytes) else str(host)
        return f"{host_s}:{port}"

    def start(self) -> None:
        """Serves in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
