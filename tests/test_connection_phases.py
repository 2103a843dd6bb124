"""A server connection's phases and who closes it, and admission's choice of whom to evict, on plain
``Connection`` objects over socket pairs: no server, no threads."""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from typing import Iterator, List

import pytest

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TBufferedTransport, TMemoryBuffer

from thrift_handshake import ServerConfig, ServerLimits
from thrift_handshake.gate_state import ConnectionState
from thrift_handshake.metrics import ServerMetrics
from thrift_handshake.peerlog import WarningBudget
from thrift_handshake.server.admission import (SILENT_GRACE, Admission, evict_for_another_host, eviction_candidates,
                                               host_over_its_share, tell_evicted)
from thrift_handshake.server.connection import Connection
from thrift_handshake.session import Session, SessionContext, SessionSettings
from thrift_handshake.states import ConnectionEvent, ConnectionPhase, SocketMode
from thrift_handshake.wire import ConnectionSocket
from thrift_handshake_gen.session.ttypes import ClientHello

NOW = 1000.0


class Pairs:
    """Connections over socket pairs; ``closed`` lists those their closer was called for."""

    def __init__(self) -> None:
        self.closed: List[Connection] = []
        self.peers: List[socket.socket] = []
        self._ours: List[socket.socket] = []

    def connection(self, config: ServerConfig = ServerConfig(), accepted_at: float = NOW,
                   host: str = "127.0.0.1") -> Connection:
        ours, theirs = socket.socketpair()
        self._ours.append(ours)
        self.peers.append(theirs)
        sock = ConnectionSocket()
        sock.setHandle(ours)
        return Connection(sock, f"{host}:{len(self.peers)}", config, self.closed.append, accepted_at)

    def close(self) -> None:
        for sock in self._ours + self.peers:
            sock.close()


@pytest.fixture
def pairs() -> Iterator[Pairs]:
    made = Pairs()
    yield made
    made.close()


def _serving(connection: Connection) -> Connection:
    """Moves a new connection to SERVING, with a plain connection's state (no session)."""
    assert connection.take_input()
    connection.started(None, None, ConnectionState(SessionContext(peer=connection.peer), None, ServerMetrics()))
    return connection


def test_only_one_of_two_takers_gets_a_waiting_connection(pairs):
    connection = pairs.connection()
    assert connection.phase is ConnectionPhase.ACCEPTED and connection.in_the_watch
    assert connection.take_input() and connection.phase is ConnectionPhase.STARTING
    assert not connection.take_input()
    assert not connection.expire(float("inf")), "a connection on a thread does not expire in the watch"
    assert pairs.closed == []


def test_a_stop_closes_a_waiting_connection_through_its_closer_once(pairs):
    connection = pairs.connection()
    connection.shutdown()
    connection.shutdown()
    assert pairs.closed == [connection] and connection.closed_by is ConnectionEvent.STOPPING
    assert connection.phase is ConnectionPhase.CLOSING
    connection.closed()
    assert connection.phase is ConnectionPhase.CLOSED


def test_a_stop_shuts_the_socket_of_a_connection_on_a_thread_and_it_may_not_wait_again(pairs):
    connection = pairs.connection()
    assert connection.take_input()
    connection.shutdown()
    assert pairs.closed == [], "its thread closes it"
    assert pairs.peers[0].recv(1) == b"", "the thread's read ends"
    assert not connection.park(NOW + 1, "idle timeout", lambda c: pytest.fail("parked while closing"))
    assert connection.closed_by is ConnectionEvent.STOPPING


def test_a_waiting_connection_expires_at_its_time_and_not_before(pairs):
    connection = _serving(pairs.connection())
    watched = []
    assert connection.park(NOW + 5, "idle timeout", watched.append) and watched == [connection]
    assert connection.phase is ConnectionPhase.WAITING
    assert not connection.expire(NOW + 4.9)
    assert connection.expire(NOW + 5)
    assert pairs.closed == [connection] and connection.closed_by is ConnectionEvent.EXPIRED
    assert connection.expiry_reason == "idle timeout"


def test_the_socket_mode_follows_the_session(pairs):
    connection = pairs.connection()
    assert connection.mode is SocketMode.HANDSHAKE
    connection.session_started()
    assert connection.mode is SocketMode.SESSION


