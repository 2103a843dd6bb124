"""Fixtures: real servers on 127.0.0.1 with ephemeral ports, the public client, a raw Thrift client."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
import time
from typing import Callable, Iterator, List, Optional

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport import TSocket, TTransport

from thrift_handshake.demo import DemoLimits, demo_server
from thrift_handshake import Client, ClientOptions, HandshakeServer, ServerConfig
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello

ServerFactory = Callable[..., HandshakeServer]


def _threads_settle(before: set, timeout: float = 5.0) -> List[threading.Thread]:
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.02)


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Starts servers (``start_server(handler=None, demo=None, **ServerConfig fields)``); stops them all afterwards
    and fails the test if any of their threads outlive the stop."""
    before = set(threading.enumerate())
    servers: List[HandshakeServer] = []

    def start(handler=None, demo: Optional[DemoLimits] = None, **config) -> HandshakeServer:
        """The demo service (with ``demo`` limits) unless ``handler`` is given."""
        config.setdefault("port", 0)
        if handler is None:
            server = demo_server(ServerConfig(**config), demo).start()
        else:
            server = HandshakeServer(handler, ServerConfig(**config)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=5.0)
    leaked = _threads_settle(before)
    assert not leaked, f"threads still running after stop: {leaked}"


@pytest.fixture
def server(start_server: ServerFactory) -> HandshakeServer:
    return start_server()


@pytest.fixture
def connect(server: HandshakeServer) -> Iterator[Callable[..., Client]]:
    """Connected clients to ``server`` (``connect(**ClientOptions fields)``), closed afterwards."""
    clients: List[Client] = []

    def make(**options) -> Client:
        client = Client("127.0.0.1", server.port, ClientOptions(**options), service=HandshakeService)
        clients.append(client)
        client.connect()
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect) -> Client:
    return connect()


class RawConnection:
    """The bare generated client on its own socket: no wrapper, no hello unless asked."""

    def __init__(self, port: int) -> None:
        self.socket = TSocket.TSocket("127.0.0.1", port)
        self.socket.setTimeout(5000)
        self.transport = TTransport.TBufferedTransport(self.socket)
        self.stub = HandshakeService.Client(TBinaryProtocolAccelerated(self.transport))
        self.transport.open()

    def hello(self, min_version: int = 1, max_version: int = 2, **fields):
        fields.setdefault("client_name", "raw-test")
        return self.stub.hello(ClientHello(min_version=min_version, max_version=max_version, **fields))

    def close(self) -> None:
        self.transport.close()


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Iterator[Callable[..., RawConnection]]:
    """Raw connections to ``port`` (default: the ``server`` fixture's), closed afterwards."""
    connections: List[RawConnection] = []

    def make(port: Optional[int] = None) -> RawConnection:
        connection = RawConnection(port or request.getfixturevalue("server").port)
        connections.append(connection)
        return connection

    yield make
    for connection in connections:
        connection.close()


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``predicate()`` becomes true within ``timeout`` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def exchange(port: int, data: bytes) -> bytes:
    """Sends raw bytes on a fresh connection, half-closes it, and returns whatever comes back (the
    server may stop reading or reset early: what it answered before that is still returned)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket, seconds: float = 5.0) -> bytes:
    """What the peer sends before it closes or resets the connection (or within ``seconds``)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:  # reset, or nothing more in time: what came is the answer
        pass
    return received


def encode_call(method: str, args, seqid: int = 1, message_type: int = 1) -> bytes:
    """One strict-binary message (a call by default), as a client would put it on the wire."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin(method, message_type, seqid)
    args.write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()


@pytest.fixture
def send_raw() -> Callable[[int, bytes], bytes]:
    return exchange


IDL_DIR = Path(__file__).resolve().parent.parent / "idl"


@contextlib.contextmanager
def generated(out: Path, filename: str, idl: str, module: str) -> Iterator[object]:
    """Compiles ``idl`` (which may include the project's IDLs) with the real Thrift compiler into
    ``out`` and yields the generated ``module`` (e.g. "plain_gen.Plain"); unimports it afterwards."""
    compiler = shutil.which("thrift")
    assert compiler, "the Thrift compiler is needed (scripts/test installs thrift-compiler)"
    (out / filename).write_text(idl)
    subprocess.run([compiler, "-I", str(IDL_DIR), "--gen", "py", "-out", str(out), str(out / filename)], check=True)
    sys.path.insert(0, str(out))
    package = module.split(".")[0]
    try:
        yield importlib.import_module(module)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The interop matrix (tests/test_interop.py): checks passed per language, at the end of the session."""
    rows = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "interop" and getattr(report, "when", "call") == "call":
                    rows[(value["language"], value.get("wire", "binary+buffered"))] = (value, report.outcome)
    if not rows:
        return
    terminalreporter.section("interop matrix: Python server (one port), client per language x wire")
    terminalreporter.write_line(f"{'client':<9} {'wire':<16} {'checks passed':<14} {'result':<7} runtime")
    for (language, wire), (value, outcome) in rows.items():
        result = "PASS" if outcome == "passed" else "FAIL"
        terminalreporter.write_line(f"{language:<9} {wire:<16} {value['passed']:>5}/{value['checks']:<8} {result:<7} "
                                    f"{value['version'].split(', server ')[0]}")


def report_reliability(attack: str, tries: int, survived: bool, lost: int, rss_kib=(None, None, None),
                       threads=(None, None, None), figure: str = "") -> None:
    """One row of scripts/reliability's table (RSS in KiB and threads: before, peak, after; ``figure``:
    what the attack measured), printed so that ``pytest -s`` shows it and the script collects it."""
    row = dict(attack=attack, tries=tries, survived=survived, lost=lost, rss_kib=list(rss_kib), threads=list(threads),
               figure=figure)
    print("\nRELIABILITY " + json.dumps(row, ensure_ascii=False))


def every_type_at_its_edges():
    """An AllTypes with every Thrift type at its edges (i64 limits and 2^53+1, -0.0, all 256 bytes,
    Chinese and emoji, the negative and the largest enum, a union, nested and empty containers)."""
    from thrift_handshake_gen.ttypes import AllTypes, Color, Point, Shape

    return AllTypes(
        id="全部-1",
        flag=True,
        small=-128,
        short_number=-32768,
        number=2**31 - 1,
        big_number=-(2**63),
        real=-0.0,
        text="请求数据 🚀",
        data=bytes(range(256)),
        color=Color.UNKNOWN_COLOR,
        shape=Shape(polygon=[Point(x=1, y=2, label="a"), Point(x=-3, y=4)]),
        note=None,
        maybe_number=2**53 + 1,
        numbers=[0, -1, 2**31 - 1],
        tags={"a", "b", "中"},
        counts={"x": 2**63 - 1},
        groups={"g": [Point(x=0, y=0)], "empty": []},
        layers=[{"k": {1, 2, 3}}, {}],
        palette={1: Color.RED, -5: Color.MAX_COLOR},
        blobs=[b"", b"\x00\xff"],
    )


def told_within(socks, seconds: float = 0.5) -> list:
    """What each socket's server said within ``seconds``: its bytes, b"" when it closed (or reset) the
    connection, None when it said nothing."""
    told = []
    for sock in socks:
        sock.settimeout(seconds)
        try:
            told.append(sock.recv(65536))
        except socket.timeout:
            told.append(None)
        except OSError:
            told.append(b"")
    return told


def free_port() -> int:
    """A loopback port nothing listens on right now (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
