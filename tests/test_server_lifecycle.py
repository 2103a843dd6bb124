"""The server's life: goodbye, graceful stop, signals, limits, bad input, IPv6."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import encode_call, eventually, report_reliability
from thrift.transport.TTransport import TTransportException

from thrift_handshake import (
    ServiceError,
    Client,
    ClientOptions,
    ClientPhase,
    ConnectError,
    ConnectionBroken,
    HandshakeFailed,
    HandshakeServer,
    RemoteApplicationError,
    ServerConfig,
    ServerFull,
    ServerLimits,
    Wire,
)
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen.ttypes import AllTypes, Request
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello


def _wait_in_flight(server, method: str, timeout: float = 5.0) -> None:
    """Waits until ``server`` has started serving a ``method`` message (counted at message begin)."""
    deadline = time.monotonic() + timeout
    while server.metrics.snapshot().calls.get(method, 0) < 1:
        assert time.monotonic() < deadline, f"no {method} call reached the server"
        time.sleep(0.01)


def _wait_remote_in_flight(port: int, method: str, timeout: float = 5.0) -> None:
    """The same, for a server in another process: asks its stats() from a second connection."""
    deadline = time.monotonic() + timeout
    with Client("127.0.0.1", port, service=HandshakeService) as observer:
        while observer.stats().calls.get(method, 0) < 1:
            assert time.monotonic() < deadline, f"no {method} call reached the server"
            time.sleep(0.01)


class Background:
    """Runs one call on a thread; ``outcome`` is its result or the exception it raised."""

    def __init__(self, call, *args) -> None:
        self.outcome = None
        self._thread = threading.Thread(target=self._run, args=(call, args))
        self._thread.start()

    def _run(self, call, args) -> None:
        try:
            self.outcome = call(*args)
        except Exception as error:
            self.outcome = error

    def result(self, timeout: float = 10.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not finish"
        return self.outcome


def test_goodbye_returns_the_farewell_then_the_server_closes(raw):
    connection = raw()
    hello = connection.hello()
    connection.stub.echo("one")
    connection.stub.echo("two")
    farewell = connection.stub.goodbye()
    assert farewell.session_id == hello.session_id
    assert farewell.calls == 2
    assert farewell.duration_ms >= 0
    with pytest.raises(TTransportException):
        connection.stub.echo("after goodbye")


def test_goodbye_ends_the_session_in_stats(client, connect):
    other = connect()
    assert client.stats().sessions_active == 2
    other.goodbye()
    stats = client.stats()
    assert stats.sessions_active == 1
    assert stats.connections_open == 1, "a connection that said goodbye no longer counts as open"
    assert stats.calls["goodbye"] == 1


def test_graceful_stop_lets_the_in_flight_call_finish(start_server):
    server = start_server()
    busy = Client("127.0.0.1", server.port, service=HandshakeService)
    idle = Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    idle.connect()
    call = Background(busy.process, Request(request_id="in-flight", payload="p", work_ms=500))
    _wait_in_flight(server, "process")
    started = time.monotonic()
    server.stop(grace=5.0)
    stopped_in = time.monotonic() - started
    assert call.result().request_id == "in-flight"
    assert 0.2 < stopped_in < 4.0
    with pytest.raises(ConnectionBroken):
        idle.echo("idle connections are closed")
    with pytest.raises(ConnectionBroken):
        busy.echo("closed after its reply")
    with pytest.raises(ConnectError):
        Client("127.0.0.1", server.port, service=HandshakeService).connect()
    busy.close()
    idle.close()


def test_grace_period_bounds_the_stop(start_server):
    server = start_server()
    busy, waiting = Client("127.0.0.1", server.port, service=HandshakeService), Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    waiting.connect()
    ack = waiting.submit(Request(request_id="job", work_ms=9000))
    process = Background(busy.process, Request(request_id="r", work_ms=8000))
    wait = Background(waiting.get_result, ack.ticket, 30000)
    _wait_in_flight(server, "process")
    _wait_in_flight(server, "get_result")
    started = time.monotonic()
    server.stop(grace=0.5)
    assert time.monotonic() - started < 3.0, "the grace period must bound the stop"
    aborted = process.result()  # the cut-off call learns why, not "read 0 bytes"
    assert isinstance(aborted, RemoteApplicationError) and "server is stopping" in str(aborted), aborted
    waited = wait.result()
    assert isinstance(waited, (ServiceError, ConnectionBroken)), waited
    busy.close()
    waiting.close()


def test_stop_frees_the_port_and_leaves_no_threads(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("x")
    port = server.port
    server.stop()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    # start_server's teardown asserts no thread outlives the stop


def test_a_handler_exception_keeps_connection_and_server(client, connect):
    for _ in range(3):
        with pytest.raises(RemoteApplicationError):
            client.fail("boom")
    assert client.echo("alive") == "alive"
    assert connect().echo("server alive") == "server alive"


def test_ipv6_loopback(start_server):
    server = start_server(host="::1")
    with Client("::1", server.port, service=HandshakeService) as client:
        assert client.echo("v6") == "v6"
        assert client.stats().connections_open == 1


def test_a_full_server_says_so_and_the_client_raises_server_full(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as first:
        extra = Client("127.0.0.1", server.port, service=HandshakeService)
        with pytest.raises(ServerFull, match="server full: 1 connections") as caught:
            extra.connect()
        assert isinstance(caught.value, ConnectError) and extra.phase is ClientPhase.CLOSED
        assert first.echo("first still served") == "first still served"


def test_connections_that_never_say_hello_cannot_lock_everyone_out(start_server):
    server = start_server(limits=ServerLimits(max_connections=4, evict_after=0.2))
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        assert eventually(lambda: server.connection_count == 4)  # every slot taken by a silent socket
        time.sleep(0.3)  # all of them older than evict_after
        for n in range(3):  # each newcomer evicts the oldest connection without a session
            with Client("127.0.0.1", server.port, service=HandshakeService) as client:
                assert client.echo(f"served {n}") == f"served {n}"
        assert silent[0].recv(1) == b""  # the oldest silent socket was closed to make room
        report_reliability("4 silent sockets against max_connections 4 (no lock-out)", 3, True, 0)
    finally:
        for sock in silent:
            sock.close()


def test_a_connection_whose_hello_is_under_way_is_not_evicted_for_a_newcomer(start_server):
    # A newcomer to a full server used to evict a connection accepted a moment before it, whose hello
    # had not been read yet (or was being answered): a well-behaved client got ConnectionBroken.
    server = start_server(limits=ServerLimits(max_connections=2, evict_after=1.0))
    with Client("127.0.0.1", server.port, service=HandshakeService) as settled:
        young = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            young.sendall(encode_call("hello", SessionService.hello_args(
                hello=ClientHello(client_name="slow", min_version=1, max_version=2)))[:20])  # under way
            assert eventually(lambda: server.connection_count == 2)
            with pytest.raises(ServerFull):
                Client("127.0.0.1", server.port, service=HandshakeService).connect()
            young.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open: nothing, not even EOF, to read
                young.recv(1)
            time.sleep(1.0)  # now older than evict_after and still without hello: it makes room
            with Client("127.0.0.1", server.port, service=HandshakeService) as newcomer:
                assert newcomer.echo("admitted") == "admitted"
            young.setblocking(True)
            assert young.recv(1) == b""
            assert settled.echo("still served") == "still served"
        finally:
            young.close()


def test_a_flood_of_silent_connections_cannot_keep_good_clients_out(start_server):
    # Connections that have sent nothing are not a hello under way: once a moment old (well under
    # evict_after) they make room. A flood of them, each younger than evict_after, locked good clients out.
    server = start_server(limits=ServerLimits(max_connections=3, evict_after=5.0))
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        assert eventually(lambda: server.connection_count == 3)
        time.sleep(0.3)
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            assert client.echo("let in") == "let in"
        assert silent[0].recv(1) == b""  # the oldest silent one made room
    finally:
        for sock in silent:
            sock.close()


def test_handshake_timeout_closes_a_silent_connection(start_server, raw):
    server = start_server(limits=ServerLimits(handshake_timeout=0.3))
    connection = raw(server.port)
    connection.stub.ping()
    time.sleep(0.6)
    with pytest.raises(TTransportException):
        connection.stub.ping()


def test_idle_timeout_closes_a_silent_session(start_server, raw):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    connection = raw(server.port)
    assert connection.hello().idle_timeout_ms == 300
    connection.stub.echo("active")
    time.sleep(0.6)
    with pytest.raises(TTransportException):
        connection.stub.echo("too late")


def test_the_client_knows_the_idle_timeout_and_says_so(start_server):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    client.echo("active")
    time.sleep(0.4)
    with pytest.raises(ConnectionBroken) as caught:
        client.echo("too late")
    assert "idle" in str(caught.value) and "reconnect()" in str(caught.value)
    assert client.phase is ClientPhase.BROKEN
    client.reconnect()
    assert client.echo("again") == "again"
    client.close()


@pytest.mark.parametrize("accelerated", [True, False], ids=["C extension", "pure Python"])
def test_oversized_message_is_refused_with_a_protocol_error(start_server, accelerated):
    server = start_server(limits=ServerLimits(max_message_bytes=1024), wire=Wire(accelerated=accelerated))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo("x" * 1000) == "x" * 1000
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x" * 5000)
        assert caught.value.type == 7  # PROTOCOL_ERROR
        assert "exceeds this server's limits (max_message_bytes=1024" in str(caught.value)
        assert client.phase is ClientPhase.BROKEN
    with Client("127.0.0.1", server.port, service=HandshakeService) as fresh:
        assert fresh.echo("server fine") == "server fine"


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"\x82\x21\x00\x04ping\x00",  # compact protocol
        b"\x00\x00\x00\x10\x80\x01\x00\x01\x00\x00\x00\x04ping",  # framed
        b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x00\x0b\x00\x01\xff\xff\xff\xff",  # bad length
        bytes(range(256)) * 4,
    ],
)
def test_garbage_never_hurts_the_server(server, client, send_raw, garbage):
    send_raw(server.port, garbage)
    assert client.echo("still here") == "still here"


def _serve_subprocess(*flags: str, env=None) -> "tuple[subprocess.Popen, int]":
    process = subprocess.Popen(
        [sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0", *flags],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        match = re.search(r"listening on \S+:(\d+)", line)
        if match:
            return process, int(match.group(1))
    process.kill()
    raise AssertionError("the server did not report its port")


def _read_log_until(process: subprocess.Popen, text: str, timeout: float = 10.0) -> str:
    """Reads the server's log until a line contains ``text`` (the server reached that state)."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if text in line:
            return "".join(lines)
        assert line, f"the server's log ended without {text!r}:\n{''.join(lines)}"
    raise AssertionError(f"no {text!r} in the server's log within {timeout} s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_cli_server_gracefully(signum):
    process, port = _serve_subprocess("--grace", "5")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="sig", payload="", work_ms=500))
        _wait_remote_in_flight(port, "process")
        os.kill(process.pid, signum)
        assert process.wait(timeout=10) == 0
        assert call.result().request_id == "sig"
        remaining = process.stderr.read()
        assert "stopped" in remaining
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_cli_server_logs_one_line_per_connection_and_each_event_at_debug(raw, level):
    process, port = _serve_subprocess("--log-level", level, env=dict(os.environ, THRIFT_HANDSHAKE_AUTH_TOKEN="t0ken"))
    try:
        with pytest.raises(HandshakeFailed):
            Client("127.0.0.1", port, ClientOptions(auth_token="bad"), service=HandshakeService).connect()
        with Client("127.0.0.1", port, ClientOptions(auth_token="t0ken"), service=HandshakeService) as client:
            client.echo("x")
        vanishing = raw(port)
        vanishing.hello(auth_token="t0ken")
        vanishing.close()  # gone without goodbye
        log = _read_log_until(process, "without goodbye")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        log += process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    closed = re.findall(r"INFO thrift_handshake.server: closed peer=\S+ session=\w+ client='thrift-handshake-python' "
                        r"version=2 calls=1 duration_ms=\d+: after goodbye", log)
    assert len(closed) == 1, log  # the connection's one line says who it was and what it did
    assert re.search(r"WARNING thrift_handshake.server: dropped peer=\S+ session=\w+ client='raw-test' .*without goodbye", log)
    assert "handshake rejected" in log and "t0ken" not in log
    per_event = ["accepted", "handshake ok", "goodbye peer"]
    if level == "DEBUG":
        for event in per_event:
            assert event in log, f"no {event!r} line in:\n{log}"
    else:
        assert not [event for event in per_event if event in log], log


