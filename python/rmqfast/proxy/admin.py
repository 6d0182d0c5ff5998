"""The admin endpoint: /metrics (Prometheus), /stats (JSON), /ready and /live."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from rmqfast import _core

if TYPE_CHECKING:
    from rmqfast.proxy import Proxy


class AdminServer:
    """A small HTTP server on its own thread; read-only, so every route is GET."""

    def __init__(self, addr: str, proxy: Proxy) -> None:
        host, port = _core.split_host_port(addr)
        proxy_ref = proxy

        class Handler(BaseHTTPRequestHandler):
            server_version = "rmqfast-admin"

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
                self._send(405, "the admin endpoint changes nothing: use GET\n")

            def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the proxy's own log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
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
