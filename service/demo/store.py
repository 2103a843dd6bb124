"""Where the fate of every acknowledged ticket is kept: what the ticket board needs from a store, and
the store a ``--ticket-store`` names.

A plain path is an SQLite file (``ledger.TicketLedger``: one host, processes that see each other's
pids); a ``redis://`` or ``rediss://`` URL is a Redis server that servers on several hosts share
(``redis_store.RedisTicketStore``). Either way a ticket is recorded as accepted before ``submit``
answers, its outcome is recorded before it counts as finished, a ticket whose owner is gone reads
``lost`` to whoever looks next, and a store that cannot be used is a ``LedgerError``, never an
empty store in disguise.
"""

from __future__ import annotations

import re
from typing import Optional, Protocol, Tuple

from thrift_handshake_gen.ttypes import Response

__all__ = ["TicketStore", "LedgerError", "Outcome", "open_store", "ACCEPTED", "DONE", "FAILED", "CANCELLED",
           "LOST", "LOST_MESSAGE"]

ACCEPTED, DONE, FAILED, CANCELLED, LOST = "accepted", "done", "failed", "cancelled", "lost"

#: (state, result or None, message)
Outcome = Tuple[str, Optional[Response], str]

#: What a ticket whose owner is gone without finishing it says.
LOST_MESSAGE = "the server stopped without finishing it (killed?); submit it again"

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class LedgerError(Exception):
    """The store cannot record or read: its file vanished or was replaced, its server is unreachable,
    or it failed (read-only, disk full...)."""


class TicketStore(Protocol):
    """What the ticket board needs from a store of tickets' fates (shared by every process that uses it).

    Each method raises ``LedgerError`` when the store cannot be used."""

    def accepted(self, ticket: str) -> None:
        """Records ``ticket`` as accepted by this process (its owner, while it lives)."""
        ...

    def finished(self, ticket: str, state: str, result: Optional[Response] = None, message: str = "") -> None:
        """Records ``ticket``'s outcome (DONE with its result, FAILED, CANCELLED)."""
        ...

    def outcome(self, ticket: str) -> Optional[Outcome]:
        """What became of ``ticket`` (LOST if its owner is gone without finishing it), or None if the
        store never heard of it or forgot it."""
        ...

    def close(self) -> None:
        """Releases the store; tickets this process still owns read LOST from then on."""
        ...


def open_store(location: str, ttl: float, create: bool = True) -> TicketStore:
    """The store ``location`` names: a ``redis://``/``rediss://`` URL, else an SQLite file path.

    ``ttl``: seconds a finished ticket is kept. ``create``: whether a missing SQLite file may be made
    (a Redis server's data is its own). ValueError if the store cannot be opened or reached."""
    scheme = _URL.match(location)
    if scheme is None:
        from .ledger import TicketLedger
        return TicketLedger(location, ttl, create=create)
    if scheme.group(1).lower() in ("redis", "rediss"):
        from .redis_store import RedisTicketStore
        return RedisTicketStore(location, ttl)
    raise ValueError(f"ticket store {scheme.group(0)}...: unknown kind of store (a file path for SQLite, "
                     f"or redis:// or rediss:// for Redis)")
