"""The wire stack, built in one place for both ends: socket, transport, protocol, read limits.

``transport_factory`` and ``protocols.protocol_factory`` turn a ``config.Wire`` into Thrift's
factories; the server hands them to TThreadedServer and the client builds its stack with
``client_stack``. The socket layer (``sockets``) counts bytes and enforces deadlines *below* the
buffered/framed transport, so that transport stays a ``CReadableTransport`` and the C-accelerated
protocol keeps its fast path (wrapping the transport instead would silently fall back to pure Python).
"""

from __future__ import annotations

import socket
import ssl
import struct
from io import BytesIO
from typing import Any, Callable, NamedTuple, Optional, Tuple

from thrift.protocol import TCompactProtocol
from thrift.protocol.TProtocol import TProtocolBase, TProtocolFactory
from thrift.transport import THeaderTransport, TTransport

from ..config import ClientTLS, Wire
from .errors import FrameRefused, FrameTooLarge
from .framer import FRAME_START_BYTES, frame_limit
from .protocols import HEADER_INNER_PROTOCOLS, HeaderProtocolFactory, message_header, protocol_factory
from .sniff import thrift_start
from .sockets import CountingSocket
from .tls import client_tls_context
from .whole_arguments import PricesLargeArguments

__all__ = ["WholeBody", "BufferedTransport", "FramedTransport", "HeaderTransport", "transport_factory", "header_protocol",
           "server_stack", "client_stack", "client_parts", "ClientParts", "unread_bytes"]


#: A spent read buffer larger than this is dropped after its message (see keep_unread_input).
_KEEP_READ_BUFFER = 64 * 1024


class _Resettable:
    """A write buffer that can drop a half-written message before it is ever flushed, and a read
    buffer that can tell whether it holds bytes not yet read."""

    _wbuf_attribute: str  # Thrift keeps the buffers in name-mangled attributes and offers no reset
    _rbuf_attribute: str
    framed = True  # a message is read whole into the read buffer before it is decoded
    _pricing: Any = None  # armed while a call's arguments decode (PricesLargeArguments, unframed only)

    def keep_unread_input(self) -> int:
        """How many bytes already received wait in the read buffer (e.g. a pipelined next message); a
        buffer read to its end is dropped (it may hold a whole message of megabytes until the next)."""
        self._pricing = None  # the message's arguments are read (PricesLargeArguments)
        buffer = getattr(self, self._rbuf_attribute)
        position = buffer.tell()
        end = buffer.seek(0, 2)
        if end > position:
            buffer.seek(position)
            return end - position
        if end > _KEEP_READ_BUFFER:
            setattr(self, self._rbuf_attribute, BytesIO())
        return 0

    def rest_of_frame(self, more_than: int = 0) -> Optional[memoryview]:
        """The unread rest of the frame being read, without a copy (framed and THeader: the whole
        message is in memory before it is decoded); None for an unframed stream (see
        ``PricesLargeArguments``), or when the rest is not more than ``more_than`` bytes."""
        if not self.framed:
            return None
        buffer = getattr(self, self._rbuf_attribute)
        data, position = buffer.getvalue(), buffer.tell()
        if len(data) - position <= more_than:
            return None
        return memoryview(data)[position:]

    def discard_rest_of_frame(self) -> None:
        """Reads past what is left of the frame (a message refused before it was decoded)."""
        getattr(self, self._rbuf_attribute).seek(0, 2)

    def discard_unflushed(self) -> None:
        """Forgets bytes written since the last flush (e.g. a message whose encoding failed)."""
        setattr(self, self._wbuf_attribute, BytesIO())

    def has_unflushed(self) -> bool:
        """Whether part of a message was written and not flushed (a reply was being encoded)."""
        return getattr(self, self._wbuf_attribute).tell() > 0


class _RemembersEnd:
    """Keeps the error of a failed refill: the C decoder may replace it with its own (a map header cut
    short reads as "got wrong ttype"), and a request that ended early must be reported as such."""

    refill_error: Optional[Exception] = None

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        try:
            return super().cstringio_refill(partialread, reqlen)
        except Exception as error:
            self.refill_error = error
            raise