def test_a_connection_on_a_thread_without_a_stack_yet_is_evicted_by_shutting_its_socket(pairs):
    connection = pairs.connection()
    assert connection.take_input()
    assert connection.evict()
    assert connection.closed_by is ConnectionEvent.EVICTED and pairs.closed == []
    assert pairs.peers[0].recv(1) == b""


def test_a_plain_connection_on_a_thread_is_never_evicted(pairs):
    connection = _serving(pairs.connection(ServerConfig(handshake=False)))
    assert not connection.evict(force=True)
    assert connection.phase is ConnectionPhase.SERVING


# -- whom a full server evicts ------------------------------------------------------------------

def test_the_silent_and_the_old_without_hello_are_chosen_in_accept_order(pairs):
    config = ServerConfig(limits=ServerLimits(evict_after=1.0))
    old_talking = pairs.connection(config, accepted_at=NOW - 2.0)
    young_silent = pairs.connection(config, accepted_at=NOW - SILENT_GRACE - 0.01)
    young_talking = pairs.connection(config, accepted_at=NOW - 0.5)
    brand_new_silent = pairs.connection(config, accepted_at=NOW - 0.01)
    pairs.peers[0].sendall(b"\x80")
    pairs.peers[2].sendall(b"\x80\x01")  # a hello under way: keeps its place until evict_after
    chosen = eviction_candidates([old_talking, young_silent, young_talking, brand_new_silent], NOW, config)
    assert chosen == [old_talking, young_silent]


def test_without_hello_the_plain_connection_idle_longest_is_chosen_after_those_without_a_stack(pairs):
    config = ServerConfig(handshake=False, limits=ServerLimits(evict_after=1.0, idle_timeout=10.0))
    recent, longest = _serving(pairs.connection(config)), _serving(pairs.connection(config))
    busy = _serving(pairs.connection(config))
    assert recent.park(NOW + 9.5, "idle timeout", lambda c: None)  # parked 0.5 s ago: not yet
    assert longest.park(NOW + 8.0, "idle timeout", lambda c: None)  # parked 2 s ago
    never_started = pairs.connection(config, accepted_at=NOW - 2.0)
    chosen = eviction_candidates([recent, longest, busy, never_started], NOW, config)
    assert chosen == [never_started, longest]


def test_the_silent_of_the_host_holding_the_most_go_before_another_hosts(pairs):
    config = ServerConfig(limits=ServerLimits(evict_after=1.0))
    pausing = pairs.connection(config, accepted_at=NOW - 0.5, host="127.0.0.2")  # silent, older
    flood = [pairs.connection(config, accepted_at=NOW - 0.2, host="127.0.0.3") for _ in range(2)]
    assert eviction_candidates([pausing] + flood, NOW, config) == flood + [pausing]


def test_only_a_host_over_its_share_gives_up_connections_and_only_to_another_host(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    hog = [_serving(pairs.connection(config, host="127.0.0.3")) for _ in range(3)]
    for n, connection in enumerate(hog[:2]):
        connection.session_started()
        assert connection.park(NOW + 10 - n, "idle timeout", lambda c: None)
    other = pairs.connection(config, host="127.0.0.2")
    for connection in hog[:2]:  # their hello succeeded
        session = Session(SessionSettings(), connection.state.context, connection)
        session.hello(ClientHello(client_name="hog", min_version=1, max_version=2))
        connection.state.session = session
    assert host_over_its_share(hog + [other], config, "127.0.0.3") is None, "not to make room for itself"
    assert host_over_its_share(hog[:2] + [other], config, "127.0.0.2") is None, "2 of 4 is its share"
    assert host_over_its_share(hog + [other], config, "127.0.0.2") == ("127.0.0.3", 3, [hog[1], hog[0]])
    hello_under_way = pairs.connection(config, host="127.0.0.3")
    assert host_over_its_share(hog + [hello_under_way, other], config, "127.0.0.2") == (
        "127.0.0.3", 4, [hello_under_way, hog[1], hog[0]])




def test_with_workers_a_hosts_share_is_this_workers_part_of_it_rounded_up(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=8, host_share=0.5))  # a share of 4 in all
    hog = [pairs.connection(config, host="127.0.0.1") for _ in range(3)]
    others = [pairs.connection(config, host="127.0.0.2") for _ in range(2)]
    assert host_over_its_share(hog + others, config, "127.0.0.2") is None, "3 of a share of 4"
    assert host_over_its_share(hog + others, config, "127.0.0.2", part=1.0) is None
    assert host_over_its_share(hog + others, config, "127.0.0.2", part=0.5) == ("127.0.0.1", 3, hog), (
        "this worker holds half the service's connections: its part of the share is 2")
    assert host_over_its_share(hog + others, config, "127.0.0.2", part=0.3) == ("127.0.0.1", 3, hog)  # 1.2 -> 2


