"""The wire stack, built in one place for both ends: socket, transport, protocol, read limits.

``transport_factory`` and ``protocol_factory`` turn a ``config.Wire`` into Thrift's factories; the
server hands them to TThreadedServer and the client builds its stack with ``client_stack``. The socket
layer counts bytes and enforces deadlines *below* the buffered/framed transport, so that transport
stays a ``CReadableTransport`` and the C-accelerated protocol keeps its fast path (wrapping the
transport instead would silently fall back to pure Python).
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import ssl
import struct
import threading
import time
from io import BytesIO
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol
from thrift.protocol.TProtocol import TProtocolBase, TProtocolException, TProtocolFactory
from thrift.Thrift import TApplicationException, TFrozenDict, TType
from thrift.transport import THeaderTransport, TSocket, TTransport

from .config import ClientTLS, ServerLimits, ServerTLS, Wire

__all__ = [
    "Dialect",
    "sniff",
    "explain_reply",
    "explain_tls_error",
    "accelerated_available",
    "protocol_factory",
    "UndecodableValue",
    "UndecodableMethodName",
    "AnswerableReadError",
    "FrameTooLarge",
    "FrameRefused",
    "skip_value",
    "transport_factory",
    "frame_limit",
    "is_timeout",
    "is_reset",
    "DeadlineSocket",
    "ConnectionSocket",
    "NoMessageYet",
    "CountingSocket",
    "client_stack",
    "unread_bytes",
    "server_tls_context",
    "no_delay",
]

logger = logging.getLogger(__name__)


def accelerated_available() -> bool:
    """Whether Thrift's C extension (fastbinary) is importable."""
    try:
        from thrift.protocol import fastbinary  # noqa: F401
    except ImportError:
        return False
    return True


class _Resettable:
    """A write buffer that can drop a half-written message before it is ever flushed, and a read
    buffer that can tell whether it holds bytes not yet read."""

    _wbuf_attribute: str  # Thrift keeps the buffers in name-mangled attributes and offers no reset
    _rbuf_attribute: str

    def has_buffered_input(self) -> bool:
        """Whether bytes already received wait in the read buffer (e.g. a pipelined next message)."""
        buffer = getattr(self, self._rbuf_attribute)
        position = buffer.tell()
        end = buffer.seek(0, 2)
        buffer.seek(position)
        return end > position

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


class BufferedTransport(_Resettable, _RemembersEnd, TTransport.TBufferedTransport):
    _wbuf_attribute = "_TBufferedTransport__wbuf"
    _rbuf_attribute = "_TBufferedTransport__rbuf"


#: Of a frame refused by its length, at most this much is read: enough for any message header.
_FRAME_START_BYTES = 64 * 1024


def _frame_start(trans: TTransport.TTransportBase, size: int,
                 header_of: Callable[[bytes], Optional[Tuple[str, int]]]) -> Optional[Tuple[str, int]]:
    """(name, seqid) of the message a frame of ``size`` bytes starts, read from its first bytes (as
    far as the peer sends them, its byte budget allows and ``header_of`` needs); None if unreadable."""
    want = min(size, _FRAME_START_BYTES)
    data = b""
    header = None
    while len(data) < want and header is None:
        try:
            data += trans.read(want - len(data))
        except TTransport.TTransportException:  # the peer stopped, its time or its budget is up
            break
        header = header_of(data)
    return header


def _message_header(data: bytes) -> Optional[Tuple[str, int]]:
    """(name, seqid) of the binary or compact message ``data`` starts, if it holds the whole header."""
    protocol_class = {"binary": _BinaryProtocol, "compact": _CompactProtocol}.get(_thrift_start(data))
    if protocol_class is None:
        return None
    try:
        name, _, seqid = protocol_class(TTransport.TMemoryBuffer(data)).readMessageBegin()
    except UndecodableMethodName as error:
        return error.name, error.seqid
    except Exception:  # cut short, or not a message header after all
        return None
    return name, seqid


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
            raise FrameTooLarge(size, limit, _frame_start(trans, size, _message_header))
        setattr(self, self._rbuf_attribute, BytesIO(trans.readAll(size)))


class HeaderTransport(_Resettable, _RemembersEnd, THeaderTransport.THeaderTransport):
    """THeader without read transforms: a compressed frame would let a few bytes on the wire (all the
    byte budgets see) decode to megabytes, so a frame with any transform is refused (``FrameRefused``),
    as is one whose protocol is neither binary nor compact; so is a frame over the limit (``FrameTooLarge``).
    Each refusal leaves the transport set to answer in the frame's own dialect."""

    _wbuf_attribute = "_write_buffer"
    _rbuf_attribute = "_read_buffer"

    def readFrame(self, req_sz: int) -> None:
        first_word = self._transport.readAll(4)
        size, = struct.unpack("!i", first_word)
        if size > self._max_frame_size and _thrift_start(first_word) is None:  # framed, not a bare message
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
            dialect = _thrift_start(data)
            client_type = {"binary": THeaderTransport.THeaderClientType.FRAMED_BINARY,
                           "compact": THeaderTransport.THeaderClientType.FRAMED_COMPACT}.get(dialect)
            if client_type in self._allowed_client_types:
                self._client_type = client_type
        return _message_header(data)

    def _parse_header_format(self, buffer: BytesIO) -> BytesIO:
        start = buffer.tell()
        header = TTransport.TMemoryBuffer(buffer.read(_FRAME_START_BYTES))
        header.read(10)  # magic, flags, sequence id, header length
        protocol_id = TCompactProtocol.readVarint(header)
        transforms = [TCompactProtocol.readVarint(header) for _ in range(TCompactProtocol.readVarint(header))]
        if transforms:
            compression = " (compression)" if transforms == [THeaderTransport.THeaderTransformID.ZLIB] else ""
            raise FrameRefused(f"THeader transform {', '.join(map(str, transforms))} is not accepted by this "
                               f"server{compression}")
        if protocol_id not in _HEADER_INNER_PROTOCOLS:
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


