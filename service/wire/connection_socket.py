"""The server's end of one connection: its first bytes, byte budgets, linger, request and idle timeouts.

Also the first bytes of a socket not yet wrapped (the TLS port peeks before its handshake, so that
a plain client is told it needs TLS): ``peek_first_bytes``. Both tell the dialect with ``sniff_stream``.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from typing import Optional, Tuple, Union

from thrift.transport import TSocket, TTransport

from ..config import ServerLimits
from .compression import Deflater, Inflater
from .errors import BudgetExceeded, NoMessageYet
from .sniff import SNIFF_BYTES, Dialect, sniff_stream
from .sockets import DeadlineSocket, set_kernel_timeouts, use_timeout, write_failed, time_left

__all__ = ["ConnectionSocket", "peek_first_bytes"]

#: Each socket read asks for at most this much, so a declared length never allocates more than arrives.
_READ_CHUNK = 1024 * 1024


class ConnectionSocket(DeadlineSocket):
    """The server's end of one connection.

    Before hello, the handshake deadline bounds every read and write (set ``deadline``), and at most
    ``handshake_budget`` bytes are read (more is refused before it is allocated). Once the
    session has started (``start_session``), a message's first bytes are awaited for the linger only
    (the server's selector then holds the silence, bounded by the idle timeout), a request must arrive
    whole within ``request_timeout`` of its first byte (so a peer dripping one byte per idle period
    cannot hold the connection), and a reply must be read whole within ``reply_timeout`` (else the
    connection is reset when it closes, so the kernel drops what it still holds of the reply). The server calls
    ``message_done`` after each reply.
    """

    request_timeout: Optional[float] = None
    idle_timeout: Optional[float] = None
    reply_timeout: Optional[float] = None
    handshake_budget: Optional[int] = None  # bytes the peer may send before its session starts
    message_budget: int = 0  # bytes one message may take once the session has started
    linger: float = 0.0
    moved = 0  # bytes of messages read and replies written since the session started
    #: Since when (``time.monotonic()``) a session's thread has waited for the rest of a message from the
    #: peer; None while it is not waiting for the peer.
    stalled_since: Optional[float] = None
    _kernel_timeouts = False
    _received = 0
    _pushback = b""
    _reset_on_close = False
    _inflater: Optional[Inflater] = None  # the peer speaks TZlibTransport (see ``inflate``)
    _deflater: Optional[Deflater] = None
    _inflated = 0  # bytes inflated against the budget (the handshake's, or the message's)

    def close(self) -> None:
        if self._reset_on_close and self.handle is not None:
            try:
                self.handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        super().close()

    def first_bytes(self) -> Tuple[bytes, Optional[Dialect]]:
        """Reads the connection's first bytes (up to SNIFF_BYTES, fewer if they already tell) and
        what they say; the bytes are read again by the transport (nothing is lost). Waits within the
        socket's deadline and timeout; the dialect is None if the peer stopped before it was clear."""

        def more(data: bytes) -> Optional[bytes]:
            try:
                return data + self.read(SNIFF_BYTES - len(data))
            except TTransport.TTransportException:
                return None

        data, dialect = sniff_stream(more)
        self._pushback = data + self._pushback
        return data, dialect

    def inflate(self) -> None:
        """From now on the peer's bytes are a zlib stream (TZlibTransport) and what is written to it is
        compressed; the bytes read so far (pushed back) are the stream's start. Inflated bytes count
        against the same budgets as wire bytes (before hello ``handshake_budget``, then ``message_budget``
        per message), so a small compressed message cannot inflate past them."""
        self._inflater, self._pushback = Inflater(self._pushback), b""
        self._deflater = Deflater()

    def start_session(self, limits: ServerLimits, linger: float) -> None:
        """The session's limits apply from now on; a message's first bytes are awaited ``linger``
        seconds at most (then ``read`` raises NoMessageYet and the server lets the connection wait
        in its selector, where the idle timeout bounds the silence)."""
        self.deadline = None
        self.idle_timeout = limits.idle_timeout
        self.request_timeout = limits.request_timeout
        self.reply_timeout = limits.reply_timeout
        self.message_budget = limits.max_message_bytes
        self.linger = linger
        self._inflated = 0
        handle = self.handle
        self._kernel_timeouts = not isinstance(handle, ssl.SSLSocket)
        if self._kernel_timeouts:
            # A socket in Python's timeout mode polls before every recv and send; a blocking socket
            # with kernel timeouts makes one syscall each (their EAGAIN is mapped to a timeout).
            set_kernel_timeouts(handle, receive=linger, send=limits.reply_timeout)
        else:
            handle.settimeout(linger)

    def pending_input(self) -> bool:
        """Whether bytes already received wait below the transport (pushed back, or decrypted by TLS)."""
        handle = self.handle
        return (bool(self._pushback) or (isinstance(handle, ssl.SSLSocket) and handle.pending() > 0)
                or (self._inflater is not None and self._inflater.pending))

    def read(self, sz: int) -> bytes:
        if self._pushback:
            data, self._pushback = self._pushback[:sz], self._pushback[sz:]
            if self.request_timeout is not None:  # a session's message: these bytes count against its budget
                self.message_started()
                self._count(len(data))
            return data
        if self._inflater is not None:
            return self._read_inflated(sz)
        return self._read_wire(sz)

    def _read_inflated(self, sz: int) -> bytes:
        """Bytes inflated from the peer's zlib stream, held to the budget wire bytes are held to."""
        handshake = self.request_timeout is None
        budget = self.handshake_budget if handshake else self.message_budget
        if budget is not None:
            if self._inflated >= budget:
                limit = "handshake_max_bytes" if handshake else "max_message_bytes"
                raise BudgetExceeded(TTransport.TTransportException.SIZE_LIMIT,
                                     f"more than {budget} bytes once inflated from zlib ({limit})")
            sz = min(sz, budget - self._inflated)
        data = self._inflater.read(min(sz, _READ_CHUNK), lambda: self._read_wire(_READ_CHUNK))
        self._inflated += len(data)
        return data

    def _read_wire(self, sz: int) -> bytes:
        """Bytes as the peer sent them, within the deadlines and byte budgets."""
        if self.request_timeout is None:  # handshake: one deadline and one byte budget for everything
            budget = self.handshake_budget
            if budget is None:
                return super().read(sz)
            if self._received >= budget:  # never read (or allocate) past the budget
                raise BudgetExceeded(TTransport.TTransportException.SIZE_LIMIT,
                                     f"more than {budget} bytes before hello() succeeded (handshake_max_bytes)")
            data = super().read(min(sz, budget - self._received))
            self._received += len(data)
            return data
        if self.deadline is None:  # the first bytes of a message: the rest must follow in time, and within its budget
            self._received = 0
            handle = self.handle
            if not self._kernel_timeouts:
                use_timeout(handle, self.linger)
            try:  # awaited for the linger only (read once per message: no helper call)
                data = _recv(handle, min(sz, _READ_CHUNK, self.message_budget))
            except (BlockingIOError, socket.timeout, TimeoutError):
                raise NoMessageYet() from None
            self.deadline = time.monotonic() + self.request_timeout
        else:
            if self._received >= self.message_budget:
                raise BudgetExceeded(TTransport.TTransportException.SIZE_LIMIT,
                                     f"a message of more than {self.message_budget} bytes (max_message_bytes)")
            size = min(sz, _READ_CHUNK, self.message_budget - self._received)
            self.stalled_since = time.monotonic()
            try:
                if self._kernel_timeouts:
                    data = self._read_more(size)
                else:
                    self._arm()
                    data = TSocket.TSocket.read(self, size)
            finally:
                self.stalled_since = None
        self._received += len(data)
        self.moved += len(data)
        return data

    def _read_more(self, size: int) -> bytes:
        """The rest of a message on a blocking socket: waits in poll() past the linger, up to the deadline."""
        handle = self.handle
        while True:
            try:
                return _recv(handle, size)
            except BlockingIOError:  # nothing yet: wait for more, as long as the deadline allows
                pass
            waiter = select.poll()
            waiter.register(handle, select.POLLIN)
            waiter.poll(time_left(self.deadline) * 1000)

    def write(self, buff: bytes) -> None:
        if self._deflater is not None:
            buff = self._deflater.compress(buff)
        if self.request_timeout is None:
            super().write(buff)
            return
        handle = self.handle
        self.moved += len(buff)
        if not self._kernel_timeouts:
            use_timeout(handle, self.reply_timeout)
        started = time.monotonic()
        try:
            # usually all of it. Never waiting here: a Unix socket's kernel send timeout starts again
            # whenever a few bytes move, so a blocking send would let a trickling reader stretch it
            sent = _send_now(handle, buff) if self._kernel_timeouts else handle.send(buff)
            if sent < len(buff):
                self._send_rest(memoryview(buff)[sent:], started + self.reply_timeout)
        except (BlockingIOError, socket.timeout, TimeoutError) as error:
            self._reset_on_close = True  # what the kernel still holds of the reply is dropped, not sent on
            raise TTransport.TTransportException(
                TTransport.TTransportException.TIMED_OUT,
                "the peer did not read its reply within reply_timeout", inner=error) from error
        except OSError as error:
            raise write_failed(error) from error

    def _send_rest(self, rest: memoryview, deadline: float) -> None:
        """The rest of a reply the peer is slow to read, by ``deadline`` (``reply_timeout`` after the
        reply's start). A send's own timeout may restart whenever a few bytes move (and ``sendall``
        sends again after each), so a peer reading a trickle at a time would hold the thread and the
        reply indefinitely: each wait is bounded by the time left instead."""
        handle = self.handle
        try:
            while rest:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("the whole reply was not read in time")
                if self._kernel_timeouts:
                    waiter = select.poll()
                    waiter.register(handle, select.POLLOUT)
                    if waiter.poll(remaining * 1000):
                        rest = rest[_send_now(handle, rest):]
                else:
                    handle.settimeout(remaining)
                    rest = rest[handle.send(rest):]
        finally:
            if not self._kernel_timeouts:
                handle.settimeout(self.reply_timeout)

    def message_started(self, buffered: int = 0) -> None:
        """A message began from bytes already buffered above the socket (``buffered`` of them, which
        count against its budget): its deadline and budget run."""
        if self.request_timeout is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.request_timeout
            self._received = 0
            self._count(buffered)

    def _count(self, size: int) -> None:
        """Counts bytes of the message that came without a read here (inflated ones, if zlib)."""
        if self._inflater is not None:
            self._inflated += size
        else:
            self._received += size

    def message_done(self) -> bool:
        """The reply is out: the next message starts a new deadline and budget. Returns ``pending_input()``
        (one call per message instead of two)."""
        if self.request_timeout is not None:
            self.deadline = None
            self._inflated = 0
        if self._kernel_timeouts and not self._pushback and self._inflater is None:  # a plain socket: nothing above it
            return False
        return self.pending_input()


def _send_now(handle: socket.socket, data: Union[bytes, memoryview]) -> int:
    """How much of ``data`` a blocking socket takes now, without waiting (0 when its buffer is full)."""
    try:
        return handle.send(data, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return 0


def _recv(handle: socket.socket, size: int) -> bytes:
    """``handle.recv`` reporting EOF and socket errors as TSocket.read does; timeouts (Python's, or the
    kernel's EAGAIN as BlockingIOError) are raised as they are, for the caller to map."""
    try:
        data = handle.recv(size)
    except (BlockingIOError, socket.timeout, TimeoutError):
        raise
    except OSError as error:
        raise TTransport.TTransportException(message="unexpected exception", inner=error) from error
    if not data:
        raise TTransport.TTransportException(TTransport.TTransportException.END_OF_FILE, "TSocket read 0 bytes")
    return data


def peek_first_bytes(handle: socket.socket) -> Tuple[bytes, Optional[Dialect]]:
    """A plain socket's first bytes and their dialect, left unread (for the TLS port: before wrapping);
    waits for them within the socket's timeout (10 s without one)."""
    deadline = time.monotonic() + (handle.gettimeout() or 10.0)

    def more(data: bytes) -> Optional[bytes]:
        if data and not _wait_for_more(handle, len(data), deadline):
            return None
        if time.monotonic() >= deadline:
            return None
        try:
            return handle.recv(SNIFF_BYTES, socket.MSG_PEEK) or None
        except OSError:
            return None

    return sniff_stream(more)


_POLL_CLOSED = getattr(select, "POLLRDHUP", 0)  # the peer closed its end (Linux)


def _wait_for_more(handle: socket.socket, have: int, deadline: float) -> bool:
    """Waits until more than the ``have`` bytes already received (and peeked at) are readable; False
    when the peer closed or the deadline passed first. Poll alone would wake at once for the bytes
    already there; the low-water mark makes it wait for new ones (without spinning)."""
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, have + 1)
    try:
        waiter = select.poll()
        waiter.register(handle, select.POLLIN | _POLL_CLOSED)
        events = waiter.poll(max(deadline - time.monotonic(), 0.0) * 1000)
    finally:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    return bool(events) and not events[0][1] & (_POLL_CLOSED | select.POLLHUP | select.POLLERR)