def test_a_share_that_is_not_a_whole_number_of_connections_rounds_down_in_one_process(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=5, host_share=0.5))  # 2.5 connections
    hog = [pairs.connection(config, host="127.0.0.1") for _ in range(3)]
    others = [pairs.connection(config, host="127.0.0.2") for _ in range(2)]
    assert host_over_its_share(hog + others, config, "127.0.0.2") == ("127.0.0.1", 3, hog)
    assert host_over_its_share(hog[:2] + others, config, "127.0.0.2") is None


def test_a_host_over_its_share_gives_up_a_session_stuck_mid_message_but_not_one_being_served(pairs):
    import time

    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5, evict_after=1.0))
    hog = [_serving(pairs.connection(config, host="127.0.0.1")) for _ in range(3)]  # each on a thread
    for connection in hog:
        connection.session_started()
    stuck, served = hog[0], hog[1]
    stuck.socket.stalled_since = time.monotonic() - 5.0  # has waited 5 s for the rest of a message
    served.socket.stalled_since = time.monotonic()  # has just begun to wait
    other = pairs.connection(config, host="127.0.0.2")
    assert host_over_its_share(hog + [other], config, "127.0.0.2") == ("127.0.0.1", 3, [stuck])


def test_the_host_share_holds_whichever_way_the_host_names_sort(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    hog = [pairs.connection(config, host="127.0.0.1") for _ in range(3)]
    other = pairs.connection(config, host="127.0.0.2")
    assert host_over_its_share(hog + [other], config, "127.0.0.2") == ("127.0.0.1", 3, hog)
    assert host_over_its_share(hog[:1] + [other], config, "127.0.0.2") is None, "1 of 4 is under its share"


def test_a_connection_without_hello_is_evictable_at_exactly_evict_after(pairs):
    config = ServerConfig(limits=ServerLimits(evict_after=1.0))
    talking = pairs.connection(config, accepted_at=NOW - 1.0)
    pairs.peers[0].sendall(b"\x80")
    assert eviction_candidates([talking], NOW, config) == [talking]


def test_without_hello_the_idle_of_the_host_holding_the_most_go_first(pairs):
    config = ServerConfig(handshake=False, limits=ServerLimits(evict_after=1.0, idle_timeout=10.0))
    lone = _serving(pairs.connection(config, host="127.0.0.2"))
    pair = [_serving(pairs.connection(config, host="127.0.0.3")) for _ in range(2)]
    assert lone.park(NOW + 5.0, "idle timeout", lambda c: None)  # idle longest, but its host holds one
    for connection in pair:
        assert connection.park(NOW + 8.0, "idle timeout", lambda c: None)
    assert eviction_candidates([lone] + pair, NOW, config) == pair + [lone]


# -- Admission: making room ---------------------------------------------------------------------

def _admission(config: ServerConfig, connections: List[Connection]) -> Admission:
    admission = Admission(config, ServerMetrics(), WarningBudget(logging.getLogger("test.admission")))
    for connection in connections:
        admission.add(connection)
    return admission


def _mid_hello(connection: Connection) -> Connection:
    """On a thread, its hello not yet answered (a message in flight)."""
    assert connection.take_input()
    context = SessionContext(peer=connection.peer)
    connection.started(None, None, ConnectionState(context, Session(SessionSettings(), context), ServerMetrics()))
    connection.state.in_flight = ("hello", 1)
    return connection


def _idle_session(connection: Connection) -> Connection:
    """Its hello succeeded and it waits in the watch for its next call."""
    _serving(connection)
    session = Session(SessionSettings(), connection.state.context, connection)
    session.hello(ClientHello(client_name="idle", min_version=1, max_version=2))
    connection.state.session = session
    assert connection.park(NOW + 10, "idle timeout", lambda c: None)
    return connection


def test_room_is_made_from_a_waiting_connection_before_one_mid_message(pairs):
    config = ServerConfig(limits=ServerLimits(evict_after=1.0))
    old = time.monotonic() - 5.0
    busy = _mid_hello(pairs.connection(config, accepted_at=old))
    waiting = pairs.connection(config, accepted_at=old)
    admission = _admission(config, [busy, waiting])
    assert admission.make_room("127.0.0.9")
    assert (busy.phase, waiting.closed_by) == (ConnectionPhase.SERVING, ConnectionEvent.EVICTED)


def test_no_room_is_made_when_no_host_holds_more_than_the_newcomer_s_would(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=2, host_share=0.5))
    sessions = [_idle_session(pairs.connection(config, host=host)) for host in ("127.0.0.1", "127.0.0.2")]
    assert not _admission(config, sessions).make_room("127.0.0.2")  # 1 each: no trading places
    assert pairs.closed == []


