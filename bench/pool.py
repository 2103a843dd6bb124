"""Side by side in one run: threads calling process() through a ClientPool against threads opening a
connection per call (connect, hello, call, goodbye, close), on one server process on loopback.

Rounds alternate so machine noise hits both alike; prints each one's median calls/s and the ratio.

    .venv/bin/python -m bench.pool [--threads 8] [--size 4] [--seconds 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Callable, List

from bench.client_overhead import REQUEST, start_server
from thrift_handshake import Client, ClientPool, PoolOptions
from thrift_handshake_gen import HandshakeService


def threaded_rate(threads: int, seconds: float, call: Callable[[], None]) -> float:
    """Calls per second of ``threads`` threads each calling ``call`` for about ``seconds``."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            call()
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pool", description=__doc__)
    parser.add_argument("--threads", type=int, default=8, help="calling threads (default 8)")
    parser.add_argument("--size", type=int, default=4, help="the pool's max_size (default 4)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    args = parser.parse_args(argv)
    server, port = start_server()
    try:
        pool = ClientPool("127.0.0.1", port, service=HandshakeService,
                          limits=PoolOptions(max_size=args.size, borrow_timeout=60.0))

        def per_call() -> None:
            with Client("127.0.0.1", port, service=HandshakeService) as client:
                client.process(REQUEST)

        pooled: List[float] = []
        fresh: List[float] = []
        for _ in range(args.rounds):
            pooled.append(threaded_rate(args.threads, args.seconds, lambda: pool.call("process", REQUEST)))
            fresh.append(threaded_rate(args.threads, args.seconds, per_call))
        stats = pool.stats()
        pool.close()
    finally:
        server.terminate()
        server.wait(10)
    pooled_rate, fresh_rate = statistics.median(pooled), statistics.median(fresh)
    print(f"{args.threads} threads, process() with a {len(REQUEST.payload)}-byte payload, median of {args.rounds} "
          f"rounds of {args.seconds:g} s")
    print(f"pool of {args.size}:              {pooled_rate:10.0f} calls/s   (connections opened: {stats.created}, "
          f"waited {stats.waited} times, {stats.wait_seconds:.2f} s in all)")
    print(f"a connection per call:      {fresh_rate:10.0f} calls/s")
    print(f"ratio pool / per-call:      {pooled_rate / fresh_rate:10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
