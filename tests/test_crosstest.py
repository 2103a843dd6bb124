"""Apache Thrift's own cross test: its unmodified TestClients (Python, Go, C++, Node.js, Java at 0.17.0, the
compiler's version) against Apache's ``ThriftTest`` service served by thrift-handshake: every plain cell on one
port, every ssl cell on one TLS port, each port detecting the cell's protocol and transport by itself.

The server is ``thrift-handshake serve --handler handler:ThriftTestHandler --no-hello`` (interop/crosstest/handler.py),
started once for plain TCP, once with TLS (Apache's test certificate, test/keys) and once on a Unix domain socket
(``--unix``, the ``domain`` cells). Apache's sources come from Debian's source package ``thrift`` 0.17.0
(interop/crosstest/fetch.sh, pinned SHA-256), and the clients are built by interop/crosstest/build.sh; both cache
under interop/crosstest/apache (gitignored). A cell is one client in one protocol, transport and socket, as
Apache's test/tests.json names them; each is its own test id. The cells run CONCURRENCY at a time (each test
awaits its own): a cell's client mostly waits.

Cells the server does not serve yet are not in this list (they need server work, see docs/interop.md
"Apache's cross test"): the JSON protocol, HTTP, the multiplexed protocols, and every cell with the optional
handshake. These tests never skip: a missing toolchain fails them with what to install.

The session's matrix is written to interop/crosstest/apache/matrix.md (the table of docs/interop.md).
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
from typing import Dict, Iterator, List, NamedTuple, Optional

import pytest

from serving import listening_endpoint
from test_interop import DialectRelay, run, run_to_end

ROOT = Path(__file__).resolve().parent.parent
CROSSTEST = ROOT / "interop" / "crosstest"
CACHE = CROSSTEST / "apache"
TREE = CACHE / "thrift-0.17.0"
MATRIX = CACHE / "matrix.md"

BUILD_TIMEOUT = 300  # a cold Go build cache compiles the standard library; the C++ client compiles ~10 s
CELL_TIMEOUT = 60  # a cell takes 1-2 s (testOneway sleeps 1 s)
CONCURRENCY = 4  # cells run at once: a cell's client mostly waits (testOneway's sleep, a JVM's start)
PY_TESTS = 22  # TestClient.py's test methods, all run in every non-multiplexed cell
NODE_CHECKS = 37  # tape assertions of client.js over TCP


class Cell(NamedTuple):
    """One client, protocol, transport and socket, spelled as Apache's test/tests.json spells them."""

    language: str
    protocol: str
    transport: str
    socket: str  # "ip" or "ip-ssl"

    @property
    def id(self) -> str:
        return f"{self.language}-{self.protocol}-{self.transport}-{self.socket}"


# What each client offers that the server serves today (tests.json's lists, less what needs server work).
PROTOCOLS = {
    "py": ["binary", "accel", "compact", "accelc", "header"],
    "go": ["binary", "compact", "header"],
    "cpp": ["binary", "compact", "header"],
    "node": ["binary", "compact", "header"],
    "java": ["binary", "compact"],
}
# "zlib": TZlibTransport around the socket's byte stream (Java, Go) or a TBufferedTransport (Python, C++);
# "fastframed": tests.json's "framed:fastframed", Java's TFastFramedTransport.
TRANSPORTS = {
    "py": ["buffered", "framed", "zlib"],
    "go": ["buffered", "framed", "zlib"],
    "cpp": ["buffered", "framed", "zlib"],
    "node": ["buffered", "framed"],
    "java": ["buffered", "framed", "fastframed", "zlib"],
}
SOCKETS = {  # "domain": a Unix domain socket (--domain-socket)
    "py": ["ip", "ip-ssl", "domain"],
    "go": ["ip", "ip-ssl"],
    "cpp": ["ip", "ip-ssl", "domain"],
    "node": ["ip", "ip-ssl", "domain"],
    "java": ["ip", "ip-ssl"],
}


def _cells() -> List[Cell]:
    return [Cell(language, protocol, transport, sock) for language, protocols in PROTOCOLS.items()
            for protocol in protocols for transport in TRANSPORTS[language] for sock in SOCKETS[language]]


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
CLIENT_DEFECTS = {Cell("py", "accelc", "zlib", sock): PY_ZLIB_REFILL for sock in SOCKETS["py"]}


CELLS = _cells()
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


