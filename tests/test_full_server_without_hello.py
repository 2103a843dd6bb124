"""A server without hello (``handshake=False``) at max_connections: no session marks a connection as
committed, so a plain connection waiting between calls is the analogue of one without a session. The
one idle longest is closed to make room; only when every slot has a call in flight is a newcomer
refused, and the Python client raises ServerFull for it, as after a hello."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any, Callable, Iterator, Tuple

import pytest
from conftest import encode_call, eventually

from thrift_handshake import Client, ClientOptions, ClientPhase, RetryPolicy, ServerFull, ServerLimits, Timeouts
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService

SERVER_LOG = "thrift_handshake.server"


class BlockingEcho(HandshakeHandler):
    """echo("block") waits until ``release`` is set; ``entered`` tells that it is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def echo(self, message):
        if message == "block":
            self.entered.set()
            self.release.wait(10)
        return message


def _plain_client(port: int) -> Client:
    options = ClientOptions(handshake=False, timeouts=Timeouts(connect=5, call=10))
    return Client("127.0.0.1", port, options, service=HandshakeService)


@contextlib.contextmanager
def _held_by_one_call(start_server: Callable[..., Any]) -> Iterator[Tuple[Any, Callable[[], None]]]:
    """A server without hello at max_connections 1 whose one connection is in an echo that blocks;
    yields the server and what ends that call and closes its connection (again at the end)."""
    handler = BlockingEcho()
    server = start_server(handler, handshake=False, limits=ServerLimits(max_connections=1))
    busy = _plain_client(server.port)
    busy.connect()
    caller = threading.Thread(target=busy.echo, args=("block",))
    caller.start()

    def end() -> None:
        handler.release.set()
        caller.join(10)
        busy.close()

    try:
        assert handler.entered.wait(5)
        yield server, end
    finally:
        end()


def test_a_full_server_without_hello_says_so_and_the_client_raises_server_full(start_server):
    with _held_by_one_call(start_server) as (server, _):
        newcomer = _plain_client(server.port)
        newcomer.connect()
        with pytest.raises(ServerFull, match="server full: 1 connections"):
            newcomer.echo("let me in")
        assert newcomer.phase is ClientPhase.CLOSED  # refused, not broken: it may connect again


def test_a_retried_method_refused_by_a_full_server_connects_again_at_its_next_call(start_server):
    """The refusal leaves the newcomer CLOSED and refused: the next call of a method its retry policy
    covers connects again first, even when the refused call had no attempt left."""
    options = ClientOptions(handshake=False, timeouts=Timeouts(connect=5, call=10),
                            retry=RetryPolicy(idempotent={"echo"}, attempts=1))
    with _held_by_one_call(start_server) as (server, end_the_call):
        newcomer = Client("127.0.0.1", server.port, options, service=HandshakeService)
        try:
            newcomer.connect()
            with pytest.raises(ServerFull, match="server full"):
                newcomer.echo("let me in")
            end_the_call()
            assert eventually(lambda: server.connection_count == 0)
            assert newcomer.echo("now") == "now"
        finally:
            newcomer.close()


def test_the_plain_connection_idle_longest_makes_room_for_a_newcomer(start_server, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server(handshake=False, limits=ServerLimits(max_connections=2, evict_after=0.05))
    echo = encode_call("echo", HandshakeService.echo_args(message="x"))
    idle = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(echo)
        assert sock.recv(65536)
        idle.append(sock)
    try:
        time.sleep(0.1)  # past the few milliseconds a connection's thread waits for its next call
        idle[1].sendall(echo)  # the second is the more recently active one
        assert idle[1].recv(65536)
        time.sleep(0.1)
        with _plain_client(server.port) as newcomer:
            assert newcomer.echo("let in") == "let in"
        assert idle[0].recv(65536) == b"", "the connection idle longest was closed"
        idle[1].sendall(echo)
        assert idle[1].recv(65536), "the other one is still served"
    finally:
        for sock in idle:
            sock.close()
    lines = lambda: [r.getMessage() for r in list(caplog.records) if r.name == SERVER_LOG]
    assert eventually(lambda: any(line.endswith(": evicted: idle and the server was full") for line in lines()))
    assert not any("hello" in line for line in lines() if "evicted" in line)


def test_a_silent_connection_evicted_from_a_server_without_hello_is_not_said_to_lack_a_hello(start_server, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server(handshake=False, limits=ServerLimits(max_connections=1, evict_after=0.05))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        assert eventually(lambda: server.connection_count == 1)
        time.sleep(0.1)  # older than evict_after
        with _plain_client(server.port) as newcomer:
            assert newcomer.echo("let in") == "let in"
        assert silent.recv(65536) == b""
    lines = lambda: [r.getMessage() for r in list(caplog.records) if r.name == SERVER_LOG and "evicted" in r.getMessage()]
    assert eventually(lambda: lines())
    assert not any("hello" in line for line in lines()), lines()
