"""The most recent calls a server handled, kept for the admin page (a bounded ring, newest last)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Deque, Dict, List

from ..interceptors import Interceptor
from ..peerlog import clip_for_log

__all__ = ["RecentCalls"]


class RecentCalls(Interceptor):
    """Keeps the last ``size`` calls: method, peer, session, outcome, wall-clock start, duration, the
    handler's share of it and the caller's trace id (put it in ``ServerConfig.interceptors``)."""

    def __init__(self, size: int = 300) -> None:
        self._calls: Deque[Dict[str, Any]] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        # perf_counter() times to wall-clock ones, for the page's timestamps
        self._wall_offset = time.time() - time.perf_counter()

    def call_ended(self, call: Any) -> None:
        handler = getattr(call, "handler_seconds", None)
        traceparent = getattr(getattr(call, "session", None), "traceparent", None)
        entry = {
            "method": clip_for_log(call.method, 80),
            "peer": call.peer,
            "session": getattr(getattr(call, "session", None), "session_id", None),
            "outcome": call.outcome.value,
            "started": call.started + self._wall_offset,
            "duration_ms": round((call.duration or 0.0) * 1e3, 3),
            "handler_ms": None if handler is None else round(handler * 1e3, 3),
            "trace_id": None if traceparent is None else traceparent[3:35],  # the caller's trace, if it sent one
        }
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> List[Dict[str, Any]]:
        """The kept calls, oldest first."""
        with self._lock:
            return list(self._calls)
