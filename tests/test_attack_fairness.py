"""Attacks on fairness between hosts at max_connections (issue 18: one host can never lock out the
others). Hosts are told apart by source address on loopback: 127.0.0.2 is the good host, 127.0.0.3 the
hog. Every figure is printed."""

from __future__ import annotations

import logging
import socket
import time
from typing import List, Optional

from conftest import encode_call, eventually, told_within

from thrift_handshake import ServerConfig, ServerLimits
from thrift_handshake.server.admission import host_over_its_share
from thrift_handshake.server.connection import Connection
from thrift_handshake.states import ConnectionPhase
from thrift_handshake.wire import ConnectionSocket
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello

GOOD, HOG = "127.0.0.2", "127.0.0.3"
HELLO = encode_call("hello", SessionService.hello_args(
    hello=ClientHello(min_version=1, max_version=2, client_name="fair")))


def _connect(host: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(host, 0))


def _session(host: str, port: int) -> Optional[socket.socket]:
    """A connection from ``host`` whose hello and one echo were answered (None if refused or evicted)."""
    sock = _connect(host, port)
    try:
        sock.sendall(HELLO)
        answer = sock.recv(65536)
        if answer and b"server full" not in answer:
            sock.sendall(encode_call("echo", HandshakeService.echo_args(message="fairly served"), seqid=2))
            if b"fairly served" in sock.recv(65536):
                return sock
    except OSError:  # reset: evicted
        pass
    sock.close()
    return None


def test_sessions_of_one_host_stalled_mid_request_cannot_lock_out_another_host(start_server, caplog):
    # hello, then the first byte of a next request that never comes: each session holds a pool thread
    # until request_timeout (30 s), is neither idle nor awaiting hello, and was never made to give way,
    # so one host held every slot (0 of 54 good clients served in 6 s, recycling its sessions as they
    # timed out). Stalled for evict_after, such a session of a host over its share makes room.
    caplog.set_level(logging.INFO, logger="thrift_handshake.server")
    limits = ServerLimits(max_connections=8, evict_after=0.5)  # host_share 0.5: 4 connections each
    server = start_server(limits=limits)
    hog: List[socket.socket] = []
    good: List[Optional[socket.socket]] = []
    try:
        for _ in range(8):
            sock = _connect(HOG, server.port)
            sock.sendall(HELLO + b"\x80")
            assert sock.recv(65536)  # hello answered
            hog.append(sock)
        assert eventually(lambda: server.connection_count == 8 and all(
            c.phase is ConnectionPhase.SERVING and c.established for c in server._connections))
        time.sleep(limits.evict_after + 0.1)  # the stall must last evict_after before it counts against the hog
        good = [_session(GOOD, server.port) for _ in range(4)]
        served = sum(sock is not None for sock in good)
        fifth = _session(GOOD, server.port)  # each host now holds its share: no one else makes room
        good.append(fifth)
        print(f"\n8 sessions of one host stalled mid-request at max_connections 8: {served} of 4 clients of "
              f"another host served; a 5th served: {fifth is not None}")
        assert served == 4 and fifth is None
        told = told_within(hog)
        assert sum(data == b"" for data in told) == 4, told  # four closed, four keep their place

        def evicted():
            return [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped peer=127.0.0.3")]

        assert eventually(lambda: len(evicted()) == 4)
        assert all(": evicted: host 127.0.0.3 holds " in line for line in evicted()), evicted()
    finally:
        for sock in hog + [sock for sock in good if sock is not None]:
            sock.close()


def test_with_workers_a_host_over_its_share_of_the_service_gives_way_in_each_worker():
    # A worker sees only its own connections, but the share was of the whole service: one host holding 8 of
    # max_connections 8 over two workers (say 5 and 3) held at most 5 in either, so it was never over its
    # share of 4 there, and another host got 0-1 of 8 sessions (serve --workers 2); now 2-4 of 8.
    config = ServerConfig(limits=ServerLimits(max_connections=8, host_share=0.5))
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        def connection(n: int, host: str) -> Connection:
            sock = ConnectionSocket()
            sock.setHandle(pairs[n][0])
            return Connection(sock, f"{host}:{n}", config, lambda c: None)

        hog = [connection(n, HOG) for n in range(3)]  # no hello yet: the first a hog gives up
        here = hog + [connection(3, GOOD), connection(4, GOOD)]  # the newcomer's host would hold 3 too
        assert host_over_its_share(here, config, GOOD) is None, "alone, 3 of 8 is within the share"
        assert host_over_its_share(here, config, GOOD, part=1.0) is None, "one worker: the same"
        # this worker holds half the service's connections: its part of the host's share is 2
        assert host_over_its_share(here, config, GOOD, part=0.5) == (HOG, 3, hog)
        # max-min: a host holding none gets room from one holding more than it would, share or not
        assert host_over_its_share(here, config, "127.0.0.4") == (HOG, 3, hog)
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_without_hello_plain_connections_of_one_host_stalled_mid_request_make_room_too(start_server):
    # The same attack on a plain service (serve --no-hello): a first call answered, then a byte of the next.
    server = start_server(handshake=False, limits=ServerLimits(max_connections=4, evict_after=0.5))
    first = encode_call("echo", HandshakeService.echo_args(message="first"), seqid=1)
    hog: List[socket.socket] = []
    try:
        for _ in range(4):
            sock = _connect(HOG, server.port)
            sock.sendall(first + b"\x80")
            assert b"first" in sock.recv(65536)
            hog.append(sock)
        assert eventually(lambda: server.connection_count == 4 and all(
            c.phase is ConnectionPhase.SERVING for c in server._connections))
        time.sleep(0.6)  # the stall must last evict_after before it counts against the hog
        with _connect(GOOD, server.port) as sock:
            sock.sendall(encode_call("echo", HandshakeService.echo_args(message="fairly served"), seqid=1))
            answer = sock.recv(65536)
        assert b"fairly served" in answer, answer  # was: "server full"
    finally:
        for sock in hog:
            sock.close()
