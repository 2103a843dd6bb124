"""Apache Thrift's own cross test: its unmodified TestClients (Python, Go, C++, Node.js, Java at 0.17.0, the
compiler's version) against Apache's ``ThriftTest`` and ``SecondService`` served by thrift-handshake: every plain
cell on one port, every ssl cell on one TLS port, every domain cell on one Unix domain socket, each detecting the
cell's protocol and transport by itself.

The server is ``thrift-handshake serve --handler handler:ThriftTestHandler --handler handler:SecondServiceHandler
--default-service ThriftTest`` (interop/crosstest/handler.py): both services behind TMultiplexedProtocol's names
for the ``multi*`` cells, ThriftTest also under bare names for the others, as Apache's own TestServer registers
them. It runs in two columns: the gate off (``--no-hello``), once for plain TCP, once with TLS (Apache's test
certificate, test/keys) and once on a Unix domain socket (``--unix``); and the optional handshake (``--hello optional``: the gate on, and Apache's clients,
which never say hello, served as anonymous sessions), on the same three sockets: every client, protocol, transport
and socket runs in both columns. Apache's sources come from Debian's source package
``thrift`` 0.17.0 (interop/crosstest/fetch.sh, pinned SHA-256), and the clients are built by
interop/crosstest/build.sh; both cache under interop/crosstest/apache (gitignored). A cell is one client in one
protocol, transport and socket, as Apache's test/tests.json names them, in one column; each is its own test id.

The cells run ``JOBS`` at a time (``CROSSTEST_JOBS``, default 3): every client is its own process with its own
connections, most of a cell's time is a client starting up or sleeping through ``testOneway``, and serving
several clients at once is what the server is for. Each test waits for its own cell's result.

The JSON protocol (buffered, framed, zlib) and HTTP (JSON, binary, compact) are served on the same port; cells
the server does not serve are left out (``_unserved``: THeader inside HTTP, and two client limitations). These
tests never skip: a missing toolchain fails them with what to install.

The same cells also run against the asyncio server (``serve --asyncio``, the same flags; ids end in
``-asyncio``), but not all of them: all 670 twice would make scripts/test's other-languages group (about 7.5
minutes on 2 cores) slower than the rest (about 9.5). What differs between the two servers is below the
ThriftTest calls: accepting, TLS, the Unix socket, telling the dialect, framing, zlib, JSON, HTTP and the gate's
two columns. So every row (client, protocol, transport: 132, JSON, HTTP, zlib and THeader included) runs once,
in the socket and column that meet the most of that client's pairs not met yet (``_asyncio_cells``): each
client meets the asyncio server on every socket it has in both columns, each of its transports on every socket
and in both columns, each of its protocols in both columns and on every socket but for 4 of the 92 (protocol,
socket) pairs (``test_asyncio_cells_cover_every_row``). The gate-off column's asyncio servers run on uvloop's
event loop, the optional-hello column's on asyncio's own (``ASYNCIO_LOOPS``), so every client, socket and
transport meets both loops. About 90 s with 3 at a time. ``CROSSTEST_ASYNCIO=all``
runs all 670 against it (docs/interop.md).

The session's matrix is written to interop/crosstest/apache/matrix.md (the table of docs/interop.md), each
server's log to interop/crosstest/apache/server-logs/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import pytest

from serving import listening_endpoint
from test_interop import DialectRelay, run, run_to_end

ROOT = Path(__file__).resolve().parent.parent
CROSSTEST = ROOT / "interop" / "crosstest"
CACHE = CROSSTEST / "apache"
TREE = CACHE / "thrift-0.17.0"
MATRIX = CACHE / "matrix.md"
LOGS = CACHE / "server-logs"  # each server's stderr, kept after the session: SERVER-HELLO-SOCKET.log

BUILD_TIMEOUT = 300  # a cold Go build cache compiles the standard library; the C++ client compiles ~10 s
CELL_TIMEOUT = 60  # a cell takes 1-2 s (testOneway sleeps 1 s)
PY_TESTS = 22  # TestClient.py's test methods, all run in every cell (testMultiplexed checks only in multi* cells)
NODE_CHECKS = 37  # tape assertions of client.js over TCP


class Cell(NamedTuple):
    """One client, protocol, transport and socket, spelled as Apache's test/tests.json spells them, against
    the server with the gate off (hello "off") or with the optional handshake (hello "optional")."""

    language: str
    protocol: str
    transport: str
    socket: str  # "ip", "ip-ssl" or "domain"
    hello: str = "off"
    server: str = "threaded"  # a key of SERVERS

    @property
    def id(self) -> str:
        return f"{self.language}-{self.protocol}-{self.transport}-{self.socket}" + (
            "" if self.hello == "off" else f"-hello-{self.hello}") + SERVER_IDS[self.server]


# What each client offers that the server serves today (tests.json's lists, less what needs server work).
PROTOCOLS = {
    "py": ["binary", "accel", "compact", "accelc", "header", "multi", "multia", "multiac", "multic", "multih", "json",
           "multij"],
    "go": ["binary", "compact", "header", "json"],
    "cpp": ["binary", "compact", "header", "multi", "multic", "multih", "json", "multij"],
    "node": ["binary", "compact", "header", "json"],
    "java": ["binary", "compact", "multi", "multic", "json", "multij"],
}
# "zlib": TZlibTransport around the socket's byte stream (Java, Go) or a TBufferedTransport (Python, C++);
# "fastframed": tests.json's "framed:fastframed", Java's TFastFramedTransport.
TRANSPORTS = {
    "py": ["buffered", "framed", "zlib", "http"],
    "go": ["buffered", "framed", "zlib", "http"],
    "cpp": ["buffered", "framed", "zlib", "http"],
    "node": ["buffered", "framed", "http"],
    "java": ["buffered", "framed", "fastframed", "zlib", "http"],
}
SOCKETS = {  # "domain": a Unix domain socket (--domain-socket)
    "py": ["ip", "ip-ssl", "domain"],
    "go": ["ip", "ip-ssl"],
    "cpp": ["ip", "ip-ssl", "domain"],
    "node": ["ip", "ip-ssl", "domain"],
    "java": ["ip", "ip-ssl"],
}
#: The server's columns: the gate off, and the gate on with the optional handshake (its sockets: see the top).
HELLO = {"off": ["--no-hello"], "optional": ["--hello", "optional"]}
HELLO_SOCKETS = {"off": ("ip", "ip-ssl", "domain"), "optional": ("ip", "ip-ssl", "domain")}
#: The servers: HandshakeServer (threads), AsyncHandshakeServer (serve --asyncio) for ASYNCIO_CELLS, and both
#: as two worker processes behind one port for WORKERS_CELLS; the suffix each puts on a cell's id.
SERVERS = {"threaded": [], "asyncio": ["--asyncio"], "workers": ["--workers", "2"],
           "asyncio-workers": ["--asyncio", "--workers", "2"]}
SERVER_IDS = {"threaded": "", "asyncio": "-asyncio", "workers": "-workers2", "asyncio-workers": "-asyncio-workers2"}
#: The asyncio server's event loop in each column: uvloop's (setup.cfg's test extra installs it) with the gate
#: off, asyncio's own with the optional hello (uvloop hidden from that server by a module of its name that fails
#: to import, first on its PYTHONPATH), so that each loop's TCP, TLS and Unix sockets meet every client.
ASYNCIO_LOOPS = {"off": "uvloop", "optional": "asyncio"}
HIDDEN_UVLOOP = "raise ImportError('uvloop is hidden from this server by tests/test_crosstest.py')\n"
HEADER = ("header", "multih")  # THeader on the wire
JOBS = max(1, int(os.environ.get("CROSSTEST_JOBS", "3")))


#: Cells left out though the client offers them, and why (docs/interop.md): THeader inside an HTTP body is not
#: served (HTTP carries JSON, binary or compact); Python's THttpClient takes no Unix socket (it would call
#: host:port); Java's TestClient refuses ssl with http ("SSL is not supported over http").
def _unserved(language: str, protocol: str, transport: str, sock: str) -> bool:
    if transport != "http":
        return False
    return protocol in HEADER or (language == "py" and sock == "domain") or (language == "java" and sock == "ip-ssl")


def _cells() -> List[Cell]:
    return [Cell(language, protocol, transport, sock, hello) for hello in HELLO
            for language, protocols in PROTOCOLS.items() for protocol in protocols
            for transport in TRANSPORTS[language] for sock in SOCKETS[language] if sock in HELLO_SOCKETS[hello]
            and not _unserved(language, protocol, transport, sock)]


#: Cells that fail in Apache's client whatever the server, and how: exactly as against Apache's own Python
#: TestServer (``TestServer.py --protocol=compact --zlib``, measured 2026-12-07). lib/py 0.17's C extension
#: calls the transport's refill with a "y#" format without PY_SSIZE_T_CLEAN (ext/types.cpp), which Python
#: 3.10+ refuses; only TZlibTransport's short reads make the compact decoder refill mid-reply. Four checks
#: fail with that SystemError, testMapMap with the decoder's own words for the failed refill.
PY_ZLIB_REFILL = {"testByte": "SystemError: PY_SSIZE_T_CLEAN macro must be defined for '#' formats",
                  "testI32": "SystemError: PY_SSIZE_T_CLEAN macro must be defined for '#' formats",
                  "testI64": "SystemError: PY_SSIZE_T_CLEAN macro must be defined for '#' formats",
                  "testMapMap": "TypeError: got wrong ttype while reading field",
                  "testString": "SystemError: PY_SSIZE_T_CLEAN macro must be defined for '#' formats"}
CLIENT_DEFECTS = {("py", "accelc", "zlib"): PY_ZLIB_REFILL,  # by (client, protocol, transport)
                  ("py", "multiac", "zlib"): PY_ZLIB_REFILL}


def _asyncio_cells(threaded: List[Cell]) -> List[Cell]:
    """Every row (client, protocol, transport) once against ``serve --asyncio``, in the socket and server column
    that meet the most of this client's pairs not met yet: (socket, column), and the protocol and the transport
    each with the socket and with the column."""
    rows: Dict[Tuple[str, str, str], List[Cell]] = {}
    for cell in threaded:
        rows.setdefault(cell[:3], []).append(cell)
    met: Set[Tuple[str, str, str]] = set()

    def pairs(cell: Cell) -> Set[Tuple[str, str, str]]:
        return {(cell.language, cell.socket, cell.hello), (cell.language, cell.protocol, cell.socket),
                (cell.language, cell.protocol, cell.hello), (cell.language, cell.transport, cell.socket),
                (cell.language, cell.transport, cell.hello)}

    picked: List[Cell] = []
    for cells in rows.values():  # ties: the socket and column this client has run least, then the first
        best = max(cells, key=lambda cell: (len(pairs(cell) - met), -sum(
            (p.language, p.socket, p.hello) == (cell.language, cell.socket, cell.hello) for p in picked)))
        met |= pairs(best)
        picked.append(best._replace(server="asyncio"))
    return picked


THREADED_CELLS = _cells()
ASYNCIO_CELLS = ([cell._replace(server="asyncio") for cell in THREADED_CELLS]
                 if os.environ.get("CROSSTEST_ASYNCIO") == "all" else _asyncio_cells(THREADED_CELLS))


def _workers_cells(threaded: List[Cell]) -> List[Cell]:
    """Against two workers (``--workers 2``) with the gate on (the optional handshake): every client's transports
    on its plain socket with its first protocol, against the asyncio workers; and each client once (its first
    cell of those) against the threaded workers."""
    first: Dict[Tuple[str, str], Cell] = {}
    for cell in threaded:
        if cell.socket == "ip" and cell.hello == "optional" and cell.protocol == PROTOCOLS[cell.language][0]:
            first.setdefault((cell.language, cell.transport), cell)
    picked = [cell._replace(server="asyncio-workers") for cell in first.values()]
    languages = {cell.language: cell for cell in reversed(list(first.values()))}
    return picked + [cell._replace(server="workers") for cell in languages.values()]


WORKERS_CELLS = _workers_cells(THREADED_CELLS)
CELLS = THREADED_CELLS + ASYNCIO_CELLS + WORKERS_CELLS
NAMES = {"py": "Python", "go": "Go", "cpp": "C++", "node": "Node.js", "java": "Java"}
TOOLS = {"py": [], "go": ["go"], "cpp": ["g++", "pkg-config"], "node": ["node", "npm"],
         "java": ["java", "javac", "keytool", "mvn"]}


_built: Dict[str, bool] = {}


def built(language: str) -> None:
    """interop/setup.sh crosstest-cpp (C++: Debian's packages, as root), then interop/crosstest/build.sh
    LANGUAGE, once a session. A missing tool fails the test with what to install."""
    if _built.get(language):
        return
    if language == "cpp":  # installs the C++ toolchain too, so it goes before the tools are looked for
        run(["sh", str(ROOT / "interop" / "setup.sh"), "crosstest-cpp"], "interop/setup.sh crosstest-cpp",
            BUILD_TIMEOUT)
    for tool in ["thrift", "apt-get", *TOOLS[language]]:
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not on PATH: the cross test's {NAMES[language]} client needs it "
                        "(scripts/test installs it as root)", pytrace=False)
    run(["sh", str(CROSSTEST / "build.sh"), language], f"interop/crosstest/build.sh {language}", BUILD_TIMEOUT,
        env=dict(os.environ, PYTHON=sys.executable))
    _built[language] = True


class Server(NamedTuple):
    """A ``thrift-handshake serve`` process, where it listens (port, or ``unix:PATH``) and what it has logged."""

    process: subprocess.Popen
    endpoint: str
    log: List[str]

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1]) if not self.endpoint.startswith("unix:") else 0

    @property
    def path(self) -> str:
        return self.endpoint[len("unix:"):]


def _start(*flags: str, env: Optional[Dict[str, str]] = None) -> Server:
    """``thrift-handshake serve`` with ThriftTest and SecondService on one ephemeral port (or ``--unix PATH``)."""
    command = [sys.executable, "-m", "thrift_handshake", "serve", "--handler", "handler:ThriftTestHandler",
               "--handler", "handler:SecondServiceHandler", "--default-service", "ThriftTest",
               "--path", str(CROSSTEST), "--path", str(TREE / "test" / "py" / "gen-py"),
               "--host", "127.0.0.1", "--port", "0", *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               encoding="utf-8", errors="replace", env=env)
    log: List[str] = []
    return Server(process, listening_endpoint(process, log), log)


def _selected(request: pytest.FixtureRequest) -> List[Cell]:
    """The session's selected cells (all of them unless ``-k`` chose some), in the order of the test ids."""
    return [item.callspec.params["cell"] for item in request.session.items
            if item.module is sys.modules[__name__] and hasattr(item, "callspec")]


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest) -> Iterator[Dict[Tuple[str, str, str], Server]]:
    """Per server (threaded, asyncio) and column (the gate off, the optional handshake) one plain, one TLS
    (Apache's test/keys/server.crt) and one Unix domain socket server, each on its own single port (or path), as
    the selected cells need them; by (server, hello, socket). The asyncio ones on ``ASYNCIO_LOOPS``' event loops."""
    built("py")  # the handler imports the Python code generated from Apache's ThriftTest.thrift
    keys = TREE / "test" / "keys"
    socket_dir = tempfile.mkdtemp(prefix="crosstest-")  # short: a socket's path holds 107 bytes at most
    tls = ("--tls-cert", str(keys / "server.crt"), "--tls-key", str(keys / "server.key"))

    def where(kind: str, hello: str, sock: str) -> Tuple[str, ...]:
        domain = ("--unix", os.path.join(socket_dir, f"{kind}-{hello}.sock"))
        return {"ip": (), "ip-ssl": tls, "domain": domain}[sock]

    hidden = tempfile.mkdtemp(prefix="crosstest-no-uvloop-")
    Path(hidden, "uvloop.py").write_text(HIDDEN_UVLOOP, encoding="utf-8")

    def start(kind: str, hello: str, sock: str) -> Server:
        env = None
        if kind == "asyncio" and ASYNCIO_LOOPS[hello] == "asyncio":
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [hidden, os.environ.get("PYTHONPATH")])))
        return _start(*SERVERS[kind], *HELLO[hello], *where(kind, hello, sock), env=env)

    needed = sorted({(cell.server, cell.hello, cell.socket) for cell in _selected(request)})
    with ThreadPoolExecutor(max(1, len(needed)), thread_name_prefix="crosstest-server") as starting:
        started = dict(zip(needed, starting.map(lambda key: start(*key), needed)))
    yield started
    for server in started.values():
        server.process.send_signal(signal.SIGTERM)
    for server in started.values():
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    LOGS.mkdir(parents=True, exist_ok=True)
    for (kind, hello, sock), server in started.items():
        (LOGS / f"{kind}-{hello}-{sock}.log").write_text("".join(server.log), encoding="utf-8")
    shutil.rmtree(hidden)
    assert not os.listdir(socket_dir), "the domain server left its socket file behind"
    os.rmdir(socket_dir)


