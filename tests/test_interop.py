"""Interop: real Node.js, Go, Java, C++, Rust, Perl, Ruby and C (c_glib) clients run the contract's whole flow
against our Python server.

Each client (interop/node/client.js, interop/go/main.go, interop/java, interop/cpp, interop/rust,
interop/perl/client.pl, interop/ruby/client.rb, interop/c_glib/client.c) prints one line per check, then
"N/M checks passed", and exits non-zero on any mismatch. Each is built the way a user of its language builds
(npm, go build, Maven, CMake with pkg-config, Cargo, gcc with pkg-config; Perl and Ruby load the generated code
from a directory), with the Thrift code generated from
idl/ by the `thrift` compiler at build time (never committed); interop/setup.sh installs the packages.
Builds are cached: ~/.m2 and interop/java/target, interop/rust/target, the C++ build under
~/.cache/thrift-handshake keyed by a hash of its sources. The session ends with a table of checks passed
per language (tests/conftest.py).

These tests never skip: a missing toolchain fails them with what to install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

import pytest

from thrift_handshake import HandshakeServer, ServerConfig, Wire
from thrift_handshake.demo import DemoLimits, demo_server
from thrift_handshake.wire import DialectKind, sniff

ROOT = Path(__file__).resolve().parent.parent
IDL = ROOT / "idl" / "handshake.thrift"
INTEROP = ROOT / "interop"
NODE_DIR = INTEROP / "node"
GO_DIR = INTEROP / "go"
GO_MODULE = "thrift-handshake/interop/go"  # interop/go/go.mod
JAVA_DIR = INTEROP / "java"
CPP_DIR = INTEROP / "cpp"
RUST_DIR = INTEROP / "rust"
PERL_DIR = INTEROP / "perl"
RUBY_DIR = INTEROP / "ruby"
C_GLIB_DIR = INTEROP / "c_glib"

SETUP_TIMEOUT = 300  # npm ci / go mod download / mvn dependency:go-offline / apt-get from a cold cache
GO_BUILD_TIMEOUT = 120  # a cold Go build cache compiles the standard library too
BUILD_TIMEOUT = 300  # mvn package, cmake --build, cargo build from cold caches (about 10 s each when warm)
CLIENT_TIMEOUT = 60

LANGUAGES = ["node", "go", "java", "cpp", "rust", "perl", "ruby", "c_glib"]
# The wires of the matrix besides the default binary+buffered, as (protocol, transport): every client takes
# HANDSHAKE_PROTOCOL and HANDSHAKE_TRANSPORT and builds its stack from its runtime's own classes.
OTHER_WIRES = [("compact", "framed"), ("compact", "buffered"), ("binary", "framed")]
# Perl's Thrift runtime (libthrift-perl 0.17) has no compact protocol: that client refuses it (exit 2).
NO_COMPACT_CLIENTS = ["perl"]
LANGUAGE_WIRES = [(language, protocol, transport) for language in LANGUAGES for protocol, transport in OTHER_WIRES
                  if not (protocol == "compact" and language in NO_COMPACT_CLIENTS)]
# HANDSHAKE_TRANSPORT=header: THeader carrying the protocol HANDSHAKE_PROTOCOL names, in the clients whose
# runtime has it. Java's libthrift 0.17, Rust's thrift crate 0.17, Perl's, Ruby's and c_glib's runtimes have none:
# those clients refuse it (exit 2).
HEADER_CLIENTS = ["go", "node", "cpp"]
NO_HEADER_CLIENTS = ["java", "rust", "perl", "ruby", "c_glib"]
LANGUAGE_NAMES = {"node": "Node.js", "go": "Go", "java": "Java", "cpp": "C++", "rust": "Rust", "perl": "Perl",
                  "ruby": "Ruby", "c_glib": "C/c_glib"}
# The least number of checks a whole run prints: the clients of the first five languages check every echo_types
# field on its own (64-82 checks); the Perl, Ruby and c_glib ones check fewer fields (59, 59 and 66 checks).
MIN_CHECKS = {"perl": 59, "ruby": 59, "c_glib": 66}
CPP_PACKAGES = "libthrift-dev libboost-dev libssl-dev pkg-config g++ cmake"

INSTALL_HINTS = {
    "thrift": "the Thrift compiler 0.17 (apt-get install thrift-compiler)",
    "node": "Node.js >= 18 with npm (apt-get install nodejs npm, or https://nodejs.org)",
    "npm": "npm (apt-get install npm)",
    "go": "Go >= 1.21 (https://go.dev/dl/, or apt-get install golang-go)",
    "java": "a JDK >= 11 (apt-get install default-jdk-headless)",
    "mvn": "Maven (apt-get install maven)",
    "cmake": f"cmake, for the C++ client (as root: apt-get install {CPP_PACKAGES})",
    "g++": f"g++, for the C++ client (as root: apt-get install {CPP_PACKAGES})",
    "pkg-config": f"pkg-config, for the C++ client (as root: apt-get install {CPP_PACKAGES})",
    "cargo": "Rust >= 1.78 with cargo (https://rustup.rs)",
    "perl": "Perl with Debian's libthrift-perl (as root: interop/setup.sh perl)",
    "ruby": "Ruby with Debian's ruby-thrift (as root: interop/setup.sh ruby)",
    "gcc": "gcc with Debian's libthrift-c-glib-dev (as root: interop/setup.sh c_glib)",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the interop tests need {INSTALL_HINTS[name]}", pytrace=False)
    return path


def run_to_end(cmd: List[str], what: str, timeout: float, cwd: Optional[Path] = None,
               env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs a command to its end (stderr into stdout); a timeout fails the test with the command's output."""
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired as error:
        output = error.stdout.decode("utf-8", "replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        pytest.fail(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}\n{output}", pytrace=False)


