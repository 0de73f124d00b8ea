"""The one HTTP server for a service's `/metrics` and `/health` (a daemon thread; the rule for what each path answers).

- `GET /metrics`: the Prometheus text format (`generate_latest`, `CONTENT_TYPE_LATEST`) of the registry given, the
  global `REGISTRY` by default (a service with its own `CollectorRegistry` passes it);
- `GET /health`: JSON from the service's health callable, which returns `(ok, body)`: 200 when ok, 503 otherwise
  (the body says why); 500 with the error when the callable itself raises. Not served (404) without a callable;
- any other path: 404. The dashboard's probes rely on it: 404 means "the probe asks the wrong path", 503 "the
  service answers and is not healthy" (`services/dashboard/.../health.py`). A query string is ignored.

It binds `host` (127.0.0.1 by default) and `port` (0: an ephemeral port); `start()` returns the bound port, `stop()`
shuts the server down and closes its socket. Requests are served on threads of their own and logged at debug level;
a client that hangs up or sends garbage costs that request only.

Used by crawl-dc and the sink. The candle agent serves its `/metrics` and `/health` through Faust's web server
instead: those pages run on Faust's event loop, next to the state they report. The flows keep prometheus_client's
`start_http_server` (`coinpulse_flows.metrics`): it answers every path with the metrics and negotiates OpenMetrics
and gzip with the scraper, which this server does not.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import CollectorRegistry

from coinpulse_common.logging import get_logger

log = get_logger("coinpulse.serve")

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
NOT_FOUND = b"not found: /metrics or /health\n"


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(srv.registry))
        elif path == "/health" and srv.health is not None:
            code, body = srv.health_answer()
            self._send(code, "application/json", json.dumps(body, default=str).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", NOT_FOUND)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http_request", server=self.server.name, client=self.client_address[0], line=format % args)


class MetricsServer(ThreadingHTTPServer):
    """`/metrics` from `registry` and `/health` from `health` on `host:port` (see the module docstring).

    A ThreadingHTTPServer, so `server_address` is the bound address once started."""

    daemon_threads = True  # a request in progress never keeps the process alive

    def __init__(self, name: str, health: HealthFn | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 registry: CollectorRegistry = REGISTRY):
        super().__init__((host, port), _Handler, bind_and_activate=False)
        self.name = name
        self.health = health
        self.registry = registry
        self._thread: threading.Thread | None = None

    def health_answer(self) -> tuple[int, dict[str, Any]]:
        assert self.health is not None
        try:
            ok, body = self.health()
        except Exception as e:  # noqa: BLE001 - a failing health check is answered, not fatal
            log.error("health_check_failed", server=self.name, error=f"{type(e).__name__}: {e}"[:300])
            return 500, {"ok": False, "reason": f"the health check failed: {type(e).__name__}: {e}"[:2000]}
        return (200 if ok else 503), body

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> int:
        """Bind, listen and serve on a daemon thread (once); returns the bound port. A port in use raises OSError."""
        if self._thread is None:
            try:
                self.server_bind()
                self.server_activate()
            except OSError:
                self.server_close()
                raise
            self._thread = threading.Thread(target=self.serve_forever, name=f"{self.name}-http", daemon=True)
            self._thread.start()
            log.debug("http_serving", server=self.name, host=self.server_address[0], port=self.port)
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the socket (the port is free when this returns)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed (client gone, malformed): log it and go on serving."""
        exc = sys.exc_info()[1]
        quiet = isinstance(exc, ConnectionError)
        (log.debug if quiet else log.warning)("http_request_failed", server=self.name, client=client_address[0],
                                              error=f"{type(exc).__name__}: {exc}"[:300])
