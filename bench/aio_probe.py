"""Deterministic figures of the asyncio server's cost, beside the threaded server's: Python (and C)
function calls per 32-byte echo, and memory per idle session (hello done, then silent).

- calls: the server runs on a thread of this process with a profile function on it and on every thread
  it starts (``threading.setprofile``, as ``bench.call_count`` counts the threaded server); a raw socket
  on the unprofiled main thread says hello, warms up, then calls echo ``--calls`` times, one at a time.
  Rows: the threaded server, the asyncio server with the demo's plain echo (on its pool) and with a
  coroutine echo (on the loop).
- memory: each server in a child process of its own; ``--idle`` connections say hello and stay silent;
  the server's RSS and its traced Python memory (``tracemalloc``, ``--traced``) before and after, per
  session; the asyncio server also on uvloop's loop when it is installed.

    .venv/bin/python -m bench.aio_probe [--calls 2000] [--idle 10000] [--traced] [--tree /other/checkout]

``--tree`` runs the same probes against another checkout's ``service/`` and ``gen-py/`` too (e.g. the
tree before a change), in child processes, so both print side by side. With ``--tree``, ``--cpu ROUNDS``
instead reads each tree's asyncio server's own CPU time (coroutine echo, on asyncio's loop and on uvloop's)
per echo and per lifecycle (hello, echo, goodbye on a new connection), the trees alternating round by round
as ``bench.server_cpu`` does for the threaded server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

from bench.call_count import _exchange, _messages, _profile, _counts, tree_path
from bench.server_cpu import alternating_rounds

KINDS = ["threaded", "asyncio", "asyncio+async-echo"]
#: How long the sessions stay idle before memory is read (past the asyncio server's PARK_AFTER, 0.25 s).
_SETTLE = 1.5

#: The child that holds a server for the memory probe: reports its figures as JSON lines on stdout.
MEMORY_SERVER = """
import asyncio, gc, json, sys, threading, tracemalloc
kind, traced = sys.argv[1], sys.argv[2] == "1"
if traced:
    tracemalloc.start()
from thrift_handshake import ServerConfig, ServerLimits
from thrift_handshake.demo import demo_server
config = ServerConfig(port=0, host="127.0.0.1", limits=ServerLimits(max_connections=20000))

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

def report(server):
    gc.collect()
    traced_now = tracemalloc.get_traced_memory()[0] if traced else 0
    print(json.dumps({"rss": rss(), "traced": traced_now, "open": server.connection_count
                      if hasattr(server, "connection_count") else server.metrics.snapshot().connections_open}),
          flush=True)

if kind == "threaded":
    server = demo_server(config).start()
    print(server.port, flush=True)
    for line in sys.stdin:
        report(server)
    server.stop()
else:
    from thrift_handshake.aio import AsyncHandshakeServer
    async def main():
        server = demo_server(config, server_class=AsyncHandshakeServer)
        await server.start()
        print(server.port, flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            report(server)
        await server.stop(grace=1.0)
    if kind == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


#: The child that holds an asyncio server with a coroutine echo for ``--cpu`` (argv: the loop).
CPU_SERVER = """
import asyncio, logging, sys, tempfile
logging.basicConfig(level=logging.INFO, filename=tempfile.mktemp(suffix=".log"))
from thrift_handshake import ServerConfig
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake.demo import HandshakeHandler

class CoroutineEcho(HandshakeHandler):
    async def echo(self, message):
        return message

async def main():
    server = AsyncHandshakeServer(CoroutineEcho(), ServerConfig(port=0, host="127.0.0.1"))
    await server.start()
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(grace=1.0)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def server_cpu(loop: str, trees: Dict[str, str], rounds: int, calls: int = 3000, lifecycles: int = 200) -> None:
    """Prints each tree's asyncio server CPU per echo and per lifecycle on ``loop``, rounds alternating."""
    servers = {name: subprocess.Popen([sys.executable, "-c", CPU_SERVER, loop], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=tree_path(tree)))
               for name, tree in trees.items()}
    figures = alternating_rounds(servers, rounds, calls, lifecycles)
    this, other = list(trees)
    for label, by_tree in figures.items():
        ratios = sorted(a / b for a, b in zip(by_tree[this], by_tree[other]))
        print(f"  {loop:8} server CPU per {label:9}: {statistics.median(by_tree[this]):7.1f} us here, "
              f"{statistics.median(by_tree[other]):7.1f} us there; here/there {statistics.median(ratios):.2f}x "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}, {rounds} rounds)")


