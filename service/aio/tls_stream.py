"""An accepted socket's TLS, done here (``ssl.SSLObject`` over memory) on a ``PlainSocketStream``: the
TLS connection's stream is the plain one's, records in and out.

The loops' own TLS transports hand a whole reply's records to a TCP transport below them whose buffer
their flow control does not see: a reply's tail the peer never read went unwatched until
``idle_timeout``. Here every unsent byte is the plain stream's, so ``drain``, ``reply_timeout``, the
reset and the bounded close hold over TLS as they hold over plain TCP, on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Optional

from .socket_transport import PlainSocketStream

__all__ = ["TlsSocketStream", "accept_tls"]

#: Plaintext taken from the TLS object at most at once.
_DECRYPT = 256 * 1024


class TlsSocketStream(PlainSocketStream):
    """The stream of an accepted socket on the TLS port, server side; the handshake runs from the start
    (``accept_tls`` waits for it). Reads are the plaintext; writes are encrypted and written on; it
    cannot half-close (``can_write_eof`` is False); ``close`` says close_notify first."""

    __slots__ = ("_tls", "_incoming", "_outgoing", "_handshake")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, sock: socket.socket, context: ssl.SSLContext,
                 received: bytes = b"") -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        #: Done when the handshake is (None after): its error if it failed.
        self._handshake: Optional[asyncio.Future] = loop.create_future()
        super().__init__(loop, limit, sock)
        if received:  # (read from the socket before it had a stream)
            self._incoming.write(received)
            self._decrypt()

    # -- reading ----------------------------------------------------------------------------------

    def _read_ready(self) -> None:
        received = self._receive()
        if received is None:
            return
        if received:
            self._incoming.write(self._inbox[:received])
        else:
            self._incoming.write_eof()
        self._decrypt()
        if received and self._ask_for_errors:
            if self._data:  # a read takes the plaintext, and the next read asks before it waits
                self._reset_unasked = True
            else:  # (a record cut short, a handshake flight) no read wakes to ask: asked now
                self._close_if_reset()

    def _decrypt(self) -> None:
        """Takes what the records received say: the handshake's progress, plaintext, the end or an error;
        sends what the TLS object has to say back (handshake flights, tickets, alerts)."""
        tls = self._tls
        try:
            if self._handshake is not None:
                tls.do_handshake()
                waiter, self._handshake = self._handshake, None
                if not waiter.done():
                    waiter.set_result(None)
            while True:
                data = tls.read(_DECRYPT)
                if not data:  # close_notify
                    raise ssl.SSLZeroReturnError()
                self.data_received(data)
                if not self._incoming.pending and not tls.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as end:  # closed, with close_notify or without
            self._send_records()
            if self._handshake is not None:
                self._force_close(end)
            else:  # (as a plain peer's end: what it asked for may still be written)
                self.pause_reading()
                self.eof_received()
            return
        except ssl.SSLError as error:
            self._send_records()  # (the alert, if the kernel takes it now)
            self._force_close(error)
            return
        self._send_records()

    def _send_records(self) -> None:
        records = self._outgoing.read()
        if records:
            super().write(records)

    # -- writing ----------------------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if not data or self._lost or self._closing:
            return
        try:
            self._tls.write(data)
        except ssl.SSLError as error:
            self._force_close(error)
            return
        self._send_records()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close")

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        if self._handshake is None and not self._lost:
            try:
                self._tls.unwrap()  # close_notify (the peer's is not awaited)
            except ssl.SSLError:
                pass
            self._send_records()
        super().close()

    def _connection_lost(self, error: Optional[BaseException]) -> None:
        waiter, self._handshake = self._handshake, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error or ConnectionResetError("the connection closed during the TLS handshake"))
        super()._connection_lost(error)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._tls.context
        if name == "ssl_object":
            return self._tls
        if name == "peercert":
            return self._tls.getpeercert() if self._handshake is None else default
        if name == "cipher":
            return self._tls.cipher()
        return super().get_extra_info(name, default)


async def accept_tls(loop: asyncio.AbstractEventLoop, limit: int, sock: socket.socket, context: ssl.SSLContext,
                     deadline: float, received: bytes = b"") -> TlsSocketStream:
    """The TLS stream of an accepted socket (of which ``received`` was read already), once its handshake
    is done by ``deadline`` (loop time); raises OSError (ssl.SSLError among them) or TimeoutError, the
    socket then closed."""
    stream = TlsSocketStream(loop, limit, sock, context, received)
    handshake = stream._handshake
    try:
        if handshake is not None:  # (None: done already, on what was received)
            async with asyncio.timeout_at(deadline):
                await handshake
    except BaseException:
        stream.abort()
        raise
    return stream
