"""Deadline sockets: one deadline per exchange, kernel timeouts, and the client's socket.

``DeadlineSocket`` bounds a whole exchange by one deadline (the server's end of a connection,
``connection_socket.ConnectionSocket``, builds on it); ``CountingSocket`` is the client's (counts bytes,
notes the first reply bytes, wraps TLS inside the connect timeout).
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from typing import Optional, Tuple, Union

from thrift.transport import TSocket, TTransport

from .sniff import SNIFF_BYTES

__all__ = ["DeadlineSocket", "CountingSocket", "no_delay", "is_timeout", "is_reset", "time_left", "spoke_or_closed",
           "wait_readable"]


def is_timeout(error: BaseException) -> bool:
    """Whether a transport error was a timeout (older thrift and Python 3.9 report it only in ``inner``)."""
    if isinstance(error, TTransport.TTransportException) and error.type == TTransport.TTransportException.TIMED_OUT:
        return True
    # BlockingIOError: EAGAIN on a blocking socket, which only a kernel timeout (SO_RCVTIMEO) causes
    return isinstance(getattr(error, "inner", None), (socket.timeout, TimeoutError, BlockingIOError))


def is_reset(error: BaseException) -> bool:
    """Whether a transport error was the peer resetting the connection (ECONNRESET, or EPIPE on a
    write): Thrift reports both only as an "unexpected exception" around the OSError."""
    return isinstance(getattr(error, "inner", None), (ConnectionResetError, BrokenPipeError, ConnectionAbortedError))


#: How far a socket timeout may differ from the time left before the deadline before it is re-set: a
#: deadline may be overshot by this much, and a fast exchange re-sets nothing.
_DEADLINE_SLACK = 0.05


def time_left(deadline: float) -> float:
    """Seconds left before ``deadline`` (``time.monotonic()``); TIMED_OUT once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TTransport.TTransportException(TTransport.TTransportException.TIMED_OUT, "deadline passed")
    return remaining


class DeadlineSocket(TSocket.TSocket):
    """A TSocket whose reads and writes can share one deadline (``time.monotonic()`` seconds).

    Without a deadline the socket's own timeout bounds each read; with one, the whole exchange is
    bounded, so a peer that drips bytes cannot stretch it.
    """

    deadline: Optional[float] = None

    def _arm(self) -> None:
        remaining = time_left(self.deadline)
        current = self.handle.gettimeout()
        if current is None or abs(current - remaining) > _DEADLINE_SLACK:  # each settimeout is a syscall
            self.handle.settimeout(remaining)

    def read(self, sz: int) -> bytes:
        if self.deadline is not None:
            self._arm()
        return super().read(sz)

    def write(self, buff: bytes) -> None:
        if self.deadline is None:
            super().write(buff)
            return
        self._send_all(buff)

    def _send_all(self, buff: bytes, flags: int = 0) -> None:
        # Not sendall: its sends each get the socket's whole timeout again (a kernel one restarts whenever
        # a few bytes move), so a peer reading slowly could stretch the write past the deadline.
        rest = memoryview(buff)
        try:
            while rest:
                if self.deadline is not None:
                    self._arm()  # the time left, or TIMED_OUT once it is gone
                rest = rest[self.handle.send(rest, flags):]
        except OSError as error:
            raise write_failed(error) from error


def spoke_or_closed(handle: socket.socket) -> bool:
    """Whether the peer has sent bytes or closed the connection, found without waiting and, on a plain
    socket, without taking a byte. With TLS a byte (or the server's session tickets, if that is all there
    is) may be read: a connection found to have spoken is to be given up."""
    tls = isinstance(handle, ssl.SSLSocket)
    if tls and handle.pending():
        return True
    timeout = handle.gettimeout()
    handle.settimeout(0)
    try:
        handle.recv(1) if tls else handle.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True
    finally:
        handle.settimeout(timeout)
    return True


def no_delay(handle: socket.socket) -> None:
    """Sends each write at once (TCP_NODELAY): every write here is a whole message, and Nagle would hold
    an answer back until the peer acknowledged the previous one (40 ms with delayed ACKs) whenever a
    peer pipelines its calls."""
    try:
        handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (e.g. a Unix socket), or already reset by the peer
        pass


def use_timeout(handle: socket.socket, seconds: Optional[float]) -> None:
    """settimeout costs a syscall each time (CPython re-sets O_NONBLOCK): skip it when unchanged."""
    if handle.gettimeout() != seconds:
        handle.settimeout(seconds)


def write_failed(error: OSError) -> TTransport.TTransportException:
    kind = (TTransport.TTransportException.TIMED_OUT if isinstance(error, (socket.timeout, TimeoutError, BlockingIOError))
            else TTransport.TTransportException.UNKNOWN)
    return TTransport.TTransportException(kind, f"write failed: {error}", inner=error)


