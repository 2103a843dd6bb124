"""A bounded, thread-safe pool of connected clients, so that the threads of an application share
sessions instead of opening one per call.

    pool = ClientPool(Endpoints.parse("10.0.0.1:9090,10.0.0.2:9090"), service=HandshakeService,
                      limits=PoolOptions(max_size=4))
    with pool.client() as client:          # this thread's alone until the block ends; hello said
        client.process(request)
    pool.call("process", request)          # the same for one call
    pool.close()                           # goodbye on every idle connection; waits for the borrowed ones

Every pooled connection is a ``Client`` that has connected and said hello. When all ``max_size`` are
borrowed, a borrower waits up to ``PoolOptions.borrow_timeout``, then gets ``PoolTimeout``. On borrow,
a connection the server ended while it was idle (it said why, or closed it) is replaced without a
word, one older than ``max_lifetime`` is closed (goodbye) and replaced, and one idle longer than
``check_after_idle`` is pinged first and replaced if the ping fails (broken, closed by the server,
draining). A client given back BROKEN or CLOSED is discarded, never lent again. A replacement connects
like any new client: with ``Endpoints``, to another server when one is down, full or draining.
The wait is a ``pool`` record in the borrowed client's timeline; ``stats()`` counts sizes and waits.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Deque, Dict, Iterator, Optional, Tuple, Union

from thrift_handshake_gen.session import SessionService

from .client import Client
from .client_core import idle_limit
from .config import DEFAULT_HOST, DEFAULT_PORT, ONE_DAY, ClientOptions
from .endpoints import Endpoints, format_address
from .errors import ConnectError, ConnectionBroken, PhaseError, PoolTimeout, ThriftHandshakeError
from .states import ClientPhase
from .timing import Record

__all__ = ["ClientPool", "PoolOptions", "PoolStats"]

logger = logging.getLogger(__name__)

#: Phases a given-back client may be lent again in (a pipelined hello's answer is read by its next call).
_REUSABLE = (ClientPhase.READY, ClientPhase.HELLO_PENDING)
_DEFAULT: Any = object()  # borrow(timeout=...) not given: the pool's borrow_timeout


@dataclass(frozen=True)
class PoolOptions:
    """How many connections a ClientPool holds and how it keeps them fresh (seconds; None: no limit).

    max_size: connections at most, borrowed and idle together (the server sees no more than this).
    borrow_timeout: how long a borrower waits when all are borrowed, before PoolTimeout (0: not at all).
    check_after_idle: a connection idle longer than this is pinged before it is lent (0: always); one
    idle for half the server's idle timeout (told in hello) is pinged in any case, keeping its session.
    max_lifetime: a connection older than this is closed and replaced when it is next borrowed, so
    that load spreads to servers added since.
    close_grace: how long ``close()`` waits for borrowed connections to come back.
    """

    max_size: int = 8
    borrow_timeout: Optional[float] = 5.0
    check_after_idle: Optional[float] = 30.0
    max_lifetime: Optional[float] = 600.0
    close_grace: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int) or not 1 <= self.max_size <= 10_000:
            raise ValueError(f"PoolOptions.max_size must be an integer within 1..10000, not {self.max_size!r}")
        for name in ("borrow_timeout", "check_after_idle", "max_lifetime", "close_grace"):
            value = getattr(self, name)
            if (value is None and name != "close_grace") or (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= ONE_DAY):
                continue
            raise ValueError(f"PoolOptions.{name} must be within [0, {ONE_DAY:g}] seconds"
                             f"{'' if name == 'close_grace' else ' or None'}, not {value!r}")


@dataclass(frozen=True)
class PoolStats:
    """A ClientPool now and since it was made.

    size: connections open or opening (idle + in_use; in_use counts those being checked or opened for
    a borrower); waiting: borrowers waiting for one now.
    created: connections opened; replaced: closed on borrow (too old, or failed the idle ping) and
    opened again; discarded: given back broken or closed. borrows: connections lent; waited: borrows
    that had to wait for one; wait_seconds / wait_max: their total and longest wait; timeouts:
    borrowers that gave up (PoolTimeout).
    """

    max_size: int
    size: int
    idle: int
    in_use: int
    waiting: int
    created: int
    replaced: int
    discarded: int
    borrows: int
    waited: int
    wait_seconds: float
    wait_max: float
    timeouts: int


class _Pooled:
    """A pooled client and when it was opened (``time.monotonic()``)."""

    __slots__ = ("client", "opened")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.opened = time.monotonic()


class _Waiter:
    """A borrower in the queue; ``grant`` hands it a connection, or a free place (None) to open one in."""

    __slots__ = ("wake", "granted", "pooled")

    def __init__(self, lock: threading.Lock) -> None:
        self.wake = threading.Condition(lock)
        self.granted = False
        self.pooled: Optional[_Pooled] = None

    def grant(self, pooled: Optional[_Pooled]) -> None:
        """With the pool's lock held."""
        self.granted, self.pooled = True, pooled
        self.wake.notify()