def test_a_host_at_its_share_gives_way_to_a_host_holding_none(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    sessions = [_idle_session(pairs.connection(config, host="127.0.0.1")) for _ in range(2)]
    assert _admission(config, sessions).make_room("127.0.0.2")  # max-min: 2 against 0 + 1
    assert len(pairs.closed) == 1


def test_a_host_over_its_share_gives_up_one_idle_session_for_another_host(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    sessions = [_idle_session(pairs.connection(config, host="127.0.0.1")) for _ in range(3)]
    assert _admission(config, sessions).make_room("127.0.0.2")
    assert len(pairs.closed) == 1 and pairs.closed[0].eviction_reason == (
        "host 127.0.0.1 holds 3 of max_connections 4 (its share: 0.5) and another host, holding fewer, needed room")


def test_a_host_over_its_share_gives_up_a_hello_in_flight_if_it_must(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    now = time.monotonic()  # young: not eviction candidates, only the host's share makes them go
    hellos = [_mid_hello(pairs.connection(config, accepted_at=now, host="127.0.0.1")) for _ in range(3)]
    assert _admission(config, hellos).make_room("127.0.0.2")
    assert [c.closed_by for c in hellos] == [ConnectionEvent.EVICTED, None, None]


def test_no_room_is_made_from_a_host_whose_connections_are_all_closing_already(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    closing = [pairs.connection(config, accepted_at=time.monotonic(), host="127.0.0.1") for _ in range(3)]
    for connection in closing:
        connection.shutdown()
    assert not _admission(config, closing).make_room("127.0.0.2")


def test_waiting_until_empty_gives_up_when_the_time_is_up(pairs):
    admission = _admission(ServerConfig(), [pairs.connection()])
    asked = []

    def remaining() -> float:
        asked.append(len(asked))
        assert len(asked) <= 3, "asked again after the time was up"
        return [0.02, 0.01, -0.001][len(asked) - 1]

    admission.wait_until_empty(remaining)
    assert asked == [0, 1, 2]


def test_an_evicted_session_is_told_why_as_an_exception_without_a_method(pairs):
    connection = pairs.connection()
    connection.protocol = TBinaryProtocol(TBufferedTransport(connection.socket))
    tell_evicted(connection, "evicted: idle")
    pairs.peers[0].settimeout(5)
    reply = TBinaryProtocol(TMemoryBuffer(pairs.peers[0].recv(4096)))
    assert reply.readMessageBegin() == ("", TMessageType.EXCEPTION, 0)
    error = TApplicationException()
    error.read(reply)
    assert (error.type, error.message) == (TApplicationException.INTERNAL_ERROR, "evicted: idle")


def test_telling_a_gone_session_why_fails_quietly(pairs):
    gone = pairs.connection()
    gone.protocol = TBinaryProtocol(TBufferedTransport(gone.socket))
    gone.socket.handle.close()
    tell_evicted(gone, "evicted: idle")  # OSError on the closed socket
    not_reading = pairs.connection()
    not_reading.protocol = TBinaryProtocol(TBufferedTransport(not_reading.socket))
    pairs.peers[1].close()
    not_reading.socket.handle.shutdown(socket.SHUT_WR)
    tell_evicted(not_reading, "evicted: idle")  # the write fails: a TTransportException


def test_a_host_may_always_hold_one_connection_and_a_share_of_two_is_a_share_of_two(pairs):
    tiny = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.1))  # 0.4 connections: one
    lone, other = pairs.connection(tiny, host="127.0.0.1"), pairs.connection(tiny, host="127.0.0.2")
    assert host_over_its_share([lone, other], tiny, "127.0.0.3") is None
    half = ServerConfig(limits=ServerLimits(max_connections=2, host_share=0.5))
    both = [pairs.connection(half, host="127.0.0.1") for _ in range(2)]
    assert host_over_its_share(both, half, "127.0.0.2") == ("127.0.0.1", 2, both)


def test_the_silent_grace_and_the_idle_wait_hold_at_their_exact_ends(pairs):
    config = ServerConfig(limits=ServerLimits(evict_after=1.0))
    silent = pairs.connection(config, accepted_at=NOW - SILENT_GRACE)
    assert eviction_candidates([silent], NOW, config) == [silent]
    plain = ServerConfig(handshake=False, limits=ServerLimits(evict_after=1.0, idle_timeout=10.0))
    idle = _serving(pairs.connection(plain))
    assert idle.park(NOW - 1.0 + 10.0, "idle timeout", lambda c: None)  # parked exactly evict_after ago
    assert eviction_candidates([idle], NOW, plain) == [idle]


def test_an_ipv6_newcomer_is_of_the_same_host_as_the_connections_it_holds(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=2, host_share=0.5))
    held = [_idle_session(pairs.connection(config, host="[::1]")) for _ in range(2)]
    newcomer = pairs.connection(config, host="[::1]")
    pairs.peers[-1].close()  # its "server full" answer finds it gone
    assert not _admission(config, held).admit(newcomer.socket, newcomer.peer), "a host does not evict itself"
    assert pairs.closed == []


def test_the_message_in_flight_is_the_states(pairs):
    connection = pairs.connection()
    assert connection.in_flight is None
    _mid_hello(connection)
    assert connection.in_flight == ("hello", 1)


def test_a_stop_waits_for_the_reply_in_flight_unless_forced(pairs):
    busy = _mid_hello(pairs.connection())
    busy.shutdown()
    pairs.peers[0].setblocking(False)
    with pytest.raises(BlockingIOError):  # not shut: the reply in flight may still go out
        pairs.peers[0].recv(1)
    assert busy.state.closing and busy.closed_by is ConnectionEvent.STOPPING
    busy.shutdown(force=True)
    assert pairs.peers[0].recv(1) == b""


def test_an_eviction_gives_up_on_a_connection_parked_meanwhile(pairs):
    connection = _mid_hello(pairs.connection())
    connection.state.in_flight = None
    state = connection.state

    class ParkedFirst(ConnectionState):
        def close_if_idle(self, shut, force=False):
            assert connection.park(NOW + 10, "idle timeout", lambda c: None)  # the reply went out meanwhile
            return super().close_if_idle(shut, force)

    state.__class__ = ParkedFirst
    assert not connection.evict()
    assert connection.phase is ConnectionPhase.WAITING and connection.closed_by is None


def test_by_default_an_eviction_spares_sessions_and_messages_in_flight(pairs):
    session = _idle_session(pairs.connection())
    assert not session.evict() and session.phase is ConnectionPhase.WAITING
    busy = _mid_hello(pairs.connection())
    assert not busy.evict() and busy.phase is ConnectionPhase.SERVING
    assert busy.closed_by is None, "only the move to CLOSING names who closed it"


def test_a_session_stuck_mid_message_is_evicted_only_when_the_stall_is_asked_about(pairs):
    stuck = _serving(pairs.connection())
    stuck.session_started()
    stuck.socket.stalled_since = time.monotonic() - 5.0  # has waited 5 s for the rest of a message
    assert not stuck.evict(force=True, session=True)
    assert stuck.phase is ConnectionPhase.SERVING and stuck.closed_by is None
    assert stuck.evict(force=True, session=True, stalled=1.0)
    assert stuck.closed_by is ConnectionEvent.EVICTED


def test_a_connection_on_a_thread_is_not_silent_and_a_closed_socket_is_shut_quietly(pairs):
    connection = pairs.connection()
    assert connection.silent()
    assert connection.take_input() and not connection.silent()
    connection.socket.handle.close()
    assert connection.evict()  # shutting the closed socket raises OSError: it is gone anyway
    assert connection.closed_by is ConnectionEvent.EVICTED


def test_a_peer_that_reset_the_connection_counts_as_silent():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as peer:
        ours, _ = listener.accept()
        with ours:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # a reset: recv() on our end raises ECONNRESET
            assert select.select([ours], [], [], 5)[0] == [ours]  # the reset arrived
            sock = ConnectionSocket()
            sock.setHandle(ours)
            assert Connection(sock, "127.0.0.1:1", ServerConfig(), lambda c: None, NOW).silent()


def test_a_host_over_its_share_gives_up_only_sessions_waiting_in_the_watch(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.5))
    idle = _idle_session(pairs.connection(config, host="127.0.0.1"))
    working = [_idle_session(pairs.connection(config, host="127.0.0.1")) for _ in range(2)]
    for connection in working:
        assert connection.take_input()  # its next call arrived: on a thread again
    assert host_over_its_share([idle] + working, config, "127.0.0.2") == ("127.0.0.1", 3, [idle])