def set_kernel_timeouts(handle: socket.socket, receive: float, send: float) -> None:
    """Makes ``handle`` blocking, each recv and send bounded by the kernel (0: no bound)."""
    if handle.gettimeout() is not None:
        handle.settimeout(None)
    for option, seconds in ((socket.SO_RCVTIMEO, receive), (socket.SO_SNDTIMEO, send)):
        whole = int(seconds)
        handle.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))


class CountingSocket(DeadlineSocket):
    """The client's socket: counts bytes each way and notes when the first reply bytes of a call arrive.

    With ``tls`` (an SSLContext) the connection is wrapped before connecting, so ``open()`` performs
    the TLS handshake within the connect timeout and the counts are of plaintext bytes.
    """

    def __init__(self, host: str, port: int, socket_family: int = socket.AF_UNSPEC,
                 tls: Optional[ssl.SSLContext] = None, server_hostname: Optional[str] = None,
                 unix_socket: Optional[str] = None) -> None:
        super().__init__(host, port, unix_socket=unix_socket, socket_family=socket_family)
        self.bytes_out = 0
        self.bytes_in = 0
        self.first_read_at: Optional[float] = None
        self._tls = tls
        self._server_hostname = server_hostname or host

    def _do_open(self, family: int, socktype: int) -> socket.socket:
        handle = socket.socket(family, socktype)
        no_delay(handle)
        if self._tls is None:
            return handle
        return self._tls.wrap_socket(handle, server_hostname=self._server_hostname)

    first_reply = b""  # the first bytes of the last reply (to explain one that cannot be read)
    _send_flags = 0    # for the next write only (MSG_MORE: see send_with_next)
    _held = False      # a write sent with MSG_MORE may still wait in the kernel for the next one
    _kernel_timeout: Tuple[Optional[socket.socket], float] = (None, 0.0)  # (socket, SO_RCVTIMEO/SO_SNDTIMEO set)

    def _arm(self) -> None:
        """The exchange's deadline as kernel timeouts on a blocking socket: one system call per read and
        write instead of Python's poll-then-call (TLS keeps Python's timeout mode)."""
        handle = self.handle
        if isinstance(handle, ssl.SSLSocket):
            super()._arm()
            return
        remaining = self.deadline - time.monotonic()  # time_left's, written out: this runs per read and write
        if remaining <= 0:
            raise TTransport.TTransportException(TTransport.TTransportException.TIMED_OUT, "deadline passed")
        armed, current = self._kernel_timeout
        if armed is not handle or abs(current - remaining) > _DEADLINE_SLACK:  # each setsockopt is a syscall
            set_kernel_timeouts(handle, receive=remaining, send=remaining)
            self._kernel_timeout = (handle, remaining)

    def _without_deadline(self) -> None:
        """An exchange without a deadline waits as long as it takes: no timeout left from an earlier one."""
        handle = self.handle
        if self._kernel_timeout[0] is handle:
            set_kernel_timeouts(handle, receive=0, send=0)
            self._kernel_timeout = (None, 0.0)
        elif handle is not None and handle.gettimeout() is not None:
            handle.settimeout(None)

    def begin_exchange(self, timeout: Optional[float]) -> Optional[float]:
        """Starts a call: its reads and writes must end within ``timeout`` seconds (None: no limit);
        returns that deadline."""
        self.first_read_at = None
        self.first_reply = b""
        self.deadline = None if timeout is None else time.monotonic() + timeout
        return self.deadline

    def expect_reply(self, deadline: Optional[float]) -> None:
        """Reads from now on are one reply's, due by ``deadline`` (a pipelined request's own)."""
        self.first_read_at = None
        self.first_reply = b""
        self.deadline = deadline

    def read(self, sz: int) -> bytes:
        if self.deadline is None:
            self._without_deadline()
        if self._held:  # its answer is awaited before any other write: send it now
            self._held = False
            no_delay(self.handle)  # setting TCP_NODELAY pushes out what the kernel holds
        data = super().read(sz)
        if self.first_read_at is None:
            self.first_read_at = time.perf_counter()
            self.first_reply = data[:SNIFF_BYTES]
        self.bytes_in += len(data)
        return data

    def send_with_next(self) -> None:
        """The next write waits for the one after it, so both leave in one segment (a pipelined hello
        and the first call): MSG_MORE. A read before that write sends it at once (the kernel would
        after 200 ms). Linux, without TLS."""
        if not isinstance(self.handle, ssl.SSLSocket):
            self._send_flags = getattr(socket, "MSG_MORE", 0)

    def write(self, buff: bytes) -> None:
        if self.deadline is None:
            self._without_deadline()
        if self._send_flags:
            flags, self._send_flags = self._send_flags, 0
            self._send_all(buff, flags)
            self._held = True
        else:
            super().write(buff)
            self._held = False
        self.bytes_out += len(buff)


def wait_readable(handle: Union[socket.socket, int], timeout: float) -> bool:
    """Whether ``handle`` (a socket or a descriptor) has input (or an end) within ``timeout`` seconds; any
    descriptor number (select() refuses those past 1024)."""
    waiter = select.poll()
    waiter.register(handle, select.POLLIN)
    return bool(waiter.poll(max(timeout, 0.0) * 1000))
