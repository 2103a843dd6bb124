"""What a message would take once decoded, from its bytes, without building anything.

A Thrift message is small on the wire and large in memory: an empty struct is one byte on the wire
and a Python object of about 150 bytes decoded (14.3 MiB of them held 1.78 GB). ``decoded_price``
(``decoded_price_compact``) walks a binary (compact) struct, the arguments of a call, and prices
each value at the least CPython holds for it; it stops as soon as the price passes ``limit``, so
refusing a huge message costs a walk of what the limit allows, not of the message. Both walks price
a message alike. No socket: the bytes are a whole frame already read.
"""

from __future__ import annotations

import struct
from typing import Tuple, Union

from thrift.Thrift import TType

__all__ = ["decoded_price", "decoded_price_compact", "whole_values", "WORST_FACTOR", "UNPRICED_BYTES",
           "slot_price"]

#: Requests this small are not priced: each decodes to 10 MB at most, one in flight per connection.
UNPRICED_BYTES = 64 * 1024
#: Decoded bytes per wire byte at worst (an empty struct in a list): messages smaller than
#: ``limit / WORST_FACTOR`` cannot pass ``limit`` and need no walk.
WORST_FACTOR = 160

STRUCT_PRICE = 150  # a generated object and its __dict__
LIST_SLOT_PRICE = 8
SET_SLOT_PRICE = 32  # a 16-byte hash-table entry; the table is kept at most 3/5 full, and doubles
LIST_PRICE = 56
MAP_PRICE = 232
MAP_ENTRY_PRICE = 30
STRING_PRICE = 33  # bytes header; a str is larger
_WIDTH = {TType.BOOL: 1, TType.BYTE: 1, TType.DOUBLE: 8, TType.I16: 2, TType.I32: 4, TType.I64: 8}
SCALAR_PRICES = {TType.BOOL: 0, TType.BYTE: 28, TType.DOUBLE: 24, TType.I16: 28, TType.I32: 28, TType.I64: 32}
_I32 = struct.Struct("!i")


def slot_price(is_set: bool) -> int:
    """What one element of a list, or of a set, costs besides the element itself."""
    return SET_SLOT_PRICE if is_set else LIST_SLOT_PRICE


class _Over(Exception):
    """The price passed the limit: the walk stops."""


class _Walk:
    __slots__ = ("data", "pos", "price", "limit")

    def __init__(self, data: Union[bytes, bytearray, memoryview], limit: int) -> None:
        self.data, self.pos, self.price, self.limit = data, 0, 0, limit

    def length(self) -> int:
        value, = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        if value < 0:
            raise ValueError("negative length")
        return value

    def charge(self, amount: int) -> None:
        self.price += amount
        if self.price > self.limit:
            raise _Over()

    def value(self, ttype: int) -> None:
        width = _WIDTH.get(ttype)
        if width is not None:
            self.pos += width
            self.charge(SCALAR_PRICES[ttype])
        elif ttype == TType.STRING:
            size = self.length()
            self.pos += size
            self.charge(STRING_PRICE + size)
        elif ttype == TType.STRUCT:
            self.struct()
        elif ttype in (TType.LIST, TType.SET):
            element = self.data[self.pos]
            self.pos += 1
            count = self.length()
            self.charge(LIST_PRICE + slot_price(ttype == TType.SET) * count)
            self.items(count, element)
        elif ttype == TType.MAP:
            key, value = self.data[self.pos], self.data[self.pos + 1]
            self.pos += 2
            count = self.length()
            self.charge(MAP_PRICE + MAP_ENTRY_PRICE * count)
            self.items(count, key, value)
        else:
            raise ValueError(f"type {ttype}")

    def items(self, count: int, *types: int) -> None:
        widths = [_WIDTH.get(ttype) for ttype in types]
        if None not in widths:  # fixed-width scalars: priced from the header alone
            self.charge(count * sum(SCALAR_PRICES[ttype] for ttype in types))
            self.pos += count * sum(widths)
            return
        self.each(count, types)

    def each(self, count: int, types: Tuple[int, ...]) -> None:
        """Prices ``count`` elements (or key-value pairs) of ``types`` one by one."""
        end = len(self.data)
        for _ in range(count):
            if self.pos >= end:
                raise ValueError("cut short")
            for ttype in types:
                self.value(ttype)

    def struct(self) -> None:
        self.charge(STRUCT_PRICE)
        data = self.data
        while True:
            ttype = data[self.pos]
            self.pos += 3 if ttype != TType.STOP else 1
            if ttype == TType.STOP:
                return
            self.value(ttype)


def decoded_price(data: Union[bytes, memoryview], limit: int) -> int:
    """About the least memory (bytes) that the strict-binary struct at the start of ``data`` takes
    decoded; more than ``limit`` as soon as it passes it (the walk stops there). Malformed bytes are
    priced as far as they go: the decoder refuses them anyway."""
    return _priced(_Walk(data, limit))


def _priced(walk: "_Walk") -> int:
    """What ``walk`` priced of its struct: as far as it went, when it passed its limit or met bytes it
    cannot read."""
    try:
        walk.struct()
    except (_Over, IndexError, ValueError, struct.error, RecursionError):
        pass
    return walk.price


# -- compact ---------------------------------------------------------------------------------------

