"""Calls in flight on one connection: the AsyncClient at 1, 16 and 100 in flight against the threaded Client's
sequential rate, in one run, on two links.

Both talk to the same HandshakeServer in its own process (the ``serve`` command), alternating short rounds so
machine noise hits all alike, over two links: loopback, where a round trip costs less than either end's CPU per
call, and loopback through a relay process that holds every chunk ``--delay`` seconds each way (1 ms: a round
trip of a LAN between racks), where the round trip dominates, as it does off one machine. With N in flight,
N coroutines call in a loop on one AsyncClient, so N requests are always written ahead of their replies.
Prints calls/s (median of the rounds, min..max), this process's CPU per call (every client runs in it: the
figure a shared machine's noise moves least), the server process's CPU per call (whether it, not the client,
sets the pace) and the ratios to the threaded client and to the AsyncClient's
own sequential rate (issue 14's target: 16 in flight >= 5x its own sequential rate). ``--native`` adds a third
link: the same clients against the native C++ server (bench/native: a few us per call), where the rates are
the clients' own. ``--count-calls`` prints, before the rounds, the Python function calls the AsyncClient
makes per call at 1, 16 and 100 in flight (counted with ``sys.setprofile``: deterministic, unlike time).

Peers, in the same rounds and table (``pip install -e '.[bench]'``): thriftpy2's aio client against the same
server (it cannot overlap calls on one connection, so N in flight are N connections), and grpc.aio with N in
flight on one channel to a grpc.aio server in its own process (``bench.servers grpc-aio``; echo only).

    .venv/bin/python -m bench.aio_client [--seconds 0.5] [--rounds 5] [--op echo|process] [--delay 0.001]
                                         [--native] [--count-calls] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable, Deque, Dict, List, Tuple

from bench.client_overhead import REQUEST, TEXT, rate, start_server

from thrift_handshake import AsyncClient, Client
from thrift_handshake_gen import HandshakeService

IN_FLIGHT = (1, 16, 100)
#: calls/s, and this process's and the server process's CPU microseconds per call
Measured = Tuple[float, float, float]


def process_cpu(pid: int) -> float:
    """Seconds of CPU process ``pid`` has used (Linux's /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def async_rate(call: Callable[[], Awaitable[Any]], in_flight: int, seconds: float, server: int) -> Measured:
    """Calls per second with ``in_flight`` coroutines calling in a loop for about ``seconds``, and CPU per
    call here and in process ``server``."""
    return await _each_its_own([call] * in_flight, seconds, server)


async def async_round(port: int, op: str, seconds: float, server: int) -> Dict[int, Measured]:
    async with AsyncClient("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if op == "echo" else (lambda: client.process(REQUEST))
        await async_rate(call, 16, seconds / 4, server)  # warm-up
        return {n: await async_rate(call, n, seconds, server) for n in IN_FLIGHT}


async def count_calls(port: int, op: str, calls: int = 2000) -> Dict[int, float]:
    """Python function calls (``sys.setprofile``'s "call" events: the loop's, the client's and the
    generated code's) per AsyncClient call, with 1, 16 and 100 in flight."""
    counted = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            counted[0] += 1

    async with AsyncClient("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if op == "echo" else (lambda: client.process(REQUEST))
        per_call = {}
        for n in IN_FLIGHT:
            await async_rate(call, n, 0.05, os.getpid())  # warm-up
            left = [calls]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    await call()

            counted[0] = 0
            sys.setprofile(profile)
            try:
                await asyncio.gather(*(worker() for _ in range(n)))
            finally:
                sys.setprofile(None)
            per_call[n] = counted[0] / calls
        return per_call


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
    process = subprocess.Popen([sys.executable, "-m", "bench.aio_client", "--relay-to", str(target), "--delay", str(delay)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


async def thriftpy2_round(port: int, op: str, seconds: float, server: int) -> Dict[int, Measured]:
    """thriftpy2's aio client (``make_aio_client``) has no seqids of its own to match replies by, so
    calls on one client must not overlap: N in flight are N clients, each its own connection (with
    hello, as the server asks)."""
    from thriftpy2.contrib.aio.rpc import make_client

    from bench.payloads import load_thriftpy2

    module = load_thriftpy2()
    request = module.Request(request_id="bench", payload="p" * 64, work_ms=0, headers=dict(REQUEST.headers))
    clients = [await make_client(module.HandshakeService, "127.0.0.1", port, timeout=None)
               for _ in range(max(IN_FLIGHT))]
    try:
        for client in clients:
            await client.hello(module.session.ClientHello(client_name="thriftpy2-aio", min_version=1, max_version=2))
        rates = {}
        for n in IN_FLIGHT:
            calls = [(lambda c=client: c.echo(TEXT)) if op == "echo" else (lambda c=client: c.process(request))
                     for client in clients[:n]]  # each coroutine calls on a client of its own
            rates[n] = await _each_its_own(calls, seconds, server)
        return rates
    finally:
        for client in clients:
            client.close()


async def _each_its_own(calls: List[Callable[[], Awaitable[Any]]], seconds: float, server: int) -> Measured:
    """Calls per second with one coroutine per ``calls`` entry, each calling its own in a loop, and
    the CPU microseconds per call of this process and of process ``server``."""
    count = 0
    cpu, server_cpu = time.process_time(), process_cpu(server)
    deadline = time.perf_counter() + seconds

    async def worker(call: Callable[[], Awaitable[Any]]) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in calls))
    count = max(count, 1)
    return (count / (time.perf_counter() - started), (time.process_time() - cpu) * 1e6 / count,
            (process_cpu(server) - server_cpu) * 1e6 / count)


async def grpc_round(port: int, seconds: float, server: int) -> Dict[int, Measured]:
    """grpc.aio: N in flight on one channel (HTTP/2 streams on one connection) to a grpc.aio server."""
    import grpc

    from bench.payloads import load_grpc

    pb, pb_grpc = load_grpc()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BenchStub(channel)
        message = pb.Text(message=TEXT)
        call = lambda: stub.Echo(message)  # noqa: E731
        await async_rate(call, 16, seconds / 4, server)  # warm-up
        return {n: await async_rate(call, n, seconds, server) for n in IN_FLIGHT}


def start_grpc_aio() -> "Tuple[subprocess.Popen, int]":
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "bench.servers", "grpc-aio", str(port)], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None and process.stdout.readline().startswith("listening")
    return process, port


def start_native() -> "Tuple[subprocess.Popen, int]":
    """The native C++ server (bench/native, built and cached by ``bench.native_build``)."""
    from bench.native_build import build

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([str(build()["bench_server"]), str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().startswith("listening")
    return process, port


def run(coroutine: Awaitable[Dict[int, Measured]], args: argparse.Namespace) -> Dict[int, Measured]:
    """A round on asyncio's own event loop, or on uvloop's (``--uvloop``)."""
    if args.uvloop:
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def measure(port: int, grpc_port: int, servers: Tuple[int, int], args: argparse.Namespace) -> Dict[str, List[Measured]]:
    """Rounds of every client on one link; ``servers``: the pids of the Thrift server and of the grpc.aio one."""
    server, grpc_server = servers
    results: Dict[str, List[Measured]] = {"threaded, sequential": []}
    results.update({f"async, {n} in flight": [] for n in IN_FLIGHT})
    results.update({f"thriftpy2 aio, {n} conns": [] for n in IN_FLIGHT})
    results.update({f"grpc.aio, {n} in flight": [] for n in IN_FLIGHT if args.op == "echo"})
    with Client("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if args.op == "echo" else (lambda: client.process(REQUEST))
        for _ in range(args.rounds):
            server_cpu = process_cpu(server)
            calls_per_second, cpu = rate(call, args.seconds)
            count = calls_per_second * args.seconds  # about
            results["threaded, sequential"].append((calls_per_second, cpu,
                                                    (process_cpu(server) - server_cpu) * 1e6 / max(count, 1)))
            for n, measured in run(async_round(port, args.op, args.seconds, server), args).items():
                results[f"async, {n} in flight"].append(measured)
            for n, measured in run(thriftpy2_round(port, args.op, args.seconds, server), args).items():
                results[f"thriftpy2 aio, {n} conns"].append(measured)
            if args.op == "echo":  # bench.proto has no process
                for n, measured in run(grpc_round(grpc_port, args.seconds, grpc_server), args).items():
                    results[f"grpc.aio, {n} in flight"].append(measured)
    return results


def report(link: str, results: Dict[str, List[Measured]]) -> None:
    threaded = statistics.median(measured[0] for measured in results["threaded, sequential"])
    own = statistics.median(measured[0] for measured in results["async, 1 in flight"])
    print(f"\n{link}")
    print(f"{'client':<24} {'calls/s':>9} {'min..max':>15} {'CPU us/call':>12} {'server us':>10} {'/threaded':>10} "
          f"{'/async x1':>10}")
    for name, measured in results.items():
        rates = [rate for rate, _, _ in measured]
        median = statistics.median(rates)
        cpu = statistics.median(cpu for _, cpu, _ in measured)
        server = statistics.median(server for _, _, server in measured)
        spread = f"{min(rates):.0f}..{max(rates):.0f}"
        print(f"{name:<24} {median:>9.0f} {spread:>15} {cpu:>12.1f} {server:>10.1f} {median / threaded:>10.2f} "
              f"{median / own:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=("echo", "process"), default="echo")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds the relay holds each chunk, each way")
    parser.add_argument("--uvloop", action="store_true", help="every async client on uvloop's event loop")
    parser.add_argument("--native", action="store_true", help="also against the native C++ server (bench/native)")
    parser.add_argument("--count-calls", action="store_true",
                        help="print the AsyncClient's Python calls per call (sys.setprofile) first")
    parser.add_argument("--relay-to", type=int, help=argparse.SUPPRESS)  # the relay process itself
    args = parser.parse_args()
    if args.relay_to:
        asyncio.run(relay(args.relay_to, args.delay))
        return
    server, port = start_server()
    grpc_server, grpc_port = start_grpc_aio()
    relay_process, relayed = start_relay(port, args.delay)
    grpc_relay, grpc_relayed = start_relay(grpc_port, args.delay)
    processes = [relay_process, grpc_relay, grpc_server, server]
    try:
        if args.count_calls:
            counted = asyncio.run(count_calls(port, args.op))
            print("AsyncClient, Python function calls per call (sys.setprofile): " +
                  ", ".join(f"{n} in flight {count:.0f}" for n, count in counted.items()))
        native = None
        if args.native:
            native_server, native_port = start_native()
            processes.append(native_server)
            native = measure(native_port, grpc_port, (native_server.pid, grpc_server.pid), args)  # grpc.aio: its own
        loopback = measure(port, grpc_port, (server.pid, grpc_server.pid), args)
        delayed = measure(relayed, grpc_relayed, (server.pid, grpc_server.pid), args)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    print(f"{args.op}, one connection (thriftpy2 aio: one per call in flight), {args.rounds} rounds of "
          f"{args.seconds:g} s" + (", the async clients on uvloop" if args.uvloop else ""))
    report("loopback", loopback)
    if native is not None:
        report("loopback, the native C++ server (bench/native; grpc.aio: its own server)", native)
    report(f"loopback through a relay holding each chunk {args.delay * 1e3:g} ms each way", delayed)


if __name__ == "__main__":
    main()
