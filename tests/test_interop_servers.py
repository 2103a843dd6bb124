"""Interop, the other way round: servers in Go, Node.js and C++ serve the contract to our Python client.

Each server (interop/servers/go, interop/servers/node, interop/servers/cpp) is built the way a user of its
language builds (go build with go.mod, npm ci with package-lock.json, CMake with pkg-config against Debian's
libthrift-dev), with the Thrift code generated from idl/ at build time. The test starts it on port 0, reads
"listening on 127.0.0.1:PORT" from its stdout, and drives it with the project's Client wrapper (and, where
the wrapper would refuse to send what is asked, with the bare generated client) through the whole flow:
negotiation, the gate, every method, the declared exceptions, echo_types with edge values, stats and
goodbye. Each check is recorded; the test fails listing every failed check, and the session ends with a
table of checks passed per server.

Builds are cached like the client tests' (Go build cache, `npm ci` once per lockfile, the C++ build under
~/.cache/thrift-handshake/interop-cpp-server keyed by a hash of its sources). These tests never skip: a
missing toolchain fails them with what to install.
"""

from __future__ import annotations

import math
import os
import selectors
import struct
import subprocess
import tempfile
import time
import hashlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import every_type_at_its_edges
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.protocol.TCompactProtocol import TCompactProtocolAccelerated
from thrift.protocol import THeaderProtocol
from thrift.transport import THeaderTransport, TSocket, TTransport
from thrift.transport.TTransport import TTransportException

from thrift_handshake import Client, ClientOptions, HandshakeFailed, RemoteApplicationError, ServiceError, Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRejected, HandshakeRequired
from thrift_handshake_gen.ttypes import (AllTypes, Color, Event, InvalidRequest, NotReady, Overloaded, Request,
                                         UnknownTicket)

from test_interop import IDL, INTEROP, build_cmake, build_go, require_tool, run

#: THeader's id of the protocol inside its frames.
HEADER_PROTOCOL_IDS = {"binary": THeaderTransport.THeaderSubprotocolID.BINARY,
                       "compact": THeaderTransport.THeaderSubprotocolID.COMPACT}

SERVERS = INTEROP / "servers"
GO_DIR = SERVERS / "go"
GO_MODULE = "thrift-handshake/interop/servers/go"  # interop/servers/go/go.mod
NODE_DIR = SERVERS / "node"
CPP_DIR = SERVERS / "cpp"

SETUP_TIMEOUT = 300
BUILD_TIMEOUT = 300
START_TIMEOUT = 30  # from exec to "listening on" (a loaded machine starts node slowly)

LANGUAGES = ["go", "node", "cpp"]
LANGUAGE_NAMES = {"go": "Go", "node": "Node.js", "cpp": "C++"}
#: The wires each server is started in (HANDSHAKE_PROTOCOL, HANDSHAKE_TRANSPORT) and the Python client speaks.
#: THeader (transport "header", binary or compact inside) is served by all three runtimes; a server started
#: in THeader answers in the protocol the client's frames name, so HANDSHAKE_PROTOCOL is passed but unused.
WIRES = [Wire("binary", "buffered"), Wire("compact", "framed"), Wire("compact", "buffered"), Wire("binary", "framed"),
         Wire("binary", "header"), Wire("compact", "header")]

#: The TApplicationException type each runtime sends for an undeclared handler error (Python sends 6).
FAIL_TYPE = {"go": 6, "node": 0, "cpp": 0}
#: The field InvalidRequest names for process(None): a C++ handler gets `const Request&` and cannot tell a
#: missing argument from an empty one (the Python server says "request").
MISSING_REQUEST_FIELD = {"go": "request", "node": "request", "cpp": "request_id"}
#: Whether the runtime writes every non-optional field (zero values when unset), as Go and C++ do.
WRITES_UNSET_FIELDS = {"go": True, "node": False, "cpp": True}


def server_setup(part: str, tools: List[str]) -> None:
    """interop/setup.sh PART (npm ci, go mod download, the C++ packages as root); fast when done."""
    require_tool("thrift")
    if part == "cpp-server":  # setup.sh installs the C++ toolchain itself (as root), so it goes first
        run(["sh", str(INTEROP / "setup.sh"), part], f"interop/setup.sh {part}", SETUP_TIMEOUT)
    for tool in tools:
        require_tool(tool)
    if part != "cpp-server":
        run(["sh", str(INTEROP / "setup.sh"), part], f"interop/setup.sh {part}", SETUP_TIMEOUT)


