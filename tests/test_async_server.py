"""The asyncio server (``AsyncHandshakeServer``) with the threaded ``Client`` and raw sockets: every wire
cell, the whole demo contract, coroutine handlers that hold no thread, limits, mismatches, the stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

from thrift.Thrift import TApplicationException

from thrift_handshake import (Client, ClientOptions, ClientPhase, ClientTLS, ConnectError, ConnectionBroken, HandshakeServer,
                              Interceptor,
                              RemoteApplicationError, ServerConfig, ServerDraining, ServerFull, ServerLimits, Wire,
                              WireMismatch)
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake.demo import FEATURES, DemoLimits, HandshakeHandler
from thrift_handshake.session import current_session
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello, Draining, HandshakeRequired
from thrift_handshake_gen.ttypes import Event, InvalidRequest, Request, Response

from conftest import RawConnection, encode_call, eventually, exchange, read_until_closed
from server_process import Background, read_log_until, serve_subprocess, wait_in_flight, wait_remote_in_flight
from test_tls import CERTS, MUTUAL_TLS, SERVER_TLS, WhoAmI


class EventLoopThread:
    """An event loop on its own thread, for servers the synchronous tests talk to."""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop) -> None:
        self.loop = factory()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-event-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _uvloop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # optional for users; the test extras install it, so CI runs both loops
        raise AssertionError("uvloop is missing: scripts/test installs it (pip install -e '.[test]')") from None
    return uvloop.new_event_loop()


#: The event loops a test may run its servers on (``loop_factory`` parametrized indirectly).
LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(_uvloop, id="uvloop")]


@pytest.fixture
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    return getattr(request, "param", asyncio.new_event_loop)


@pytest.fixture
def event_loop_thread(loop_factory) -> Iterator[EventLoopThread]:
    loop = EventLoopThread(loop_factory)
    yield loop
    loop.close()


@pytest.fixture
def start_async(event_loop_thread: EventLoopThread) -> Iterator[Callable[..., AsyncHandshakeServer]]:
    """Starts asyncio servers (``start_async(handler=None, demo=None, services=None, default_service=None,
    **ServerConfig fields)``; the demo service, with ``demo`` limits, by default) on the test's event loop
    thread; stops them afterwards."""
    servers: List[AsyncHandshakeServer] = []

    def start(handler: Any = None, demo: Optional[DemoLimits] = None, services: Any = None,
              default_service: Optional[str] = None, **config: Any) -> AsyncHandshakeServer:
        config.setdefault("port", 0)
        config.setdefault("host", "127.0.0.1")
        settings = ServerConfig(**config)
        if services is not None:  # several services on one port
            server = AsyncHandshakeServer(services=services, default_service=default_service, config=settings)
        elif handler is None:
            handler = HandshakeHandler(demo)
            settings = dataclasses.replace(settings, features=settings.features or FEATURES)
            server = AsyncHandshakeServer(handler, settings)
            server.on_stop(handler.close)
        else:
            server = AsyncHandshakeServer(handler, settings)
        event_loop_thread.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        event_loop_thread.run(server.stop(grace=5.0))


@pytest.fixture
def aserver(start_async) -> AsyncHandshakeServer:
    return start_async()


def connect(server: AsyncHandshakeServer, **options: Any) -> Client:
    client = Client("127.0.0.1", server.port, ClientOptions(**options), service=HandshakeService)
    client.connect()
    return client


WIRES = [Wire(protocol=protocol, transport=transport) for protocol in ("binary", "compact")
         for transport in ("buffered", "framed")] + [Wire(transport="header")]


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_the_whole_contract_in_every_wire_cell(aserver, wire):
    client = connect(aserver, wire=wire)
    try:
        assert client.version == 2
        response = client.process(Request(request_id="r1", payload="hello"))
        assert (response.request_id, response.sequence) == ("r1", 1)
        assert client.echo("héllo") == "héllo"
        ack = client.submit(Request(request_id="r2", payload="later", work_ms=1))
        result = client.get_result(ack.ticket, 5000)
        assert result.request_id == "r2"
        client.notify(Event(name="tick", payload="x"))
        stats = client.stats()
        assert (stats.connections_open, stats.sessions_active, stats.handshakes_ok) == (1, 1, 1)
        assert stats.calls["process"] == 1 and stats.notifications == 1
    finally:
        farewell = client.close()
    assert farewell.calls == 6  # process, echo, submit, get_result, notify, stats
    assert eventually(lambda: aserver.stats().sessions_active == 0)
    assert aserver.stats().connections_total == 1


class SlowAsync(HandshakeService.Iface):
    """process is a coroutine that sleeps; echo is a plain method (served on the pool)."""

    SLEEP = 0.5

    def __init__(self) -> None:
        self.sessions: List[str] = []

    async def process(self, request: Request) -> Response:
        session = current_session().session_id
        await asyncio.sleep(self.SLEEP)
        assert current_session().session_id == session  # other connections' calls ran meanwhile
        self.sessions.append(session)
        return Response(request_id=request.request_id, session_id=session)

    def echo(self, message: str) -> str:
        return f"{threading.current_thread().name}|{current_session().session_id}|{message}"


def pool_threads(server: AsyncHandshakeServer) -> List[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(f"thrift-handshake-aio:{server.port}")]


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_coroutine_handlers_wait_without_holding_a_thread(start_async):
    """50 calls that each await a 0.5 s sleep, on 50 connections, with a pool of 4 threads: together in
    about one sleep (on 4 threads they would take 13 sleeps), and no pool thread is started."""
    handler = SlowAsync()
    server = start_async(handler, limits=ServerLimits(max_threads=4))
    clients = [connect(server) for _ in range(50)]
    replies: List[Response] = []
    start = threading.Barrier(51)

    def call(client: Client, number: int) -> None:
        start.wait()
        replies.append(client.process(Request(request_id=str(number))))

    threads = [threading.Thread(target=call, args=(client, n)) for n, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - began
    assert len(replies) == 50
    assert elapsed < 4 * SlowAsync.SLEEP, f"50 slow coroutine calls took {elapsed:.2f}s"
    assert pool_threads(server) == []
    # every reply went to the session that asked, although all interleaved on one thread
    assert sorted(reply.session_id for reply in replies) == sorted(client.session_id for client in clients)
    for client in clients:
        client.close()


def test_plain_handlers_run_on_the_pool_with_their_session(start_async):
    server = start_async(SlowAsync(), limits=ServerLimits(max_threads=4))
    client = connect(server)
    try:
        thread, session, message = client.echo("hi").split("|")
        assert thread.startswith(f"thrift-handshake-aio:{server.port}")
        assert (session, message) == (client.session_id, "hi")
    finally:
        client.close()


class Watch(Interceptor):
    """Observes the handler: the gate serves through the watched copy of the processor."""

    observes_handler = True

    def __init__(self) -> None:
        self.ended: List[Any] = []

    def call_ended(self, call: Any) -> None:
        self.ended.append((call.method, call.outcome.value, call.args, call.result, call.handler_seconds))


def test_interceptors_see_coroutine_handlers_run(start_async):
    watch = Watch()
    server = start_async(SlowAsync(), interceptors=(watch,))
    client = connect(server)
    try:
        response = client.process(Request(request_id="w"))
        assert client.echo("x").endswith("|x")
    finally:
        client.close()
    assert eventually(lambda: len(watch.ended) == 4)  # hello, process, echo, goodbye
    method, outcome, args, result, seconds = watch.ended[1]
    assert (method, outcome, args[0].request_id, result) == ("process", "ok", "w", response)
    assert seconds >= SlowAsync.SLEEP * 0.9
    assert watch.ended[2][:3] == ("echo", "ok", ("x",))


# -- limits, mismatches, TLS, a full server ------------------------------------------------------

@pytest.mark.parametrize("wire", [Wire(transport="framed"), Wire(), Wire(protocol="compact"), Wire(transport="header")],
                         ids=str)
def test_an_oversized_message_is_refused_naming_the_limit(start_async, wire):
    server = start_async(limits=ServerLimits(max_message_bytes=1000))
    client = connect(server, wire=wire)
    assert client.echo("a" * 500) == "a" * 500
    with pytest.raises(RemoteApplicationError) as caught:
        client.echo("a" * 2000)
    assert caught.value.type == TApplicationException.PROTOCOL_ERROR
    assert "cannot decode the echo request: " in str(caught.value)
    assert "max_message_bytes" in str(caught.value)
    assert client.phase is ClientPhase.BROKEN  # the server closes after a refused message
    client.close()
    fresh = connect(server, wire=wire)
    assert fresh.echo("still serving") == "still serving"
    fresh.close()


def test_a_silent_connection_is_closed_at_the_handshake_deadline(start_async, caplog):
    server = start_async(limits=ServerLimits(handshake_timeout=0.3))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        began = time.monotonic()
        assert read_until_closed(sock, 5.0) == b""
        assert 0.25 < time.monotonic() - began < 3.0
    assert eventually(lambda: "handshake timeout" in caplog.text)


def test_a_hello_that_does_not_finish_in_time_is_cut_off(start_async, caplog):
    server = start_async(limits=ServerLimits(handshake_timeout=0.3))
    hello = encode_call("hello", SessionService.hello_args(ClientHello(client_name="slow", min_version=1, max_version=2)))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(hello[:10])  # a dialect, then nothing more
        assert read_until_closed(sock, 5.0) == b""
    assert eventually(lambda: "handshake timeout" in caplog.text)


def test_more_than_the_handshake_budget_before_hello_is_refused(start_async):
    server = start_async(limits=ServerLimits(handshake_max_bytes=1024))
    answer = exchange(server.port, encode_call("echo", HandshakeService.echo_args("x" * 5000)))
    assert b"cannot decode the echo request: more than 1024 bytes before hello() succeeded" in answer


def test_an_http_client_of_a_one_wire_server_is_answered_in_http(start_async, caplog):  # (served: test_aio_http.py)
    server = start_async(detect_wire=False)
    answer = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"This is a Thrift server (thrift-handshake), not an HTTP server: the client speaks HTTP" in answer
    assert eventually(lambda: "refused peer=127.0.0.1:" in caplog.text)


def test_a_wire_it_does_not_serve_is_answered_in_the_peers_framing(start_async):
    server = start_async(detect_wire=False)
    client = Client("127.0.0.1", server.port, ClientOptions(wire=Wire(transport="framed")), service=HandshakeService)
    with pytest.raises(WireMismatch, match="this server speaks Thrift buffered binary"):
        client.connect()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_tls_round_trip_and_a_plain_client_told_it_needs_tls(start_async):
    server = start_async(handler=WhoAmI(), tls=SERVER_TLS)
    client = Client("127.0.0.1", server.port, ClientOptions(tls=ClientTLS(ca_file=str(CERTS / "ca.pem"))),
                    service=HandshakeService)
    with client:
        assert client.echo("secret") == "secret from None"  # no client certificate
    plain = Client("127.0.0.1", server.port, service=HandshakeService)
    with pytest.raises(WireMismatch, match="requires TLS"):
        plain.connect()


def test_mutual_tls_names_the_client(start_async):
    server = start_async(handler=WhoAmI(), tls=MUTUAL_TLS)
    tls = ClientTLS(ca_file=str(CERTS / "ca.pem"), cert_file=str(CERTS / "client.pem"),
                    key_file=str(CERTS / "client.key"))
    with Client("127.0.0.1", server.port, ClientOptions(tls=tls), service=HandshakeService) as client:
        assert client.echo("hi") == "hi from thrift-handshake test client"


def test_a_full_server_says_so(start_async):
    server = start_async(limits=ServerLimits(max_connections=1))
    first = connect(server)
    with pytest.raises(ServerFull, match="server full: 1 connections"):
        connect(server)
    assert first.echo("still served") == "still served"
    first.close()
    assert eventually(lambda: server.connection_count == 0)
    connect(server).close()


# -- the stop -----------------------------------------------------------------------------------

def test_graceful_stop_lets_the_in_flight_call_finish(start_async, event_loop_thread):
    server = start_async()
    busy, idle = connect(server), connect(server)
    call = Background(busy.process, Request(request_id="in-flight", payload="p", work_ms=500))
    wait_in_flight(server, "process")
    began = time.monotonic()
    event_loop_thread.run(server.stop(grace=5.0))
    stopped_in = time.monotonic() - began
    assert call.result().request_id == "in-flight"
    assert 0.2 < stopped_in < 4.0
    with pytest.raises(ConnectionBroken):
        idle.echo("idle connections are closed")
    with pytest.raises(ConnectionBroken):
        busy.echo("closed after its reply")
    with pytest.raises(ConnectError):
        connect(server)
    busy.close()
    idle.close()


def test_the_grace_period_bounds_the_stop_of_a_coroutine_call(start_async, event_loop_thread):
    SlowAsync.SLEEP = 30.0
    try:
        server = start_async(SlowAsync())
        client = connect(server)
        call = Background(client.process, Request(request_id="too slow"))
        wait_in_flight(server, "process")
        began = time.monotonic()
        event_loop_thread.run(server.stop(grace=0.3))
        assert time.monotonic() - began < 3.0
        assert isinstance(call.result(), ConnectionBroken)
        client.close()
    finally:
        SlowAsync.SLEEP = 0.5


# -- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_asyncio_stops_gracefully_on_a_signal(signum):
    process, port = serve_subprocess("--asyncio", "--grace", "5")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="sig", payload="", work_ms=500))
        wait_remote_in_flight(port, "process")
        os.kill(process.pid, signum)
        assert process.wait(timeout=10) == 0
        assert call.result().request_id == "sig"
        assert "stopped" in process.stderr.read()
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_the_readme_asyncio_snippet_serves_a_coroutine_handler(tmp_path):
    """The README's asyncio section runs as written (its `...` replaced by a call through the Client)."""
    import readme

    root = Path(__file__).resolve().parent.parent
    section = readme.section("## Host your own service", "\n## ")
    (tmp_path / "calc.thrift").write_text(readme.files(section)["calc.thrift"], encoding="utf-8")
    subprocess.run(["thrift", "-I", str(root / "idl"), "--gen", "py", "calc.thrift"], cwd=tmp_path, check=True)
    text = (root / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("### The asyncio server")) + len("```python\n")
    snippet = text[start:text.index("```", start)]
    call = ("    from thrift_handshake import Client\n"
            "    def call():\n"
            "        with Client('127.0.0.1', server.port, service=Calculator) as client:\n"
            "            print(client.add(1, 2))\n"
            "    await asyncio.get_running_loop().run_in_executor(None, call)\n")
    program = snippet.replace("ServerConfig(port=9090)", "ServerConfig(port=0)").replace("    ...\n", call)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "gen-py")}
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr


