"""The memory that decoded requests in flight may hold: a server-wide budget and each client host's
share of it. A request is priced before it is decoded (``wire.price``; an unframed one once it
outgrows ``UNPRICED_BYTES``, ``wire.whole_arguments``), reserves its price while it is served
(decoded, run, answered) and releases it after its reply is written or dropped."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable, ContextManager, Dict, Optional, Protocol, Tuple

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TJSONProtocol import TJSONProtocolBase

from .wire.whole_arguments import PricesLargeArguments
from .wire.price import UNPRICED_BYTES, WORST_FACTOR, decoded_price, decoded_price_compact

__all__ = ["DecodedBudget", "Holder"]

_MB = 1_000_000


class Holder(Protocol):
    """Who reserves for a request in flight (the gate's ``ConnectionState``): its client host, and what
    its request holds of the budget (released by the gate after the reply)."""

    host: str
    reserved: int


class DecodedBudget:
    """``total`` bytes for every request in flight, at most ``host_share`` of it for one client host.
    Safe from any thread; ``shared_budget.SharedDecodedBudget`` holds it for every worker process."""

    def __init__(self, total: int, host_share: float) -> None:
        self.total = total
        self.per_host = max(1, int(total * host_share))
        self._used = 0
        self._by_host: Dict[str, int] = {}
        self._lock = threading.Lock()

    def _locked(self) -> ContextManager[Any]:
        """Held while the holdings are read and changed."""
        return self._lock

    def _holdings(self, host: str) -> Tuple[int, int]:
        """(what every request in flight holds, what ``host``'s hold), under ``_locked``."""
        return self._used, self._by_host.get(host, 0)

    def _add(self, host: str, amount: int) -> None:
        """``host``'s requests hold ``amount`` more (less, when negative), under ``_locked``."""
        self._used += amount
        left = self._by_host.get(host, 0) + amount
        if left > 0:
            self._by_host[host] = left
        else:
            self._by_host.pop(host, None)

    @property
    def used(self) -> int:
        with self._locked():
            return self._holdings("")[0]

    def allowance(self, host: str) -> int:
        """What one more request of ``host`` may take now."""
        with self._locked():
            used, held = self._holdings(host)
        return max(0, min(self.total - used, self.per_host - held))

    def refusal(self, price: int) -> str:
        """Why a request of ``price`` bytes, more than ``per_host``, can never be served."""
        return (f"the request would take over {price / _MB:.0f} MB decoded; one client host may hold "
                f"{self.per_host / _MB:.0f} MB (decoded_host_share of max_decoded_bytes={self.total})")

    def reserve(self, host: str, price: int) -> Optional[str]:
        """Reserves ``price`` bytes for a request of ``host``; None when done, else why not."""
        if price > self.per_host:
            return self.refusal(price)
        with self._locked():
            used, held = self._holdings(host)
            if held + price > self.per_host:
                return (f"the request would take over {price / _MB:.0f} MB decoded; this client host's requests in "
                        f"flight hold {held / _MB:.0f} MB of its {self.per_host / _MB:.0f} MB "
                        f"(decoded_host_share of max_decoded_bytes={self.total})")
            if used + price > self.total:
                return (f"the request would take over {price / _MB:.0f} MB decoded; the server's requests in flight "
                        f"hold {used / _MB:.0f} MB of {self.total / _MB:.0f} MB (max_decoded_bytes={self.total})")
            self._add(host, price)
            return None

    def take(self, holder: Holder, price: int) -> Optional[str]:
        """Reserves ``price`` for ``holder``'s request in flight (an unframed one, priced as it is read):
        None, or why not."""
        refusal = self.reserve(holder.host, price)
        if refusal is None:
            holder.reserved += price
        return refusal

    def reserve_request(self, holder: Holder, protocol: Any) -> Tuple[int, Optional[str]]:
        """Prices the arguments the input ``protocol`` is about to decode and reserves the price:
        (price, None), or (0, why not) with the rest of the frame read past. A whole frame (framed or
        THeader; binary or compact inside) larger than ``UNPRICED_BYTES`` is priced now; an unframed
        request once its arguments outgrow it (``take``, or ``DecodedSizeRefused`` from the decoder);
        anything else is (0, None). JSON is not priced (the walks read binary and compact): (0, None)."""
        transport = protocol.trans
        if isinstance(getattr(protocol, "_protocol", protocol), TJSONProtocolBase):
            return 0, None
        if isinstance(transport, PricesLargeArguments):  # unframed: priced by its refills, if it grows
            transport.arm(self, holder, protocol)
            return 0, None
        frame = transport.rest_of_frame(UNPRICED_BYTES) if hasattr(transport, "rest_of_frame") else None
        if frame is None:  # the usual small call: neither priced nor reserved
            return 0, None
        inner = getattr(protocol, "_protocol", protocol)  # THeader's protocol inside its frames
        allowance = self.allowance(holder.host)
        if len(frame) * WORST_FACTOR <= allowance:
            price = len(frame)  # cannot pass the allowance: no walk, the wire size reserved
        else:  # the walk stops once past what the request may take
            walk = decoded_price if isinstance(inner, TBinaryProtocol) else decoded_price_compact
            price = walk(frame, allowance)
        frame.release()
        refusal = self.reserve(holder.host, price)
        if refusal is not None:
            transport.discard_rest_of_frame()
            return 0, refusal
        return price, None

    def arming(self, holder: Holder, protocol: Any) -> Optional[Callable[[], None]]:
        """What ``reserve_request`` comes to for every request of a connection whose requests its input
        transport prices as it refills (unframed binary or compact), decided once per connection: the
        arming of the next request's pricing; None where each request must go through ``reserve_request``."""
        transport = protocol.trans
        if isinstance(transport, PricesLargeArguments) and not isinstance(getattr(protocol, "_protocol", protocol),
                                                                          TJSONProtocolBase):
            return partial(transport.arm, self, holder, protocol)
        return None

    def release(self, host: str, price: int) -> None:
        """Gives back what ``reserve`` took."""
        with self._locked():
            self._add(host, -price)
