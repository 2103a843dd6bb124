"""Every setting of thrift-handshake, as small immutable value objects with safe defaults.

One place for the knobs a user turns: the CLI's flags map onto these fields. (Internal constants that
are not settings, such as how long a refused peer's input is drained, stay next to the code they pace.)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Collection, FrozenSet, Iterable, Iterator, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SUPPORTED_VERSIONS",
    "PROTOCOLS",
    "TRANSPORTS",
    "CLIENT_PROTOCOLS",
    "CLIENT_TRANSPORTS",
    "Wire",
    "Timeouts",
    "RetryPolicy",
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

#: The longest time any setting may name: longer is a typo, and would overflow socket timeouts and the
#: i32 milliseconds that ServerHello carries.
ONE_DAY = 86_400.0


#: Logging levels by name, as settings and flags take them.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Thrift wire protocols (what the bytes look like).
PROTOCOLS = ("binary", "compact")
#: Thrift transports below the protocol (how messages are delimited).
TRANSPORTS = ("buffered", "framed", "header")
#: What a client may also speak: Thrift over HTTP (one POST per message, as THttpClient and the JavaScript
#: library's XHRConnection), with the JSON protocol (TJSONProtocol) or binary or compact. A server detects
#: HTTP and its protocol by itself, on the same port (``ServerConfig.detect_wire``).
CLIENT_PROTOCOLS = PROTOCOLS + ("json",)
CLIENT_TRANSPORTS = TRANSPORTS + ("http",)


@dataclass(frozen=True)
class Wire:
    """What a connection speaks, the same on both ends: protocol, transport, and the implementation.

    protocol: "binary" (strict TBinaryProtocol, Thrift's default), "compact", or (clients only) "json"
    (TJSONProtocol, what Thrift's JavaScript library speaks; over http, buffered or framed).
    transport: "buffered" (TBufferedTransport, messages back to back), "framed" (TFramedTransport),
    "header" (THeaderTransport: frames whose header names the protocol inside; the C++, Go and Java
    ecosystems' fbthrift-style clients speak it) or, for clients, "http" (one POST per message on a
    keep-alive connection, so the session follows it; servers detect HTTP themselves).
    accelerated: use Thrift's C extension (fastbinary) where it is installed; False forces the
    pure-Python implementation (same bytes on the wire, slower for structs).
    """

    protocol: str = "binary"
    transport: str = "buffered"
    accelerated: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in CLIENT_PROTOCOLS:
            raise ValueError(f"protocol must be one of {CLIENT_PROTOCOLS}, not {self.protocol!r}")
        if self.transport not in CLIENT_TRANSPORTS:
            raise ValueError(f"transport must be one of {CLIENT_TRANSPORTS}, not {self.transport!r}")
        if self.protocol == "json" and self.transport == "header":
            raise ValueError("THeader carries binary or compact only, not json")

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
            if value is not None and not 0 < value <= ONE_DAY:
                raise ValueError(f"Timeouts.{name} must be within (0, {ONE_DAY:g}] seconds or None, not {value!r}")


def _names(owner: str, value: Iterable[str]) -> FrozenSet[str]:
    """``value`` as a set of names; a bare string is refused (it would become a set of its letters)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{owner} takes a collection of names, e.g. {{{value!r}}}, not the string {value!r}")
    return frozenset(value)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failed call on a new connection (reconnect and hello again), for idempotent
    methods only: a method not named in ``idempotent`` is never sent twice.

    attempts: tries in all, the first included. backoff: seconds before the first retry, doubled after
    each one up to ``max_backoff``.
    """

    idempotent: Collection[str] = frozenset({"ping", "stats"})
    attempts: int = 4
    backoff: float = 0.1
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "idempotent", _names("RetryPolicy.idempotent", self.idempotent))
        if self.attempts < 1 or not 0 <= self.backoff <= self.max_backoff <= ONE_DAY:
            raise ValueError("RetryPolicy needs attempts >= 1 and 0 <= backoff <= max_backoff <= one day")

    def delays(self) -> Iterator[float]:
        """The seconds to wait before each retry (``attempts`` - 1 of them)."""
        delay = self.backoff
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_backoff)


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

    def __post_init__(self) -> None:
        _check_readable(**{"TLS CA": self.ca_file, "TLS client certificate": self.cert_file,
                           "TLS client key": self.key_file})


@dataclass(frozen=True)
class ServerTLS:
    """TLS for the server: its certificate chain and key; with ``client_ca_file`` every client must
    present a certificate signed by that CA (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: Optional[str] = None

    def __post_init__(self) -> None:
        _check_readable(**{"TLS certificate": self.cert_file, "TLS key": self.key_file,
                           "TLS client CA": self.client_ca_file})


@dataclass(frozen=True)
class ClientOptions:
    """What the client says in hello() and how it talks.

    versions: the inclusive range of protocol versions the client accepts.
    max_reply_bytes: the largest string, binary or frame the client reads in a reply.
    max_reply_items: the most elements of one list, set or map the client reads in a reply.
    retry: retries of idempotent methods on a new connection (see RetryPolicy); None: no retry.
    handshake: False for servers whose clients know nothing of hello (a plain Thrift service):
    connecting goes straight to READY and closing sends no goodbye.
    timeline_size: how many phase/call records the client keeps (oldest dropped first).
    server_timed_methods: methods whose reply's ``processing_us`` is the server's time on that very
    call (T_s); the timeline splits their round trip into T_s and network time.
    pipeline_hello: ``connect()`` writes hello and returns None without waiting; the first exchange
    (a call, goodbye, or reading ``server_hello``) writes its own request, then reads hello's answer,
    then its own: one round trip less. A refused hello then surfaces there (HandshakeFailed, closed),
    and the pipelined call is not served: a server keeping session.thrift's contract (this project's
    gate does) refuses every call but ping before hello. Off by default: connect() reports a refusal.
    await_farewell: ``close()`` waits for the Farewell (kept in ``Client.farewell``). False: close()
    writes goodbye and closes at once (the server still ends the session by goodbye); ``goodbye()``
    always waits and returns the Farewell.
    interceptors: objects that see every call this client makes (``interceptors.Interceptor``), after
    its timeline.
    unix_socket: connect to this Unix domain socket path (``serve --unix``) instead of host and port.
    reconnect_when_asked: when the server answers a call "reconnect" before running it (its max connection
    age: ``HandshakeRequired`` with ``reconnect`` set), connect again (through the client's Endpoints, if
    any), say hello and send the call once more, whatever the method (it never ran). False: raise
    ``ReconnectAsked`` instead (the client is BROKEN; ``reconnect()`` to go on).
    multiplexed: the service's name on a port that hosts several (Apache's TMultiplexedProtocol): every
    request goes out as ``NAME:method``, hello and the session's other methods included (the session is
    the connection's, shared by all its services). None: bare method names.
    """

    client_name: str = "thrift-handshake-python"
    language: str = "python"
    versions: Tuple[int, int] = SUPPORTED_VERSIONS
    auth_token: Optional[str] = None
    features: Collection[str] = frozenset()
    wire: Wire = field(default_factory=Wire)
    handshake: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: Optional[RetryPolicy] = None
    tls: Optional[ClientTLS] = None
    max_reply_bytes: int = 256 * 1024 * 1024
    max_reply_items: int = 1_000_000
    timeline_size: int = 1000
    server_timed_methods: Collection[str] = frozenset()
    pipeline_hello: bool = False
    await_farewell: bool = True
    interceptors: Sequence[Any] = ()
    unix_socket: Optional[str] = None
    multiplexed: Optional[str] = None
    reconnect_when_asked: bool = True

    def __post_init__(self) -> None:
        if self.multiplexed is not None and (not self.multiplexed or ":" in self.multiplexed):
            raise ValueError(f"ClientOptions.multiplexed must be a service name without ':', not {self.multiplexed!r}")
        object.__setattr__(self, "features", _names("ClientOptions.features", self.features))
        object.__setattr__(self, "server_timed_methods",
                           _names("ClientOptions.server_timed_methods", self.server_timed_methods))
        object.__setattr__(self, "interceptors", tuple(self.interceptors))
        _check_versions(self.versions, lowest=0)
        if self.timeline_size < 1:
            raise ValueError("timeline_size must be at least 1")


def setting(default, help_text: str, maximum, zero_is_off: bool = False):
    """A field of a limits dataclass, valid in (0, maximum] (and 0, meaning off, with ``zero_is_off``);
    its help text is also the CLI flag's help (``serve --<name>``)."""
    return field(default=default, metadata={"help": help_text, "maximum": maximum, "zero_is_off": zero_is_off})


def check_limits(limits: object) -> None:
    """ValueError naming the first field of the dataclass ``limits`` outside (0, its maximum] (or
    [0, its maximum] where 0 means off)."""
    for f in dataclasses.fields(limits):
        value, maximum = getattr(limits, f.name), f.metadata["maximum"]
        lowest = "[0" if f.metadata.get("zero_is_off") else "(0"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value <= maximum or (value == 0 and lowest == "[0")):
            raise ValueError(f"{type(limits).__name__}.{f.name} must be a number in {lowest}, {maximum:g}], "
                             f"not {value!r}")


def _check_readable(**files: Optional[str]) -> None:
    for role, path in files.items():
        if path is not None and not os.access(path, os.R_OK):
            raise ValueError(f"{role} {path!r}: " + ("not readable" if os.path.exists(path) else "no such file"))


@dataclass(frozen=True)
class ServerLimits:
    """Server-side limits, all on by default (each one is also a ``serve`` flag)."""

    max_connections: int = setting(1024, "connections served at once; beyond it the oldest connection without a session makes room, else the newcomer is told the server is full", 100_000)
    handshake_timeout: float = setting(10.0, "seconds a new connection may take to complete hello()", ONE_DAY)
    idle_timeout: float = setting(300.0, "seconds a session may stay silent before the server closes it", ONE_DAY)
    request_timeout: float = setting(30.0, "seconds a request may take to arrive whole once its first byte has", ONE_DAY)
    reply_timeout: float = setting(5.0, "seconds a peer has to read one reply whole; one that has not is dropped (reset) and the request, result and reply are freed", ONE_DAY)
    max_message_bytes: int = setting(16 * 1024 * 1024, "largest message in bytes (counted as it arrives; any string, binary or frame in it too)", 0x3FFFFFFF)
    max_decoded_bytes: int = setting(256 * 1024 * 1024, "memory that the requests in flight of all workers may take decoded (a request over 64 KiB is priced before it is decoded; one that does not fit is refused with PROTOCOL_ERROR, the connection kept, except an unframed one that could never fit: that connection closes)", 2**40)
    decoded_host_share: float = setting(0.25, "share of max_decoded_bytes that the requests of one client host may hold", 1.0)
    max_container_items: int = setting(1_000_000, "most elements in one list, set or map of a message", 2**31 - 1)
    handshake_max_bytes: int = setting(64 * 1024, "bytes a connection may send before its hello() succeeds", 16 * 1024 * 1024)
    evict_after: float = setting(1.0, "seconds a connection without a session is safe from eviction (one that has sent nothing, 0.1 s): only older ones make room for a newcomer to a full server", ONE_DAY)
    host_share: float = setting(0.5, "share of max_connections that one client host keeps when another host needs room: at max_connections, the host holding the most beyond this share (or more than the newcomer's host would hold with it) gives up a connection without a session, else an idle session, to a newcomer from another host", 1.0)
    max_threads: int = setting(60, "the pool's usual size: threads serving connections that have a message (idle "
                               "connections wait without one; a call that waits, such as a long get_result, holds "
                               "its thread). Only while every thread is stuck and connections wait for one does the "
                               "pool add threads, up to max_connections + max_threads; they end once idle", 10_000)
    max_connection_age: float = setting(0.0, "seconds a session's connection may live (each one drawn within "
                                        "10 percent either way, so that clients do not all reconnect at once); "
                                        "past it the next call that declares HandshakeRequired is answered with it "
                                        "(reconnect set, the call not run) and the connection closes, so that "
                                        "clients reconnect and load spreads over servers added since; calls in "
                                        "flight finish. 0: no limit", ONE_DAY, zero_is_off=True)
    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens.

    port 0 picks a free port (read it back from ``HandshakeServer.port``).
    unix_socket: listen on this Unix domain socket path instead of host and port (mode 0660; a stale
    socket file there is replaced, any other file is an error; the file is removed at the stop).
    handshake: False hosts a plain service whose clients know nothing of hello (no session gate;
    limits, logging, stats and the graceful stop still apply).
    optional_hello: with the handshake on, a connection whose first call is not hello (nor ping) is
    served as an anonymous session (no features, the same limits and counts), while clients that say
    hello get their session as usual, on the same port. hello must then be the first call: a late one is
    refused (HandshakeRejected). Not with ``auth_token``: a token means every caller authenticates.
    detect_wire: serve every Thrift dialect on one port (binary or compact, buffered or framed, and
    THeader), told from each connection's first bytes; False serves only ``wire``. Either way a peer
    speaking something else (HTTP, TLS on a plain port, an unknown version) is told so.
    auth_token: when set, hello() must carry exactly this token.
    features: what hello() may grant (the intersection with the client's offer); none by default.
    tls: when set, every connection starts with a TLS handshake (plain TCP otherwise).
    grace: seconds that in-flight calls get to finish when the server stops.
    drain_notice: seconds (within the grace period) that a stopping server keeps listening to say it
    drains: ``ping`` and ``hello`` answer ``Draining``, so a load balancer's health check marks it down
    before its port closes (behind one: at least the check's interval times its fall count). Without
    ``handshake`` nothing answers Draining, and the port closes at once.
    interceptors: objects that see every call (``interceptors.Interceptor``), after the runtime's own.
    call_log_level: the level of the one log line every call gets (an access log); DEBUG by default, so
    INFO logging shows connections and sessions, not calls.
    http_origins: the browser origins (``scheme://host:port``, as a browser's ``Origin`` header names them)
    whose pages may call this port with Thrift over HTTP (CORS); "*" allows any. A request from any other
    origin is refused (403), so a page from elsewhere cannot make a visitor's browser call this server;
    clients that are not browsers send no origin and are served. ``serve --metrics-port`` adds the admin
    page's own origin.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix_socket: Optional[str] = None
    server_name: str = "thrift-handshake"
    wire: Wire = field(default_factory=Wire)
    detect_wire: bool = True
    handshake: bool = True
    optional_hello: bool = False
    auth_token: Optional[str] = None
    tls: Optional[ServerTLS] = None
    features: FrozenSet[str] = frozenset()
    versions: Tuple[int, int] = SUPPORTED_VERSIONS
    grace: float = 10.0
    drain_notice: float = 0.0
    limits: ServerLimits = field(default_factory=ServerLimits)
    interceptors: Tuple[Any, ...] = ()
    call_log_level: str = "DEBUG"
    http_origins: FrozenSet[str] = frozenset()

    @property
    def pre_session_bytes(self) -> int:
        """What a connection may send before its session starts: ``handshake_max_bytes``, but with optional
        hello any call may come first, so as much as one message may be (``max_message_bytes``)."""
        limits = self.limits
        if self.optional_hello:
            return max(limits.handshake_max_bytes, limits.max_message_bytes)
        return limits.handshake_max_bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", frozenset(self.features))
        object.__setattr__(self, "http_origins", _names("ServerConfig.http_origins", self.http_origins))
        if self.wire.transport not in TRANSPORTS or self.wire.protocol not in PROTOCOLS:
            raise ValueError(f"a server's wire is one of {TRANSPORTS} with one of {PROTOCOLS}, not {self.wire}: "
                             "HTTP, and JSON over it, are detected on the same port (detect_wire)")
        if self.call_log_level not in LOG_LEVELS:
            raise ValueError(f"call_log_level must be one of {', '.join(LOG_LEVELS)}, not {self.call_log_level!r}")
        object.__setattr__(self, "interceptors", tuple(self.interceptors))
        _check_versions(self.versions)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, not {self.port}")
        if self.unix_socket is not None and not self.unix_socket:
            raise ValueError("unix_socket is empty: give a path, or None to listen on host and port")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ValueError("auth_token is empty: give a real token, or none for a server without auth")
        if self.limits.max_connection_age and not self.handshake:
            raise ValueError("ServerLimits.max_connection_age needs the handshake on: without hello a client cannot be "
                             "told to reconnect (nor start a new session), so its calls would fail")
        if self.optional_hello and not self.handshake:
            raise ValueError("optional_hello needs the handshake on: without it there is no hello to make optional")
        if self.optional_hello and self.auth_token is not None:
            raise ValueError("optional_hello with an auth_token: a token means every caller must authenticate in "
                             "hello(), so anonymous sessions cannot be served; drop one of them")
        if not 0 <= self.grace <= ONE_DAY:
            raise ValueError(f"grace must be within 0..{ONE_DAY:g} seconds, not {self.grace}")
        if not 0 <= self.drain_notice <= ONE_DAY:
            raise ValueError(f"drain_notice must be within 0..{ONE_DAY:g} seconds, not {self.drain_notice}")


def _check_versions(versions: Tuple[int, int], lowest: int = 1) -> None:
    low, high = versions
    if not lowest <= low <= high <= 2**31 - 1:
        raise ValueError(f"versions must be a range {lowest} <= low <= high, not {low}-{high}")
