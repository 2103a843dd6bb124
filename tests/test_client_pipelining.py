"""A pipelined hello (ClientOptions.pipeline_hello) and goodbye without waiting (await_farewell=False),
against real servers: one round trip less each, the same typed errors, nothing served without a session."""

from __future__ import annotations

import logging
import socket
import struct
from typing import List

import pytest

from thrift_handshake import (
    Client,
    ClientOptions,
    HandshakeFailed,
    RetryPolicy,
    ServerFull,
    ServerLimits,
    Timeouts,
)
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.states import ClientPhase as Phase
from thrift_handshake.timing import format_table
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ServerHello

from test_client_phases import _reply, loopback_peer

from conftest import eventually

PIPELINED = ClientOptions(pipeline_hello=True)


class RecordingHandler(HandshakeHandler):
    """The demo service, noting every echo it actually runs."""

    def __init__(self) -> None:
        super().__init__()
        self.echoed: List[str] = []

    def echo(self, message: str) -> str:
        self.echoed.append(message)
        return message


def _pipelined(port: int, **options) -> Client:
    client = Client("127.0.0.1", port, ClientOptions(pipeline_hello=True, **options), service=HandshakeService)
    assert client.connect() is None
    assert client.phase is Phase.HELLO_PENDING
    return client


def test_hello_and_the_first_call_are_both_written_before_either_reply_is_read():
    """A peer that answers nothing until it holds both requests: only a pipelining client gets answers."""
    hello = _reply("hello", SessionService.hello_result(success=ServerHello(session_id="s", version=2)), seqid=1)
    echo = _reply("echo", HandshakeService.echo_result(success="x"))

    def answer_when_both_arrived(connection: socket.socket) -> None:
        received = b""
        while b"echo" not in received:  # the second request's name
            chunk = connection.recv(65536)
            if not chunk:
                return
            received += chunk
        connection.sendall(hello + echo)  # one segment: the client reads both replies at once
        connection.recv(65536)

    with loopback_peer(answer_when_both_arrived) as port:
        client = _pipelined(port, timeouts=Timeouts(handshake=1, call=1))
        assert client.echo("x") == "x"
        assert client.phase is Phase.READY and client.session_id == "s"
        handshake, call = client.timeline[1], client.timeline[2]
        assert (handshake.phase, handshake.name, handshake.pipelined) == ("handshake", "hello", True)
        assert (call.phase, call.name, call.pipelined) == ("call", "echo", False)  # only hello is pipelined
        assert (handshake.bytes_in, call.bytes_in) == (len(hello), len(echo)), "replies read together, counted apart"
        assert "pipelined" in format_table(client.timeline).splitlines()[3]
        client._close_transport()


def test_a_pipelined_hello_and_the_first_call_arrive_together():
    """MSG_MORE holds hello until the call is written: the server wakes once for both."""
    first_read: List[bytes] = []

    def read_once(connection: socket.socket) -> None:
        first_read.append(connection.recv(65536))  # as soon as anything arrived

    with loopback_peer(read_once) as port:
        client = _pipelined(port, timeouts=Timeouts(handshake=1, call=1))
        held = _not_sent_yet(client._sock.handle)
        client._send("echo", ("x",), "call", 1.0)
        sent_with_the_call = _not_sent_yet(client._sock.handle)
    client._close_transport()
    assert held > len(b"hello") and sent_with_the_call == 0, (held, sent_with_the_call)
    assert b"hello" in first_read[0] and b"echo" in first_read[0]


def _not_sent_yet(handle: socket.socket) -> int:
    """Bytes written to ``handle`` that the kernel holds back, not yet sent (Linux TCP_INFO's tcpi_notsent_bytes)."""
    return struct.unpack_from("I", handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 144)[0]


def test_reading_hellos_answer_before_any_call_does_not_wait_for_the_kernel(server):
    """A pipelined hello waits (MSG_MORE) for the first call; reading its answer first must send it at
    once, not after the kernel's 200 ms."""
    client = _pipelined(server.port, timeouts=Timeouts(handshake=0.15))
    assert client.server_hello.version == 2  # CallTimeout when hello sat in the kernel for 200 ms
    client.close()


def test_replies_to_pipelined_calls_are_not_held_back(server):
    """Both ends set TCP_NODELAY: with Nagle, the answer to the second of two calls written at once
    waited for the client to acknowledge the first one (44 ms per pair with delayed ACKs)."""
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    served = [connection.socket.handle for connection in list(server._connections)]
    assert [handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for handle in served] == [1]
    assert client._sock.handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    client.close()