# -- the gate's answers, with coroutine handlers --------------------------------------------------

class AsyncAnswers(HandshakeService.Iface):
    """Coroutine handlers that fail, mis-return, and take one-way calls."""

    def __init__(self) -> None:
        self.events: List[str] = []

    async def process(self, request: Request) -> Response:
        await asyncio.sleep(0)
        if request.payload == "invalid":
            raise InvalidRequest(message="bad payload", field="payload")
        if request.payload == "crash":
            raise RuntimeError("boom")
        if request.payload == "unencodable":
            return "not a Response"
        return Response(request_id=request.request_id)

    async def notify(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.events.append(event.name)

    def echo(self, message: str) -> Any:
        return 42 if message == "unencodable" else message


def test_coroutine_handlers_answer_like_generated_code(start_async, caplog):
    handler = AsyncAnswers()
    server = start_async(handler)
    client = connect(server)
    try:
        with pytest.raises(InvalidRequest) as caught:
            client.process(Request(request_id="1", payload="invalid"))
        assert (caught.value.message, caught.value.field) == ("bad payload", "payload")
        with pytest.raises(RemoteApplicationError) as crashed:
            client.process(Request(request_id="2", payload="crash"))
        assert crashed.value.type == TApplicationException.INTERNAL_ERROR
        assert "Unexpected exception in handler" in caplog.text and "boom" in caplog.text
        for method, argument in (("process", Request(request_id="3", payload="unencodable")),
                                 ("echo", "unencodable")):
            with pytest.raises(RemoteApplicationError, match=f"could not encode the {method} reply") as failed:
                client.call(method, argument)
            assert failed.value.type == TApplicationException.INTERNAL_ERROR
        client.notify(Event(name="one-way", payload=""))
        assert client.process(Request(request_id="4")).request_id == "4"  # the connection stayed usable
        assert eventually(lambda: handler.events == ["one-way"])
    finally:
        client.close()


def test_calls_before_hello_are_refused_and_the_connection_stays(aserver):
    raw = RawConnection(aserver.port)
    try:
        with pytest.raises(HandshakeRequired, match="process"):
            raw.stub.process(Request(request_id="early"))
        raw.stub.notify(Event(name="early", payload=""))  # dropped, unanswered
        assert raw.stub.ping() is None
        assert raw.hello().version == 2
        assert raw.stub.echo("now") == "now"
    finally:
        raw.close()
    assert eventually(lambda: aserver.stats().notifications == 0 and aserver.stats().connections_open == 0)


def test_hello_pipelined_with_the_first_call(aserver):
    client = connect(aserver, pipeline_hello=True, await_farewell=False)
    assert client.echo("together") == "together"
    assert client.version == 2
    client.close()


def test_an_idle_session_is_closed_after_idle_timeout(start_async, caplog):
    server = start_async(limits=ServerLimits(idle_timeout=0.3))
    client = connect(server)
    assert eventually(lambda: server.connection_count == 0, 5.0)
    assert "idle timeout" in caplog.text
    with pytest.raises(ConnectionBroken):
        client.echo("too late")
    client.close()


def test_a_request_that_stops_halfway_is_dropped_at_request_timeout(start_async, caplog):
    server = start_async(limits=ServerLimits(request_timeout=0.3, idle_timeout=30))
    raw = RawConnection(server.port)
    try:
        raw.hello()
        began = time.monotonic()
        raw.socket.handle.sendall(encode_call("echo", HandshakeService.echo_args("x" * 100))[:20])
        assert read_until_closed(raw.socket.handle, 5.0) == b""
        assert time.monotonic() - began < 3.0
    finally:
        raw.close()
    assert eventually(lambda: "request timeout: the message did not arrive whole in time" in caplog.text)


def test_a_second_signal_ends_the_grace_period():
    process, port = serve_subprocess("--asyncio", "--grace", "30")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="long", payload="", work_ms=8000))
        wait_remote_in_flight(port, "process")
        os.kill(process.pid, signal.SIGTERM)
        read_log_until(process, "stopping: 1 connections open")
        began = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - began < 5.0
        outcome = call.result()  # the demo's work aborted: the call is told why
        assert isinstance(outcome, RemoteApplicationError) and "grace period is over" in str(outcome)
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_a_peer_that_does_not_read_its_replies_is_dropped_at_reply_timeout(start_async, caplog):
    server = start_async(limits=ServerLimits(reply_timeout=0.3, handshake_max_bytes=1024))
    raw = RawConnection(server.port)
    try:
        raw.hello()
        raw.socket.handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = encode_call("echo", HandshakeService.echo_args("x" * 8_000_000), seqid=2)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # the server resets it meanwhile
            for _ in range(3):  # 24 MB of replies: more than the kernel holds for a peer that reads nothing
                raw.socket.handle.sendall(request)
        assert eventually(lambda: "the peer did not read its reply within reply_timeout" in caplog.text, 10.0)
        assert eventually(lambda: server.connection_count == 0)
    finally:
        raw.close()


