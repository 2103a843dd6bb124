"""What a message would take once decoded, from its bytes, without building anything.

A Thrift message is small on the wire and large in memory: an empty struct is one byte on the wire
and a Python object of about 150 bytes decoded (14.3 MiB of them held 1.78 GB). ``decoded_price``
walks a strict-binary struct (the arguments of a call) and prices each value at the least CPython
holds for it; it stops as soon as the price passes ``limit``, so refusing a huge message costs a walk
of what the limit allows, not of the message. No socket: the bytes are a whole frame already read.
"""

from __future__ import annotations

import struct
from typing import Union

from thrift.Thrift import TType

__all__ = ["decoded_price", "WORST_FACTOR"]

#: Decoded bytes per wire byte at worst (an empty struct in a list): messages smaller than
#: ``limit / WORST_FACTOR`` cannot pass ``limit`` and need no walk.
WORST_FACTOR = 160

_STRUCT = 150  # a generated object and its __dict__
_LIST_SLOT = 8
_LIST = 56
_MAP = 232
_MAP_ENTRY = 30
_STRING = 33  # bytes header; a str is larger
_WIDTH = {TType.BOOL: 1, TType.BYTE: 1, TType.DOUBLE: 8, TType.I16: 2, TType.I32: 4, TType.I64: 8}
_SCALAR = {TType.BOOL: 0, TType.BYTE: 28, TType.DOUBLE: 24, TType.I16: 28, TType.I32: 28, TType.I64: 32}
_I32 = struct.Struct("!i")


class _Over(Exception):
    """The price passed the limit: the walk stops."""


class _Walk:
    __slots__ = ("data", "pos", "price", "limit")

    def __init__(self, data: Union[bytes, memoryview], limit: int) -> None:
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
            self.charge(_SCALAR[ttype])
        elif ttype == TType.STRING:
            size = self.length()
            self.pos += size
            self.charge(_STRING + size)
        elif ttype == TType.STRUCT:
            self.struct()
        elif ttype in (TType.LIST, TType.SET):
            element = self.data[self.pos]
            self.pos += 1
            count = self.length()
            self.charge(_LIST + _LIST_SLOT * count)
            self.items(count, element)
        elif ttype == TType.MAP:
            key, value = self.data[self.pos], self.data[self.pos + 1]
            self.pos += 2
            count = self.length()
            self.charge(_MAP + _MAP_ENTRY * count)
            self.items(count, key, value)
        else:
            raise ValueError(f"type {ttype}")

    def items(self, count: int, *types: int) -> None:
        widths = [_WIDTH.get(ttype) for ttype in types]
        if None not in widths:  # fixed-width scalars: priced from the header alone
            self.charge(count * sum(_SCALAR[ttype] for ttype in types))
            self.pos += count * sum(widths)
            return
        end = len(self.data)
        for _ in range(count):
            if self.pos >= end:
                raise ValueError("cut short")
            for ttype in types:
                self.value(ttype)

    def struct(self) -> None:
        self.charge(_STRUCT)
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
    walk = _Walk(data, limit)
    try:
        walk.struct()
    except _Over:
        pass
    except (IndexError, ValueError, struct.error, RecursionError):
        pass
    return walk.price
