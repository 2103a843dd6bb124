"""The asyncio server (``AsyncHandshakeServer``) with the threaded ``Client`` and raw sockets: every wire
cell, the whole demo contract, coroutine handlers that hold no thread, limits, mismatches, the stop."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

from thrift_handshake import Client, ClientOptions, Interceptor, ServerConfig, ServerLimits, Wire
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake.demo import FEATURES, HandshakeHandler
from thrift_handshake.session import current_session
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, Request, Response

from conftest import encode_call, eventually, exchange, read_until_closed


class EventLoopThread:
    """An event loop on its own thread, for servers the synchronous tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-event-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def event_loop_thread() -> Iterator[EventLoopThread]:
    loop = EventLoopThread()
    yield loop
    loop.close()


@pytest.fixture
def start_async(event_loop_thread: EventLoopThread) -> Iterator[Callable[..., AsyncHandshakeServer]]:
    """Starts asyncio servers (``start_async(handler=None, **ServerConfig fields)``; the demo service by
    default) on the test's event loop thread; stops them afterwards."""
    servers: List[AsyncHandshakeServer] = []

    def start(handler: Any = None, **config: Any) -> AsyncHandshakeServer:
        config.setdefault("port", 0)
        config.setdefault("host", "127.0.0.1")
        settings = ServerConfig(**config)
        if handler is None:
            handler = HandshakeHandler()
            settings = dataclasses.replace(settings, features=settings.features or FEATURES)
            server = AsyncHandshakeServer(handler, settings)
            server.on_stop(handler.close)
        else:
            server = AsyncHandshakeServer(handler, settings)
        event_loop_thread.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        event_loop_thread.run(server.stop(grace=5.0))


@pytest.fixture
def aserver(start_async) -> AsyncHandshakeServer:
    return start_async()


def connect(server: AsyncHandshakeServer, **options: Any) -> Client:
    client = Client("127.0.0.1", server.port, ClientOptions(**options), service=HandshakeService)
    client.connect()
    return client


WIRES = [Wire(protocol=protocol, transport=transport) for protocol in ("binary", "compact")
         for transport in ("buffered", "framed")] + [Wire(transport="header")]


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_the_whole_contract_in_every_wire_cell(aserver, wire):
    client = connect(aserver, wire=wire)
    try:
        assert client.version == 2
        response = client.process(Request(request_id="r1", payload="hello"))
        assert (response.request_id, response.sequence) == ("r1", 1)
        assert client.echo("héllo") == "héllo"
        ack = client.submit(Request(request_id="r2", payload="later", work_ms=1))
        result = client.get_result(ack.ticket, 5000)
        assert result.request_id == "r2"
        client.notify(Event(name="tick", payload="x"))
        stats = client.stats()
        assert (stats.connections_open, stats.sessions_active, stats.handshakes_ok) == (1, 1, 1)
        assert stats.calls["process"] == 1 and stats.notifications == 1
    finally:
        farewell = client.close()
    assert farewell.calls == 6  # process, echo, submit, get_result, notify, stats
    assert eventually(lambda: aserver.stats().sessions_active == 0)
    assert aserver.stats().connections_total == 1