def run(cmd: List[str], what: str, timeout: float, cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs a command; a non-zero exit or a timeout fails the test with the command's output."""
    result = run_to_end(cmd, what, timeout, cwd, env)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout}", pytrace=False)
    return result


def interop_setup(part: str, tools: List[str]) -> None:
    """interop/setup.sh PART (npm ci, go mod download, mvn dependency:go-offline, the C++ packages as root,
    cargo fetch); fast when already done. A missing tool fails with what to install."""
    require_tool("thrift")
    installs = part in ("cpp", "perl", "ruby", "c_glib")  # setup.sh installs these toolchains (as root) itself
    if installs:
        run(["sh", str(INTEROP / "setup.sh"), part], f"interop/setup.sh {part}", SETUP_TIMEOUT)
    for tool in tools:
        require_tool(tool)
    if not installs:
        run(["sh", str(INTEROP / "setup.sh"), part], f"interop/setup.sh {part}", SETUP_TIMEOUT)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "thrift-handshake"


def inputs_hash(files: List[Path], tool_commands: List[List[str]]) -> str:
    """SHA-256 of a build's inputs: its files, the IDL, and what the tools say their versions are."""
    digest = hashlib.sha256()
    for path in [*files, *sorted((ROOT / "idl").glob("*.thrift"))]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for command in tool_commands:
        try:
            digest.update(subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         timeout=60).stdout)
        except (OSError, subprocess.TimeoutExpired) as error:
            digest.update(str(error).encode())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The command that runs the Node client, with JS code generated into a temp dir."""
    interop_setup("node", ["node", "npm"])
    gen = tmp_path_factory.mktemp("gen-js")
    run(["thrift", "-r", "--gen", "js:node,es6", "-out", str(gen), str(IDL)], "thrift --gen js:node,es6", 60)
    return [require_tool("node"), str(NODE_DIR / "client.js"), str(gen)]


def build_go(source: Path, module: Path, binary_name: str, go_module: str = GO_MODULE) -> Path:
    """Builds the Go program in ``source`` (module path ``go_module``) from a copy in ``module``, its
    Thrift code generated into gen/."""
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy2(source / name, module / name)
    gen = module / "gen"
    gen.mkdir()
    run(["thrift", "-r", "--gen", f"go:package_prefix={go_module}/gen/", "-out", str(gen), str(IDL)],
        "thrift --gen go", 60)
    # The 0.17 generator also writes a sample `-remote` command (package main): not ours to build.
    for remote in gen.glob("*/*-remote"):
        shutil.rmtree(remote)
    binary = module / binary_name
    env = dict(os.environ, GOFLAGS=(os.environ.get("GOFLAGS", "") + " -mod=readonly").strip())
    # -trimpath keeps the build cache valid across temp dirs (no absolute paths in the objects).
    run(["nice", require_tool("go"), "build", "-trimpath", "-o", str(binary), "."], f"go build of {source}",
        GO_BUILD_TIMEOUT, cwd=module, env=env)
    return binary


def build_cmake(source: Path, main_file: str, cache_name: str, binary_name: str) -> Path:
    """Builds the CMake project in ``source`` into ~/.cache/thrift-handshake/<cache_name>/<hash of its
    inputs>: rebuilt only when the sources, the IDL or the toolchain change."""
    inputs = inputs_hash([source / "CMakeLists.txt", source / main_file],
                         [["thrift", "--version"], ["pkg-config", "--modversion", "thrift"], ["g++", "--version"],
                          ["cmake", "--version"]])
    builds = cache_dir() / cache_name
    build = builds / inputs[:16]
    binary = build / binary_name
    if not binary.exists():
        builds.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="building-", dir=builds))  # concurrent runs never share one
        try:
            run(["cmake", "-S", str(source), "-B", str(work), "-DCMAKE_BUILD_TYPE=Release"],
                f"cmake configure of {source}", BUILD_TIMEOUT)
            run(["nice", "cmake", "--build", str(work), "--", f"-j{os.cpu_count() or 2}"],
                f"cmake --build of {source}", BUILD_TIMEOUT)
            try:
                work.rename(build)  # only a finished build is ever reused
            except OSError:  # another run finished the same build first
                pass
        finally:
            shutil.rmtree(work, ignore_errors=True)
        finished = sorted((d for d in builds.iterdir() if d.is_dir() and not d.name.startswith("building-")),
                          key=lambda d: d.stat().st_mtime, reverse=True)
        for old in finished[3:]:  # keep the 3 most recent builds (other checkouts may use other sources)
            shutil.rmtree(old, ignore_errors=True)
    return binary


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Go client, built from a temp copy of interop/go with its Go code generated into gen/."""
    interop_setup("go", ["go"])
    return [str(build_go(GO_DIR, tmp_path_factory.mktemp("go-client"), "interop-client"))]