def test_the_tls_socket_goes_under_the_connection_unless_it_is_closing(pairs):
    connection = pairs.connection()
    assert connection.take_input()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert connection.replace_handle(ours) and connection.socket.handle is ours
        connection.shutdown(force=True)
        assert not connection.replace_handle(ours)



def test_a_server_over_its_limit_makes_room_before_admitting(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=2, host_share=1.0))
    held = [_idle_session(pairs.connection(config)) for _ in range(3)]  # e.g. the limit counted over workers
    newcomer = pairs.connection(config)
    pairs.peers[-1].close()
    assert not _admission(config, held).admit(newcomer.socket, newcomer.peer)


def test_an_observer_sees_a_new_connection_and_a_session_with_its_client_and_calls(pairs):
    from thrift_handshake.server.connection import ConnectionInfo

    config = ServerConfig()
    fresh = pairs.connection(config, host="127.0.0.1")
    assert fresh.info(NOW + 2.5) == ConnectionInfo(fresh.peer, "ACCEPTED", 2.5, None, None, None, None, 0)
    serving = _serving(pairs.connection(config, host="127.0.0.1"))
    session = Session(SessionSettings(), serving.state.context, serving)
    session.hello(ClientHello(client_name="observed", language="python", min_version=1, max_version=2))
    serving.state.session = session
    serving.state.counters.calls.update(hello=1, echo=2)
    info = serving.info(NOW + 1.0)
    assert (info.session_id, info.client_name, info.language, info.version, info.calls) == (
        session.context.session_id, "observed", "python", 2, 3)
    assert info.session_id