def test_pipelined_session_serves_calls_and_says_goodbye(server):
    plain = Client("127.0.0.1", server.port, service=HandshakeService)
    plain.connect()
    client = _pipelined(server.port)
    assert client.echo("one") == "one" and client.echo("two") == "two"
    assert client.version == plain.version == 2
    assert client.server_hello.idle_timeout_ms == plain.server_hello.idle_timeout_ms
    plain.echo("one")
    same = [(r.phase, r.name, r.bytes_out, r.bytes_in) for r in plain.timeline][1:3]
    assert [(r.phase, r.name, r.bytes_out, r.bytes_in) for r in client.timeline][1:3] == same
    assert client.goodbye().calls == 2
    assert client.phase is Phase.CLOSED
    plain.close()


def test_reading_server_hello_reads_the_pending_answer(server):
    client = _pipelined(server.port)
    assert client.server_hello.version == 2
    assert client.phase is Phase.READY
    client.close()


@pytest.mark.parametrize("accessor", ["session_id", "version"])
def test_the_session_id_and_version_read_the_pending_answer_too(server, accessor):
    client = _pipelined(server.port)
    assert client.phase is Phase.HELLO_PENDING
    value = getattr(client, accessor)
    assert client.phase is Phase.READY and value == getattr(client.server_hello, accessor) and value is not None
    client.close()


def test_goodbye_as_the_first_exchange_reads_hello_then_the_farewell(server):
    client = _pipelined(server.port)
    farewell = client.goodbye()
    assert farewell.calls == 0 and farewell.session_id == client.session_id
    assert client.phase is Phase.CLOSED
    assert [r.name for r in client.timeline] == ["127.0.0.1:%d" % server.port, "hello", "goodbye", "close"]


@pytest.mark.parametrize("refusal", ["versions", "auth"])
def test_a_refused_pipelined_hello_raises_at_the_first_call_which_is_never_served(start_server, refusal):
    """The gate refuses a call that arrives before hello succeeded (no common version: the session
    waits for another hello; a wrong token: the server closes after answering). Repeated, because the
    server may close while the pipelined call is still on its way."""
    handler = RecordingHandler()
    server = start_server(handler=handler, auth_token="secret" if refusal == "auth" else None)
    options = dict(versions=(3, 4)) if refusal == "versions" else dict(auth_token="wrong")
    for attempt in range(10):
        client = _pipelined(server.port, **options)
        with pytest.raises(HandshakeFailed) as caught:
            client.echo(f"must not run {attempt}")
        assert ("1..2" if refusal == "versions" else "wrong auth token") in str(caught.value)
        assert client.phase is Phase.CLOSED and client._sock is None
        records = list(client.timeline)
        assert [(r.name, r.ok) for r in records[1:]] == [("hello", False), ("close", True), ("echo", False)]
    stats = Client("127.0.0.1", server.port, ClientOptions(auth_token="secret"), service=HandshakeService)
    with stats:
        assert stats.stats().handshakes_rejected == 10
        assert stats.echo("after") == "after"
    assert handler.echoed == ["after"]


def test_a_full_server_is_server_full_at_the_first_call(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as holder:
        client = _pipelined(server.port)
        with pytest.raises(ServerFull, match="server full"):
            client.echo("x")
        assert client.phase is Phase.CLOSED
        assert holder.echo("still served") == "still served"


def test_a_retried_method_the_full_server_refused_at_the_first_call_connects_again_at_the_next(start_server):
    """The refusal closes the connection (CLOSED, refused): the next call of a method the retry policy
    covers reconnects first, even when the refused call had no attempt left."""
    server = start_server(limits=ServerLimits(max_connections=1))
    holder = Client("127.0.0.1", server.port, service=HandshakeService)
    holder.connect()
    client = _pipelined(server.port, retry=RetryPolicy(idempotent={"echo"}, attempts=1))
    with pytest.raises(ServerFull, match="server full"):
        client.echo("x")
    holder.close()
    assert eventually(lambda: server.connection_count == 0)
    assert client.echo("y") == "y"
    client.close()


def _server_warnings(caplog) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("thrift_handshake")]


