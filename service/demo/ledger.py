"""The fate of every acknowledged ticket, on disk (SQLite), so that a restart can still answer for it:
the default ``store.TicketStore``, for the processes of one host.

A ticket is recorded as accepted before submit() answers, and its outcome (done with its result,
failed, or cancelled by a stop) when it has one. Each ticket records the process that accepted it,
so worker processes (and servers) can share one ledger: a ticket still "accepted" by a process that no
longer exists (SIGKILL, a crashed worker) is reported lost, never silently forgotten, by whoever opens
the ledger or looks the ticket up next, while the tickets of live processes are left alone. A process
is its pid and its start time (and the boot): a reused pid is not the owner. Processes sharing a
ledger must see each other's pids (one host, one pid namespace). Rows older than the result TTL are
dropped.

The file is the one it was when opened: one deleted or replaced while serving is an error
(``LedgerError``) on every later use, never a fresh empty store; ``create=False`` (a worker joining a
running service) refuses to make a new one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from typing import Dict, Iterator, Optional, Tuple

from thrift.TSerialization import deserialize, serialize

from thrift_handshake_gen.ttypes import Response

from .store import ACCEPTED, CANCELLED, DONE, FAILED, LOST, LOST_MESSAGE, LedgerError, Outcome

__all__ = ["TicketLedger", "LedgerError", "Outcome", "ACCEPTED", "DONE", "FAILED", "CANCELLED", "LOST"]

logger = logging.getLogger(__name__)

#: How long opening a ledger waits for other processes opening the same file.
OPEN_TIMEOUT = 10.0
#: How often outcomes the file could not take (locked too long, disk full) are written again.
RETRY_MISSED_EVERY = 1.0


class TicketLedger:
    """Tickets and their outcomes in one SQLite file (WAL: a killed process loses nothing committed).

    ``create``: whether a missing file may be created (False: ValueError, the store is gone)."""

    def __init__(self, path: str, ttl: float, create: bool = True) -> None:
        self._path = path
        self._ttl = ttl
        self._lock = threading.Lock()
        self._missed: Dict[str, Tuple[str, Optional[bytes], str]] = {}  # ticket -> outcome not written yet
        self._retrying: Optional[threading.Thread] = None
        self._closed = threading.Event()
        if not create and not os.path.exists(path):
            raise ValueError(f"ticket store {path!r} is gone (deleted while the service ran?): refusing to start "
                             f"an empty one, which would forget every ticket acknowledged before")
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            try:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._identity = _identity(path)
                self._prepare()
                break
            except sqlite3.OperationalError as error:
                # Processes opening one new file at once (``serve --workers``): switching it to WAL and
                # creating the table take locks that SQLite refuses at once rather than wait for.
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise ValueError(f"ticket store {path!r}: {error}") from None
                self._db.close()
                time.sleep(0.01)
            except (sqlite3.Error, OSError) as error:
                raise ValueError(f"ticket store {path!r}: {error}") from None

    def _prepare(self) -> None:
        """WAL, the table, and the tickets of processes gone without finishing them marked lost."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS tickets (ticket TEXT PRIMARY KEY, state TEXT NOT NULL, "
                         "result BLOB, message TEXT NOT NULL DEFAULT '', updated REAL NOT NULL, "
                         "owner INTEGER NOT NULL DEFAULT 0, owner_id TEXT NOT NULL DEFAULT '')")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tickets)")}
        for column, kind in (("owner", "INTEGER NOT NULL DEFAULT 0"), ("owner_id", "TEXT NOT NULL DEFAULT ''")):
            if column not in columns:  # an older file
                try:
                    self._db.execute(f"ALTER TABLE tickets ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as error:  # another process added it meanwhile
                    if "duplicate column" not in str(error):
                        raise
        self._db.execute("CREATE INDEX IF NOT EXISTS tickets_updated ON tickets (updated)")
        owners = list(self._db.execute("SELECT DISTINCT owner, owner_id FROM tickets WHERE state = ?", (ACCEPTED,)))
        for owner, owner_id in owners:
            if not _alive(owner, owner_id):
                self._mark_lost(owner, owner_id)

    def _mark_lost(self, owner: int, owner_id: str) -> None:
        self._db.execute("UPDATE tickets SET state = ?, message = ?, updated = ? "
                         "WHERE state = ? AND owner = ? AND owner_id = ?",
                         (LOST, LOST_MESSAGE, time.time(), ACCEPTED, owner, owner_id))

    def accepted(self, ticket: str) -> None:
        """Records ``ticket`` as accepted by this process; LedgerError if it cannot."""
        with self._using():
            self._db.execute("INSERT INTO tickets (ticket, state, updated, owner, owner_id) VALUES (?, ?, ?, ?, ?)",
                             (ticket, ACCEPTED, time.time(), os.getpid(), _owner_id(os.getpid())))

    def finished(self, ticket: str, state: str, result: Optional[Response] = None, message: str = "") -> None:
        """Records ``ticket``'s outcome. One the file cannot take now (LedgerError) is kept and written
        again every RETRY_MISSED_EVERY seconds until it is, or at ``close()``: else the ticket would read
        "still running" elsewhere while this process lives, and "lost" after."""
        with self._lock:
            self._missed[ticket] = (state, None if result is None else serialize(result), message)
        try:
            self._write_missed()
        except LedgerError:
            self._retry_missed()
            raise

    def _write_missed(self) -> None:
        with self._using():
            now = time.time()
            for ticket, (state, blob, message) in list(self._missed.items()):
                self._db.execute("UPDATE tickets SET state = ?, result = ?, message = ?, updated = ? "
                                 "WHERE ticket = ?", (state, blob, message, now, ticket))
                del self._missed[ticket]
            self._db.execute("DELETE FROM tickets WHERE updated < ? AND state != ?", (now - self._ttl, ACCEPTED))

    def _retry_missed(self) -> None:
        with self._lock:
            if self._retrying is not None or self._closed.is_set():
                return
            self._retrying = threading.Thread(target=self._retry_until_written, name="ticket-store-retry",
                                              daemon=True)
        self._retrying.start()

    def _retry_until_written(self) -> None:
        while not self._closed.wait(RETRY_MISSED_EVERY):
            with self._lock:
                count = len(self._missed)
            try:
                self._write_missed()
            except LedgerError:
                continue
            logger.info("ticket store %r: recorded %d outcome(s) it had missed", self._path, count)
            with self._lock:
                if not self._missed:
                    self._retrying = None
                    return

    def outcome(self, ticket: str) -> Optional[Outcome]:
        """What became of ``ticket``, or None if this ledger never heard of it (or forgot it); a ticket
        whose process is gone without finishing it is marked lost here. LedgerError if it cannot read."""
        with self._using():
            row = self._db.execute("SELECT state, result, message, owner, owner_id FROM tickets WHERE ticket = ?",
                                   (ticket,)).fetchone()
            if row is not None and row[0] == ACCEPTED and not _alive(row[3], row[4]):
                self._mark_lost(row[3], row[4])  # its server was killed: whoever looks first says so
                row = (LOST, None, LOST_MESSAGE)
        if row is None:
            return None
        state, blob, message = row[:3]
        return state, None if blob is None else deserialize(Response(), blob), message

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """Holds the lock while the file is still the one opened; SQLite's errors become LedgerError."""
        with self._lock:
            try:
                now = _identity(self._path)
            except OSError:
                now = None
            if now != self._identity:
                raise LedgerError(f"ticket store {self._path!r} was deleted or replaced while serving: tickets "
                                  f"can no longer be recorded (restore it, or restart the service)")
            try:
                yield
            except sqlite3.Error as error:
                raise LedgerError(f"ticket store {self._path!r}: {error}") from None

    def close(self) -> None:
        """Writes the outcomes still missed (tickets whose outcome cannot be written read lost), then
        releases the file."""
        self._closed.set()
        retrying = self._retrying
        if retrying is not None:
            retrying.join()
        if self._missed:
            try:
                self._write_missed()
            except LedgerError as error:
                logger.error("%s; %d finished ticket(s) could not be recorded and will read lost", error,
                             len(self._missed))
        with self._lock:
            self._db.close()


def _identity(path: str) -> Tuple[int, int]:
    """Which file ``path`` is (device and inode): one deleted and made again is another."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _start_time(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


@functools.lru_cache(maxsize=1)
def _boot() -> str:
    """This boot of this host ("" without /proc): a process of an earlier boot is gone."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return boot.read().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=4)  # by pid: a forked worker has its own
def _owner_id(pid: int) -> str:
    """Which process ``pid`` is, beyond its number: the boot and its start time ("" if unknown)."""
    boot, start = _boot(), _start_time(pid)
    return f"{boot}:{start}" if boot and start else ""


def _alive(pid: int, owner_id: str = "") -> bool:
    """Whether the process that owns tickets as (``pid``, ``owner_id``) still runs: not if the host
    rebooted since, nor if its pid now names a process started at another time (a restart that got the
    same pid, as pid 1 in a container does)."""
    if owner_id:
        boot, _, start = owner_id.rpartition(":")
        return boot == _boot() and _start_time(pid) == start
    # a row from before owners had an id: by pid alone (this process, new, cannot own tickets yet)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
