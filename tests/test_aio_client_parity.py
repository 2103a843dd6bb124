"""AsyncClient catching up with the threaded Client (issue 14): ``Endpoints`` with the same failover
(``endpoints.connect_any_async``, the threaded ``connect_any``'s twin over the same failure rules),
``ClientOptions.multiplexed`` and ``ClientOptions.unix_socket``, against both servers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import eventually, free_port
from test_async_client import run
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_multiplexed import gen, handlers  # noqa: F401 (fixtures)
from thrift_handshake import (AsyncClient, ClientOptions, ConnectError, ConnectionBroken, Endpoints, HandshakeServer,
                              RetryPolicy, ServerConfig, ServerDraining, ServerLimits, Wire)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request


def _client(endpoints: Any, **options: Any) -> AsyncClient:
    return AsyncClient(endpoints, options=ClientOptions(**options), service=HandshakeService)


# -- Endpoints --------------------------------------------------------------------------------

def test_round_robin_spreads_connections(start_server):
    servers = [start_server(server_name=name) for name in ("a", "b", "c")]
    endpoints = Endpoints([("127.0.0.1", s.port) for s in servers], policy="round_robin")

    async def six() -> list:
        seen = []
        for _ in range(6):
            async with _client(endpoints) as client:
                seen.append(client.server_hello.server_name)
        return seen

    seen = run(six())
    assert sorted(seen) == ["a", "a", "b", "b", "c", "c"]
    assert seen[:3] in (["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"])


def test_first_available_skips_a_dead_a_full_and_a_draining_server(start_server, start_async,  # noqa: F811
                                                                 event_loop_thread):  # noqa: F811
    full = start_server(server_name="full", limits=ServerLimits(max_connections=1))
    draining = start_async(server_name="draining", drain_notice=30.0, grace=30.0)  # the asyncio server's drain too
    healthy = start_server(server_name="healthy")
    endpoints = Endpoints([("127.0.0.1", free_port()), ("127.0.0.1", full.port), ("127.0.0.1", draining.port),
                           ("127.0.0.1", healthy.port)], policy="first_available")

    async def connect() -> list:
        async with _client(Endpoints([("127.0.0.1", full.port)])):  # a session: the newcomer is told "full"
            async with _client(endpoints) as client:
                assert client.server_hello.server_name == "healthy"
                assert await client.echo("hello again, elsewhere") == "hello again, elsewhere"
                assert (client.host, client.port) == ("127.0.0.1", healthy.port)
                return [(r.phase, r.name, r.error or "") for r in client.timeline if r.phase in ("connect", "handshake")]

    event_loop_thread.loop.call_soon_threadsafe(draining.request_stop)
    assert eventually(lambda: draining.processor.draining)
    tried = run(connect())
    assert [name for phase, name, _ in tried if phase == "connect"] == [
        f"127.0.0.1:{port}" for port in (endpoints.addresses[0][1], full.port, draining.port, healthy.port)]
    refusals = [error for phase, _, error in tried if phase == "handshake" and error]
    assert "server full" in refusals[0] and "Draining" in refusals[1], refusals
    event_loop_thread.run(draining.stop(grace=0))  # the notice ends now


def test_when_every_endpoint_refuses_the_error_says_why(start_server):
    draining = [start_server(drain_notice=30.0, grace=30.0) for _ in range(2)]
    for server in draining:
        server.request_stop()
    assert eventually(lambda: all(s.draining for s in draining))
    with pytest.raises(ServerDraining):  # all refused the same way: that way's own error
        run(_client(Endpoints([("127.0.0.1", s.port) for s in draining])).connect())
    mixed = Endpoints([("127.0.0.1", free_port()), ("127.0.0.1", draining[0].port)])
    with pytest.raises(ConnectError, match="no endpoint took the connection: cannot connect to .*draining"):
        run(_client(mixed).connect())
    for server in draining:
        server.stop(grace=0)


def test_an_idempotent_call_fails_over_when_its_server_stops(start_server):
    first, second = start_server(server_name="first"), start_server(server_name="second")
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", second.port)], policy="first_available")

    async def fail_over() -> None:
        async with _client(endpoints, retry=RetryPolicy(idempotent={"echo"}, backoff=0.01)) as client:
            assert client.server_hello.server_name == "first"
            await asyncio.get_running_loop().run_in_executor(None, first.stop)  # the session is told, the port closes
            assert await client.echo("once more") == "once more"
            assert client.server_hello.server_name == "second"  # a new session: hello said again
            with pytest.raises(ConnectionBroken):  # a call that may not run twice is not retried
                second.request_stop()
                await asyncio.sleep(0.2)
                await client.process(Request(request_id="once"))

    run(fail_over())


# -- several services on one port ---------------------------------------------------------------

@pytest.mark.parametrize("server_kind", ["threaded", "asyncio"])
def test_a_multiplexed_client_calls_its_service_of_a_shared_port(gen: Any, start_async, server_kind: str):  # noqa: F811
    from mux_gen import Calc, Store

    calc, store = handlers(gen)
    if server_kind == "asyncio":
        server: Any = start_async(services={"Calc": calc, "Store": store})
    else:
        server = HandshakeServer(services={"Calc": calc, "Store": store}, config=ServerConfig(port=0)).start()

    async def both() -> None:
        async with AsyncClient(port=server.port, service=Store, options=ClientOptions(multiplexed="Store")) as client:
            assert await asyncio.gather(client.add(1, 2), client.get("k")) == [1003, "value of k"]
        pipelined = ClientOptions(multiplexed="Calc", pipeline_hello=True, await_farewell=False)
        async with AsyncClient(port=server.port, service=Calc, options=pipelined) as client:
            assert await client.add(1, 2) == 3

    try:
        run(both())
        calls = server.metrics.snapshot().calls
        assert (calls["Store:hello"], calls["Store:add"], calls["Store:get"], calls["Calc:add"]) == (1, 1, 1, 1)
    finally:
        if server_kind == "threaded":
            server.stop(grace=1.0)


# -- a Unix domain socket ---------------------------------------------------------------------

@pytest.mark.parametrize("wire", [Wire(), Wire("compact", "framed"), Wire(transport="header")], ids=str)
def test_the_async_client_gets_a_session_over_a_unix_socket(start_server, start_async, tmp_path, wire):  # noqa: F811
    threaded = start_server(unix_socket=str(tmp_path / "threaded.sock"))
    asynchronous = start_async(unix_socket=str(tmp_path / "asyncio.sock"))

    async def over(path: str) -> None:
        async with AsyncClient(options=ClientOptions(unix_socket=path, wire=wire), service=HandshakeService) as client:
            assert await asyncio.gather(*(client.echo(str(i)) for i in range(20))) == [str(i) for i in range(20)]
            assert client.timeline[0][:2] == ("connect", f"unix:{path}")

    for server in (threaded, asynchronous):
        run(over(server.address[0]))
