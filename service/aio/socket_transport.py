"""A plain (not TLS) accepted socket served straight on the loop's ``add_reader`` and ``add_writer``: a
``SocketStream`` that is its own transport.

asyncio's own socket transport costs an idle connection about a kilobyte (its dict of extras, with the
peer's and its own address looked up at once, a socket wrapper, a weak reference in the loop's table,
a write buffer and a bound callback); this one holds the socket and, only while the kernel does not
take a reply at once, the rest of it; and a message costs no Python call more than uvloop's transport
(in C) costs. It does what the server asks of a transport:
``write``, flow control both ways (the stream's ``pause_writing`` while any byte is unsent, so that a
reply is the kernel's within ``reply_timeout`` as the threaded server's ``sendall``; ``pause_reading``,
``resume_reading``), ``write_eof`` (half-close: the peer's end is
read on), ``close`` once what is written went out (or a bounded wait later), ``abort`` at once, ``reset``
at once with a reset, and ``connection_lost`` last. While its connection is parked (``watch``) the
socket is read for by the loop's ``IdleWatch`` instead of a reader of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from typing import Any, Optional

from .idle_watch import IdleWatch, idle_watch
from .stream import SocketStream

__all__ = ["PlainSocketStream"]

#: Each receive asks for at most this much, into the thread's one buffer (then copied at its size: a
#: buffer allocated per receive and cut to what came cost a heap's worth of churn per message and, with
#: 64 KiB receives, 1 KiB more RSS per idle session).
_RECEIVE = 256 * 1024
_inboxes = threading.local()
#: Unsent bytes over which the protocol is told to pause writing, and at which to resume: none (a
#: reply's tail held here, unwatched, outlived reply_timeout and, at close, the connection itself).
_HIGH_WATER = 0
_LOW_WATER = 0
#: What is still unsent when the stream closes gets this long to leave; then the connection is reset (a
#: peer that never reads held the socket, and the reply, for ever).
_CLOSE_WAIT = 1.0


class PlainSocketStream(SocketStream):
    """The stream (reader, writer, and its own ``transport``) of an accepted, non-blocking, plain socket;
    reading starts at once, after what was ``received`` from it already."""

    __slots__ = ("_sock", "_fd", "_inbox", "_unsent", "_reading", "_closing", "_eof_asked", "_ask_for_errors",
                 "_idle_watch")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, sock: socket.socket, received: bytes = b"") -> None:
        super().__init__(loop, limit)
        self._data = received  # (read from the socket before it had a stream)
        self._sock = sock
        self._fd = sock.fileno()
        self._inbox = _inbox()
        self._unsent: Optional[bytearray] = None  # what the kernel did not take yet (None: nothing)
        self._reading = False
        self._closing = False
        self._eof_asked = False  # write_eof: the write side shuts once nothing is unsent
        # uvloop's poll handle, woken by a reset that came with the peer's last bytes, runs the reader once
        # and then stops watching: there, the reset is asked for (one getsockopt) before a read waits
        # when nothing was sent since the last bytes came (a send would have failed on it).
        self._ask_for_errors = type(loop).__module__.startswith("uvloop")
        self._idle_watch: Optional[IdleWatch] = None  # reading, for the loop's watch of parked sockets
        self.transport = self
        self.resume_reading()

    # -- reading ----------------------------------------------------------------------------------

    def _receive(self) -> Optional[int]:
        """Bytes received into the inbox (0: the peer's end); None when none came, or the socket failed
        (then it closes)."""
        try:
            return self._sock.recv_into(self._inbox)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            self._force_close(error)
            return None

    def _close_if_reset(self) -> None:
        """A reset that came with the last bytes read (see ``_ask_for_errors``) closes the stream."""
        if not self._closing:
            code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._force_close(ConnectionResetError(code, os.strerror(code)))

    def _read_ready(self) -> None:
        received = self._receive()
        if received is None:
            return
        if received:  # (as data_received, without a call of its own)
            data = bytes(self._inbox[:received])
            self._data = self._data + data if self._data else data
            if len(self._data) > self._limit and not self._paused:
                self._paused = True
                self.pause_reading()
            self._wake()
            self._reset_unasked = self._ask_for_errors
            return
        self.pause_reading()
        self.eof_received()  # (half-closed: the peer may still read what it asked for)

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            watch, self._idle_watch = self._idle_watch, None
            if watch is not None:
                watch.discard(self._fd)
            else:
                self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return self._reading

    # -- parked: read for by the loop's watch of idle sockets ---------------------------------------

    def watch(self, owner: Any) -> None:
        super().watch(owner)
        if self._reading and self._idle_watch is None:
            watch = idle_watch(self._loop)
            try:
                watch.add(self._fd, self)
            except OSError:  # (e.g. the kernel's limit of epoll watches): it keeps the loop's reader
                return
            self._loop.remove_reader(self._fd)
            self._idle_watch = watch

    def unwatch(self) -> None:
        super().unwatch()
        self._own_reader()

    def idle_readable(self) -> None:
        """The watch saw the socket readable (and dropped it): read as on the loop's reader."""
        self._idle_watch = None
        self._loop.add_reader(self._fd, self._read_ready)
        self._read_ready()

    def _own_reader(self) -> None:
        """Back from the watch (if there) to a reader of its own on the loop."""
        watch, self._idle_watch = self._idle_watch, None
        if watch is not None:
            watch.discard(self._fd)
            self._loop.add_reader(self._fd, self._read_ready)

    # -- writing ----------------------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if not data or self._lost or self._eof_asked:
            return
        if self._unsent is not None:
            self._unsent += data
        else:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._force_close(error)
                return
            self._reset_unasked = False  # (the send would have failed on a reset)
            if sent == len(data):
                return
            self._unsent = bytearray(memoryview(data)[sent:])
            self._loop.add_writer(self._fd, self._write_ready)
        if not self.writing_paused and len(self._unsent) > _HIGH_WATER:
            self.pause_writing()

    def _write_ready(self) -> None:
        unsent = self._unsent
        if unsent is None:
            return
        try:
            sent = self._sock.send(unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._force_close(error)
            return
        del unsent[:sent]
        if self.writing_paused and len(unsent) <= _LOW_WATER:
            self.resume_writing()
        if unsent:
            return
        self._unsent = None
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._connection_lost(None)
        elif self._eof_asked:
            self._shut_write()

    def get_write_buffer_size(self) -> int:
        return 0 if self._unsent is None else len(self._unsent)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_asked or self._closing:
            return
        self._eof_asked = True
        if self._unsent is None:
            self._shut_write()

    def _shut_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:  # gone already: connection_lost tells
            pass

    # -- the end ----------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stops reading; the socket closes once what was written went out, or is reset ``_CLOSE_WAIT``
        seconds from now if some of it did not."""
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if self._unsent is None:
            self._loop.call_soon(self._connection_lost, None)
        else:
            self._loop.call_later(_CLOSE_WAIT, self.reset)

    def abort(self) -> None:
        """Closes now; what was not sent is dropped."""
        self._force_close(None)

    def reset(self) -> None:
        """Closes now with a reset, as the threaded server drops a peer that does not read: what the kernel
        still holds is dropped too (a plain close leaves it queued, the connection half-open, for as long as
        the peer does not read)."""
        if self._lost:
            return
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._force_close(None)

    def _force_close(self, error: Optional[BaseException]) -> None:
        if self._unsent is not None:
            self._unsent = None
            self._loop.remove_writer(self._fd)
        self._closing = True
        self.pause_reading()
        self._loop.call_soon(self._connection_lost, error)

    def _connection_lost(self, error: Optional[BaseException]) -> None:
        if self._lost:
            return
        try:
            self.connection_lost(error)
        finally:
            self._sock.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name in ("peername", "sockname"):
            try:
                return self._sock.getpeername() if name == "peername" else self._sock.getsockname()
            except OSError:
                return default
        return default


def _inbox() -> memoryview:
    """This thread's receive buffer (a loop runs on one thread: its reads never overlap)."""
    inbox = getattr(_inboxes, "view", None)
    if inbox is None:
        inbox = _inboxes.view = memoryview(bytearray(_RECEIVE))
    return inbox
