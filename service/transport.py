"""The wire stack, built in one place for both ends: TSocket, TBufferedTransport, TBinaryProtocol.

The socket layer counts bytes and notes when reply bytes arrive; it sits *below* TBufferedTransport so
the buffered transport stays a ``CReadableTransport`` and the C-accelerated protocol keeps its fast
path (wrapping the buffered transport instead would silently fall back to pure Python).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from io import BytesIO
from typing import Optional

from thrift.protocol import TBinaryProtocol
from thrift.protocol.TProtocol import TProtocolBase, TProtocolFactory
from thrift.transport import TSocket, TTransport

from .config import ClientTLS, ServerTLS, check_protocol

__all__ = [
    "accelerated_available",
    "WireProtocolFactory",
    "is_timeout",
    "DeadlineSocket",
    "CountingSocket",
    "ResettableBufferedTransport",
    "client_stack",
    "server_tls_context",
]

logger = logging.getLogger(__name__)


def accelerated_available() -> bool:
    """Whether Thrift's C extension (fastbinary) is importable."""
    try:
        from thrift.protocol import fastbinary  # noqa: F401
    except ImportError:
        return False
    return True


class WireProtocolFactory(TProtocolFactory):
    """Strict binary protocol ("accelerated": the C extension; "binary": pure Python) with read limits.

    ``max_string_bytes`` caps every string/binary length read, ``max_container_items`` every list,
    set and map size (None: no cap). Strict reads refuse messages without a version header.
    """

    def __init__(self, protocol: str, max_string_bytes: Optional[int], max_container_items: Optional[int]) -> None:
        check_protocol(protocol)
        if protocol == "accelerated" and not accelerated_available():
            logger.warning("thrift's C extension is missing: the accelerated protocol runs in pure Python")
        self._class = (TBinaryProtocol.TBinaryProtocolAccelerated if protocol == "accelerated"
                       else TBinaryProtocol.TBinaryProtocol)
        self._options = dict(strictRead=True, strictWrite=True, string_length_limit=max_string_bytes,
                             container_length_limit=max_container_items)

    def getProtocol(self, trans: TTransport.TTransportBase) -> TProtocolBase:
        return self._class(trans, **self._options)


def is_timeout(error: BaseException) -> bool:
    """Whether a transport error was a timeout (older thrift and Python 3.9 report it only in ``inner``)."""
    if isinstance(error, TTransport.TTransportException) and error.type == TTransport.TTransportException.TIMED_OUT:
        return True
    return isinstance(getattr(error, "inner", None), (socket.timeout, TimeoutError))


class DeadlineSocket(TSocket.TSocket):
    """A TSocket whose reads and writes can share one deadline (``time.monotonic()`` seconds).

    Without a deadline the socket's own timeout bounds each read; with one, the whole exchange is
    bounded, so a peer that drips bytes cannot stretch it.
    """

    deadline: Optional[float] = None

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TTransport.TTransportException(TTransport.TTransportException.TIMED_OUT, "deadline passed")
        self.handle.settimeout(remaining)

    def read(self, sz: int) -> bytes:
        if self.deadline is not None:
            self._arm()
        return super().read(sz)

    def write(self, buff: bytes) -> None:
        if self.deadline is None:
            super().write(buff)
            return
        self._arm()
        try:
            self.handle.sendall(buff)  # one timeout for the whole buffer, unlike a send() loop
        except OSError as error:
            kind = (TTransport.TTransportException.TIMED_OUT if isinstance(error, (socket.timeout, TimeoutError))
                    else TTransport.TTransportException.UNKNOWN)
            raise TTransport.TTransportException(kind, f"write failed: {error}", inner=error) from error


class CountingSocket(DeadlineSocket):
    """The client's socket: counts bytes each way and notes when the first reply bytes of a call arrive.

    With ``tls`` (an SSLContext) the connection is wrapped before connecting, so ``open()`` performs
    the TLS handshake within the connect timeout and the counts are of plaintext bytes.
    """

    def __init__(self, host: str, port: int, socket_family: int = socket.AF_UNSPEC,
                 tls: Optional[ssl.SSLContext] = None, server_hostname: Optional[str] = None) -> None:
        super().__init__(host, port, socket_family=socket_family)
        self.bytes_out = 0
        self.bytes_in = 0
        self.first_read_at: Optional[float] = None
        self._tls = tls
        self._server_hostname = server_hostname or host

    def _do_open(self, family: int, socktype: int) -> socket.socket:
        handle = socket.socket(family, socktype)
        if self._tls is None:
            return handle
        return self._tls.wrap_socket(handle, server_hostname=self._server_hostname)

    def begin_exchange(self, timeout: Optional[float]) -> None:
        """Starts a call: its reads and writes must end within ``timeout`` seconds (None: no limit)."""
        self.first_read_at = None
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def read(self, sz: int) -> bytes:
        data = super().read(sz)
        if self.first_read_at is None:
            self.first_read_at = time.perf_counter()
        self.bytes_in += len(data)
        return data

    def write(self, buff: bytes) -> None:
        super().write(buff)
        self.bytes_out += len(buff)


class ResettableBufferedTransport(TTransport.TBufferedTransport):
    """TBufferedTransport that can drop a half-written message before it is ever flushed."""

    def discard_unflushed(self) -> None:
        """Forgets bytes written since the last flush (e.g. a message whose encoding failed)."""
        # TBufferedTransport keeps its write buffer in a name-mangled attribute and offers no reset.
        self._TBufferedTransport__wbuf = BytesIO()


def client_stack(
    host: str, port: int, protocol: str, max_reply_bytes: int, tls: Optional[ClientTLS] = None
) -> "tuple[CountingSocket, ResettableBufferedTransport, TProtocolBase]":
    """The client's socket, buffered transport and protocol, unopened."""
    context = None if tls is None else _client_tls_context(tls)
    sock = CountingSocket(host, port, socket_family=_family_for(host), tls=context,
                          server_hostname=None if tls is None else tls.server_hostname)
    transport = ResettableBufferedTransport(sock)
    return sock, transport, WireProtocolFactory(protocol, max_reply_bytes, max_reply_bytes).getProtocol(transport)


def _family_for(host: str) -> int:
    """AF_INET6 for IPv6 literals, AF_UNSPEC (both, in resolver order) otherwise."""
    return socket.AF_INET6 if ":" in host else socket.AF_UNSPEC


def _client_tls_context(tls: ClientTLS) -> ssl.SSLContext:
    """Verifies the server (certificate and host name); presents a client certificate if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def server_tls_context(tls: ServerTLS) -> ssl.SSLContext:
    """The server's context; with a client CA, clients without a certificate it signed are refused."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.client_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.verify_mode = ssl.CERT_REQUIRED if tls.client_ca_file else ssl.CERT_NONE
    return context