class _LimitedHeaderProtocol(THeaderProtocol.THeaderProtocol):
    """THeaderProtocol whose inner binary or compact protocol has the server's read limits.

    A frame refused before its message is read is raised (``FrameRefused``, ``FrameTooLarge``) with
    the protocol set to answer in the frame's dialect; Thrift's own writes its answer with a bytes
    name (a TypeError) and reads on."""

    def __init__(self, transport: HeaderTransport, client_types: tuple, limits: dict) -> None:
        self._limits = limits
        super().__init__(transport, client_types)

    def readMessageBegin(self) -> Tuple[str, int, int]:
        try:
            self.trans.readFrame(0)
        finally:
            self._set_protocol()
        return self._protocol.readMessageBegin()

    def _set_protocol(self) -> None:
        protocol_class = _HEADER_INNER_PROTOCOLS.get(self.trans.protocol_id)
        if protocol_class is None:
            raise TApplicationException(TProtocolException.INVALID_PROTOCOL, "Unknown protocol requested.")
        self._protocol = protocol_class(self.trans)
        self._fast_encode = self._protocol._fast_encode
        self._fast_decode = _strict_decoder(self._protocol._fast_decode)
        for protocol in (self, self._protocol):  # the C decoder reads them from the outer protocol
            protocol.string_length_limit = self._limits["string_length_limit"]
            protocol.container_length_limit = self._limits["container_length_limit"]


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


class _HeaderProtocolFactory(TProtocolFactory):
    def __init__(self, client_types: tuple, limits: dict) -> None:
        self._client_types = client_types
        self._limits = limits

    def getProtocol(self, trans: TTransport.TTransportBase) -> TProtocolBase:
        return _LimitedHeaderProtocol(trans, self._client_types, self._limits)


def frame_limit(max_message_bytes: int) -> int:
    """The largest frame (as its length field counts it) of a message of at most ``max_message_bytes``
    with that 4-byte length field included."""
    return max(max_message_bytes - 4, 1)


def header_protocol(sock: TTransport.TTransportBase, max_message_bytes: int,
                    max_container_items: Optional[int]) -> TProtocolBase:
    """A THeader protocol over ``sock`` that serves THeader clients (and the headerless dialects it
    detects itself), answering each in its own dialect, with the same read limits as the others."""
    transport = _HeaderTransportFactory(_EVERY_HEADER_CLIENT, "binary", frame_limit(max_message_bytes)).getTransport(sock)
    limits = dict(string_length_limit=max_message_bytes, container_length_limit=max_container_items)
    return _HeaderProtocolFactory(_EVERY_HEADER_CLIENT, limits).getProtocol(transport)


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


# Thrift's readMessageBegin raises UnicodeDecodeError for a method name that is not UTF-8, before (binary)
# or after (compact) reading the seqid, so the message could not be answered. Here the name is decoded
# last and its error carries the seqid; the rest is what Thrift reads, with Thrift's error messages.

class _BinaryMessageBegin:
    def readMessageBegin(self) -> Tuple[str, int, int]:
        header = self.readI32()
        if header < 0:
            if header & TBinaryProtocol.TBinaryProtocol.VERSION_MASK != TBinaryProtocol.TBinaryProtocol.VERSION_1:
                raise TProtocolException(TProtocolException.BAD_VERSION,
                                         f"Bad version in readMessageBegin: {header}")
            message_type = header & TBinaryProtocol.TBinaryProtocol.TYPE_MASK
            raw = self.readBinary()
        elif self.strictRead:
            raise TProtocolException(TProtocolException.BAD_VERSION, "No protocol version header")
        else:  # the old unversioned header (THeader frames may carry it)
            self._check_string_length(header)
            raw = self.trans.readAll(header)
            message_type = self.readByte()
        seqid = self.readI32()
        return _method_name(raw, seqid), message_type, seqid


class _BinaryProtocol(_BinaryMessageBegin, TBinaryProtocol.TBinaryProtocol):
    pass


class _BinaryProtocolAccelerated(_BinaryMessageBegin, TBinaryProtocol.TBinaryProtocolAccelerated):
    pass


