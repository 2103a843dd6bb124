"""Thrift's binary and compact protocols with strict message headers, read limits and strict decoding.

``protocol_factory`` turns a ``config.Wire`` into the protocol both ends use; THeader's protocol picks
the binary or compact one per frame with the same limits.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from typing import Optional, Tuple

from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol, TJSONProtocol
from thrift.protocol.TProtocol import TProtocolBase, TProtocolException, TProtocolFactory
from thrift.Thrift import TApplicationException
from thrift.transport import THeaderTransport, TTransport

from ..config import Wire
from .errors import UndecodableMethodName
from .sniff import thrift_start
from .strict import method_name, strict_decoder

__all__ = ["accelerated_available", "protocol_factory", "message_header", "HEADER_INNER_PROTOCOLS",
           "HeaderProtocolFactory", "JsonProtocol"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)  # asked per connection: answered without a Python frame after the first time
def accelerated_available() -> bool:
    """Whether Thrift's C extension (fastbinary) is importable."""
    try:
        from thrift.protocol import fastbinary  # noqa: F401
    except ImportError:
        return False
    return True


# Thrift's readMessageBegin raises UnicodeDecodeError for a method name that is not UTF-8, before (binary)
# or after (compact) reading the seqid, so the message could not be answered. Here the name is decoded
# last and its error carries the seqid; the rest is what Thrift reads, with Thrift's error messages.

_VERSION_AND_LENGTH = struct.Struct("!ii")
_I32 = struct.Struct("!i")
_VERSION_MASK, _VERSION_1 = TBinaryProtocol.TBinaryProtocol.VERSION_MASK, TBinaryProtocol.TBinaryProtocol.VERSION_1
_TYPE_MASK = TBinaryProtocol.TBinaryProtocol.TYPE_MASK


def _usual_version(head: bytes) -> bool:
    header = _I32.unpack_from(head)[0]
    return header < 0 and header & _VERSION_MASK == _VERSION_1


def _strict_header(name: str, message_type: int, seqid: int) -> bytes:
    """The strict binary message header's bytes, as Thrift's ``writeMessageBegin`` writes them."""
    raw = name.encode("utf-8")
    return _VERSION_AND_LENGTH.pack(_VERSION_1 | message_type, len(raw)) + raw + _I32.pack(seqid)


class _BinaryMessageHeader:
    """Thrift's binary message header, read and written with fewer Python calls (same bytes, same errors)."""

    def readMessageBegin(self) -> Tuple[str, int, int]:
        trans = self.trans
        buffer = getattr(trans, "cstringio_buf", None)
        if buffer is None:
            return self._read_message_begin()
        # The strict header in a few C calls, from the read buffer (refilled as Thrift's C decoder does)
        head = buffer.read(8)
        if len(head) < 8:
            if len(head) < 4:
                buffer = trans.cstringio_refill(head, 4)
                head = buffer.read(8)
            if len(head) < 8:  # Thrift judges the version before it reads on (an HTTP body may end there)
                if not _usual_version(head):
                    buffer.seek(-len(head), 1)
                    return self._read_message_begin()
                buffer = trans.cstringio_refill(head, 8)
                head = buffer.read(8)
        header, length = _VERSION_AND_LENGTH.unpack(head)
        limit = self.string_length_limit
        if (header >= 0 or header & _VERSION_MASK != _VERSION_1 or length < 0
                or (limit is not None and length > limit)):
            buffer.seek(-8, 1)  # not the usual header: Thrift's path, with its errors
            return self._read_message_begin()
        rest = buffer.read(length + 4)
        if len(rest) < length + 4:
            rest = trans.cstringio_refill(rest, length + 4).read(length + 4)
        raw, seqid = rest[:length], _I32.unpack_from(rest, length)[0]
        try:
            return raw.decode("utf-8"), header & _TYPE_MASK, seqid
        except UnicodeDecodeError:
            return method_name(raw, seqid), header & _TYPE_MASK, seqid  # raises the answerable error

    def writeMessageBegin(self, name: str, message_type: int, seqid: int) -> None:
        if not self.strictWrite:
            return super().writeMessageBegin(name, message_type, seqid)  # type: ignore[misc]
        self.trans.write(_strict_header(name, message_type, seqid))  # one write instead of Thrift's four

    def _read_message_begin(self) -> Tuple[str, int, int]:
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
        try:
            return raw.decode("utf-8"), message_type, seqid  # read once per message: no helper's frame
        except UnicodeDecodeError:
            return method_name(raw, seqid), message_type, seqid  # raises the answerable error


