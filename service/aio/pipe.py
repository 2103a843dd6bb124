"""A connection's Thrift stack over memory: whole messages in, reply bytes out (no socket).

The asyncio server reads bytes on its loop and cuts them into whole messages (``wire.MessageFramer``);
each is handed to the stack the threaded server would build for the same dialect (``wire.server_stack``,
``wire.header_protocol``), over a ``MemoryPipe`` instead of a socket, so the C decoder's fast path and
every read limit stay as they are.
"""

from __future__ import annotations

from typing import Any, List, Optional

from thrift.transport.TTransport import TTransportBase, TTransportException

__all__ = ["MemoryPipe"]

_NOTHING = memoryview(b"")


class MemoryPipe(TTransportBase):
    """Stands in for a socket under a Thrift transport: reads what ``feed`` gave, collects what is written."""

    def __init__(self, data: bytes = b"") -> None:
        self._input = memoryview(data)
        self._output: List[bytes] = []
        #: The transport reading from this pipe, when it takes a whole message into its read buffer at
        #: once (``read_whole``: one refill's worth, without the refill's calls).
        self.above: Optional[Any] = None

    def feed(self, data: bytes) -> None:
        """The next bytes to read (a whole message: what is left of the last one is dropped)."""
        above = self.above
        self._input = _NOTHING if above is not None and above.read_whole(data) else memoryview(data)

    def take_output(self) -> bytes:
        """What was written since the last call."""
        data = b"".join(self._output)
        self._output.clear()
        return data

    def isOpen(self) -> bool:
        return True

    def read(self, sz: int) -> bytes:
        if not self._input:  # a whole message was fed: reading past it means it was cut short
            raise TTransportException(TTransportException.END_OF_FILE, "the message ended before it was complete")
        if sz >= len(self._input):  # all of it (the usual read): the message is no longer held
            data, self._input = self._input, _NOTHING
        else:
            data, self._input = self._input[:sz], self._input[sz:]
        return bytes(data)

    def write(self, buf: bytes) -> None:
        self._output.append(bytes(buf))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._input = _NOTHING