_C_BOOL_TRUE, _C_BOOL_FALSE, _C_BYTE, _C_I16, _C_I32, _C_I64, _C_DOUBLE, _C_BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_C_LIST, _C_SET, _C_MAP, _C_STRUCT = 9, 10, 11, 12
COMPACT_VARINT_PRICES = {_C_I16: 28, _C_I32: 28, _C_I64: 32}
_C_FIXED = {_C_BOOL_TRUE: (1, 0), _C_BOOL_FALSE: (1, 0), _C_BYTE: (1, 28), _C_DOUBLE: (8, 24)}
_HIGH_BYTES = bytes(range(0x80, 0x100))


class _CompactWalk(_Walk):
    __slots__ = ()

    def varint(self) -> int:
        data, result, shift = self.data, 0, 0
        while True:
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def skip_varints(self, count: int) -> None:
        """Moves past ``count`` varints. Each ends with a byte under 0x80, so the next ``count`` bytes
        hold at most ``count`` ends: take them, count the ends, go on with the varints still to pass."""
        data = self.data
        while count:
            window = bytes(data[self.pos:self.pos + count])
            if not window:
                raise ValueError("cut short")
            self.pos += len(window)
            count -= len(window.translate(None, _HIGH_BYTES))

    def value(self, ctype: int) -> None:
        fixed = _C_FIXED.get(ctype)
        if fixed is not None:
            self.pos += fixed[0]
            self.charge(fixed[1])
        elif ctype in COMPACT_VARINT_PRICES:
            self.varint()
            self.charge(COMPACT_VARINT_PRICES[ctype])
        elif ctype == _C_BINARY:
            size = self.varint()
            self.pos += size
            self.charge(STRING_PRICE + size)
        elif ctype == _C_STRUCT:
            self.struct()
        elif ctype in (_C_LIST, _C_SET):
            header = self.data[self.pos]
            self.pos += 1
            count = header >> 4
            if count == 15:
                count = self.varint()
            self.charge(LIST_PRICE + slot_price(ctype == _C_SET) * count)
            self.items(count, header & 0x0F)
        elif ctype == _C_MAP:
            count = self.varint()
            self.charge(MAP_PRICE + MAP_ENTRY_PRICE * count)
            if count:
                types = self.data[self.pos]
                self.pos += 1
                self.items(count, types >> 4, types & 0x0F)
        else:
            raise ValueError(f"compact type {ctype}")

    def items(self, count: int, *ctypes: int) -> None:
        if len(ctypes) == 1 and ctypes[0] in COMPACT_VARINT_PRICES:  # priced from the header, then skipped fast
            self.charge(count * COMPACT_VARINT_PRICES[ctypes[0]])
            self.skip_varints(count)
            return
        if len(ctypes) == 1 and ctypes[0] in _C_FIXED:
            width, price = _C_FIXED[ctypes[0]]
            self.charge(count * price)
            self.pos += count * width
            return
        self.each(count, ctypes)

    def struct(self) -> None:
        self.charge(STRUCT_PRICE)
        data = self.data
        while True:
            header = data[self.pos]
            self.pos += 1
            if header == 0:
                return
            if header >> 4 == 0:  # a long-form field id follows
                self.varint()
            ctype = header & 0x0F
            if ctype not in (_C_BOOL_TRUE, _C_BOOL_FALSE):  # a bool field's value is in its type
                self.value(ctype)
            else:
                self.charge(0)


def decoded_price_compact(data: Union[bytes, memoryview], limit: int) -> int:
    """``decoded_price`` for a compact struct."""
    return _priced(_CompactWalk(data, limit))


class _Nesting:
    """A walk that refuses (ValueError) structs and containers nested more than ``levels`` deep."""

    levels = 0

    def struct(self) -> None:
        self.levels -= 1
        if self.levels < 0:
            raise ValueError("nested too deep")
        try:
            super().struct()  # type: ignore[misc]
        finally:
            self.levels += 1

    def items(self, count: int, *types: int) -> None:
        self.levels -= 1
        if self.levels < 0:
            raise ValueError("nested too deep")
        try:
            super().items(count, *types)  # type: ignore[misc]
        finally:
            self.levels += 1


class _NestingWalk(_Nesting, _Walk):
    __slots__ = ("levels",)


class _NestingCompactWalk(_Nesting, _CompactWalk):
    __slots__ = ("levels",)


def whole_values(data: Union[bytes, bytearray, memoryview], position: int, count: int, types: Tuple[int, ...],
                 compact: bool, limit: int, levels: int) -> Tuple[int, int, int]:
    """Of ``count`` values (or map entries) of ``types`` (binary, or compact, type ids) from
    ``position`` on: how many end within ``data``, walked in order and stopping at the first that does
    not, that is malformed, nests structs and containers more than ``levels`` deep or whose price would
    pass ``limit``; (where they end, how many, their price). A resumable walker (``framer``) hands the
    values already received to this faster one."""
    walk = (_NestingCompactWalk if compact else _NestingWalk)(data, limit)
    walk.levels = levels
    walk.pos = position
    end, done, price, size = position, 0, 0, len(data)
    try:
        while done < count:
            for ttype in types:
                walk.value(ttype)
            if walk.pos > size:  # a length pointed past what has arrived
                break
            done += 1
            end, price = walk.pos, walk.price
    except (_Over, IndexError, ValueError, struct.error, RecursionError):
        pass
    return end, done, price
