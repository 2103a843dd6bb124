"""The gate as a plain Thrift processor, driven the way a stock Thrift server drives it: ``process`` over
a transport, with no HandshakeServer around it (loopback sockets or memory buffers)."""

from __future__ import annotations

import logging
import socket
import struct
from typing import Iterator, List, Tuple

import pytest
from conftest import encode_call
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TSocket, TTransport
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

from thrift_handshake import Call, Interceptor, Outcome, SessionProcessor, Wire
from thrift_handshake.decoded_budget import DecodedBudget
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.gate_state import ConnectionState, SessionClosed, format_peer
from thrift_handshake.metrics import ServerMetrics
from thrift_handshake.peerlog import WarningBudget
from thrift_handshake.session import SessionContext
from thrift_handshake.wire import server_stack
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import Event


class Seen(Interceptor):
    """What each hook was told: (hook, method, peer); and every call that ended."""

    def __init__(self, observes_handler: bool = True) -> None:
        self.observes_handler = observes_handler
        self.hooks: List[Tuple[str, str, str]] = []
        self.ended: List[Call] = []

    def call_started(self, call) -> None:
        self.hooks.append(("started", call.method, call.peer))

    def call_ended(self, call) -> None:
        self.hooks.append(("ended", call.method, call.peer))
        self.ended.append(call)


def _gate(**options) -> SessionProcessor:
    return SessionProcessor(HandshakeService.Processor(HandshakeHandler()), **options)


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["IPv4", "IPv6"])
def loopback(request) -> Iterator[Tuple[socket.socket, socket.socket]]:
    """(client, server side) of one TCP connection on the loopback (IPv4, then IPv6)."""
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    with socket.create_server((request.param, 0), family=family) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        accepted, _ = listener.accept()
    accepted.settimeout(5)
    with client, accepted:
        yield client, accepted


def _host_of(sock: socket.socket) -> str:
    """The client host as the server names it (IPv6 in brackets)."""
    host = sock.getsockname()[0]
    return f"[{host}]" if ":" in host else host


def _stock_protocol(sock: socket.socket) -> TBinaryProtocol:
    """The protocol a stock TThreadedServer serves a connection with (buffered transport over TSocket)."""
    handle = TSocket.TSocket()
    handle.setHandle(sock)
    return TBinaryProtocol(TTransport.TBufferedTransport(handle))


def test_under_a_stock_server_interceptors_see_the_peers_address(loopback):
    client, accepted = loopback
    seen = Seen()
    gate = _gate(interceptors=[seen])
    client.sendall(encode_call("echo", HandshakeService.echo_args(message="early"), seqid=1))
    protocol = _stock_protocol(accepted)
    assert gate.process(protocol, protocol) is True  # refused before hello, answered, the connection kept
    peer = f"{_host_of(client)}:{client.getsockname()[1]}"
    assert seen.hooks == [("started", "echo", peer), ("ended", "echo", peer)]


@pytest.mark.parametrize("handshake, watched", [(True, True), (False, True), (False, False)],
                         ids=["refused", "served, handler watched", "served, handler called directly"])
def test_a_call_whose_answer_cannot_be_written_is_announced_once(loopback, handshake, watched):
    client, accepted = loopback
    seen = Seen(observes_handler=watched)
    gate = _gate(interceptors=[seen], handshake=handshake)
    client.sendall(encode_call("echo", HandshakeService.echo_args(message="early"), seqid=1))
    accepted.shutdown(socket.SHUT_WR)  # the answer's write fails (EPIPE)
    protocol = _stock_protocol(accepted)
    with pytest.raises(TTransportException):
        gate.process(protocol, protocol)
    assert [hook for hook, _, _ in seen.hooks] == ["started", "ended"]


def _serve_from_memory(gate: SessionProcessor, data: bytes) -> None:
    inbound = TMemoryBuffer(data)
    gate.process(TBinaryProtocol(inbound), TBinaryProtocol(TMemoryBuffer()))
    assert inbound._buffer.tell() == len(data)  # the whole message was read


_ONEWAY_ECHO = encode_call("echo", HandshakeService.echo_args(message="x"), message_type=TMessageType.ONEWAY)


def test_a_gate_without_a_warning_budget_of_its_own_still_warns_of_dropped_one_way_calls(caplog):
    caplog.set_level(logging.WARNING)
    _serve_from_memory(_gate(), _ONEWAY_ECHO)
    assert [r.getMessage() for r in caplog.records] == [
        "dropped one-way echo peer=unknown: echo is a two-way method: not run, not answered "
        "(further drops on this connection are not logged)"]


def test_a_gate_warns_of_peers_within_the_budget_it_is_given(caplog):
    caplog.set_level(logging.WARNING)
    spent = WarningBudget(logging.getLogger("test"), per_second=0)  # e.g. spent by the server's own warnings
    _serve_from_memory(_gate(warnings=spent), _ONEWAY_ECHO)
    assert caplog.records == []


# -- ConnectionState: what a host's stop and eviction rely on ----------------------------------------

