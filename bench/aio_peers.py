"""An async client process of the benchmark (``python -m bench.aio_peers``): this project's ``AsyncClient``,
thriftpy2's aio client or grpc.aio, one system per process, kept for the whole run so that process start-up,
imports and the other systems' threads stay out of every measurement. Every system calls echo with the same
32-byte string on asyncio's own event loop. It reads one JSON command per line on stdin and answers on stdout:

    {"system": "ac"|"tp2ac"|"grpcac", "port": N, "conns": C, "in_flight": K, "seconds": S}
        opens C connections (grpc.aio: channels), warms up with K coroutines calling for a tenth of a second,
        answers {"ready": true}
    go      K coroutines call in a loop for S seconds, coroutine i on connection i % C, answers
            {"calls": N, "seconds": T, "cpu_us": this process's CPU per call (all its threads: grpc's too)}
    close   closes the connections, answers {"closed": true}

thriftpy2's aio client matches no reply to its call (no seqid of its own), so calls on one of its clients must
not overlap: it needs ``conns == in_flight``. The ``AsyncClient`` pipelines K calls on one connection, grpc.aio
multiplexes them as HTTP/2 streams on one channel. Every system's socket has TCP_NODELAY (asyncio's
transports set it, which carry the AsyncClient and thriftpy2's client; thriftpy2 on its socket too; grpc's
core by default).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Awaitable, Callable, List, Tuple

from bench.payloads import TEXT

HOST = "127.0.0.1"
WARM_UP = 0.1
Call = Callable[[], Awaitable[Any]]
Closer = Callable[[], Awaitable[Any]]
#: What a systems' client says, in the tables
NAMES = {"ac": "AsyncClient", "tp2ac": "thriftpy2 aio", "grpcac": "grpc.aio"}


async def _project(port: int) -> Tuple[Call, Closer]:
    from thrift_handshake import AsyncClient
    from thrift_handshake_gen import HandshakeService

    client = AsyncClient(HOST, port, service=HandshakeService)
    await client.connect()
    return (lambda: client.echo(TEXT)), client.close


async def _thriftpy2(port: int) -> Tuple[Call, Closer]:
    from thriftpy2.contrib.aio.rpc import make_client

    from bench.payloads import load_thriftpy2

    client = await make_client(load_thriftpy2().HandshakeService, HOST, port, timeout=None)

    async def close() -> None:
        client.close()

    return (lambda: client.echo(TEXT)), close


async def _grpc(port: int) -> Tuple[Call, Closer]:
    import grpc

    from bench.payloads import load_grpc

    pb, pb_grpc = load_grpc()
    # a channel of its own (grpc shares one subchannel between channels to one address otherwise)
    channel = grpc.aio.insecure_channel(f"{HOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
    await channel.channel_ready()
    stub, message = pb_grpc.BenchStub(channel), pb.Text(message=TEXT)
    return (lambda: stub.Echo(message)), channel.close


CONNECT = {"ac": _project, "tp2ac": _thriftpy2, "grpcac": _grpc}


async def connect(system: str, port: int, conns: int) -> Tuple[List[Call], List[Closer]]:
    """``conns`` connections of ``system`` to ``port``: each one's echo call and its close."""
    opened = [await CONNECT[system](port) for _ in range(conns)]
    return [call for call, _ in opened], [close for _, close in opened]


async def calls_for(calls: List[Call], in_flight: int, seconds: float) -> Tuple[int, float, float]:
    """(calls, seconds, CPU seconds of this process) with ``in_flight`` coroutines calling in a loop for about
    ``seconds``, coroutine i on ``calls[i % len(calls)]``."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(call: Call) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(in_flight)))
    return count, time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    calls: List[Call] = []
    closers: List[Closer] = []
    command: dict = {}

    def answer(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        line = line.strip()
        try:
            if line == "exit":
                break
            if line == "go":
                count, seconds, cpu = loop.run_until_complete(
                    calls_for(calls, command["in_flight"], command["seconds"]))
                answer({"calls": count, "seconds": seconds, "cpu_us": cpu * 1e6 / max(count, 1)})
            elif line == "close":
                for close in closers:
                    loop.run_until_complete(close())
                calls, closers = [], []
                answer({"closed": True})
            else:
                command = json.loads(line)
                if command["system"] == "tp2ac" and command["conns"] != command["in_flight"]:
                    raise ValueError("thriftpy2's aio client cannot overlap calls on one connection")
                calls, closers = loop.run_until_complete(connect(command["system"], command["port"],
                                                                 command["conns"]))
                loop.run_until_complete(calls_for(calls, command["in_flight"], WARM_UP))
                answer({"ready": True})
        except Exception as error:  # reported to the harness, which stops the run with it
            answer({"error": f"{type(error).__name__}: {error}"})
    for close in closers:
        loop.run_until_complete(close())
    loop.close()


if __name__ == "__main__":
    main()