def test_what_an_observer_sees_is_a_snapshot_it_cannot_change(pairs):
    import dataclasses

    info = pairs.connection().info(NOW + 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.calls = 5
    assert info.calls == 0 and info.age_seconds == 1.0


def test_a_connection_already_closing_or_closed_is_never_evicted(pairs):
    connection = pairs.connection()
    connection.shutdown()
    assert connection.phase is ConnectionPhase.CLOSING and pairs.closed == [connection]
    assert not connection.evict(force=True, session=True, reason="room")
    connection.closed()
    assert not connection.evict(force=True, session=True, reason="room")
    assert pairs.closed == [connection] and connection.closed_by is ConnectionEvent.STOPPING
    assert connection.eviction_reason != "room"


def test_a_stop_shuts_only_the_reading_side_of_an_idle_connection_on_a_thread(pairs):
    connection = _serving(pairs.connection())
    connection.shutdown()
    ours = connection.socket.handle
    ours.setblocking(False)
    assert ours.recv(1) == b"", "its thread's next read ends"
    ours.sendall(b"why")  # the session can still be told why it is closed
    assert pairs.peers[0].recv(3) == b"why"


def test_a_stop_of_an_idle_connection_on_a_thread_whose_socket_is_gone_is_quiet(pairs):
    connection = _serving(pairs.connection())
    connection.socket.handle.close()
    connection.shutdown()  # shutting the reading side of a closed socket raises OSError: it is gone anyway
    assert connection.closed_by is ConnectionEvent.STOPPING and pairs.closed == []


def test_a_workers_part_is_its_connections_over_the_services_and_all_of_them_when_alone():
    assert Admission._part(3, 12) == 0.25
    assert Admission._part(5, 5) == 1.0
    assert Admission._part(0, 0) == 1.0


def test_a_share_under_one_connection_is_one_connection(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=4, host_share=0.2))  # 0.8 of a connection
    first = pairs.connection(config, host="10.0.0.1")
    assert host_over_its_share([first], config, "10.0.0.2") is None  # one is within its share
    held = [first, pairs.connection(config, host="10.0.0.1"), pairs.connection(config, host="10.0.0.2")]
    hog = host_over_its_share(held, config, "10.0.0.2")
    assert hog is not None and hog[:2] == ("10.0.0.1", 2)  # two are more than one