class Outcome(NamedTuple):
    """What a cell's client did."""

    passed: Optional[int]  # None: the client prints no count (Go, C++, Java: exit status only)
    total: Optional[int]
    exit: int
    output: str
    seconds: float


def client_command(cell: Cell, server: Server, port: int) -> "tuple[List[str], Path, Dict[str, str]]":
    """Apache's TestClient for ``cell``, as test/tests.json runs it (crossrunner's flags: ``--ssl``,
    ``--domain-socket=PATH``, ``--zlib`` with ``--transport=zlib``): (argv, working directory, environment)."""
    env = dict(os.environ)
    ssl = {"ip-ssl": ["--ssl"], "domain": [f"--domain-socket={server.path}"]}.get(cell.socket, [])
    ssl += ["--zlib"] if cell.transport == "zlib" else []
    common = ["--host=127.0.0.1", f"--port={port}"]
    if cell.language == "py":
        return ([str(CACHE / "py-venv" / "bin" / "python"), "TestClient.py", "--genpydir=gen-py", *common,
                 f"--protocol={cell.protocol}", f"--transport={cell.transport}", *ssl], TREE / "test" / "py", env)
    if cell.language == "go":
        return ([str(TREE / "test" / "go" / "bin" / "testclient"), *common, f"--protocol={cell.protocol}",
                 f"--transport={cell.transport}", *ssl], TREE / "test" / "go", env)
    if cell.language == "cpp":
        return ([str(TREE / "test" / "cpp" / "build" / "TestClient"), *common, f"--protocol={cell.protocol}",
                 f"--transport={cell.transport}", *ssl], TREE / "test" / "cpp", env)
    if cell.language == "java":  # as the tag's gradle runclient script runs it; the truststore: build.sh java
        java_dir = TREE / "lib" / "java"
        classpath = os.pathsep.join([str(java_dir / "crosstest-classes"), str(java_dir / "crosstest-lib" / "*")])
        return ([shutil.which("java") or "java", "-cp", classpath,
                 f"-Djavax.net.ssl.trustStore={java_dir / 'crosstest-truststore'}",
                 "-Djavax.net.ssl.trustStorePassword=thrift", "org.apache.thrift.test.TestClient", *common,
                 f"--protocol={cell.protocol}", f"--transport={cell.transport}", *ssl], java_dir, env)
    # Node: `thrift` is the tree's own lib/nodejs (NODE_PATH=../lib, as tests.json sets it); the rest from npm
    env["NODE_PATH"] = os.pathsep.join([str(TREE / "lib" / "nodejs" / "lib"),
                                        str(CROSSTEST / "node" / "node_modules")])
    return ([shutil.which("node") or "node", "client.js", "--type=tcp", *common, "-p", cell.protocol,
             "-t", cell.transport, *ssl], TREE / "lib" / "nodejs" / "test", env)


