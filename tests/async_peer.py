"""An asyncio Thrift peer for the AsyncClient's tests: real Thrift serialization (the generated
HandshakeService structs on TBinaryProtocol), framed by the runtime's MessageFramer, answering hello and
goodbye at once and holding echo calls until ``answer(held)`` says what to write back and in which order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable, List, Optional, Tuple

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Wire
from thrift_handshake.wire import FramerLimits, MessageFramer
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Farewell, ServerHello

#: An echo call held by the peer: (seqid, message).
Held = Tuple[int, str]
#: What to write for the held calls: (method, seqid, result struct) per reply, in order; None: hold on.
Answer = Callable[[List[Held]], Optional[List[Tuple[str, int, object]]]]


def encode_reply(method: str, seqid: int, result: object) -> bytes:
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin(method, TMessageType.REPLY, seqid)
    result.write(protocol)  # type: ignore[attr-defined]
    protocol.writeMessageEnd()
    return buffer.getvalue()


def echo_reply(seqid: int, message: str) -> Tuple[str, int, object]:
    return "echo", seqid, HandshakeService.echo_result(success=message)


def reversed_after(count: int) -> Answer:
    """Holds ``count`` echo calls, then answers them last first."""
    return lambda held: [echo_reply(seqid, message) for seqid, message in reversed(held)] if len(held) >= count else None


@contextlib.asynccontextmanager
async def silent_peer() -> AsyncIterator[int]:
    """A peer on 127.0.0.1 that accepts and never answers (nor closes); yields its port."""
    held: List[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()


class Peer:
    """Serves one connection at a time on 127.0.0.1 (``port`` once started); ``closes_after_hello``
    makes it drop the connection once calls arrive, ``stops_reading_after_hello`` a peer that reads
    nothing more (its buffers fill, then the client's); ``after_hello``: bytes sent with hello's answer;
    ``drip``: the calls' replies are written a byte at a time, ``drip`` seconds apart."""

    def __init__(self, answer: Answer, closes_after_hello: bool = False, stops_reading_after_hello: bool = False,
                 after_hello: bytes = b"", drip: float = 0.0) -> None:
        self.answer = answer
        self.drip = drip
        self.after_hello = after_hello
        self.closes_after_hello = closes_after_hello
        self.stops_reading_after_hello = stops_reading_after_hello
        self.port = 0
        self.received: List[str] = []
        self._server: Optional[asyncio.base_events.Server] = None
        self._handlers: List[asyncio.Task] = []

    async def __aenter__(self) -> "Peer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        framer = MessageFramer(Wire(), FramerLimits(1 << 20))
        held: List[Held] = []
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for message in framer.feed(data):
                    protocol = TBinaryProtocol(TMemoryBuffer(message))
                    name, _, seqid = protocol.readMessageBegin()
                    generated = SessionService if name in ("hello", "goodbye") else HandshakeService
                    args = getattr(generated, f"{name}_args")()
                    args.read(protocol)
                    self.received.append(name)
                    if name == "hello":
                        result = SessionService.hello_result(success=ServerHello(session_id="peer", version=2))
                        writer.write(encode_reply(name, seqid, result) + self.after_hello)
                        if self.stops_reading_after_hello:
                            await writer.drain()
                            await asyncio.sleep(3600)  # cancelled when the peer stops
                    elif name == "goodbye":
                        writer.write(encode_reply(name, seqid, SessionService.goodbye_result(
                            success=Farewell(session_id="peer", calls=len(self.received)))))
                        await writer.drain()
                        return
                    elif self.closes_after_hello:
                        return
                    else:
                        held.append((seqid, args.message))
                        replies = self.answer(held)
                        if replies is not None:
                            for method, reply_seqid, result in replies:
                                await self._write(writer, encode_reply(method, reply_seqid, result))
                            held.clear()
                await writer.drain()
        except (asyncio.CancelledError, ConnectionError):  # the peer stops, or the client went away: end quietly (asyncio 3.11 logs a cancelled handler)
            return
        finally:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not self.drip:
            writer.write(data)
            return
        for index in range(len(data)):
            writer.write(data[index:index + 1])
            await writer.drain()
            await asyncio.sleep(self.drip)