def _state() -> ConnectionState:
    return ConnectionState(SessionContext(peer="10.0.0.1:4000"), None, ServerMetrics())


def _assert_no_message_starts(state: ConnectionState) -> None:
    with pytest.raises(TTransportException) as refused:
        state.begin("echo", 2)
    assert (refused.value.type, str(refused.value)) == (TTransportException.END_OF_FILE, "the server is stopping")


def test_a_stop_shuts_an_idle_connection_at_once_and_no_message_starts_after_it():
    state, shut = _state(), []
    state.stop(lambda: shut.append("shut"))
    assert shut == ["shut"]
    _assert_no_message_starts(state)


def test_a_stop_lets_the_message_in_flight_finish_unless_forced():
    state, shut = _state(), []
    state.begin("echo", 1)
    state.stop(lambda: shut.append("shut"))
    assert shut == []  # the host ends it after the reply
    state.stop(lambda: shut.append("forced"), force=True)
    assert shut == ["forced"]


def test_an_idle_connection_closed_by_agreement_starts_no_more_messages():
    state = _state()
    assert state.close_if_idle(lambda: False) is False  # shut() declined: nothing changes
    state.begin("echo", 1)
    state.end()
    assert state.close_if_idle(lambda: True) is True
    _assert_no_message_starts(state)


def test_a_connection_with_a_message_in_flight_is_closed_only_by_force():
    state, asked = _state(), []
    state.begin("echo", 1)
    assert state.close_if_idle(lambda: asked.append("asked") or True) is False
    assert asked == []
    assert state.close_if_idle(lambda: asked.append("forced") or True, force=True) is True
    assert asked == ["forced"]


# -- the decoded budget: a framed request priced before it is decoded, under its client host's name ----

def _framed_protocol(sock: socket.socket) -> TBinaryProtocol:
    """The server's own framed stack over ``sock``, as HandshakeServer builds it."""
    handle = TSocket.TSocket()
    handle.setHandle(sock)
    return server_stack(Wire(transport="framed"), handle, 16 * 1024 * 1024, None)[1]


def _frame(message: bytes) -> bytes:
    return struct.pack("!i", len(message)) + message


class BudgetWatching(HandshakeHandler):
    """Remembers what its client host may still reserve while each echo runs."""

    def __init__(self, budget: DecodedBudget, host: str) -> None:
        super().__init__()
        self.budget, self.host = budget, host
        self.allowances: List[int] = []

    def echo(self, message):
        self.allowances.append(self.budget.allowance(self.host))
        return super().echo(message)


def test_a_request_in_flight_holds_its_decoded_price_under_its_client_hosts_name(loopback):
    client, accepted = loopback
    budget = DecodedBudget(total=1_000_000, host_share=0.5)
    handler = BudgetWatching(budget, _host_of(client))
    gate = SessionProcessor(HandshakeService.Processor(handler), handshake=False, decoded_budget=budget)
    client.sendall(_frame(encode_call("echo", HandshakeService.echo_args(message="Z" * 100_000)))
                   + _frame(encode_call("nosuch", HandshakeService.echo_args(message="?"), seqid=2)))
    protocol = _framed_protocol(accepted)
    gate.process(protocol, protocol)
    gate.process(protocol, protocol)  # not served: nothing reserved
    [allowance] = handler.allowances
    assert 100_000 < budget.per_host - allowance < 101_000
    assert budget.allowance(_host_of(client)) == budget.per_host == 500_000  # given back once answered
    assert budget.used == 0


def test_a_one_way_call_refused_by_the_decoded_budget_is_not_answered(loopback, caplog):
    client, accepted = loopback
    caplog.set_level(logging.WARNING)
    budget = DecodedBudget(total=200_000, host_share=0.5)
    gate = SessionProcessor(HandshakeService.Processor(HandshakeHandler()), handshake=False, decoded_budget=budget)
    notify = encode_call("notify", HandshakeService.notify_args(event=Event(name="big", payload="P" * 150_000)),
                         seqid=2, message_type=TMessageType.ONEWAY)
    echo = encode_call("echo", HandshakeService.echo_args(message="after"), seqid=3)
    client.sendall(_frame(notify) + _frame(echo))
    protocol = _framed_protocol(accepted)
    gate.process(protocol, protocol)
    gate.process(protocol, protocol)
    size, = struct.unpack("!i", client.recv(4, socket.MSG_WAITALL))
    reply = TBinaryProtocol(TMemoryBuffer(client.recv(size, socket.MSG_WAITALL)))
    assert reply.readMessageBegin() == ("echo", TMessageType.REPLY, 3)  # the first answer is the echo's
    assert f"dropped one-way notify peer={_host_of(client)}:" in caplog.text and budget.used == 0