def test_oversized_container_is_refused(start_server):
    server = start_server(limits=ServerLimits(max_container_items=100))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert len(client.echo_types(AllTypes(id="ok", numbers=list(range(100)))).numbers) == 100
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo_types(AllTypes(id="big", numbers=list(range(101))))
        assert caught.value.type == 7


def test_a_second_signal_stops_at_once():
    process, port = _serve_subprocess("--grace", "30")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="long", work_ms=3000))
        _wait_remote_in_flight(port, "process")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _read_log_until(process, "stopping:")  # the first signal is being handled: the drain began
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 2.0  # not the 30 s grace, nor the 3 s of work
        outcome = call.result()  # told why: the server is stopping
        assert isinstance(outcome, RemoteApplicationError) and "server is stopping" in str(outcome), outcome
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_handshake_timeout_is_a_deadline_not_an_idle_timer(start_server, raw):
    server = start_server(limits=ServerLimits(handshake_timeout=0.5))
    connection = raw(server.port)
    started = time.monotonic()
    with pytest.raises(TTransportException):
        while time.monotonic() - started < 3.0:
            connection.stub.ping()  # activity without hello does not extend the deadline
            time.sleep(0.1)
    assert time.monotonic() - started < 1.5


def test_a_non_call_message_is_refused(server, client, send_raw):
    import struct as wire

    name = b"echo"
    reply_type_message = wire.pack("!I", 0x80010002) + wire.pack("!I", len(name)) + name + wire.pack("!i", 0) + b"\0"
    assert b"not a call" in send_raw(server.port, reply_type_message)
    assert client.echo("fine") == "fine"


