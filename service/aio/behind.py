"""What a pipelined connection wrote behind its two-way calls, for the server's "reconnect" answer.

The server serves one connection's messages in order and, once it answers a call "reconnect" (its max
connection age), closes without reading on: whatever was written behind that call never ran. The calls
awaiting replies learn it from the broken connection; one-way calls have no reply, so the ones written
while a two-way call was awaited are kept here until a later reply shows the server read them, and are
sent again on the new connection otherwise.
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Dict, List, Tuple

__all__ = ["WrittenBehind"]

OneWay = Tuple[str, Tuple[Any, ...]]


class WrittenBehind:
    """The order requests were written in on one connection, and the one-way calls not yet known read."""

    def __init__(self) -> None:
        self._count = 0
        self._two_way: Dict[int, int] = {}  # seqid -> when it was written (its place in the order)
        self._one_way: Deque[Tuple[int, str, Tuple[Any, ...]]] = collections.deque()

    def written(self, seqid: int, name: str, args: Tuple[Any, ...], two_way: bool) -> None:
        self._count += 1
        if two_way:
            self._two_way[seqid] = self._count
        elif self._two_way:  # a reply still to come may be "reconnect": this one may then go unread
            self._one_way.append((self._count, name, args))

    def answered(self, seqid: int) -> None:
        """The reply to ``seqid`` came: everything written before it was read (replies come in order)."""
        place = self._two_way.pop(seqid, None)
        if place is None:
            return
        while self._one_way and self._one_way[0][0] < place:
            self._one_way.popleft()
        if not self._two_way:
            self._one_way.clear()

    def unread(self, seqid: int) -> List[OneWay]:
        """The one-way calls written behind ``seqid`` (answered "reconnect"): never read, never run.
        Forgets everything (the connection is over)."""
        place = self._two_way.get(seqid, 0)
        behind = [(name, args) for written, name, args in self._one_way if written > place]
        self.reset()
        return behind

    def reset(self) -> None:
        self._count = 0
        self._two_way.clear()
        self._one_way.clear()