class _AnswersAfterAFailedRead:
    """Pure-Python compact keeps reading and writing in one state machine: a request whose decoding
    failed midway would leave it unable to start the answer (PROTOCOL_ERROR) that says why."""

    def writeMessageBegin(self, name: str, message_type: int, seqid: int) -> None:
        self.state = TCompactProtocol.CLEAR  # only ever CLEAR here, unless a read was abandoned
        super().writeMessageBegin(name, message_type, seqid)

    def readMessageBegin(self) -> Tuple[str, int, int]:
        protocol_id, version_and_type = self.trans.readAll(2)
        if protocol_id != TCompactProtocol.TCompactProtocol.PROTOCOL_ID:
            raise TProtocolException(TProtocolException.BAD_VERSION, f"Bad protocol id in the message: {protocol_id}")
        version = version_and_type & TCompactProtocol.TCompactProtocol.VERSION_MASK
        if version != TCompactProtocol.TCompactProtocol.VERSION:
            raise TProtocolException(TProtocolException.BAD_VERSION,
                                     f"Bad version: {version} (expect {TCompactProtocol.TCompactProtocol.VERSION})")
        seqid = TCompactProtocol.readVarint(self.trans)
        if seqid > 0x7FFFFFFF:  # sent as an unsigned varint, meant as an i32
            seqid -= 1 << 32
        size = TCompactProtocol.readVarint(self.trans)
        if size < 0:
            raise TProtocolException(TProtocolException.NEGATIVE_SIZE, "Length < 0")
        self._check_string_length(size)
        raw = self.trans.readAll(size)
        message_type = (version_and_type >> TCompactProtocol.TCompactProtocol.TYPE_SHIFT_AMOUNT) \
            & TCompactProtocol.TCompactProtocol.TYPE_BITS
        return _method_name(raw, seqid), message_type, seqid


class _CompactProtocol(_AnswersAfterAFailedRead, TCompactProtocol.TCompactProtocol):
    pass


class _CompactProtocolAccelerated(_AnswersAfterAFailedRead, TCompactProtocol.TCompactProtocolAccelerated):
    pass


#: The protocols inside THeader frames, by THeader's id (Thrift's own map, with the classes above).
_HEADER_INNER_PROTOCOLS = {THeaderTransport.THeaderSubprotocolID.BINARY: _BinaryProtocolAccelerated,
                           THeaderTransport.THeaderSubprotocolID.COMPACT: _CompactProtocolAccelerated}


class _ProtocolFactory(TProtocolFactory):
    def __init__(self, protocol_class: type, **options: object) -> None:
        self._class = protocol_class
        self._options = options

    def getProtocol(self, trans: TTransport.TTransportBase) -> TProtocolBase:
        protocol = self._class(trans, **self._options)
        protocol._fast_decode = _strict_decoder(protocol._fast_decode)
        return protocol


def protocol_factory(wire: Wire, max_string_bytes: Optional[int], max_container_items: Optional[int]) -> TProtocolFactory:
    """The wire's protocol with read limits: every string/binary length is capped at
    ``max_string_bytes`` and every list, set and map size at ``max_container_items`` (None: no cap).
    Binary is strict both ways (messages without a version header are refused). Structs decode
    strictly with or without the C extension (see ``UndecodableValue``)."""
    accelerated = wire.accelerated
    if accelerated and not accelerated_available():
        logger.warning("thrift's C extension is missing: the %s protocol runs in pure Python", wire.protocol)
        accelerated = False
    limits = dict(string_length_limit=max_string_bytes, container_length_limit=max_container_items)
    if wire.transport == "header":  # the protocol inside is the transport's (THeader names it per frame)
        return _HeaderProtocolFactory((THeaderTransport.THeaderClientType.HEADERS,), limits)
    if wire.protocol == "compact":
        return _ProtocolFactory(_CompactProtocolAccelerated if accelerated else _CompactProtocol, **limits)
    return _ProtocolFactory(_BinaryProtocolAccelerated if accelerated else _BinaryProtocol,
                            strictRead=True, strictWrite=True, **limits)


# -- strict decoding ---------------------------------------------------------------------------------
# Thrift's two decoders differ at two edges: the C extension reads invalid UTF-8 as U+FFFD (pure Python
# raises UnicodeDecodeError) and refuses container elements of another type than the IDL's (pure Python
# reads them as the IDL's type). Every generated ``read`` calls the protocol's ``_fast_decode``, so both
# ends install ``_StrictDecoder`` there: either decoder reads strings as bytes, refuses wrongly typed
# elements, and one walk decodes the strings strictly, so both answer the same bytes with the same error.

_WRONG_ELEMENTS = "a list, set or map holds elements of another type than the IDL declares"


class UndecodableValue(TProtocolException):
    """A value its IDL type cannot carry: a string that is not valid UTF-8 (``field`` names it, dotted
    from the outermost struct) or container elements of another type. Both decoders raise it alike."""

    def __init__(self, problem: str, field: Optional[str] = None) -> None:
        super().__init__(TProtocolException.INVALID_DATA, problem if field is None else f"field '{field}' {problem}")
        self.problem = problem
        self.field = field

    def within(self, name: str) -> "UndecodableValue":
        """The same problem, seen from the struct that holds field ``name``."""
        return UndecodableValue(self.problem, name if self.field is None else f"{name}.{self.field}")


class AnswerableReadError(Exception):
    """A request refused before it was read whole that can still be answered: ``name`` and ``seqid``
    are its message's ("" and 0 when they could not be read)."""

    name = ""
    seqid = 0


