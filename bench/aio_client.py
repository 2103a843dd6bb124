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
own sequential rate (issue 14's target: 16 in flight >= 5x its own sequential rate; the median of each
round's ratio, the two rates a second apart, which the machine's load drifts less than the rates). ``--native`` adds a third
link: the same clients against the native C++ server (bench/native: a few us per call), where the rates are
the clients' own. ``--count-calls`` prints, before the rounds, the Python function calls the AsyncClient
makes per call at 1, 16 and 100 in flight (counted with ``sys.setprofile``: deterministic, unlike time).
``--tree NAME=PATH`` (repeatable) puts other checkouts' AsyncClient rows beside this tree's, every tree's
rounds in child processes of their own, interleaved in the same rounds against the same server (e.g. main's
tree made with ``git worktree add --detach /tmp/main main``); ``--loop both`` measures every async row on
asyncio's own event loop and on uvloop's, in the same rounds; ``--bare`` adds the ceiling: a bare asyncio
protocol writing the same echo bytes and completing a future per reply, nothing else (``bench.aio_bare``).
Under the loopback tables, for each async row set, the ratio of 16 in flight to sequential that CPU time
alone allows (the client's CPU of its least disturbed round, as load only adds to it; the server's median,
as /proc counts it in 10 ms ticks): with the client and the server each on a free core,
(c1 + s1) / max(c16, s16), and sharing one, (c1 + s1) / (c16 + s16), where c and s are the client's and
the server's CPU per call at 1 and 16 in flight
(a sequential call also waits for two wake-ups, which only makes its rate lower).

