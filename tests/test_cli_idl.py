"""``thrift-handshake call --idl``: any IDL, compiled by the real `thrift`, against real servers.

Servers: the project's HandshakeServer (idl/handshake.thrift), and Apache Thrift's stock TThreadedServer
(wired as in Thrift's tutorial) hosting a plain service that knows nothing of hello. Arguments that the
IDL refuses must put nothing on the wire: a bare listening socket proves that no connection was made.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
from thrift.server.TServer import TThreadedServer
from thrift.transport import TSocket, TTransport

from thrift_handshake import idlcache

ROOT = Path(__file__).resolve().parent.parent
HANDSHAKE_IDL = ROOT / "idl" / "handshake.thrift"
KVSTORE_IDL = ROOT / "examples" / "kvstore" / "kvstore.thrift"

I64_MAX = 2**63 - 1
BEYOND_DOUBLE = 2**53 + 1

PLAIN_IDL = """
namespace py cli_idl_plain

enum Level { LOW = 1, HIGH = 2, TOP = 2147483647 }

union Key {
  1: i64 id,
  2: string name,
}

typedef Level Grade

struct Item {
  1: required Key key,
  2: Grade level,
  3: binary blob,
  4: i64 big,
  5: optional list<Level> history,
  6: optional map<Level, string> notes,
}

exception Missing {
  1: string what,
}

/** Not the default: a service before the last one. */
service Other {
  void nothing(),
}

service Store {
  Item echo(1: Item item),
  Item find(1: Key key) throws (1: Missing missing),
  oneway void poke(1: string note),
  list<Item> all(),
}
"""

@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for this module's calls (a fresh one: the first call compiles for real)."""
    return tmp_path_factory.mktemp("xdg-cache")


def run_cli(*args: str, cache: Path, env: "dict | None" = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    environment.pop("THRIFT_HANDSHAKE_CACHE", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "--log-level", "WARNING", *args],
                          capture_output=True, text=True, timeout=timeout, env=environment)


def call_ok(*args: str, cache: Path):
    done = run_cli("call", *args, cache=cache)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def plain_idl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "store.thrift"
    path.write_text(PLAIN_IDL, encoding="utf-8")
    return path


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A listening socket nobody accepts from: a client's connect would still complete (backlog)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def assert_nothing_connected(listener: socket.socket) -> None:
    """After the CLI has exited: a loopback connect() it made is complete, so it waits in the backlog."""
    listener.settimeout(0.1)
    try:
        peer, _ = listener.accept()
    except socket.timeout:
        return
    with peer:
        peer.settimeout(0.3)
        try:
            data = peer.recv(65536)
        except socket.timeout:
            data = b""
    pytest.fail(f"a connection was made for arguments the IDL refuses (bytes sent: {data!r})")


# ---------------------------------------------------------------------------------------------
# The stock server hosting a plain service
# ---------------------------------------------------------------------------------------------


class StoreHandler:
    def __init__(self, types) -> None:
        self.types = types
        self.pokes: List[str] = []
        self.poked = threading.Event()

    def echo(self, item):
        return item

    def find(self, key):
        raise self.types.Missing(what=f"no item {key.name or key.id}")

    def poke(self, note):
        self.pokes.append(note)
        self.poked.set()

    def all(self):
        return []

    def nothing(self):
        return None


class _StopServing(BaseException):
    """Ends TThreadedServer.serve(), which catches every Exception."""


