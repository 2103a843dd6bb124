"""Several services on one port (``HandshakeServer(services=...)``, ``serve --handler A --handler B``), called
by Apache's own ``TMultiplexedProtocol`` and by our ``Client(options=ClientOptions(multiplexed=NAME))``.

Two services compiled here with the real compiler both have an ``add`` that answers differently, so a call
that reached the wrong one shows. One session per connection, whichever service's name carries hello.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from conftest import eventually, generated
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport

from thrift_handshake import Client, ClientOptions, HandshakeServer, ServerConfig
from thrift_handshake.interceptors import Interceptor, ServerCall
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRejected, HandshakeRequired

IDL = """
include "session.thrift"
namespace py mux_gen
service Calc extends session.SessionService {
  i32 add(1: i32 a, 2: i32 b) throws (1: session.HandshakeRequired handshake_required),
  oneway void note(1: string text),
}
service Store extends session.SessionService {
  i32 add(1: i32 a, 2: i32 b) throws (1: session.HandshakeRequired handshake_required),
  string get(1: string key) throws (1: session.HandshakeRequired handshake_required),
}
service Plain {
  i32 add(1: i32 a, 2: i32 b),
}
"""


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with generated(tmp_path_factory.mktemp("mux-gen"), "mux.thrift", IDL, "mux_gen") as package:
        from mux_gen import Calc, Plain, Store  # noqa: F401 (imported for the handlers below)
        yield package


def handlers(gen: Any) -> Tuple[Any, Any]:
    from mux_gen import Calc, Store

    class CalcHandler(Calc.Iface):
        notes: List[str] = []

        def add(self, a: int, b: int) -> int:
            return a + b

        def note(self, text: str) -> None:
            self.notes.append(text)

    class StoreHandler(Store.Iface):
        def add(self, a: int, b: int) -> int:
            return 1000 + a + b

        def get(self, key: str) -> str:
            return f"value of {key}"

    return CalcHandler(), StoreHandler()


@pytest.fixture
def serve(gen: Any) -> Iterator[Any]:
    servers: List[HandshakeServer] = []

    def start(default_service: Any = None, **config: Any) -> HandshakeServer:
        calc, store = handlers(gen)
        server = HandshakeServer(services={"Calc": calc, "Store": store}, default_service=default_service,
                                 config=ServerConfig(port=0, **config)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=5.0)


class Apache:
    """Apache's stock generated clients on one socket, each behind TMultiplexedProtocol (as Apache's
    TestClient does), plus a bare one."""

    def __init__(self, port: int) -> None:
        from mux_gen import Calc, Store

        sock = TSocket.TSocket("127.0.0.1", port)
        sock.setTimeout(5000)
        self.transport = TTransport.TBufferedTransport(sock)
        protocol = TBinaryProtocolAccelerated(self.transport)
        self.calc = Calc.Client(TMultiplexedProtocol(protocol, "Calc"))
        self.store = Store.Client(TMultiplexedProtocol(protocol, "Store"))
        self.bare = Calc.Client(protocol)
        self.transport.open()

    def service(self, name: str) -> Any:
        from mux_gen import Calc

        return Calc.Client(TMultiplexedProtocol(TBinaryProtocolAccelerated(self.transport), name))

    def close(self) -> None:
        self.transport.close()


@pytest.fixture
def apache() -> Iterator[Any]:
    opened: List[Apache] = []

    def open_(port: int) -> Apache:
        opened.append(Apache(port))
        return opened[-1]

    yield open_
    for each in opened:
        each.close()


def hello(name: str = "mux-test") -> ClientHello:
    return ClientHello(client_name=name, min_version=1, max_version=2)


def test_apache_multiplexed_clients_call_two_services_in_one_session(serve: Any, apache: Any) -> None:
    server = serve()
    client = apache(server.port)
    session = client.calc.hello(hello()).session_id  # Calc:hello opens the connection's session
    assert client.calc.add(1, 2) == 3
    assert client.store.add(1, 2) == 1003  # the same method name, the other service
    assert client.store.get("k") == "value of k"
    with pytest.raises(HandshakeRejected) as second:  # Store:hello meets the same session
        client.store.hello(hello())
    assert session in second.value.reason
    stats = client.store.stats()
    assert stats.calls["Calc:add"] == 1 and stats.calls["Store:add"] == 1 and stats.calls["Store:get"] == 1
    assert stats.sessions_active == 1 and stats.handshakes_ok == 1


def test_before_hello_every_service_refuses(serve: Any, apache: Any) -> None:
    client = apache(serve().port)
    with pytest.raises(HandshakeRequired):
        client.store.get("k")
    client.bare.hello(hello())  # a bare hello opens the session too
    assert client.store.get("k") == "value of k"


def test_an_unknown_service_is_named_and_the_connection_kept(serve: Any, apache: Any) -> None:
    client = apache(serve().port)
    client.calc.hello(hello())
    with pytest.raises(TApplicationException) as unknown:
        client.service("Nope").add(1, 2)
    assert unknown.value.type == TApplicationException.UNKNOWN_METHOD
    assert "no service 'Nope' on this port (it hosts Calc, Store)" in unknown.value.message
    with pytest.raises(TApplicationException) as session_method:  # no session methods behind an unknown name
        client.service("Nope").ping()
    assert session_method.value.type == TApplicationException.UNKNOWN_METHOD
    assert client.calc.add(2, 2) == 4


def test_a_one_way_call_to_an_unknown_service_is_dropped_and_logged(serve: Any, apache: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    client = apache(serve().port)
    client.calc.hello(hello())
    with caplog.at_level(logging.WARNING):
        client.service("Nope").note("lost")
        client.calc.note("kept")
        assert client.calc.add(1, 1) == 2  # the one-way calls before it were handled
    assert "Nope:note" in caplog.text and "no service 'Nope' on this port" in caplog.text
    stats = client.calc.stats()
    assert stats.notifications == 1 and stats.calls["<unknown>"] == 1


def test_bare_names_reach_the_default_service_only_when_one_is_named(serve: Any, apache: Any) -> None:
    without = apache(serve().port)
    without.bare.hello(hello())
    with pytest.raises(TApplicationException) as unknown:
        without.bare.add(1, 2)
    assert unknown.value.type == TApplicationException.UNKNOWN_METHOD
    assert "this port hosts several services (Calc, Store); call SERVICE:add" in unknown.value.message
    with_default = apache(serve(default_service="Store").port)
    with_default.bare.hello(hello())
    assert with_default.bare.add(1, 2) == 1003


def test_interceptors_see_the_bare_method_and_its_service(serve: Any, apache: Any) -> None:
    seen: List[Tuple[str, Any, str]] = []

    class Seen(Interceptor):
        def call_ended(self, call: ServerCall) -> None:
            seen.append((call.method, call.service, call.name))

    client = apache(serve(interceptors=(Seen(),)).port)
    client.calc.hello(hello())
    client.store.add(1, 2)
    with pytest.raises(TApplicationException):
        client.service("Nope").add(1, 2)
    assert eventually(lambda: len(seen) == 3)
    assert seen == [("hello", "Calc", "Calc:hello"), ("add", "Store", "Store:add"), ("add", "Nope", "Nope:add")]


def test_our_client_calls_one_service_of_a_multiplexed_port(serve: Any) -> None:
    from mux_gen import Calc, Store

    server = serve()
    with Client(port=server.port, service=Store, options=ClientOptions(multiplexed="Store")) as store:
        assert store.add(1, 2) == 1003
        assert store.get("x") == "value of x"
    with Client(port=server.port, service=Calc, options=ClientOptions(multiplexed="Calc")) as calc:
        assert calc.add(1, 2) == 3
    assert server.metrics.snapshot().calls["Store:hello"] == 1
    pipelined = ClientOptions(multiplexed="Store", pipeline_hello=True, await_farewell=False)
    with Client(port=server.port, service=Store, options=pipelined) as store:  # hello and get in one round trip
        assert store.get("y") == "value of y" and store.session_id


def test_without_the_gate_plain_services_share_a_port(gen: Any, apache: Any) -> None:
    from mux_gen import Plain

    class PlainHandler(Plain.Iface):
        def add(self, a: int, b: int) -> int:
            return -(a + b)

    calc, _ = handlers(gen)
    server = HandshakeServer(services={"Calc": calc, "Plain": PlainHandler()}, default_service="Plain",
                             config=ServerConfig(port=0, handshake=False)).start()
    try:
        client = apache(server.port)
        assert client.calc.add(1, 2) == 3  # no hello: the gate is off
        assert client.service("Plain").add(1, 2) == -3
        assert client.bare.add(1, 2) == -3  # the default
        with Client(port=server.port, service=Plain,
                    options=ClientOptions(multiplexed="Plain", handshake=False)) as plain:
            assert plain.add(2, 2) == -4
    finally:
        server.stop(grace=5.0)


def test_a_default_that_is_not_hosted_is_refused(gen: Any) -> None:
    calc, store = handlers(gen)
    with pytest.raises(ValueError, match="default_service 'Nope' is not one of"):
        HandshakeServer(services={"Calc": calc, "Store": store}, default_service="Nope")
    with pytest.raises(ValueError, match="without ':'"):
        HandshakeServer(services={"Ca:lc": calc})
    with pytest.raises(ValueError, match="services is empty"):
        HandshakeServer(services={})
    with pytest.raises(TypeError, match="a handler, or several by name"):
        HandshakeServer(calc, services={"Calc": calc})


def test_routes_without_sockets() -> None:
    from thrift_handshake.multiplex import Routes, ServiceTable

    calc = ServiceTable("Calc", None, None, {}, {1: {}, 4: {}}, frozenset())
    routes = Routes({"Calc": calc})
    assert routes.route("Calc:add") == (calc, "add", "Calc")
    assert routes.route("Calc:a:b") == (calc, "a:b", "Calc")  # split at the first ':', as Apache's processor
    bare, method, service = routes.route("add")
    assert (method, service, bare.session) == ("add", None, False)
    assert "this port hosts several services (Calc); call SERVICE:add" in bare.missing("add", False)
    absent, method, service = routes.route("Nope:add")
    assert (method, service, absent.session, absent.by_type[1]) == ("add", "Nope", False, {})
    assert absent.missing("add", True).endswith("Nope:add not run, not answered")
    assert Routes({"Calc": calc}, default="Calc").route("add") == (calc, "add", None)
