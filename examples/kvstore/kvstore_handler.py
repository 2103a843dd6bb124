"""The KeyValue service's handler: a thread-safe in-memory key-value store.

Served by the project's CLI (after ``./gen.sh``):

    thrift-handshake serve --handler kvstore_handler:KeyValueHandler --path examples/kvstore \
        --path examples/kvstore/gen-py

The runtime answers hello, ping, stats and goodbye (KeyValue extends session.SessionService) and refuses
every other method before hello; this class only implements the store's own methods. The server calls
it from a pool of threads (connections with a message are served concurrently, whichever thread takes
them), so every method takes the lock.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional

from kvstore import KeyValue
from kvstore.ttypes import Entry, KeyNotFound


def _now_ms() -> int:
    return int(time.time() * 1000)


class KeyValueHandler(KeyValue.Iface):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Dict[str, Entry] = {}

    def _live(self, key: str) -> Optional[Entry]:
        """The entry under key unless it has expired (an expired entry is dropped); call with the lock held."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= _now_ms():
            del self._entries[key]
            return None
        return entry

    def put(self, key: str, value: str, ttl_ms: int) -> Entry:
        with self._lock:
            previous = self._live(key)
            entry = Entry(key=key, value=value, version=(previous.version + 1) if previous else 1,
                          expires_at=_now_ms() + ttl_ms if ttl_ms and ttl_ms > 0 else None)
            self._entries[key] = entry
            return entry

    def get(self, key: str) -> Entry:
        with self._lock:
            entry = self._live(key)
        if entry is None:
            raise KeyNotFound(key=key)
        return entry

    def remove(self, key: str) -> Entry:
        with self._lock:
            entry = self._live(key)
            if entry is not None:
                del self._entries[key]
        if entry is None:
            raise KeyNotFound(key=key)
        return entry

    def scan(self, prefix: str, limit: int) -> List[Entry]:
        with self._lock:
            keys = sorted(k for k in list(self._entries) if k.startswith(prefix or "") and self._live(k))
            if limit and limit > 0:
                keys = keys[:limit]
            return [self._entries[k] for k in keys]

    def versions(self) -> Dict[str, int]:
        with self._lock:
            return {k: self._entries[k].version for k in list(self._entries) if self._live(k)}

    def touch(self, key: str, ttl_ms: int) -> None:
        with self._lock:
            entry = self._live(key)
            if entry is not None and entry.expires_at is not None and ttl_ms and ttl_ms > 0:
                self._entries[key] = Entry(key=entry.key, value=entry.value, version=entry.version,
                                           expires_at=entry.expires_at + ttl_ms)