@pytest.fixture(scope="module")
def stock_server(plain_idl: Path, cache_home: Path):
    """Apache Thrift's TThreadedServer as in its tutorial, serving Store on 127.0.0.1, port 0."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    try:
        idl = idlcache.load_idl(plain_idl)
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
    module = idl.service_module(idl.service("Store"))
    handler = StoreHandler(__import__("cli_idl_plain.ttypes", fromlist=["ttypes"]))
    transport = TSocket.TServerSocket(host="127.0.0.1", port=0)
    server = TThreadedServer(module.Processor(handler), transport, TTransport.TBufferedTransportFactory(),
                             TBinaryProtocolAcceleratedFactory(), daemon=True)
    transport.listen()
    port = transport.handle.getsockname()[1]
    transport.listen = lambda: None  # already listening; serve() calls listen() again
    # TThreadedServer.serve() has no stop: it logs every Exception from accept() and loops, so accept()
    # raises a BaseException once stopping is set; a wake-up connection unblocks it.
    stopping = threading.Event()
    real_accept = transport.accept

    def accept():
        client = real_accept()
        if stopping.is_set():
            client.close()
            raise _StopServing
        return client

    def serve() -> None:
        try:
            server.serve()
        except _StopServing:
            pass

    transport.accept = accept
    thread = threading.Thread(target=serve, name="stock-TThreadedServer", daemon=True)
    thread.start()
    yield port, handler
    stopping.set()
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    thread.join(5)
    transport.close()
    assert not thread.is_alive(), "the stock server's accept loop did not stop"


# ---------------------------------------------------------------------------------------------
# --list: no connection needed
# ---------------------------------------------------------------------------------------------


def test_list_prints_signatures_with_inherited_methods(cache_home):
    done = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--list", "--port", "1", cache=cache_home)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "service HandshakeService extends session.SessionService   (default)" in out
    assert "  AllTypes echo_types(1: AllTypes value) throws (1: session.HandshakeRequired handshake_required)" in out
    assert "  oneway void notify(1: Event event)" in out
    assert "# from session.SessionService" in out
    assert ("session.ServerHello hello(1: session.ClientHello hello) throws (1: session.HandshakeRejected rejected, "
            "2: session.Draining draining)") in out


def test_list_shows_every_service_and_the_default_is_the_last(plain_idl, cache_home):
    done = run_cli("call", "--idl", str(plain_idl), "--list", cache=cache_home)
    assert done.returncode == 0, done.stderr
    assert "service Other\n  void nothing()\n" in done.stdout
    assert "service Store   (default)\n" in done.stdout
    assert "  Item find(1: Key key) throws (1: Missing missing)" in done.stdout
    assert "  list<Item> all()" in done.stdout
    chosen = run_cli("call", "--idl", str(plain_idl), "--service", "Other", "--list", cache=cache_home)
    assert "service Other   (default)" in chosen.stdout


def test_list_of_the_example_with_an_include(cache_home):
    done = run_cli("call", "--idl", str(KVSTORE_IDL), "--list", cache=cache_home)
    assert done.returncode == 0, done.stderr
    assert "service KeyValue extends session.SessionService   (default)" in done.stdout
    assert "  oneway void touch(1: string key, 2: i64 ttl_ms)" in done.stdout
    assert "  map<string, i64> versions()" in done.stdout


# ---------------------------------------------------------------------------------------------
# HandshakeService through its IDL
# ---------------------------------------------------------------------------------------------


def test_handshake_service_edge_values_round_trip(server, cache_home):
    value = {
        "id": "边界",
        "color": "BLUE",  # by name
        "palette": {"1": "Color.GREEN", "2": 3, "3": "MAX_COLOR"},  # qualified name, number, INT32_MAX
        "shape": {"polygon": [{"x": 1, "y": 2, "label": "p"}]},  # a union member
        "data": "AAEC/w==",  # base64
        "big_number": I64_MAX,
        "maybe_number": BEYOND_DOUBLE,
        "blobs": ["", "aGk="],
    }
    echoed = call_ok("--idl", str(HANDSHAKE_IDL), "--port", str(server.port), "echo_types", json.dumps(value),
                     cache=cache_home)
    # enums come back by name (the IDL says which i32 is which enum)
    assert echoed["color"] == "BLUE" and echoed["palette"] == {"1": "GREEN", "2": "BLUE", "3": "MAX_COLOR"}
    assert echoed["shape"] == {"polygon": [{"x": 1, "y": 2, "label": "p"}]}
    assert echoed["data"] == "AAEC/w==" and echoed["blobs"] == ["", "aGk="]
    assert echoed["big_number"] == I64_MAX and echoed["maybe_number"] == BEYOND_DOUBLE  # exact, not doubles
    # other union members
    for shape in ({"id": -I64_MAX}, {"name": "圆"}, {"point": {"x": -1, "y": 0}}):
        echoed = call_ok("--idl", str(HANDSHAKE_IDL), "--port", str(server.port), "echo_types",
                         json.dumps({"id": "u", "shape": shape}), cache=cache_home)
        assert echoed["shape"] == shape


def test_handshake_service_trace_and_declared_exception(server, cache_home):
    done = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--port", str(server.port), "--trace", "echo", '"hi"',
                   cache=cache_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '"hi"\n', "stdout is the result only: the timeline goes to stderr"
    for phase in ("connect", "handshake", "hello", "request", "echo", "disconnect", "goodbye"):
        assert phase in done.stderr
    failed = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--port", str(server.port), "get_result", '"t-1"', "0",
                     cache=cache_home)
    assert failed.returncode == 1
    assert 'UnknownTicket: {"ticket": "t-1"}' in failed.stderr


@pytest.mark.parametrize("argument, message", [
    ({"color": 1}, "required field id is unset"),  # a missing required field
    ({"id": "x", "color": "PURPLE"}, "'value'.color: expected enum Color (one of UNKNOWN_COLOR = -1, RED = 1"),
    ({"id": "x", "color": 4}, "'value'.color: expected enum Color"),  # a number that is no member
    ({"id": "x", "shape": {"name": "a", "id": 1}}, "Shape is a union: set exactly one of point, name, id, polygon"),
    ({"id": "x", "shape": {}}, "Shape is a union"),
    ({"id": "x", "data": "not base64!"}, "'value'.data: not valid base64"),
    ({"id": "x", "big_number": 2**63}, "'value'.big_number: expected i64"),
    ({"id": "x", "small": "1"}, "'value'.small: expected i8"),
])
def test_refused_arguments_name_the_field_and_send_nothing(silent_port, cache_home, argument, message):
    port = str(silent_port.getsockname()[1])
    done = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--port", port, "echo_types", json.dumps(argument),
                   cache=cache_home)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert_nothing_connected(silent_port)


def test_a_union_of_any_idl_is_checked(silent_port, plain_idl, cache_home):
    """Not a hard-coded list: the plain IDL's own union Key, inside a required field."""
    port = str(silent_port.getsockname()[1])
    two = run_cli("call", "--idl", str(plain_idl), "--no-hello", "--port", port, "find", '{"id": 1, "name": "a"}',
                  cache=cache_home)
    assert two.returncode == 2 and "Key is a union: set exactly one of id, name (got id, name)" in two.stderr
    missing = run_cli("call", "--idl", str(plain_idl), "--no-hello", "--port", port, "echo", '{"level": "LOW"}',
                      cache=cache_home)
    assert missing.returncode == 2 and "Item: required field key is unset" in missing.stderr
    typedef_enum = run_cli("call", "--idl", str(plain_idl), "--no-hello", "--port", port, "echo",
                           '{"key": {"id": 1}, "level": "MEDIUM"}', cache=cache_home)
    assert typedef_enum.returncode == 2 and "expected enum Level (one of LOW = 1, HIGH = 2" in typedef_enum.stderr
    assert_nothing_connected(silent_port)