class UndecodableMethodName(AnswerableReadError, UndecodableValue):
    """A message whose method name is not valid UTF-8. It can still be answered: ``name`` is the name
    with the bad bytes replaced (U+FFFD) and ``seqid`` the message's."""

    def __init__(self, raw: bytes, seqid: int, error: UnicodeDecodeError) -> None:
        super().__init__(f"the method name is not valid UTF-8 ({error.reason} at byte {error.start})")
        self.name = raw.decode("utf-8", "replace")
        self.seqid = seqid


def _method_name(raw: bytes, seqid: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UndecodableMethodName(raw, seqid, error) from None


_Convert = Callable[[Any], Any]
_raw_specs: Dict[type, list] = {}
_raw_specs_lock = threading.Lock()
_text_fields: Dict[type, Tuple[Tuple[str, _Convert], ...]] = {}


def _raw_struct(cls: type) -> list:
    """``[cls, spec]`` for the C decoder, with every string read as bytes."""
    args = _raw_specs.get(cls)
    if args is None:
        with _raw_specs_lock:
            building: Dict[type, list] = {}
            args = _raw_struct_args(cls, building)
            _raw_specs.update(building)  # published whole: the C decoder must never see a half-built spec
    return args


def _raw_struct_args(cls: type, building: Dict[type, list]) -> list:
    args = _raw_specs.get(cls) or building.get(cls)
    if args is None:
        args = building[cls] = [cls, None]  # filled below; a recursive type refers to this same list
        args[1] = tuple(None if field is None else (*field[:3], _raw_args(field[1], field[3], building), *field[4:])
                        for field in cls.thrift_spec)
    return args


def _raw_args(ttype: int, args: Any, building: Dict[type, list]) -> Any:
    if ttype == TType.STRING:
        return "BINARY"
    if ttype == TType.STRUCT:
        return _raw_struct_args(args[0], building)
    if ttype in (TType.LIST, TType.SET):
        return (args[0], _raw_args(args[0], args[1], building), args[2])
    if ttype == TType.MAP:
        return (args[0], _raw_args(args[0], args[1], building), args[2], _raw_args(args[2], args[3], building), args[4])
    return args


def _text(raw: Any) -> str:
    if raw.__class__ is str:  # the IDL's default value of a field that was not sent
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UndecodableValue(f"is not valid UTF-8 ({error.reason} at byte {error.start})") from None


def _same(value: Any) -> Any:
    return value


def _fields_with_text(cls: type, seen: Tuple[type, ...] = ()) -> Tuple[Tuple[str, _Convert], ...]:
    """(name, convert) for each field of ``cls`` that holds UTF-8 strings, read as bytes."""
    fields = _text_fields.get(cls)
    if fields is None:
        converters = ((field[2], _converter(field[1], field[3], (*seen, cls)))
                      for field in cls.thrift_spec if field is not None)
        fields = _text_fields[cls] = tuple((name, convert) for name, convert in converters if convert is not None)
    return fields


def _converter(ttype: int, args: Any, seen: Tuple[type, ...]) -> Optional[_Convert]:
    """What turns a value of this type, read with raw strings, into text; None if it holds no text."""
    if ttype == TType.STRING:
        return None if args == "BINARY" else _text
    if ttype == TType.STRUCT:
        cls = args[0]
        if cls in seen:  # a recursive type: its fields are known by the time a value arrives
            return lambda value: _struct_text(value, _text_fields[cls])
        fields = _fields_with_text(cls, seen)
        return (lambda value: _struct_text(value, fields)) if fields else None
    if ttype in (TType.LIST, TType.SET):
        element = _converter(args[0], args[1], seen)
        if element is None:
            return None
        build = (tuple if args[2] else list) if ttype == TType.LIST else (frozenset if args[2] else set)
        return lambda values: build(map(element, values))
    if ttype == TType.MAP:
        key, value = _converter(args[0], args[1], seen), _converter(args[2], args[3], seen)
        if key is None and value is None:
            return None
        key, value, build = key or _same, value or _same, TFrozenDict if args[4] else dict
        return lambda items: build((key(k), value(v)) for k, v in items.items())
    return None


def _struct_text(obj: Any, fields: Tuple[Tuple[str, _Convert], ...]) -> Any:
    for name, convert in fields:
        value = getattr(obj, name)
        if value is not None:
            try:
                value = convert(value)
            except UndecodableValue as error:
                raise error.within(name) from None
            object.__setattr__(obj, name, value)  # as generated __init__s do, so immutable structs too
    return obj


_READERS = {TType.BOOL: "readBool", TType.BYTE: "readByte", TType.I16: "readI16", TType.I32: "readI32",
            TType.I64: "readI64", TType.DOUBLE: "readDouble", TType.STRING: "readBinary", TType.UUID: "readUuid"}


def _read_value(iprot: TProtocolBase, ttype: int, args: Any) -> Any:
    """One value, read in pure Python the way the C extension reads it (strings as bytes)."""
    if ttype == TType.STRUCT:
        return _read_struct(iprot, None, args[0], args[1])
    if ttype in (TType.LIST, TType.SET):
        element_type, element_args, immutable = args
        is_list = ttype == TType.LIST
        got, size = iprot.readListBegin() if is_list else iprot.readSetBegin()
        if size and got != element_type:
            raise UndecodableValue(_WRONG_ELEMENTS)
        values = [_read_value(iprot, element_type, element_args) for _ in range(size)]
        iprot.readListEnd() if is_list else iprot.readSetEnd()
        return ((tuple if immutable else list) if is_list else (frozenset if immutable else set))(values)
    if ttype == TType.MAP:
        key_type, key_args, value_type, value_args, immutable = args
        got_key, got_value, size = iprot.readMapBegin()
        if size and (got_key, got_value) != (key_type, value_type):
            raise UndecodableValue(_WRONG_ELEMENTS)
        items = {}
        for _ in range(size):
            key = _read_value(iprot, key_type, key_args)
            items[key] = _read_value(iprot, value_type, value_args)
        iprot.readMapEnd()
        return TFrozenDict(items) if immutable else items
    return getattr(iprot, _READERS[ttype])()


def skip_value(protocol: TProtocolBase, ttype: int, depth: int = 64) -> None:
    """Reads past one value without building it: strings stay bytes (invalid UTF-8 is no error, as in
    the C extension's skip)."""
    if depth <= 0:
        raise TProtocolException(TProtocolException.DEPTH_LIMIT, "nesting too deep")
    if ttype == TType.STRING:
        protocol.readBinary()
    elif ttype == TType.STRUCT:
        protocol.readStructBegin()
        while True:
            _, field_type, _ = protocol.readFieldBegin()
            if field_type == TType.STOP:
                break
            skip_value(protocol, field_type, depth - 1)
            protocol.readFieldEnd()
        protocol.readStructEnd()
    elif ttype == TType.MAP:
        key_type, value_type, size = protocol.readMapBegin()
        for _ in range(size):
            skip_value(protocol, key_type, depth - 1)
            skip_value(protocol, value_type, depth - 1)
        protocol.readMapEnd()
    elif ttype in (TType.LIST, TType.SET):
        element_type, size = protocol.readListBegin() if ttype == TType.LIST else protocol.readSetBegin()
        for _ in range(size):
            skip_value(protocol, element_type, depth - 1)
        protocol.readListEnd() if ttype == TType.LIST else protocol.readSetEnd()
    else:
        protocol.skip(ttype)



def _read_struct(iprot: TProtocolBase, obj: Any, cls: type, spec: tuple) -> Any:
    """Fills ``obj`` (or, when None, builds a ``cls``) from the fields ``spec`` knows; skips the rest."""
    fields = {}
    iprot.increment_recursion_depth()
    try:
        iprot.readStructBegin()
        while True:
            _, field_type, field_id = iprot.readFieldBegin()
            if field_type == TType.STOP:
                break
            field = spec[field_id] if 0 <= field_id < len(spec) else None
            if field is not None and field[1] == field_type:
                fields[field[2]] = _read_value(iprot, field_type, field[3])
            else:
                skip_value(iprot, field_type)
            iprot.readFieldEnd()
        iprot.readStructEnd()
    finally:
        iprot.decrement_recursion_depth()
    if obj is None:
        return cls(**fields)
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


class _StrictDecoder:
    """A protocol's ``_fast_decode`` (what generated structs call to read themselves): the C decoder
    when given one (``c_decode``), else pure Python, then strict UTF-8 for every string field."""

    def __init__(self, c_decode: Optional[Callable[..., Any]]) -> None:
        self.c_decode = c_decode

    def __call__(self, obj: Any, iprot: TProtocolBase, spec: list) -> Any:
        cls, thrift_spec = spec
        if self.c_decode is None:
            obj = _read_struct(iprot, obj, cls, thrift_spec)
        else:
            try:
                decoded = self.c_decode(obj, iprot, _raw_struct(cls))
            except TypeError as error:
                if "got wrong ttype" not in str(error):
                    raise
                cut_short = getattr(iprot.trans, "refill_error", None)
                if cut_short is not None:
                    raise cut_short from None
                raise UndecodableValue(_WRONG_ELEMENTS) from None
            obj = decoded if obj is None else obj
        fields = _text_fields.get(cls)
        return _struct_text(obj, _fields_with_text(cls) if fields is None else fields)


@functools.lru_cache(maxsize=None)
def _strict_decoder(c_decode: Optional[Callable[..., Any]]) -> _StrictDecoder:
    return _StrictDecoder(c_decode)


class Dialect(NamedTuple):
    """What the first bytes of a connection say its peer speaks.

    kind: "thrift" (``wire`` says which), "header" (THeader), "http", "tls" (a TLS record on a plain
    connection), "bad-version" (binary with a version this library does not know), "unknown".
    """

    kind: str
    wire: Optional[Wire] = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "thrift":
            return f"{self.wire.transport} {self.wire.protocol}"
        return {"header": "THeader", "http": "HTTP", "tls": "TLS", "bad-version": self.detail,
                "unknown": "something that is not Thrift"}.get(self.kind, self.kind)


#: Enough of a connection's first bytes to tell every dialect ``sniff`` knows apart.
SNIFF_BYTES = 6
_HTTP_METHODS = (b"HTTP", b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"PRI ", b"CONN", b"TRAC")


def _thrift_start(data: bytes) -> Optional[str]:
    """"binary" or "compact" if ``data`` starts a strict binary or compact message header."""
    if data[:2] == b"\x80\x01":
        return "binary"
    if len(data) >= 2 and data[0] == 0x82 and data[1] & 0x1F == 1:
        return "compact"
    return None


def sniff(data: bytes) -> Optional[Dialect]:
    """The dialect that ``data`` (a connection's first bytes) is written in; None until more bytes
    are needed to tell (at most SNIFF_BYTES)."""
    if len(data) < 2:
        return None
    protocol = _thrift_start(data)
    if protocol is not None:
        return Dialect("thrift", Wire(protocol=protocol, transport="buffered"))
    if data[0] == 0x80:
        return Dialect("bad-version", detail=f"binary protocol version {data[1]} (strict binary is version 1)")
    if data[0] in (0x15, 0x16) and data[1] == 0x03:  # a TLS handshake or alert record
        return Dialect("tls")
    if len(data) < 4:
        return None
    if data[:4] in _HTTP_METHODS:
        return Dialect("http")
    if len(data) < SNIFF_BYTES:
        return None
    # A frame's length comes first: any positive one (a frame over the limit is answered, not ignored).
    if data[0] < 0x80 and data[4:6] == b"\x0f\xff":
        return Dialect("header")
    framed = _thrift_start(data[4:])
    if data[0] < 0x80 and framed is not None:
        return Dialect("thrift", Wire(protocol=framed, transport="framed"))
    return Dialect("unknown")


def explain_reply(first_reply: bytes, wire: Wire) -> str:
    """Why a reply that starts with ``first_reply`` could not be read by a client speaking ``wire``."""
    if not first_reply:
        return ("the server closed the connection without answering (does it expect TLS, another Thrift "
                "protocol or transport, or is it at its connection limit? its log says which)")
    dialect = sniff(first_reply)
    if dialect is None:
        return f"the server's answer ({first_reply.hex(' ')}) ended before it could be read"
    if dialect.kind == "thrift":
        if (dialect.wire.protocol, dialect.wire.transport) != (wire.protocol, wire.transport):
            return f"the server speaks {dialect}; this client speaks {wire.transport} {wire.protocol} (ClientOptions.wire)"
        return "the server's answer is not a reply this client can decode"
    if dialect.kind == "http":
        return "the server answered with HTTP: it is not a Thrift server (wrong port?)"
    if dialect.kind == "tls":
        return "the server answered with TLS: connect with TLS (ClientOptions.tls, call --tls)"
    return f"the server answered with {dialect} ({first_reply.hex(' ')})"


_TLS_HINTS = (
    ("wrong version number", "the server does not speak TLS on this port (a plain Thrift server?)"),
    ("alert protocol version", "the server does not speak TLS on this port (a plain Thrift server?)"),
    ("certificate required", "the server requires a client certificate (ClientTLS cert_file and key_file)"),
    ("unknown ca", "the server does not trust this client certificate's CA"),
    ("eof occurred in violation of protocol", "the server ended the TLS connection at once: does it require a "
                                              "client certificate (ClientTLS cert_file and key_file)?"),
    ("certificate verify failed", "the server's certificate is not trusted by ClientTLS.ca_file (or does not "
                                  "name this host: ClientTLS.server_hostname)"),
)


def explain_tls_error(error: BaseException) -> Optional[str]:
    """What a TLS failure (in ``error`` or the cause Thrift keeps in ``inner``) means, if known."""
    for candidate in (error, getattr(error, "inner", None), error.__cause__):
        if isinstance(candidate, ssl.SSLError):
            text = str(candidate).lower()
            for needle, hint in _TLS_HINTS:
                if needle in text:
                    return hint
    return None


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
            raise _write_failed(error) from error


def no_delay(handle: socket.socket) -> None:
    """Sends each write at once (TCP_NODELAY): every write here is a whole message, and Nagle would hold
    an answer back until the peer acknowledged the previous one (40 ms with delayed ACKs) whenever a
    peer pipelines its calls."""
    try:
        handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (e.g. a Unix socket), or already reset by the peer
        pass


def _use_timeout(handle: socket.socket, seconds: Optional[float]) -> None:
    """settimeout costs a syscall each time (CPython re-sets O_NONBLOCK): skip it when unchanged."""
    if handle.gettimeout() != seconds:
        handle.settimeout(seconds)


def _write_failed(error: OSError) -> TTransport.TTransportException:
    kind = (TTransport.TTransportException.TIMED_OUT if isinstance(error, (socket.timeout, TimeoutError, BlockingIOError))
            else TTransport.TTransportException.UNKNOWN)
    return TTransport.TTransportException(kind, f"write failed: {error}", inner=error)


class BudgetExceeded(TTransport.TTransportException):
    """A peer sent more than a message (or, before hello, the whole handshake) may take."""


class FrameTooLarge(AnswerableReadError, BudgetExceeded):
    """A frame longer than ``limit``, refused by its length before it is read; its message's name and
    seqid are taken from its first bytes where they hold them."""

    def __init__(self, size: int, limit: int, message_header: Optional[Tuple[str, int]]) -> None:
        super().__init__(TTransport.TTransportException.SIZE_LIMIT, f"Frame size ({size}) larger than the maximum ({limit})")
        self.size = size
        self.limit = limit
        if message_header is not None:
            self.name, self.seqid = message_header


class FrameRefused(AnswerableReadError, TProtocolException):
    """A THeader frame whose payload this end does not read (a transform, or a protocol other than
    binary and compact); answerable only to seqid 0, its message unread."""

    def __init__(self, message: str) -> None:
        super().__init__(TProtocolException.INVALID_PROTOCOL, message)


#: Each socket read asks for at most this much, so a declared length never allocates more than arrives.
_READ_CHUNK = 1024 * 1024


class ConnectionSocket(DeadlineSocket):
    """The server's end of one connection.

    Before hello, the handshake deadline bounds every read and write (set ``deadline``), and at most
    ``handshake_budget`` bytes are read (more is refused before it is allocated). Once the
    session has started (``start_session``), a message's first bytes are awaited for the linger only
    (the server's selector then holds the silence, bounded by the idle timeout), a request must arrive
    whole within ``request_timeout`` of its first byte (so a peer dripping one byte per idle period
    cannot hold the connection), and a reply must be written within the idle timeout. The server calls
    ``message_done`` after each reply.
    """

    request_timeout: Optional[float] = None
    idle_timeout: Optional[float] = None
    handshake_budget: Optional[int] = None  # bytes the peer may send before its session starts
    message_budget: int = 0  # bytes one message may take once the session has started
    linger: float = 0.0
    _kernel_timeouts = False
    _received = 0
    _pushback = b""
    _reset_on_close = False

    def close(self) -> None:
        if self._reset_on_close and self.handle is not None:
            try:
                self.handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        super().close()

    def first_bytes(self) -> Tuple[bytes, Optional["Dialect"]]:
        """Reads the connection's first bytes (up to SNIFF_BYTES, fewer if they already tell) and
        what they say; the bytes are read again by the transport (nothing is lost). Waits within the
        socket's deadline and timeout; the dialect is None if the peer stopped before it was clear."""
        data = b""
        dialect = None
        while dialect is None and len(data) < SNIFF_BYTES:
            try:
                chunk = self.read(SNIFF_BYTES - len(data))
            except TTransport.TTransportException:
                break
            data += chunk
            dialect = sniff(data)
        self._pushback = data + self._pushback
        return data, dialect
    def start_session(self, limits: ServerLimits, linger: float) -> None:
        """The session's limits apply from now on; a message's first bytes are awaited ``linger``
        seconds at most (then ``read`` raises NoMessageYet and the server lets the connection wait
        in its selector, where the idle timeout bounds the silence)."""
        self.deadline = None
        self.idle_timeout = limits.idle_timeout
        self.request_timeout = limits.request_timeout
        self.message_budget = limits.max_message_bytes
        self.linger = linger
        handle = self.handle
        self._kernel_timeouts = not isinstance(handle, ssl.SSLSocket)
        if self._kernel_timeouts:
            # A socket in Python's timeout mode polls before every recv and send; a blocking socket
            # with kernel timeouts makes one syscall each (their EAGAIN is mapped to a timeout).
            _set_kernel_timeouts(handle, receive=linger, send=limits.idle_timeout)
        else:
            handle.settimeout(linger)

    def pending_input(self) -> bool:
        """Whether bytes already received wait below the transport (pushed back, or decrypted by TLS)."""
        handle = self.handle
        return bool(self._pushback) or (isinstance(handle, ssl.SSLSocket) and handle.pending() > 0)

    def read(self, sz: int) -> bytes:
        if self._pushback:
            data, self._pushback = self._pushback[:sz], self._pushback[sz:]
            self.message_started()
            return data
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
            size = min(sz, _READ_CHUNK, self.message_budget)
            data = self._first_read(size)
            self.deadline = time.monotonic() + self.request_timeout
        else:
            if self._received >= self.message_budget:
                raise BudgetExceeded(TTransport.TTransportException.SIZE_LIMIT,
                                     f"a message of more than {self.message_budget} bytes (max_message_bytes)")
            size = min(sz, _READ_CHUNK, self.message_budget - self._received)
            if self._kernel_timeouts:
                data = self._read_more(size)
            else:
                self._arm()
                data = TSocket.TSocket.read(self, size)
        self._received += len(data)
        return data

    def _first_read(self, size: int) -> bytes:
        handle = self.handle
        if not self._kernel_timeouts:
            _use_timeout(handle, self.linger)
        try:
            return _recv(handle, size)
        except (BlockingIOError, socket.timeout, TimeoutError):
            raise NoMessageYet() from None

    def _read_more(self, size: int) -> bytes:
        """The rest of a message on a blocking socket: waits in poll() past the linger, up to the deadline."""
        handle = self.handle
        while True:
            try:
                return _recv(handle, size)
            except BlockingIOError:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise TTransport.TTransportException(TTransport.TTransportException.TIMED_OUT,
                                                         "deadline passed") from None
                waiter = select.poll()
                waiter.register(handle, select.POLLIN)
                waiter.poll(remaining * 1000)

    def write(self, buff: bytes) -> None:
        if self.request_timeout is None:
            super().write(buff)
            return
        handle = self.handle
        if not self._kernel_timeouts:
            _use_timeout(handle, self.idle_timeout)
        started = time.monotonic()
        try:
            sent = handle.send(buff)  # usually all of it; a kernel timeout bounds this one call as a whole
            if sent < len(buff):
                self._send_rest(memoryview(buff)[sent:], started + self.idle_timeout)
        except (BlockingIOError, socket.timeout, TimeoutError) as error:
            self._reset_on_close = True  # what the kernel still holds of the reply is dropped, not sent on
            raise TTransport.TTransportException(
                TTransport.TTransportException.TIMED_OUT,
                "the peer did not read its reply within the idle timeout", inner=error) from error
        except OSError as error:
            raise _write_failed(error) from error

    def _send_rest(self, rest: memoryview, deadline: float) -> None:
        """The rest of a reply the peer is slow to read, by ``deadline`` (the idle timeout after the
        reply's start). Each send's own timeout restarts whenever a few bytes move (and ``sendall``
        sends again after each), so a peer reading a trickle at a time would hold the thread and the
        reply indefinitely."""
        handle = self.handle
        try:
            while rest:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("the whole reply was not read in time")
                self._bound_send(remaining)
                rest = rest[handle.send(rest):]
        finally:
            self._bound_send(self.idle_timeout)

    def _bound_send(self, seconds: float) -> None:
        if self._kernel_timeouts:
            _set_kernel_timeouts(self.handle, receive=self.linger, send=seconds)
        else:
            self.handle.settimeout(seconds)

    def message_started(self) -> None:
        """A message began from bytes already buffered above the socket: its deadline and budget run."""
        if self.request_timeout is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.request_timeout
            self._received = 0

    def message_done(self) -> None:
        """The reply is out: the next message starts a new deadline and budget."""
        if self.request_timeout is not None:
            self.deadline = None


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


def _set_kernel_timeouts(handle: socket.socket, receive: float, send: float) -> None:
    """Makes ``handle`` blocking, each recv and send bounded by the kernel (0: no bound)."""
    if handle.gettimeout() is not None:
        handle.settimeout(None)
    for option, seconds in ((socket.SO_RCVTIMEO, receive), (socket.SO_SNDTIMEO, send)):
        whole = int(seconds)
        handle.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))


