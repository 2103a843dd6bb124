"""A TZlibTransport peer of the asyncio server: its stream inflated as it is read, never more than one
read asks for, and every write deflated and flushed (``wire.compression``'s ``Inflater`` and ``Deflater``,
the threaded server's own), so that the framer holds inflated bytes to the same limits as plain ones."""

from __future__ import annotations

from typing import Any

from ..wire.compression import Deflater, Inflater

__all__ = ["InflatingReader", "DeflatingWriter"]


class _NoneLeft(Exception):
    """The compressed bytes read so far inflate to nothing more (a flush marker): read the socket again."""


class InflatingReader:
    """``read(n)`` as a ``SocketStream``'s, of the inflated stream whose first compressed bytes are
    ``start``: at most ``n`` inflated bytes, b"" at the end of the connection. A corrupt stream raises
    ``TProtocolException`` (INVALID_DATA), one the peer ended ``TTransportException`` (END_OF_FILE)."""

    def __init__(self, reader: Any, start: bytes) -> None:
        self._reader = reader
        self._inflater = Inflater(start)
        self._chunk = b""

    @property
    def raw(self) -> Any:
        """The compressed stream below (what a refused peer's input is dropped from, never inflated)."""
        return self._reader

    async def read(self, n: int) -> bytes:
        while True:
            try:
                return self._inflater.read(n, self._take)
            except _NoneLeft:  # all inflated (a flush marker inflates to nothing): the socket's next bytes
                pass
            chunk = await self._reader.read(n)
            if not chunk:
                return b""
            self._chunk = chunk

    def _take(self) -> bytes:
        chunk, self._chunk = self._chunk, b""
        if not chunk:
            raise _NoneLeft()
        return chunk


class DeflatingWriter:
    """A writer whose ``write`` deflates (flushed per write, as Apache's TZlibTransport reads
    it); everything else is the writer's own."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._deflater = Deflater()

    def write(self, data: bytes) -> None:
        if data:
            self._writer.write(self._deflater.compress(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)