def run_cell(cell: Cell, server: Server, port: int) -> Outcome:
    """Runs the cell's client against ``server`` (its ``port``, or a relay's); the checks it counted,
    where it prints a count."""
    command, cwd, env = client_command(cell, server, port)
    started = time.monotonic()
    result = run_to_end(command, f"{cell.id}: the client", CELL_TIMEOUT, cwd, env)
    seconds = time.monotonic() - started
    out = result.stdout
    passed = total = None
    if cell.language == "py":  # unittest: "Ran N tests", then "OK" or "FAILED (errors=E, failures=F)"
        ran = re.search(r"^Ran (\d+) tests? in", out, re.MULTILINE)
        if ran:
            total = int(ran.group(1))
            bad = sum(int(n) for n in re.findall(r"(?:errors|failures)=(\d+)", out))
            passed = total - bad
    elif cell.language == "node":  # tape: "# pass N", "# fail F"
        ok = re.search(r"^# pass\s+(\d+)", out, re.MULTILINE)
        failed = re.search(r"^# fail\s+(\d+)", out, re.MULTILINE)
        if ok:
            passed = int(ok.group(1))
            total = passed + (int(failed.group(1)) if failed else 0)
    return Outcome(passed, total, result.returncode, out, seconds)


_results: Dict[Cell, Outcome] = {}


