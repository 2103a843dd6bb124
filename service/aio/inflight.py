"""The calls in flight on one pipelined connection, by seqid: their futures, deadlines and records.

Every call ends here exactly once, for the interceptors (the timeline first): answered, failed before
or while being written, failed with the connection, or cancelled by its caller. A cancelled call stays
in the table (``abandoned``) until its reply comes, so that the reply is recognised and dropped rather
than taken for another call's or for a foreign one.

Deadlines share one timer, armed for the earliest: a call's timer per call would cost a handle, heap
work and a cancel for every reply. When it fires, the calls whose deadline has passed are looked for
(there may be none: the call it was armed for was answered) and it is armed again for the earliest left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, Optional

from ..client_core import outcome_of
from ..interceptors import ClientCall, Outcome
from ..timing import Record

__all__ = ["InFlight", "Waiting"]

#: A Record made with every field given, without NamedTuple's __new__: one Python call less per reply.
_record = tuple.__new__
assert len(Record._fields) == 12


class Waiting:
    """A call whose request is written and whose reply is awaited."""

    __slots__ = ("call", "future", "bytes_out", "sent", "deadline", "abandoned")

    def __init__(self, call: ClientCall, future: "asyncio.Future[Any]", bytes_out: int,
                 deadline: Optional[float]) -> None:
        self.call = call
        self.future = future
        self.bytes_out = bytes_out
        self.sent = time.perf_counter()  # when the request was queued whole
        self.deadline = deadline  # time.perf_counter() by which the reply must have come (None: no limit)
        self.abandoned = False


#: An interceptor hook, or the chain's: called with a call as it starts or once it ended.
Hook = Callable[[ClientCall], None]


class InFlight:
    """The table of calls awaiting replies, and the one place their ends are recorded: ``ended`` hears
    every call's end, ``started`` (None: nobody listens) every call's start from the client."""

    def __init__(self, epoch: float, ended: Hook, on_timeout: Callable[[int], None],
                 started: Optional[Hook] = None) -> None:
        self._epoch = epoch
        self._ended = ended
        self.started = started
        self._on_timeout = on_timeout
        #: The calls awaiting replies by seqid (read only: ``add`` and ``take`` change it).
        self.waiting: Dict[int, Waiting] = {}
        self._waiting = self.waiting
        self._seqid = 0
        #: The connection's event loop (the client sets it as the connection opens: asking asyncio for the
        #: running loop costs a system call, getpid, per call)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = 0.0  # the deadline the timer is armed for

    def __len__(self) -> int:
        return len(self._waiting)

    def next_seqid(self) -> int:
        """A seqid no call in flight holds (1..2**31-1, wrapping)."""
        seqid = self._seqid
        while True:
            seqid = seqid % 0x7FFFFFFF + 1
            if seqid not in self._waiting:
                self._seqid = seqid
                return seqid

    def add(self, call: ClientCall, bytes_out: int, timeout: Optional[float]) -> "asyncio.Future[Any]":
        """Registers a call whose request is queued whole: it now waits for its reply. ``on_timeout(seqid)``
        runs ``timeout`` seconds after the call started unless its reply came (or its caller cancelled it) first."""
        loop = self.loop if self.loop is not None else asyncio.get_running_loop()
        deadline = None if timeout is None else call.started + timeout
        waiting = Waiting(call, loop.create_future(), bytes_out, deadline)
        self._waiting[call.seqid] = waiting
        if deadline is not None and (self._timer is None or deadline < self._timer_at):
            self._arm(loop, deadline)
        return waiting.future

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = loop.call_later(deadline - time.perf_counter(), self._deadline_passed)

    def _deadline_passed(self) -> None:
        """The timer fired: the earliest call past its deadline times out, else the timer is armed anew."""
        self._timer = None
        earliest: Optional[Waiting] = None
        for waiting in self._waiting.values():
            if waiting.deadline is None or waiting.abandoned or waiting.future.cancelled():  # cancelled: its
                continue  # caller has not resumed yet (its abandon() is on its way), its deadline is over
            if earliest is None or waiting.deadline < earliest.deadline:  # type: ignore[operator]
                earliest = waiting
        if earliest is None:
            return
        if earliest.deadline <= time.perf_counter():  # type: ignore[operator]
            self._on_timeout(earliest.call.seqid)
        else:
            self._arm(asyncio.get_running_loop(), earliest.deadline)  # type: ignore[arg-type]

    def written(self, call: ClientCall, bytes_out: int) -> None:
        """A oneway call (or a goodbye whose Farewell is not read) is queued whole: it is over."""
        duration = time.perf_counter() - call.started
        self._end(call, Record(call.phase, call.method, call.started - self._epoch, duration, bytes_out, 0, duration),
                  Outcome.OK)

    def get(self, seqid: int) -> Optional[Waiting]:
        return self._waiting.get(seqid)

    def take(self, seqid: int) -> Waiting:
        """Removes a call whose reply is here; a call cancelled meanwhile is recorded as such."""
        waiting = self._waiting.pop(seqid)
        if waiting.future.cancelled() and not waiting.abandoned:
            self._abandon(waiting)
        return waiting

    def answered(self, seqid: int, arrived: float, bytes_in: int, result: Any, error: Optional[BaseException],
                 server_us: Optional[int], pipelined: bool = False) -> None:
        """The reply of the call ``seqid`` (not cancelled) is decoded: the call is removed, recorded
        (``pipelined``: a hello answered after the calls written behind it) and handed to its caller."""
        waiting = self._waiting.pop(seqid)
        call, end = waiting.call, time.perf_counter()
        sent, start = waiting.sent, call.started
        arrived = max(arrived, sent)
        call.ended = end  # what ``_end`` does, on the way of every reply
        call.record = _record(Record, (call.phase, call.method, start - self._epoch, end - start, waiting.bytes_out,
                                       bytes_in, sent - start, arrived - sent, end - arrived, server_us,
                                       None if error is None else repr(error), pipelined))
        call.outcome, call.result, call.error = Outcome.OK if error is None else outcome_of(error), result, error
        self._ended(call)
        if waiting.future.done():
            return
        if error is None:
            waiting.future.set_result(result)
        else:
            waiting.future.set_exception(error)

    def abandon(self, seqid: int) -> None:
        """The caller cancelled the call: its reply, when it comes, is dropped."""
        waiting = self._waiting.get(seqid)
        if waiting is not None and not waiting.abandoned:
            self._abandon(waiting)

    def failed(self, call: ClientCall, error: BaseException) -> None:
        """A call that ended without a reply (refused before writing, or failed with the connection)."""
        start = call.started
        self._end(call, Record(call.phase, call.method, start - self._epoch, time.perf_counter() - start,
                               error=repr(error)), Outcome.FAILED, error=error)

    def fail_all(self, error_for: Callable[[str], BaseException], culprit: Optional[ClientCall] = None) -> None:
        """Every call in flight fails with ``error_for(method)`` (the others than ``culprit`` are told
        which call broke the connection); the table is emptied."""
        waiting_calls = list(self._waiting.values())
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiting in waiting_calls:
            if waiting.abandoned:
                continue
            call = waiting.call
            error = error_for(call.method)
            if culprit is not None and call is not culprit:
                cause = error.__cause__
                error = type(error)(f"{error} (the connection broke on {culprit.method}, seqid {culprit.seqid})")
                error.__cause__ = cause
            if waiting.future.cancelled():
                self._abandon(waiting)
                continue
            self.failed(call, error)
            waiting.future.set_exception(error)

    def _abandon(self, waiting: Waiting) -> None:
        waiting.abandoned = True  # no longer timed (its deadline was its caller's)
        self.failed(waiting.call, asyncio.CancelledError(f"{waiting.call.method}: cancelled by its caller"))

    def _end(self, call: ClientCall, record: Record, outcome: Outcome, result: Any = None,
             error: Optional[BaseException] = None) -> None:
        call.ended = time.perf_counter()
        call.record, call.outcome, call.result, call.error = record, outcome, result, error
        self._ended(call)
