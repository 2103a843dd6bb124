"""An unframed request priced before it is decoded past what is left unpriced.

An unframed (buffered) message has no length: its end is known only by walking it. Walking every
message would cost microseconds per call, so the server's buffered transport walks only calls whose
arguments outgrow ``UNPRICED_BYTES``: the budget arms it for each call it dispatches (``arm``), and a
refill of the read buffer (the decoder ran out of bytes) counts the arguments' bytes so far. A call
whose arguments end within them (nearly every call) costs the arming only. Past the threshold, the
decoder's refill reads the rest of the arguments whole (``ArgumentsFramer``, under the socket's byte
budget and request deadline), pricing them as the walk goes, and the budget takes the price before
another value is decoded; the decoder then reads on from memory. What was decoded before that is at
most ``UNPRICED_BYTES`` of wire (about 10 MB decoded, as for an unpriced frame).

Refusals (``DecodedSizeRefused``): a walk whose price passes what one request may take stops there,
before the rest is read (the rest of the message cannot be found without walking it: the connection
closes after the answer); arguments that are whole but do not fit now (the host's or the server's
requests in flight hold the rest) are read past, and the connection reads on.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Callable, Generator, Optional, Protocol, Tuple

from thrift.protocol.TCompactProtocol import TCompactProtocol

from ..config import Wire
from .errors import DecodedSizeRefused
from .framer import FramerLimits, MessageFramer
from .price import UNPRICED_BYTES, whole_values

__all__ = ["ArgumentsBudget", "ArgumentsFramer", "PricesLargeArguments"]

#: A walk over bytes (as ``framer``'s): yields how many bytes its next step needs and is sent where they start.
_Walk = Generator[int, int, None]
#: Each read of the rest of a large request asks for this much (the socket caps it by its budget).
_READ_AHEAD = 1024 * 1024


class ArgumentsFramer(MessageFramer):
    """The arguments struct of a call whose message header was read already, whole out of bytes (an
    unframed request read on from where its decoding started), priced under ``max_decoded_bytes``.
    Container elements already received are walked and priced by ``wire.price``'s walk, 3-4 times
    faster, in one step (so dripped input takes more steps than one feed: still linear); the element
    still arriving (or one that walk stops at: malformed, too deep, over the price) by the framer's."""

    def whole(self) -> Optional[int]:
        """Where the arguments end among the bytes received, once they are whole (else None);
        refusals as ``next_message``."""
        return self._next_end()

    def received_from(self, offset: int) -> bytes:
        """A copy of the bytes received from ``offset`` on."""
        with memoryview(self._buffer) as view:
            return bytes(view[offset:])

    def _message(self) -> _Walk:
        return self._compact_struct(1) if self.wire.protocol == "compact" else self._binary_struct(1)

    def _each_element(self, size: int, types: tuple, depth: int, compact: bool,
                      value: Callable[[int, int], _Walk]) -> _Walk:
        walked = 0
        while walked < size:
            at = yield 0
            end, done, price = whole_values(self._buffer, at, size - walked, types, compact,
                                            self._price_limit - self.price, self.limits.max_depth - depth - 1)
            if done:
                self._charge(price)
                walked += done
                yield end - at
                continue
            for ttype in types:
                yield from value(ttype, depth + 1)
            walked += 1


class ArgumentsBudget(Protocol):
    """Where the price of a large request goes (``decoded_budget.DecodedBudget``)."""

    per_host: int  # the most one request may take decoded

    def take(self, owner: Any, price: int) -> Optional[str]:
        """Reserves ``price`` for ``owner``'s request in flight: None, or why not (nothing reserved)."""

    def refusal(self, price: int) -> str:
        """Why a request of ``price`` (over ``per_host``) is refused."""


#: While a call's arguments decode: its budget, owner and protocol; the read buffer and where the
#: arguments start in it; the arguments' bytes read from earlier buffers.
_Armed = Tuple[ArgumentsBudget, Any, Any, BytesIO, int, Tuple[bytes, ...]]


