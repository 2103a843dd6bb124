"""The phase tables' machine: what it tells when a move is refused, and which moves it reports."""

from __future__ import annotations

import pytest

from thrift_handshake import PhaseError
from thrift_handshake.states import (
    CLIENT_TRANSITIONS,
    SESSION_TRANSITIONS,
    ClientEvent,
    ClientPhase,
    SessionEvent,
    SessionPhase,
    StateMachine,
)


def test_a_refused_move_names_the_phase_the_event_and_what_is_allowed():
    machine = StateMachine(CLIENT_TRANSITIONS, ClientPhase.NEW)
    with pytest.raises(PhaseError) as caught:
        machine.apply(ClientEvent.CALL)
    message = str(caught.value)
    allowed = ", ".join(event.value for event in CLIENT_TRANSITIONS[ClientPhase.NEW])
    assert f"allowed here: {allowed}" in message and "nothing" not in message
    assert ClientPhase.NEW.value in message and ClientEvent.CALL.value in message
    assert machine.phase is ClientPhase.NEW, "a refused move changes nothing"


def test_a_phase_without_moves_says_nothing_is_allowed():
    machine = StateMachine({ClientPhase.CLOSED: {}}, ClientPhase.CLOSED)
    with pytest.raises(PhaseError) as caught:
        machine.apply(ClientEvent.CONNECT)
    assert "allowed here: nothing" in str(caught.value)


def test_on_change_sees_every_move_that_changes_the_phase_and_only_those():
    moves = []
    machine = StateMachine(SESSION_TRANSITIONS, SessionPhase.AWAITING_HELLO,
                           lambda old, event, new: moves.append((old, event, new)))
    machine.apply(SessionEvent.HELLO_REJECTED)  # stays AWAITING_HELLO
    assert machine.apply(SessionEvent.HELLO_ACCEPTED) is SessionPhase.ESTABLISHED
    machine.apply(SessionEvent.HELLO_REJECTED)  # stays ESTABLISHED
    machine.apply(SessionEvent.GOODBYE)
    assert moves == [
        (SessionPhase.AWAITING_HELLO, SessionEvent.HELLO_ACCEPTED, SessionPhase.ESTABLISHED),
        (SessionPhase.ESTABLISHED, SessionEvent.GOODBYE, SessionPhase.CLOSING),
    ]


def test_allows_follows_the_table():
    machine = StateMachine(CLIENT_TRANSITIONS, ClientPhase.READY)
    for event in ClientEvent:
        assert machine.allows(event) == (event in CLIENT_TRANSITIONS[ClientPhase.READY])
