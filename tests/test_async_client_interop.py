"""The AsyncClient against the Go, Node.js and C++ servers (interop/servers), in every wire they serve.

The servers and their fixtures are tests/test_interop_servers.py's (built the way a user of each language
builds; never skipped). Each run: hello, 50 echo calls in flight at once, process, submit/get_result,
a oneway notify, a declared exception and a handler crash, a cancelled call whose reply is dropped,
and goodbye with the server's count of the calls.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from test_async_client import run
from test_interop_servers import FAIL_TYPE, LANGUAGES, WIRES, ServerProcess, cpp_server, go_server, node_server, start
from thrift_handshake import AsyncClient, ClientOptions, ClientPhase, RemoteApplicationError, ServiceError, Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, InvalidRequest, Request

__all__ = ["cpp_server", "go_server", "node_server", "start"]  # the fixtures, found by pytest here


async def contract(port: int, wire: Wire, language: str) -> None:
    options = ClientOptions(client_name="async-interop", wire=wire, features={"submit"})
    async with AsyncClient("127.0.0.1", port, options, service=HandshakeService) as client:
        assert client.version == 2 and client.session_id
        texts = [f"请求 {i}" for i in range(50)]
        assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
        response = await client.process(Request(request_id="p", payload="abc", work_ms=0, headers={}))
        assert response.request_id == "p" and response.session_id == client.session_id
        ack = await client.submit(Request(request_id="s", payload="abc", work_ms=10, headers={}))
        assert (await client.get_result(ack.ticket, 5000)).digest == response.digest
        assert await client.notify(Event(name="e", payload="p")) is None
        with pytest.raises(ServiceError) as declared:
            await client.process(Request(request_id="", payload="x", work_ms=0, headers={}))
        assert isinstance(declared.value, InvalidRequest)
        with pytest.raises(RemoteApplicationError) as crashed:
            await client.fail("boom")
        assert crashed.value.type == FAIL_TYPE[language]
        slow = asyncio.ensure_future(client.process(Request(request_id="slow", payload="x", work_ms=200, headers={})))
        quick = asyncio.ensure_future(client.echo("after the slow one"))
        await asyncio.sleep(0)
        slow.cancel()
        assert await quick == "after the slow one"
        assert await client.echo("last") == "last"
        assert client.phase is ClientPhase.READY
        farewell = await client.goodbye()
    assert farewell.calls == 50 + 9  # echo x50, process, submit, get_result, notify, process, fail, slow, quick, last


@pytest.mark.parametrize("wire", WIRES, ids=lambda wire: f"{wire.protocol}-{wire.transport}")
@pytest.mark.parametrize("language", LANGUAGES)
def test_async_client_runs_the_contract(language: str, wire: Wire, request: pytest.FixtureRequest,
                                        start: Callable[..., ServerProcess]) -> None:
    server = start(request.getfixturevalue(f"{language}_server"), wire)
    run(contract(server.port, wire, language), timeout=60)
    assert server.process.poll() is None, server.errors()
