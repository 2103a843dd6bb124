"""A client given several endpoints: round-robin or first available, failover past a server that is
down, full or draining (hello said again there), and retries only for idempotent methods."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conftest import eventually, free_port
from thrift_handshake import (
    AsyncClient,
    Client,
    ClientOptions,
    ConnectError,
    ConnectionBroken,
    Endpoints,
    Interceptor,
    RetryPolicy,
    ServerDraining,
    ServerLimits,
    Timeouts,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request


def _client(endpoints: Endpoints, **options) -> Client:
    return Client(endpoints, options=ClientOptions(**options), service=HandshakeService)


def _server_name(client: Client) -> str:
    return client.server_hello.server_name


def test_parse_and_its_refusals():
    endpoints = Endpoints.parse("127.0.0.1:9091, [::1]:9092,host.example:9093")
    assert endpoints.addresses == (("127.0.0.1", 9091), ("::1", 9092), ("host.example", 9093))
    assert Endpoints.parse(["a:1", "a:1", "b:2"]).addresses == (("a", 1), ("b", 2))  # duplicates once
    for bad in ("", "nohost", "::1:9090", "a:port", ":9090"):
        with pytest.raises(ValueError):
            Endpoints.parse(bad)
    with pytest.raises(ValueError, match="port must be 1..65535"):
        Endpoints([("a", 70000)])
    with pytest.raises(ValueError, match="policy must be one of"):
        Endpoints([("a", 1)], policy="random")


def test_round_robin_spreads_connections(start_server):
    servers = [start_server(server_name=name) for name in ("a", "b", "c")]
    endpoints = Endpoints([("127.0.0.1", s.port) for s in servers], policy="round_robin")
    seen = []
    for _ in range(6):
        with _client(endpoints) as client:
            seen.append(_server_name(client))
    assert sorted(seen) == ["a", "a", "b", "b", "c", "c"]
    assert seen[:3] in (["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"])


def test_first_available_skips_a_dead_a_full_and_a_draining_server(start_server):
    full = start_server(server_name="full", limits=ServerLimits(max_connections=1))
    holder = _client(Endpoints([("127.0.0.1", full.port)]))
    holder.connect()  # a session: not evicted for a newcomer, which is told the server is full
    draining = start_server(server_name="draining", drain_notice=30.0, grace=30.0)
    draining.request_stop()
    assert eventually(lambda: draining.draining)
    healthy = start_server(server_name="healthy")
    endpoints = Endpoints([("127.0.0.1", free_port()), ("127.0.0.1", full.port), ("127.0.0.1", draining.port),
                           ("127.0.0.1", healthy.port)], policy="first_available")
    with _client(endpoints) as client:
        assert _server_name(client) == "healthy"
        assert client.echo("hello again, elsewhere") == "hello again, elsewhere"
        assert (client.host, client.port) == ("127.0.0.1", healthy.port)
        tried = [(r.phase, r.name, r.error or "") for r in client.timeline if r.phase in ("connect", "handshake")]
    assert [name for phase, name, _ in tried if phase == "connect"] == [
        f"127.0.0.1:{port}" for port in (endpoints.addresses[0][1], full.port, draining.port, healthy.port)]
    refusals = [error for phase, _, error in tried if phase == "handshake" and error]
    assert "server full" in refusals[0] and "Draining" in refusals[1], refusals
    holder.close()
    draining.stop(grace=0)


def test_when_every_endpoint_refuses_the_error_says_why(start_server):
    draining = [start_server(drain_notice=30.0, grace=30.0) for _ in range(2)]
    for server in draining:
        server.request_stop()
    assert eventually(lambda: all(s.draining for s in draining))
    with pytest.raises(ServerDraining):  # all refused the same way: that way's own error
        _client(Endpoints([("127.0.0.1", s.port) for s in draining])).connect()
    mixed = Endpoints([("127.0.0.1", free_port()), ("127.0.0.1", draining[0].port)])
    with pytest.raises(ConnectError, match="no endpoint took the connection: cannot connect to .*draining"):
        _client(mixed).connect()
    for server in draining:
        server.stop(grace=0)


def test_an_idempotent_call_fails_over_when_its_server_stops(start_server):
    first, second = start_server(server_name="first"), start_server(server_name="second")
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", second.port)], policy="first_available")
    with _client(endpoints, retry=RetryPolicy(idempotent={"echo"}, backoff=0.01)) as client:
        assert _server_name(client) == "first"
        first.stop()  # the idle session is told and closed; the port closes
        assert client.echo("once more") == "once more"
        assert _server_name(client) == "second"  # a new session: hello said again


def test_a_non_idempotent_call_is_not_retried_and_reconnect_fails_over(start_server):
    first, second = start_server(server_name="first"), start_server(server_name="second")
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", second.port)], policy="first_available")
    with _client(endpoints, retry=RetryPolicy(idempotent={"echo"}, backoff=0.01)) as client:
        first.stop()
        with pytest.raises(ConnectionBroken, match="draining"):  # may not run twice: the caller decides
            client.process(Request(request_id="once"))
        client.reconnect()
        assert _server_name(client) == "second"
        assert client.process(Request(request_id="once")).request_id == "once"


def test_a_name_resolving_to_several_addresses(start_server):
    server = start_server()
    endpoints = Endpoints.resolve("localhost", server.port)
    assert ("127.0.0.1", server.port) in endpoints.addresses
    for _ in range(len(endpoints.addresses)):  # whichever comes first (::1 refuses here): it connects
        with _client(endpoints) as client:
            assert client.echo("x") == "x"
    with pytest.raises(ConnectError, match="cannot resolve"):
        Endpoints.resolve("no-such-host.invalid", 9090)


def test_a_failed_address_is_tried_last_for_a_while(start_server):
    server = start_server()
    dead = ("127.0.0.1", free_port())
    endpoints = Endpoints([dead, ("127.0.0.1", server.port)], policy="first_available")
    with _client(endpoints) as client:
        assert client.port == server.port
    assert endpoints.order() == [("127.0.0.1", server.port), dead]
    assert Endpoints([dead, ("127.0.0.1", server.port)], avoid_failed=0).order()[0] == dead


def test_a_retried_method_keeps_its_session_while_calls_succeed(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, ClientOptions(retry=RetryPolicy(idempotent={"echo"}, backoff=0.01)),
                service=HandshakeService) as client:
        session = client.server_hello.session_id
        assert [client.echo("a"), client.echo("b")] == ["a", "b"]
        assert client.server_hello.session_id == session, "a call that did not fail reconnected"
    assert server.metrics.snapshot().connections_total == 1


def test_a_retried_call_that_never_succeeds_raises_its_last_error_after_every_attempt(start_server, caplog):
    import logging

    server = start_server()
    client = Client("127.0.0.1", server.port,
                    ClientOptions(retry=RetryPolicy(idempotent={"echo"}, attempts=3, backoff=0.01)),
                    service=HandshakeService)
    client.connect()
    server.stop()
    with caplog.at_level(logging.INFO, logger="thrift_handshake.client"):
        with pytest.raises(ConnectError):
            client.echo("nobody there")
    retries = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client"
               and "; retry " in r.getMessage()]
    assert [line.split("; ")[-1] for line in retries] == ["retry 1 of 2 in 0.01s", "retry 2 of 2 in 0.02s"]
    assert all(line.startswith("echo failed (") for line in retries)
    client.close()


def test_first_available_skips_a_server_that_closes_during_hello(start_server):
    import socket
    import threading

    healthy = start_server(server_name="healthy")
    with socket.create_server(("127.0.0.1", 0)) as closer:
        def close_each() -> None:
            connection, _ = closer.accept()
            connection.recv(1)  # hello has begun to arrive: then the connection ends
            connection.close()

        thread = threading.Thread(target=close_each)
        thread.start()
        endpoints = Endpoints([("127.0.0.1", closer.getsockname()[1]), ("127.0.0.1", healthy.port)],
                              policy="first_available")
        with _client(endpoints) as client:
            assert _server_name(client) == "healthy"
            assert client.echo("here") == "here"
        thread.join(5)


@pytest.mark.parametrize("client_kind", ["Client", "AsyncClient"])
@pytest.mark.parametrize("first_kind", ["draining", "full"])
def test_a_pipelined_hello_refused_sends_the_retry_to_another_endpoint(start_server, first_kind, client_kind):
    # The refusal of a pipelined hello comes with the first call, after connect() returned: the address
    # was never marked failed, so with first_available every retry went back to it and the call failed.
    if first_kind == "full":
        first = start_server(limits=ServerLimits(max_connections=1))
        holder = _client(Endpoints([("127.0.0.1", first.port)]))
        holder.connect()
    else:
        first = start_server(drain_notice=30.0, grace=30.0)
        first.request_stop()
        assert eventually(lambda: first.draining)
    healthy = start_server(server_name="healthy")
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", healthy.port)], policy="first_available")
    options = ClientOptions(pipeline_hello=True, retry=RetryPolicy(idempotent={"echo"}, backoff=0.01))
    if client_kind == "Client":
        with Client(endpoints, options=options, service=HandshakeService) as client:
            assert client.echo("elsewhere") == "elsewhere"
            assert _server_name(client) == "healthy"
    else:
        async def call() -> str:
            async with AsyncClient(endpoints, options=options, service=HandshakeService) as client:
                answer = await client.echo("elsewhere")
                assert _server_name(client) == "healthy"
                return answer

        assert asyncio.run(call()) == "elsewhere"
    assert endpoints.order()[0] == ("127.0.0.1", healthy.port)  # the refusing one is tried last for a while
    if first_kind == "full":
        holder.close()
    else:
        first.stop(grace=0)



class _StuckEcho(Interceptor):
    """Holds every echo call on the server until ``release`` is set: a server stuck after hello."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def call_started(self, call) -> None:
        if call.method == "echo":
            self.release.wait(10)