def test_the_stop_does_not_wait_for_a_silent_peer_on_the_tls_port(start_async, event_loop_thread):
    server = start_async(tls=SERVER_TLS)
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert eventually(lambda: server.connection_count == 1)
        began = time.monotonic()
        event_loop_thread.run(server.stop(grace=5.0))
        assert time.monotonic() - began < 1.0
        assert read_until_closed(silent, 2.0) == b""
    assert server.connection_count == 0


def test_a_plain_service_without_hello(start_async):
    server = start_async(SlowAsync(), handshake=False)
    client = connect(server, handshake=False)
    try:
        assert client.process(Request(request_id="plain")).request_id == "plain"
        assert client.echo("x").endswith("|None|x")  # no session: nothing bound
    finally:
        client.close()
    assert eventually(lambda: server.stats().calls.get("process") == 1)


def test_a_full_server_evicts_a_silent_connection_for_a_newcomer(start_async, caplog):
    server = start_async(limits=ServerLimits(max_connections=2))
    with socket.create_connection(("127.0.0.1", server.port)) as first, \
            socket.create_connection(("127.0.0.1", server.port)) as second:
        assert eventually(lambda: server.connection_count == 2)
        time.sleep(0.2)  # older than the moment a silent connection is safe from eviction (0.1 s)
        client = connect(server)
        assert client.echo("room made") == "room made"
        assert read_until_closed(first, 2.0) == b""  # the oldest silent one made room
        client.close()
    assert "evicted: no hello yet and the server was full" in caplog.text


