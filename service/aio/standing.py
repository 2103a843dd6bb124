"""Where one connection of the asyncio server stands, as the server, its admission (eviction) and its
observers see it: its phase, its deadline (kept by the server's sweep, not a timer per read), whether
it is stopping or evicted; and how it is stopped, evicted or timed out (its task cancelled, the
cancellation told apart from a timeout). ``connection.AsyncConnection`` serves it.

A session idle for ``PARK_AFTER`` waits without a task ("parked"): the sweep has its read give up, and
its next bytes, its stop, its eviction or its deadline start a task again (``wake``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional

from ..config import ServerConfig
from ..gate_state import ConnectionState
from ..server.connection import ConnectionInfo
from ..session import Session, SessionListener
from ..states import ConnectionPhase

__all__ = ["ConnectionStanding", "NEVER"]

#: The deadline of a connection that waits for nothing.
NEVER = float("inf")
#: How long a session waits for its next message on a task before it waits without one (seconds).
PARK_AFTER = 0.25


class ConnectionStanding(SessionListener):
    """The state of a connection that the server's sweep, its admission and its observers read (from
    other threads too: the admin endpoint's), and its stop, eviction and expiry. It is its session's
    listener: hello's success switches it to the session's deadlines."""

    __slots__ = ("config", "peer", "state", "accepted_at", "task", "begun", "_stopping", "_in_session", "expires_at",
                 "_expired", "_evicted", "_eviction_reason", "_between_messages", "_stalled_since", "_heard",
                 "_deadline_at", "_parks", "_parked", "_resuming", "resume_task")

    def __init__(self, config: ServerConfig, peer: str, accepted_at: float) -> None:
        self.config = config
        self.peer = peer
        self.state: Optional[ConnectionState] = None
        self.accepted_at = accepted_at
        self.task: Optional[asyncio.Task] = None  # the one serving it (set by the server)
        self.begun = False  # whether that task has begun
        self._stopping = False
        self._in_session = not config.handshake
        self.expires_at = NEVER  # while a read or a drain waits: when it gives up (loop time)
        self._expired = False
        self._evicted = False
        self._eviction_reason = ""  # why a session was given up for another host ("": the usual eviction)
        self._between_messages = False  # waiting for the peer's next message (none begun, none in flight)
        self._stalled_since: Optional[float] = None  # time.monotonic() since a read waits for a message's rest
        self._heard = False  # the peer has sent something
        self._deadline_at = NEVER  # the deadline of the read waiting now (expires_at may come first: parking)
        self._parks: Any = None  # the stream whose idle read may give up its task (None: this one may not)
        self._parked = False  # waiting without a task
        self._resuming = False  # a task was started for it and has not begun: it sees the flags, not a cancel
        #: Starts a task for this connection again (the server's, set by it).
        self.resume_task: Optional[Callable[[Any], None]] = None

    # -- what an observer sees (read from other threads: the admin endpoint's) --------------------

    @property
    def phase(self) -> ConnectionPhase:
        """Where the connection is, in the threaded server's words (``states.ConnectionPhase``)."""
        if self.closing:
            return ConnectionPhase.CLOSING
        if not self._heard:
            return ConnectionPhase.ACCEPTED
        state = self.state
        if state is None:
            return ConnectionPhase.STARTING
        if self._between_messages and state.in_flight is None:
            return ConnectionPhase.WAITING
        return ConnectionPhase.SERVING

    def info(self, now: float) -> ConnectionInfo:
        """The connection as an observer sees it at ``now`` (the loop's time)."""
        state = self.state
        context = None if state is None else state.context
        calls = 0 if state is None else sum(dict(state.counters.calls).values())
        return ConnectionInfo(self.peer, self.phase.value, max(now - self.accepted_at, 0.0),
                              context and context.session_id, context and context.client_name,
                              context and context.language, context and context.version, calls)

    # -- the session's listener -----------------------------------------------------------------

    def session_started(self, session: Optional[Session] = None) -> None:
        self._in_session = True

    # -- stop ---------------------------------------------------------------------------------

    def stop(self, force: bool = False) -> None:
        """No message may start from now on; the connection closes now if none is in flight (or with
        ``force``), else after its reply."""
        self._stopping = True
        if self._parked or self._resuming:
            self.wake()
            return
        task = self.task
        if task is None or task.done():
            return
        if self.state is None:
            task.cancel()
        elif self._stalled_since is None or force:
            self.state.stop(task.cancel, force)
        # else a message has begun: in flight, as on the threaded server (served, then closed)

    # -- making room (as ``server.admission.eviction_candidates`` sees a connection) -------------

    @property
    def host(self) -> str:
        return self.peer.rsplit(":", 1)[0]

    @property
    def awaiting_hello(self) -> bool:
        return self.config.handshake and not self._in_session

    def silent(self) -> bool:
        """Whether the peer has sent nothing yet."""
        return not self._heard

    @property
    def in_the_watch(self) -> bool:
        """Waiting for the peer's next message (none begun, none in flight)."""
        return self.expires_at != NEVER and (self.state is None or (self._between_messages and
                                                                     self.state.in_flight is None))

    @property
    def closing(self) -> bool:
        """Stopping or evicted: it no longer holds its place."""
        return self._stopping or self._evicted

    @property
    def established(self) -> bool:
        """Its hello succeeded (a session holds it)."""
        state = self.state
        return state is not None and state.session is not None and state.session.established

    def stalled(self, now: float, at_least: float) -> bool:
        """A session (or, without hello, a started connection) that has waited ``at_least`` seconds for
        the rest of a message from the peer (``now``: ``time.monotonic()``)."""
        since = self._stalled_since
        return since is not None and now - since >= at_least and not self.awaiting_hello

    def evict(self, force: bool = False, session: bool = False, reason: str = "", stalled: float = 0.0) -> bool:
        """Ends the connection to make room for a newcomer, unless a message is in flight (whatever
        ``force``, the threaded connection's word for that): one waiting for hello, one without hello idle
        between messages, and with ``session`` also a session idle between messages or (``stalled``)
        waiting that long for the rest of one; whether it will end. ``reason`` words it for the log and
        for the session, which is told."""
        task = self.task
        if (not self._parked and (task is None or task.done())) or self.closing or (
                self.state is not None and self.state.in_flight is not None):
            return False
        if self.established and not (session and (self.in_the_watch or (
                stalled and self.stalled(time.monotonic(), stalled)))):
            return False
        self._evicted = True
        self._eviction_reason = reason
        if self._parked or self._resuming:
            self.wake()
        else:
            task.cancel()
        return True

    # -- deadlines: kept by the server's sweep, not a timer per read ---------------------------

    def expire(self, now: float) -> None:
        """Called by the server's sweep: a read (or a reply's drain) whose deadline has passed ends; an
        idle read that has waited ``PARK_AFTER`` gives up its task."""
        if self.expires_at > now:
            return
        if self._parked:
            self._expired = True
            self.wake()
        elif self.task is not None and not self.task.done() and not self._resuming:
            if now < self._deadline_at:
                self.expires_at = self._deadline_at
                if self._parks is not None and self._between_messages and not self.closing:
                    self._parks.park()
                return
            self._expired = True
            self.expires_at = NEVER
            self.task.cancel()

    # -- waiting without a task ------------------------------------------------------------------

    def park(self) -> None:
        """Its task ends while it waits for its next message (until ``wake``)."""
        self._parked = True
        self.task = None
        self._between_messages = True
        self.expires_at = self._deadline_at
        self._parks.watch(self)

    @property
    def stream(self) -> Any:
        """The stream of a connection that may park (its reader and writer both), else None."""
        return self._parks

    def wake(self) -> None:
        """Bytes came (or the end, or an error), or it is stopped, evicted or past its deadline: a task
        serves it again (unless one was started already)."""
        if not self._parked:
            return
        self._parked = False
        self._resuming = True
        self._parks.unwatch()
        self.resume_task(self)

    async def _by(self, awaitable: Any, deadline: float) -> Any:
        """``awaitable``'s result, or TimeoutError once ``deadline`` (loop time) passes."""
        self.expires_at = self._deadline_at = deadline
        try:
            return await awaitable
        except asyncio.CancelledError:
            if not self._timed_out():
                raise
            raise TimeoutError from None
        finally:
            self.expires_at = NEVER

    def _timed_out(self) -> bool:
        """After a CancelledError: whether it was the sweep ending a wait past its deadline (the task is
        then uncancelled), not a stop or an eviction."""
        if not self._expired or self._stopping or self._evicted:
            return False
        asyncio.current_task().uncancel()
        self._expired = False
        return True

