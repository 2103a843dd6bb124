"""How the server's one log line about a connection words its end ("closed" or "dropped", and why),
from plain facts about the connection: no sockets, no threads."""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Tuple

from thrift.transport.TTransport import TTransportException

from ..config import ServerLimits
from ..gate_state import ConnectionState
from ..peerlog import clip_for_log
from ..states import ConnectionEvent
from ..wire import BudgetExceeded, FrameRefused, FrameTooLarge, is_reset, is_timeout

__all__ = ["Ending", "Outcome", "bad_input", "BAD_INPUT", "closing_outcome", "session_summary", "transport_outcome"]

#: ("closed" for an orderly end, logged at INFO; "dropped" for anything else, a WARNING) and why.
Outcome = Tuple[str, str]

#: Transport errors that mean "this message is too big or malformed" rather than "the peer is gone".
BAD_INPUT = (TTransportException.SIZE_LIMIT, TTransportException.NEGATIVE_SIZE)
#: How the C extension words the lengths pure Python refuses with one of BAD_INPUT.
_C_TOO_BIG = ("exceeded specified limit", "negative length", "varint exceeded")


@dataclasses.dataclass(frozen=True)
class Ending:
    """What is known of a connection when its transport fails."""

    closed_by: Optional[ConnectionEvent] = None  # the server's own reason to close it, if any
    handshake: bool = True  # the server expects hello (wording of an eviction)
    established: bool = False  # hello succeeded
    identified: bool = False  # a session id was given out
    session_closing: bool = False  # goodbye (or a refused hello) was served
    close_reason: str = ""  # the session's own wording of why it closes
    in_flight: bool = False  # a message was being read or served
    mid_request: bool = False  # a request's deadline was running (its first bytes had arrived)

    @classmethod
    def of(cls, closed_by: Optional[ConnectionEvent], handshake: bool, state: ConnectionState,
           mid_request: bool) -> "Ending":
        session = state.session
        return cls(closed_by=closed_by, handshake=handshake, established=session is None or session.established,
                   identified=session is not None and state.context.session_id is not None,
                   session_closing=session is not None and session.closing,
                   close_reason=session.close_reason if session is not None and session.closing else "",
                   in_flight=state.in_flight is not None, mid_request=mid_request)


def evicted_as(handshake: bool) -> str:
    """What an evicted connection was: without hello there is no session to protect, only idleness."""
    return "no hello yet" if handshake else "idle"


def closing_outcome(closed_by: ConnectionEvent, handshake: bool, expiry_reason: str,
                    eviction_reason: str = "") -> Outcome:
    """The end of a connection the server closed itself (stop, eviction, expiry)."""
    if closed_by is ConnectionEvent.STOPPING:
        return "closed", "server stopping"
    if closed_by is ConnectionEvent.EVICTED:
        return "dropped", f"evicted: {eviction_reason or evicted_as(handshake) + ' and the server was full'}"
    return "dropped", expiry_reason


def transport_outcome(ending: Ending, error: TTransportException) -> Outcome:
    """The end of a connection whose transport failed (or was shut by the server)."""
    if ending.closed_by in (ConnectionEvent.STOPPING, ConnectionEvent.EVICTED):
        return closing_outcome(ending.closed_by, ending.handshake, "")
    if ending.session_closing:
        # goodbye (or a refused hello) was served: a peer that left without reading the answer is fine
        return "closed", ending.close_reason
    if is_timeout(error):
        if not ending.established:
            return "dropped", "handshake timeout"
        if "did not read its reply" in str(error):
            return "dropped", "the peer did not read its reply within reply_timeout"
        if ending.mid_request:
            return "dropped", "request timeout: the message did not arrive whole in time"
        return "dropped", "idle timeout"
    if error.type == TTransportException.END_OF_FILE and not ending.in_flight:
        if not ending.identified:
            return "closed", "peer closed the connection"
        return "dropped", "peer closed the connection without goodbye"
    if is_reset(error):
        if not ending.identified:
            return "dropped", "peer reset the connection"
        return "dropped", "peer reset the connection without goodbye"
    return "dropped", f"transport error: {error}"


def bad_input(error: BaseException, limits: ServerLimits) -> str:
    """What was wrong with a message, worded the same whichever protocol implementation noticed."""
    if isinstance(error, FrameTooLarge):
        return (f"a frame of {error.size + 4} bytes (its length field included) exceeds this server's limits "
                f"(max_message_bytes={limits.max_message_bytes})")
    if isinstance(error, (BudgetExceeded, FrameRefused)):
        return clip_for_log(error)
    too_big = (isinstance(error, TTransportException) and error.type in BAD_INPUT) or (
        isinstance(error, OverflowError) and any(words in str(error) for words in _C_TOO_BIG))
    if too_big:
        return (f"a string, binary or container exceeds this server's limits (max_message_bytes="
                f"{limits.max_message_bytes}, max_container_items={limits.max_container_items})")
    return f"{type(error).__name__}: {clip_for_log(error)}"


def session_summary(state: ConnectionState) -> str:
    """What the one log line of a connection says of its session (who, how many calls, how long)."""
    session, context = state.session, state.context
    if session is None or context.established_at is None:
        return ""
    duration_ms = int((time.monotonic() - context.established_at) * 1000)
    if session.anonymous:
        return f" anonymous calls={session.calls} duration_ms={duration_ms}"
    return f" client={context.client_name!r} version={context.version} calls={session.calls} duration_ms={duration_ms}"