# ---------------------------------------------------------------------------------------------
# A plain service on Apache Thrift's stock TThreadedServer
# ---------------------------------------------------------------------------------------------


def test_plain_service_on_a_stock_threaded_server(stock_server, plain_idl, cache_home):
    port, handler = stock_server
    common = ("--idl", str(plain_idl), "--no-hello", "--port", str(port))
    item = {"key": {"name": "k"}, "level": "HIGH", "blob": "/wA=", "big": BEYOND_DOUBLE,
            "history": ["LOW", 2, "TOP"], "notes": {"LOW": "a", "2": "b"}}
    echoed = call_ok(*common, "echo", json.dumps(item), cache=cache_home)
    assert echoed == {"key": {"name": "k"}, "level": "HIGH", "blob": "/wA=", "big": BEYOND_DOUBLE,
                      "history": ["LOW", "HIGH", "TOP"], "notes": {"LOW": "a", "HIGH": "b"}}
    echoed = call_ok(*common, "echo", json.dumps({"key": {"id": I64_MAX}}), cache=cache_home)
    assert echoed == {"key": {"id": I64_MAX}}
    failed = run_cli("call", *common, "find", '{"id": 7}', cache=cache_home)
    assert failed.returncode == 1 and 'Missing: {"what": "no item 7"}' in failed.stderr
    assert call_ok(*common, "all", cache=cache_home) == []
    assert call_ok(*common, "poke", '"fire and forget"', cache=cache_home) is None
    assert handler.poked.wait(5) and handler.pokes == ["fire and forget"]


def test_a_service_without_hello_needs_no_hello(stock_server, plain_idl, cache_home):
    port, _ = stock_server
    done = run_cli("call", "--idl", str(plain_idl), "--port", str(port), "all", cache=cache_home)
    assert done.returncode == 2
    assert "service Store has no hello()" in done.stderr and "--no-hello" in done.stderr


# ---------------------------------------------------------------------------------------------
# Errors and the cache
# ---------------------------------------------------------------------------------------------


def test_unknown_service_and_method_list_the_known_ones(plain_idl, cache_home):
    service = run_cli("call", "--idl", str(plain_idl), "--service", "Nope", "all", cache=cache_home)
    assert service.returncode == 2 and "unknown service 'Nope'" in service.stderr
    assert "its services: Other, Store" in service.stderr
    method = run_cli("call", "--idl", str(plain_idl), "--no-hello", "nope", cache=cache_home)
    assert method.returncode == 2 and "known methods: all, echo, find, poke" in method.stderr


