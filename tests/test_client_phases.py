"""The client's phases: every transition of the table, allowed and refused, against a real server."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from typing import Callable, Iterator

import re

import pytest
from conftest import eventually

import thrift_handshake

from thrift_handshake import (
    ArgumentError,
    CallTimeout,
    Client,
    ClientOptions,
    ClientPhase,
    ConnectError,
    ConnectionBroken,
    PhaseError,
    RequestEncodingError,
    Timeouts,
)
from thrift_handshake.states import (
    CLIENT_TRANSITIONS,
    SESSION_TRANSITIONS,
    ClientEvent,
    ClientPhase as Phase,
    SessionEvent,
    SessionPhase,
    StateMachine,
    mermaid_diagram,
)
from thrift_handshake_gen.ttypes import AllTypes, Point, Request
from thrift_handshake_gen import HandshakeService


def test_every_phase_has_a_row_and_every_target_is_a_phase():
    assert set(CLIENT_TRANSITIONS) == set(ClientPhase)
    assert set(SESSION_TRANSITIONS) == set(SessionPhase)
    for table in (CLIENT_TRANSITIONS, SESSION_TRANSITIONS):
        for moves in table.values():
            assert all(target in table for target in moves.values())


def test_the_table_refuses_what_it_does_not_list():
    for phase, moves in CLIENT_TRANSITIONS.items():
        for event in ClientEvent:
            machine = StateMachine(CLIENT_TRANSITIONS, phase)
            if event in moves:
                assert machine.apply(event) is moves[event]
            else:
                with pytest.raises(PhaseError) as caught:
                    machine.apply(event)
                assert phase.value in str(caught.value) and event.value in str(caught.value)
                assert machine.phase is phase


def test_session_table_keeps_a_session_on_a_second_hello():
    machine = StateMachine(SESSION_TRANSITIONS, SessionPhase.AWAITING_HELLO)
    machine.apply(SessionEvent.HELLO_ACCEPTED)
    assert machine.apply(SessionEvent.HELLO_REJECTED) is SessionPhase.ESTABLISHED
    with pytest.raises(PhaseError):
        machine.apply(SessionEvent.HELLO_ACCEPTED)


def test_diagram_lists_every_transition():
    diagram = mermaid_diagram(CLIENT_TRANSITIONS)
    assert "READY --> BROKEN: failure" in diagram
    assert "HANDSHAKING --> READY: hello_accepted" in diagram


def test_normal_life_new_ready_closed(server):
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    assert client.phase is Phase.NEW
    client.connect()
    assert client.phase is Phase.READY
    farewell = client.goodbye()
    assert farewell.session_id == client.session_id
    assert client.phase is Phase.CLOSED
    client.connect()  # CLOSED -> CONNECTING: a new session
    assert client.session_id != farewell.session_id
    client.close()
    client.close()  # idempotent
    assert client.phase is Phase.CLOSED


@pytest.mark.parametrize("action", ["call", "goodbye"])
def test_calls_out_of_phase_name_the_phase(server, action):
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    with pytest.raises(PhaseError) as caught:
        client.echo("x") if action == "call" else client.goodbye()
    assert "NEW" in str(caught.value) and "connect()" in str(caught.value)
    client.connect()
    client.close()
    with pytest.raises(PhaseError) as caught:
        client.echo("x")
    assert "CLOSED" in str(caught.value)


def test_connect_twice_is_refused(client):
    with pytest.raises(PhaseError) as caught:
        client.connect()
    assert "READY" in str(caught.value)


def test_context_manager_says_goodbye_also_when_the_block_raises(server, client):
    with pytest.raises(KeyError):
        with Client("127.0.0.1", server.port, service=HandshakeService) as inner:
            inner.echo("x")
            raise KeyError("boom")
    assert inner.phase is Phase.CLOSED
    assert inner.farewell is not None and inner.farewell.calls == 1
    assert client.stats().sessions_active == 1


def test_connect_refused_is_a_connect_error_and_leaves_closed():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        client = Client("127.0.0.1", port, service=HandshakeService)
        with pytest.raises(ConnectError):
            client.connect()
    assert client.phase is Phase.CLOSED
    assert client.timeline[-1].phase == "connect" and not client.timeline[-1].ok


def test_a_timeout_leaves_the_client_broken_and_no_late_reply_is_read(server):
    options = ClientOptions(timeouts=Timeouts(call=0.2))
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    client.connect()
    with pytest.raises(CallTimeout) as caught:
        client.process(Request(request_id="slow", payload="late", work_ms=600))
    assert isinstance(caught.value, ConnectionBroken)
    assert client.phase is Phase.BROKEN
    with pytest.raises(PhaseError) as refused:
        client.echo("x")
    assert "BROKEN" in str(refused.value) and "reconnect()" in str(refused.value)
    assert eventually(lambda: server.metrics.snapshot().connections_open == 0, 5)  # the late reply was written, and
    client.reconnect()                                                   # the old connection ended
    assert client.phase is Phase.READY
    assert client.echo("fresh") == "fresh"
    assert client.process(Request(request_id="next", payload="")).request_id == "next"
    client.close()


def test_server_closing_the_connection_breaks_the_client(server, client):
    for connection in list(server._connections):
        connection.shutdown(force=True)
    with pytest.raises(ConnectionBroken):
        client.echo("x")
    assert client.phase is Phase.BROKEN
    client.close()
    assert client.phase is Phase.CLOSED


@pytest.mark.parametrize("call, says", [
    (lambda c: c.echo_types(AllTypes(id="x", small=1000)), "parameter 'value'.small: expected an i8 in -128..127"),
    (lambda c: c.echo(12345), "parameter 'message': expected a string"),
    (lambda c: c.echo(b"bytes"), "parameter 'message': expected a string (str; binary fields take bytes)"),
    (lambda c: c.echo_types(AllTypes(id="x", data="text")), ".data: expected binary (bytes)"),
    (lambda c: c.echo_types(AllTypes(small=1)), "Required field id is unset"),
    (lambda c: c.echo_types(AllTypes(id="x", numbers=[1, "2"])), ".numbers[1]: expected an i32"),
    (lambda c: c.echo_types(AllTypes(id="x", groups={"g": [Point(x=2**31)]})), ".groups['g'][0].x: expected an i32"),
])
def test_a_value_its_type_cannot_carry_is_refused_before_anything_is_sent(client, call, says):
    sent = client._sock.bytes_out
    with pytest.raises(RequestEncodingError, match=re.escape(says)):
        call(client)
    assert client._sock.bytes_out == sent, "part of the request went out"
    assert client.phase is Phase.READY
    assert client.echo("clean") == "clean"


def test_an_encoding_error_sends_nothing_and_keeps_the_connection(client):
    with pytest.raises(RequestEncodingError):
        client.echo_types(AllTypes(id="x", small=1000))  # i8 out of range
    with pytest.raises(RequestEncodingError):
        client.echo(12345)  # not a string
    assert client.phase is Phase.READY
    assert client.echo("clean") == "clean"
    assert client.echo_types(AllTypes(id="ok", small=1)).small == 1


def test_unknown_method_and_phase_methods_are_argument_errors(client):
    with pytest.raises(AttributeError):
        client.no_such_method
    with pytest.raises(ArgumentError):
        client.call("no_such_method")
    with pytest.raises(ArgumentError):
        client.call("goodbye")
    assert client.echo("still ready") == "still ready"


def test_calls_from_many_threads_are_serialized(client):
    results, errors = [], []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                text = f"{n}-{i}"
                if client.echo(text) != text:
                    errors.append(text)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        results.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4


def test_handshake_timeout_breaks_the_client(start_server):
    """A server that accepts but never answers: the hello times out and the client is BROKEN."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        client = Client("127.0.0.1", silent.getsockname()[1],
                        ClientOptions(timeouts=Timeouts(handshake=0.2)), service=HandshakeService)
        with pytest.raises(CallTimeout):
            client.connect()
        assert client.phase is Phase.BROKEN
        client.close()
        assert client.phase is Phase.CLOSED