@pytest.fixture(scope="session")
def java_client() -> List[str]:
    """The Java client: `mvn package` in interop/java (code generated into target/, ~/.m2 cached)."""
    interop_setup("java", ["java", "mvn"])
    jar = JAVA_DIR / "target" / "thrift-handshake-interop.jar"
    stamp = JAVA_DIR / "target" / ".inputs-sha256"
    inputs = inputs_hash([JAVA_DIR / "pom.xml", *sorted((JAVA_DIR / "src").rglob("*.java"))],
                         [["thrift", "--version"], ["java", "-version"], ["mvn", "--version"]])
    # Maven regenerates and recompiles everything on each `package`: skipped while nothing changed.
    if not (jar.exists() and stamp.exists() and stamp.read_text() == inputs):
        run([require_tool("mvn"), "-q", "-B", "-Dstyle.color=never", "package"], "mvn package in interop/java",
            BUILD_TIMEOUT, cwd=JAVA_DIR)
        stamp.write_text(inputs)
    return [require_tool("java"), "-jar", str(jar)]


@pytest.fixture(scope="session")
def cpp_client() -> List[str]:
    """The C++ client, built with CMake into ~/.cache/thrift-handshake/interop-cpp/<hash of its inputs>:
    rebuilt only when the sources, the IDL or the toolchain change."""
    interop_setup("cpp", ["cmake", "g++", "pkg-config"])
    return [str(build_cmake(CPP_DIR, "client.cpp", "interop-cpp", "thrift-handshake-interop"))]