@pytest.fixture(scope="session")
def go_server(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Go server, built from a temp copy of interop/servers/go with its Go code generated into gen/."""
    server_setup("go-server", ["go"])
    return [str(build_go(GO_DIR, tmp_path_factory.mktemp("go-server"), "server", GO_MODULE))]


@pytest.fixture(scope="session")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Node.js server (npm ci in interop/servers/node) with JS code generated into a temp dir."""
    server_setup("node-server", ["node", "npm"])
    gen = tmp_path_factory.mktemp("gen-js-server")
    run(["thrift", "-r", "--gen", "js:node,es6", "-out", str(gen), str(IDL)], "thrift --gen js:node,es6", 60)
    return [require_tool("node"), str(NODE_DIR / "server.js"), str(gen)]


@pytest.fixture(scope="session")
def cpp_server() -> List[str]:
    """The C++ server, built with CMake into ~/.cache/thrift-handshake/interop-cpp-server/<hash of its inputs>."""
    server_setup("cpp-server", ["cmake", "g++", "pkg-config"])
    return [str(build_cmake(CPP_DIR, "server.cpp", "interop-cpp-server", "thrift-handshake-server"))]


# ---------------------------------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------------------------------


class ServerProcess:
    """A server program on 127.0.0.1 speaking ``wire``: started on port 0, its port read from its first line."""

    def __init__(self, command: List[str], wire: Wire, *extra: int) -> None:
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, HANDSHAKE_PROTOCOL=wire.protocol, HANDSHAKE_TRANSPORT=wire.transport)
        self.process = subprocess.Popen([*command, "0", *map(str, extra)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.port = self._read_port(command)

    def _read_port(self, command: List[str]) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.stop()
                    pytest.fail(f"{command[-1]} printed no 'listening on' line within {START_TIMEOUT} s:\n"
                                f"{self.errors()}", pytrace=False)
                chunk = os.read(self.process.stdout.fileno(), 1)
                if not chunk:
                    self.stop()
                    pytest.fail(f"{command} exited ({self.process.returncode}) before listening:\n{self.errors()}",
                                pytrace=False)
                line += chunk
        text = line.decode().strip()
        assert text.startswith("listening on 127.0.0.1:"), f"unexpected first line {text!r}"
        return int(text.rsplit(":", 1)[1])

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # a test server: nothing to drain
        self.process.wait(10)
        self.process.stdout.close()


@pytest.fixture
def start() -> Iterator[Callable[..., ServerProcess]]:
    """Starts server processes (``start(command, wire, *extra_args)``) and kills them all afterwards."""
    servers: List[ServerProcess] = []

    def make(command: List[str], wire: Wire, *extra: int) -> ServerProcess:
        server = ServerProcess(command, wire, *extra)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.stderr.close()


class Raw:
    """The bare generated client on its own socket: no wrapper, no hello unless asked."""

    def __init__(self, port: int, wire: Wire) -> None:
        self.socket = TSocket.TSocket("127.0.0.1", port)
        self.socket.setTimeout(10000)
        if wire.transport == "header":  # THeader frames only, with the wire's protocol inside
            protocol = THeaderProtocol.THeaderProtocol(self.socket, (THeaderTransport.THeaderClientType.HEADERS,),
                                                       HEADER_PROTOCOL_IDS[wire.protocol])
            self.transport = protocol.trans
        else:
            if wire.transport == "framed":
                self.transport = TTransport.TFramedTransport(self.socket)
            else:
                self.transport = TTransport.TBufferedTransport(self.socket)
            if wire.protocol == "compact":
                protocol = TCompactProtocolAccelerated(self.transport)
            else:
                protocol = TBinaryProtocolAccelerated(self.transport, strictRead=True)
        self.stub = HandshakeService.Client(protocol)
        self.transport.open()

    def hello(self, min_version: int = 1, max_version: int = 2, client_name: str = "raw-test"):
        return self.stub.hello(ClientHello(client_name=client_name, language="python", min_version=min_version,
                                           max_version=max_version, features=set()))

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

#: (language, "protocol+transport") -> (checks passed, checks run), for the table at the end of the module.
RESULTS: Dict[Tuple[str, str], Tuple[int, int]] = {}


class Checks:
    """Soft assertions: every check runs and is recorded; the test fails at the end with all failures."""

    def __init__(self) -> None:
        self.results: List[Tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.results.append((name, bool(ok), str(detail)))
        return bool(ok)

    def raises(self, name: str, expected: type, call: Callable[[], Any]) -> Optional[BaseException]:
        """Checks that ``call`` raises ``expected``; returns the error (None after a failed check)."""
        try:
            value = call()
        except expected as error:  # noqa: PERF203
            return error
        except Exception as error:  # recorded, not raised: the flow goes on
            self.check(name, False, f"expected {expected.__name__}, got {error!r}")
            return None
        self.check(name, False, f"expected {expected.__name__}, got the result {value!r}")
        return None

    def value(self, name: str, call: Callable[[], Any]) -> Tuple[bool, Any]:
        try:
            return True, call()
        except Exception as error:
            self.check(name, False, f"expected a result, got {error!r}")
            return False, None

    @property
    def failed(self) -> List[Tuple[str, bool, str]]:
        return [result for result in self.results if not result[1]]


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def full_value() -> AllTypes:
    """tests/test_contract.py's value: every type at its edges."""
    return every_type_at_its_edges()


def options(wire: Wire, **fields: Any) -> ClientOptions:
    fields.setdefault("client_name", "interop-servers-test")
    return ClientOptions(wire=wire, **fields)


def connect(port: int, wire: Wire, **fields: Any) -> Client:
    client = Client("127.0.0.1", port, options(wire, **fields), service=HandshakeService)
    client.connect()
    return client


def flow(language: str, port: int, overload_port: int, wire: Wire, c: Checks) -> None:
    """The whole contract against one server speaking ``wire``; each expectation is a check in ``c``."""
    # -- negotiation ------------------------------------------------------------------------------
    with Client("127.0.0.1", port, options(wire, versions=(1, 1)), service=HandshakeService) as v1:
        c.check("hello (1,1) -> version 1", v1.version == 1, v1.server_hello)
    ok, v2 = c.value("hello (1,2)", lambda: connect(port, wire, features={"submit", "notify", "no-such"}))
    if ok:
        hello = v2.server_hello
        v2.close()
        c.check("hello (1,2) -> version 2", hello.version == 2, hello.version)
        c.check("hello features = intersection with the server's", hello.features == {"submit", "notify"},
                hello.features)
        c.check("hello session_id, server_name", bool(hello.session_id) and bool(hello.server_name),
                f"{hello.session_id} {hello.server_name}")
        c.check("hello server_time_ms is the server's clock", abs(hello.server_time_ms - time.time() * 1000) < 60000,
                hello.server_time_ms)
    error = c.raises("hello (3,4) -> HandshakeFailed", HandshakeFailed, lambda: connect(port, wire, versions=(3, 4)))
    if error is not None:
        rejected = error.rejected
        c.check("hello (3,4) -> HandshakeFailed with the server's 1..2",
                (rejected.min_version, rejected.max_version) == (1, 2) and "no common version" in rejected.reason,
                rejected)

    # -- the gate and refused hellos, on bare connections ------------------------------------------
    raw = Raw(port, wire)
    try:
        c.check("ping before hello", c.value("ping before hello", raw.stub.ping)[0])
        error = c.raises("echo before hello -> HandshakeRequired", HandshakeRequired, lambda: raw.stub.echo("early"))
        c.check("echo before hello -> HandshakeRequired", error is not None and bool(error.message), error)
        c.raises("stats before hello -> HandshakeRequired", HandshakeRequired, raw.stub.stats)
        c.raises("goodbye before hello -> HandshakeRequired", HandshakeRequired, raw.stub.goodbye)
        raw.stub.notify(Event(name="early", payload="dropped"))  # one-way before hello: dropped
        for low, high, name, what in [(2, 1, "x", "min_version 2 is greater than max_version 1"),
                                      (1, 2, "", "client_name")]:
            error = c.raises(f"hello {what!r} -> HandshakeRejected", HandshakeRejected,
                             lambda: raw.hello(low, high, client_name=name))
            if error is not None:
                c.check(f"hello refused for {what!r}, with the server's versions",
                        what in error.reason and (error.min_version, error.max_version) == (1, 2), error)
        ok, hello = c.value("hello after refusals", raw.hello)
        c.check("connection usable after HandshakeRequired and refusals", ok and hello.version == 2, hello)
        error = c.raises("second hello -> HandshakeRejected", HandshakeRejected, lambda: raw.hello(1, 1))
        if error is not None:
            c.check("second hello refused, naming the session", hello is not None and hello.session_id in error.reason,
                    error)
        ok, stats = c.value("stats on the raw session", raw.stub.stats)
        c.check("notify before hello was dropped", ok and stats.notifications == 0, stats)
        c.check("session survives a second hello", c.value("echo", lambda: raw.stub.echo("kept"))[1] == "kept")
        ok, farewell = c.value("raw goodbye", raw.stub.goodbye)
        c.check("raw Farewell counts stats and echo (2 calls)", ok and farewell.calls == 2, farewell)
        c.raises("a call after goodbye fails: the server closed the connection", TTransportException,
                         lambda: raw.stub.echo("after goodbye"))
    finally:
        raw.close()

    # -- the calls, through the wrapper --------------------------------------------------------------
    client = connect(port, wire, features={"submit"})
    calls = 0  # calls after hello, not counting goodbye: what Farewell.calls must say

    def call(name: str, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return getattr(client, name)(*args)

    try:
        for text in ["请求数据", "emoji 😀🚀👍🏽 and\nnewlines\0nul", ""]:
            c.check(f"echo {text[:8]!r}", c.value("echo", lambda: call("echo", text))[1] == text)

        payload = "请求数据"
        digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        for sequence, work_ms in [(1, 50), (2, 0)]:
            started = time.perf_counter()
            ok, response = c.value("process", lambda: call("process", Request(request_id=f"p{sequence}",
                                                                              payload=payload, work_ms=work_ms)))
            elapsed = time.perf_counter() - started
            if ok:
                c.check(f"process p{sequence}: digest, request_id, session_id",
                        (response.digest, response.request_id, response.session_id)
                        == (digest, f"p{sequence}", client.session_id), response)
                c.check(f"process p{sequence}: sequence {sequence}", response.sequence == sequence, response.sequence)
                c.check(f"process p{sequence}: processing_us covers work_ms, within the round trip",
                        work_ms * 1000 <= response.processing_us <= elapsed * 1e6, response.processing_us)
        for request, field in [(Request(request_id="", payload="x"), "request_id"),
                               (Request(request_id="r", payload="x", work_ms=-1), "work_ms"),
                               (Request(request_id="r", payload="x", work_ms=10_001), "work_ms")]:
            for method in ("process", "submit"):
                error = c.raises(f"{method} {request} -> InvalidRequest", InvalidRequest,
                                 lambda: call(method, request))
                if error is not None:
                    c.check(f"{method} -> InvalidRequest(field={field})",
                            error.field == field and isinstance(error, ServiceError), error)

        error = c.raises("process(None) -> InvalidRequest", InvalidRequest, lambda: call("process", None))
        c.check(f"process(None) -> InvalidRequest(field={MISSING_REQUEST_FIELD[language]})",
                error is not None and error.field == MISSING_REQUEST_FIELD[language], error)

        started = time.perf_counter()
        ok, ack = c.value("submit", lambda: call("submit", Request(request_id="s1", payload=payload, work_ms=1500)))
        acknowledged = time.perf_counter() - started
        if ok:
            c.check("submit acknowledges before the work is done (sync ack)", acknowledged < 0.75,
                    f"{acknowledged * 1000:.0f} ms for 1500 ms of work")
            c.check("submit ack: ticket, request_id, accepted_at_ms",
                    bool(ack.ticket) and ack.request_id == "s1" and abs(ack.accepted_at_ms - time.time() * 1000) < 60000,
                    ack)
            error = c.raises("get_result(ticket, 0) -> NotReady", NotReady, lambda: call("get_result", ack.ticket, 0))
            c.check("NotReady names the ticket", error is not None and error.ticket == ack.ticket, error)
            other = connect(port, wire, client_name="other")
            try:
                ok, result = c.value("get_result from another session", lambda: other.get_result(ack.ticket, 5000))
            finally:
                other.close()
            if ok:
                c.check("get_result: the submitted work's result (digest, session_id, sequence 1)",
                        (result.request_id, result.digest, result.session_id, result.sequence)
                        == ("s1", digest, client.session_id, 1), result)
                c.check("get_result: processing_us covers work_ms", result.processing_us >= 1_500_000,
                        result.processing_us)
        error = c.raises("get_result('nope') -> UnknownTicket", UnknownTicket, lambda: call("get_result", "nope", 0))
        c.check("UnknownTicket names the ticket", error is not None and error.ticket == "nope", error)

        ok, before = c.value("stats", lambda: call("stats"))
        call("notify", Event(name="n1", payload="通知"))
        call("notify", Event(name="n2", payload="p"))
        ok2, after = c.value("stats", lambda: call("stats"))
        if ok and ok2:
            c.check("stats: notifications +2 after two notify", after.notifications == before.notifications + 2,
                    f"{before.notifications} -> {after.notifications}")
            c.check("stats: calls counts stats itself", after.calls.get("stats", 0) == before.calls.get("stats", 0) + 1,
                    after.calls)
            other = connect(port, wire, client_name="other")
            other.echo("a")
            other.echo("b")
            c.raises("rejected hello for stats", HandshakeFailed, lambda: connect(port, wire, versions=(3, 4)))
            ok, during = c.value("stats", lambda: call("stats"))
            other.close()

            def settled():  # the server notices the closes (goodbye's, the refused hello's) on its own threads
                stats = call("stats")
                deadline = time.monotonic() + 5
                while ((stats.sessions_active, stats.connections_open) != (after.sessions_active, after.connections_open)
                       and time.monotonic() < deadline):
                    time.sleep(0.02)
                    stats = call("stats")
                return stats

            ok2, later = c.value("stats", settled)
            if ok and ok2:
                deltas = {name: getattr(during, name) - getattr(after, name)
                          for name in ("connections_open", "connections_total", "sessions_active", "handshakes_ok",
                                       "handshakes_rejected")}
                # The refused client's connection may or may not be closed yet: connections_open is +1 or +2.
                c.check("stats: a second session counted (connections, sessions, handshakes)",
                        deltas["connections_total"] == 2 and deltas["connections_open"] in (1, 2)
                        and deltas["sessions_active"] == 1 and deltas["handshakes_ok"] == 1
                        and deltas["handshakes_rejected"] == 1, deltas)
                c.check("stats: calls by method (echo +2, hello +2)",
                        during.calls.get("echo", 0) - after.calls.get("echo", 0) == 2
                        and during.calls.get("hello", 0) - after.calls.get("hello", 0) == 2, during.calls)
                c.check("stats: the session and connection are gone after goodbye",
                        later.sessions_active == after.sessions_active
                        and later.connections_open == after.connections_open,
                        f"sessions {later.sessions_active} connections {later.connections_open}")
                c.check("stats: uptime_ms grows", 0 <= after.uptime_ms <= later.uptime_ms, later.uptime_ms)

        error = c.raises("fail -> RemoteApplicationError", RemoteApplicationError, lambda: call("fail", "boom 失败"))
        if error is not None:
            c.check(f"fail: TApplicationException type {FAIL_TYPE[language]} with the message",
                    error.type == FAIL_TYPE[language] and "boom 失败" in error.error.message, error)
        c.check("connection usable after fail", c.value("echo", lambda: call("echo", "alive"))[1] == "alive")

        value = full_value()
        ok, echoed = c.value("echo_types", lambda: call("echo_types", value))
        if ok:
            for name in sorted(vars(value)):
                c.check(f"echo_types.{name}", getattr(echoed, name) == getattr(value, name), getattr(echoed, name))
            c.check("echo_types.real -0.0 bit for bit", bits(echoed.real) == bits(-0.0), echoed.real)
        for special in (math.nan, math.inf, -math.inf, 5e-324):
            ok, echoed = c.value("echo_types", lambda: call("echo_types", AllTypes(id="d", real=special)))
            c.check(f"echo_types.real {special!r} bit for bit", ok and bits(echoed.real) == bits(special),
                    echoed and echoed.real)
        ok, echoed = c.value("echo_types minimal", lambda: call("echo_types", AllTypes(id="m")))
        if ok:
            c.check("echo_types minimal: IDL defaults, optionals unset",
                    (echoed.id, echoed.color, echoed.greeting, echoed.answer, echoed.shape, echoed.note,
                     echoed.maybe_number) == ("m", Color.RED, "hello", 42, None, None, None), echoed)
            unset = (echoed.flag, echoed.number, echoed.text, echoed.numbers, echoed.tags)
            expected = (False, 0, "", [], set()) if WRITES_UNSET_FIELDS[language] else (None,) * 5
            c.check("echo_types minimal: unset non-optional fields come back "
                    + ("as zero values" if WRITES_UNSET_FIELDS[language] else "unset"), unset == expected, unset)

        c.check("ping", c.value("ping", lambda: call("ping"))[0])
        session_id = client.session_id
        ok, farewell = c.value("goodbye", client.goodbye)
        if ok:
            c.check("goodbye: Farewell with the session id", farewell.session_id == session_id, farewell)
            c.check(f"goodbye: Farewell.calls = {calls} (hello and goodbye not counted)", farewell.calls == calls,
                    farewell.calls)
            c.check("goodbye: duration_ms plausible", 1500 <= farewell.duration_ms <= 120_000, farewell.duration_ms)
    finally:
        client.close()

    # -- Overloaded, from a server with 1 worker and a queue of 1 ---------------------------------------
    small = connect(overload_port, wire)
    try:
        tickets = [small.submit(Request(request_id=f"o{i}", payload="x", work_ms=1000)).ticket for i in range(2)]
        error = c.raises("submit beyond the queue -> Overloaded", Overloaded,
                         lambda: small.submit(Request(request_id="o3", payload="x", work_ms=1000)))
        c.check("Overloaded says queued 2 of capacity 2", error is not None and (error.queued, error.capacity) == (2, 2),
                error)
        c.check("the accepted tickets still finish",
                all(small.get_result(ticket, 5000).request_id == f"o{i}" for i, ticket in enumerate(tickets)))
    finally:
        small.close()


@pytest.fixture(scope="module", autouse=True)
def summary_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints checks passed per server once the module's tests are done."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not RESULTS:
        return
    with capture.global_and_fixture_disabled():  # to the terminal, not into the last test's captured output
        reporter.write_line("")
        reporter.write_sep("-", "interop servers: Python client, server per language x wire")
        reporter.write_line(f"{'server':<9} {'wire':<16} {'checks passed':<14} result")
        for (language, wire), (passed, total) in RESULTS.items():
            reporter.write_line(f"{LANGUAGE_NAMES[language]:<9} {wire:<16} {passed:>5}/{total:<8} "
                                f"{'PASS' if passed == total else 'FAIL'}")


@pytest.mark.parametrize("wire", WIRES, ids=lambda wire: f"{wire.protocol}-{wire.transport}")
@pytest.mark.parametrize("language", LANGUAGES)
def test_server_serves_the_whole_contract(language: str, wire: Wire, request: pytest.FixtureRequest,
                                          start: Callable[..., ServerProcess]) -> None:
    """The Python client runs the contract against the server of each language, both started in ``wire``
    (and meets Overloaded on a second instance started with 1 submit worker and a queue of 1). None of these
    servers detects the dialect, so the flow passes only if the server speaks the wire it was told."""
    command = request.getfixturevalue(f"{language}_server")
    server = start(command, wire)
    small = start(command, wire, 1, 1)
    checks = Checks()
    try:
        flow(language, server.port, small.port, wire, checks)
    except Exception as error:  # the flow itself broke: a failed check, with what was done so far
        checks.check("flow completed", False, repr(error))
    passed = len(checks.results) - len(checks.failed)
    RESULTS[(language, f"{wire.protocol}+{wire.transport}")] = (passed, len(checks.results))
    print(f"{LANGUAGE_NAMES[language]} server, {wire.protocol}+{wire.transport}:")
    for name, ok, detail in checks.results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail[:200]}")
    assert server.process.poll() is None, f"the server died during the flow:\n{server.errors()}"
    assert not checks.failed, (f"the {LANGUAGE_NAMES[language]} server broke the contract "
                               f"({len(checks.failed)} of {len(checks.results)} checks failed):\n"
                               + "\n".join(f"FAIL {name}: {detail}" for name, _, detail in checks.failed)
                               + f"\nserver stderr:\n{server.errors()}")
    assert len(checks.results) >= 75, f"only {len(checks.results)} checks ran"