def test_a_hello_that_cannot_be_encoded_leaves_closed(server):
    client = Client("127.0.0.1", server.port, ClientOptions(client_name=255), service=HandshakeService)  # not a str
    with pytest.raises(RequestEncodingError):
        client.connect()
    assert client.phase is Phase.CLOSED
    client.options = ClientOptions()
    assert client.connect().version == 2
    client.close()


def _reply(method: str, result, seqid: int = 2) -> bytes:
    """A reply as a server writes it; the client numbers its calls 1 (hello), 2, ... and checks."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport.TTransport import TMemoryBuffer

    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin(method, TMessageType.REPLY, seqid)
    result.write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()


@contextlib.contextmanager
def loopback_peer(serve: Callable[[socket.socket], None], receive_buffer: int = 0) -> Iterator[int]:
    """A loopback peer that accepts one connection and lets ``serve`` handle it (OSError ends it
    quietly); yields its port. ``receive_buffer``: a small SO_RCVBUF makes it a slow reader."""
    with socket.socket() as listener:
        if receive_buffer:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def accept_one() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(5)
                try:
                    serve(connection)
                except OSError:
                    pass

        peer = threading.Thread(target=accept_one)
        peer.start()
        try:
            yield listener.getsockname()[1]
        finally:
            peer.join(5)


def _hello_reply(server_hello=None) -> bytes:
    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ServerHello

    server_hello = server_hello or ServerHello(session_id="s", version=2)
    return _reply("hello", SessionService.hello_result(success=server_hello), seqid=1)


@contextlib.contextmanager
def fake_peer(answer_call: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback peer that accepts hello, then lets ``answer_call`` answer the next request; yields its port."""
    def serve(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply())
        connection.recv(65536)
        answer_call(connection)

    with loopback_peer(serve) as port:
        yield port


