"""Attacks on the per-call path: handlers and interceptors that raise what is not an ``Exception``
(SystemExit, KeyboardInterrupt, GeneratorExit). The connection must never be left behind: open, counted,
its session active and its client waiting for a reply that never comes."""

from __future__ import annotations

import logging
import time

import pytest

from thrift_handshake import Client, ClientOptions, Timeouts
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.errors import ConnectionBroken, HandshakeFailed
from thrift_handshake.interceptors import Call, Interceptor
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import HandshakeRejected

from conftest import eventually

SERVER_LOG = "thrift_handshake.server"
NOT_EXCEPTIONS = [SystemExit, KeyboardInterrupt, GeneratorExit]


class ExitingHandler(HandshakeHandler):
    """``echo("exit:NAME")`` raises the BaseException NAME, as a handler calling sys.exit() would."""

    def echo(self, message: str) -> str:
        if message.startswith("exit:"):
            raise {error.__name__: error for error in NOT_EXCEPTIONS}[message[5:]]("from the handler")
        return message


def _client(port: int) -> Client:
    return Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(connect=2, call=3)), service=HandshakeService)


@pytest.mark.parametrize("error", NOT_EXCEPTIONS, ids=lambda e: e.__name__)
def test_a_handler_raising_a_base_exception_closes_its_connection_instead_of_leaving_it_open(
        start_server, caplog, error):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server(handler=ExitingHandler())
    client = _client(server.port)
    client.connect()
    began = time.monotonic()
    with pytest.raises(ConnectionBroken):  # not CallTimeout: the server closed the connection
        client.echo(f"exit:{error.__name__}")
    waited = time.monotonic() - began
    client.close()
    # Before the fix the connection stayed open and counted, its session active, the call "in flight"
    # for ever (a stop waited out its grace period for a handler that had long returned).
    assert eventually(lambda: server.connection_count == 0), [c.phase for c in server._connections]
    assert server.metrics.snapshot().sessions_active == 0
    assert waited < 2.5, f"the client waited {waited:.2f} s for an answer"
    def dropped():
        return [r.getMessage() for r in caplog.records if r.name == SERVER_LOG and r.getMessage().startswith("dropped")]

    assert eventually(dropped)  # logged just after the connection is forgotten
    lines = dropped()
    assert len(lines) == 1 and f"the server failed serving echo: {error.__name__}" in lines[0], lines
    with _client(server.port) as again:  # the server serves on
        assert again.echo("after") == "after"


class RaisingInterceptor(Interceptor):
    """Raises ``error`` from ``hook`` for every echo."""

    def __init__(self, error: type, hook: str) -> None:
        self.error, self.hook = error, hook

    def call_started(self, call: Call) -> None:
        if self.hook == "call_started" and call.method == "echo":
            raise self.error("from an interceptor")

    def call_ended(self, call: Call) -> None:
        if self.hook == "call_ended" and call.method == "echo":
            raise self.error("from an interceptor")


@pytest.mark.parametrize("hook", ["call_started", "call_ended"])
@pytest.mark.parametrize("error", NOT_EXCEPTIONS, ids=lambda e: e.__name__)
def test_a_server_interceptor_raising_a_base_exception_breaks_neither_the_call_nor_the_connection(
        start_server, caplog, error, hook):
    # A server interceptor runs on a pool thread, where no signal is ever delivered: whatever it raises
    # is its own bug, reported like any other (docs: "the call and the connection go on").
    caplog.set_level(logging.WARNING, logger="thrift_handshake.interceptors")
    server = start_server(interceptors=[RaisingInterceptor(error, hook)])
    with _client(server.port) as client:
        assert client.echo("one") == "one"  # the handler still ran and its answer came back
        assert client.echo("two") == "two"  # on the same connection
        assert client.stats().calls["echo"] == 2
    reports = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.interceptors"]
    assert reports and reports[0].startswith(f"interceptor RaisingInterceptor failed in {hook} for echo"), reports
    assert f"{error.__name__}: from an interceptor" in reports[0]


class TokenHunter(Interceptor):
    """Looks for an auth token in everything a refused hello's call holds, its error's frames included
    (as error trackers that record local variables do)."""

    def __init__(self) -> None:
        self.errors: list = []
        self.found: list = []

    def call_ended(self, call: Call) -> None:
        if call.method != "hello" or call.error is None:
            return
        self.errors.append(call.error)
        traceback = call.error.__traceback__
        while traceback is not None:
            for value in traceback.tb_frame.f_locals.values():
                if isinstance(getattr(value, "auth_token", None), str):
                    self.found.append(value.auth_token)
            traceback = traceback.tb_next


def test_a_refused_hello_shows_interceptors_no_auth_token_through_its_error(start_server):
    # hello's arguments are hidden from interceptors (they carry the token), but the refusal's traceback
    # led to Session.hello's frame and its ClientHello: "my-other-password" was there for the taking.
    hunter = TokenHunter()
    server = start_server(auth_token="right", interceptors=[hunter])
    client = Client("127.0.0.1", server.port, ClientOptions(auth_token="my-other-password"), service=HandshakeService)
    with pytest.raises(HandshakeFailed):
        client.connect()
    client.close()
    assert eventually(lambda: hunter.errors)
    [error] = hunter.errors
    assert isinstance(error, HandshakeRejected) and error.reason == "wrong auth token"
    assert hunter.found == []
