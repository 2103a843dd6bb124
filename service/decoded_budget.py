"""The memory that decoded requests in flight may hold: a server-wide budget and each client host's
share of it. A request is priced before it is decoded (``wire.price``), reserves its price while it
is served (decoded, run, answered) and releases it after its reply is written or dropped."""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

from thrift.protocol.TBinaryProtocol import TBinaryProtocol

from .wire.price import WORST_FACTOR, decoded_price, decoded_price_compact

__all__ = ["DecodedBudget"]

_MB = 1_000_000

#: Requests this small are not counted: each decodes to 10 MB at most, one in flight per connection.
UNPRICED_BYTES = 64 * 1024


class DecodedBudget:
    """``total`` bytes for every request in flight, at most ``host_share`` of it for one client host.
    Safe from any thread."""

    def __init__(self, total: int, host_share: float) -> None:
        self.total = total
        self.per_host = max(1, int(total * host_share))
        self._used = 0
        self._by_host: Dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def allowance(self, host: str) -> int:
        """What one more request of ``host`` may take now."""
        with self._lock:
            return max(0, min(self.total - self._used, self.per_host - self._by_host.get(host, 0)))

    def reserve(self, host: str, price: int) -> Optional[str]:
        """Reserves ``price`` bytes for a request of ``host``; None when done, else why not."""
        with self._lock:
            held = self._by_host.get(host, 0)
            if price > self.per_host:
                return (f"the request would take over {price / _MB:.0f} MB decoded; one client host may hold "
                        f"{self.per_host / _MB:.0f} MB (decoded_host_share of max_decoded_bytes={self.total})")
            if held + price > self.per_host:
                return (f"the request would take over {price / _MB:.0f} MB decoded; this client host's requests in "
                        f"flight hold {held / _MB:.0f} MB of its {self.per_host / _MB:.0f} MB "
                        f"(decoded_host_share of max_decoded_bytes={self.total})")
            if self._used + price > self.total:
                return (f"the request would take over {price / _MB:.0f} MB decoded; the server's requests in flight "
                        f"hold {self._used / _MB:.0f} MB of {self.total / _MB:.0f} MB (max_decoded_bytes={self.total})")
            self._used += price
            self._by_host[host] = held + price
            return None

    def reserve_request(self, host: str, protocol: Any) -> Tuple[int, Optional[str]]:
        """Prices the arguments the input ``protocol`` is about to decode and reserves the price:
        (price, None), or (0, why not) with the rest of the frame read past. Only a whole frame
        (framed or THeader; binary or compact inside) larger than ``UNPRICED_BYTES`` is priced;
        anything else is (0, None)."""
        transport = protocol.trans
        frame = transport.rest_of_frame(UNPRICED_BYTES) if hasattr(transport, "rest_of_frame") else None
        if frame is None:  # unframed (docs/reliability.md), or the usual small call: neither priced nor reserved
            return 0, None
        inner = getattr(protocol, "_protocol", protocol)  # THeader's protocol inside its frames
        allowance = self.allowance(host)
        if len(frame) * WORST_FACTOR <= allowance:
            price = len(frame)  # cannot pass the allowance: no walk, the wire size reserved
        else:  # the walk stops once past what the request may take
            walk = decoded_price if isinstance(inner, TBinaryProtocol) else decoded_price_compact
            price = walk(frame, allowance)
        frame.release()
        refusal = self.reserve(host, price)
        if refusal is not None:
            transport.discard_rest_of_frame()
            return 0, refusal
        return price, None

    def release(self, host: str, price: int) -> None:
        """Gives back what ``reserve`` took."""
        with self._lock:
            self._used -= price
            left = self._by_host.get(host, 0) - price
            if left > 0:
                self._by_host[host] = left
            else:
                self._by_host.pop(host, None)