@pytest.fixture(scope="module", autouse=True)
def matrix() -> Iterator[None]:
    """Writes the session's cross-test matrix (interop/crosstest/apache/matrix.md) once the cells have run: the
    table of docs/interop.md, a row per client, protocol and transport, a column per socket and server column,
    one for the row's cell against ``serve --asyncio`` (its count, socket and column), and one for its cells against
    two workers."""
    yield
    if not _results:
        return
    columns = [(hello, sock) for hello in HELLO for sock in HELLO_SOCKETS[hello]]
    names = [sock if hello == "off" else f"{sock}, optional hello" for hello, sock in columns]
    lines = ["| client | protocol | transport | " + " | ".join(names) + " | seconds (each column) | serve --asyncio"
             " | --workers 2 (optional hello) |",
             "|---|---|---|" + "---|" * len(columns) + "---|---|---|"]
    rows: Dict[Tuple[str, str, str], Dict[Tuple[str, str, str], Outcome]] = {}
    for cell, outcome in _results.items():
        rows.setdefault(cell[:3], {})[cell.server, cell.hello, cell.socket] = outcome
    for (language, protocol, transport), outcomes in rows.items():
        counts = [_count(Cell(language, protocol, transport, sock, hello), outcomes.get(("threaded", hello, sock)))
                  for hello, sock in columns]
        seconds = " / ".join(f"{outcomes['threaded', hello, sock].seconds:.1f}"
                             if ("threaded", hello, sock) in outcomes else "-" for hello, sock in columns)
        on_asyncio = [f"{_count(Cell(language, protocol, transport, sock, hello), outcome)} ({sock}"
                      + ("" if hello == "off" else f", {hello} hello") + f", {outcome.seconds:.1f} s)"
                      for (server, hello, sock), outcome in outcomes.items() if server == "asyncio"]
        on_workers = [f"{_count(Cell(language, protocol, transport, sock, hello), outcome)} "
                      f"({'asyncio' if server == 'asyncio-workers' else 'threaded'}, {outcome.seconds:.1f} s)"
                      for (server, hello, sock), outcome in outcomes.items() if server in ("workers", "asyncio-workers")]
        lines.append(f"| {NAMES[language]} | {protocol} | {transport} | {' | '.join(counts)} | {seconds} | "
                     f"{'; '.join(on_asyncio) or '-'} | {'; '.join(on_workers) or '-'} |")
    MATRIX.parent.mkdir(parents=True, exist_ok=True)
    MATRIX.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _count(cell: Cell, outcome: Optional[Outcome]) -> str:
    if outcome is None:
        return "-"  # a socket this client does not offer (tests.json), or a cell not run
    if outcome.total is None:
        return f"exit {outcome.exit}"
    count = f"{outcome.passed}/{outcome.total}"
    return f"{count} (client defect)" if cell[:3] in CLIENT_DEFECTS else count