@pytest.fixture(scope="session")
def rust_client() -> List[str]:
    """The Rust client: `cargo build --locked` in interop/rust (target dir interop/rust/target, kept)."""
    interop_setup("rust", ["cargo"])
    target = RUST_DIR / "target"
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    run([require_tool("cargo"), "build", "--locked", "-q"], "cargo build in interop/rust", BUILD_TIMEOUT,
        cwd=RUST_DIR, env=env)
    return [str(target / "debug" / "thrift-handshake-interop")]


@pytest.fixture(scope="session")
def perl_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Perl client, with the Perl code generated into a temp dir (Debian's libthrift-perl)."""
    interop_setup("perl", ["perl"])
    gen = tmp_path_factory.mktemp("gen-perl")
    run(["thrift", "-r", "--gen", "perl", "-out", str(gen), str(IDL)], "thrift --gen perl", 60)
    return [require_tool("perl"), "-I", str(gen), str(PERL_DIR / "client.pl")]


@pytest.fixture(scope="session")
def ruby_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Ruby client, with the Ruby code generated into a temp dir (Debian's ruby-thrift)."""
    interop_setup("ruby", ["ruby"])
    gen = tmp_path_factory.mktemp("gen-rb")
    run(["thrift", "-r", "--gen", "rb", "-out", str(gen), str(IDL)], "thrift --gen rb", 60)
    return [require_tool("ruby"), str(RUBY_DIR / "client.rb"), str(gen)]


@pytest.fixture(scope="session")
def c_glib_client() -> List[str]:
    """The C client, built with gcc and pkg-config (Debian's libthrift-c-glib-dev) into
    ~/.cache/thrift-handshake/interop-c_glib/<hash of its inputs>: rebuilt only when they change."""
    interop_setup("c_glib", ["gcc", "pkg-config"])
    source = C_GLIB_DIR / "client.c"
    inputs = inputs_hash([source], [["thrift", "--version"], ["gcc", "--version"],
                                    ["pkg-config", "--modversion", "thrift_c_glib", "glib-2.0"]])
    builds = cache_dir() / "interop-c_glib"
    binary = builds / inputs[:16] / "thrift-handshake-interop"
    if not binary.exists():
        builds.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="building-", dir=builds))  # concurrent runs never share one
        try:
            run(["thrift", "-r", "--gen", "c_glib", "-out", str(work), str(IDL)], "thrift --gen c_glib", 60)
            version = run(["pkg-config", "--modversion", "thrift_c_glib"], "pkg-config", 60).stdout.strip()
            flags = run(["pkg-config", "--cflags", "--libs", "thrift_c_glib", "glib-2.0", "gobject-2.0"],
                        "pkg-config", 60).stdout.split()
            run(["nice", "gcc", "-O1", "-Wall", f'-DTHRIFT_C_GLIB_VERSION="{version}"', "-I", str(work), "-o",
                 str(work / binary.name), str(source), *sorted(str(c) for c in work.glob("*.c")), *flags],
                "gcc of interop/c_glib/client.c", BUILD_TIMEOUT)
            try:
                work.rename(binary.parent)  # only a finished build is ever reused
            except OSError:  # another run finished the same build first
                pass
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return [str(binary)]


