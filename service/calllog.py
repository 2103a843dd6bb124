"""What the server's log says of calls: an interceptor in every gate's chain.

A one-way call that is not run (refused before hello, to no such method, sent as ONEWAY to a two-way
method, or dropped by its handler with ``session.drop_oneway``) cannot be answered, so the log is the only place that says
so: the first one of a connection is a warning (within the server's warning budget), the rest are
DEBUG lines, so a flood of them is not a flood of log lines. With DEBUG on, every call gets one line,
with the trace id of the caller's trace context when it sent one (``tracing``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable

from .interceptors import Interceptor, Outcome
from .peerlog import WarningBudget, clip_for_log

__all__ = ["CallLog"]

logger = logging.getLogger(__name__)

_NOT_RUN = frozenset({Outcome.DROPPED, Outcome.UNKNOWN_METHOD, Outcome.REFUSED})
_DROPPED = "dropped one-way %s peer=%s: %s (further drops on this connection are not logged)"


class CallLog(Interceptor):
    """Logs dropped one-way calls (see the module) and, at ``level`` (DEBUG unless the server's
    ``call_log_level`` says otherwise), every call with its outcome and time: an access log."""

    def __init__(self, warnings: WarningBudget, level: int = logging.DEBUG) -> None:
        self._warnings = warnings
        self._level = level
        #: Whether every call gets its line now (the logger's level, read per call).
        self.logs_every_call: Callable[[], bool] = partial(logger.isEnabledFor, level)

    @property
    def observes_handler(self) -> bool:  # type: ignore[override]
        """Only the line of each call tells a declared error from OK."""
        return self.logs_every_call()

    def call_ended(self, call: Any) -> None:
        if call.oneway and call.outcome in _NOT_RUN:
            self._dropped(call)
        if logger.isEnabledFor(self._level):
            context = call.session
            session, traceparent = context.session_id, context.traceparent
            trace_id = None if traceparent is None else traceparent[3:35]  # checked when it was read
            duration_ms = round(call.duration * 1e3, 3)
            logger.log(self._level, "call %s peer=%s session=%s%s seqid=%d: %s in %.3f ms%s", clip_for_log(call.name),
                       call.peer, session or "-", "" if trace_id is None else f" trace={trace_id}", call.seqid,
                       call.outcome.value, duration_ms, f" ({clip_for_log(call.reason)})" if call.reason else "",
                       extra={"method": clip_for_log(call.name), "outcome": call.outcome.value,
                              "duration_ms": duration_ms, "peer": call.peer, "session": session,
                              "trace_id": trace_id})

    def _dropped(self, call: Any) -> None:
        connection = call.connection
        connection.dropped_oneway += 1
        name = clip_for_log(call.name)  # the peer's: any length
        if connection.dropped_oneway == 1:
            self._warnings.warning(_DROPPED, name, call.peer, call.reason, log=logger, extra={"peer": call.peer})
        else:
            logger.debug(_DROPPED, name, call.peer, call.reason, extra={"peer": call.peer})
