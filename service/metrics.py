"""Server counters behind stats(): connections, sessions, handshakes, calls by method, notifications.

Per-call counts live on each connection's ``ConnectionCounters`` (only its own thread writes them), so
the call path takes no lock; ``snapshot()`` adds the live connections' counts to those of connections
already closed. ``ServerMetrics`` is also a ``session.SessionListener``: sessions report to it.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, Set

from thrift_handshake_gen.session.ttypes import ServerStats

__all__ = ["ConnectionCounters", "ServerMetrics"]


def _add(total: Dict[str, int], counts: Dict[str, int]) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


class ConnectionCounters:
    """What one connection has received: messages by method, one-way calls delivered."""

    __slots__ = ("calls", "notifications", "said_goodbye", "__weakref__")

    def __init__(self) -> None:
        self.calls: Dict[str, int] = {}
        self.notifications = 0
        self.said_goodbye = False  # its client already considers it closed

    def message(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1


class ServerMetrics:
    """Thread-safe counters of one server (or of one processor hosted by a stock Thrift server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._live: Set[ConnectionCounters] = set()
        self._closed_calls: Dict[str, int] = {}
        self._closed_notifications = 0
        self.connections_total = 0
        self.sessions_active = 0
        self.handshakes_ok = 0
        self.handshakes_rejected = 0

    def connection_opened(self, counters: ConnectionCounters) -> None:
        with self._lock:
            self._live.add(counters)
            self.connections_total += 1

    def connection_closed(self, counters: ConnectionCounters) -> None:
        with self._lock:
            if counters not in self._live:
                return
            self._live.discard(counters)
            _add(self._closed_calls, counters.calls)
            self._closed_notifications += counters.notifications

    # -- session.SessionListener ----------------------------------------------------------------

    def session_started(self, session: object) -> None:
        with self._lock:
            self.handshakes_ok += 1
            self.sessions_active += 1

    def session_rejected(self, session: object, reason: str) -> None:
        with self._lock:
            self.handshakes_rejected += 1

    def session_ended(self, session: object, goodbye: bool) -> None:
        with self._lock:
            self.sessions_active -= 1

    # -------------------------------------------------------------------------------------------

    def snapshot(self) -> ServerStats:
        """The counters now, as the session contract's ServerStats."""
        with self._lock:
            calls = dict(self._closed_calls)
            notifications = self._closed_notifications
            for counters in self._live:
                _add(calls, dict(counters.calls))  # dict() copies atomically under the GIL
                notifications += counters.notifications
            return ServerStats(
                connections_open=sum(1 for counters in self._live if not counters.said_goodbye),
                connections_total=self.connections_total,
                sessions_active=self.sessions_active,
                handshakes_ok=self.handshakes_ok,
                handshakes_rejected=self.handshakes_rejected,
                calls=calls,
                notifications=notifications,
                uptime_ms=int((time.monotonic() - self._started) * 1000),
            )