@pytest.fixture(scope="module")
def cells_running(servers: Dict[Tuple[str, str, str], Server],
                  request: pytest.FixtureRequest) -> Iterator[Dict[Cell, Future]]:
    """The session's selected cells (all of them unless ``-k`` chose some), ``JOBS`` at a time, in the order of
    the test ids; each test waits for its own. A client that cannot be built fails its language's cells with why."""
    selected = _selected(request)
    unbuilt: Dict[str, BaseException] = {}
    for language in sorted({cell.language for cell in selected}, key=list(PROTOCOLS).index):
        try:
            built(language)
        except pytest.fail.Exception as error:
            unbuilt[language] = error
    with ThreadPoolExecutor(JOBS, thread_name_prefix="crosstest-cell") as pool:
        running: Dict[Cell, Future] = {}
        for cell in selected:
            if cell.language in unbuilt:
                failed: Future = Future()
                failed.set_exception(unbuilt[cell.language])
                running[cell] = failed
            else:
                running[cell] = pool.submit(_run_relayed, cell, servers[cell.server, cell.hello, cell.socket])
        yield running
        for future in running.values():
            future.cancel()


def _run_relayed(cell: Cell, server: Server) -> Tuple[Outcome, Optional[List[str]]]:
    """Runs the cell; plain THeader cells through a relay that names each connection's dialect (ssl ones cannot
    be read, domain ones are not TCP): the outcome, and the dialects the relay saw (None without one)."""
    relay = DialectRelay(("127.0.0.1", server.port)) if cell.protocol in HEADER and cell.socket == "ip" else None
    try:
        outcome = run_cell(cell, server, relay.port if relay else server.port)
        if _ONEWAY_SEND_TIMED.search(outcome.output):  # the client's own clock on a loaded machine: once more
            again = run_cell(cell, server, relay.port if relay else server.port)
            outcome = again._replace(output=f"{outcome.output}\n[run again: the one-way send timed out]\n{again.output}")
    finally:
        if relay:
            relay.close()
    return outcome, None if relay is None else list(relay.dialects)


