"""The demo served by the asyncio server (``serve --asyncio``): what only computes is answered on the event
loop, never queued behind work that holds the pool's threads."""

from __future__ import annotations

import threading

from thrift_handshake import Client, ServerConfig, ServerLimits
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake.demo import demo_server
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Request

from conftest import eventually
from test_async_server import event_loop_thread, loop_factory  # noqa: F401 (fixtures)

WORK_MS = 3000


def test_echo_is_answered_while_every_pool_thread_is_busy(event_loop_thread) -> None:  # noqa: F811
    server = demo_server(ServerConfig(host="127.0.0.1", port=0, limits=ServerLimits(max_threads=2)),
                         server_class=AsyncHandshakeServer)
    event_loop_thread.run(server.start())
    busy = [Client("127.0.0.1", server.port, service=HandshakeService) for _ in range(2)]
    finished = []
    try:
        for client in busy:
            client.connect()
        workers = [threading.Thread(target=lambda c=client: finished.append(c.process(Request(request_id="r",
                                                                                            work_ms=WORK_MS))))
                   for client in busy]
        for worker in workers:
            worker.start()
        # both pool threads taken: each process call has begun its work
        assert eventually(lambda: server.metrics.snapshot().calls.get("process", 0) == 2)
        with Client("127.0.0.1", server.port, service=HandshakeService) as caller:
            assert caller.echo("on the loop") == "on the loop"
            assert caller.echo_types(AllTypes(id="a", number=7)).number == 7
        assert finished == [], "echo waited for a pool thread: the process calls ended first"
        for worker in workers:
            worker.join(10)
        assert len(finished) == 2
    finally:
        for client in busy:
            client.close()
        event_loop_thread.run(server.stop(grace=5.0))
