"""Work accepted now and finished later: the server side of submit() and get_result().

A bounded pool runs the work; at most ``workers + queue`` tickets are unfinished at once (more are
refused with Overloaded). Finished results are kept for ``result_ttl`` seconds and at most
``max_results`` of them (the oldest go first). A ticket is valid from any connection and any session.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
import uuid
from typing import Callable, Optional, OrderedDict, Tuple

from thrift_handshake_gen.ttypes import NotReady, Overloaded, Response, UnknownTicket

from .config import ServerLimits

__all__ = ["TicketBoard"]


class TicketBoard:
    """Tickets for submitted work and their results, with bounded time, count and concurrency."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._capacity = limits.submit_workers + limits.submit_queue
        self._pool = concurrent.futures.ThreadPoolExecutor(limits.submit_workers, thread_name_prefix="submit")
        self._lock = threading.Lock()
        # ticket -> (future, finished_at or None), in submission order
        self._tickets: OrderedDict[str, Tuple["concurrent.futures.Future[Response]", Optional[float]]] = (
            collections.OrderedDict())
        self._unfinished = 0

    def submit(self, work: Callable[[], Response]) -> str:
        """Queues ``work`` and returns its ticket; raises Overloaded when the queue is full."""
        with self._lock:
            self._expire()
            if self._unfinished >= self._capacity:
                raise Overloaded(message="the submit queue is full; try again later",
                                 queued=self._unfinished, capacity=self._capacity)
            ticket = uuid.uuid4().hex
            future = self._pool.submit(work)
            self._tickets[ticket] = (future, None)
            self._unfinished += 1
        future.add_done_callback(lambda _: self._finished(ticket))
        return ticket

    def result(self, ticket: str, wait: float) -> Response:
        """The ticket's result, waiting up to ``wait`` seconds (capped by ``max_wait``).

        Raises UnknownTicket (never issued, or expired) or NotReady (still running after the wait).
        """
        with self._lock:
            self._expire()
            entry = self._tickets.get(ticket)
        if entry is None:
            raise UnknownTicket(ticket=ticket)
        wait = min(max(wait, 0.0), self._limits.max_wait)
        try:
            return entry[0].result(timeout=wait)
        except concurrent.futures.TimeoutError:
            raise NotReady(ticket=ticket, message=f"still running after waiting {wait * 1000:.0f} ms") from None
        except concurrent.futures.CancelledError:
            raise NotReady(ticket=ticket, message="cancelled: the server is stopping") from None

    def close(self, timeout: float) -> None:
        """Cancels queued work and waits up to ``timeout`` seconds for running work."""
        with self._lock:
            futures = [future for future, _ in self._tickets.values()]
        self._pool.shutdown(wait=False, cancel_futures=True)
        concurrent.futures.wait(futures, timeout=timeout)

    def _finished(self, ticket: str) -> None:
        with self._lock:
            entry = self._tickets.get(ticket)
            if entry is not None:
                self._tickets[ticket] = (entry[0], time.monotonic())
            self._unfinished -= 1

    def _expire(self) -> None:
        """Drops results older than result_ttl, then the oldest finished ones past max_results."""
        now = time.monotonic()
        finished = [(t, at) for t, (_, at) in self._tickets.items() if at is not None]
        excess = len(finished) - self._limits.max_results
        for index, (ticket, finished_at) in enumerate(finished):
            if index < excess or now - finished_at > self._limits.result_ttl:
                del self._tickets[ticket]