class WholeBody(_Resettable, TTransport.TTransportBase, TTransport.CReadableTransport):
    """Reads from one whole body in memory (HTTP's, either end): the end of the body is the end of
    the message, so a read past it fails (END_OF_FILE, ``ended``) instead of waiting for more."""

    _rbuf_attribute = "_rbuf"
    _wbuf_attribute = "_wbuf"
    ended = "the HTTP body ended before its Thrift message did"
    refill_error: Optional[Exception] = None

    def read(self, sz: int) -> bytes:
        data = self._rbuf.read(sz)
        if not data and sz:
            self._end()
        return data

    def _end(self) -> None:
        self.refill_error = TTransport.TTransportException(TTransport.TTransportException.END_OF_FILE, self.ended)
        raise self.refill_error

    def write(self, buf: bytes) -> None:
        self._wbuf.write(buf)

    @property
    def cstringio_buf(self) -> BytesIO:
        return self._rbuf

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        self._end()  # the body has no more


def _spent(buffer: BytesIO) -> bool:
    """Whether every byte of the read buffer was read."""
    rest = buffer.read()
    if rest:
        buffer.seek(-len(rest), 1)
    return not rest


class BufferedTransport(_Resettable, _RemembersEnd, PricesLargeArguments, TTransport.TBufferedTransport):
    framed = False
    _wbuf_attribute = "_TBufferedTransport__wbuf"
    _rbuf_attribute = "_TBufferedTransport__rbuf"

    def read_whole(self, message: bytes) -> bool:
        """Takes ``message``, whole in memory (cut by ``MessageFramer``), into the read buffer as the
        refill that would read it does, when it fits one refill and the last message was read to its end;
        False (nothing taken) otherwise. Larger ones are read in refills, which price their arguments."""
        if len(message) > self._TBufferedTransport__rbuf_size or not _spent(self._TBufferedTransport__rbuf):
            return False
        self._TBufferedTransport__rbuf = BytesIO(message)
        return True


def _frame_start(trans: TTransport.TTransportBase, size: int,
                 header_of: Callable[[bytes], Optional[Tuple[str, int]]]) -> Optional[Tuple[str, int]]:
    """(name, seqid) of the message a frame of ``size`` bytes starts, read from its first bytes (as
    far as the peer sends them, its byte budget allows and ``header_of`` needs); None if unreadable."""
    want = min(size, FRAME_START_BYTES)
    data = b""
    header = None
    while len(data) < want and header is None:
        try:
            data += trans.read(want - len(data))
        except TTransport.TTransportException:  # the peer stopped, its time or its budget is up
            break
        header = header_of(data)
    return header


class FramedTransport(_Resettable, _RemembersEnd, TTransport.TFramedTransport):
    _wbuf_attribute = "_TFramedTransport__wbuf"
    _rbuf_attribute = "_TFramedTransport__rbuf"

    def readFrame(self) -> None:
        """Thrift's, except that a frame over the limit is refused with the message it starts
        (``FrameTooLarge``) so that it can be answered."""
        trans, limit = self._TFramedTransport__trans, self._TFramedTransport__max_frame_size
        size, = struct.unpack("!i", trans.readAll(4))
        if size < 0:
            raise TTransport.TTransportException(TTransport.TTransportException.NEGATIVE_SIZE,
                                                 f"Read a negative frame size ({size})")
        if size > limit:
            raise FrameTooLarge(size, limit, _frame_start(trans, size, message_header))
        setattr(self, self._rbuf_attribute, BytesIO(trans.readAll(size)))

    def read_whole(self, message: bytes) -> bool:
        """Takes ``message``, a frame in memory (its length first: a whole one cut by ``MessageFramer``,
        or the first bytes of one refused, of which only the header is read), into the read buffer as
        ``readFrame`` does, when the last frame was read to its end and this one is within the limit;
        False (nothing taken) otherwise."""
        if len(message) - 4 > self._TFramedTransport__max_frame_size or not _spent(self._TFramedTransport__rbuf):
            return False
        self._TFramedTransport__rbuf = BytesIO(memoryview(message)[4:])
        return True


#: The largest frame a 4-byte signed length can announce.
_LARGEST_FRAME = 0x7FFFFFFF


