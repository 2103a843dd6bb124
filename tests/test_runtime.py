"""The runtime hosts any Thrift service: gated (extends SessionService) or plain (no hello at all).

Services of several shapes are compiled from IDL here with the real compiler; plain services are
called by the stock generated client, which knows nothing of this project.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import eventually, generated
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport

from thrift_handshake import (
    Client,
    ClientOptions,
    ClientPhase,
    current_session,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import HandshakeRequired

ROOT = Path(__file__).resolve().parent.parent

TYPES = """
exception Nope { 1: string why, 2: i32 code }
struct Item {
  1: required string key,
  2: list<i32> values,
  3: map<string, set<string>> tags,
  4: optional i64 stamp,
}
"""
# Names the old session handler answered itself: here they must reach the user's handler.
METHODS = """
  i32 calls(),
  string context(1: string value),
  string phase(),
  string disconnected(),
  string close(1: i32 timeout),
  string configure(1: string limits),
  Item item(1: Item item) throws (1: Nope nope),
  oneway void poke(1: string what),
  i32 pokes(),
  void crash(),
"""
PLAIN_IDL = f"namespace py plain_gen\n{TYPES}\nservice Plain {{{METHODS}}}\n"
GATED_IDL = (f'include "session.thrift"\nnamespace py gated_gen\n{TYPES}\n'
             f"service Gated extends session.SessionService {{{METHODS}"
             f"  string guarded(1: string value) throws (1: session.HandshakeRequired handshake_required),\n}}\n")

HANDLER_SOURCE = '''
import threading


class NamesHandler:
    """Answers every method of Plain/Gated; records what reached it."""

    def __init__(self):
        self.seen = []
        self._pokes = 0
        self._lock = threading.Lock()

    def calls(self):
        self.seen.append("calls")
        return 41

    def context(self, value):
        self.seen.append("context")
        return "context:" + value

    def phase(self):
        self.seen.append("phase")
        return "phase:user"

    def disconnected(self):
        self.seen.append("disconnected")
        return "disconnected:user"

    def close(self, timeout):
        self.seen.append("close")
        return "close:%d" % timeout

    def configure(self, limits):
        self.seen.append("configure")
        return "configure:" + limits

    def item(self, item):
        if item.key == "missing":
            raise self.Nope(why="no such key", code=404)
        item.values = [v * 2 for v in item.values]
        return item

    def poke(self, what):
        with self._lock:
            self._pokes += 1

    def pokes(self):
        return self._pokes

    def crash(self):
        raise RuntimeError("undeclared")

    def guarded(self, value):
        return value.upper()


def make(service_module, ttypes_module):
    class Handler(NamesHandler, service_module.Iface):
        Nope = ttypes_module.Nope
    return Handler
'''


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """(plain module, gated module, handler dir): generated code and a handler module, importable."""
    out = tmp_path_factory.mktemp("runtime-gen")
    (out / "names_handler.py").write_text(HANDLER_SOURCE + textwrap.dedent('''
        from plain_gen import Plain, ttypes as plain_ttypes
        PlainHandler = make(Plain, plain_ttypes)
    '''))
    with generated(out, "plain.thrift", PLAIN_IDL, "plain_gen.Plain") as plain:
        with generated(out, "gated.thrift", GATED_IDL, "gated_gen.Gated") as gated:
            yield plain, gated, out


def _handler(module):
    ttypes = sys.modules[module.__name__.rsplit(".", 1)[0] + ".ttypes"]
    namespace = {}
    exec(HANDLER_SOURCE, namespace)
    return namespace["make"](module, ttypes)()


class StockClient:
    """The bare generated client, as a user of any Thrift service writes it."""

    def __init__(self, module, port: int) -> None:
        self.transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", port))
        self.stub = module.Client(TBinaryProtocolAccelerated(self.transport))
        self.transport.open()

    def close(self) -> None:
        self.transport.close()


def _exercise_plain_shapes(module, stub) -> None:
    ttypes = sys.modules[module.__name__.rsplit(".", 1)[0] + ".ttypes"]
    item = ttypes.Item(key="k", values=[1, -2, 2**31 - 1 >> 1], tags={"t": {"a", "中"}}, stamp=2**53 + 1)
    echoed = stub.item(item)
    assert echoed.values == [2, -4, (2**31 - 1 >> 1) * 2] and echoed.tags == {"t": {"a", "中"}}
    assert echoed.stamp == 2**53 + 1
    with pytest.raises(ttypes.Nope) as caught:
        stub.item(ttypes.Item(key="missing"))
    assert caught.value.code == 404
    with pytest.raises(TApplicationException) as crashed:
        stub.crash()
    assert crashed.value.type == TApplicationException.INTERNAL_ERROR
    stub.poke("one-way")
    assert stub.pokes() == 1  # the one-way call was delivered before the next call on the connection
    assert stub.calls() == 41  # the connection is still usable after every answer above


def test_a_plain_service_is_served_to_a_stock_client(start_server, services):
    plain, _, _ = services
    handler = _handler(plain)
    server = start_server(handler, handshake=False)
    stock = StockClient(plain, server.port)
    try:
        _exercise_plain_shapes(plain, stock.stub)
    finally:
        stock.close()
    stats = server.metrics.snapshot()  # in-process stats: the service itself has no stats() method
    assert stats.calls["item"] == 2 and stats.calls["poke"] == 1 and stats.notifications == 1
    assert stats.handshakes_ok == 0 and stats.sessions_active == 0


def test_the_client_wrapper_calls_a_plain_service_without_hello(start_server, services):
    plain, _, _ = services
    server = start_server(_handler(plain), handshake=False)
    client = Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=plain)
    assert client.connect() is None and client.phase is ClientPhase.READY
    typed = client.typed(plain.Iface)  # what an IDE and mypy see: the generated Iface
    assert typed.context("x") == "context:x"
    assert [record.phase for record in client.timeline] == ["connect", "call"]
    assert client.close() is None  # no goodbye to say
    assert client.phase is ClientPhase.CLOSED
    assert "goodbye" not in server.metrics.snapshot().calls


def test_typed_refuses_an_iface_of_another_service(services):
    plain, gated, _ = services
    with pytest.raises(TypeError):
        Client("127.0.0.1", 1, ClientOptions(handshake=False), service=plain).typed(gated.Iface)


@pytest.mark.parametrize("method, args, expected", [
    ("calls", (), 41), ("context", ("v",), "context:v"), ("phase", (), "phase:user"),
    ("disconnected", (), "disconnected:user"), ("close", (5,), "close:5"), ("configure", ("l",), "configure:l"),
])
def test_user_methods_with_any_name_reach_the_users_handler(start_server, services, method, args, expected):
    _, gated, _ = services
    handler = _handler(gated)
    server = start_server(handler)
    with Client("127.0.0.1", server.port, service=gated) as client:
        assert client.call(method, *args) == expected
    server.stop()
    assert handler.seen == [method]  # the server itself never called the handler's close/configure/...


def test_a_gated_user_service_refuses_calls_before_hello_without_running_them(start_server, services):
    _, gated, _ = services
    handler = _handler(gated)
    server = start_server(handler)
    stock = StockClient(gated, server.port)
    try:
        with pytest.raises(HandshakeRequired):  # declared: the typed refusal
            stock.stub.guarded("x")
        with pytest.raises(TApplicationException) as caught:  # not declared: an application error
            stock.stub.calls()
        assert "hello" in caught.value.message
        stock.stub.poke("dropped")  # one-way before hello: dropped
        assert handler.seen == [] and handler._pokes == 0
        stock.stub.ping()  # the connection is still usable
    finally:
        stock.close()


def test_the_handler_sees_its_session(start_server, services):
    _, gated, _ = services

    class Aware(_handler(gated).__class__):
        def guarded(self, value):
            return f"{current_session().client_name}:{current_session().version}"

    server = start_server(Aware())
    with Client("127.0.0.1", server.port, ClientOptions(client_name="aware", versions=(1, 1)), service=gated) as c:
        assert c.guarded("x") == "aware:1"


# -- Apache Thrift's own TThreadedServer hosts the processor -----------------------------------

STOCK_SERVER = '''
import sys
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

from thrift_handshake import SessionProcessor
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService

processor = SessionProcessor(HandshakeService.Processor(HandshakeHandler()))
transport = TSocket.TServerSocket(host="127.0.0.1", port=int(sys.argv[1]))
tfactory = TTransport.TBufferedTransportFactory()
pfactory = TBinaryProtocol.TBinaryProtocolAcceleratedFactory()
server = TServer.TThreadedServer(processor, transport, tfactory, pfactory, daemon=True)
print("serving", flush=True)
server.serve()
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stock_server():
    """An unmodified TThreadedServer, wired as in Thrift's tutorial, serving through SessionProcessor."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", STOCK_SERVER, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "serving"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the stock server did not start listening"
                time.sleep(0.02)
        yield port
    finally:
        process.kill()
        process.wait(5)