class _BinaryProtocol(_BinaryMessageHeader, TBinaryProtocol.TBinaryProtocol):
    pass


class _BinaryProtocolAccelerated(_BinaryMessageHeader, TBinaryProtocol.TBinaryProtocolAccelerated):
    def write_whole(self, name: str, message_type: int, seqid: int, struct: object) -> bool:
        """Writes a message of ``struct`` (a generated one) in one write: the bytes ``writeMessageBegin``,
        ``struct.write`` and ``writeMessageEnd`` write. False, with nothing written, where the C encoder
        does not take it (the old unversioned header, a struct without a spec)."""
        spec = getattr(struct, "thrift_spec", None)
        encode = self._fast_encode
        if spec is None or encode is None or not self.strictWrite:
            return False
        head = _strict_header(name, message_type, seqid)
        try:
            body = encode(struct, [struct.__class__, spec])
        except Exception:
            self.trans.write(head)  # as the usual writes leave it: the header written, the struct failed
            raise
        self.trans.write(head + body)
        return True


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
        return method_name(raw, seqid), message_type, seqid


class _CompactProtocol(_AnswersAfterAFailedRead, TCompactProtocol.TCompactProtocol):
    pass


class _CompactProtocolAccelerated(_AnswersAfterAFailedRead, TCompactProtocol.TCompactProtocolAccelerated):
    pass


#: The protocols inside THeader frames, by THeader's id (Thrift's own map, with the classes above).
HEADER_INNER_PROTOCOLS = {THeaderTransport.THeaderSubprotocolID.BINARY: _BinaryProtocolAccelerated,
                           THeaderTransport.THeaderSubprotocolID.COMPACT: _CompactProtocolAccelerated}


def message_header(data: bytes) -> Optional[Tuple[str, int]]:
    """(name, seqid) of the binary or compact message ``data`` starts, if it holds the whole header."""
    protocol_class = {"binary": _BinaryProtocol, "compact": _CompactProtocol}.get(thrift_start(data))
    if protocol_class is None:
        return None
    try:
        name, _, seqid = protocol_class(TTransport.TMemoryBuffer(data)).readMessageBegin()
    except UndecodableMethodName as error:
        return error.name, error.seqid
    except Exception:  # cut short, or not a message header after all
        return None
    return name, seqid


class _LimitedHeaderProtocol(THeaderProtocol.THeaderProtocol):
    """THeaderProtocol whose inner binary or compact protocol has the server's read limits.

    A frame refused before its message is read is raised (``FrameRefused``, ``FrameTooLarge``) with
    the protocol set to answer in the frame's dialect; Thrift's own writes its answer with a bytes
    name (a TypeError) and reads on."""

    def __init__(self, transport: THeaderTransport.THeaderTransport, client_types: tuple,
                 limits: dict) -> None:
        self._limits = limits
        super().__init__(transport, client_types)

    def readMessageBegin(self) -> Tuple[str, int, int]:
        try:
            self.trans.readFrame(0)
        finally:
            self._set_protocol()
        return self._protocol.readMessageBegin()

    def _set_protocol(self) -> None:
        protocol_class = HEADER_INNER_PROTOCOLS.get(self.trans.protocol_id)
        if protocol_class is None:
            raise TApplicationException(TProtocolException.INVALID_PROTOCOL, "Unknown protocol requested.")
        self._protocol = protocol_class(self.trans)
        self._fast_encode = self._protocol._fast_encode
        self._fast_decode = strict_decoder(self._protocol._fast_decode)
        for protocol in (self, self._protocol):  # the C decoder reads them from the outer protocol
            protocol.string_length_limit = self._limits["string_length_limit"]
            protocol.container_length_limit = self._limits["container_length_limit"]


