"""A two-way method sent as a one-way call (ONEWAY) is neither run nor answered (an answer would
desynchronize a pipelining peer), and the server logs the drop; a one-way method sent as CALL is run
without an answer, as every Thrift server does. Either way the connection stays usable."""

from __future__ import annotations

import logging
import threading
from typing import List, Tuple

import pytest
from conftest import encode_call, eventually, exchange
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Interceptor, Outcome
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import Event


class Recording(HandshakeHandler):
    """Remembers which methods ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: List[str] = []
        self._lock = threading.Lock()

    def echo(self, message):
        with self._lock:
            self.ran.append("echo")
        return super().echo(message)

    def notify(self, event):
        with self._lock:
            self.ran.append("notify")
        return super().notify(event)


def _hello() -> bytes:
    return encode_call("hello", SessionService.hello_args(ClientHello(client_name="types", min_version=1, max_version=2)))


def _answers(data: bytes) -> List[Tuple[str, int, int, object]]:
    """(name, message type, seqid, TApplicationException or the result) of each answer."""
    buffer = TMemoryBuffer(data)
    protocol = TBinaryProtocol(buffer)
    answers = []
    while buffer._buffer.tell() < len(data):
        name, message_type, seqid = protocol.readMessageBegin()
        if message_type == TMessageType.EXCEPTION:
            body = TApplicationException()
        else:
            body = getattr(HandshakeService, f"{name}_result", None) or getattr(SessionService, f"{name}_result")
            body = body()
        body.read(protocol)
        protocol.readMessageEnd()
        answers.append((name, message_type, seqid, body))
    return answers


@pytest.mark.parametrize("handshake", [True, False], ids=["hello", "no hello"])
def test_a_one_way_method_sent_as_call_is_run_unanswered_as_thrift_servers_do(start_server, handshake):
    """Go's Thrift library (up to 0.17) sends one-way calls as CALL and reads no answer: an answer
    would be taken for the next call's (tests/test_interop.py runs such a client)."""
    handler = Recording()
    server = start_server(handler, handshake=handshake)
    notify = encode_call("notify", HandshakeService.notify_args(event=Event(name="n", payload="p")), seqid=2)
    echo = encode_call("echo", HandshakeService.echo_args(message="after"), seqid=3)
    answers = _answers(exchange(server.port, (_hello() if handshake else b"") + notify + echo))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers][-1:] == [("echo", TMessageType.REPLY, 3)]
    assert all(seqid != 2 for _, _, seqid, _ in answers), "the one-way call was answered"
    assert handler.ran == ["notify", "echo"]


@pytest.mark.parametrize("handshake", [True, False], ids=["hello", "no hello"])
@pytest.mark.parametrize("method, args", [("echo", HandshakeService.echo_args(message="x")),
                                          ("ping", SessionService.ping_args())], ids=["echo", "ping"])
def test_a_one_way_message_to_a_two_way_method_is_dropped_unanswered(start_server, caplog, handshake, method, args):
    handler = Recording()
    server = start_server(handler, handshake=handshake)
    caplog.set_level(logging.WARNING)
    oneway = encode_call(method, args, seqid=2, message_type=TMessageType.ONEWAY)
    echo = encode_call("echo", HandshakeService.echo_args(message="after"), seqid=3)
    answers = _answers(exchange(server.port, (_hello() if handshake else b"") + oneway + echo))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers][-1:] == [("echo", TMessageType.REPLY, 3)]
    assert all(seqid != 2 for _, _, seqid, _ in answers), "the one-way message was answered"
    assert handler.ran == ["echo"]
    assert eventually(lambda: f"dropped one-way {method} peer=" in caplog.text)
    assert f"{method} is a two-way method: not run, not answered" in caplog.text


@pytest.mark.parametrize("handshake", [True, False], ids=["hello", "no hello"])
def test_a_one_way_message_to_an_unknown_method_is_dropped_unanswered(start_server, caplog, handshake):
    # It used to be answered "Unknown function": a pipelining peer takes that for its next call's answer.
    server = start_server(Recording(), handshake=handshake)
    caplog.set_level(logging.WARNING)
    oneway = encode_call("nosuch", SessionService.ping_args(), seqid=2, message_type=TMessageType.ONEWAY)
    echo = encode_call("echo", HandshakeService.echo_args(message="after"), seqid=3)
    answers = _answers(exchange(server.port, (_hello() if handshake else b"") + oneway + echo))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers][-1:] == [("echo", TMessageType.REPLY, 3)]
    assert all(seqid != 2 for _, _, seqid, _ in answers), "the one-way message was answered"
    assert eventually(lambda: "dropped one-way nosuch peer=" in caplog.text)
    assert "no such method: not run, not answered" in caplog.text


def test_dropped_one_way_messages_are_logged_within_the_servers_warning_budget(start_server, caplog):
    server = start_server(handshake=False)
    caplog.set_level(logging.WARNING)
    oneway = encode_call("echo", HandshakeService.echo_args(message="x"), message_type=TMessageType.ONEWAY)
    exchange(server.port, oneway * 200 + encode_call("echo", HandshakeService.echo_args(message="end")))
    drops = [r for r in caplog.records if "dropped one-way echo" in r.getMessage()]
    assert 1 <= len(drops) <= 20  # the server's budget: 20 warnings about peers a second


class _Outcomes(Interceptor):
    """Records each call's (method, outcome, reason)."""

    def __init__(self, observes_handler: bool) -> None:
        self.observes_handler = observes_handler
        self.seen: List[Tuple[str, Outcome, object]] = []

    def call_ended(self, call) -> None:
        self.seen.append((call.method, call.outcome, call.reason))


@pytest.mark.parametrize("watched", [True, False], ids=["handler watched", "handler called directly"])
def test_a_one_way_call_its_handler_drops_ends_dropped_and_is_logged(start_server, caplog, watched):
    outcomes = _Outcomes(observes_handler=watched)
    server = start_server(Recording(), interceptors=[outcomes])
    caplog.set_level(logging.WARNING)
    unusable = encode_call("notify", HandshakeService.notify_args(event=None), seqid=2, message_type=TMessageType.ONEWAY)
    echo = encode_call("echo", HandshakeService.echo_args(message="after"), seqid=3)
    answers = _answers(exchange(server.port, _hello() + unusable + echo))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [("hello", TMessageType.REPLY, 1),
                                                                         ("echo", TMessageType.REPLY, 3)]
    assert eventually(lambda: "dropped one-way notify peer=" in caplog.text)
    assert ": the event is required (further drops on this connection are not logged)" in caplog.text
    assert ("notify", Outcome.DROPPED, "the event is required") in outcomes.seen


def test_messages_pipelined_before_hello_are_served_without_waiting_for_more_input(start_server):
    from conftest import read_until_closed
    import socket

    from thrift_handshake import ServerLimits

    server = start_server(limits=ServerLimits(handshake_timeout=3.0))
    early = encode_call("echo", HandshakeService.echo_args(message="early"), seqid=7)
    goodbye = encode_call("goodbye", SessionService.goodbye_args(), seqid=9)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(early + _hello() + goodbye)  # one write: all three arrive in one read
        answers = _answers(read_until_closed(sock))  # the server closes after goodbye
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [
        ("echo", TMessageType.REPLY, 7), ("hello", TMessageType.REPLY, 1), ("goodbye", TMessageType.REPLY, 9)]
