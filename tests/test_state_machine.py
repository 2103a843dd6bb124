"""The phase tables' machine: what it tells when a move is refused, and which moves it reports; the
server's connection table driven with plain events."""

from __future__ import annotations

import pytest

from thrift_handshake import PhaseError
from thrift_handshake.states import (
    CLIENT_TRANSITIONS,
    CONNECTION_TRANSITIONS,
    SESSION_TRANSITIONS,
    ClientEvent,
    ClientPhase,
    ConnectionEvent,
    ConnectionPhase,
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


# -- the server's connection table, driven with plain events (no sockets) ----------------------

def test_every_move_the_connection_table_lacks_is_refused_naming_event_and_phase():
    refused = 0
    for phase in ConnectionPhase:
        for event in ConnectionEvent:
            if event in CONNECTION_TRANSITIONS[phase]:
                continue
            machine = StateMachine(CONNECTION_TRANSITIONS, phase)
            with pytest.raises(PhaseError) as caught:
                machine.apply(event)
            assert (caught.value.action, caught.value.phase) == (event.value, phase.value)
            assert machine.phase is phase
            refused += 1
    assert refused == 22  # 6 phases x 7 events, less the 20 moves of the table


def test_a_connection_is_served_waits_and_is_served_again_without_keeping_a_thread():
    machine = StateMachine(CONNECTION_TRANSITIONS, ConnectionPhase.ACCEPTED)
    path = [machine.apply(event) for event in (
        ConnectionEvent.INPUT, ConnectionEvent.STARTED, ConnectionEvent.PARKED, ConnectionEvent.INPUT,
        ConnectionEvent.PARKED, ConnectionEvent.EXPIRED, ConnectionEvent.CLOSE)]
    assert path == [ConnectionPhase.STARTING, ConnectionPhase.SERVING, ConnectionPhase.WAITING,
                    ConnectionPhase.SERVING, ConnectionPhase.WAITING, ConnectionPhase.CLOSING,
                    ConnectionPhase.CLOSED]


@pytest.mark.parametrize("phase", [ConnectionPhase.ACCEPTED, ConnectionPhase.STARTING,
                                   ConnectionPhase.SERVING, ConnectionPhase.WAITING])
@pytest.mark.parametrize("event", [ConnectionEvent.EVICTED, ConnectionEvent.STOPPING])
def test_eviction_and_stop_close_a_connection_wherever_it_is(phase, event):
    machine = StateMachine(CONNECTION_TRANSITIONS, phase)
    assert machine.apply(event) is ConnectionPhase.CLOSING
    assert machine.apply(ConnectionEvent.CLOSE) is ConnectionPhase.CLOSED


def test_a_closing_connection_is_never_served_or_parked_again():
    for event in (ConnectionEvent.INPUT, ConnectionEvent.PARKED, ConnectionEvent.EXPIRED, ConnectionEvent.EVICTED):
        assert event not in CONNECTION_TRANSITIONS[ConnectionPhase.CLOSING]
        assert event not in CONNECTION_TRANSITIONS[ConnectionPhase.CLOSED]
    assert CONNECTION_TRANSITIONS[ConnectionPhase.CLOSING][ConnectionEvent.STARTED] is ConnectionPhase.CLOSING


def test_only_a_connection_in_the_watch_expires_and_only_one_on_a_thread_is_closed_by_its_thread():
    expiring = {phase for phase, moves in CONNECTION_TRANSITIONS.items() if ConnectionEvent.EXPIRED in moves}
    assert expiring == {ConnectionPhase.ACCEPTED, ConnectionPhase.WAITING}
    closed_directly = {phase for phase, moves in CONNECTION_TRANSITIONS.items()
                       if moves.get(ConnectionEvent.CLOSE) is ConnectionPhase.CLOSED}
    assert closed_directly == {ConnectionPhase.STARTING, ConnectionPhase.SERVING, ConnectionPhase.CLOSING}