@pytest.mark.parametrize("pipeline", [False, True])
def test_close_without_awaiting_the_farewell_still_ends_the_session_by_goodbye(server, caplog, pipeline):
    caplog.set_level(logging.INFO)
    options = ClientOptions(await_farewell=False, pipeline_hello=pipeline)
    for _ in range(10):  # the Farewell may reach a closed socket: the server must take that quietly
        client = Client("127.0.0.1", server.port, options, service=HandshakeService)
        client.connect()
        assert client.echo("x") == "x"
        assert client.close() is None
        assert client.phase is Phase.CLOSED and client.farewell is None
        goodbye = client.timeline[-2]
        assert (goodbye.phase, goodbye.name, goodbye.bytes_in, goodbye.wait) == ("disconnect", "goodbye", 0, None)
        assert goodbye.bytes_out > 0
    ended = lambda: [r for r in caplog.records if r.getMessage().startswith("closed peer=")]
    assert eventually(lambda: len(ended()) == 10)
    assert all(r.getMessage().endswith(": after goodbye") for r in ended()), [r.getMessage() for r in ended()]
    assert eventually(lambda: server.metrics.snapshot().sessions_active == 0)
    assert _server_warnings(caplog) == []


def test_goodbye_waits_for_the_farewell_even_when_close_would_not(server):
    client = Client("127.0.0.1", server.port, ClientOptions(await_farewell=False), service=HandshakeService)
    client.connect()
    client.echo("x")
    assert client.goodbye().calls == 1
    assert client.phase is Phase.CLOSED


def test_pipelined_hello_then_close_without_any_call(server, caplog):
    caplog.set_level(logging.INFO)
    for await_farewell in (True, False):
        client = Client("127.0.0.1", server.port, ClientOptions(pipeline_hello=True, await_farewell=await_farewell),
                        service=HandshakeService)
        client.connect()
        farewell = client.close()
        assert client.phase is Phase.CLOSED
        assert (farewell is not None) is await_farewell
    assert eventually(lambda: server.metrics.snapshot().handshakes_ok == 2)
    assert eventually(lambda: server.metrics.snapshot().sessions_active == 0)
    assert _server_warnings(caplog) == []


def test_closing_a_pipelined_client_a_full_server_refused_never_raises(start_server, caplog):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as holder:
        client = _pipelined(server.port)
        with caplog.at_level(logging.INFO, logger="thrift_handshake.client"):
            assert client.close() is None  # goodbye reads hello's answer first: server full
        assert client.phase is Phase.CLOSED
        said = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client"]
        assert len(said) == 1 and said[0].startswith("goodbye failed while closing: ") and "server full" in said[0]
        assert holder.echo("still served") == "still served"


def test_a_first_calls_wait_behind_a_pipelined_hello_is_the_servers_work_not_the_read(server):
    """The call's reply comes after its 300 ms of work, not with hello's answer: the record counts
    that time as waiting for the reply (its reading starts when the reply's bytes come)."""
    from thrift_handshake_gen.ttypes import Request

    with Client("127.0.0.1", server.port, PIPELINED, service=HandshakeService) as client:
        client.process(Request(request_id="slow", payload="p", work_ms=300))
        [record] = client.timeline.calls("process")
    assert record.wait >= 0.3  # the reply cannot come before the work is done


@pytest.mark.parametrize("read_by", ["server_hello", "call"])
def test_a_pipelined_hello_the_server_cannot_decode_is_its_error_and_leaves_the_client_closed(start_server, read_by):
    """The server answers a hello over its handshake_max_bytes with a protocol error and closes: read
    by the next exchange, it is that answer (not a failure of the client's own bookkeeping), the
    client is CLOSED, and it can connect again."""
    from thrift_handshake import RemoteApplicationError

    handler = RecordingHandler()
    server = start_server(handler=handler, limits=ServerLimits(handshake_max_bytes=1024))
    client = _pipelined(server.port, features={letter * 250 for letter in "abcde"})  # a hello over 1024 bytes
    with pytest.raises(RemoteApplicationError) as caught:
        client.server_hello if read_by == "server_hello" else client.echo("must not run")
    assert str(caught.value) == ("hello: server error 7: cannot decode the hello request: more than 1024 bytes "
                                 "before hello() succeeded (handshake_max_bytes)")
    assert client.phase is Phase.CLOSED and client._sock is None
    client.options = PIPELINED
    assert client.connect() is None and client.echo("after") == "after"
    client.close()
    assert handler.echoed == ["after"]
