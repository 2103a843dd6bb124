"""The admin HTTP endpoint: ``GET /metrics`` in Prometheus' text format, on its own port (loopback by default)."""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from ..config import DEFAULT_HOST
from .prometheus import PrometheusMetrics

__all__ = ["AdminEndpoint"]

logger = logging.getLogger(__name__)


class AdminEndpoint:
    """Serves ``metrics`` over HTTP on a daemon thread from ``start()`` (or ``with``) to ``stop()``.

    ``port`` 0 picks a free one (``port`` tells it once started). With ``token`` set, every request must
    carry ``Authorization: Bearer <token>`` (Prometheus' ``authorization`` setting); others get 401.
    """

    def __init__(self, metrics: PrometheusMetrics, host: str = DEFAULT_HOST, port: int = 0,
                 token: Optional[str] = None) -> None:
        self.metrics = metrics
        self.host = host
        self._requested_port = port
        self._token = token
        self._http: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._http.server_address[1] if self._http is not None else self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> "AdminEndpoint":
        """Binds (errors such as 'address in use' surface here) and serves on a daemon thread."""
        handler = type("Handler", (_Handler,), {"endpoint": self})
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"daemon_threads": True, "address_family": family})
        self._http = server_class((self.host, self._requested_port), handler)
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"admin:{self.port}", daemon=True)
        self._thread.start()
        logger.info("metrics on %s", self.url)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "AdminEndpoint":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def authorized(self, header: Optional[str]) -> bool:
        if self._token is None:
            return True
        expected = f"Bearer {self._token}".encode()
        return header is not None and hmac.compare_digest(header.encode(), expected)


class _Handler(BaseHTTPRequestHandler):
    endpoint: AdminEndpoint
    server_version = "thrift-handshake-admin"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        if not self.endpoint.authorized(self.headers.get("Authorization")):
            self._answer(401, b"a bearer token is required\n", "text/plain; charset=utf-8",
                         {"WWW-Authenticate": "Bearer"})
        elif self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
        else:
            self._answer(200, generate_latest(self.endpoint.metrics.registry), CONTENT_TYPE_LATEST)

    def _answer(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        logger.debug("admin %s: " + format, self.address_string(), *args)
