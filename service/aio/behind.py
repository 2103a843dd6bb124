"""What a pipelined connection wrote behind its two-way calls, for the server's "reconnect" answer.

The server serves one connection's messages in order and, once it answers a call "reconnect" (its max
connection age), closes without reading on: whatever was written behind that call never ran. The calls
awaiting replies learn it from the broken connection; one-way calls have no reply, so the ones written
while a two-way call was awaited are kept here, with the two-way calls then awaited (ahead of them),
until a later reply shows the server read them, and are sent again on the new connection otherwise.
Two-way calls are not recorded: the calls in flight at a one-way call's writing are those it was
written behind, so a connection without one-way calls pays nothing here.
"""

from __future__ import annotations

import collections
from typing import Any, Collection, Deque, FrozenSet, List, Tuple

__all__ = ["WrittenBehind"]

OneWay = Tuple[str, Tuple[Any, ...]]


class WrittenBehind:
    """The one-way calls written behind two-way calls and not yet known read, in the order written."""

    def __init__(self) -> None:
        #: (the seqids of the two-way calls in flight when it was written, method, arguments); while it
        #: is empty, ``answered`` has nothing to do
        self.unconfirmed: Deque[Tuple[FrozenSet[int], str, Tuple[Any, ...]]] = collections.deque()

    def written(self, name: str, args: Tuple[Any, ...], ahead: Collection[int]) -> None:
        """A one-way call was written while the two-way calls ``ahead`` (seqids) awaited their replies."""
        if ahead:  # a reply still to come may be "reconnect": this one may then go unread
            self.unconfirmed.append((frozenset(ahead), name, args))

    def answered(self, seqid: int, last: bool) -> None:
        """The reply to ``seqid`` came: everything written before it was read (replies come in order);
        ``last``: no two-way call is left in flight."""
        unconfirmed = self.unconfirmed
        if last:
            unconfirmed.clear()
            return
        while unconfirmed and seqid not in unconfirmed[0][0]:  # written before the call answered
            unconfirmed.popleft()

    def unread(self, seqid: int) -> List[OneWay]:
        """The one-way calls written behind ``seqid`` (answered "reconnect"): never read, never run.
        Forgets everything (the connection is over)."""
        behind = [(name, args) for ahead, name, args in self.unconfirmed if seqid in ahead]
        self.reset()
        return behind

    def reset(self) -> None:
        self.unconfirmed.clear()