#: Java's and C++'s TestClients fail ``testOneway`` when *sending* the one-way call took over 200 ms, a
#: figure of the client's machine, not of the server (docs/interop.md): such a cell runs once more, and
#: that run must pass every check. Seen under a load average of 8 to 10 on 2 cores, once per few runs.
_ONEWAY_SEND_TIMED = re.compile(r"Oneway test took too long to execute|testOneway\(1\) =>\*\*\* FAILED \*\*\* - took")


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_apache_test_client_passes(cell: Cell, servers: Dict[Tuple[str, str, str], Server],
                                   cells_running: Dict[Cell, Future]) -> None:
    """Apache's unmodified TestClient of the cell's language runs all its checks against our one port."""
    server = servers[cell.server, cell.hello, cell.socket]
    outcome, dialects = cells_running[cell].result()
    _results[cell] = outcome
    sys.stdout.write(outcome.output)  # shown by pytest on failure
    assert server.process.poll() is None, "the server exited:\n" + "".join(server.log)
    if cell.server in ("workers", "asyncio-workers"):
        assert any(" with 2 workers " in line for line in server.log), "".join(server.log[:5])
    if cell.server == "asyncio":  # on its column's event loop (uvloop: pip install -e '.[test]')
        listening = next(line for line in server.log if "listening on" in line)
        assert listening.rstrip().endswith(f" asyncio={ASYNCIO_LOOPS[cell.hello]}"), listening
    if cell[:3] in CLIENT_DEFECTS:  # fails in the client, and only as it fails against Apache's own server
        expected = CLIENT_DEFECTS[cell[:3]]
        errors = re.findall(r"^ERROR: (\w+) \(", outcome.output, re.MULTILINE)
        assert sorted(errors) == sorted(expected), outcome.output[-4000:]
        for line in set(expected.values()):
            assert outcome.output.count(line) == list(expected.values()).count(line), outcome.output[-4000:]
        assert (outcome.passed, outcome.total) == (PY_TESTS - len(expected), PY_TESTS), outcome.output[-4000:]
        return
    assert outcome.exit == 0, f"{cell.id}: exit {outcome.exit}\n{outcome.output[-4000:]}"
    assert "*** FAILURE ***" not in outcome.output, outcome.output[-4000:]  # C++ and Java mark each failed check
    if cell.language == "py":
        assert (outcome.passed, outcome.total) == (PY_TESTS, PY_TESTS), outcome.output[-4000:]
        assert re.search(r"^OK$", outcome.output, re.MULTILINE), outcome.output[-4000:]
    if cell.language == "node" and cell.transport == "http":  # its HTTP driver sends every call at once and
        # exits when the last returns, with 15-37 of its checks run (interop-notes): none may fail
        assert outcome.total and outcome.passed == outcome.total, outcome.output[-4000:]
    elif cell.language == "node":
        assert (outcome.passed, outcome.total) == (NODE_CHECKS, NODE_CHECKS), outcome.output[-4000:]
    if dialects is not None:
        if cell.language == "node":  # caveat: Node's 0.17 client never writes THeader's header (docs/interop.md)
            assert set(dialects) == {f"{cell.transport} binary"}, dialects
        else:
            header = {"buffered": "THeader ", "framed": "framed THeader ", "zlib": "zlib: THeader "}[cell.transport]
            assert dialects and all(d.startswith(header) for d in dialects), dialects


def test_asyncio_cells_cover_every_row() -> None:
    """The cells scripts/test runs against ``serve --asyncio`` hold every row once and meet what the docstring
    says they do."""
    picked = _asyncio_cells(THREADED_CELLS)
    assert sorted(cell[:3] for cell in picked) == sorted({cell[:3] for cell in THREADED_CELLS})
    assert all(cell.server == "asyncio" and cell._replace(server="threaded") in THREADED_CELLS for cell in picked)

    def missed(*fields: str) -> List[Tuple[str, ...]]:
        def pairs(cells: List[Cell]) -> Set[Tuple[str, ...]]:
            return {(cell.language, *(getattr(cell, field) for field in fields)) for cell in cells}
        return sorted(pairs(THREADED_CELLS) - pairs(picked))

    assert missed("socket", "hello") == []
    assert missed("transport", "socket") == missed("transport", "hello") == missed("protocol", "hello") == []
    assert missed("protocol", "socket") == [("cpp", "compact", "ip-ssl"), ("cpp", "header", "ip"),
                                            ("node", "header", "domain"), ("py", "accel", "ip-ssl")]