def _start(*flags: str) -> Server:
    """``thrift-handshake serve`` with the ThriftTest handler on an ephemeral port (or ``--unix PATH``)."""
    command = [sys.executable, "-m", "thrift_handshake", "serve", "--handler", "handler:ThriftTestHandler",
               "--path", str(CROSSTEST), "--path", str(TREE / "test" / "py" / "gen-py"), "--no-hello",
               "--host", "127.0.0.1", "--port", "0", *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               encoding="utf-8", errors="replace")
    log: List[str] = []
    return Server(process, listening_endpoint(process, log), log)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Dict[str, Server]]:
    """One plain, one TLS (Apache's test/keys/server.crt) and one Unix domain socket server, each on its
    own single port (or path)."""
    built("py")  # the handler imports the Python code generated from Apache's ThriftTest.thrift
    keys = TREE / "test" / "keys"
    started = {"ip": _start()}
    started["ip-ssl"] = _start("--tls-cert", str(keys / "server.crt"), "--tls-key", str(keys / "server.key"))
    socket_dir = tempfile.mkdtemp(prefix="crosstest-")  # short: a socket's path holds 107 bytes at most
    started["domain"] = _start("--unix", os.path.join(socket_dir, "ThriftTest.sock"))
    yield started
    for server in started.values():
        server.process.send_signal(signal.SIGTERM)
    for server in started.values():
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
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


def _shown(cell: Cell, outcome: Optional[Outcome]) -> str:
    if outcome is None:
        return "-"  # a socket this client does not offer (tests.json)
    if outcome.total is None:
        return f"exit {outcome.exit}"
    count = f"{outcome.passed}/{outcome.total}"
    return f"{count} (client defect)" if cell in CLIENT_DEFECTS else count


@pytest.fixture(scope="module", autouse=True)
def matrix() -> Iterator[None]:
    """Writes the session's cross-test matrix (interop/crosstest/apache/matrix.md, the table of docs/interop.md)
    once the cells have run: a row per client, protocol and transport, a column per socket."""
    yield
    if not _results:
        return
    sockets = ["ip", "ip-ssl", "domain"]
    rows: Dict[tuple, Dict[str, Outcome]] = {}
    for cell, outcome in sorted(_results.items(), key=lambda item: CELLS.index(item[0])):
        rows.setdefault(cell[:3], {})[cell.socket] = outcome
    lines = [f"| client | protocol | transport | {' | '.join(sockets)} | seconds ({' / '.join(sockets)}) |",
             "|---|---|---|" + "---|" * (len(sockets) + 1)]
    for (language, protocol, transport), by_socket in rows.items():
        shown = [_shown(Cell(language, protocol, transport, sock), by_socket.get(sock)) for sock in sockets]
        seconds = " / ".join(f"{by_socket[sock].seconds:.1f}" if sock in by_socket else "-" for sock in sockets)
        lines.append(f"| {NAMES[language]} | {protocol} | {transport} | {' | '.join(shown)} | {seconds} |")
    MATRIX.parent.mkdir(parents=True, exist_ok=True)
    MATRIX.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Run(NamedTuple):
    """A cell's outcome, and for a plain header cell the dialect of each connection its client opened."""

    outcome: Outcome
    dialects: Optional[List[str]]


def run_relayed(cell: Cell, server: Server) -> Run:
    """Runs the cell; plain header cells through a relay that names each connection's dialect (ssl ones
    cannot be read, domain ones are not TCP)."""
    relay = DialectRelay(("127.0.0.1", server.port)) if cell.protocol == "header" and cell.socket == "ip" else None
    try:
        outcome = run_cell(cell, server, relay.port if relay else server.port)
    finally:
        if relay:
            relay.close()
    return Run(outcome, relay.dialects if relay else None)


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, servers: Dict[str, Server]) -> Iterator[Dict[Cell, Future]]:
    """The selected cells' clients, CONCURRENCY at a time, started once their clients are built (a client
    that cannot be built fails its cells in the test, with what to install); each test awaits its own."""
    selected = [item.callspec.params["cell"] for item in request.session.items
                if item.module is request.module and "cell" in getattr(getattr(item, "callspec", None), "params", {})]
    for language in dict.fromkeys(cell.language for cell in selected):
        try:
            built(language)
        except pytest.fail.Exception:  # said again by the language's first test
            pass
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="crosstest") as pool:
        yield {cell: pool.submit(run_relayed, cell, servers[cell.socket]) for cell in selected
               if _built.get(cell.language)}


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_apache_test_client_passes(cell: Cell, servers: Dict[str, Server], runs: Dict[Cell, Future]) -> None:
    """Apache's unmodified TestClient of the cell's language runs all its checks against our one port."""
    built(cell.language)
    server = servers[cell.socket]
    outcome, dialects = runs[cell].result()
    _results[cell] = outcome
    sys.stdout.write(outcome.output)  # shown by pytest on failure
    assert server.process.poll() is None, "the server exited:\n" + "".join(server.log)
    if cell in CLIENT_DEFECTS:  # fails in the client, and only as it fails against Apache's own server
        expected = CLIENT_DEFECTS[cell]
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
    if cell.language == "node":
        assert (outcome.passed, outcome.total) == (NODE_CHECKS, NODE_CHECKS), outcome.output[-4000:]
    if dialects is not None:
        if cell.language == "node":  # caveat: Node's 0.17 client never writes THeader's header (docs/interop.md)
            assert set(dialects) == {f"{cell.transport} binary"}, dialects
        else:
            header = {"buffered": "THeader ", "framed": "framed THeader ", "zlib": "zlib: THeader "}[cell.transport]
            assert dialects and all(d.startswith(header) for d in dialects), dialects
