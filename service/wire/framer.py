"""Whole messages out of bytes, for every dialect the server serves, under the server's limits (no socket).

``MessageFramer(wire, limits).feed(data)`` returns the messages that ``data`` completes, each whole
(a frame with its length field, or an unframed message from its first header byte to its STOP), and
keeps the rest for the next call (or, one at a time: ``receive(data)``, then ``next_message()`` until
None). Framed and THeader messages are told by their length field (a THeader connection sends
frames; the headerless messages THeader also detects are not framed here); unframed (buffered)
binary and compact ones by walking the message header and the struct's field headers and lengths,
skipping values over the bytes without building them; unframed JSON ones by their brackets
(``json_framing``: depth and container counts are judged there, the decoded price is not).

The walk resumes where the last call stopped (a pending step is at most one length field or varint
long), so dripped input costs O(total bytes), not O(bytes squared). A declared length is judged when
it arrives, before its bytes do: nothing is awaited, or buffered, past the limits. Cost (CPython, one
core here): a frame about 2 us whatever its size; an unframed message about 0.5 us per field, element
or length walked (a list, set or map of fixed-width values is one step): 75 us for the 509-byte
``AllTypes`` of the tests in binary. Inside a frame nothing is walked: the decoder's limits apply there.

An unframed binary message already whole when it is looked at, with no ``max_decoded_bytes`` to price
it against, is cut by the C decoder instead (its skip, within the same string, container and depth
limits, ``_WholeInC``): about 2 us instead of the walk's 0.5 us per step; anything else it meets (too
few bytes, a refusal) is left to the walk, which words the refusal.

Refusals, as the server's own stack raises them:
- a frame longer than its limit: ``FrameTooLarge`` (with the message's name and seqid when the bytes
  already received hold its header); an unframed message past ``max_message_bytes``: ``BudgetExceeded``;
- a negative frame length: ``TTransportException(NEGATIVE_SIZE)``;
- a string longer than ``max_message_bytes`` or a container of more than ``max_container_items``:
  ``TProtocolException(SIZE_LIMIT)``; a negative one: ``TProtocolException(NEGATIVE_SIZE)``;
- structs and containers nested deeper than ``max_depth``: ``TProtocolException(DEPTH_LIMIT)``;
- with ``max_decoded_bytes``: a message whose decoded price (``wire.price``'s rules: what CPython holds
  for it at least) passes it, as soon as the walk reaches that value: ``DecodedSizeRefused``;
- a bad version, an unknown type id, a compact varint longer than its type allows (5 bytes, 10 for
  i64): ``TProtocolException`` (BAD_VERSION, INVALID_DATA).
After a refusal the framer stays refused (every later call raises the same error): the stream cannot
be trusted from there on. Messages whole before it are handed out first.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from typing import Callable, Generator, List, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType
from thrift.transport.TTransport import TTransportException

from ..config import ServerLimits, Wire
from .errors import BudgetExceeded, DecodedSizeRefused, FrameTooLarge
from .json_framing import JsonMessageEnd
from .price import (COMPACT_VARINT_PRICES, LIST_PRICE, MAP_ENTRY_PRICE, MAP_PRICE, SCALAR_PRICES, STRING_PRICE,
                    STRUCT_PRICE, slot_price)
from .protocols import message_header

try:
    from thrift.protocol import fastbinary
except ImportError:  # pure Python Thrift: every message is walked
    fastbinary = None

__all__ = ["FramerLimits", "MessageFramer", "frame_limit"]

#: A walk over a message: yields how many bytes its next step needs and is sent where they start.
_Walk = Generator[int, int, None]

_I32 = struct.Struct("!i")
#: Of a frame refused by its length, at most this much is read (or looked at): enough for any message header.
FRAME_START_BYTES = 64 * 1024
_BINARY_VERSION_MASK = -65536  # 0xffff0000 as an i32
_BINARY_VERSION_1 = -2147418112  # 0x80010000 as an i32
_COMPACT_PROTOCOL_ID = 0x82
_COMPACT_VERSION = 1

#: Bytes a value of a fixed-width type takes, by binary type id and by compact type id (as a container
#: element: a compact bool there is a byte).
_BINARY_WIDTHS = {TType.BOOL: 1, TType.BYTE: 1, TType.I16: 2, TType.I32: 4, TType.I64: 8, TType.DOUBLE: 8,
                  TType.UUID: 16}
_C_TRUE, _C_FALSE, _C_BYTE, _C_I16, _C_I32, _C_I64, _C_DOUBLE, _C_BINARY, _C_LIST, _C_SET, _C_MAP, _C_STRUCT, \
    _C_UUID = range(1, 14)
_COMPACT_WIDTHS = {_C_TRUE: 1, _C_FALSE: 1, _C_BYTE: 1, _C_DOUBLE: 8, _C_UUID: 16}
#: What a scalar costs decoded (``wire.price``), by compact type id.
_COMPACT_PRICES = {_C_BYTE: SCALAR_PRICES[TType.BYTE], _C_DOUBLE: SCALAR_PRICES[TType.DOUBLE],
                   _C_I16: COMPACT_VARINT_PRICES[4], _C_I32: COMPACT_VARINT_PRICES[5], _C_I64: COMPACT_VARINT_PRICES[6]}
#: The least a container element costs decoded, by type id: a scalar's price, an empty string, struct,
#: list, set or map's (so a container whose elements cannot fit is refused from its header).
_BINARY_FLOORS = {**SCALAR_PRICES, TType.STRING: STRING_PRICE, TType.STRUCT: STRUCT_PRICE, TType.LIST: LIST_PRICE,
                  TType.SET: LIST_PRICE, TType.MAP: MAP_PRICE}
_COMPACT_FLOORS = {**_COMPACT_PRICES, _C_BINARY: STRING_PRICE, _C_STRUCT: STRUCT_PRICE, _C_LIST: LIST_PRICE,
                   _C_SET: LIST_PRICE, _C_MAP: MAP_PRICE}


#: The C decoder's own depth limit (structs and containers, the arguments struct included).
_C_MAX_DEPTH = 64
#: At most this much of the buffer is handed to the C decoder per message (a longer message is walked).
_C_WINDOW = 64 * 1024
_TWO_I32 = struct.Struct("!ii")


def frame_limit(max_message_bytes: int) -> int:
    """The largest frame (as its length field counts it) of a message of at most ``max_message_bytes``
    with that 4-byte length field included."""
    return max(max_message_bytes - 4, 1)


@dataclasses.dataclass(frozen=True)
class FramerLimits:
    """What one message may take: ``max_message_bytes`` in all (a frame's length field included),
    ``max_container_items`` per list, set or map (None: no cap), ``max_depth`` levels of structs and
    containers (the arguments struct is level 1), ``max_decoded_bytes`` of decoded price (None: no cap)."""

    max_message_bytes: int
    max_container_items: Optional[int] = None
    max_depth: int = 64
    max_decoded_bytes: Optional[int] = None

    @classmethod
    def of(cls, limits: ServerLimits) -> "FramerLimits":
        """The limits a server with ``limits`` holds a message to once its session has started."""
        return cls(limits.max_message_bytes, limits.max_container_items)


class MessageFramer:
    """Splits one connection's bytes into whole messages of ``wire`` (its transport: buffered, framed
    or header; its protocol: binary or compact, for the unframed walk), refusing what breaks ``limits``."""

    def __init__(self, wire: Wire, limits: FramerLimits) -> None:
        if wire.transport == "http":
            raise ValueError(f"{wire}: messages are cut from buffered, framed or THeader streams only "
                             "(HTTP's requests and responses are cut by wire.http's parsers)")
        self.wire = wire
        #: Unframed JSON: where each message ends (``json_framing``), instead of a walk.
        self._json = (JsonMessageEnd(limits.max_depth, limits.max_container_items)
                      if wire.protocol == "json" and wire.transport == "buffered" else None)
        self.limits = limits
        self._buffer = bytearray()
        self._start = 0  # where the message being walked starts in the buffer
        self._position = 0  # how far its walk has got
        self._walk: Optional[_Walk] = None
        self._need = 0  # bytes the walk's next step needs from _position
        self._error: Optional[Exception] = None
        self._price_limit = (1 << 62) if limits.max_decoded_bytes is None else limits.max_decoded_bytes
        self._whole_in_c = (_WholeInC(limits) if fastbinary is not None and wire.transport == "buffered"
                            and wire.protocol == "binary" and limits.max_decoded_bytes is None
                            and limits.max_depth >= _C_MAX_DEPTH else None)
        #: What the message being walked (or the last one handed out) takes decoded, at least (``wire.price``).
        self.price = 0

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a whole message."""
        return len(self._buffer) - self._start

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (or fewer) of the message not yet whole (to answer one it refused)."""
        return bytes(self._buffer[self._start:self._start + size])

    def receive(self, data: bytes) -> None:
        """Adds the connection's next bytes (ignored once the stream is refused)."""
        if self._error is not None:
            return
        if self._start:  # drop the messages handed out (the walk's offsets move with them)
            del self._buffer[:self._start]
            self._position -= self._start
            self._start = 0
        self._buffer += data

    def next_message(self) -> Optional[bytes]:
        """The next whole message, or None until more bytes arrive. Raises the refusal when the walk
        reaches one, and again on every later call: the stream cannot be trusted from there on."""
        end = self._next_end()
        if end is None:
            return None
        message = bytes(self._buffer[self._start:end])
        self._start = end
        return message

    def _next_end(self) -> Optional[int]:
        """Where the next whole message ends in the buffer, or None; refusals as ``next_message``."""
        if self._error is not None:
            raise self._error
        try:
            return self._advance()
        except Exception as error:
            self._error = error
            raise

    def feed(self, data: bytes) -> List[bytes]:
        """``receive(data)``, then the whole messages there are, in order. A refusal reached after
        whole messages is raised by the next call (``feed(b"")`` will do), so that those messages are
        served first, as the threaded server serves a peer's messages in order."""
        self.receive(data)
        messages: List[bytes] = []
        while True:
            try:
                message = self.next_message()
            except (TProtocolException, TTransportException):
                if messages:
                    return messages
                raise
            if message is None:
                return messages
            messages.append(message)

    def _advance(self) -> Optional[int]:
        """Walks on as far as the bytes go: the end of the message when it is whole, else None."""
        if self._json is not None:
            return self._json_end(self._json)
        buffer = self._buffer
        walk = self._walk
        if walk is None:
            if len(buffer) == self._start:
                return None
            if self._whole_in_c is not None:
                end = self._whole_in_c.end(buffer, self._start)
                if end is not None:
                    self.price = 0  # not priced: nothing asked for it
                    return end
            self._position = self._start
            self.price = 0
            walk = self._walk = self._message()
            self._need = self._step(walk, None)
        while len(buffer) - self._position >= self._need:
            at = self._position
            self._position += self._need
            try:
                self._need = self._step(walk, at)
            except StopIteration:
                self._walk = None
                return self._position
        return None

    def _json_end(self, scanner: JsonMessageEnd) -> Optional[int]:
        """``_advance`` for unframed JSON: scans on to the message's closing bracket (the walk in progress
        is marked by ``_need``: 1 while a message is open)."""
        buffer = self._buffer
        if not self._need:
            if len(buffer) == self._start:
                return None
            self._position, self._need = self._start, 1
            scanner.begin()
        self._position, whole = scanner.scan(buffer, self._position)
        if (self._position if whole else len(buffer)) - self._start > self.limits.max_message_bytes:
            raise BudgetExceeded(TTransportException.SIZE_LIMIT,
                                 f"a message of more than {self.limits.max_message_bytes} bytes (max_message_bytes)")
        if not whole:
            return None
        self._need = 0
        return self._position

    def _step(self, walk: _Walk, at: Optional[int]) -> int:
        """Hands the walk where its bytes start (None to begin); what it needs next, within the budget."""
        need = next(walk) if at is None else walk.send(at)
        if self._position + need - self._start > self.limits.max_message_bytes:
            raise BudgetExceeded(TTransportException.SIZE_LIMIT,
                                 f"a message of more than {self.limits.max_message_bytes} bytes (max_message_bytes)")
        return need

    def _charge(self, amount: int) -> None:
        """Adds ``amount`` to the message's decoded price, refused past ``max_decoded_bytes``."""
        self.price += amount
        if self.price > self._price_limit:
            raise DecodedSizeRefused(f"decoded, the message would take over {self.price} bytes "
                                     f"(max_decoded_bytes={self._price_limit})", self.price)

    # -- the walks ----------------------------------------------------------------------------

    def _message(self) -> _Walk:
        if self.wire.transport in ("framed", "header"):
            return self._frame()
        if self.wire.protocol == "compact":
            return self._compact_message()
        return self._binary_message()

    def _frame(self) -> _Walk:
        at = yield 4
        size, = _I32.unpack_from(self._buffer, at)
        if size < 0:
            raise TTransportException(TTransportException.NEGATIVE_SIZE, f"Read a negative frame size ({size})")
        limit = frame_limit(self.limits.max_message_bytes)
        if size > limit:
            raise FrameTooLarge(size, limit, self._header_of_frame())
        if size:
            yield size

    def _header_of_frame(self) -> Optional[Tuple[str, int]]:
        """(name, seqid) of a plain binary or compact frame's message, if the bytes here hold it (a
        THeader frame's message follows THeader's own header, which is not read here: None)."""
        return message_header(bytes(self._buffer[self._start + 4:self._start + 4 + FRAME_START_BYTES]))

    def _string(self, size: int) -> _Walk:
        if size < 0:
            raise TProtocolException(TProtocolException.NEGATIVE_SIZE, f"Negative length: {size}")
        if size > self.limits.max_message_bytes:
            raise TProtocolException(TProtocolException.SIZE_LIMIT,
                                     f"Length {size} exceeded max_message_bytes ({self.limits.max_message_bytes})")
        self._charge(STRING_PRICE + size)
        if size:
            yield size

    def _container(self, size: int, depth: int, price: int) -> None:
        if size < 0:
            raise TProtocolException(TProtocolException.NEGATIVE_SIZE, f"Negative container size: {size}")
        cap = self.limits.max_container_items
        if cap is not None and size > cap:
            raise TProtocolException(TProtocolException.SIZE_LIMIT,
                                     f"Container of {size} items exceeded max_container_items ({cap})")
        self._nested(depth)
        self._charge(price)

    def _nested(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise TProtocolException(TProtocolException.DEPTH_LIMIT,
                                     f"nested deeper than {self.limits.max_depth} structs and containers")

    def _i32(self, at: int) -> int:
        return _I32.unpack_from(self._buffer, at)[0]

    # binary

    def _binary_message(self) -> _Walk:
        at = yield 4
        header = self._i32(at)
        if header >= 0:
            raise TProtocolException(TProtocolException.BAD_VERSION, "No protocol version header")
        if header & _BINARY_VERSION_MASK != _BINARY_VERSION_1:
            raise TProtocolException(TProtocolException.BAD_VERSION, f"Bad version in readMessageBegin: {header}")
        at = yield 4
        yield from self._string(self._i32(at))  # the method name
        yield 4  # seqid
        self.price = 0  # the name is not decoded into the arguments
        yield from self._binary_struct(1)

    def _binary_struct(self, depth: int) -> _Walk:
        self._nested(depth)
        self._charge(STRUCT_PRICE)
        while True:
            at = yield 1
            field_type = self._buffer[at]
            if field_type == TType.STOP:
                return
            yield 2  # field id
            yield from self._binary_value(field_type, depth)

    def _binary_value(self, ttype: int, depth: int) -> _Walk:
        width = _BINARY_WIDTHS.get(ttype)
        if width is not None:
            self._charge(SCALAR_PRICES.get(ttype, 0))
            yield width
        elif ttype == TType.STRING:
            at = yield 4
            yield from self._string(self._i32(at))
        elif ttype == TType.STRUCT:
            yield from self._binary_struct(depth + 1)
        elif ttype == TType.MAP:
            at = yield 6
            key_type, value_type, size = self._buffer[at], self._buffer[at + 1], self._i32(at + 2)
            yield from self._elements(size, (key_type, value_type), depth, _BINARY_WIDTHS, _BINARY_FLOORS,
                                      self._binary_value)
        elif ttype in (TType.LIST, TType.SET):
            at = yield 5
            yield from self._elements(self._i32(at + 1), (self._buffer[at],), depth, _BINARY_WIDTHS, _BINARY_FLOORS,
                                      self._binary_value, slot_price(ttype == TType.SET))
        else:
            raise TProtocolException(TProtocolException.INVALID_DATA, f"Unknown type id {ttype}")

    def _elements(self, size: int, types: tuple, depth: int, widths: dict, floors: dict,
                  value: Callable[[int, int], _Walk], slot: int = 0) -> _Walk:
        """``size`` elements (or entries) of ``types``; fixed-width ones are priced and skipped in one step,
        others refused from the header when even their least price cannot fit (``floors``); ``slot``: what
        each element of a list or set costs besides itself."""
        self._container(size, depth + 1, (LIST_PRICE + slot * size) if len(types) == 1
                        else (MAP_PRICE + MAP_ENTRY_PRICE * size))
        if not size:
            return
        least = size * sum(floors.get(ttype, 0) for ttype in types)
        if all(ttype in widths for ttype in types):
            self._charge(least)
            yield size * sum(widths[ttype] for ttype in types)
            return
        if self.price + least > self._price_limit:  # charged element by element below, refused here
            self._charge(least)
        yield from self._each_element(size, types, depth, widths is _COMPACT_WIDTHS, value)

    def _each_element(self, size: int, types: tuple, depth: int, compact: bool,
                      value: Callable[[int, int], _Walk]) -> _Walk:
        """Walks ``size`` elements (or entries) of ``types``, one value at a time."""
        for _ in range(size):
            for ttype in types:
                yield from value(ttype, depth + 1)

    # compact

    def _varint(self, max_bytes: int = 5) -> Generator[int, int, int]:
        result = shift = 0
        for _ in range(max_bytes):
            at = yield 1
            byte = self._buffer[at]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
        raise TProtocolException(TProtocolException.INVALID_DATA, f"Variable-length int over {max_bytes} bytes")

    def _compact_size(self) -> Generator[int, int, int]:
        size = yield from self._varint()
        return size - (1 << 32) if size > 0x7FFFFFFF else size  # an i32 sent as unsigned

    def _compact_message(self) -> _Walk:
        at = yield 2
        protocol_id, version_and_type = self._buffer[at], self._buffer[at + 1]
        if protocol_id != _COMPACT_PROTOCOL_ID:
            raise TProtocolException(TProtocolException.BAD_VERSION, f"Bad protocol id in the message: {protocol_id}")
        if version_and_type & 0x1F != _COMPACT_VERSION:
            raise TProtocolException(TProtocolException.BAD_VERSION,
                                     f"Bad version: {version_and_type & 0x1F} (expect {_COMPACT_VERSION})")
        yield from self._varint()  # seqid
        size = yield from self._compact_size()
        yield from self._string(size)  # the method name
        self.price = 0  # the name is not decoded into the arguments
        yield from self._compact_struct(1)

    def _compact_struct(self, depth: int) -> _Walk:
        self._nested(depth)
        self._charge(STRUCT_PRICE)
        while True:
            at = yield 1
            header = self._buffer[at]
            if header == 0:  # STOP
                return
            if header >> 4 == 0:  # no id delta: the field id follows
                yield from self._varint()
            ctype = header & 0x0F
            if ctype not in (_C_TRUE, _C_FALSE):  # a bool field's value is its type
                yield from self._compact_value(ctype, depth)

    def _compact_value(self, ctype: int, depth: int) -> _Walk:
        width = _COMPACT_WIDTHS.get(ctype)
        if width is not None:
            self._charge(_COMPACT_PRICES.get(ctype, 0))
            yield width
        elif ctype in (_C_I16, _C_I32):
            self._charge(_COMPACT_PRICES[ctype])
            yield from self._varint()
        elif ctype == _C_I64:
            self._charge(_COMPACT_PRICES[ctype])
            yield from self._varint(10)
        elif ctype == _C_BINARY:
            size = yield from self._compact_size()
            yield from self._string(size)
        elif ctype == _C_STRUCT:
            yield from self._compact_struct(depth + 1)
        elif ctype in (_C_LIST, _C_SET):
            at = yield 1
            size, element_type = self._buffer[at] >> 4, self._buffer[at] & 0x0F
            if size == 15:
                size = yield from self._compact_size()
            yield from self._elements(size, (element_type,), depth, _COMPACT_WIDTHS, _COMPACT_FLOORS,
                                      self._compact_value, slot_price(ctype == _C_SET))
        elif ctype == _C_MAP:
            size = yield from self._compact_size()
            types: tuple = ()
            if size > 0:
                at = yield 1
                types = (self._buffer[at] >> 4, self._buffer[at] & 0x0F)
            yield from self._elements(size, types, depth, _COMPACT_WIDTHS, _COMPACT_FLOORS, self._compact_value)
        else:
            raise TProtocolException(TProtocolException.INVALID_DATA, f"Unknown compact type id {ctype}")


class _Skipped:
    """What the C decoder fills in while skipping every field (nothing)."""


class _WholeInC:
    """The end of an unframed binary message whole in a buffer, found by the C decoder skipping its
    arguments (as both the protocol and the transport ``fastbinary.decode_binary`` reads from), within
    ``limits``; None when it is not whole there or anything is wrong with it (the walk then says what)."""

    __slots__ = ("_most", "string_length_limit", "container_length_limit", "trans", "cstringio_buf")
    _SPEC = [_Skipped, ()]  # a struct without fields: every field is skipped

    def __init__(self, limits: FramerLimits) -> None:
        self._most = limits.max_message_bytes
        self.string_length_limit = limits.max_message_bytes
        self.container_length_limit = 0x7FFFFFFF if limits.max_container_items is None else limits.max_container_items
        self.trans = self
        self.cstringio_buf: Optional[io.BytesIO] = None

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> io.BytesIO:
        raise EOFError()  # not whole here

    def end(self, buffer: bytearray, start: int) -> Optional[int]:
        if len(buffer) - start < 13:
            return None
        header, size = _TWO_I32.unpack_from(buffer, start)
        if header & _BINARY_VERSION_MASK != _BINARY_VERSION_1 or not 0 <= size <= self._most:
            return None
        at = start + 12 + size  # past the header, the name and the seqid: the arguments
        self.cstringio_buf = read = io.BytesIO(buffer[at:at + _C_WINDOW])
        try:
            fastbinary.decode_binary(_Skipped(), self, self._SPEC)
        except Exception:  # not whole, or refused: the walk decides
            return None
        finally:
            self.cstringio_buf = None
        end = at + read.tell()
        return end if end - start <= self._most else None