class NoMessageYet(Exception):
    """No byte of a next message arrived within the linger: the connection may wait elsewhere."""


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
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TTransport.TTransportException(TTransport.TTransportException.TIMED_OUT, "deadline passed")
        armed, current = self._kernel_timeout
        if armed is not handle or abs(current - remaining) > _DEADLINE_SLACK:  # each setsockopt is a syscall
            _set_kernel_timeouts(handle, receive=remaining, send=remaining)
            self._kernel_timeout = (handle, remaining)

    def _without_deadline(self) -> None:
        """An exchange without a deadline waits as long as it takes: no timeout left from an earlier one."""
        handle = self.handle
        if self._kernel_timeout[0] is handle:
            _set_kernel_timeouts(handle, receive=0, send=0)
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


def client_stack(
    host: str, port: int, wire: Wire, max_reply_bytes: int, max_reply_items: int, tls: Optional[ClientTLS] = None
) -> Tuple["CountingSocket", TTransport.TTransportBase, TProtocolBase]:
    """The client's socket, transport and protocol, unopened."""
    context = None if tls is None else _client_tls_context(tls)
    sock = CountingSocket(host, port, socket_family=_family_for(host), tls=context,
                          server_hostname=None if tls is None else tls.server_hostname)
    transport = transport_factory(wire, max_reply_bytes).getTransport(sock)
    return sock, transport, protocol_factory(wire, max_reply_bytes, max_reply_items).getProtocol(transport)