def test_a_connection_whose_client_said_goodbye_is_no_longer_counted_open_even_before_it_closes():
    gate = _gate()
    hello = encode_call("hello", SessionService.hello_args(ClientHello(client_name="leaving", min_version=1,
                                                                       max_version=2)), seqid=1)
    iprot = TBinaryProtocol(TMemoryBuffer(hello + encode_call("goodbye", SessionService.goodbye_args(), seqid=2)))
    oprot = TBinaryProtocol(TMemoryBuffer())
    gate.process(iprot, oprot)
    assert gate.metrics.snapshot().connections_open == 1
    with pytest.raises(SessionClosed):
        gate.process(iprot, oprot)
    assert gate.metrics.snapshot().connections_open == 0  # the host has yet to close it (iprot is alive)


@pytest.mark.parametrize("watched", [True, False], ids=["handler watched", "handler called directly"])
def test_a_call_whose_arguments_cannot_be_decoded_is_announced_once(watched):
    seen = Seen(observes_handler=watched)
    gate = _gate(interceptors=[seen], handshake=False)
    cut_short = encode_call("echo", HandshakeService.echo_args(message="sixteen bytes..."))[:-10]
    with pytest.raises(EOFError):  # what a memory transport raises at its end
        gate.process(TBinaryProtocol(TMemoryBuffer(cut_short)), TBinaryProtocol(TMemoryBuffer()))
    assert [hook for hook, _, _ in seen.hooks] == ["started", "ended"]
    assert seen.ended[0].outcome is Outcome.FAILED


def test_an_interceptor_sees_every_argument_of_a_call_in_idl_order():
    seen = Seen()
    _serve_from_memory(_gate(interceptors=[seen], handshake=False),
                       encode_call("get_result", HandshakeService.get_result_args(ticket="t-1", wait_ms=0)))
    assert seen.ended[0].args == ("t-1", 0)


def test_the_time_in_a_handler_that_raised_is_within_the_calls_time():
    seen = Seen()
    _serve_from_memory(_gate(interceptors=[seen], handshake=False),
                       encode_call("fail", HandshakeService.fail_args(message="on purpose")))
    [call] = seen.ended
    assert [hook for hook, _, _ in seen.hooks] == ["started", "ended"]
    assert call.outcome is Outcome.FAILED and str(call.error) == "on purpose"
    assert 0 < call.handler_seconds <= call.duration


def test_peers_are_named_host_colon_port_with_ipv6_hosts_in_brackets_and_other_addresses_as_they_are():
    assert format_peer(("10.0.0.1", 4000)) == "10.0.0.1:4000"
    assert format_peer(("::1", 4000, 0, 0)) == "[::1]:4000"
    assert format_peer("/run/service.sock") == "/run/service.sock"  # a Unix socket's peer


def test_session_methods_are_seen_without_arguments_and_hellos_are_hidden():
    seen = Seen()
    hello = encode_call("hello", SessionService.hello_args(ClientHello(client_name="args", min_version=1,
                                                                       max_version=2)), seqid=1)
    iprot = TBinaryProtocol(TMemoryBuffer(hello + encode_call("ping", SessionService.ping_args(), seqid=2)))
    gate = _gate(interceptors=[seen])
    gate.process(iprot, TBinaryProtocol(TMemoryBuffer()))
    gate.process(iprot, TBinaryProtocol(TMemoryBuffer()))
    assert [(call.method, call.args) for call in seen.ended] == [("hello", None), ("ping", ())]


def test_a_connection_reset_before_its_first_message_is_served_as_from_an_unknown_peer():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        accepted, _ = listener.accept()
    with accepted:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset
        accepted.settimeout(5)
        with pytest.raises(ConnectionResetError):
            accepted.recv(1)  # the reset has arrived: the socket has no peer any more
        assert _gate().connection(_stock_protocol(accepted)).context.peer == "unknown"


class _Uncopyable(Exception):
    def __reduce_ex__(self, protocol):
        raise TypeError("no copies")


def test_an_error_of_a_call_with_hidden_arguments_is_kept_without_its_traceback():
    from thrift_handshake.watched import _without_traceback

    def raised(error: BaseException) -> BaseException:
        try:
            raise error
        except BaseException as caught:
            return caught

    plain = _without_traceback(raised(ValueError("bad hello")))
    assert (type(plain), str(plain), plain.__traceback__) == (ValueError, "bad hello", None)
    uncopyable = _without_traceback(raised(_Uncopyable("odd")))
    assert (type(uncopyable), str(uncopyable), uncopyable.__traceback__) == (RuntimeError, "_Uncopyable: odd", None)


class _DuckTyped:
    """An interceptor that does not subclass Interceptor (nor say whether it observes the handler)."""

    def __init__(self) -> None:
        self.args: List[object] = []

    def call_started(self, call) -> None:
        pass

    def call_ended(self, call) -> None:
        self.args.append(call.args)


def test_an_interceptor_that_does_not_say_whether_it_observes_the_handler_is_shown_the_arguments():
    duck = _DuckTyped()
    _serve_from_memory(_gate(interceptors=[duck], handshake=False),
                       encode_call("echo", HandshakeService.echo_args(message="quack")))
    assert duck.args == [("quack",)]
