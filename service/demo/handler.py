"""The demo service's methods (everything but the session methods, which the runtime serves).

The handler is shared by every connection; per-caller data comes from ``current_session()``.
To make a method mean something else in protocol version 2, branch on the negotiated version:

    def echo(self, message):
        if current_session().version >= 2:
            return message.upper()   # hypothetical v2 meaning; v1 clients keep the old one
        return message
"""

from __future__ import annotations

import collections
import hashlib
import logging
import sys
import threading
import time
from typing import Deque, Optional, Tuple

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Ack, AllTypes, Event, InvalidRequest, Request, Response

from ..errors import WorkAborted
from ..session import SessionContext, current_session, drop_oneway
from ..workers import joining_a_running_service
from .limits import DemoLimits
from .store import open_store
from .tickets import TicketBoard

__all__ = ["HandshakeHandler", "CoroutineHandshakeHandler", "MAX_WORK_MS"]

logger = logging.getLogger(__name__)

#: The longest request_id (results keep it for result_ttl, so it must stay small).
MAX_REQUEST_ID = 256
#: notify() keeps the latest events for inspection, at most this many bytes of them (oldest dropped).
RECENT_EVENT_BYTES = 1024 * 1024
#: The largest simulated processing time a Request may ask for.
MAX_WORK_MS = 10_000
#: How long close() waits for aborted work to unwind.
_ABORT_WAIT = 1.0
#: What the allocator adds to each object beyond sys.getsizeof (its rounding, and tracemalloc's count of
#: a decoded request on CPython 3.11). Empty and one-character strings are shared objects, counted
#: anyway: on the budget's safe side.
_ALLOCATOR_COST = 16


def _validate(request: Optional[Request]) -> Request:
    if request is None:
        raise InvalidRequest(message="request is required", field="request")
    if not request.request_id:
        raise InvalidRequest(message="request_id must not be empty", field="request_id")
    if len(request.request_id) > MAX_REQUEST_ID:  # it is kept with the result, for result_ttl
        raise InvalidRequest(message=f"request_id is limited to {MAX_REQUEST_ID} characters", field="request_id")
    work_ms = request.work_ms or 0
    if not 0 <= work_ms <= MAX_WORK_MS:
        raise InvalidRequest(message=f"work_ms must be within 0..{MAX_WORK_MS}, not {work_ms}", field="work_ms")
    return request


def _next_sequence(context: SessionContext, counter: str) -> int:
    sequence = context.state.get(counter, 0) + 1
    context.state[counter] = sequence
    return sequence


def _submitter(context: SessionContext) -> str:
    """Whose share of the submit queue a request counts against: the client certificate's identity,
    else the peer's host (one client opening many sessions is still one client)."""
    if context.peer_identity:
        return f"identity {context.peer_identity}"
    return "host " + context.peer.rsplit(":", 1)[0]


def _memory_cost(request: Request) -> int:
    """The bytes a queued request takes, for the submit queue's byte limit: the memory Python reports
    for the request and its headers' dict, and for each string the larger of what CPython stores (1, 2
    or 4 bytes a character: one emoji makes it 4) and its UTF-8 bytes; plus the allocator's share of
    each object. Many small headers cost far more than their UTF-8 (1 000 000 six-character keys: 6 MB,
    about 90 MB held)."""
    headers = request.headers or {}
    strings = [request.payload, request.request_id, *headers.keys(), *headers.values()]
    objects = [request, getattr(request, "__dict__", None), request.headers]
    return (sum(max(sys.getsizeof(text), len(text.encode())) for text in strings if text is not None)
            + sum(sys.getsizeof(part) for part in objects if part is not None)
            + _ALLOCATOR_COST * (len(strings) + len(objects)))


