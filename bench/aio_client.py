"""Calls in flight on one connection: the AsyncClient at 1, 16 and 100 in flight against the threaded Client's
sequential rate, in one run, on two links.

Both talk to the same HandshakeServer in its own process (the ``serve`` command), alternating short rounds so
machine noise hits all alike, over two links: loopback, where a round trip costs less than either end's CPU per
call, and loopback through a relay process that holds every chunk ``--delay`` seconds each way (1 ms: a round
trip of a LAN between racks), where the round trip dominates, as it does off one machine. With N in flight,
N coroutines call in a loop on one AsyncClient, so N requests are always written ahead of their replies.
Prints calls/s (median of the rounds, min..max) and the ratios to the threaded client and to the AsyncClient's
own sequential rate (issue 14's target: 16 in flight >= 5x its own sequential rate).

    .venv/bin/python bench/aio_client.py [--seconds 0.5] [--rounds 5] [--op echo|process] [--delay 0.001]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Deque, Dict, List, Tuple
from collections import deque

from client_overhead import REQUEST, TEXT, rate, start_server

from thrift_handshake import AsyncClient, Client
from thrift_handshake_gen import HandshakeService

IN_FLIGHT = (1, 16, 100)


async def async_rate(call: Callable[[], Awaitable[Any]], in_flight: int, seconds: float) -> float:
    """Calls per second with ``in_flight`` coroutines calling in a loop for about ``seconds``."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count / (time.perf_counter() - started)


async def async_round(port: int, op: str, seconds: float) -> Dict[int, float]:
    async with AsyncClient("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if op == "echo" else (lambda: client.process(REQUEST))
        await async_rate(call, 16, seconds / 4)  # warm-up
        return {n: await async_rate(call, n, seconds) for n in IN_FLIGHT}


async def relay(target: int, delay: float) -> None:
    """Forwards connections to ``target``, every chunk held ``delay`` seconds each way, in order."""
    loop = asyncio.get_running_loop()

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        held: Deque[Tuple[float, bytes]] = deque()
        arrived = asyncio.Event()

        async def forward() -> None:
            while True:
                await arrived.wait()
                arrived.clear()
                while held:
                    due, data = held[0]
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    held.popleft()
                    if not data:
                        sink.close()
                        return
                    sink.write(data)

        forwarding = asyncio.ensure_future(forward())
        while True:
            data = await source.read(65536)
            held.append((loop.time() + delay, data))
            arrived.set()
            if not data:
                break
        await forwarding

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def start_relay(target: int, delay: float) -> "Tuple[subprocess.Popen, int]":
    process = subprocess.Popen([sys.executable, __file__, "--relay-to", str(target), "--delay", str(delay)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def measure(port: int, args: argparse.Namespace) -> Dict[str, List[float]]:
    results: Dict[str, List[float]] = {"threaded, sequential": []}
    results.update({f"async, {n} in flight": [] for n in IN_FLIGHT})
    with Client("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if args.op == "echo" else (lambda: client.process(REQUEST))
        for _ in range(args.rounds):
            results["threaded, sequential"].append(rate(call, args.seconds))
            for n, measured in asyncio.run(async_round(port, args.op, args.seconds)).items():
                results[f"async, {n} in flight"].append(measured)
    return results


def report(link: str, results: Dict[str, List[float]]) -> None:
    threaded = statistics.median(results["threaded, sequential"])
    own = statistics.median(results["async, 1 in flight"])
    print(f"\n{link}")
    print(f"{'client':<24} {'calls/s':>9} {'min..max':>15} {'/threaded':>10} {'/async x1':>10}")
    for name, measured in results.items():
        median = statistics.median(measured)
        spread = f"{min(measured):.0f}..{max(measured):.0f}"
        print(f"{name:<24} {median:>9.0f} {spread:>15} {median / threaded:>10.2f} {median / own:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=("echo", "process"), default="echo")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds the relay holds each chunk, each way")
    parser.add_argument("--relay-to", type=int, help=argparse.SUPPRESS)  # the relay process itself
    args = parser.parse_args()
    if args.relay_to:
        asyncio.run(relay(args.relay_to, args.delay))
        return
    server, port = start_server()
    relay_process, relayed = start_relay(port, args.delay)
    try:
        loopback = measure(port, args)
        delayed = measure(relayed, args)
    finally:
        relay_process.terminate()
        server.terminate()
        server.wait()
    print(f"{args.op}, one connection, {args.rounds} rounds of {args.seconds:g} s")
    report("loopback", loopback)
    report(f"loopback through a relay holding each chunk {args.delay * 1e3:g} ms each way", delayed)


if __name__ == "__main__":
    main()
