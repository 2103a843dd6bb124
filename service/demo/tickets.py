"""Work accepted now and finished later: the server side of submit() and get_result().

A bounded pool runs the work. At most ``submit_workers + submit_queue`` tickets are unfinished at once,
holding at most ``submit_queue_bytes`` of memory (as the caller estimates each request's); more are
refused with Overloaded. Finished results are kept for ``result_ttl`` seconds and at most
``max_results`` of them (the oldest go first). A ticket is valid from any connection and any session.
Every operation is O(1) in the number of stored results. With a ticket store (``store.TicketStore``:
an SQLite ``TicketLedger``, or Redis shared by several hosts) every ticket's fate is also kept there, so
a restarted server still answers for tickets of the process before it (their results, or why there is
none), and worker processes or servers sharing the store answer for each other's tickets (waiting for
them by polling the store). A ticket's outcome is in the store before it counts as finished: its
result is answered, even by the server that ran it, and ``drain()`` at a stop returns, only once the
outcome is written (or its write failed). A store that fails (read-only, deleted while serving,
unreachable) refuses new tickets with Overloaded and is logged once per kind of error, with a count.
The limits are per process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
import uuid
from typing import Callable, Dict, Optional, OrderedDict, Tuple

from thrift_handshake_gen.ttypes import InvalidRequest, NotReady, Overloaded, Response, UnknownTicket

from ..peerlog import RepeatedErrors
from .store import ACCEPTED, CANCELLED, DONE, FAILED, LOST, LedgerError, TicketStore
from .limits import DemoLimits

__all__ = ["TicketBoard"]

logger = logging.getLogger(__name__)

# Another process's ticket is waited for by polling the shared ledger (SQLite cannot notify): first
# after 1 ms, then ever less often, at least every 10 ms.
_FIRST_POLL, _LAST_POLL = 0.001, 0.01


class TicketBoard:
    """Tickets for submitted work and their results, with bounded time, count, bytes and concurrency."""

    def __init__(self, limits: DemoLimits, ledger: Optional[TicketStore] = None) -> None:
        self._limits = limits
        self._ledger = ledger
        self._capacity = limits.submit_workers + limits.submit_queue
        self._pool = concurrent.futures.ThreadPoolExecutor(limits.submit_workers, thread_name_prefix="submit")
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a ticket's outcome is recorded
        self._store_errors = RepeatedErrors(logger, "the ticket store failed")
        # ticket -> (future, bytes held, owner session)
        self._unfinished: Dict[str, Tuple["concurrent.futures.Future[Response]", int, str]] = {}
        self._per_owner: Dict[str, int] = {}  # unfinished tickets by owner (client host or identity)
        self._finished: OrderedDict[str, Tuple["concurrent.futures.Future[Response]", float]] = collections.OrderedDict()  # finish order
        self._unfinished_bytes = 0
        self._stopped = False

    def submit(self, work: Callable[[], Response], size: int, owner: str) -> str:
        """Queues ``work`` (holding about ``size`` bytes of memory until done) for ``owner``; returns its
        ticket.

        Raises InvalidRequest for a request that can never fit, Overloaded when the queue (or the
        owner's share of it) is full by count or bytes, or the server is stopping.
        """
        limits = self._limits
        if size > limits.submit_queue_bytes:
            raise InvalidRequest(message=f"the request takes about {size} bytes of memory; the submit queue holds "
                                         f"at most {limits.submit_queue_bytes} (submit_queue_bytes): it can never "
                                         f"be accepted",
                                 field="payload")
        with self._lock:
            self._expire()
            queued = len(self._unfinished)
            if self._stopped:
                raise Overloaded(message="the server is stopping", queued=queued, capacity=self._capacity)
            if queued >= self._capacity or self._unfinished_bytes + size > limits.submit_queue_bytes:
                raise Overloaded(message="the submit queue is full; try again later", queued=queued,
                                 capacity=self._capacity)
            mine = self._per_owner.get(owner, 0)
            if mine >= limits.submit_per_session:
                raise Overloaded(message=f"this client has {mine} unfinished submissions, its share "
                                         f"(submit_per_session); try again when some finish",
                                 queued=queued, capacity=self._capacity)
            ticket = uuid.uuid4().hex
            future: "concurrent.futures.Future[Response]" = concurrent.futures.Future()  # its place, held now
            self._unfinished[ticket] = (future, size, owner)
            self._per_owner[owner] = mine + 1
            self._unfinished_bytes += size
        if self._ledger is not None:
            try:  # in the store before the acknowledgement leaves; outside the lock, as a network store is slow
                self._ledger.accepted(ticket)
            except LedgerError as error:
                self._store_errors.report(error)
                with self._settled:
                    self._release(ticket)
                raise Overloaded(message="the ticket store cannot record this ticket now (the server's log "
                                         "says why); try again later", queued=queued,
                                 capacity=self._capacity) from None
        future.add_done_callback(lambda done: self._finish(ticket, done))
        try:
            self._pool.submit(_run, future, work)
        except RuntimeError:  # stop() shut the pool meanwhile: the ticket is recorded as cancelled
            future.cancel()
            raise Overloaded(message="the server is stopping", queued=queued, capacity=self._capacity) from None
        return ticket

    def unfinished(self) -> int:
        """Tickets submitted and not finished: waiting for a worker or running."""
        return len(self._unfinished)

    def unfinished_bytes(self) -> int:
        """The memory those tickets hold, as their callers estimated it (against ``submit_queue_bytes``)."""
        return self._unfinished_bytes

    def result(self, ticket: str, wait: float) -> Response:
        """The ticket's result, waiting up to ``wait`` seconds (capped by ``max_wait``).

        Raises UnknownTicket (never issued, or expired) or NotReady (still running after the wait).
        """
        wait = min(max(wait, 0.0), self._limits.max_wait)
        with self._settled:  # a ticket counts as finished once its outcome is recorded, not before
            self._expire()
            recorded = self._settled.wait_for(lambda: ticket not in self._unfinished, wait)
            if not recorded and self._unfinished[ticket][0].done():  # its outcome is being written: another
                # process may have read it from the store already, so this one waits for the write to end
                recorded = self._settled.wait_for(lambda: ticket not in self._unfinished, self._limits.max_wait)
            entry = self._finished.get(ticket) if recorded else self._unfinished[ticket]
        if entry is None:
            return self._from_ledger(ticket, wait)
        if not recorded:
            raise NotReady(ticket=ticket, message=f"still running after waiting {wait * 1000:.0f} ms")
        try:
            return entry[0].result(timeout=0)
        except concurrent.futures.CancelledError:
            raise NotReady(ticket=ticket, message="cancelled: the server stopped before it ran") from None
        except Exception as error:  # the work itself failed (e.g. aborted when the server stopped)
            raise NotReady(ticket=ticket, message=f"no result: {error}") from None

    def _from_ledger(self, ticket: str, wait: float) -> Response:
        """A ticket this process does not hold (an earlier process's, or another worker's): what the
        ledger says became of it, waiting up to ``wait`` seconds while it is still being worked on."""
        deadline = time.monotonic() + wait
        pause = _FIRST_POLL
        while True:
            try:
                outcome = None if self._ledger is None else self._ledger.outcome(ticket)
            except LedgerError as error:
                self._store_errors.report(error)
                raise NotReady(ticket=ticket, message="the ticket store cannot be read now (the server's log "
                                                      "says why)") from None
            if outcome is None:
                raise UnknownTicket(ticket=ticket)
            state, result, message = outcome
            left = deadline - time.monotonic()
            if state != ACCEPTED or left <= 0:
                break
            time.sleep(min(pause, left))
            pause = min(pause * 2, _LAST_POLL)
        if state == DONE:
            return result
        reason = {ACCEPTED: f"still running after waiting {wait * 1000:.0f} ms",
                  CANCELLED: "aborted by shutdown: the server stopped before it ran",
                  LOST: f"lost: {message}"}.get(state, f"no result: {message}")
        raise NotReady(ticket=ticket, message=reason)

    def stop(self) -> None:
        """Refuses new work and cancels work still queued (idempotent)."""
        with self._lock:
            self._stopped = True
            futures = [future for future, _, _ in self._unfinished.values()]
        self._pool.shutdown(wait=False, cancel_futures=True)
        for future in futures:
            future.cancel()  # the queued ones (a running one cannot be)

    def drain(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds until every ticket's outcome is recorded (after ``stop()``:
        the process may then exit without losing one); whether they all are. Reports pending store errors."""
        with self._settled:
            settled = self._settled.wait_for(lambda: not self._unfinished, timeout)
        self._store_errors.flush()
        return settled

    def close_store(self) -> None:
        """Closes the ticket store, once ``drain()`` said every outcome is recorded (a shared store then
        reads this process's tickets as theirs no more)."""
        if self._ledger is not None:
            self._ledger.close()

    def _finish(self, ticket: str, future: "concurrent.futures.Future[Response]") -> None:
        if self._ledger is not None:
            self._record(self._ledger, ticket, future)  # before the ticket counts as finished: drain() waits
        with self._settled:
            self._release(ticket)
            self._finished[ticket] = (future, time.monotonic())
            self._expire()

    def _release(self, ticket: str) -> None:
        """Gives an unfinished ticket's place in the queue back (holding the lock)."""
        _, size, owner = self._unfinished.pop(ticket)
        self._unfinished_bytes -= size
        left = self._per_owner.pop(owner) - 1
        if left:
            self._per_owner[owner] = left
        self._settled.notify_all()

    def _record(self, ledger: TicketStore, ticket: str, future: "concurrent.futures.Future[Response]") -> None:
        try:
            if future.cancelled():
                ledger.finished(ticket, CANCELLED)
            elif future.exception() is not None:
                ledger.finished(ticket, FAILED, message=str(future.exception()))
            else:
                ledger.finished(ticket, DONE, future.result())
        except LedgerError as error:
            self._store_errors.report(error)

    def _expire(self, now: Optional[float] = None) -> None:
        """Drops the oldest finished results while they are too old or too many."""
        now = time.monotonic() if now is None else now
        while self._finished:
            _, finished_at = next(iter(self._finished.values()))
            if now - finished_at <= self._limits.result_ttl and len(self._finished) <= self._limits.max_results:
                break
            self._finished.popitem(last=False)


def _run(future: "concurrent.futures.Future[Response]", work: Callable[[], Response]) -> None:
    """Runs a ticket's work on a pool thread, unless the ticket was cancelled while queued."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = work()
    except BaseException as error:  # the ticket's outcome, as the pool's own futures keep it
        future.set_exception(error)
    else:
        future.set_result(result)