def _asyncio_server(kind: str) -> Any:
    """The asyncio server of ``kind`` (the demo's, or with a coroutine echo)."""
    from thrift_handshake import ServerConfig
    from thrift_handshake.aio import AsyncHandshakeServer
    from thrift_handshake.demo import HandshakeHandler, demo_server

    config = ServerConfig(port=0, host="127.0.0.1")
    if kind.endswith("+async-echo"):
        class CoroutineEcho(HandshakeHandler):
            async def echo(self, message: str) -> str:
                return message

        return AsyncHandshakeServer(CoroutineEcho(), config)
    return demo_server(config, server_class=AsyncHandshakeServer)


def count_calls(kind: str, calls: int) -> Dict[str, float]:
    """Python and C function calls the server of ``kind`` makes per echo (in this process)."""
    import logging
    import tempfile

    log = tempfile.NamedTemporaryFile(prefix="aio_probe", suffix=".log", delete=False)
    logging.basicConfig(level=logging.INFO, filename=log.name)
    hello, echo, goodbye = _messages()
    threading.setprofile(_profile)  # every thread started from now on: the server's loop and its pool
    stop: Any = None
    if kind == "threaded":
        from thrift_handshake import ServerConfig
        from thrift_handshake.demo import demo_server

        server = demo_server(ServerConfig(port=0, host="127.0.0.1")).start()
        stop = server.stop
    else:
        loop = asyncio.new_event_loop()
        server = _asyncio_server(kind)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(server.start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ready.wait(10)

        def stop() -> None:
            asyncio.run_coroutine_threadsafe(server.stop(grace=1.0), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    sizes: Dict[bytes, int] = {}
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _exchange(sock, hello, sizes)
            for _ in range(200):  # warm up
                _exchange(sock, echo, sizes)
            time.sleep(0.3)  # the sweep's timer and the like run now and again: this window is the baseline
            idle = dict(_counts)
            time.sleep(0.3)
            idle = {key: _counts[key] - value for key, value in idle.items()}
            before = dict(_counts)
            started = time.monotonic()
            for _ in range(calls):
                _exchange(sock, echo, sizes)
            elapsed = time.monotonic() - started
            after = dict(_counts)
            _exchange(sock, goodbye, sizes)
    finally:
        threading.setprofile(None)
        stop()
        os.unlink(log.name)
    # the work a server does while no call comes (its periodic sweep) is not the echo's
    background = {key: value / 0.3 * elapsed for key, value in idle.items()}
    return {"python": (after["python"] - before["python"] - background["python"]) / calls,
            "c": (after["c"] - before["c"] - background["c"]) / calls}


def _hold_idle(port: int, count: int, hello: bytes) -> List[socket.socket]:
    """``count`` connections to ``port``, each having said hello and read its answer."""
    selector = selectors.DefaultSelector()
    socks: List[socket.socket] = []
    size = 0
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if index == 0:
            sizes: Dict[bytes, int] = {}
            _exchange(sock, hello, sizes)
            size = sizes[hello]
        else:
            sock.sendall(hello)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, [0])
        socks.append(sock)
        if len(selector.get_map()) >= 256 or index == count - 1:  # at most this many hellos in flight
            while selector.get_map():
                for key, _ in selector.select(10):
                    key.data[0] += len(key.fileobj.recv(65536))
                    if key.data[0] >= size:
                        selector.unregister(key.fileobj)
    selector.close()
    return socks


def memory(kind: str, idle: int, traced: bool) -> Dict[str, float]:
    """Bytes per idle session of the server of ``kind`` (its RSS and, with ``traced``, tracemalloc's)."""
    hello, _, _ = _messages()
    server = subprocess.Popen([sys.executable, "-c", MEMORY_SERVER, kind, "1" if traced else "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())

        def report() -> Dict[str, int]:
            server.stdin.write("\n")
            server.stdin.flush()
            return json.loads(server.stdout.readline())

        warm = _hold_idle(port, 200, hello)  # the pool, caches, first allocations: not per session
        time.sleep(0.5)
        before = report()
        socks = _hold_idle(port, idle, hello)
        deadline = time.monotonic() + 60
        while True:
            time.sleep(0.5)
            after = report()
            if after["open"] >= idle + len(warm) or time.monotonic() > deadline:
                break
        time.sleep(_SETTLE)  # idle that long, the asyncio server's sessions wait without a task
        after = report()
        for sock in socks + warm:
            sock.close()
    finally:
        server.stdin.close()
        server.wait(60)
    return {"rss": (after["rss"] - before["rss"]) / idle, "traced": (after["traced"] - before["traced"]) / idle,
            "open": after["open"] - before["open"]}


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _in_tree(tree: str, args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=tree_path(tree))
    argv = [sys.executable, "-m", "bench.aio_probe", "--json", "--calls", str(args.calls), "--idle", str(args.idle)]
    if args.traced:
        argv.append("--traced")
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def probe(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    figures: Dict[str, Dict[str, float]] = {}
    for kind in KINDS:
        if args.calls:  # each in a child: one profile, one server per process
            figures[f"{kind} calls"] = json.loads(subprocess.run(
                [sys.executable, "-m", "bench.aio_probe", "--count", kind, "--calls", str(args.calls)],
                check=True, capture_output=True, text=True, env=os.environ,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout)
        if args.idle and not kind.endswith("+async-echo"):
            figures[f"{kind} memory"] = memory(kind, args.idle, args.traced)
    if args.idle and _has_uvloop():
        figures["uvloop memory"] = memory("uvloop", args.idle, args.traced)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="echo calls counted (0: none)")
    parser.add_argument("--idle", type=int, default=10000, help="idle sessions held (0: no memory probe)")
    parser.add_argument("--traced", action="store_true", help="also trace the server's Python memory")
    parser.add_argument("--tree", help="also probe this checkout (its service/ and gen-py/)")
    parser.add_argument("--cpu", type=int, default=0, metavar="ROUNDS",
                        help="with --tree: server CPU per echo and lifecycle instead, this many rounds")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        print(json.dumps(count_calls(args.count, args.calls)))
        return
    if args.json:
        print(json.dumps(probe(args)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.cpu and args.tree:
        print(f"here = {here}, there = {os.path.abspath(args.tree)}")
        for loop in ["asyncio"] + (["uvloop"] if _has_uvloop() else []):
            server_cpu(loop, {"here": here, "there": os.path.abspath(args.tree)}, args.cpu)
        return
    trees = [here] + ([os.path.abspath(args.tree)] if args.tree else [])
    results = [(tree, _in_tree(tree, args)) for tree in trees]
    for tree, figures in results:
        print(tree)
        for name, values in figures.items():
            if name.endswith(" calls"):
                print(f"  {name[:-6]:20} calls per echo: {values['python']:7.1f} Python, {values['c']:7.1f} C")
            else:
                print(f"  {name[:-7]:20} per idle session: RSS {values['rss'] / 1024:6.2f} KiB, traced "
                      f"{values['traced'] / 1024:6.2f} KiB ({values['open']:.0f} sessions)")


if __name__ == "__main__":
    main()