@pytest.mark.parametrize("client_kind", ["Client", "AsyncClient"])
def test_a_call_that_timed_out_is_retried_on_another_endpoint(start_server, client_kind):
    # A server that stopped answering was not marked failed: with first_available each retry connected
    # to it again (hello answered; a hung server costs a whole handshake timeout first) and timed out again.
    stuck = _StuckEcho()
    first = start_server(server_name="stuck", interceptors=(stuck,))
    healthy = start_server(server_name="healthy")
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", healthy.port)], policy="first_available")
    options = ClientOptions(timeouts=Timeouts(call=0.3), retry=RetryPolicy(idempotent={"echo"}, backoff=0.01))
    try:
        if client_kind == "Client":
            with Client(endpoints, options=options, service=HandshakeService) as client:
                assert _server_name(client) == "stuck"
                assert client.echo("elsewhere") == "elsewhere"
                assert _server_name(client) == "healthy"
        else:
            async def call() -> str:
                async with AsyncClient(endpoints, options=options, service=HandshakeService) as client:
                    assert _server_name(client) == "stuck"
                    answer = await client.echo("elsewhere")
                    assert _server_name(client) == "healthy"
                    return answer

            assert asyncio.run(call()) == "elsewhere"
    finally:
        stuck.release.set()


def test_when_every_endpoint_fails_alike_the_error_still_names_each(start_server):
    # It was the last address's error alone: "cannot connect to B" when A was down as well.
    dead = [("127.0.0.1", free_port()) for _ in range(2)]
    with pytest.raises(ConnectError) as caught:
        _client(Endpoints(dead)).connect()
    assert type(caught.value) is ConnectError
    assert str(caught.value).startswith("no endpoint took the connection: cannot connect to ")
    assert all(f"127.0.0.1:{port}" in str(caught.value) for _, port in dead), caught.value
    draining = [start_server(drain_notice=30.0, grace=30.0) for _ in range(2)]
    for server in draining:
        server.request_stop()
    assert eventually(lambda: all(s.draining for s in draining))
    with pytest.raises(ServerDraining) as refused:  # the kind every one answered, naming each
        _client(Endpoints([("127.0.0.1", s.port) for s in draining])).connect()
    assert all(f"127.0.0.1:{s.port}" in str(refused.value) for s in draining), refused.value
    assert refused.value.draining.remaining_ms > 0
    for server in draining:
        server.stop(grace=0)
