"""A connection's start on the asyncio server: the TLS handshake (on the TLS port, after the first bytes
that tell a plain client it needs TLS; ``tls_stream``), the stream, and the refusals written in the peer's own dialect
(``wire.write_refusal`` over memory: the same words as the threaded server's)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from ..config import ServerLimits
from ..wire import SNIFF_BYTES, Dialect, DialectKind, FramerLimits, MessageFramer, sniff, write_refusal
from ..wire.http import response_bytes
from .pipe import MemoryPipe
from .socket_transport import PlainSocketStream
from .tls_stream import accept_tls

__all__ = ["Stream", "answer_full", "open_stream", "refuse", "send_last", "READ_CHUNK"]

#: Each read asks for at most this much.
READ_CHUNK = 64 * 1024
#: How long a refused peer's first message is awaited, and its input read and dropped after the answer.
_REFUSAL_SECONDS = 1.0
_DISCARD_BYTES = 64 * 1024 * 1024

#: A connection's reader and writer (a ``SocketStream`` both, or zlib's ``InflatingReader`` and ``DeflatingWriter``).
Stream = Tuple[Any, Any]


async def open_stream(sock: socket.socket, tls: Optional[ssl.SSLContext],
                      deadline: float) -> Tuple[Stream, Optional[str], Optional[str]]:
    """The stream of an accepted socket; on the TLS port after the TLS handshake, done by ``deadline``
    (``loop.time()``). Returns the stream, the client certificate's common name ("" without one,
    None without TLS) and, for a peer that failed TLS or sent plain bytes to the TLS port, why."""
    loop = asyncio.get_running_loop()
    wrap, first = tls, b""
    if tls is not None:
        first = await _first_bytes(sock, deadline)
        dialect = sniff(first) if first else None
        if dialect is not None and dialect.kind is not DialectKind.TLS:
            wrap = None  # a plain client on the TLS port: told so in plain
    if wrap is None:  # plain: the socket on the loop as it is
        plain = PlainSocketStream(loop, 2 * READ_CHUNK, sock, first)
        return (plain, plain), None, None if tls is None else "this server requires TLS"
    try:
        stream = await accept_tls(loop, 2 * READ_CHUNK, sock, wrap, deadline, first)
    except (OSError, TimeoutError) as error:  # ssl.SSLError is an OSError
        said = str(error) or "not done within handshake_timeout"  # (a TimeoutError says nothing)
        raise ConnectionError(f"TLS handshake failed: {said}") from error
    certificate = stream.get_extra_info("peercert")
    subject = dict(item for rdn in (certificate or {}).get("subject", ()) for item in rdn)
    return (stream, stream), subject.get("commonName", ""), None


async def _first_bytes(sock: socket.socket, deadline: float) -> bytes:
    """The socket's first bytes, read until they tell TLS from plain, the peer closes or ``deadline``
    (``loop.time()``) passes (too few to tell then: the TLS handshake fails on them)."""
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            async with asyncio.timeout_at(deadline):
                await readable
        except TimeoutError:
            return data
        finally:
            loop.remove_reader(sock.fileno())
        try:
            chunk = sock.recv(SNIFF_BYTES - len(data))
        except BlockingIOError:
            continue
        except OSError:
            return data
        data += chunk
        if not chunk or sniff(data) is not None or len(data) >= SNIFF_BYTES:
            return data


async def refuse(stream: Stream, received: bytes, dialect: Optional[Dialect], kind: int, message: str,
                 limits: ServerLimits) -> None:
    """Tells the peer why it is refused, where it can read it: a Thrift peer's first message is awaited
    (briefly, within ``handshake_max_bytes``) and answered in its own framing; then its input is read
    and dropped (bounded), so closing does not reset a peer still writing."""
    reader, _ = stream
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _REFUSAL_SECONDS
    answer_wire = None if dialect is None else dialect.answer_wire
    budget = limits.handshake_max_bytes
    try:
        if answer_wire is not None and dialect.kind is not DialectKind.BAD_VERSION:
            received = await _first_message(reader, received, MessageFramer(answer_wire, FramerLimits(budget)),
                                            deadline)
        pipe = MemoryPipe(received)
        try:
            write_refusal(pipe, dialect, kind, message, budget, limits.max_container_items)
        except Exception:  # its message was not even a header: nothing it could read
            pass
    except (OSError, TimeoutError):  # gone, or silent: closed now
        return
    await send_last(stream, pipe.take_output(), deadline)


async def answer_full(sock: socket.socket, message: str, limits: ServerLimits) -> None:
    """Tells a newcomer to a full server ``message`` in its own dialect (within a second): Thrift over
    HTTP a 503 with Retry-After, a Thrift client an exception to its first call; then closes."""
    loop = asyncio.get_running_loop()
    try:
        stream, _, _ = await open_stream(sock, None, loop.time() + 1.0)
    except ConnectionError:  # gone already (open_stream closed the socket)
        return
    try:
        async with asyncio.timeout(1.0):
            first = await stream[0].read(READ_CHUNK)
        dialect = sniff(first) if first else None
        if dialect is not None and dialect.kind is DialectKind.HTTP:  # Thrift over HTTP: a 503
            await send_last(stream, response_bytes(503, f"{message}\n".encode(), "text/plain; charset=utf-8",
                                                   keep_alive=False, headers=[("Retry-After", "1")]))
        elif dialect is not None and dialect.kind in (DialectKind.THRIFT, DialectKind.HEADER,
                                                     DialectKind.FRAMED_HEADER):
            await refuse(stream, first, dialect, TApplicationException.INTERNAL_ERROR, message, limits)
    except (OSError, TimeoutError):
        pass
    finally:
        stream[1].close()


async def send_last(stream: Stream, data: bytes, deadline: Optional[float] = None) -> None:
    """Writes a connection's last ``data``, then reads and drops the peer's input until it closes (by
    ``deadline``, else for a second, and at most 64 MiB), so that closing does not reset a peer still
    writing before it reads the answer."""
    reader, writer = stream
    reader = getattr(reader, "raw", reader)  # a zlib stream's input is dropped as it came, not inflated
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + _REFUSAL_SECONDS
    try:
        writer.write(data)
        async with asyncio.timeout_at(deadline):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            dropped = 0
            while dropped < _DISCARD_BYTES:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                dropped += len(chunk)
    except (OSError, TimeoutError):  # gone, or still writing: closed now
        pass


async def _first_message(reader: Any, received: bytes, framer: MessageFramer,
                         deadline: float) -> bytes:
    """``received`` and what follows until the first message is whole (or refused, or time is up)."""
    collected, chunk = bytearray(received), received
    try:
        async with asyncio.timeout_at(deadline):
            while not framer.feed(chunk):
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                collected += chunk
    except (TimeoutError, OSError, TProtocolException, TTransportException):  # answered from what came
        pass
    return bytes(collected)
