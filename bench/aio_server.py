"""The asyncio server against the threaded one: the native load generator calling echo (32 bytes) with
hello on 1, 16 and 64 connections; each server in its own process (B, bare Apache Thrift's TThreadedServer
as in the main benchmark; the threaded ``HandshakeServer``,
``AsyncHandshakeServer`` on asyncio's loop, and on uvloop's when installed; thriftpy2's aio server as a
peer when the bench extra is installed: coroutine methods, no gate, hello a plain method). Rounds
alternate between the servers so machine noise hits all alike; prints the median calls/s and server CPU
per call. (grpc.aio speaks no Thrift for this load generator: its row is in ``bench/aio_client.py``.)

    .venv/bin/python -m bench.aio_server [--rounds 3] [--seconds 2] [--connections 1 16 64] [--servers ...]
                                         [--tree /other/checkout]

``--tree`` also runs the asyncio servers of another checkout (its ``service/`` and ``gen-py/``, e.g. the tree
before a change) in the same interleaved rounds, as ``asyncio@tree`` rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Tuple

from bench.call_count import tree_path
from bench.harness import cpu_seconds
from bench.native_build import build

SERVER = """
import asyncio, sys
from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server
config = ServerConfig(port=0, limits=__import__("thrift_handshake").ServerLimits(max_connections=4096))
if sys.argv[1] == "threaded":
    server = demo_server(config).start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()
elif sys.argv[1] == "b":  # the bare Apache Thrift server of the main benchmark (B), a reference
    import socket, threading
    from bench.servers import serve_b
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=serve_b, args=(port,), daemon=True).start()  # it prints "listening PORT"
    sys.stdin.read()
elif sys.argv[1] == "thriftpy2-aio":  # a peer: thriftpy2's asyncio server, coroutine methods, no gate
    import os, signal, socket, threading
    from bench.servers import serve_thriftpy2_aio
    with socket.socket() as probe:  # thriftpy2 takes port 0 for "no port"
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=lambda: (sys.stdin.read(), os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start()
    serve_thriftpy2_aio(port)  # it prints "listening PORT"
else:
    from thrift_handshake.aio import AsyncHandshakeServer
    from thrift_handshake.demo import HandshakeHandler
    class CoroutineEcho(HandshakeHandler):
        async def echo(self, message):
            return message
    async def main():
        if sys.argv[1].endswith("+async-echo"):
            server = AsyncHandshakeServer(CoroutineEcho(), config)
        else:
            server = demo_server(config, server_class=AsyncHandshakeServer)
        await server.start()
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop()
    if sys.argv[1].startswith("uvloop"):
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


def _servers() -> List[str]:
    """B (stock TThreadedServer, the main benchmark's reference); the threaded server; the asyncio one
    with the demo's plain echo (on its pool) and with a coroutine
    echo (on the loop); the same on uvloop when installed; thriftpy2's aio server when installed (the
    bench extra), a peer."""
    kinds = ["b", "threaded", "asyncio", "asyncio+async-echo"]
    try:
        import uvloop  # noqa: F401
        kinds += ["uvloop", "uvloop+async-echo"]
    except ImportError:
        pass
    try:
        import thriftpy2  # noqa: F401
        kinds.append("thriftpy2-aio")
    except ImportError:
        pass
    return kinds


def _round(loadgen: str, server: subprocess.Popen, port: str, connections: int, seconds: float) -> Tuple[float, float]:
    """(calls per second, server CPU microseconds per call) of one timed window."""
    load = subprocess.Popen([loadgen, port, "echo", str(connections), str(seconds), "1", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert load.stdout.readline().strip() == "ready"
        before = cpu_seconds(server.pid)
        load.stdin.write("go\n")
        load.stdin.flush()
        result = json.loads(load.stdout.readline())
        cpu = cpu_seconds(server.pid) - before
        load.stdin.write("close\n")
        load.stdin.flush()
        load.wait(30)
    finally:
        if load.poll() is None:
            load.kill()
    calls = max(result["calls"], 1)
    return calls / result["seconds"], cpu / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--servers", nargs="+", help="only these (of: %(default)s)", default=_servers())
    parser.add_argument("--tree", help="also run this checkout's asyncio servers (rows asyncio@tree)")
    args = parser.parse_args()
    loadgen = str(build()["bench_loadgen"])
    kinds = list(args.servers)
    if args.tree:
        kinds += [f"{kind}@tree" for kind in kinds if kind.startswith(("asyncio", "uvloop"))]
    servers: Dict[str, Tuple[subprocess.Popen, str]] = {}
    try:
        for kind in kinds:
            env = dict(os.environ)
            if kind.endswith("@tree"):
                env["PYTHONPATH"] = tree_path(os.path.abspath(args.tree)) + os.pathsep + os.getcwd()
            process = subprocess.Popen([sys.executable, "-c", SERVER, kind.removesuffix("@tree")], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env)
            servers[kind] = process, process.stdout.readline().split()[-1]
        print(f"{'server':18} {'conns':>5} {'calls/s':>9} {'cpu us/call':>12}")
        for connections in args.connections:
            samples: Dict[str, List[Tuple[float, float]]] = {kind: [] for kind in kinds}
            for _ in range(args.rounds):
                for kind in kinds:
                    samples[kind].append(_round(loadgen, servers[kind][0], servers[kind][1], connections, args.seconds))
            for kind in kinds:
                rate = statistics.median(sample[0] for sample in samples[kind])
                cpu = statistics.median(sample[1] for sample in samples[kind])
                print(f"{kind:18} {connections:>5} {rate:>9.0f} {cpu:>12.1f}", flush=True)
    finally:
        for process, _ in servers.values():
            process.stdin.close()
            process.wait(30)


if __name__ == "__main__":
    main()
