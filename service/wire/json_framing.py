"""Where one unframed TJSONProtocol message ends, from its bytes alone (no socket, no decoding).

A JSON message is one array, ``[1,"name",type,seqid,{...}]``: it ends where the bracket that opened it
closes. ``JsonMessageEnd`` counts ``[``/``{`` against ``]``/``}`` outside strings (a string ends at an
unescaped ``"``; ``\\`` escapes the next byte), skipping between them with a regular expression, so
its cost is per structural character, not per byte. It resumes where the last call stopped, so dripped
input costs O(total bytes); the one step that may look at the same bytes twice is a container's count
(at most ``_COUNT_WAIT`` bytes), awaited whole.

Refusals, as the other dialects' walks raise them (``wire.framer``):
- a first byte other than ``[``, a closer that does not match its opener: ``TProtocolException(INVALID_DATA)``;
- nesting deeper than ``2 * max_depth + 1`` brackets (each Thrift struct or container level takes at most
  two: a struct's object and its fields' type wrappers, a map's array and its object):
  ``TProtocolException(DEPTH_LIMIT)``;
- a list, set or map that declares more than ``max_items`` entries (TJSONProtocol writes the count in the
  container's header, ``["i32",3,...]`` or ``["str","i32",2,{...}]``): ``TProtocolException(SIZE_LIMIT)``,
  a negative count ``NEGATIVE_SIZE``, both as soon as the count is whole.
The message's size (``max_message_bytes``) is the framer's to judge. Anything else malformed (a bad
number, a missing comma) is left to the decoder, which refuses it once the message is whole.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple, Union

from thrift.protocol.TProtocol import TProtocolException

__all__ = ["JsonMessageEnd"]

_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_IN_STRING = re.compile(rb'["\\]')
#: A container's count after its type name(s): ``,3,`` or ``,0]`` (the terminator proves the number whole).
_COUNT = re.compile(rb",(-?[0-9]{1,20})[,\]]")
#: What may still become a count once more bytes come.
_COUNT_SO_FAR = re.compile(rb",(-?[0-9]{0,20})?\Z")
#: At most this many bytes of a count are awaited (a comma, a sign, 20 digits and a terminator).
_COUNT_WAIT = 23
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENERS = {ord("["): ord("]"), ord("{"): ord("}")}

# Where a container's header is, after a "[" (TJSONProtocol's list, set and map start with type names)
_NONE, _OPENED, _FIRST_TYPE, _AFTER_FIRST, _SECOND_TYPE, _AFTER_SECOND = range(6)

Buffer = Union[bytes, bytearray]


class JsonMessageEnd:
    """Finds the end of one JSON message after another: ``begin()``, then ``scan(buffer, position)``
    as bytes arrive, until it says the message is whole."""

    def __init__(self, max_depth: int = 64, max_items: Optional[int] = None) -> None:
        self.max_brackets = 2 * max_depth + 1
        self.max_items = max_items
        self.begin()

    def begin(self) -> None:
        """Starts on a new message."""
        self._closers = bytearray()  # the closer each open bracket expects, innermost last
        self._in_string = False
        self._header = _NONE

    def scan(self, buffer: Buffer, position: int) -> Tuple[int, bool]:
        """Scans ``buffer`` from ``position`` (where the last scan stopped, or the message's first byte):
        returns where it stopped and whether the message ends there (else every byte up to it is
        scanned and the next scan resumes from it). Raises the refusals of the module's docstring."""
        end = len(buffer)
        if not self._closers and not self._in_string and position < end and buffer[position] != ord("["):
            raise TProtocolException(TProtocolException.INVALID_DATA,
                                     f"a JSON message starts with '[', not {bytes(buffer[position:position + 1])!r}")
        closers = self._closers
        while position < end:
            if self._in_string:
                found = _IN_STRING.search(buffer, position)
                if found is None:
                    return end, False
                at = found.start()
                if buffer[at] == _BACKSLASH:
                    if at + 1 == end:
                        return at, False  # what it escapes is still to come
                    position = at + 2
                    continue
                self._in_string = False
                position = at + 1
                if self._header in (_FIRST_TYPE, _SECOND_TYPE):
                    self._header += 1
                continue
            if self._header != _NONE:
                position, waiting = self._container_header(buffer, position)
                if waiting:
                    return position, False
                continue
            found = _STRUCTURAL.search(buffer, position)
            if found is None:
                return end, False
            at = found.start()
            byte = buffer[at]
            position = at + 1
            if byte == _QUOTE:
                self._in_string = True
            elif byte in _OPENERS:
                closers.append(_OPENERS[byte])
                if len(closers) > self.max_brackets:
                    raise TProtocolException(TProtocolException.DEPTH_LIMIT,
                                             f"JSON nested deeper than {self.max_brackets} brackets "
                                             f"({(self.max_brackets - 1) // 2} structs and containers)")
                self._header = _OPENED if byte == ord("[") else _NONE
            else:
                if not closers or closers[-1] != byte:
                    raise TProtocolException(TProtocolException.INVALID_DATA,
                                             f"a JSON {chr(byte)!r} closes no bracket of its kind")
                closers.pop()
                if not closers:
                    return position, True
        return position, False

    def _container_header(self, buffer: Buffer, position: int) -> Tuple[int, bool]:
        """One step through a container's header at ``position``: where the scan goes on, and whether
        it waits for more bytes there."""
        header = self._header
        if header == _OPENED:  # an array whose first element is a string: a list, set or map's type name
            if buffer[position] == _QUOTE:
                self._header, self._in_string = _FIRST_TYPE, True
                return position + 1, False
            self._header = _NONE
            return position, False
        count = _COUNT.match(buffer, position)
        if count is not None:
            self._header = _NONE
            self._check_count(int(count.group(1)))
            return count.end(1), False
        if header == _AFTER_FIRST and buffer[position:position + 2] == b',"':  # a map's value type
            self._header, self._in_string = _SECOND_TYPE, True
            return position + 2, False
        if _COUNT_SO_FAR.match(buffer, position) and len(buffer) - position < _COUNT_WAIT:
            return position, True
        self._header = _NONE  # not a container after all (an array of strings): nothing to count
        return position, False

    def _check_count(self, count: int) -> None:
        if count < 0:
            raise TProtocolException(TProtocolException.NEGATIVE_SIZE, f"Negative container size: {count}")
        if self.max_items is not None and count > self.max_items:
            raise TProtocolException(TProtocolException.SIZE_LIMIT,
                                     f"Container of {count} items exceeded max_container_items ({self.max_items})")
