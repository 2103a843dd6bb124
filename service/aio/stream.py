"""One accepted connection's bytes both ways, as the asyncio server reads and writes them: the protocol
the loop feeds and the reader and writer the connection awaits, in one object.

It stands where ``asyncio.StreamReader``, ``StreamReaderProtocol`` and ``StreamWriter`` stood (the calls
the server makes keep their names and meaning) for what they cost per message and per idle connection:
a chunk received is handed to the read waiting for it as it came (no buffer copied into and sliced
out of), and an idle connection holds one small object and its transport.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

__all__ = ["SocketStream"]


class SocketStream(asyncio.Protocol):
    """``read(n)``: at most ``n`` bytes, b"" once the peer has closed, the connection's error if it
    failed. ``write``, ``drain`` (waits while the transport's buffer is over its high-water mark),
    ``can_write_eof``, ``write_eof``, ``close`` and ``transport`` as a ``StreamWriter``'s. Reading pauses
    while more than ``limit`` bytes wait unread."""

    __slots__ = ("transport", "_loop", "_limit", "_data", "_waiter", "_eof", "_lost", "_error", "_paused",
                 "writing_paused", "_drain_waiter", "_parking", "owner", "_reset_unasked")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.transport: Any = None
        self._loop = loop
        self._limit = limit
        self._data = b""  # received, not yet read
        self._waiter: Optional[asyncio.Future] = None  # a read waiting for bytes
        self._eof = False
        self._lost = False  # the connection is gone (connection_lost)
        self._error: Optional[BaseException] = None
        self._paused = False  # reading paused (too much unread)
        #: The transport holds more than its high-water mark of unsent bytes: ``drain`` waits.
        self.writing_paused = False
        self._drain_waiter: Optional[asyncio.Future] = None
        self._parking = False  # the read waiting now returns None (``park``)
        #: While no read waits: told (``owner.wake()``) once bytes, the end or an error come.
        self.owner: Any = None
        #: A reset may have come with the last bytes unnoticed: asked for (``_close_if_reset``) before a read waits.
        self._reset_unasked = False

    # -- the protocol (called by the loop) -------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._data = self._data + data if self._data else data
        if len(self._data) > self._limit and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # half-closed: the peer may still read what it asked for (TLS cannot stay half-open)
        return self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, error: Optional[BaseException]) -> None:
        self._eof = self._lost = True
        if error is not None:
            self._error = error
        self._wake()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error or ConnectionResetError("Connection lost"))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close_if_reset(self) -> None:
        """Closes the stream if its connection was reset (streams of their own sockets ask the kernel)."""

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self.owner is not None:
            owner, self.owner = self.owner, None
            owner.wake()

    # -- the reader -------------------------------------------------------------------------------

    def watch(self, owner: Any) -> None:
        """While no read waits: ``owner.wake()`` once bytes, the end or an error come (once)."""
        self.owner = owner

    def unwatch(self) -> None:
        """``owner`` is no longer told."""
        self.owner = None

    def park(self) -> None:
        """The read waiting for bytes (if one does) returns None instead, so that its task may end."""
        if self._waiter is not None:
            self._parking = True
            self._wake()

    def ready(self) -> bool:
        """Whether a read would return at once (bytes, the end or an error wait)."""
        return bool(self._data) or self._eof or self._error is not None

    async def read(self, n: int) -> Optional[bytes]:
        """At most ``n`` bytes; b"" once the peer has closed; None if ``park`` asked it to give up."""
        while not self._data:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            if self._parking:
                self._parking = False
                return None
            if self._reset_unasked:
                self._reset_unasked = False
                self._close_if_reset()
                continue
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._parking = False  # bytes came in the park's turn: void (else the next read, a message's rest, gives up)
        data = self._data
        if len(data) > n:
            data, self._data = data[:n], data[n:]
        else:
            self._data = b""
        if self._paused and len(self._data) <= self._limit:
            self._paused = False
            self.transport.resume_reading()
        return data

    # -- the writer -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self.transport.is_closing():
            await asyncio.sleep(0)  # let connection_lost tell why, as StreamWriter.drain does
        if self._lost:
            raise self._error or ConnectionResetError("Connection lost")
        if not self.writing_paused:
            return
        self._drain_waiter = self._loop.create_future()
        await self._drain_waiter

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def close(self) -> None:
        self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)
