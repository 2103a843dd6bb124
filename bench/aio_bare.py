"""The ceiling of a pipelined asyncio client on one connection: the same echo bytes as ``AsyncClient``
sends, with nothing else done per call.

``bench.aio_client --bare`` prints its rows beside the AsyncClient's. One connection says hello, then
each call writes the pre-encoded echo request (one seqid for all: every reply has the same size) and
awaits a future that ``data_received`` completes, replies taken in order by their size: no argument
check, no seqid table, no decoding, no timeline, no interceptors, no deadline. What it costs per call is
asyncio's share (a future, a task's wake-up, the loop's turns and system calls) and the server's.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Deque, Optional

from bench.client_overhead import TEXT

__all__ = ["BareEcho", "open_bare"]


class BareEcho(asyncio.Protocol):
    """Replies of a known size completed in order; ``call`` writes one pre-encoded request."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._waiting: Deque["asyncio.Future[None]"] = collections.deque()
        self._left = b""
        self.reply_size = 0  # set once the first reply is known
        self.transport: Optional[asyncio.Transport] = None
        self._first: Optional["asyncio.Future[bytes]"] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            first.set_result(data)
            return
        data = self._left + data if self._left else data
        whole = len(data) // self.reply_size
        popleft = self._waiting.popleft
        for _ in range(whole):
            popleft().set_result(None)
        self._left = data[whole * self.reply_size:]

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        for future in self._waiting:
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def exchange(self, message: bytes) -> bytes:
        """One request and its whole reply (read in one chunk: a small one on loopback)."""
        assert self.transport is not None
        self._first = asyncio.get_running_loop().create_future()
        self.transport.write(message)
        return await self._first

    def call(self) -> "asyncio.Future[None]":
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self.transport.write(self._request)  # type: ignore[union-attr]
        return future


async def open_bare(port: int) -> BareEcho:
    """A connection that said hello and knows the size of an echo reply."""
    from thrift_handshake.aio.codec import MessageCodec
    from thrift_handshake.client_core import client_hello
    from thrift_handshake.config import ClientOptions
    from thrift_handshake_gen import HandshakeService

    options = ClientOptions()
    codec = MessageCodec(HandshakeService, options.wire, options.max_reply_bytes, options.max_reply_items)
    request = codec.encode("echo", (TEXT,), 2)
    _, protocol = await asyncio.get_running_loop().create_connection(lambda: BareEcho(request), "127.0.0.1", port)
    await protocol.exchange(codec.encode("hello", (client_hello(options),), 1))
    protocol.reply_size = len(await protocol.exchange(request))
    return protocol