class HeaderTransport(_Resettable, _RemembersEnd, THeaderTransport.THeaderTransport):
    """THeader without read transforms: a compressed frame would let a few bytes on the wire (all the
    byte budgets see) decode to megabytes, so a frame with any transform is refused (``FrameRefused``),
    as is one whose protocol is neither binary nor compact; so is a frame over the limit (``FrameTooLarge``).
    Each refusal leaves the transport set to answer in the frame's own dialect. The frame limit bounds
    what is read only: what this end writes is sized by its own code, as in the other dialects."""

    _wbuf_attribute = "_write_buffer"
    _rbuf_attribute = "_read_buffer"

    @property
    def framed(self) -> bool:  # type: ignore[override]
        return self._client_type not in (THeaderTransport.THeaderClientType.UNFRAMED_BINARY,
                                         THeaderTransport.THeaderClientType.UNFRAMED_COMPACT)

    def flush(self) -> None:
        read_limit, self._max_frame_size = self._max_frame_size, _LARGEST_FRAME  # Thrift checks writes too
        try:
            super().flush()
        finally:
            self._max_frame_size = read_limit

    def readFrame(self, req_sz: int) -> None:
        first_word = self._transport.readAll(4)
        size, = struct.unpack("!i", first_word)
        if size > self._max_frame_size and thrift_start(first_word) is None:  # framed, not a bare message
            raise FrameTooLarge(size, self._max_frame_size, _frame_start(self._transport, size, self._message_header))
        self._transport = _Unread(first_word, self._transport)
        try:
            super().readFrame(req_sz)
        finally:
            self._transport = self._transport.transport

    def _message_header(self, data: bytes) -> Optional[Tuple[str, int]]:
        """(name, seqid) of the message a frame starting with ``data`` holds; takes the frame's dialect."""
        if data[:2] == b"\x0f\xff":  # THeader's magic: the message follows the frame's header
            self._client_type = THeaderTransport.THeaderClientType.HEADERS
            try:
                data = self._parse_header_format(BytesIO(data)).getvalue()
            except Exception:  # cut short, or a frame refused for its header anyway
                return None
        else:
            dialect = thrift_start(data)
            client_type = {"binary": THeaderTransport.THeaderClientType.FRAMED_BINARY,
                           "compact": THeaderTransport.THeaderClientType.FRAMED_COMPACT}.get(dialect)
            if client_type in self._allowed_client_types:
                self._client_type = client_type
        return message_header(data)

    def _parse_header_format(self, buffer: BytesIO) -> BytesIO:
        start = buffer.tell()
        header = TTransport.TMemoryBuffer(buffer.read(FRAME_START_BYTES))
        header.read(10)  # magic, flags, sequence id, header length
        protocol_id = TCompactProtocol.readVarint(header)
        transforms = [TCompactProtocol.readVarint(header) for _ in range(TCompactProtocol.readVarint(header))]
        if transforms:
            compression = " (compression)" if transforms == [THeaderTransport.THeaderTransformID.ZLIB] else ""
            raise FrameRefused(f"THeader transform {', '.join(map(str, transforms))} is not accepted by this "
                               f"server{compression}")
        if protocol_id not in HEADER_INNER_PROTOCOLS:
            raise FrameRefused(f"THeader protocol id {protocol_id} is not binary (0) or compact (2)")
        buffer.seek(start)
        return super()._parse_header_format(buffer)


class _Unread(TTransport.TTransportBase):
    """``transport`` with ``data`` put back in front of what it reads next."""

    def __init__(self, data: bytes, transport: TTransport.TTransportBase) -> None:
        self.data = data
        self.transport = transport

    def read(self, sz: int) -> bytes:
        if not self.data:
            return self.transport.read(sz)
        data, self.data = self.data[:sz], self.data[sz:]
        return data


#: What a THeader server accepts: THeader frames, and the headerless dialects THeader detects itself.
_EVERY_HEADER_CLIENT = (THeaderTransport.THeaderClientType.HEADERS, THeaderTransport.THeaderClientType.FRAMED_BINARY,
                        THeaderTransport.THeaderClientType.UNFRAMED_BINARY,
                        THeaderTransport.THeaderClientType.FRAMED_COMPACT,
                        THeaderTransport.THeaderClientType.UNFRAMED_COMPACT)
#: THeader's id of the protocol inside its frames.
_HEADER_PROTOCOL_IDS = {"binary": THeaderTransport.THeaderSubprotocolID.BINARY,
                        "compact": THeaderTransport.THeaderSubprotocolID.COMPACT}


class _HeaderTransportFactory(TTransport.TTransportFactoryBase):
    """THeader transports writing ``protocol`` inside their frames, frames up to ``max_frame_bytes``."""

    def __init__(self, client_types: tuple, protocol: str, max_frame_bytes: int) -> None:
        self._client_types = client_types
        self._protocol_id = _HEADER_PROTOCOL_IDS[protocol]
        self._max_frame_bytes = max_frame_bytes

    def getTransport(self, trans: TTransport.TTransportBase) -> TTransport.TTransportBase:
        transport = HeaderTransport(trans, self._client_types, self._protocol_id)
        transport.set_max_frame_size(self._max_frame_bytes)
        return transport


