"""One client connection on asyncio: requests out as they come, whole replies in, as they arrive.

``ReplyStream`` is the asyncio protocol under ``AsyncClient``: it writes requests back to back
(pipelined), cuts what arrives into whole messages with ``wire.MessageFramer`` (every wire the client
speaks: unframed binary, compact and JSON by their walk, framed and THeader by their length; over HTTP
the bodies of whole responses, ``aio.http.HttpResponseFramer``) and hands each one, with the time its
first byte arrived, to the client (on the binary and compact wires, ``cut`` cuts and decodes the replies
that arrive whole in one read, ``aio.fastpath``; the framer takes the rest). It counts bytes, keeps the
first bytes of a reply it could not read (to explain it), and lets writers wait while the kernel's
buffer is full. It reads into a buffer of its own (``asyncio.BufferedProtocol``): asyncio's own loop
would allocate 256 KiB for every read, which glibc may serve with an mmap, an mremap and a munmap per
read (about 10 us of a sequential call's CPU here, depending on what the heap did before).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, Callable, List, Optional, Union

from ..config import ClientOptions
from ..wire import SNIFF_BYTES, FramerLimits, MessageFramer
from ..wire.tls import client_tls_context
from .fastpath import Reply
from .http import HttpResponseFramer

__all__ = ["ReplyStream"]

#: Seconds a graceful close waits for the peer to take what is still queued (e.g. a goodbye).
_CLOSE_GRACE = 5.0
#: At most this many 64 KiB reads of what is left in the kernel once the connection failed.
_MAX_LEFT_CHUNKS = 64
#: Bytes read at most at once (a read takes what the kernel has, up to this).
_READ_SIZE = 65536

#: Called with each whole reply (or the reply ``cut`` decoded) and when its first byte arrived
#: (``time.perf_counter()``).
OnReply = Callable[[Union[bytes, Reply], float], None]
#: The reply starting at an offset of the bytes received, when it is whole there (``aio.fastpath``).
Cut = Callable[[bytes, int], Optional[Reply]]
#: Called once when the stream ends: with the error that ended it (None: the peer closed).
OnEnd = Callable[[Optional[BaseException]], None]


class ReplyStream(asyncio.BufferedProtocol):
    """The bytes of one connection for one client; ``on_reply``/``on_end`` are the client's."""

    def __init__(self, options: ClientOptions, on_reply: OnReply, on_end: OnEnd, cut: Optional[Cut] = None) -> None:
        self._options = options
        self._cut = cut
        # a frame of max_reply_bytes is accepted, as the threaded client's transports accept it
        self._framer: Any = (HttpResponseFramer(options.max_reply_bytes) if options.wire.transport == "http" else
                             MessageFramer(options.wire, FramerLimits(options.max_reply_bytes + 4,
                                                                      options.max_reply_items)))
        self._on_reply = on_reply
        self._on_end = on_end
        self.transport: Optional[asyncio.Transport] = None
        self.bytes_in = self.bytes_out = 0
        self.first_reply = b""  # the first bytes of the reply not yet whole (to explain one that cannot be read)
        self._partial_since = 0.0  # when the first byte of that reply arrived
        self._resumed: Optional[asyncio.Future] = None  # set while the kernel's send buffer is full
        self.paused = False  # the kernel's send buffer is full: ``drain`` waits
        self.ended = False  # closed, by either end
        self._unsent: List[bytes] = []  # requests queued in this turn of the event loop
        self._read_into = memoryview(bytearray(_READ_SIZE))
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # the connection's, once ``open`` runs

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_into

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_into[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Bytes read (also what was left in the kernel when the connection failed)."""
        now = time.perf_counter()
        self.bytes_in += len(data)
        if self._cut is not None and not self._framer.pending:
            data = self._cut_whole(data, now)
            if not data:
                return
        arrived = self._partial_since if self._framer.pending else now
        try:
            messages = self._framer.feed(data)
            for message in messages:
                self._on_reply(message, arrived)
                arrived = now
                if self.ended:  # the client gave the connection up on this reply
                    return
            self._keep_start(data, arrived if not messages else now)
            if messages and self._framer.pending:
                self._framer.feed(b"")  # a refusal reached after whole messages is raised now
        except Exception as error:  # refused by the framer: over the limits, or not this wire at all
            self._keep_start(data, arrived)
            self.end(error)

    def _cut_whole(self, data: bytes, now: float) -> bytes:
        """Hands out the replies ``cut`` decodes from the start of ``data``; returns the rest (from the
        first reply it leaves to the framer), b"" when none is left or the client gave the connection up."""
        assert self._cut is not None
        start, size = 0, len(data)
        while start < size:
            reply = self._cut(data, start)
            if reply is None:
                return data[start:] if start else data
            start += reply.size
            self._on_reply(reply, now)
            if self.ended:
                return b""
        self.first_reply = b""
        self._partial_since = 0.0
        return b""

    def eof_received(self) -> bool:
        return False  # close our end too

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._wake_writers()
        if exc is not None and not self.ended:
            left = _left_in_kernel(self.transport)
            if left:
                self.data_received(left)
        if not self.ended:
            self.ended = True
            self._on_end(exc)

    def pause_writing(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.get_running_loop().create_future()
            self.paused = True

    def resume_writing(self) -> None:
        self._wake_writers()

    # -- the client's side --------------------------------------------------------------------

    async def open(self, host: str, port: int) -> None:
        """Connects (TLS included; to ``ClientOptions.unix_socket`` when set) within the connect timeout;
        raises OSError (ssl.SSLError among them), ValueError (TLS files) or asyncio.TimeoutError."""
        tls = self._options.tls
        context = None if tls is None else client_tls_context(tls)
        hostname = None if tls is None else (tls.server_hostname or host)
        loop = self._loop = asyncio.get_running_loop()
        if self._options.unix_socket is not None:  # serve --unix: the path instead of host and port
            opening = loop.create_unix_connection(lambda: self, self._options.unix_socket, ssl=context,
                                                  server_hostname=hostname)
        else:
            opening = loop.create_connection(lambda: self, host, port, ssl=context, server_hostname=hostname)
        await asyncio.wait_for(opening, self._options.timeouts.connect)

    def write(self, data: bytes, alone: bool = False) -> None:
        """Queues a whole request; the requests queued while the event loop runs its ready tasks leave
        together, in one system call, when they are done (asyncio then writes as the socket takes it).
        ``alone``: no other call is in flight, so none is likely to follow in this turn: written at once
        (a turn of the loop less per sequential call)."""
        self.bytes_out += len(data)
        if not self._unsent:
            if alone and self.transport is not None:
                self.transport.write(data)
                return
            (self._loop or asyncio.get_running_loop()).call_soon(self._send)  # (kept: asking costs a getpid)
        self._unsent.append(data)

    def _send(self) -> None:
        unsent, self._unsent = self._unsent, []
        if unsent and self.transport is not None and not self.ended:
            self.transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    async def drain(self) -> None:
        """Returns once the kernel takes more bytes (at once unless its buffer is full), or the stream ended."""
        while self._resumed is not None and not self.ended:
            await asyncio.shield(self._resumed)

    def end(self, error: Optional[BaseException], graceful: bool = False) -> None:
        """Closes the connection: ``graceful``, once what is queued is written (a goodbye); else at once,
        unsent bytes dropped (a broken connection). ``on_end`` hears ``error`` (None: asked for by the client)."""
        if self.transport is not None:
            if graceful and not self.ended:
                self._send()
                self.transport.close()
                if self.transport.get_write_buffer_size():  # a peer that does not read gets a bounded wait
                    asyncio.get_running_loop().call_later(_CLOSE_GRACE, self.transport.abort)
            else:
                self.transport.abort()
        self._wake_writers()
        if not self.ended:
            self.ended = True
            self._on_end(error)

    def _keep_start(self, data: bytes, since: float) -> None:
        """Remembers where the reply still being received starts: its first bytes and their time."""
        pending = self._framer.pending
        self._partial_since = since if pending else 0.0
        if not pending:
            self.first_reply = b""
        elif pending <= len(data):  # it starts in this chunk (else it started earlier: kept from then)
            self.first_reply = data[len(data) - pending:][:SNIFF_BYTES]

    def _wake_writers(self) -> None:
        resumed, self._resumed = self._resumed, None
        self.paused = False
        if resumed is not None and not resumed.done():
            resumed.set_result(None)


def _left_in_kernel(transport: Optional[asyncio.BaseTransport]) -> bytes:
    """What the peer sent that asyncio did not read before a write failed (a peer that answers, then
    closes with our next requests unread, resets the connection: the answer still waits in the kernel).
    Plain TCP only: TLS records would need the TLS layer asyncio drops with the transport."""
    raw = None if transport is None or transport.get_extra_info("sslcontext") else transport.get_extra_info("socket")
    if raw is None:
        return b""
    chunks: List[bytes] = []
    try:
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            sock.setblocking(False)
            while len(chunks) < _MAX_LEFT_CHUNKS:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError:  # nothing more (EAGAIN), or the reset itself once the data is read
        pass
    return b"".join(chunks)
