"""The parked plain sockets of one event loop, watched for readability by one epoll set of their own
that the loop watches as a single reader.

A reader on the loop costs a parked connection about half a kilobyte (uvloop's poll handle, its
callback handle and a bound method, and their entries in the loop's tables); in this set it costs an
entry of one dict. Once one of its sockets is readable (bytes, the end or an error) the socket is dropped
from the set and its ``idle_readable()`` is called: it goes back on the loop's own reader and reads.
"""

from __future__ import annotations

import asyncio
import select
import threading
from typing import Any, Dict

__all__ = ["IdleWatch", "idle_watch"]

_watches = threading.local()
#: Readiness asked of a parked socket: bytes or its end (an error or a hang-up is always reported).
_EVENTS = select.EPOLLIN | select.EPOLLRDHUP
#: At most this many sockets are taken per wake-up of the set (the rest at the next one).
_BATCH = 256


class IdleWatch:
    """``add(fd, owner)``: calls ``owner.idle_readable()`` once ``fd`` is readable (once: it is dropped from the set
    first). ``discard(fd)``: no longer watched. The set is on the loop only while it holds a socket."""

    __slots__ = ("loop", "_epoll", "_owners")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll: Any = None
        self._owners: Dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def add(self, fd: int, owner: Any) -> None:
        if self._epoll is None:
            self._epoll = select.epoll()
            self.loop.add_reader(self._epoll.fileno(), self._ready)
        try:
            self._epoll.register(fd, _EVENTS)
        except OSError:
            if not self._owners:
                self._close()
            raise
        self._owners[fd] = owner

    def discard(self, fd: int) -> None:
        if self._owners.pop(fd, None) is None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError:  # (closed already: the kernel dropped it)
            pass
        if not self._owners:
            self._close()

    def _ready(self) -> None:
        for fd, _ in self._epoll.poll(0, _BATCH):
            owner = self._owners.get(fd)
            if owner is not None:
                self.discard(fd)
                owner.idle_readable()
            if self._epoll is None:
                return

    def _close(self) -> None:
        epoll, self._epoll = self._epoll, None
        self.loop.remove_reader(epoll.fileno())
        epoll.close()


def idle_watch(loop: asyncio.AbstractEventLoop) -> IdleWatch:
    """The watch of ``loop`` (it runs on this thread)."""
    watch = getattr(_watches, "watch", None)
    if watch is None or watch.loop is not loop:
        watch = _watches.watch = IdleWatch(loop)
    return watch