def test_a_syntax_error_shows_the_compilers_message(tmp_path, cache_home):
    broken = tmp_path / "broken.thrift"
    broken.write_text("struct A {\n  1: string a\n}\nservice S {\n  void f(1: A a\n}\n", encoding="utf-8")
    done = run_cli("call", "--idl", str(broken), "--list", cache=cache_home)
    assert done.returncode == 2
    assert "the Thrift compiler rejected" in done.stderr and "broken.thrift:6" in done.stderr
    assert "syntax error" in done.stderr


def test_a_missing_compiler_says_how_to_install_it(tmp_path, cache_home):
    done = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--list", cache=cache_home,
                   env={"THRIFT": str(tmp_path / "no-thrift-here")})
    assert done.returncode == 2
    assert "apt-get install thrift-compiler" in done.stderr


def test_an_unwritable_cache_says_where_to_point_it(tmp_path, cache_home):
    (tmp_path / "a-file").write_text("")
    done = run_cli("call", "--idl", str(HANDSHAKE_IDL), "--list", cache=cache_home,
                   env={"THRIFT_HANDSHAKE_CACHE": str(tmp_path / "a-file" / "cache")})
    assert done.returncode == 2
    assert "cannot write the IDL cache" in done.stderr and "XDG_CACHE_HOME" in done.stderr


def test_a_missing_idl_file(tmp_path, cache_home):
    done = run_cli("call", "--idl", str(tmp_path / "none.thrift"), "--list", cache=cache_home)
    assert done.returncode == 2 and "no such IDL file" in done.stderr


def test_the_cache_is_keyed_by_the_includes_contents_too(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "base.thrift").write_text("namespace py cache_base\nservice Base {\n  void one(),\n}\n")
    (tmp_path / "top.thrift").write_text(
        'include "base.thrift"\nnamespace py cache_top\nservice Top extends base.Base {\n  void own(),\n}\n')
    first = run_cli("call", "--idl", str(tmp_path / "top.thrift"), "--list", cache=cache)
    assert first.returncode == 0, first.stderr
    assert "void one()" in first.stdout and "void two()" not in first.stdout
    entries = lambda: sorted(p.name for p in (cache / "thrift-handshake" / "idl").iterdir())  # noqa: E731
    assert len(entries()) == 1
    again = run_cli("call", "--idl", str(tmp_path / "top.thrift"), "--list", cache=cache)
    assert again.stdout == first.stdout and len(entries()) == 1, "an unchanged IDL must reuse its entry"
    (tmp_path / "base.thrift").write_text("namespace py cache_base\nservice Base {\n  void one(),\n  void two(),\n}\n")
    edited = run_cli("call", "--idl", str(tmp_path / "top.thrift"), "--list", cache=cache)
    assert edited.returncode == 0 and "void two()" in edited.stdout
    assert len(entries()) == 2, "editing an included file must make a new cache entry"
    generated = cache / "thrift-handshake" / "idl" / entries()[0] / "gen-py"
    assert (generated / "cache_top" / "Top.py").is_file() and (generated / "cache_base" / "Base.py").is_file()


def test_includes_found_through_include_dirs(tmp_path, cache_home):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "common.thrift").write_text("namespace py incdir_common\nstruct Shared { 1: i32 n }\n")
    (tmp_path / "svc.thrift").write_text('include "common.thrift"\nnamespace py incdir_svc\n'
                                         "service S { common.Shared get() }\n")
    without = run_cli("call", "--idl", str(tmp_path / "svc.thrift"), "--list", cache=cache_home)
    # the compiler's own warning (on its stdout) is the cause, and was dropped
    assert without.returncode == 2, without.stderr
    assert "Could not find include file common.thrift" in without.stderr and "-I DIR" in without.stderr
    found = run_cli("call", "--idl", str(tmp_path / "svc.thrift"), "-I", str(tmp_path / "shared"), "--list",
                    cache=cache_home)
    assert found.returncode == 0, found.stderr
    assert "  common.Shared get()" in found.stdout


def test_a_namespace_that_clashes_with_installed_code_is_refused(tmp_path, cache_home):
    clash = tmp_path / "clash.thrift"
    clash.write_text("namespace py thrift_handshake_gen\nservice HandshakeService {\n  void ping(),\n}\n")
    done = run_cli("call", "--idl", str(clash), "--no-hello", "ping", cache=cache_home)
    assert done.returncode == 2
    assert "clashes with a different 'thrift_handshake_gen'" in done.stderr and "namespace py" in done.stderr


