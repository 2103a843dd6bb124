"""The wording of a connection's end in the server's log, from plain facts (no sockets, no server)."""

from __future__ import annotations

import dataclasses
import time

import pytest
from thrift.transport.TTransport import TTransportException

from thrift_handshake import ServerLimits, Session, SessionContext, SessionSettings
from thrift_handshake.gate_state import ConnectionState
from thrift_handshake.metrics import ServerMetrics
from thrift_handshake.server.outcome import Ending, bad_input, closing_outcome, session_summary, transport_outcome
from thrift_handshake.states import ConnectionEvent
from thrift_handshake.wire import FrameTooLarge
from thrift_handshake_gen.session.ttypes import ClientHello

EOF_ERROR = TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes")
TIMEOUT = TTransportException(TTransportException.TIMED_OUT, "timed out")
RESET = TTransportException(message="unexpected exception", inner=ConnectionResetError(104, "reset"))
SESSION = dict(established=True, identified=True)


@pytest.mark.parametrize("ending, error, expected", [
    (Ending(), EOF_ERROR, ("closed", "peer closed the connection")),
    (Ending(**SESSION), EOF_ERROR, ("dropped", "peer closed the connection without goodbye")),
    (Ending(**SESSION, session_closing=True, close_reason="after goodbye"), EOF_ERROR, ("closed", "after goodbye")),
    # the gate may end a connection after goodbye by raising end-of-file once the reply is flushed
    (Ending(**SESSION, session_closing=True, close_reason="after goodbye", in_flight=True), EOF_ERROR,
     ("closed", "after goodbye")),
    (Ending(), RESET, ("dropped", "peer reset the connection")),
    (Ending(**SESSION), RESET, ("dropped", "peer reset the connection without goodbye")),
    (Ending(), TIMEOUT, ("dropped", "handshake timeout")),
    (Ending(**SESSION), TIMEOUT, ("dropped", "idle timeout")),
    (Ending(**SESSION, mid_request=True), TIMEOUT,
     ("dropped", "request timeout: the message did not arrive whole in time")),
    (Ending(**SESSION), TTransportException(TTransportException.TIMED_OUT,
                                            "the peer did not read its reply within reply_timeout"),
     ("dropped", "the peer did not read its reply within reply_timeout")),
    (Ending(closed_by=ConnectionEvent.STOPPING, **SESSION), EOF_ERROR, ("closed", "server stopping")),
    (Ending(closed_by=ConnectionEvent.EVICTED), EOF_ERROR, ("dropped", "evicted: no hello yet and the server was full")),
    (Ending(closed_by=ConnectionEvent.EVICTED, handshake=False, established=True), EOF_ERROR,
     ("dropped", "evicted: idle and the server was full")),
    (Ending(**SESSION, in_flight=True), EOF_ERROR, ("dropped", "transport error: TSocket read 0 bytes")),
    (Ending(), TTransportException(TTransportException.SIZE_LIMIT, "too big"), ("dropped", "transport error: too big")),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_transport_failure_is_worded_by_what_the_connection_was_doing(ending, error, expected):
    assert transport_outcome(ending, error) == expected


def test_a_connection_the_server_closed_itself_says_why():
    assert closing_outcome(ConnectionEvent.STOPPING, True, "") == ("closed", "server stopping")
    assert closing_outcome(ConnectionEvent.EXPIRED, True, "handshake timeout") == ("dropped", "handshake timeout")
    assert closing_outcome(ConnectionEvent.EVICTED, True, "") == (
        "dropped", "evicted: no hello yet and the server was full")
    assert closing_outcome(ConnectionEvent.EVICTED, True, "", "host h holds 8") == ("dropped", "evicted: host h holds 8")


def test_a_too_big_message_is_worded_the_same_by_either_decoder():
    limits = ServerLimits(max_message_bytes=1024, max_container_items=10)
    words = ("a string, binary or container exceeds this server's limits "
             "(max_message_bytes=1024, max_container_items=10)")
    assert bad_input(TTransportException(TTransportException.SIZE_LIMIT, "x"), limits) == words
    assert bad_input(OverflowError("string size exceeded specified limit"), limits) == words
    assert bad_input(OverflowError("something else"), limits) == "OverflowError: something else"
    assert bad_input(FrameTooLarge(2000, 1024, None), limits) == ("a frame of 2004 bytes (its length field included) exceeds this "
                                        "server's limits (max_message_bytes=1024)")


def _state(session: bool) -> ConnectionState:
    context = SessionContext(peer="10.0.0.1:4000")
    return ConnectionState(context, Session(SessionSettings(), context) if session else None, ServerMetrics())


def test_the_summary_names_the_session_its_calls_and_its_age_in_ms(monkeypatch):
    state = _state(session=True)
    assert session_summary(state) == ""  # no hello yet
    state.session.hello(ClientHello(client_name="unit", min_version=1, max_version=2))
    state.session.call_served()
    opened = state.context.established_at
    monkeypatch.setattr(time, "monotonic", lambda: opened + 1.25)
    assert session_summary(state) == " client='unit' version=2 calls=1 duration_ms=1250"


def test_a_connection_without_a_session_layer_has_no_summary():
    state = _state(session=False)
    state.context.established_at = 5.0
    assert session_summary(state) == ""


@pytest.mark.parametrize("in_flight", [None, ("echo", 3)])
def test_the_ending_knows_whether_a_message_was_in_flight(in_flight):
    state = _state(session=True)
    state.in_flight = in_flight
    assert Ending.of(None, True, state, mid_request=False).in_flight is (in_flight is not None)


def test_a_session_is_identified_only_once_hello_gave_it_an_id_and_the_ending_is_frozen():
    state = _state(session=True)
    before = Ending.of(None, True, state, mid_request=False)
    assert (before.identified, before.established) == (False, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.identified = True  # type: ignore[misc]
    state.session.hello(ClientHello(client_name="unit", min_version=1, max_version=2))
    assert Ending.of(None, True, state, mid_request=False).identified is True