def test_stock_threaded_server_serves_the_handshake(stock_server):
    with Client("127.0.0.1", stock_server, service=HandshakeService) as client:
        assert client.version == 2 and client.session_id
        assert client.echo("请求数据") == "请求数据"
        assert client.stats().sessions_active == 1
    assert client.farewell.calls == 2  # echo and stats; goodbye answered, then the server closed
    stock = StockClient(HandshakeService, stock_server)
    try:
        with pytest.raises(HandshakeRequired):
            stock.stub.echo("no hello")
    finally:
        stock.close()
    dropped = Client("127.0.0.1", stock_server, service=HandshakeService)
    dropped.connect()
    dropped._sock.close()  # gone without goodbye: the session must end on the server too
    with Client("127.0.0.1", stock_server, service=HandshakeService) as observer:
        assert eventually(lambda: observer.stats().sessions_active == 1)  # only the observer's own


# -- serve --service: the CLI hosts a plain service ----------------------------------------------

def test_serve_service_hosts_a_plain_service_for_a_stock_client(services, tmp_path):
    plain, _, handler_dir = services
    process = subprocess.Popen(
        [sys.executable, "-m", "thrift_handshake", "serve", "--service", "names_handler:PlainHandler",
         "--path", str(handler_dir), "--no-hello", "--port", "0", "--grace", "2"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = process.stderr.readline()
        while "C extension is missing" in line:  # thrift without fastbinary warns first
            line = process.stderr.readline()
        assert "listening on 127.0.0.1:" in line and "service=Plain" in line and "handshake=off" in line, line
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        stock = StockClient(plain, port)
        try:
            _exercise_plain_shapes(plain, stock.stub)
        finally:
            stock.close()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "stopped: 1 connections served" in rest and "'item': 2" in rest


def test_serve_service_explains_a_class_that_implements_no_service(tmp_path):
    (tmp_path / "not_a_service.py").write_text("class Handler:\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--service", "not_a_service:Handler",
                             "--path", str(tmp_path), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "implements no generated Iface" in result.stderr


def test_a_plain_service_answers_hello_as_an_unknown_method_and_keeps_the_connection(start_server, services):
    from conftest import encode_call, exchange
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport.TTransport import TMemoryBuffer

    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello

    plain, _, _ = services
    server = start_server(_handler(plain), handshake=False)
    hello = encode_call("hello", SessionService.hello_args(ClientHello(client_name="lost", min_version=1, max_version=2)))
    answers = TBinaryProtocol(TMemoryBuffer(exchange(server.port, hello + encode_call("calls", plain.calls_args(), 2))))
    assert answers.readMessageBegin() == ("hello", TMessageType.EXCEPTION, 1)
    refusal = TApplicationException()
    refusal.read(answers)
    answers.readMessageEnd()
    assert (refusal.type, refusal.message) == (TApplicationException.UNKNOWN_METHOD, "Unknown function hello")
    assert answers.readMessageBegin() == ("calls", TMessageType.REPLY, 2)
