"""The admin HTTP endpoint, on its own port (loopback by default): ``/metrics`` in Prometheus' text format,
``/`` the admin page, ``/admin/state.json`` what the page shows, ``/admin/static/`` and ``/admin/js/`` the
"run it" panel's files. Read-only: GET only."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union

from ..config import DEFAULT_HOST
from ..peerlog import clip_for_log
from ..session import same_secret
from .page import PAGE, admin_state
from .multiprocess import SummedMetrics
from .prometheus import PrometheusMetrics
from .recent import RecentCalls
from .runit import static_file

__all__ = ["AdminEndpoint"]

logger = logging.getLogger(__name__)


class AdminEndpoint:
    """Serves ``metrics`` (one process's, or every worker's summed: ``multiprocess.SummedMetrics``) and,
    with ``recent``, the latest calls' timelines on the page, over HTTP on a daemon thread from
    ``start()`` (or ``with``) to ``stop()``.

    ``port`` 0 picks a free one (``port`` tells it once started). With ``token`` set, every request must
    carry it: ``Authorization: Bearer <token>`` (Prometheus' ``authorization`` setting), or HTTP Basic
    with the token as the password (what a browser asks for); others get 401. Without a token, on a
    loopback address, it answers only requests that name it by a loopback name (``Host``): a web page
    whose name an attacker re-binds to 127.0.0.1 gets 403. A connection that sends nothing for
    ``idle_timeout`` seconds, or has not had its answer within ``request_timeout``, is closed, and past
    ``max_clients`` at once a connection is closed unanswered, so clients cannot pile up threads.
    """

    def __init__(self, metrics: Union[PrometheusMetrics, SummedMetrics], host: str = DEFAULT_HOST, port: int = 0,
                 token: Optional[str] = None, recent: Optional[RecentCalls] = None,
                 idle_timeout: float = 10.0, max_clients: int = 32, request_timeout: float = 20.0) -> None:
        self.metrics = metrics
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_clients = max_clients
        self.recent = recent
        self.host = host
        self._requested_port = port
        self._token = token
        self._http: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._http.server_address[1] if self._http is not None else self._requested_port

    @property
    def base_url(self) -> str:
        """The admin page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """The metrics' address."""
        return self.base_url + "metrics"

    def start(self) -> "AdminEndpoint":
        """Binds (errors such as 'address in use' surface here) and serves on a daemon thread."""
        handler = type("Handler", (_Handler,), {"endpoint": self, "timeout": self.idle_timeout})
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family,
                                                    "slots": threading.BoundedSemaphore(self.max_clients)})
        self._http = server_class((self.host, self._requested_port), handler)
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"admin:{self.port}", daemon=True)
        self._thread.start()
        logger.info("metrics on %s, the admin page on %s", self.url, self.base_url)
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
        """Whether a request with this Authorization header may read (always, without a token)."""
        if self._token is None:
            return True
        if header is None:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(value, validate=True).partition(b":")[2]
            except binascii.Error:
                return False
        elif scheme.lower() == "bearer":
            given = value.encode("latin-1", "replace")  # the bytes sent (http.server decodes headers as latin-1)
        else:
            return False
        return same_secret(given, self._token.encode())

    def host_allowed(self, host: Optional[str]) -> bool:
        """Whether a request naming this ``Host`` may read: any with a token or off loopback (the token, or
        the network, guards it); else a loopback name only (127.0.0.0/8, ::1, localhost), so that a page of
        another name resolved to this address (DNS rebinding) cannot read it. No Host: no browser."""
        if self._token is not None or host is None or not _loopback(self.host):
            return True
        try:
            name = urllib.parse.urlsplit("//" + host).hostname
        except ValueError:  # e.g. "[::1" (urlsplit checks the brackets)
            return False
        return name is not None and _loopback(name)


def _loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):  # (browsers resolve these to loopback themselves)
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot is free, else it is closed at once."""
        if not self.slots.acquire(blocking=False):
            logger.debug("admin %s: closed, %s", client_address[0], "max_clients connections open")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets or times out is one DEBUG line, not a traceback on stderr (and in no JSON log)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("admin %s: %s", client_address[0], error)
        else:
            logger.error("admin %s: the request failed", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    endpoint: AdminEndpoint
    server_version = "thrift-handshake-admin"

    def setup(self) -> None:
        super().setup()
        # the whole exchange within request_timeout: a client dripping bytes is never idle, yet ends
        self._deadline = threading.Timer(self.endpoint.request_timeout, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        logger.debug("admin %s: closed, no answer within request_timeout", self.client_address[0])
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed meanwhile
            pass

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        endpoint = self.endpoint
        path = self.path.split("?", 1)[0]
        if not endpoint.host_allowed(self.headers.get("Host")):
            self._answer(403, b"this page answers to its loopback address or localhost, not to the name asked for "
                              b"(set an auth token to open it by other names)\n", "text/plain; charset=utf-8")
        elif not endpoint.authorized(self.headers.get("Authorization")):
            self._answer(401, b"the server's auth token is required\n", "text/plain; charset=utf-8",
                         {"WWW-Authenticate": 'Basic realm="thrift-handshake admin", charset="UTF-8"'})
        elif path == "/metrics":
            self._answer(200, generate_latest(endpoint.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/":
            self._answer(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/admin/state.json":
            state = admin_state(endpoint.metrics, endpoint.recent)
            self._answer(200, json.dumps(state).encode(), "application/json")
        elif (found := static_file(path)) is not None:
            self._answer(found.status, found.body, found.content_type)
        else:
            self._answer(404, b"not found: the page is at /, the metrics at /metrics\n", "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        # the request line is the client's: escaped and clipped, as any peer text in a log line
        logger.debug("admin %s: %s", self.address_string(), clip_for_log(format % args))