def header_protocol(sock: TTransport.TTransportBase, max_message_bytes: int,
                    max_container_items: Optional[int], framed: bool = False) -> TProtocolBase:
    """A THeader protocol over ``sock`` that serves THeader clients (and the headerless dialects it
    detects itself), answering each in its own dialect, with the same read limits as the others.
    ``framed``: each THeader frame comes (and is answered) inside a framed transport's frame, as
    Apache's clients write THeader over TFramedTransport."""
    limit = frame_limit(max_message_bytes)
    if framed:
        sock = FramedTransport(sock, max_frame_size=limit)
    transport = _HeaderTransportFactory(_EVERY_HEADER_CLIENT, "binary", limit).getTransport(sock)
    limits = dict(string_length_limit=max_message_bytes, container_length_limit=max_container_items)
    return HeaderProtocolFactory(_EVERY_HEADER_CLIENT, limits).getProtocol(transport)


class _TransportFactory(TTransport.TTransportFactoryBase):
    def __init__(self, transport_class: type, **options: object) -> None:
        self._class = transport_class
        self._options = options

    def getTransport(self, trans: TTransport.TTransportBase) -> TTransport.TTransportBase:
        return self._class(trans, **self._options)


def transport_factory(wire: Wire, max_frame_bytes: int) -> TTransport.TTransportFactoryBase:
    """Buffered, framed or THeader (frames up to ``max_frame_bytes``), each able to drop an unflushed reply."""
    if wire.transport == "header":  # a connection that chose THeader speaks only THeader
        return _HeaderTransportFactory((THeaderTransport.THeaderClientType.HEADERS,), wire.protocol, max_frame_bytes)
    if wire.transport == "framed":
        return _TransportFactory(FramedTransport, max_frame_size=max_frame_bytes)
    return _TransportFactory(BufferedTransport)


def server_stack(wire: Wire, sock: TTransport.TTransportBase, max_message_bytes: int,
                 max_container_items: Optional[int]) -> Tuple[TTransport.TTransportBase, TProtocolBase]:
    """The server's transport and protocol for ``wire`` on ``sock``, reading messages of at most
    ``max_message_bytes`` (frames included) with at most ``max_container_items`` per container."""
    transport = transport_factory(wire, frame_limit(max_message_bytes)).getTransport(sock)
    return transport, protocol_factory(wire, max_message_bytes, max_container_items).getProtocol(transport)


class ClientParts(NamedTuple):
    """What every connection of a client with the same settings can share (``client_parts``)."""

    tls: Optional[ssl.SSLContext]
    transport_factory: Optional[TTransport.TTransportFactoryBase]  # None over http (one transport of its own)
    protocol_factory: TProtocolFactory


def client_parts(wire: Wire, max_reply_bytes: int, max_reply_items: int,
                 tls: Optional[ClientTLS] = None) -> ClientParts:
    """The TLS context (its certificate files read now) and the factories of a client's stacks: made once
    for its connections, not per connection. ValueError for TLS files that cannot be loaded."""
    return ClientParts(None if tls is None else client_tls_context(tls),
                       None if wire.transport == "http" else transport_factory(wire, max_reply_bytes),
                       protocol_factory(wire, max_reply_bytes, max_reply_items))


def client_stack(
    host: str, port: int, wire: Wire, max_reply_bytes: int, max_reply_items: int, tls: Optional[ClientTLS] = None,
    unix_socket: Optional[str] = None, parts: Optional[ClientParts] = None
) -> Tuple["CountingSocket", TTransport.TTransportBase, TProtocolBase]:
    """The client's socket (to ``unix_socket`` when given, else to host and port), transport and
    protocol, unopened; ``parts``: ``client_parts`` of the same settings, made before."""
    if parts is None:
        parts = client_parts(wire, max_reply_bytes, max_reply_items, tls)
    sock = CountingSocket(host, port, socket_family=_family_for(host), tls=parts.tls,
                          server_hostname=None if tls is None else tls.server_hostname, unix_socket=unix_socket)
    if wire.transport == "http":
        from .http_client import HttpClientTransport  # imports this module's transports

        transport = HttpClientTransport(sock, f"{host}:{port}", wire.protocol, max_reply_bytes)
        return sock, transport, parts.protocol_factory.getProtocol(transport)
    transport = parts.transport_factory.getTransport(sock)
    return sock, transport, parts.protocol_factory.getProtocol(transport)


def unread_bytes(transport: TTransport.CReadableTransport) -> int:
    """Bytes the client's transport has read from the socket but not yet handed to the decoder
    (after a pipelined hello's answer, the start of the next reply may already be there)."""
    with transport.cstringio_buf.getbuffer() as view:
        return view.nbytes - transport.cstringio_buf.tell()


def _family_for(host: str) -> int:
    """AF_INET6 for IPv6 literals, AF_UNSPEC (both, in resolver order) otherwise."""
    return socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