def test_telling_an_evicted_session_whose_peer_reads_nothing_gives_up_after_a_second(pairs):
    config = ServerConfig(limits=ServerLimits(reply_timeout=4.0))
    connection = pairs.connection(config)
    ours = connection.socket.handle
    ours.setblocking(False)
    try:
        while True:  # the peer reads nothing: fill what the kernel holds for it
            ours.send(b"x" * 65536)
    except BlockingIOError:
        pass
    connection.session_started()  # a session's socket: blocking, kernel send timeouts of reply_timeout
    connection.protocol = TBinaryProtocol(TBufferedTransport(connection.socket))
    told = []
    started = time.monotonic()
    teller = threading.Thread(target=lambda: (tell_evicted(connection, "evicted: idle"), told.append(True)))
    teller.start()
    teller.join(6)
    took = time.monotonic() - started
    assert told == [True], "still writing after 6 s"
    assert 0.9 <= took < 3.5, took  # its own second, not the session's 4 s reply timeout


def test_telling_an_evicted_tls_session_whose_peer_reads_nothing_gives_up_after_a_second():
    import ssl
    from pathlib import Path

    certs = Path(__file__).resolve().parent / "certs"
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    client_side = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_peer = socket.create_connection(listener.getsockname(), timeout=5)
        raw_ours, _ = listener.accept()
    peers = []
    handshake = threading.Thread(target=lambda: peers.append(client_side.wrap_socket(raw_peer, server_hostname="localhost")))
    handshake.start()
    ours = server_side.wrap_socket(raw_ours, server_side=True)
    handshake.join(5)
    try:
        ours.setblocking(False)
        try:
            while True:  # the peer reads nothing: fill what the kernel holds for it
                ours.send(b"x" * 16384)
        except ssl.SSLWantWriteError:
            pass
        sock = ConnectionSocket()
        sock.setHandle(ours)
        connection = Connection(sock, "127.0.0.1:1", ServerConfig(limits=ServerLimits(reply_timeout=4.0)),
                                lambda c: None, NOW)
        connection.session_started()  # a TLS session's socket: Python's timeout mode
        connection.protocol = TBinaryProtocol(TBufferedTransport(connection.socket))
        started = time.monotonic()
        tell_evicted(connection, "evicted: idle")
        took = time.monotonic() - started
    finally:
        ours.close()
        for peer in peers:
            peer.close()
    assert 0.9 <= took < 3.5, took  # its own second, not the session's 4 s reply timeout


def test_no_room_is_made_when_none_of_the_hogs_connections_can_go_after_all(pairs):
    config = ServerConfig(limits=ServerLimits(max_connections=2, host_share=0.5))
    hog = [_mid_hello(pairs.connection(config, host="10.0.0.1")) for _ in range(2)]
    for connection in hog:
        connection.state.in_flight = None

        class ParkedFirst(ConnectionState):
            def close_if_idle(self, shut, force=False, parked=connection):
                assert parked.park(NOW + 10, "idle timeout", lambda c: None)  # its reply went out meanwhile
                return super().close_if_idle(shut, force)

        connection.state.__class__ = ParkedFirst
    assert host_over_its_share(hog, config, "10.0.0.2")[:2] == ("10.0.0.1", 2)
    assert not evict_for_another_host(hog, config, "10.0.0.2", WarningBudget(logging.getLogger("test.admission")))
    assert [c.phase for c in hog] == [ConnectionPhase.WAITING] * 2