@contextlib.contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """Raises KeyboardInterrupt in this (main) thread after ``seconds``, like a Ctrl-C."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_call_timeout_bounds_the_whole_reply_even_when_it_trickles():
    """A peer that drips its reply a byte at a time cannot stretch a call past its timeout."""
    from thrift_handshake_gen import HandshakeService

    echo = _reply("echo", HandshakeService.echo_result(success="x" * 20))
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        for byte in echo:
            if stop.wait(0.05):
                return
            connection.send(bytes([byte]))

    with fake_peer(drip) as port:
        client = Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(call=0.5)), service=HandshakeService)
        client.connect()
        started = time.monotonic()
        with pytest.raises(CallTimeout):
            client.echo("x")
        assert time.monotonic() - started < 1.0
        assert client.phase is Phase.BROKEN
        stop.set()
        client.close()


def test_an_interrupted_call_never_hands_its_reply_to_the_next(server):
    """Ctrl-C during a call: the client is BROKEN, so the late reply cannot be read by the next call."""
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    with interrupt_after(0.1), pytest.raises(KeyboardInterrupt):
        client.process(Request(request_id="interrupted", payload="", work_ms=400))
    assert client.phase is Phase.BROKEN
    assert eventually(lambda: server.metrics.snapshot().connections_open == 0, 5)  # the late reply was written
    client.reconnect()
    assert client.echo("first") == "first"
    assert client.echo("second") == "second"
    client.close()


def test_client_reads_the_largest_message_the_server_accepts(client):
    largest = client.server_hello.max_message_bytes  # the whole message: its header and framing included
    text = "x" * (largest - 64)
    assert client.echo(text) == text
    with pytest.raises(thrift_handshake.RemoteApplicationError, match="max_message_bytes"):
        client.echo("x" * largest)


def test_call_timeout_bounds_writing_a_request_the_peer_reads_slowly():
    """Each send's kernel timeout restarts whenever a few bytes move: a peer reading 64 KiB every 0.2 s
    held an 8 MiB call with a 1 s timeout for 18 s."""
    from thrift_handshake_gen import HandshakeService

    stop = threading.Event()

    def read_slowly(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply())
        while not stop.wait(0.2) and connection.recv(65536):
            pass

    try:
        with loopback_peer(read_slowly, receive_buffer=8192) as port:
            client = Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(call=1.0)), service=HandshakeService)
            client.connect()
            started = time.monotonic()
            with pytest.raises(CallTimeout):
                client.echo("x" * (8 << 20))
            assert time.monotonic() - started < 3.0
            assert client.phase is Phase.BROKEN
            client.close()
            stop.set()
    finally:
        stop.set()


def test_a_peer_that_echoes_the_request_back_is_not_taken_for_a_server():
    """Only REPLY and EXCEPTION answer a call: a reflected CALL (same name, same seqid) was read as the
    reply, so hello "refused" the client with its own name and ping "succeeded"."""
    from thrift_handshake_gen import HandshakeService

    def reflect(connection: socket.socket) -> None:
        data = connection.recv(65536)
        while data:
            connection.sendall(data)
            data = connection.recv(65536)

    with loopback_peer(reflect) as port:
        client = Client("127.0.0.1", port, service=HandshakeService)
        with pytest.raises(ConnectionBroken, match="not a reply"):
            client.connect()
        assert client.phase is Phase.BROKEN
        client.close()


@contextlib.contextmanager
def peer_saying(server_hello) -> Iterator[int]:
    """A loopback peer that answers hello with ``server_hello``, then one echo; yields its port."""
    from thrift_handshake_gen import HandshakeService

    def serve(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply(server_hello))
        if connection.recv(65536):
            connection.sendall(_reply("echo", HandshakeService.echo_result(success="x")))
        connection.recv(65536)

    with loopback_peer(serve) as port:
        yield port


@pytest.mark.parametrize("answer, says", [
    (dict(version=99), "version 99, outside the 1..2 this client offered"),
    (dict(version=0), "version 0, outside the 1..2 this client offered"),
    (dict(version=2, features={"never-offered"}), "features it was not offered: never-offered"),
], ids=["version 99", "version 0", "unoffered feature"])
def test_a_server_hello_outside_what_the_client_offered_breaks_the_connection(answer, says):
    """The client went READY with a version (or features) it never offered, and code branching on them
    took a path it does not have."""
    from thrift_handshake_gen import HandshakeService
    from thrift_handshake_gen.session.ttypes import ServerHello

    with peer_saying(ServerHello(session_id="s", **answer)) as port:
        client = Client("127.0.0.1", port, ClientOptions(versions=(1, 2)), service=HandshakeService)
        with pytest.raises(ConnectionBroken, match=says):
            client.connect()
        assert client.phase is Phase.BROKEN
        client.close()


@pytest.mark.parametrize("idle_timeout_ms", [0, -1])
def test_an_idle_timeout_of_zero_or_less_means_none(idle_timeout_ms):
    """-1 used to be taken literally: every call then failed, "idle 0.0 s ... closes sessions idle for -0.001 s"."""
    from thrift_handshake_gen import HandshakeService
    from thrift_handshake_gen.session.ttypes import ServerHello

    with peer_saying(ServerHello(session_id="s", version=2, idle_timeout_ms=idle_timeout_ms)) as port:
        with Client("127.0.0.1", port, ClientOptions(await_farewell=False), service=HandshakeService) as client:
            assert client.echo("x") == "x"


def test_a_corrupt_reply_breaks_the_client_instead_of_desynchronizing_it():
    """A reply that is not valid Thrift is a broken connection, not a service error; nothing stale is read."""
    from thrift_handshake_gen import HandshakeService

    def corrupt(connection: socket.socket) -> None:
        connection.sendall(b"\x80\x01\x00\x02\x00\x00\x00\x04echo\x00\x00\x00\x02\x0b\x00\x00"
                           + _reply("echo", HandshakeService.echo_result(success="STALE")))
        connection.recv(65536)

    with fake_peer(corrupt) as port:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        with pytest.raises(ConnectionBroken):
            client.echo("one")
        assert client.phase is Phase.BROKEN
        client.close()


def test_ctrl_c_while_connecting_leaves_a_clean_closed_client(server):
    """Ctrl-C during a TLS handshake that a silent peer never answers: CLOSED, and connect() works again."""
    from pathlib import Path

    from thrift_handshake import ClientTLS

    certs = Path(__file__).resolve().parent / "certs"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        client = Client("127.0.0.1", silent.getsockname()[1],
                        ClientOptions(tls=ClientTLS(ca_file=str(certs / "ca.pem"))), service=HandshakeService)
        with interrupt_after(0.2), pytest.raises(KeyboardInterrupt):
            client.connect()
    assert client.phase is Phase.CLOSED
    client.port, client.options = server.port, ClientOptions()
    assert client.connect().version == 2
    client.close()


def test_after_a_call_timeout_the_server_sees_the_connection_end_at_once():
    """BROKEN means the socket is gone: the peer reads EOF right after the timeout, not at exit."""
    seen = {}

    def never_answer(connection: socket.socket) -> None:
        connection.settimeout(5)
        started = time.monotonic()
        try:
            seen["eof"] = connection.recv(1) == b""
        except OSError:  # a reset is an end too
            seen["eof"] = True
        seen["after"] = time.monotonic() - started

    with fake_peer(never_answer) as port:
        client = Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(call=0.3)), service=HandshakeService)
        client.connect()
        with pytest.raises(CallTimeout):
            client.echo("never answered")
        assert client.phase is Phase.BROKEN
    assert seen["eof"] and seen["after"] < 2.0, seen  # ended by the client's timeout (0.3 s), not the peer's 5 s


@pytest.mark.parametrize("name, seqid", [("echo", 1), ("ping", 2), ("echo", 7)])
def test_a_reply_to_another_call_is_never_taken_as_the_answer(name, seqid):
    """A duplicated, stale or misrouted reply (wrong method or seqid) breaks the connection."""
    from thrift_handshake_gen import HandshakeService

    def misrouted(connection: socket.socket) -> None:
        connection.sendall(_reply(name, HandshakeService.echo_result(success="STALE"), seqid=seqid))
        connection.recv(65536)

    with fake_peer(misrouted) as port:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        with pytest.raises(ConnectionBroken, match="stale or foreign reply"):
            client.echo("mine")
        assert client.phase is Phase.BROKEN


def test_a_call_without_timeout_is_not_cut_by_the_handshake_timeout(server):
    """hello runs within the handshake timeout; a call whose timeout is None may take longer than that
    (no timeout of an earlier exchange may linger on the socket)."""
    from thrift_handshake_gen.ttypes import Request

    options = ClientOptions(timeouts=Timeouts(handshake=0.3, call=None))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        result = client.process(Request(request_id="slow", payload="p", work_ms=1300))  # past any 1 s timeout too
        assert result.request_id == "slow"
        assert client.echo("after") == "after"


def test_a_call_timeout_much_longer_than_hellos_is_the_calls_own(server):
    """The kernel timeout left from hello (0.5 s) is re-set for a call allowed 30 s, however far apart they are."""
    from thrift_handshake_gen.ttypes import Request

    options = ClientOptions(timeouts=Timeouts(handshake=0.5, call=30.0))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.process(Request(request_id="slow", payload="p", work_ms=1200)).request_id == "slow"


def test_a_client_without_a_connect_timeout_connects_and_keeps_its_record(server):
    options = ClientOptions(timeouts=Timeouts(connect=None))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("no connect timeout") == "no connect timeout"
        connect = next(iter(client.timeline))
        assert (connect.phase, connect.error) == ("connect", None)


class _Unwritable(AllTypes):
    """Passes the argument check, then fails in the (pure Python) encoder, before any byte is sent."""

    def write(self, oprot):
        raise ValueError("no encoding for this one")


def test_a_request_the_encoder_fails_on_before_sending_anything_keeps_the_connection(server):
    from thrift_handshake import Wire

    with Client("127.0.0.1", server.port, ClientOptions(wire=Wire(accelerated=False)),
                service=HandshakeService) as client:
        sent = client._sock.bytes_out
        with pytest.raises(RequestEncodingError) as caught:
            client.echo_types(_Unwritable(id="x"))
        assert str(caught.value) == "echo_types: cannot encode the arguments: no encoding for this one"
        assert client._sock.bytes_out == sent
        assert client.phase is Phase.READY
        assert client.echo("clean") == "clean"


def test_the_client_logs_each_phase_change_at_debug_level(server, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="thrift_handshake.client"):
        with Client("127.0.0.1", server.port, service=HandshakeService):
            pass
    moves = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client" and "--" in r.getMessage()]
    where = f"127.0.0.1:{server.port}"
    assert moves == [f"{where} NEW --connect--> CONNECTING", f"{where} CONNECTING --transport_open--> HANDSHAKING",
                     f"{where} HANDSHAKING --hello_accepted--> READY", f"{where} READY --goodbye--> CLOSING",
                     f"{where} CLOSING --closed--> CLOSED"]


def test_a_hello_the_server_cannot_decode_leaves_the_client_closed_and_able_to_connect_again(start_server):
    from thrift_handshake import RemoteApplicationError, ServerLimits

    server = start_server(limits=ServerLimits(handshake_max_bytes=1024))
    options = ClientOptions(features={letter * 250 for letter in "abcde"})  # a hello over 1024 bytes
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    with pytest.raises(RemoteApplicationError) as caught:
        client.connect()
    assert str(caught.value) == ("hello: server error 7: cannot decode the hello request: more than 1024 bytes "
                                 "before hello() succeeded (handshake_max_bytes)")
    assert client.phase is Phase.CLOSED
    client.options = ClientOptions()
    assert client.connect().session_id
    client.close()


def test_close_after_the_server_went_away_never_raises_and_leaves_the_client_closed(start_server, caplog):
    import logging

    server = start_server()
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    server.stop()
    with caplog.at_level(logging.INFO, logger="thrift_handshake.client"):
        assert client.close() is None
    assert client.phase is Phase.CLOSED
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "thrift_handshake.client"] == [
        "goodbye failed while closing"]


def test_a_hello_its_type_cannot_carry_is_refused_before_anything_is_written_every_time(server):
    """The hello of given options is checked once and then reused: one that fails its check is never kept,
    so every client with those options is refused alike, and nothing reaches the server."""
    options = ClientOptions(client_name=123)  # type: ignore[arg-type]
    for _ in range(2):
        client = Client("127.0.0.1", server.port, options, service=HandshakeService)
        with pytest.raises(RequestEncodingError) as caught:
            client.connect()
        assert str(caught.value) == ("hello: parameter 'hello'.client_name: expected a string (str; binary fields "
                                     "take bytes), got 123 (int); nothing was sent")
        client.close()
    assert server.metrics.snapshot().handshakes_rejected == 0 and server.metrics.snapshot().handshakes_ok == 0
