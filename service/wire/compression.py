"""TZlibTransport's stream: inflated never past what is asked for, deflated one flushed write at a time
(bytes only, no socket).

Apache's TZlibTransport (every language) is one zlib stream each way for the life of the connection,
flushed with ``Z_SYNC_FLUSH`` after each message, so a message's bytes are whole on the wire without
ending the stream. A few compressed bytes can inflate to gigabytes; ``Inflater.read(size, ...)`` never
inflates more than ``size`` bytes at a time (``zlib``'s ``max_length``), so its caller's byte budget
(``ConnectionSocket``: ``max_message_bytes`` per message) bounds what a message can cost in memory.
"""

from __future__ import annotations

import zlib
from typing import Callable, Optional

from thrift.protocol.TProtocol import TProtocolException
from thrift.transport.TTransport import TTransportException

__all__ = ["Inflater", "Deflater"]


class Inflater:
    """One direction of a connection's zlib stream, inflated on demand: ``read(size, more)`` hands out at
    most ``size`` inflated bytes, asking ``more()`` for compressed bytes only when none are left."""

    def __init__(self, start: bytes = b"") -> None:
        self._zlib = zlib.decompressobj()
        self._input = start  # compressed bytes received and not yet handed to zlib
        self._out = b""  # inflated bytes not yet handed out (only the byte ``pending`` inflated)
        self._failed: Optional[TProtocolException] = None  # the stream is corrupt: every read says so

    def read(self, size: int, more: Callable[[], bytes]) -> bytes:
        """Up to ``size`` (> 0) inflated bytes, at least one; ``more()`` returns the next compressed bytes
        from the peer (and raises what the socket raises: no message yet, end of file, a timeout)."""
        while not self._out:
            if self._failed is not None:
                raise self._failed
            self._out = self._inflate(size, more)
        data, self._out = self._out[:size], self._out[size:]
        return data

    @property
    def pending(self) -> bool:
        """Whether inflated bytes are ready without reading from the peer (e.g. a pipelined message);
        inflates at most one byte to tell (a flush marker alone inflates to nothing). A corrupt stream is
        pending too: the next read raises its error, where the message loop answers it."""
        while not self._out and not self._zlib.eof and (self._input or self._zlib.unconsumed_tail):
            try:
                self._out = self._inflate(1, bytes)
            except TProtocolException:
                return True
        return bool(self._out) or self._failed is not None

    def _inflate(self, size: int, more: Callable[[], bytes]) -> bytes:
        decompressor = self._zlib
        if decompressor.eof:
            raise TTransportException(TTransportException.END_OF_FILE, "the peer ended its zlib stream")
        if decompressor.unconsumed_tail:
            source = decompressor.unconsumed_tail
        else:
            source, self._input = self._input or more(), b""
        try:
            return decompressor.decompress(source, size)
        except zlib.error as error:
            self._failed = TProtocolException(TProtocolException.INVALID_DATA, f"not a zlib stream: {error}")
            raise self._failed from error


class Deflater:
    """The other direction: each ``compress(data)`` is flushed (``Z_SYNC_FLUSH``), so the peer can
    inflate every message as soon as it arrives, as Apache's TZlibTransport reads it."""

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._zlib = zlib.compressobj(level)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