Peers, in the same rounds and table (``pip install -e '.[bench]'``): thriftpy2's aio client against the same
server (it cannot overlap calls on one connection, so N in flight are N connections), and grpc.aio with N in
flight on one channel to a grpc.aio server in its own process (``bench.servers grpc-aio``; echo only). Here
they share this process and follow the AsyncClient in a fixed order, a glance; the side-by-side figures (each
system in its own process, rounds rotating the order, ratios taken round by round) are ``scripts/bench``'s
issue-14 cells: ``scripts/bench --cells aioc:x1,aioc:x16,aioc:x100``.

    .venv/bin/python -m bench.aio_client [--seconds 0.5] [--rounds 5] [--op echo|process] [--delay 0.001]
                                         [--native] [--count-calls] [--uvloop | --loop both] [--bare]
                                         [--tree main=/tmp/main] [--no-peers] [--no-relay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from bench.aio_bare import open_bare
from bench.call_count import tree_path
from bench.client_overhead import REQUEST, TEXT, rate, start_server
from bench.relay import start_relay

from thrift_handshake import AsyncClient, Client
from thrift_handshake_gen import HandshakeService

IN_FLIGHT = (1, 16, 100)
ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("asyncio", "uvloop")
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


async def bare_round(port: int, seconds: float, server: int) -> Dict[int, Measured]:
    """The ceiling (``bench.aio_bare``): the same echo bytes, a future per call and nothing else."""
    bare = await open_bare(port)
    try:
        await async_rate(bare.call, 16, seconds / 4, server)  # warm-up
        return {n: await async_rate(bare.call, n, seconds, server) for n in IN_FLIGHT}
    finally:
        assert bare.transport is not None
        bare.transport.close()


def tree_round(tree: str, port: int, server: int, loop: str, args: argparse.Namespace,
               count_calls: bool = False) -> Dict[int, Any]:
    """``async_round`` of ``tree``'s AsyncClient (its service/ and gen-py/) in a child process, on ``loop``
    (``count_calls``: its ``count_calls`` instead)."""
    env = dict(os.environ, PYTHONPATH=tree_path(tree))
    done = subprocess.run([sys.executable, "-m", "bench.aio_client", "--child-round", str(port), "--server-pid",
                           str(server), "--op", args.op, "--seconds", str(args.seconds), "--loop", loop] +
                          (["--count-calls"] if count_calls else []),
                          env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return {int(n): measured for n, measured in json.loads(done.stdout).items()}


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
        every = [(lambda c=client: c.echo(TEXT)) if op == "echo" else (lambda c=client: c.process(request))
                 for client in clients]  # each coroutine calls on a client of its own
        await _each_its_own(every[:16], seconds / 4, server)  # warm-up, as the other clients'
        return {n: await _each_its_own(every[:n], seconds, server) for n in IN_FLIGHT}
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


def run(coroutine: Awaitable[Dict[int, Measured]], loop: str) -> Dict[int, Measured]:
    """A round on asyncio's own event loop, or on uvloop's."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def measure(port: int, grpc_port: int, servers: Tuple[int, int], args: argparse.Namespace) -> Dict[str, List[Measured]]:
    """Rounds of every client on one link; ``servers``: the pids of the Thrift server and of the grpc.aio one."""
    server, grpc_server = servers
    loops = LOOPS if args.loop == "both" else (args.loop,)
    results: Dict[str, List[Measured]] = {"threaded, sequential": []}
    for tree in args.trees or [""]:
        for loop in loops:
            results.update({f"{_group('async', tree, loop, args)}, {n} in flight": [] for n in IN_FLIGHT})
    for loop in loops if args.bare else ():
        results.update({f"{_group('bare', '', loop, args)}, {n} in flight": [] for n in IN_FLIGHT})
    if args.peers:
        results.update({f"thriftpy2 aio, {n} conns": [] for n in IN_FLIGHT})
        results.update({f"grpc.aio, {n} in flight": [] for n in IN_FLIGHT if args.op == "echo"})
    with Client("127.0.0.1", port, service=HandshakeService) as client:
        call = (lambda: client.echo(TEXT)) if args.op == "echo" else (lambda: client.process(REQUEST))
        for round_number in range(args.rounds):
            server_cpu = process_cpu(server)
            calls_per_second, cpu = rate(call, args.seconds)
            count = calls_per_second * args.seconds  # about
            results["threaded, sequential"].append((calls_per_second, cpu,
                                                    (process_cpu(server) - server_cpu) * 1e6 / max(count, 1)))
            trees = list(args.trees.items()) or [("", "")]
            trees = trees[round_number % len(trees):] + trees[:round_number % len(trees)]  # the order rotates
            for name, tree in trees:
                for loop in loops:
                    rows = tree_round(tree, port, server, loop, args) if tree else \
                        run(async_round(port, args.op, args.seconds, server), loop)
                    for n, measured in rows.items():
                        results[f"{_group('async', name, loop, args)}, {n} in flight"].append(measured)
            for loop in loops if args.bare else ():
                for n, measured in run(bare_round(port, args.seconds, server), loop).items():
                    results[f"{_group('bare', '', loop, args)}, {n} in flight"].append(measured)
            if not args.peers:
                continue
            for n, measured in run(thriftpy2_round(port, args.op, args.seconds, server), loops[0]).items():
                results[f"thriftpy2 aio, {n} conns"].append(measured)
            if args.op == "echo":  # bench.proto has no process
                for n, measured in run(grpc_round(grpc_port, args.seconds, grpc_server), loops[0]).items():
                    results[f"grpc.aio, {n} in flight"].append(measured)
    return results


def _group(kind: str, tree: str, loop: str, args: argparse.Namespace) -> str:
    """A set of rows' name: "async", with the tree and the loop when more than one is measured."""
    tree_part = f" {tree}" if tree and len(args.trees) > 1 else ""
    loop_part = f" ({loop})" if args.loop == "both" else ""
    return kind + tree_part + loop_part


def report(link: str, results: Dict[str, List[Measured]], bounds: bool = True) -> None:
    """The table of one link; ``bounds``: and the ratios CPU time allows (where CPU, not a delay, sets the pace)."""
    threaded = statistics.median(measured[0] for measured in results["threaded, sequential"])
    medians = {name: tuple(statistics.median(m[i] for m in measured) for i in range(3))
               for name, measured in results.items()}
    print(f"\n{link}")
    print(f"{'client':<34} {'calls/s':>9} {'min..max':>15} {'CPU us/call':>12} {'server us':>10} {'/threaded':>10} "
          f"{'/own x1':>8}")
    for name, measured in results.items():
        rates = [rate for rate, _, _ in measured]
        median, cpu, server = medians[name]
        own = [rate / sequential[0] for rate, sequential in zip(rates, results.get(_sequential(name), measured))]
        spread = f"{min(rates):.0f}..{max(rates):.0f}"
        print(f"{name:<34} {median:>9.0f} {spread:>15} {cpu:>12.1f} {server:>10.1f} {median / threaded:>10.2f} "
              f"{statistics.median(own):>8.2f}")
    if not bounds:
        return
    # the client's CPU of its least disturbed round (load only adds to it); the server's median (/proc's
    # clock ticks: 10 ms, a few us per call in a round, too coarse for the least)
    least = {name: (min(m[1] for m in measured), medians[name][2]) for name, measured in results.items()}
    for name, (c16, s16) in least.items():
        if not name.endswith(", 16 in flight") or _sequential(name) not in least:
            continue
        c1, s1 = least[_sequential(name)]
        print(f"{name[:-len(', 16 in flight')]}: 16 in flight / sequential that CPU allows: "
              f"{(c1 + s1) / max(c16, s16):.2f} on two free cores, {(c1 + s1) / (c16 + s16):.2f} on one "
              f"(c1 {c1:.1f} + s1 {s1:.1f} us; c16 {c16:.1f}, s16 {s16:.1f} us)")


def _sequential(name: str) -> str:
    """The 1-in-flight row of the set ``name`` belongs to."""
    group, _, _ = name.rpartition(", ")
    return f"{group}, 1 {'conns' if name.endswith('conns') else 'in flight'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=("echo", "process"), default="echo")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds the relay holds each chunk, each way")
    parser.add_argument("--uvloop", action="store_const", dest="loop", const="uvloop", default="asyncio",
                        help="every async client on uvloop's event loop (--loop uvloop)")
    parser.add_argument("--loop", choices=LOOPS + ("both",), default="asyncio",
                        help="the event loop of the async clients; both: each async row on each, same rounds")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="another checkout's AsyncClient beside this tree's (repeatable)")
    parser.add_argument("--bare", action="store_true", help="also the ceiling: a bare asyncio echo (bench.aio_bare)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="no thriftpy2 or grpc.aio rows")
    parser.add_argument("--no-relay", dest="relay", action="store_false", help="loopback only (no relay link)")
    parser.add_argument("--native", action="store_true", help="also against the native C++ server (bench/native)")
    parser.add_argument("--count-calls", action="store_true",
                        help="print the AsyncClient's Python calls per call (sys.setprofile) first")
    parser.add_argument("--child-round", type=int, help=argparse.SUPPRESS)  # a --tree's round, on this port
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_round:
        rows = count_calls(args.child_round, args.op) if args.count_calls else \
            async_round(args.child_round, args.op, args.seconds, args.server_pid)
        print(json.dumps(run(rows, args.loop)))  # type: ignore[arg-type]
        return
    args.trees = {"this": str(ROOT)} if args.tree else {}
    for spec in args.tree:
        name, _, path = spec.partition("=")
        args.trees[name] = os.path.abspath(path)
    server, port = start_server()
    processes = [server]
    grpc_server: Optional[subprocess.Popen] = None
    grpc_port = 0
    if args.peers:
        grpc_server, grpc_port = start_grpc_aio()
        processes.append(grpc_server)
    grpc_pid = 0 if grpc_server is None else grpc_server.pid
    relayed = grpc_relayed = 0
    if args.relay:
        relay_process, relayed = start_relay(port, args.delay)
        processes.append(relay_process)
        if args.peers:
            grpc_relay, grpc_relayed = start_relay(grpc_port, args.delay)
            processes.append(grpc_relay)
    try:
        for name, tree in (args.trees or {"": ""}).items() if args.count_calls else ():
            counted = tree_round(tree, port, server.pid, "asyncio", args, count_calls=True) if tree else \
                asyncio.run(count_calls(port, args.op))
            print(f"AsyncClient{' ' + name if name else ''}, Python function calls per call (sys.setprofile): " +
                  ", ".join(f"{n} in flight {count:.0f}" for n, count in counted.items()))
        native = None
        if args.native:
            native_server, native_port = start_native()
            processes.append(native_server)
            native = measure(native_port, grpc_port, (native_server.pid, grpc_pid), args)  # grpc.aio: its own
        loopback = measure(port, grpc_port, (server.pid, grpc_pid), args)
        delayed = measure(relayed, grpc_relayed, (server.pid, grpc_pid), args) if args.relay else None
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    print(f"{args.op}, one connection{' (thriftpy2 aio: one per call in flight)' if args.peers else ''}, "
          f"{args.rounds} rounds of "
          f"{args.seconds:g} s" + (f", the async clients on {args.loop}" if args.loop != "asyncio" else "") +
          "".join(f"; {name}: {path}" for name, path in args.trees.items()))
    report("loopback", loopback)
    if native is not None:
        report("loopback, the native C++ server (bench/native; grpc.aio: its own server)", native)
    if delayed is not None:
        report(f"loopback through a relay holding each chunk {args.delay * 1e3:g} ms each way", delayed, bounds=False)


if __name__ == "__main__":
    main()
