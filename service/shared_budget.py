"""The decoded-size budget of a service with worker processes (``serve --workers``): one
``max_decoded_bytes`` and one share per client host for all workers together, not one per worker.

``DecodedArea`` is made by the supervisor before it forks: shared memory with a slot per worker, in
which each worker writes only its own holdings (its total, and what each client host's requests hold,
by a 16-byte hash of the host), and reads every slot to decide. A reservation is decided under the
worker's thread lock and a POSIX record lock on the area's file (``lockf``: between processes, and
released by the kernel if a worker dies holding it), so two workers cannot both take the last room.
When a worker dies, the supervisor clears its slot (``retire``): what its requests held is free again.
Only requests over ``UNPRICED_BYTES`` reserve, so the cost (a few microseconds) is not on the small
call's path.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

from .decoded_budget import DecodedBudget

__all__ = ["DecodedArea", "SharedDecodedBudget"]

#: Client hosts one worker can hold decoded memory for at once (each entry a request over 64 KiB in flight).
HOSTS_PER_WORKER = 1024
_TOTAL = struct.Struct("<q")
_ENTRY = struct.Struct("<16sq")  # host hash, bytes held
_EMPTY = bytes(16)
_SLOT_BYTES = _TOTAL.size + HOSTS_PER_WORKER * _ENTRY.size


def _key(host: str) -> bytes:
    return hashlib.blake2b(host.encode("utf-8", "replace"), digest_size=16).digest()


class DecodedArea:
    """Shared memory for ``slots`` workers' decoded-size holdings (made before the fork)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._file = tempfile.TemporaryFile(prefix="thrift-handshake-decoded-")  # for lockf only
        self._file.truncate(slots * _SLOT_BYTES)
        self._memory = mmap.mmap(self._file.fileno(), slots * _SLOT_BYTES)  # MAP_SHARED: seen by every worker

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Excludes the other processes (not this one's other threads)."""
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)

    def holdings(self, key: bytes) -> Tuple[int, int]:
        """(what every worker's requests hold, what the host with ``key`` holds), under ``locked``."""
        used = held = 0
        for slot in range(self.slots):
            base = slot * _SLOT_BYTES
            used += _TOTAL.unpack_from(self._memory, base)[0]
            entry = self._find(base, key)
            if entry is not None:
                held += _ENTRY.unpack_from(self._memory, entry)[1]
        return used, held

    def add(self, slot: int, key: bytes, amount: int) -> None:
        """Worker ``slot``'s requests of the host with ``key`` hold ``amount`` more, under ``locked``
        (``OverflowError`` when the slot has no room for another host)."""
        base = slot * _SLOT_BYTES
        total = _TOTAL.unpack_from(self._memory, base)[0] + amount
        if total <= 0:  # nothing held: the slot starts afresh (no stale hosts lengthen the look-ups)
            self._memory[base:base + _SLOT_BYTES] = bytes(_SLOT_BYTES)
            return
        entry = self._find(base, key)
        if entry is None:
            entry = self._free_entry(base, key)
        held = _ENTRY.unpack_from(self._memory, entry)[1] + amount
        _ENTRY.pack_into(self._memory, entry, key, max(held, 0))
        _TOTAL.pack_into(self._memory, base, total)

    def retire(self, slot: int) -> None:
        """Worker ``slot`` is gone: what its requests held is free."""
        with self.locked():
            base = slot * _SLOT_BYTES
            self._memory[base:base + _SLOT_BYTES] = bytes(_SLOT_BYTES)

    def _entries(self, base: int, key: bytes) -> Iterator[int]:
        """The offsets of ``key``'s probe sequence in the slot at ``base``."""
        start = int.from_bytes(key[:4], "little") % HOSTS_PER_WORKER
        for step in range(HOSTS_PER_WORKER):
            yield base + _TOTAL.size + ((start + step) % HOSTS_PER_WORKER) * _ENTRY.size

    def _find(self, base: int, key: bytes) -> Optional[int]:
        for entry in self._entries(base, key):
            found = self._memory[entry:entry + 16]
            if found == key:
                return entry
            if found == _EMPTY:
                return None
        return None

    def _free_entry(self, base: int, key: bytes) -> int:
        for entry in self._entries(base, key):
            if self._memory[entry:entry + 16] == _EMPTY or _ENTRY.unpack_from(self._memory, entry)[1] == 0:
                return entry
        raise OverflowError(f"more than {HOSTS_PER_WORKER} client hosts hold decoded memory in one worker")


class SharedDecodedBudget(DecodedBudget):
    """``DecodedBudget`` over a ``DecodedArea``: its total and per-host share hold for every worker."""

    def __init__(self, total: int, host_share: float, area: DecodedArea, slot: int) -> None:
        super().__init__(total, host_share)
        self._area = area
        self._slot = slot
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, self._area.locked():
            yield

    def _holdings(self, host: str) -> Tuple[int, int]:
        return self._area.holdings(_key(host))

    def _add(self, host: str, amount: int) -> None:
        self._area.add(self._slot, _key(host), amount)

    def reserve(self, host: str, price: int) -> Optional[str]:
        try:
            return super().reserve(host, price)
        except OverflowError as error:  # a worker serving over a thousand hosts' large requests at once
            return f"the request cannot be priced now: {error}"
