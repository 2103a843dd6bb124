"""What the server's log says of calls: an interceptor in every gate's chain.

A one-way call that is not run (refused before hello, to no such method, sent as ONEWAY to a two-way
method, or dropped by its handler with ``session.drop_oneway``) cannot be answered, so the log is the only place that says
so: the first one of a connection is a warning (within the server's warning budget), the rest are
DEBUG lines, so a flood of them is not a flood of log lines. With DEBUG on, every call gets one line.
"""

from __future__ import annotations

import logging
from typing import Any

from .interceptors import Interceptor, Outcome
from .peerlog import WarningBudget, clip_for_log

__all__ = ["CallLog"]

logger = logging.getLogger(__name__)

_NOT_RUN = frozenset({Outcome.DROPPED, Outcome.UNKNOWN_METHOD, Outcome.REFUSED})
_DROPPED = "dropped one-way %s peer=%s: %s (further drops on this connection are not logged)"


class CallLog(Interceptor):
    """Logs dropped one-way calls (see the module) and, at DEBUG, every call with its outcome and time."""

    def __init__(self, warnings: WarningBudget) -> None:
        self._warnings = warnings

    @property
    def observes_handler(self) -> bool:  # type: ignore[override]
        """Only the DEBUG line of each call tells a declared error from OK."""
        return logger.isEnabledFor(logging.DEBUG)

    def call_ended(self, call: Any) -> None:
        if call.oneway and call.outcome in _NOT_RUN:
            self._dropped(call)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s peer=%s seqid=%d: %s in %.3f ms%s", clip_for_log(call.name), call.peer,
                         call.seqid, call.outcome.value, call.duration * 1e3,
                         f" ({clip_for_log(call.reason)})" if call.reason else "")

    def _dropped(self, call: Any) -> None:
        connection = call.connection
        connection.dropped_oneway += 1
        name = clip_for_log(call.name)  # the peer's: any length
        if connection.dropped_oneway == 1:
            self._warnings.warning(_DROPPED, name, call.peer, call.reason, log=logger)
        else:
            logger.debug(_DROPPED, name, call.peer, call.reason)