class PricesLargeArguments:
    """For the server's TBufferedTransport (a base after ``_RemembersEnd``, which keeps a refill's error):
    prices a call's arguments once they outgrow ``UNPRICED_BYTES``, before decoding them further."""

    _pricing: Optional[_Armed] = None
    _TBufferedTransport__rbuf: BytesIO  # TBufferedTransport's own (name-mangled) attributes
    _TBufferedTransport__trans: Any
    _TBufferedTransport__rbuf_size: int

    def arm(self, budget: ArgumentsBudget, owner: Any, protocol: Any) -> None:
        """The call whose header ``protocol`` just read is about to decode its arguments; disarmed by
        ``keep_unread_input`` after the message."""
        buffer = self._TBufferedTransport__rbuf
        self._pricing = (budget, owner, protocol, buffer, buffer.tell(), ())

    def read(self, sz: int) -> bytes:
        # TBufferedTransport.read, with a refill that prices (the pure-Python decoder reads here)
        data = self._TBufferedTransport__rbuf.read(sz)
        if data:
            return data
        if self._pricing is not None:
            return self.cstringio_refill(b"", sz).read(sz)
        fresh = self._TBufferedTransport__trans.read(max(sz, self._TBufferedTransport__rbuf_size))
        self._TBufferedTransport__rbuf = BytesIO(fresh)
        return self._TBufferedTransport__rbuf.read(sz)

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        pricing = self._pricing
        if pricing is None:
            return super().cstringio_refill(partialread, reqlen)  # type: ignore[misc]
        budget, owner, protocol, buffer, start, earlier = pricing
        spent = buffer.getvalue()
        earlier += (spent[start:len(spent) - len(partialread)],)  # what the decoder has read of the arguments
        fresh = super().cstringio_refill(partialread, reqlen)  # type: ignore[misc]
        if sum(map(len, earlier)) + len(fresh.getvalue()) <= UNPRICED_BYTES:
            self._pricing = (budget, owner, protocol, fresh, 0, earlier)
            return fresh
        self._pricing = None
        self._TBufferedTransport__rbuf = BytesIO()
        return self._read_whole(budget, owner, protocol, earlier + (fresh.getvalue(),))

    def _read_whole(self, budget: ArgumentsBudget, owner: Any, protocol: Any, received: Tuple[bytes, ...]) -> BytesIO:
        """The read buffer from where the decoder stands to the end of the arguments (and what follows
        them), once they are whole and their price is taken; else ``DecodedSizeRefused``."""
        compact = isinstance(protocol, TCompactProtocol)
        limits = FramerLimits(protocol.string_length_limit or 0x7FFFFFFF, protocol.container_length_limit,
                              max_decoded_bytes=budget.per_host)
        framer = ArgumentsFramer(Wire(protocol="compact" if compact else "binary"), limits)
        for chunk in received:
            framer.receive(chunk)
        decoded = sum(map(len, received[:-1]))  # the decoder stands at the start of the last chunk
        del received
        socket_ = self._TBufferedTransport__trans
        try:
            end = framer.whole()
            while end is None:  # the socket's byte budget and the request's deadline bound this
                framer.receive(socket_.read(_READ_AHEAD))
                end = framer.whole()
        except DecodedSizeRefused as over:  # refused midway: its end is unknown, the rest is not read
            self._TBufferedTransport__rbuf = BytesIO()
            raise DecodedSizeRefused(budget.refusal(over.price), over.price) from None
        refusal = budget.take(owner, framer.price)
        if refusal is not None:
            self._TBufferedTransport__rbuf = BytesIO(framer.received_from(end))
            raise DecodedSizeRefused(refusal, framer.price, stream_intact=True)
        self._TBufferedTransport__rbuf = rest = BytesIO(framer.received_from(decoded))
        return rest