def test_a_first_request_that_stops_halfway_on_a_plain_service_is_dropped_at_request_timeout(start_async, caplog):
    server = start_async(handshake=False, limits=ServerLimits(request_timeout=0.3))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args("x" * 100))[:20])
        assert read_until_closed(sock, 5.0) == b""
    assert eventually(lambda: "request timeout: the message did not arrive whole in time" in caplog.text)


def test_a_request_too_big_decoded_is_refused_before_it_is_decoded(start_async):
    """The decoded-size budget (max_decoded_bytes) prices unframed requests on this server too."""
    from test_memory_after_hello import _answer, _empty_structs_call

    server = start_async(limits=ServerLimits(max_decoded_bytes=8 * 1024 * 1024))
    raw = RawConnection(server.port)
    try:
        raw.hello()
        raw.socket.handle.sendall(_empty_structs_call(lists=1, per_list=200_000))  # 1.2 MB on the wire
        answer = _answer(read_until_closed(raw.socket.handle, 10.0), HandshakeService.echo_types_result)
    finally:
        raw.close()
    assert isinstance(answer, TApplicationException) and answer.type == TApplicationException.PROTOCOL_ERROR
    assert "decoded" in answer.message and "max_decoded_bytes=8388608" in answer.message
    fresh = connect(server)
    assert fresh.echo("still serving") == "still serving"
    fresh.close()