class HandshakeHandler(HandshakeService.Iface):
    """Implements echo, process, submit, get_result, notify, echo_types and fail.

    ``close(timeout)`` drains its work; ``demo.serve_demo`` registers it with the server's ``on_stop``.
    """

    def __init__(self, limits: Optional[DemoLimits] = None, recent_events: int = 100,
                 ticket_store: Optional[str] = None) -> None:
        limits = limits or DemoLimits()
        # A worker that joins a running service must find the store its siblings use, not start an empty one.
        ledger = None if ticket_store is None else open_store(ticket_store, limits.result_ttl,
                                                              create=not joining_a_running_service())
        self.tickets = TicketBoard(limits, ledger)
        self._events: Deque[Tuple[Event, int]] = collections.deque()  # (event, its bytes), oldest first
        self._max_events = recent_events
        self._event_bytes = 0
        self._events_lock = threading.Lock()
        self._aborted = threading.Event()  # set when the server's grace period is over
        self._running = 0  # process() calls and submitted jobs at work
        self._idle = threading.Condition()

    def _run(self, request: Request, session_id: Optional[str], sequence: int) -> Response:
        """Does the (simulated) work of one request and measures the server's own time on it."""
        started = time.perf_counter()
        with self._idle:
            self._running += 1
        try:
            if request.work_ms and self._aborted.wait(request.work_ms / 1000.0):
                raise WorkAborted("aborted: the server is stopping and its grace period is over")
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()
        digest = hashlib.sha256((request.payload or "").encode("utf-8")).hexdigest()
        return Response(
            request_id=request.request_id,
            digest=digest,
            processing_us=int((time.perf_counter() - started) * 1e6),
            session_id=session_id,
            sequence=sequence,
        )

    @property
    def recent_events(self) -> "list[Event]":
        """The latest notify() events, oldest first (bounded)."""
        with self._events_lock:
            return [event for event, _ in self._events]

    def echo(self, message: str) -> str:
        return message

    def process(self, request: Request) -> Response:
        _validate(request)
        context = current_session()
        return self._run(request, context.session_id, _next_sequence(context, "process_sequence"))

    def submit(self, request: Request) -> Ack:
        _validate(request)
        context = current_session()
        sequence = _next_sequence(context, "submit_sequence")
        session_id = context.session_id
        ticket = self.tickets.submit(lambda: self._run(request, session_id, sequence), _memory_cost(request),
                                     _submitter(context))
        return Ack(ticket=ticket, request_id=request.request_id, accepted_at_ms=int(time.time() * 1000))

    def get_result(self, ticket: str, wait_ms: int) -> Response:
        return self.tickets.result(ticket or "", (wait_ms or 0) / 1000.0)

    def notify(self, event: Optional[Event]) -> None:
        if event is None:  # optional on the wire; a one-way call has no answer to say it is missing
            drop_oneway("the event is required")
            return
        size = len((event.name or "").encode()) + len((event.payload or "").encode())
        if size > RECENT_EVENT_BYTES:  # delivered, but too big to keep around
            return
        with self._events_lock:
            self._events.append((event, size))
            self._event_bytes += size
            while self._event_bytes > RECENT_EVENT_BYTES or len(self._events) > self._max_events:
                self._event_bytes -= self._events.popleft()[1]
        logger.debug("notify %r from session %s", event.name, current_session().session_id)

    def echo_types(self, value: AllTypes) -> AllTypes:
        return value

    def fail(self, message: str) -> None:
        raise RuntimeError(message or "fail() was called")

    def close(self, timeout: float) -> None:
        """Stops: queued submit work is cancelled, running work (process() and submit()) gets
        ``timeout`` seconds, then is aborted. Called again with 0, it aborts at once. Returns once
        every ticket's outcome is recorded (and then closes the ticket store), or after ``_ABORT_WAIT`` more,
        so the process may exit."""
        self.tickets.stop()
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout)
        self._aborted.set()
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, _ABORT_WAIT)
        if self.tickets.drain(_ABORT_WAIT):
            self.tickets.close_store()


class CoroutineHandshakeHandler(HandshakeHandler):
    """The demo for the asyncio server: echo and echo_types, which only compute, are coroutines and
    answered on the event loop, with no pool thread and no hand-off; process, submit, get_result and
    notify, which wait or take locks, stay plain methods on the server's pool."""

    async def echo(self, message: str) -> str:  # type: ignore[override]
        return message

    async def echo_types(self, value: AllTypes) -> AllTypes:  # type: ignore[override]
        return value

