"""The client's edges that only a scripted peer reaches: the connect timeout under a TLS handshake nobody
answers, a retry after a hello that broke, and a socket whose descriptor is gone when the client closes
it (real sockets on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import List

import pytest

from thrift_handshake import Client, ClientOptions, ClientTLS, ConnectError, ConnectionBroken, Endpoints, RetryPolicy, Timeouts
from thrift_handshake.states import ClientPhase
from thrift_handshake_gen import HandshakeService

CERTS = Path(__file__).resolve().parent / "certs"


def test_the_connect_timeout_ends_a_tls_handshake_the_server_never_answers():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers the hello
        options = ClientOptions(tls=ClientTLS(ca_file=str(CERTS / "ca.pem")), timeouts=Timeouts(connect=0.05))
        client = Client("127.0.0.1", silent.getsockname()[1], options, service=HandshakeService)
        started = time.monotonic()
        with pytest.raises(ConnectError):
            client.connect()
        took = time.monotonic() - started
    assert 0.05 <= took < 1.0  # its 50 ms (the timeout is given in milliseconds to the socket)
    assert client.timeline[0].phase == "connect" and client.timeline[0].error is not None


class Relay:
    """Relays connections to ``upstream``, but for those whose number (from 1) is in ``refuse_hello``:
    those are closed at their first byte. ``cut(n)`` ends connection n at both ends."""

    def __init__(self, upstream: int, refuse_hello: set) -> None:
        self._upstream = upstream
        self._refuse = refuse_hello
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: List[tuple] = []
        self._threads: List[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                ours, _ = self._listener.accept()
            except OSError:  # the relay closed
                return
            number += 1
            if number in self._refuse:
                ours.recv(1)
                ours.close()
                self._pairs.append((None, None))
                continue
            theirs = socket.create_connection(("127.0.0.1", self._upstream))
            self._pairs.append((ours, theirs))
            self._start(self._pump, ours, theirs)
            self._start(self._pump, theirs, ours)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass  # one end cut
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut

    def cut(self, number: int) -> None:
        self._pairs[number - 1][0].shutdown(socket.SHUT_RDWR)  # its pump shuts the other end

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        for pair in self._pairs:
            for end in pair:
                if end is not None:
                    end.close()
        for thread in self._threads:
            thread.join(5)


def test_a_retry_after_a_hello_that_broke_connects_again(start_server):
    server = start_server()
    relay = Relay(server.port, refuse_hello={2})
    try:
        retry = RetryPolicy(idempotent={"echo"}, attempts=2, backoff=0.0)
        client = Client(Endpoints([("127.0.0.1", relay.port)]), options=ClientOptions(retry=retry),
                        service=HandshakeService)
        client.connect()  # connection 1
        relay.cut(1)
        with pytest.raises(ConnectionBroken):
            client.call("fail", "not retried")  # not idempotent: the client is left BROKEN
        assert client.phase is ClientPhase.BROKEN
        # attempt 1 connects again (connection 2), whose hello breaks on the only endpoint: the client is
        # CLOSED (so that the next endpoint can be tried), not refused; attempt 2 must connect again
        # (connection 3) rather than call on a closed client
        assert client.echo("third time") == "third time"
        assert [r.phase for r in client.timeline].count("connect") == 3
        client.close()
    finally:
        relay.close()


def test_closing_a_client_whose_socket_descriptor_is_already_gone_still_closes_it(start_server):
    server = start_server()
    client = Client("127.0.0.1", server.port, ClientOptions(), service=HandshakeService)
    client.connect()
    handle = client._sock.handle
    os.close(handle.fileno())  # closed under the client: goodbye and the client's own close get EBADF
    assert client.close() is None
    assert client.phase is ClientPhase.CLOSED


def test_a_client_closed_before_it_ever_connected_logs_that_move_at_debug_level(caplog):
    """Whether moves are logged is asked at each connect and, for the moves before one, at construction."""
    import logging

    with caplog.at_level(logging.DEBUG, logger="thrift_handshake.client"):
        client = Client("127.0.0.1", 9, service=HandshakeService)  # never connects: no peer needed
        assert client.close() is None
    moves = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client" and "--" in r.getMessage()]
    assert moves == ["127.0.0.1:9 NEW --closed--> CLOSED"]