def _closed_error() -> PhaseError:
    return PhaseError("borrow a connection", "CLOSED", "the pool is closed")


class ClientPool:
    """Up to ``limits.max_size`` connected clients to ``host``/``port`` (or ``Endpoints``), lent to one
    thread at a time; the arguments other than ``limits`` are ``Client``'s. Thread-safe."""

    def __init__(
        self,
        host: Union[str, Endpoints] = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        options: Optional[ClientOptions] = None,
        service: ModuleType = SessionService,
        limits: Optional[PoolOptions] = None,
    ) -> None:
        if limits is not None and not isinstance(limits, PoolOptions):
            raise TypeError(f"limits must be a PoolOptions, not {limits!r}")
        self.limits = limits or PoolOptions()
        self._client_args: Tuple[Any, ...] = (host, port, options, service)
        self._retry = Client(*self._client_args).options.retry  # refuses bad arguments now, not at a borrow
        self._can_ping = hasattr(service.Iface, "ping")
        self._lock = threading.Lock()
        self._emptied = threading.Condition(self._lock)  # notified as places are freed (close() waits)
        self._idle: Deque[_Pooled] = collections.deque()  # the most recently given back last (lent first)
        self._lent: Dict[int, _Pooled] = {}  # id(client) -> its entry
        self._size = 0  # idle + lent + being checked or opened
        self._waiters: Deque[_Waiter] = collections.deque()  # served first come, first served
        self._closed = False
        self._created = self._replaced = self._discarded = 0
        self._borrows = self._waited = self._timeouts = 0
        self._wait_seconds = self._wait_max = 0.0

    def __repr__(self) -> str:
        host, port = self._client_args[:2]
        where = host if isinstance(host, Endpoints) else format_address(host, port)
        return f"ClientPool({where}, {self._size}/{self.limits.max_size} open{', closed' if self._closed else ''})"

    # -- lending ------------------------------------------------------------------------------

    def borrow(self, timeout: Optional[float] = _DEFAULT) -> Client:
        """A connected client for the caller alone until ``give_back()``.

        ``timeout`` (default ``limits.borrow_timeout``) bounds the wait for a free connection when all
        are borrowed (PoolTimeout after it), not the connect and hello of a new one (the client's own
        timeouts). Raises what ``Client.connect()`` raises when a new connection cannot be opened,
        and PhaseError once the pool is closed (also when it closes while this borrow connects).
        """
        started = time.perf_counter()
        pooled, waited = self._take(self.limits.borrow_timeout if timeout is _DEFAULT else timeout, started)
        try:
            if pooled is not None:
                reason = self._why_replace(pooled)
                if reason is None:
                    pooled.client.timeline.add(Record("pool", "wait", started - pooled.client.epoch, waited))
                    reason = self._check(pooled)
                if reason is not None:
                    self._replace(pooled, reason)
                    pooled = None
            if pooled is None:
                pooled = self._open(started, waited)
            with self._lock:
                if not self._closed:
                    self._lent[id(pooled.client)] = pooled
                    return pooled.client
            raise _closed_error()  # close() came while this one connected or was checked: not lent
        except BaseException:
            if pooled is not None:
                pooled.client.close()
            self._release_slot()
            raise

    def give_back(self, client: Client) -> None:
        """Returns a borrowed client: lent again if it is still usable, else closed and its place freed."""
        with self._lock:
            pooled = self._lent.pop(id(client), None)
            if pooled is None or pooled.client is not client:
                raise ValueError(f"{client!r} is not borrowed from this pool (or was given back already)")
            if not self._closed and client.phase in _REUSABLE:
                waiter = self._next_waiter()
                if waiter is None:
                    self._idle.append(pooled)
                else:
                    waiter.grant(pooled)
                return
            if not self._closed:
                self._discarded += 1
        if client.phase not in _REUSABLE:
            logger.info("discarding a pooled connection given back %s", client.phase.value)
        try:
            client.close()  # says goodbye when the pool is closing, else only drops the socket
        finally:
            self._release_slot()

    @contextlib.contextmanager
    def client(self, timeout: Optional[float] = _DEFAULT) -> Iterator[Client]:
        """``borrow()`` for a ``with`` block; given back at its end, also when it raises."""
        client = self.borrow(timeout)
        try:
            yield client
        finally:
            self.give_back(client)

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """``Client.call(method, ...)`` on a borrowed client (the client's RetryPolicy applies). For a
        method the policy marks idempotent, a borrow whose new connection was refused or broke before
        any call (down, full, draining: e.g. behind a balancer) is tried again, as a call would be."""
        client = self._borrow_for(method)
        try:
            return client.call(method, *args, **kwargs)
        finally:
            self.give_back(client)

    def _borrow_for(self, method: str) -> Client:
        """A borrowed client for a call of ``method`` (borrowed again as ``call`` says)."""
        policy = self._retry
        if policy is None or method not in policy.idempotent:
            return self.borrow()
        for delay in policy.delays():
            try:
                return self.borrow()
            except (ConnectError, ConnectionBroken) as error:  # no call was sent
                logger.info("%s: no connection (%s); borrowing again in %.2fs", method, error, delay)
            time.sleep(delay)
        return self.borrow()

    # -- observing and closing ----------------------------------------------------------------

    def stats(self) -> PoolStats:
        """The pool's sizes now and its counters since it was made."""
        with self._lock:
            return PoolStats(self.limits.max_size, self._size, len(self._idle), self._size - len(self._idle),
                             len(self._waiters), self._created, self._replaced, self._discarded, self._borrows,
                             self._waited, self._wait_seconds, self._wait_max, self._timeouts)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, grace: Optional[float] = None) -> int:
        """Stops lending (waiting borrowers get PhaseError), says goodbye on every idle connection, then
        waits up to ``grace`` (default ``limits.close_grace``) for the borrowed ones, each closed as it
        comes back. Returns how many are still borrowed after it; idempotent."""
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            for waiter in self._waiters:
                waiter.wake.notify()
        for pooled in idle:
            try:
                pooled.client.close()
            finally:
                self._release_slot()
        deadline = time.monotonic() + (self.limits.close_grace if grace is None else grace)
        with self._lock:
            while self._size and self._emptied.wait(max(deadline - time.monotonic(), 0.0)):
                pass
            left = self._size
        if left:
            logger.warning("pool closed with %d connection(s) still borrowed: each closes when given back", left)
        return left

    def __enter__(self) -> "ClientPool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _take(self, timeout: Optional[float], started: float) -> Tuple[Optional[_Pooled], float]:
        """An idle connection, or None with a place reserved for a new one, and the seconds it waited.
        Borrowers who find none wait in a queue and are served in turn: a thread that gives a connection
        back and borrows again at once does not pass the ones already waiting."""
        with self._lock:
            if self._closed:
                raise _closed_error()
            if not self._waiters:
                if self._idle:
                    self._borrows += 1
                    return self._idle.pop(), 0.0
                if self._size < self.limits.max_size:
                    self._size += 1
                    self._borrows += 1
                    return None, 0.0
            if timeout is not None and timeout <= 0:
                self._timeouts += 1
                raise self._timeout_error(timeout, 0.0, len(self._waiters))
            waiter = _Waiter(self._lock)
            self._waiters.append(waiter)
            self._waited += 1
            deadline = None if timeout is None else started + timeout
            waited = 0.0
            try:
                while not waiter.granted:
                    if self._closed:
                        raise _closed_error()
                    remaining = None if deadline is None else deadline - time.perf_counter()
                    if remaining is not None and remaining <= 0:
                        self._timeouts += 1
                        raise self._timeout_error(timeout, time.perf_counter() - started, len(self._waiters) - 1)
                    waiter.wake.wait(remaining)
            finally:
                waited = time.perf_counter() - started
                self._wait_seconds += waited
                self._wait_max = max(self._wait_max, waited)
                if not waiter.granted:
                    self._waiters.remove(waiter)
            self._borrows += 1
            return waiter.pooled, waited

    def _timeout_error(self, timeout: Optional[float], waited: float, others: int) -> PoolTimeout:
        return PoolTimeout(f"no pooled connection came free within {timeout:g} s (all {self.limits.max_size} "
                           f"borrowed, {others} other(s) waiting)", waited)

    def _why_replace(self, pooled: _Pooled) -> Optional[str]:
        """Why an idle connection must not be lent as it is (None: it may, after ``_check``)."""
        phase = pooled.client.phase
        if phase not in _REUSABLE:
            return f"it is {phase.value}"
        if pooled.client.ended_by_server():  # e.g. drained: told why and closed while it was idle here
            return "the server ended its session while it was idle"
        age = time.monotonic() - pooled.opened
        lifetime = self.limits.max_lifetime
        if lifetime is not None and age > lifetime:
            return f"it is {age:.1f} s old (max_lifetime {lifetime:g} s)"
        return None

    def _check(self, pooled: _Pooled) -> Optional[str]:
        """Pings a connection idle past ``check_after_idle`` or half the server's idle timeout (the ping
        keeps its session); why it failed, or None when it answered or needed no check."""
        client = pooled.client
        idle = client.idle_seconds
        hello = client.server_hello if client.phase is ClientPhase.READY else None  # pipelined: not read yet
        server_limit = idle_limit(hello) if hello is not None else None
        limits = [x for x in (self.limits.check_after_idle, server_limit and server_limit / 2) if x is not None]
        if not limits or idle <= min(limits):
            return None
        if not self._can_ping:
            return f"it was idle {idle:.1f} s and its service has no ping to check it"
        try:
            client.call("ping")
        except ThriftHandshakeError as error:
            return f"it was idle {idle:.1f} s and ping failed: {error}"
        return None

    def _replace(self, pooled: _Pooled, reason: str) -> None:
        """Closes ``pooled`` for a new connection that takes its place."""
        client = pooled.client
        logger.info("replacing a pooled connection to %s: %s", format_address(str(client.host), client.port), reason)
        with self._lock:
            self._replaced += 1
        client.close()

    def _open(self, started: float, waited: float) -> _Pooled:
        """A new connected client in a reserved place (the place is the caller's to free on failure)."""
        client = Client(*self._client_args)
        client.timeline.add(Record("pool", "wait", started - client.epoch, waited))
        try:
            client.connect()
        except BaseException:
            client.close()
            raise
        with self._lock:
            self._created += 1
        return _Pooled(client)

    def _release_slot(self) -> None:
        """Frees a place: the first waiter takes it (to open a connection there), else it stays free."""
        with self._lock:
            waiter = None if self._closed else self._next_waiter()
            if waiter is None:
                self._size -= 1
                self._emptied.notify_all()
            else:
                waiter.grant(None)

    def _next_waiter(self) -> Optional["_Waiter"]:
        """The borrower that has waited longest, taken off the queue (None: nobody waits); lock held."""
        return self._waiters.popleft() if self._waiters else None
