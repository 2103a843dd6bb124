"""Tickets' fates in a Redis server, shared by demo servers on several hosts (``--ticket-store redis://...``).

Each ticket is a hash (state, result, message, owner). Its owner is a process (host, pid and a random
part), alive while its lease key exists: the process sets it with a TTL of ``lease`` seconds and renews
it every third of that, from a thread; a stop deletes it. A ticket still "accepted" whose owner's
lease has expired (the server was killed, its host died or lost the network for a whole lease) reads
``lost`` to whoever looks next, marked in the same atomic step (a Lua script) that reads it.

The store's own health is watched, never guessed: a server that cannot be reached, or does not answer
within ``ANSWER_TIMEOUT``, is a ``LedgerError`` on every use (a connection that breaks is retried once
on a new one, so a Redis restart costs no call), and a Redis server restarted empty (no persistence)
is noticed by a marker key that the lease's renewal finds changed: logged once, after which the
tickets acknowledged before are unknown, as they are. An outcome the store could not take when its work
ended is kept and written by the next renewal that works (or at a clean stop, before the lease goes), so
other hosts do not read a finished ticket "still running", then "lost".

Finished tickets expire after the result TTL, accepted ones after it plus ``ACCEPTED_FOR``; durability
is the Redis server's (its ``appendonly``/``save`` settings): an outcome counts as recorded once the
server has acknowledged it. One Redis server (or a primary), not a cluster: the lost-marking script
touches keys it finds in the ticket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, Iterator, Optional, Tuple, Type
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from thrift.TSerialization import deserialize, serialize

from thrift_handshake_gen.ttypes import Response

from ..peerlog import RepeatedErrors
from .store import ACCEPTED, LOST, LOST_MESSAGE, LedgerError, Outcome

__all__ = ["RedisTicketStore", "DEFAULT_LEASE", "ACCEPTED_FOR"]

logger = logging.getLogger(__name__)

#: Seconds an owner's lease lasts unless the URL says otherwise (``?lease=SECONDS``).
DEFAULT_LEASE = 10.0
#: An accepted ticket's key outlives its acceptance by the result TTL plus this (its work may queue).
ACCEPTED_FOR = 24 * 3600.0
#: Seconds to connect to Redis and to wait for one answer: an unreachable store fails calls this fast.
CONNECT_TIMEOUT, ANSWER_TIMEOUT = 2.0, 5.0
#: Keys start with this unless the URL says otherwise (``?prefix=...``).
DEFAULT_PREFIX = "thrift-handshake:tickets:"

# KEYS[1]: the ticket. ARGV: the lease keys' prefix, the lost message, now, the result TTL in ms.
_OUTCOME = """
local row = redis.call('HMGET', KEYS[1], 'state', 'result', 'message', 'owner')
if row[1] == 'accepted' and redis.call('EXISTS', ARGV[1] .. row[4]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'lost', 'message', ARGV[2], 'updated', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  row[1] = 'lost'
  row[3] = ARGV[2]
end
return {row[1], row[2], row[3]}
"""


class RedisTicketStore:
    """A ``store.TicketStore`` in the Redis server at ``url`` (``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` for TLS; ``?lease=SECONDS`` and ``?prefix=TEXT`` are this store's, the rest redis-py's).

    ``ttl``: seconds a finished ticket is kept. ValueError if the server cannot be reached now."""

    def __init__(self, url: str, ttl: float) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ValueError("a redis:// ticket store needs the redis package: pip install "
                             "'thrift-handshake[redis]'") from None
        self._redis_errors: Type[Exception] = redis.RedisError
        url, options = _own_options(url)
        self.where = _display(url)
        self._lease = options["lease"]
        self._prefix = options["prefix"]
        self._ttl_ms = max(1, int(ttl * 1000))
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._lease_key = f"{self._prefix}owner:{self._owner}"
        self._marker = f"{self._prefix}store"
        try:
            # Without timeouts a store that hangs (stopped, not gone) would hold its callers for ever. A
            # connection that breaks (Redis restarted, a failover) is retried once on a new one, at once;
            # a timeout is not retried (the call has waited long enough).
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            self._redis = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                               socket_timeout=ANSWER_TIMEOUT, retry=retry,
                                               retry_on_error=[redis.ConnectionError])
            self._outcome_script = self._redis.register_script(_OUTCOME)
            self._store_marker = self._renew()
        except (redis.RedisError, ValueError) as error:
            raise ValueError(f"ticket store {self.where}: {error}") from None
        self._missed: Dict[str, Dict[str, Any]] = {}  # ticket -> its outcome, not written yet
        self._missed_lock = threading.Lock()
        self._lease_errors = RepeatedErrors(logger, f"the ticket store's lease ({self.where}) was not renewed")
        self._stopping = threading.Event()
        self._closing = threading.Lock()
        self._heartbeat = threading.Thread(target=self._renew_until_closed, name="ticket-lease", daemon=True)
        self._heartbeat.start()

    def _renew(self) -> Optional[bytes]:
        """Renews this process's lease; the store's marker (made if missing), which changes only when the
        store lost its data."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._lease_key, b"1", px=int(self._lease * 1000))
        pipe.set(self._marker, uuid.uuid4().hex, nx=True)
        pipe.get(self._marker)
        return pipe.execute()[2]

    def _renew_until_closed(self) -> None:
        while not self._stopping.wait(self._lease / 3):
            try:
                marker = self._renew()
            except self._redis_errors as error:
                self._lease_errors.report(LedgerError(f"ticket store {self.where}: {error}"))
                continue
            if marker != self._store_marker:
                self._store_marker = marker
                logger.warning("ticket store %s lost its data (the Redis server restarted without persistence, "
                               "or was flushed): the tickets acknowledged before are unknown now", self.where)
            try:
                self._write_missed()
            except self._redis_errors as error:
                self._lease_errors.report(LedgerError(f"ticket store {self.where}: {error}"))

    def _ticket_key(self, ticket: str) -> str:
        return f"{self._prefix}ticket:{ticket}"

    def accepted(self, ticket: str) -> None:
        """Records ``ticket`` as accepted by this process (renewing its lease in the same step)."""
        key = self._ticket_key(ticket)
        with self._errors():
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._lease_key, b"1", px=int(self._lease * 1000))
            pipe.hset(key, mapping={"state": ACCEPTED, "owner": self._owner, "message": "", "result": b"",
                                    "updated": repr(time.time())})
            pipe.pexpire(key, self._ttl_ms + int(ACCEPTED_FOR * 1000))
            pipe.execute()

    def finished(self, ticket: str, state: str, result: Optional[Response] = None, message: str = "") -> None:
        """Records ``ticket``'s outcome; it expires after the result TTL. One the store cannot take now
        (LedgerError) is kept and written at the lease's next renewal that works, or at ``close()``."""
        outcome = {"state": state, "message": message, "result": b"" if result is None else serialize(result)}
        try:
            with self._errors():
                self._write_outcomes({ticket: outcome})
        except LedgerError:
            with self._missed_lock:
                self._missed[ticket] = outcome
            raise

    def _write_outcomes(self, outcomes: Dict[str, Dict[str, Any]]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for ticket, outcome in outcomes.items():
            key = self._ticket_key(ticket)
            pipe.hset(key, mapping={**outcome, "updated": repr(time.time())})
            pipe.pexpire(key, self._ttl_ms)
        pipe.execute()

    def _write_missed(self) -> None:
        """Writes the outcomes the store could not take when they came (raises the Redis client's error)."""
        with self._missed_lock:
            missed = dict(self._missed)
        if not missed:
            return
        self._write_outcomes(missed)
        with self._missed_lock:
            for ticket in missed:
                self._missed.pop(ticket, None)
        logger.info("ticket store %s: recorded %d outcome(s) it had missed", self.where, len(missed))

    def outcome(self, ticket: str) -> Optional[Outcome]:
        """What became of ``ticket`` (marked lost here if its owner's lease has expired), or None."""
        with self._errors():
            state, blob, message = self._outcome_script(
                keys=[self._ticket_key(ticket)],
                args=[f"{self._prefix}owner:", LOST_MESSAGE, repr(time.time()), self._ttl_ms])
        if state is None:
            return None
        result = deserialize(Response(), blob) if blob else None
        return state.decode(), result, (message or b"").decode()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The Redis client's errors as LedgerError naming the store (without its password)."""
        try:
            yield
        except self._redis_errors as error:
            raise LedgerError(f"ticket store {self.where}: {error}") from None

    def close(self) -> None:
        """Stops renewing the lease and gives it up: tickets still accepted by this process read lost.
        Idempotent."""
        with self._closing:
            if self._stopping.is_set():
                return
            self._stopping.set()
        self._heartbeat.join()
        try:
            self._write_missed()  # before the lease goes: else those tickets would read lost
        except self._redis_errors as error:
            logger.error("ticket store %s: %d finished ticket(s) could not be recorded (%s); they will read "
                         "lost", self.where, len(self._missed), error)
        try:
            self._redis.delete(self._lease_key)
        except self._redis_errors as error:  # it expires by itself within a lease
            logger.warning("ticket store %s: could not give up the lease (%s); it expires within %g s",
                           self.where, error, self._lease)
        self._lease_errors.flush()
        self._redis.close()


def _own_options(url: str) -> Tuple[str, Dict[str, Any]]:
    """The URL without this store's own query options, and those options (lease, prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: Dict[str, Any] = {"lease": DEFAULT_LEASE, "prefix": DEFAULT_PREFIX}
    rest = []
    for name, value in query:
        if name == "lease":
            try:
                options["lease"] = float(value)
            except ValueError:
                raise ValueError(f"ticket store: lease={value!r} is not a number of seconds") from None
            if not 0.1 <= options["lease"] <= 3600:
                raise ValueError(f"ticket store: lease={value} must be within 0.1..3600 seconds")
        elif name == "prefix":
            options["prefix"] = value
        else:
            rest.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def _display(url: str) -> str:
    """The URL as logs may show it: without user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))