@pytest.fixture
def server() -> Iterator[HandshakeServer]:
    server = demo_server(ServerConfig(host="127.0.0.1", port=0, grace=2.0)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_queue_server() -> Iterator[HandshakeServer]:
    """Room for 2 unfinished submits (1 worker + 1 queued): every client gets Overloaded here."""
    server = demo_server(ServerConfig(host="127.0.0.1", port=0, grace=2.0),
                         DemoLimits(submit_workers=1, submit_queue=1)).start()
    try:
        yield server
    finally:
        server.stop(grace=0.1)


class ClientWire(NamedTuple):
    """What a client is told to speak: HANDSHAKE_PROTOCOL and HANDSHAKE_TRANSPORT ("header" included, which
    the Python client's Wire does not have)."""

    protocol: str = "binary"
    transport: str = "buffered"


def run_client(command: List[str], host: str, port: int, overload_port: Optional[int] = None,
               wire: Optional[ClientWire] = None) -> subprocess.CompletedProcess:
    """Runs a client; `wire` sets HANDSHAKE_PROTOCOL and HANDSHAKE_TRANSPORT (unset: the default binary+buffered)."""
    env = dict(os.environ, HANDSHAKE_HOST=host, HANDSHAKE_PORT=str(port))
    for name in ("HANDSHAKE_OVERLOAD_PORT", "HANDSHAKE_PROTOCOL", "HANDSHAKE_TRANSPORT"):
        env.pop(name, None)
    if overload_port is not None:
        env["HANDSHAKE_OVERLOAD_PORT"] = str(overload_port)
    if wire is not None:
        env.update(HANDSHAKE_PROTOCOL=wire.protocol, HANDSHAKE_TRANSPORT=wire.transport)
    return run_to_end(command, command[0], CLIENT_TIMEOUT, env=env)


class DialectRelay:
    """A TCP relay in front of a server that names what each connection's first bytes are written in
    (``wire.sniff``; for THeader also the protocol it carries; for zlib what it inflates to): what a
    client really puts on the wire."""

    # THeader: length (4), magic (2), flags (2), seqid (4), header words (2), then the protocol id (0, 2)
    HEADER_PROTOCOL_AT = 14
    HEADER_PROTOCOLS = {0: "binary", 2: "compact"}
    KEEP = 256  # of each connection's first bytes (enough for what zlib inflates to the above)

    def __init__(self, upstream: tuple) -> None:
        self.upstream = upstream
        self.firsts: List[bytearray] = []
        self.sockets: List[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def dialects(self) -> List[str]:
        """The dialect of each connection that sent enough to tell it, in the order they connected."""
        return [self._name(bytes(first)) for first in self.firsts if len(first) > self.HEADER_PROTOCOL_AT]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            self.sockets += [client, server]
            first = bytearray()
            self.firsts.append(first)
            threading.Thread(target=self._pump, args=(client, server, first), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, first: Optional[bytearray]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if first is not None and len(first) < self.KEEP:
                    first += data[:self.KEEP - len(first)]
                target.sendall(data)
        except OSError:
            pass
        try:
            target.shutdown(socket.SHUT_WR)  # the other side sees end-of-file, as it would without the relay
        except OSError:
            pass

    def _name(self, first: bytes) -> str:
        dialect = sniff(first)
        kind = dialect and dialect.kind
        if kind is DialectKind.HEADER:
            return f"THeader {self.HEADER_PROTOCOLS.get(first[self.HEADER_PROTOCOL_AT], 'protocol?')}"
        if kind is DialectKind.FRAMED_HEADER:  # the same, 4 bytes on: after the framed transport's length
            return f"framed THeader {self.HEADER_PROTOCOLS.get(first[self.HEADER_PROTOCOL_AT + 4], 'protocol?')}"
        if kind is DialectKind.ZLIB:
            return f"zlib: {self._name(zlib.decompressobj().decompress(first))}"
        return str(dialect)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


SUMMARY = re.compile(r"^(\d+)/(\d+) checks passed$", re.MULTILINE)


def assert_flow_passes(command: List[str], address: tuple, language: str,
                       record_property: Callable[[str, object], None],
                       small_queue_server: HandshakeServer, wire: Optional[ClientWire] = None) -> None:
    """The client runs the whole contract against the server at ``address`` (in ``wire``; None: the
    client's default) and meets Overloaded on ``small_queue_server``; one row of the matrix is recorded."""
    result = run_client(command, *address, small_queue_server.port, wire)
    wire = wire or ClientWire()
    sys.stdout.write(result.stdout)  # shown by pytest on failure (and with -s)
    lines = result.stdout.splitlines()
    passed = [line for line in lines if line.startswith("ok   ")]
    failed = [line for line in lines if line.startswith("FAIL")]
    summary = SUMMARY.findall(result.stdout)
    declared = (int(summary[-1][0]), int(summary[-1][1])) if summary else None
    # For the table at the end of the session (tests/conftest.py).
    record_property("interop", {"language": LANGUAGE_NAMES[language], "wire": f"{wire.protocol}+{wire.transport}",
                                "passed": len(passed),
                                "checks": len(passed) + len(failed), "exit": result.returncode,
                                "version": lines[0] if lines else ""})
    assert result.returncode == 0 and not failed, (
        f"the {LANGUAGE_NAMES[language]} client found contract mismatches (exit {result.returncode}):\n"
        + "\n".join(failed or ["(no FAIL line)"]) + "\n(full output under 'Captured stdout call')")
    assert declared is not None, f"no 'N/M checks passed' line:\n{result.stdout}"
    assert lines[0].endswith(f", wire {wire.protocol}+{wire.transport}"), (
        f"the client does not say it speaks {wire.protocol}+{wire.transport}: {lines[0]!r}")
    assert declared == (len(passed), len(passed) + len(failed)), (
        f"the client declares {declared[0]}/{declared[1]} checks passed but printed {len(passed)} ok and "
        f"{len(failed)} FAIL lines")
    least = MIN_CHECKS.get(language, 60)
    assert len(passed) >= least, f"only {len(passed)} checks ran: the flow stopped early?\n{result.stdout}"
    assert "ok   submit beyond the queue -> Overloaded" in result.stdout, result.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_client_runs_the_whole_flow(language: str, server: HandshakeServer, small_queue_server: HandshakeServer,
                                    request: pytest.FixtureRequest,
                                    record_property: Callable[[str, object], None]) -> None:
    """The client of each language runs the whole contract against a fresh Python server, and meets
    Overloaded on a second server with a tiny submit queue."""
    command = request.getfixturevalue(f"{language}_client")
    assert_flow_passes(command, server.address, language, record_property, small_queue_server)


@pytest.mark.parametrize("language, protocol, transport", LANGUAGE_WIRES)
def test_client_runs_the_whole_flow_on_another_wire(language: str, protocol: str, transport: str,
                                                    server: HandshakeServer, small_queue_server: HandshakeServer,
                                                    request: pytest.FixtureRequest,
                                                    record_property: Callable[[str, object], None]) -> None:
    """The matrix beyond binary+buffered: each client runs the whole contract in another protocol and
    transport against the one-port server. Then, so that a client ignoring HANDSHAKE_PROTOCOL/HANDSHAKE_TRANSPORT
    cannot pass, the whole flow again against a server that serves only that wire (detect_wire=False)."""
    command = request.getfixturevalue(f"{language}_client")
    wire = ClientWire(protocol, transport)
    assert_flow_passes(command, server.address, language, record_property, small_queue_server, wire)
    only = ServerConfig(host="127.0.0.1", port=0, wire=Wire(protocol, transport), detect_wire=False, grace=2.0)
    with demo_server(only) as strict:
        result = run_client(command, *strict.address, wire=wire)
    assert result.returncode == 0 and "FAIL" not in result.stdout, (
        f"the {LANGUAGE_NAMES[language]} client fails against a server serving only {protocol}+{transport}: "
        f"does it speak it?\n{result.stdout}")


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("language", HEADER_CLIENTS)
def test_client_runs_the_whole_flow_over_theader(language: str, protocol: str, server: HandshakeServer,
                                                 small_queue_server: HandshakeServer, request: pytest.FixtureRequest,
                                                 record_property: Callable[[str, object], None]) -> None:
    """HANDSHAKE_TRANSPORT=header: the client runs the whole contract in THeader (carrying binary or compact)
    against the one-port server, through a relay that checks every connection really is THeader with that
    protocol inside."""
    command = request.getfixturevalue(f"{language}_client")
    relay = DialectRelay(server.address)
    try:
        assert_flow_passes(command, ("127.0.0.1", relay.port), language, record_property, small_queue_server,
                           ClientWire(protocol, "header"))
    finally:
        relay.close()
    assert len(relay.dialects) >= 2 and set(relay.dialects) == {f"THeader {protocol}"}, relay.dialects


@pytest.mark.parametrize("language", NO_HEADER_CLIENTS)
def test_a_client_without_theader_says_so(language: str, request: pytest.FixtureRequest) -> None:
    """Java's libthrift 0.17, Rust's thrift crate 0.17, and the Perl, Ruby and c_glib runtimes have no THeader:
    asked for it, the client says so and exits 2 without connecting (the port is never opened)."""
    command = request.getfixturevalue(f"{language}_client")
    result = run_client(command, "127.0.0.1", 9, wire=ClientWire("binary", "header"))
    assert result.returncode == 2 and re.search(r"has no THeader", result.stdout), result.stdout


@pytest.mark.parametrize("language", NO_COMPACT_CLIENTS)
def test_a_client_without_compact_says_so(language: str, request: pytest.FixtureRequest) -> None:
    """Perl's Thrift runtime (0.17) has no compact protocol: asked for it, the client says so and exits 2."""
    command = request.getfixturevalue(f"{language}_client")
    result = run_client(command, "127.0.0.1", 9, wire=ClientWire("compact", "buffered"))
    assert result.returncode == 2 and "has no compact protocol" in result.stdout, result.stdout


def test_perl_code_of_both_idl_files_loads(tmp_path: Path) -> None:
    """`thrift -r --gen perl idl/handshake.thrift` writes each IDL file's types into its own Perl namespace
    (both once shared ThriftHandshake, and session.thrift's Types.pm overwrote handshake.thrift's)."""
    interop_setup("perl", ["perl"])
    run(["thrift", "-r", "--gen", "perl", "-out", str(tmp_path), str(IDL)], "thrift --gen perl", 60)
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.pm"))
    assert len(written) == len(set(written)) and "ThriftHandshake/Session/Types.pm" in written, written
    probe = ("use ThriftHandshake::HandshakeService; "
             "print ref(ThriftHandshake::Request->new()), ' ', ref(ThriftHandshake::Session::ClientHello->new())")
    result = run([require_tool("perl"), "-I", str(tmp_path), "-e", probe], "perl loading the generated code", 60)
    assert result.stdout.endswith("ThriftHandshake::Request ThriftHandshake::Session::ClientHello"), result.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_clients_fail_on_a_mismatch(language: str, request: pytest.FixtureRequest) -> None:
    """A server that only speaks version 1 breaks the flow's expectations: each client must exit non-zero."""
    command = request.getfixturevalue(f"{language}_client")
    with demo_server(ServerConfig(host="127.0.0.1", port=0, versions=(1, 1), grace=2.0)) as server:
        result = run_client(command, *server.address)
    assert result.returncode != 0, f"the {language} client passed against a version-1-only server:\n{result.stdout}"
    assert "FAIL hello 1..2 -> version 2" in result.stdout, result.stdout


@pytest.mark.parametrize("protocol, transport", [("compact", "framed"), ("compact", "buffered"), ("binary", "framed")])
def test_one_port_serves_the_go_client_in_every_dialect(go_client: List[str], server: HandshakeServer,
                                                        protocol: str, transport: str) -> None:
    """The same server port runs the whole contract for a Go client speaking another protocol or transport."""
    result = run_client(go_client + ["-protocol", protocol, "-transport", transport], *server.address)
    assert result.returncode == 0 and "FAIL" not in result.stdout, result.stdout
    assert SUMMARY.search(result.stdout), result.stdout


def test_a_go_client_of_another_dialect_is_told_what_the_server_speaks(go_client: List[str]) -> None:
    """From another language too: a server of one dialect answers a compact+framed client in its own
    framing, naming both sides."""
    config = ServerConfig(host="127.0.0.1", port=0, detect_wire=False, grace=2.0)
    with demo_server(config) as server:
        result = run_client(go_client + ["-protocol", "compact", "-transport", "framed"], *server.address)
    assert result.returncode != 0
    assert "the client speaks framed compact; this server speaks Thrift buffered binary" in result.stdout, result.stdout