def test_an_oversized_request_gets_its_refusal_even_while_still_sending(start_server):
    server = start_server(limits=ServerLimits(max_message_bytes=1024))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x" * 8_000_000)
        assert caught.value.type == 7 and "limit" in str(caught.value)


def test_request_stop_then_stop_keeps_the_grace_period(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        call = Background(client.process, Request(request_id="drained", work_ms=400))
        _wait_in_flight(server, "process")
        server.request_stop()
        server.stop()
        assert call.result().request_id == "drained"


def test_a_reply_the_handler_cannot_encode_fails_that_call_only(start_server):
    from thrift_handshake.demo import HandshakeHandler

    class WrongType(HandshakeHandler):
        def echo(self, message):
            return 12345 if message == "bad" else message

    server = start_server(WrongType())
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("bad")
        assert caught.value.type == 6 and "encode the echo reply" in str(caught.value)
        assert client.echo("fine") == "fine"
        assert client.phase is ClientPhase.READY


# -- the server's own life: sockets, stop races, signals ----------------------------------------

def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_constructing_a_server_opens_no_socket():
    before = _open_fds()
    server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
    assert _open_fds() == before  # the stop's wake-up pair belongs to serve(), not to the object
    server.stop()
    assert _open_fds() == before


def test_stop_right_after_serve_began_on_a_user_thread_always_returns():
    for _ in range(30):
        server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
        thread = threading.Thread(target=server.serve)
        thread.start()
        server.stop()
        thread.join(5)
        assert not thread.is_alive(), "serve() kept running after stop()"
        with pytest.raises(RuntimeError):
            server.serve()  # a stopped server cannot be restarted


def test_serve_leaves_the_process_signal_handlers_alone():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
    threading.Timer(0.1, server.request_stop).start()
    server.serve()  # on the main thread: still the CLI's job, not the library's, to own signals
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_a_burst_of_signals_never_deadlocks_the_server():
    for _ in range(8):
        process, _ = _serve_subprocess("--grace", "5")
        try:
            os.kill(process.pid, signal.SIGTERM)  # as `timeout`, systemd or a double Ctrl-C send them
            os.kill(process.pid, signal.SIGTERM)
            os.kill(process.pid, signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.stderr.close()


def test_a_malformed_message_after_a_good_one_is_reported_as_what_it_is(server, raw, caplog):
    connection = raw(server.port)
    connection.hello()
    assert connection.stub.echo("good") == "good"
    connection.socket.handle.sendall(b"\x80\x07\x00\x01\x00\x00\x00\x04echo")  # version 7: not binary 1
    with caplog.at_level("WARNING", logger="thrift_handshake.server"):
        deadline = time.monotonic() + 5
        while not any("bad message" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the server did not report the bad message"
            time.sleep(0.02)
    line = next(r.getMessage() for r in caplog.records if "bad message" in r.getMessage())
    assert "TProtocolException" in line and "TypeError" not in line, line


def test_a_request_dripped_byte_by_byte_is_bounded_by_the_request_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=0.5, idle_timeout=5))
    connection = raw(server.port)
    connection.hello()
    message = encode_call("echo", HandshakeService.echo_args(message="slow"))
    handle = connection.socket.handle
    started = time.monotonic()
    for byte in message * 10:  # each byte well within the idle timeout, the whole far beyond 0.5 s
        if _closed_by_peer(handle) or time.monotonic() - started > 5:
            break
        handle.sendall(bytes([byte]))
        time.sleep(0.1)
    assert _closed_by_peer(handle), "the server still holds a connection that drips its request"
    assert time.monotonic() - started < 2.5
    report_reliability("a request dripped a byte at a time after hello (request_timeout)", 1, True, 0)


def _closed_by_peer(handle: socket.socket) -> bool:
    import select

    if not select.select([handle], [], [], 0)[0]:
        return False
    try:
        return handle.recv(1, socket.MSG_PEEK) == b""
    except OSError:  # reset
        return True




def test_a_flood_of_bad_connections_cannot_flood_the_log(server, send_raw, caplog):
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="thrift_handshake.server"):
        for _ in range(150):
            send_raw(server.port, b"junk that is not thrift")
        deadline = time.monotonic() + 5
        while server.connection_count:  # every junk connection handled
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(1.05)  # into the next second: the suppressed ones are summarised there
        send_raw(server.port, b"one more junk")
        deadline = time.monotonic() + 5
        while not any("suppressed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the suppressed warnings were not summarised"
            time.sleep(0.01)
    warnings = [r for r in caplog.records if r.name == "thrift_handshake.server" and r.levelname == "WARNING"]
    seconds = time.monotonic() - started
    assert len(warnings) <= 21 * (int(seconds) + 2), f"{len(warnings)} warning lines in {seconds:.1f} s"
    report_reliability("150 junk connections in a burst (log lines rate-limited)", 150, True, 0)


def test_a_planned_abort_is_one_warning_not_an_error_with_a_traceback(start_server, caplog):
    server = start_server()
    busy = Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    process = Background(busy.process, Request(request_id="r", work_ms=8000))
    _wait_in_flight(server, "process")
    with caplog.at_level("WARNING"):
        server.stop(grace=0.3)
        process.result()
    aborted = [r for r in caplog.records if "aborted" in r.getMessage()]
    assert aborted and all(r.levelname == "WARNING" and r.exc_info is None for r in aborted), aborted
    assert not [r for r in caplog.records if r.levelname == "ERROR" and "handler" in r.getMessage()]
    busy.close()


def test_connections_stuck_mid_hello_cannot_lock_everyone_out(start_server):
    server = start_server(limits=ServerLimits(max_connections=4, evict_after=0.2))
    hello = ClientHello(client_name="slow", min_version=1, max_version=2)
    hello_start = encode_call("hello", SessionService.hello_args(hello=hello))[:20]  # its header and a byte
    stuck = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        for sock in stuck:
            sock.sendall(hello_start)
        deadline = time.monotonic() + 5
        while sum(1 for c in list(server._connections) if c.in_flight) < 4:  # every slot mid-message
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # stuck for longer than evict_after
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            assert client.echo("let in") == "let in"
        report_reliability("4 hellos stuck mid-message against max_connections 4 (no lock-out)", 1, True, 0)
    finally:
        for sock in stuck:
            sock.close()


@pytest.mark.parametrize("wire", [Wire("binary", "framed"), Wire("compact"), Wire("compact", "framed")], ids=str)
def test_a_full_server_says_so_in_the_newcomers_own_dialect(start_server, wire):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        extra = Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService)
        with pytest.raises(ServerFull, match="server full: 1 connections"):
            extra.connect()


def test_one_way_calls_before_hello_are_logged_once_per_connection(server, send_raw, caplog):
    from thrift_handshake_gen.ttypes import Event

    notify = encode_call("notify", HandshakeService.notify_args(event=Event(name="n", payload="p")), message_type=4)
    with caplog.at_level("DEBUG", logger="thrift_handshake.gate"):
        send_raw(server.port, notify * 300)  # 300 one-way calls before hello on one connection
        deadline = time.monotonic() + 5
        while server.metrics.snapshot().calls.get("notify", 0) < 300:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    lines = [r for r in caplog.records if r.name == "thrift_handshake.gate" and r.levelname == "WARNING"]
    assert len(lines) == 1 and "further drops on this connection are not logged" in lines[0].getMessage()