class JsonProtocol(TJSONProtocol.TJSONProtocol):
    """Thrift's JSON protocol with the read limits of the others: strings by ``string_length_limit``
    (Thrift's own), lists, sets and maps by ``container_length_limit`` (which Thrift's JSON protocol has not)."""

    #: Every string and binary value is a JSON string (binary in base64): skipping one reads it as text.
    strings_are_text = True

    def __init__(self, trans: TTransport.TTransportBase, string_length_limit: Optional[int] = None,
                 container_length_limit: Optional[int] = None) -> None:
        super().__init__(trans, string_length_limit=string_length_limit)
        self._container_limit = container_length_limit

    @property
    def container_length_limit(self) -> Optional[int]:
        return self._container_limit

    def _checked(self, size: int) -> int:
        if size < 0:
            raise TProtocolException(TProtocolException.NEGATIVE_SIZE, "Negative container size")
        if self._container_limit is not None and size > self._container_limit:
            raise TProtocolException(TProtocolException.SIZE_LIMIT, f"a container of {size} elements exceeds "
                                                                    f"the limit of {self._container_limit}")
        return size

    def readMapBegin(self) -> Tuple[int, int, int]:
        key_type, value_type, size = super().readMapBegin()
        return key_type, value_type, self._checked(size)

    def readCollectionBegin(self) -> Tuple[int, int]:
        element_type, size = super().readCollectionBegin()
        return element_type, self._checked(size)

    readListBegin = readCollectionBegin
    readSetBegin = readCollectionBegin

    # JSON numbers have no width: a value its type cannot hold is the peer's error here, not the
    # handler's (nor the reply's, which could not encode it) as it would be if let through
    def readMessageBegin(self) -> Tuple[str, int, int]:
        name, message_type, seqid = super().readMessageBegin()
        return name, message_type, _in_range(seqid, 32, "seqid")

    def readByte(self) -> int:
        return _in_range(super().readByte(), 8, "i8")

    def readI16(self) -> int:
        return _in_range(super().readI16(), 16, "i16")

    def readI32(self) -> int:
        return _in_range(super().readI32(), 32, "i32")

    def readI64(self) -> int:
        return _in_range(super().readI64(), 64, "i64")

    def writeDouble(self, dbl: float) -> None:
        """As TJSONProtocol defines it (Java's, C++'s, the JavaScript library's): a double that is no number
        is the string "NaN", "Infinity" or "-Infinity" (Thrift's Python writes them bare: no JSON at all)."""
        if math.isfinite(dbl):
            super().writeDouble(dbl)
        else:
            self.writeJSONString("NaN" if dbl != dbl else "Infinity" if dbl > 0 else "-Infinity")


def _in_range(value: int, bits: int, what: str) -> int:
    """``value`` when a signed integer of ``bits`` bits holds it; else INVALID_DATA."""
    low = -(1 << (bits - 1))
    if not low <= value < -low:
        raise TProtocolException(TProtocolException.INVALID_DATA,
                                 f"a JSON {what} of {str(value)[:24]} is out of range ({low}..{-low - 1})")
    return value


class HeaderProtocolFactory(TProtocolFactory):
    """THeader protocols for ``client_types`` whose inner protocol has ``limits`` (Thrift's
    string_length_limit and container_length_limit)."""

    def __init__(self, client_types: tuple, limits: dict) -> None:
        self._client_types = client_types
        self._limits = limits

    def getProtocol(self, trans: TTransport.TTransportBase) -> TProtocolBase:
        return _LimitedHeaderProtocol(trans, self._client_types, self._limits)


class _ProtocolFactory(TProtocolFactory):
    def __init__(self, protocol_class: type, strict: bool = True, **options: object) -> None:
        self._class = protocol_class
        self._strict = strict  # the strict decoder walks binary and compact: JSON's strings are its own
        self._options = options

    def getProtocol(self, trans: TTransport.TTransportBase) -> TProtocolBase:
        protocol = self._class(trans, **self._options)
        if self._strict:
            protocol._fast_decode = strict_decoder(protocol._fast_decode)
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
        return HeaderProtocolFactory((THeaderTransport.THeaderClientType.HEADERS,), limits)
    if wire.protocol == "json":
        return _ProtocolFactory(JsonProtocol, strict=False, **limits)
    if wire.protocol == "compact":
        return _ProtocolFactory(_CompactProtocolAccelerated if accelerated else _CompactProtocol, **limits)
    return _ProtocolFactory(_BinaryProtocolAccelerated if accelerated else _BinaryProtocol,
                            strictRead=True, strictWrite=True, **limits)
