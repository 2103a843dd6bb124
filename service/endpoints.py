"""Where a client connects: one address, several, or every address a name resolves to, and the order
it tries them in for each connection (``round_robin`` or ``first_available``).

A connect that finds a server down, full (``ServerFull``), draining (``ServerDraining``) or not
answering hello (closed unanswered, or silent past the handshake timeout: ``ConnectionBroken``) goes on
to the next address and says hello there; an address that failed is tried last for a while. With a
``RetryPolicy``, an idempotent call whose session broke reconnects the same way; other calls are never
sent twice.

    endpoints = Endpoints.parse("10.0.0.1:9090,10.0.0.2:9090", policy="round_robin")
    with Client(endpoints, options=ClientOptions(retry=RetryPolicy(idempotent={"echo"}))) as client:
        client.echo("hi")
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from typing import Awaitable, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple, TypeVar, Union

from .errors import ConnectError, ConnectionBroken

__all__ = ["Endpoints", "POLICIES", "connect_any", "connect_any_async", "format_address"]

logger = logging.getLogger(__name__)

#: How each connection picks its first address: the next one in turn, or always the first that works.
POLICIES = ("round_robin", "first_available")

Address = Tuple[str, int]
T = TypeVar("T")


def format_address(host: str, port: int) -> str:
    """host:port, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(host: str, port: int) -> Address:
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1] as in URLs
    if isinstance(port, int) and not 0 < port <= 65535:
        raise ValueError(f"port must be 1..65535, not {port}")
    return host, port


def _parse_one(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        raise ValueError(f"an endpoint is host:port ([v6]:port for IPv6), not {text.strip()!r}")
    return _address(host, int(port))


class Endpoints:
    """The addresses a client may connect to and the order it tries them in (``POLICIES``); shared by
    several clients, round-robin spreads their connections. Thread-safe.

    avoid_failed: seconds an address that refused a connection (or was down) is tried after the others.
    """

    def __init__(self, addresses: Iterable[Tuple[str, int]], policy: str = "round_robin",
                 avoid_failed: float = 2.0) -> None:
        self.addresses: Tuple[Address, ...] = tuple(dict.fromkeys(_address(h, p) for h, p in addresses))
        if not self.addresses:
            raise ValueError("Endpoints needs at least one address")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if not 0 <= avoid_failed <= 3600:
            raise ValueError(f"avoid_failed must be within 0..3600 seconds, not {avoid_failed}")
        self.policy = policy
        self.avoid_failed = avoid_failed
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._failed: Dict[Address, float] = {}  # address -> when it last failed (time.monotonic())

    @classmethod
    def parse(cls, spec: Union[str, Sequence[str]], policy: str = "round_robin") -> "Endpoints":
        """From "host:port,host:port" (or a list of "host:port"); IPv6 hosts in brackets."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        return cls([_parse_one(item) for item in items if item.strip()], policy)

    @classmethod
    def resolve(cls, name: str, port: int, policy: str = "round_robin") -> "Endpoints":
        """Every address ``name`` resolves to now (IPv4 and IPv6); make a new one to resolve again.
        Raises ConnectError when the name does not resolve."""
        try:
            found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise ConnectError(f"cannot resolve {name}: {error}") from error
        return cls([(str(info[4][0]), port) for info in found], policy)

    def __repr__(self) -> str:
        return f"Endpoints({', '.join(format_address(*a) for a in self.addresses)}; {self.policy})"

    def order(self) -> List[Address]:
        """The addresses for one connection, in the order to try them: by the policy, then those that
        failed within ``avoid_failed`` seconds last."""
        addresses = list(self.addresses)
        if self.policy == "round_robin" and len(addresses) > 1:
            start = next(self._turn) % len(addresses)
            addresses = addresses[start:] + addresses[:start]
        now = time.monotonic()
        with self._lock:
            failed = {a for a, when in self._failed.items() if now - when < self.avoid_failed}
        return [a for a in addresses if a not in failed] + [a for a in addresses if a in failed]

    def failed(self, address: Address) -> None:
        """``address`` refused a connection (down, full or draining): tried last for a while."""
        with self._lock:
            self._failed[address] = time.monotonic()

    def worked(self, address: Address) -> None:
        with self._lock:
            self._failed.pop(address, None)


def connect_any(endpoints: Endpoints, connect_to: Callable[[str, int], T]) -> T:
    """``connect_to(host, port)`` for each address in ``endpoints.order()`` until one connects; a
    ConnectError (refused, ServerFull, ServerDraining...) or a hello that broke (no call was sent yet:
    trying elsewhere is safe) moves on to the next. When none connects:
    the one error if every address failed the same way (e.g. all ServerDraining), else a ConnectError
    naming each."""
    failover = _Failover(endpoints)
    for address in endpoints.order():
        with failover.attempt(address):
            return connect_to(*address)
    raise failover.error()


async def connect_any_async(endpoints: Endpoints, connect_to: Callable[[str, int], Awaitable[T]]) -> T:
    """``connect_any`` for an asyncio client: ``await connect_to(host, port)``, the same failover."""
    failover = _Failover(endpoints)
    for address in endpoints.order():
        with failover.attempt(address):
            return await connect_to(*address)
    raise failover.error()


class _Failover:
    """One connect's way through the addresses: what failed where, and what to raise when none took it."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints
        self._failures: List[Union[ConnectError, ConnectionBroken]] = []

    @contextlib.contextmanager
    def attempt(self, address: Address) -> Iterator[None]:
        """Around one connect to ``address``: a ConnectError or a broken hello is noted (and goes no
        further: the next address is tried), a success tells ``Endpoints``."""
        try:
            yield
        except (ConnectError, ConnectionBroken) as error:
            self._endpoints.failed(address)
            self._failures.append(error)
            if len(self._endpoints.addresses) > 1:
                logger.info("%s; trying the next endpoint", error)
        else:
            self._endpoints.worked(address)

    def error(self) -> Exception:
        """The last failure when there was one; else one that names each address's: of their common
        type when all failed alike (all ServerDraining: the last one, its message naming each), else
        a ConnectError."""
        failures = self._failures
        last = failures[-1]
        if len(failures) == 1:
            return last
        message = f"no endpoint took the connection: {'; '.join(str(f) for f in failures)}"
        if len({type(f) for f in failures}) == 1 and type(last) is not ConnectError:
            last.args = (message,)  # keeps its type and what it carries (e.g. ServerDraining.draining)
            return last
        error = ConnectError(message)
        error.__cause__ = last
        return error
