"""The wire's exceptions: what a peer sent that this end refuses, and what a socket says before a message.

A refusal that still knows the message's name and seqid is an ``AnswerableReadError``, so the answer
can go to the very call that caused it.
"""

from __future__ import annotations

from typing import Optional, Tuple

from thrift.protocol.TProtocol import TProtocolException
from thrift.transport import TTransport

__all__ = ["UndecodableValue", "AnswerableReadError", "UndecodableMethodName", "BudgetExceeded", "FrameTooLarge",
           "FrameRefused", "NoMessageYet", "DecodedSizeRefused"]


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


class BudgetExceeded(TTransport.TTransportException):
    """A peer sent more than a message (or, before hello, the whole handshake) may take."""


class DecodedSizeRefused(BudgetExceeded):
    """A request refused before it was decoded for the memory it would take decoded (``price`` bytes
    at least, ``wire.price``). ``stream_intact``: its end was found and read past, so the connection
    can read on; else the rest of it was not read (an unframed message refused midway)."""

    def __init__(self, message: str, price: int, stream_intact: bool = False) -> None:
        super().__init__(TTransport.TTransportException.SIZE_LIMIT, message)
        self.price = price
        self.stream_intact = stream_intact


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


class NoMessageYet(Exception):
    """No byte of a next message arrived within the linger: the connection may wait elsewhere."""