def unread_bytes(transport: TTransport.CReadableTransport) -> int:
    """Bytes the client's transport has read from the socket but not yet handed to the decoder
    (after a pipelined hello's answer, the start of the next reply may already be there)."""
    with transport.cstringio_buf.getbuffer() as view:
        return view.nbytes - transport.cstringio_buf.tell()


def _family_for(host: str) -> int:
    """AF_INET6 for IPv6 literals, AF_UNSPEC (both, in resolver order) otherwise."""
    return socket.AF_INET6 if ":" in host else socket.AF_UNSPEC


def _client_tls_context(tls: ClientTLS) -> ssl.SSLContext:
    """Verifies the server (certificate and host name); presents a client certificate if given."""
    context = _default_context(ssl.Purpose.SERVER_AUTH, tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file:
        _load_pair(context, tls.cert_file, tls.key_file)
    return context


def _default_context(purpose: ssl.Purpose, ca_file: Optional[str]) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(purpose, cafile=ca_file)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"cannot load the TLS CA file {ca_file!r}: {error}") from error


def _load_pair(context: ssl.SSLContext, cert_file: str, key_file: Optional[str]) -> None:
    """Loads a certificate and its key; the error names both files (ssl's own says only "PEM lib")."""
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"cannot load the TLS certificate {cert_file!r} with key {key_file!r}: {error}") from error


def server_tls_context(tls: ServerTLS) -> ssl.SSLContext:
    """The server's context; with a client CA, clients without a certificate it signed are refused."""
    context = _default_context(ssl.Purpose.CLIENT_AUTH, tls.client_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, tls.cert_file, tls.key_file)
    context.verify_mode = ssl.CERT_REQUIRED if tls.client_ca_file else ssl.CERT_NONE
    return context
