"""Server counters behind stats(): connections, sessions, handshakes, calls by method, notifications.

Per-call counts live on each connection (only its own thread writes them), so the call path takes no
lock; ``snapshot()`` adds the live connections' counts to those of connections already closed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Dict, Set

from thrift_handshake_gen.session.ttypes import ServerStats

if TYPE_CHECKING:  # pragma: no cover
    from .server import Connection

__all__ = ["ServerMetrics"]


def _add(total: Dict[str, int], counts: Dict[str, int]) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


class ServerMetrics:
    """Thread-safe counters of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._live: Set["Connection"] = set()
        self._closed_calls: Dict[str, int] = {}
        self._closed_notifications = 0
        self.connections_total = 0
        self.sessions_active = 0
        self.handshakes_ok = 0
        self.handshakes_rejected = 0

    def connection_opened(self, connection: "Connection") -> None:
        with self._lock:
            self._live.add(connection)
            self.connections_total += 1

    def connection_closed(self, connection: "Connection") -> None:
        with self._lock:
            self._live.discard(connection)
            _add(self._closed_calls, connection.calls)
            self._closed_notifications += connection.notifications

    def handshake_ok(self) -> None:
        with self._lock:
            self.handshakes_ok += 1
            self.sessions_active += 1

    def handshake_rejected(self) -> None:
        with self._lock:
            self.handshakes_rejected += 1

    def session_ended(self) -> None:
        with self._lock:
            self.sessions_active -= 1

    def snapshot(self) -> ServerStats:
        """The counters now, as the IDL's ServerStats."""
        with self._lock:
            calls = dict(self._closed_calls)
            notifications = self._closed_notifications
            for connection in self._live:
                _add(calls, dict(connection.calls))  # dict() copies atomically under the GIL
                notifications += connection.notifications
            return ServerStats(
                # a connection that said goodbye is closing: its client already considers it closed
                connections_open=sum(1 for connection in self._live if not connection.said_goodbye),
                connections_total=self.connections_total,
                sessions_active=self.sessions_active,
                handshakes_ok=self.handshakes_ok,
                handshakes_rejected=self.handshakes_rejected,
                calls=calls,
                notifications=notifications,
                uptime_ms=int((time.monotonic() - self._started) * 1000),
            )