def test_without_idl_the_installed_service_still_works(server, cache_home):
    assert call_ok("--port", str(server.port), "echo_types", '{"id": "x", "shape": {"id": 1}}',
                   cache=cache_home)["shape"] == {"id": 1}


# ---------------------------------------------------------------------------------------------
# For scripts: JSON everywhere, one method or type described, the runtime's session.thrift found
# ---------------------------------------------------------------------------------------------


def test_an_idl_including_session_thrift_needs_no_include_dir(tmp_path, cache_home):
    """`include "session.thrift"` resolves to the runtime's own IDL (it failed: which idl folder?)."""
    (tmp_path / "calc.thrift").write_text(
        'include "session.thrift"\nnamespace py cli_idl_calc\n'
        "service Calculator extends session.SessionService {\n  i32 add(1: i32 a, 2: i32 b),\n}\n")
    done = run_cli("call", "--idl", str(tmp_path / "calc.thrift"), "--list", cache=cache_home)
    assert done.returncode == 0, done.stderr
    assert "service Calculator extends session.SessionService   (default)" in done.stdout


def test_list_as_json(plain_idl, cache_home):
    done = run_cli("call", "--idl", str(plain_idl), "--list", "--format", "json", cache=cache_home)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert [(s["name"], s["default"]) for s in services] == [("Other", False), ("Store", True)]
    find = next(m for m in services[1]["methods"] if m["name"] == "find")
    assert find == {"name": "find", "returns": "store.Item", "oneway": False, "from": "store.Store",
                    "args": [{"id": 1, "name": "key", "type": "store.Key", "requiredness": "default"}],
                    "throws": [{"id": 1, "name": "missing", "type": "store.Missing", "requiredness": "default"}]}


@pytest.mark.parametrize("name, text", [
    ("find", "Item find(1: Key key) throws (1: Missing missing)"),
    ("Item", "struct store.Item {\n  1: required store.Key key,\n  2: store.Level level,"),
    ("Key", "union store.Key {\n  1: optional i64 id,\n  2: optional string name,\n}"),
    ("Level", "enum store.Level { LOW = 1, HIGH = 2, TOP = 2147483647 }"),
])
def test_describe_a_method_or_a_type(plain_idl, cache_home, name, text):
    done = run_cli("call", "--idl", str(plain_idl), "--describe", name, cache=cache_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(text), done.stdout


def test_describe_as_json_and_an_unknown_name(plain_idl, cache_home):
    done = run_cli("call", "--idl", str(plain_idl), "--describe", "Level", "--format", "json", cache=cache_home)
    assert json.loads(done.stdout) == {"kind": "enum", "name": "store.Level",
                                       "members": {"LOW": 1, "HIGH": 2, "TOP": 2147483647}}
    done = run_cli("call", "--idl", str(plain_idl), "--describe", "Item", "--format", "json", cache=cache_home)
    item = json.loads(done.stdout)
    assert item["kind"] == "struct" and item["fields"][0] == {"id": 1, "name": "key", "type": "store.Key",
                                                              "requiredness": "required"}
    unknown = run_cli("call", "--idl", str(plain_idl), "--describe", "Nope", cache=cache_home)
    assert unknown.returncode == 2 and "--describe Nope: no method of Store" in unknown.stderr
    assert "store.Item" in unknown.stderr and "find" in unknown.stderr


def test_format_json_puts_result_and_timeline_in_one_document(stock_server, plain_idl, cache_home):
    """`call ... --trace | jq` failed: the timeline followed the JSON on stdout."""
    port, _ = stock_server
    common = ("--idl", str(plain_idl), "--no-hello", "--port", str(port), "--format", "json")
    done = run_cli("call", *common, "echo", '{"key": {"id": 1}, "level": 2}', cache=cache_home)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["method"] == "echo" and document["result"] == {"key": {"id": 1}, "level": "HIGH"}
    timeline = document["timeline"]
    assert [(r["phase"], r["name"]) for r in timeline][1:] == [("call", "echo"), ("disconnect", "close")]
    assert timeline[0]["phase"] == "connect" and timeline[1]["bytes_out"] > 0 and timeline[1]["wait"] >= 0
    failed = run_cli("call", *common, "find", '{"id": 7}', cache=cache_home)
    assert failed.returncode == 1 and failed.stderr == ""
    document = json.loads(failed.stdout)
    assert document["exception"] == "Missing" and document["value"] == {"what": "no item 7"}
