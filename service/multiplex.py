"""Several services on one port, by name: what the gate serves for a message called ``Service:method``.

The names are Apache Thrift's ``TMultiplexedProtocol``'s: a client wraps its protocol with a service name,
and every call goes out as ``NAME:method`` (``SEPARATOR``); the reply carries the bare method name, as
Apache's ``TMultiplexedProcessor`` answers. Each hosted service is a ``ServiceTable`` (its processor, its
methods, which message types may carry them); ``Routes`` picks the table for a message's name.

- ``NAME:method`` goes to service NAME; a NAME not hosted here is answered UNKNOWN_METHOD naming it
  (a one-way call is dropped and logged), the connection kept.
- The session's methods (hello, ping, stats, goodbye) belong to the connection, not to a service: one
  session per connection, shared by every service on it. They are reached bare and behind the name of
  any hosted service (``Calc:hello`` opens the session that ``Store:put`` then uses).
- A bare method name goes to the default service, if one is named (Apache's ``registerDefault``): plain
  clients keep working against a multiplexed port. Without one, a bare name other than a session
  method's is answered UNKNOWN_METHOD saying which names are hosted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Tuple

from thrift.Thrift import TMessageType, TProcessor

from .contract import MethodInfo

__all__ = ["SEPARATOR", "ServiceTable", "Routes", "name_requests"]

#: Between the service's name and the method's, as TMultiplexedProtocol writes it.
SEPARATOR = ":"
#: Nothing served, by the message types that may carry a call.
_NOTHING: Mapping[int, Mapping[str, Callable[..., object]]] = {TMessageType.CALL: {}, TMessageType.ONEWAY: {}}


@dataclass(frozen=True)
class ServiceTable:
    """One hosted service as the gate serves it.

    name: its name on a multiplexed port (None for the one service of a plain port).
    processor: what serves its methods, the handler called directly (the generated Processor).
    watched: the same with the handler watched by the interceptors (the gate's intercepted copy).
    methods: its methods (the session's too when the gate holds sessions), by name.
    by_type: its served functions by the message type that may carry them.
    oneway: its one-way methods.
    session: whether the session's methods are reached through this name.
    missing: why a method it does not have is unknown (the UNKNOWN_METHOD answer, or for a one-way call the
    log's words), given the method's name and whether the call is one-way.
    """

    name: Optional[str]
    processor: Optional[TProcessor]
    watched: Optional[TProcessor]
    methods: Mapping[str, MethodInfo]
    by_type: Mapping[int, Mapping[str, Callable[..., object]]]
    oneway: FrozenSet[str]
    session: bool = True
    missing: Callable[[str, bool], str] = lambda method, oneway: (
        "no such method: not run, not answered" if oneway else f"Unknown function {method}")


def _absent(service: str, hosted: str) -> ServiceTable:
    """What a name that no hosted service has resolves to: nothing is served, and the answer says why."""
    return ServiceTable(service, None, None, {}, _NOTHING, frozenset(), session=False,
                        missing=lambda method, oneway: f"no service {service!r} on this port (it hosts {hosted}): "
                                                       f"{service}{SEPARATOR}{method} not run"
                                                       + (", not answered" if oneway else ""))


class Routes:
    """The tables of a multiplexed port by service name, and the table bare names reach: the default
    service's, or (without one) the session's methods alone (``session_methods``, when the gate holds sessions)."""

    def __init__(self, tables: Mapping[str, ServiceTable], default: Optional[str] = None,
                 session_methods: Optional[Mapping[str, MethodInfo]] = None) -> None:
        if not tables:
            raise ValueError("a multiplexed port hosts at least one service")
        for name in tables:
            if not name or SEPARATOR in name:
                raise ValueError(f"a service name must be non-empty and without {SEPARATOR!r}: {name!r}")
        if default is not None and default not in tables:
            raise ValueError(f"the default service {default!r} is not one of the hosted {sorted(tables)}")
        self.tables: Dict[str, ServiceTable] = dict(tables)
        self.hosted = hosted = ", ".join(sorted(tables))
        if default is not None:
            self.default = self.tables[default]
        else:  # bare names reach the session's methods only
            self.default = ServiceTable(
                None, None, None, dict(session_methods or {}), _NOTHING, frozenset(), session=bool(session_methods),
                missing=lambda method, oneway: f"Unknown function {method}: this port hosts several services "
                                               f"({hosted}); call SERVICE{SEPARATOR}{method} (TMultiplexedProtocol)"
                                               + (": not run, not answered" if oneway else ""))

    def route(self, name: str) -> Tuple[ServiceTable, str, Optional[str]]:
        """(the table, the method's bare name, the service's name or None) for a message called ``name``."""
        service, separator, method = name.partition(SEPARATOR)
        if not separator:
            return self.default, name, None
        table = self.tables.get(service)
        if table is None:
            table = _absent(service, self.hosted)
        return table, method, service


def name_requests(protocol: Any, service: str) -> None:
    """Makes a client's ``protocol`` write every request as ``service:method``, as TMultiplexedProtocol
    does (replies, which a client never writes, would keep their name)."""
    write_message_begin = protocol.writeMessageBegin
    prefix = service + SEPARATOR

    def named(name: str, message_type: int, seqid: int) -> None:
        if message_type == TMessageType.CALL or message_type == TMessageType.ONEWAY:
            name = prefix + name
        write_message_begin(name, message_type, seqid)

    protocol.writeMessageBegin = named