# -- draining that a load balancer can see ---------------------------------------------------------

def test_ping_and_hello_answer_draining_during_the_notice(start_async, event_loop_thread):
    from test_draining import _health_check

    server = start_async(drain_notice=1.0, grace=10.0)
    busy, idle = connect(server), connect(server)
    _health_check(server.port)  # healthy: no answer but the reply
    call = Background(busy.process, Request(request_id="in-flight", work_ms=600))
    wait_in_flight(server, "process")
    started = time.monotonic()
    stopping = asyncio.run_coroutine_threadsafe(server.stop(), event_loop_thread.loop)
    with pytest.raises(Draining) as pinged:  # the health check can tell, before the port closes
        _health_check(server.port)
    assert 0 < pinged.value.remaining_ms <= 10_000
    newcomer = Client("127.0.0.1", server.port, service=HandshakeService)
    with pytest.raises(ServerDraining, match="draining"):  # no new session
        newcomer.connect()
    with pytest.raises(ConnectionBroken, match="the server closed the session: draining") as told:
        idle.process(Request(request_id="never run"))
    assert told.value.may_have_run is False  # told before the server read it: safe to send again
    assert call.result().request_id == "in-flight"  # in-flight work is served to the end
    with pytest.raises(ConnectionBroken, match="draining"):
        busy.echo("closed after its reply, and told")
    stopping.result(10)
    assert 0.9 < time.monotonic() - started < 3.0  # the notice, then the (empty) rest of the drain
    assert server.stats().calls.get("process") == 1  # the in-flight one alone
    for client in (busy, idle, newcomer):
        client.close()


