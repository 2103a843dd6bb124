"""Calls in flight on one connection: the AsyncClient at 1, 16 and 100 in flight against the threaded Client's
sequential rate, in one run.

Both talk to the same HandshakeServer in its own process on loopback (the ``serve`` command), alternating short
rounds so machine noise hits all alike. With N in flight, N coroutines call in a loop on one AsyncClient, so
N requests are always written ahead of their replies. Prints calls/s (median of the rounds, min..max) and the
ratios to the threaded client and to the AsyncClient's own sequential rate (issue 14's target: 16 in flight
>= 5x its own sequential rate).

    .venv/bin/python bench/aio_client.py [--seconds 0.5] [--rounds 5] [--op echo|process]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Awaitable, Callable, Dict, List

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=("echo", "process"), default="echo")
    args = parser.parse_args()
    server, port = start_server()
    results: Dict[str, List[float]] = {"threaded, sequential": []}
    results.update({f"async, {n} in flight": [] for n in IN_FLIGHT})
    try:
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            call = (lambda: client.echo(TEXT)) if args.op == "echo" else (lambda: client.process(REQUEST))
            for _ in range(args.rounds):
                results["threaded, sequential"].append(rate(call, args.seconds))
                for n, measured in asyncio.run(async_round(port, args.op, args.seconds)).items():
                    results[f"async, {n} in flight"].append(measured)
    finally:
        server.terminate()
        server.wait()
    threaded = statistics.median(results["threaded, sequential"])
    own = statistics.median(results["async, 1 in flight"])
    print(f"{args.op}, one connection, {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'client':<24} {'calls/s':>9} {'min..max':>15} {'/threaded':>10} {'/async x1':>10}")
    for name, measured in results.items():
        median = statistics.median(measured)
        spread = f"{min(measured):.0f}..{max(measured):.0f}"
        print(f"{name:<24} {median:>9.0f} {spread:>15} {median / threaded:>10.2f} {median / own:>10.2f}")


if __name__ == "__main__":
    main()
