"""The graceful stop: first a notice (``drain_notice``) while the port stays open and ping and hello
answer ``Draining``, so a load balancer sees it; then no new connections. Idle sessions are told and
closed at once, busy ones after their reply or at the end of the grace period, when the service's own
remaining work (``on_stop`` callbacks) is aborted too."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional

from ..metrics import ServerMetrics
from ..peerlog import WarningBudget, clip_for_log
from .admission import Admission

__all__ = ["Drain"]

logger = logging.getLogger(__package__)  # the server's one logger: operators filter on its name

#: Once the grace period is over and the service's work aborted, how long busy connections get to send
#: the aborted calls' answers before their sockets are closed.
_ABORT_REPLY_WAIT = 0.5
#: How long a connection's thread gets to unwind once the grace period is over and its socket closed.
_UNWIND_WAIT = 2.0


class Drain:
    """Drains a server's connections and its ``on_stop`` work within a grace period, which
    ``shorten`` may change while the drain runs (from a signal handler too)."""

    def __init__(self, grace: float, admission: Admission, metrics: ServerMetrics, warnings: WarningBudget) -> None:
        self.grace = grace
        self.callbacks: List[Callable[[float], None]] = []
        self._admission = admission
        self._metrics = metrics
        self._warnings = warnings
        self._deadline: Optional[float] = None  # when draining: the end of the grace period
        self._notice_until: Optional[float] = None  # once begun: when the listener closes

    def announce(self) -> float:
        """The stop is requested: starts the grace period (once); returns its end. Takes no lock."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.grace
        return self._deadline

    def begin(self, notice: float) -> None:
        """Starts draining while the server still listens (for ``notice`` seconds at most, and within
        the grace period): every session closes, idle ones now, busy ones after their reply; a connection
        still before its hello is answered Draining like a newcomer, and closed when the notice ends."""
        self.announce()
        self._notice_until = time.monotonic() + notice
        connections = self._admission.connections()
        logger.info("draining: %d connections open, notice %.1fs, grace %.1fs", len(connections), notice,
                    self._remaining_grace())
        for connection in connections:
            if not connection.awaiting_hello:
                connection.shutdown()  # one waiting for input has no thread to wake: closed here

    def notice_over(self) -> bool:
        """Whether the listener should close now (the notice, or the grace period, is over)."""
        return self._notice_until is not None and time.monotonic() >= min(self._notice_until, self._deadline)

    def shorten(self, grace: float) -> None:
        """Replaces the grace period (0 while draining ends it now); takes no lock."""
        self.grace = grace
        self._deadline = time.monotonic() + grace

    def _remaining_grace(self) -> float:
        return max(self._deadline - time.monotonic(), 0.0)

    def run(self, close_listener: Callable[[], None], close_pool: Callable[[], None]) -> None:
        """The whole stop; returns once every connection is closed (or left behind, logged)."""
        admission = self._admission
        if self._notice_until is None:
            self.begin(0.0)
        close_listener()
        connections = admission.connections()
        logger.info("stopping: %d connections open, grace %.1fs", len(connections), self._remaining_grace())
        for connection in connections:
            if not connection.closing:  # those accepted during the notice; the others are on their way
                connection.shutdown()
        remaining = self._remaining_grace()
        closers = [threading.Thread(target=callback, args=(remaining + _UNWIND_WAIT,), name="on_stop",
                                    daemon=True) for callback in self.callbacks]
        for closer in closers:  # the service's own work drains alongside; the grace period decides
            closer.start()
        admission.wait_until_empty(self._remaining_grace)  # re-read: a 2nd signal ends it
        for closer in closers:
            while closer.is_alive() and self._remaining_grace() > 0:
                closer.join(min(self._remaining_grace(), 0.05))
        for callback, closer in zip(self.callbacks, closers):
            if closer.is_alive():
                try:
                    callback(0.0)  # abort what still runs, so busy handlers return (and answer why)
                except Exception:
                    logger.exception("an on_stop callback failed to abort its work")
        until = time.monotonic() + _ABORT_REPLY_WAIT  # a short while for those answers to go out
        admission.wait_until_empty(lambda: until - time.monotonic())
        for connection in admission.connections():
            logger.warning("grace period over: closing peer=%s in %s", connection.peer,
                           clip_for_log(connection.in_flight))
            connection.shutdown(force=True)
        for closer in closers:
            closer.join(_UNWIND_WAIT)
        until = time.monotonic() + _UNWIND_WAIT
        admission.wait_until_empty(lambda: until - time.monotonic())
        for connection in admission.connections():
            logger.error("peer=%s: handler still running after the grace period; left behind", connection.peer)
        close_pool()
        self._warnings.flush()
        stats = self._metrics.local_snapshot()  # this process's own (with workers: not the sum)
        logger.info("stopped: %d connections served, calls %s", stats.connections_total, stats.calls)
