"""The demo handler with its echo a coroutine (``async def``): the asyncio server serves it on its event loop,
without a thread, as thriftpy2's aio server and grpc.aio's serve theirs. The benchmark's issue-14 server cells
run it as ``thrift-handshake serve --asyncio --handler bench.coroutine_echo:CoroutineEcho --path ROOT``
(the demo's own echo is a plain method, which the asyncio server runs on its pool of threads)."""

from __future__ import annotations

from thrift_handshake.demo import HandshakeHandler


class CoroutineEcho(HandshakeHandler):
    async def echo(self, message: str) -> str:
        return message