def test_a_plain_service_has_no_notice_and_a_second_request_ends_one(start_async, event_loop_thread):
    plain = start_async(drain_notice=30.0, grace=30.0, handshake=False)
    started = time.monotonic()
    event_loop_thread.run(plain.stop())  # nothing could answer Draining: the port closes at once
    assert time.monotonic() - started < 2.0
    server = start_async(drain_notice=30.0, grace=30.0)
    stopping = asyncio.run_coroutine_threadsafe(server.stop(), event_loop_thread.loop)
    assert eventually(lambda: server.stopping)
    started = time.monotonic()
    event_loop_thread.run(server.stop(grace=0))  # as a second SIGTERM does
    stopping.result(5)
    assert time.monotonic() - started < 2.0


# -- coroutine handlers need the asyncio server ------------------------------------------------------

def test_the_threaded_server_refuses_a_coroutine_handler():
    with pytest.raises(TypeError, match=r"SlowAsync\.process is a coroutine function .*\(serve --asyncio\)"):
        HandshakeServer(SlowAsync())


def test_serve_names_a_coroutine_handler_that_needs_asyncio(tmp_path):
    (tmp_path / "coro_handler.py").write_text(
        "from thrift_handshake_gen import HandshakeService\n\n\n"
        "class Echo(HandshakeService.Iface):\n"
        "    async def echo(self, message):\n"
        "        return message\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "serve", "--handler", "coro_handler:Echo",
                           "--path", str(tmp_path), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "coro_handler:Echo: echo is a coroutine function (async def): serve it with --asyncio" in done.stderr
    process, port = serve_subprocess("--asyncio", "--handler", "coro_handler:Echo", "--path", str(tmp_path))
    try:
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            assert client.echo("awaited") == "awaited"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stderr.close()


class FailingAsync(HandshakeService.Iface):
    """Coroutine methods that fail: with an exception the IDL declares, and with one it does not."""

    async def echo(self, message: str) -> str:
        await asyncio.sleep(0)
        raise HandshakeRequired(message=f"declared: {message}")

    async def process(self, request: Request) -> Response:
        await asyncio.sleep(0)
        raise ValueError(f"undeclared: {request.request_id}")


def test_interceptors_see_coroutine_handlers_fail(start_async):
    watch = Watch()
    server = start_async(FailingAsync(), interceptors=(watch,))
    client = connect(server)
    try:
        with pytest.raises(HandshakeRequired):
            client.echo("e")
        with pytest.raises(RemoteApplicationError):
            client.process(Request(request_id="p"))
    finally:
        client.close()
    assert eventually(lambda: len(watch.ended) == 4)  # hello, echo, process, goodbye
    assert [ended[:3] for ended in watch.ended[1:3]] == [("echo", "declared_error", ("e",)),
                                                         ("process", "failed", (Request(request_id="p"),))]
    assert all(ended[4] is not None and ended[4] >= 0 for ended in watch.ended[1:3]), "the handler's time"


def test_a_peer_that_sends_far_ahead_is_read_as_it_is_served(start_async) -> None:
    """Megabytes of pipelined calls: the server stops reading while too much waits unread, and reads on
    as it serves them; every call is answered, in order."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport

    server = start_async(handshake=False)
    calls = [encode_call("echo", HandshakeService.echo_args(message=f"{index:04d}" + "x" * 1000), seqid=index)
             for index in range(3000)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sender = threading.Thread(target=sock.sendall, args=(b"".join(calls),), daemon=True)
        sender.start()
        reader = TSocket.TSocket()
        reader.handle = sock
        protocol = TBinaryProtocolAccelerated(TTransport.TBufferedTransport(reader))
        echoed = []
        for _ in calls:
            _, _, seqid = protocol.readMessageBegin()
            result = HandshakeService.echo_result()
            result.read(protocol)
            protocol.readMessageEnd()
            echoed.append((seqid, result.success[:4]))
        sender.join(10)
    assert echoed == [(index, f"{index:04d}") for index in range(3000)]


def test_a_peer_that_half_closes_after_its_call_still_reads_the_answer(start_async) -> None:
    server = start_async(handshake=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="last words")))
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock, 5.0)
    assert answer.endswith(b"last words\x00")
