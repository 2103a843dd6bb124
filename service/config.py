"""Every setting of thrift-handshake, as small immutable value objects with safe defaults.

One place for the knobs a user turns: the CLI's flags map onto these fields. (Internal constants that
are not settings, such as how long a refused peer's input is drained, stay next to the code they pace.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import FrozenSet, Optional, Tuple

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SUPPORTED_VERSIONS",
    "PROTOCOLS",
    "TRANSPORTS",
    "Wire",
    "Timeouts",
    "ClientTLS",
    "ServerTLS",
    "ClientOptions",
    "ServerLimits",
    "ServerConfig",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090

#: Protocol versions this implementation speaks (inclusive range).
SUPPORTED_VERSIONS: Tuple[int, int] = (1, 2)

#: Thrift wire protocols (what the bytes look like).
PROTOCOLS = ("binary", "compact")
#: Thrift transports below the protocol (how messages are delimited).
TRANSPORTS = ("buffered", "framed")


@dataclass(frozen=True)
class Wire:
    """What a connection speaks, the same on both ends: protocol, transport, and the implementation.

    protocol: "binary" (strict TBinaryProtocol, Thrift's default) or "compact".
    transport: "buffered" (TBufferedTransport, messages back to back) or "framed" (TFramedTransport).
    accelerated: use Thrift's C extension (fastbinary) where it is installed; False forces the
    pure-Python implementation (same bytes on the wire, slower for structs).
    """

    protocol: str = "binary"
    transport: str = "buffered"
    accelerated: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {self.transport!r}")

    def __str__(self) -> str:
        implementation = "C" if self.accelerated else "pure Python"
        return f"{self.transport}+{self.protocol} ({implementation})"


@dataclass(frozen=True)
class Timeouts:
    """Client time limits, in seconds; None waits forever.

    connect: opening the TCP connection (and the TLS handshake). handshake: the hello() round trip.
    call: one call's whole round trip (also goodbye()), however the reply bytes trickle in. A call
    that exceeds it leaves the client BROKEN, so its late reply can never be read by another call.
    The default is longer than the server's longest get_result() wait (30 s).
    """

    connect: Optional[float] = 5.0
    handshake: Optional[float] = 5.0
    call: Optional[float] = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "handshake", "call"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Timeouts.{name} must be positive or None, not {value!r}")


@dataclass(frozen=True)
class ClientTLS:
    """TLS for the client: verify the server against ``ca_file`` (None: the system's CAs).

    ``cert_file``/``key_file`` present a client certificate (mutual TLS). ``server_hostname`` is the
    name checked against the server's certificate (default: the host connected to).
    """

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_hostname: Optional[str] = None


@dataclass(frozen=True)
class ServerTLS:
    """TLS for the server: its certificate chain and key; with ``client_ca_file`` every client must
    present a certificate signed by that CA (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: Optional[str] = None


@dataclass(frozen=True)
class ClientOptions:
    """What the client says in hello() and how it talks.

    versions: the inclusive range of protocol versions the client accepts.
    max_reply_bytes: the largest string/binary (and container size) the client reads in a reply.
    handshake: False for servers whose clients know nothing of hello (a plain Thrift service):
    connecting goes straight to READY and closing sends no goodbye.
    timeline_size: how many phase/call records the client keeps (oldest dropped first).
    server_timed_methods: methods whose reply's ``processing_us`` is the server's time on that very
    call (T_s); the timeline splits their round trip into T_s and network time.
    """

    client_name: str = "thrift-handshake-python"
    language: str = "python"
    versions: Tuple[int, int] = SUPPORTED_VERSIONS
    auth_token: Optional[str] = None
    features: FrozenSet[str] = frozenset()
    wire: Wire = field(default_factory=Wire)
    handshake: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: Optional[ClientTLS] = None
    max_reply_bytes: int = 256 * 1024 * 1024
    timeline_size: int = 1000
    server_timed_methods: FrozenSet[str] = frozenset({"process"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", frozenset(self.features))
        if self.timeline_size < 1:
            raise ValueError("timeline_size must be at least 1")


def setting(default, help_text: str):
    """A field of a limits dataclass; its help text is also the CLI flag's help (``serve --<name>``)."""
    return field(default=default, metadata={"help": help_text})


def check_positive(limits: object) -> None:
    """ValueError naming the first field of the dataclass ``limits`` that is not positive."""
    for f in dataclasses.fields(limits):
        if getattr(limits, f.name) <= 0:
            raise ValueError(f"{type(limits).__name__}.{f.name} must be positive")


@dataclass(frozen=True)
class ServerLimits:
    """Server-side limits, all on by default (each one is also a ``serve`` flag)."""

    max_connections: int = setting(1024, "connections served at once; more are accepted and closed at once")
    handshake_timeout: float = setting(10.0, "seconds a new connection may take to complete hello()")
    idle_timeout: float = setting(300.0, "seconds a session may stay silent before the server closes it")
    request_timeout: float = setting(30.0, "seconds a request may take to arrive whole once its first byte has")
    max_message_bytes: int = setting(16 * 1024 * 1024, "largest string or binary in one message, in bytes")
    max_container_items: int = setting(1_000_000, "most elements in one list, set or map of a message")
    def __post_init__(self) -> None:
        check_positive(self)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens.

    port 0 picks a free port (read it back from ``HandshakeServer.port``).
    handshake: False hosts a plain service whose clients know nothing of hello (no session gate;
    limits, logging, stats and the graceful stop still apply).
    auth_token: when set, hello() must carry exactly this token.
    tls: when set, every connection starts with a TLS handshake (plain TCP otherwise).
    grace: seconds that in-flight calls get to finish when the server stops.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server_name: str = "thrift-handshake"
    wire: Wire = field(default_factory=Wire)
    handshake: bool = True
    auth_token: Optional[str] = None
    tls: Optional[ServerTLS] = None
    features: FrozenSet[str] = frozenset({"submit", "notify", "echo_types", "stats", "timing"})
    versions: Tuple[int, int] = SUPPORTED_VERSIONS
    grace: float = 10.0
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", frozenset(self.features))
        low, high = self.versions
        if not 1 <= low <= high:
            raise ValueError(f"versions must be a range 1 <= low <= high, not {self.versions!r}")
