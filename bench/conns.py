"""The native "hello, then echo" cells at many connections, for this tree's server and other checkouts' side by
side with B, interleaved round by round in one run: the before/after figure of a change to the threaded server.

Each system is served in its own process (B by ``bench.servers``, every tree by its own ``serve``); each round
drives every system once per connection count with the C++ load generator, the systems' order rotated, and
prints the rate and the server CPU per call as ratios to B of the same round (median, min-max).

    .venv/bin/python -m bench.conns --tree old=/tmp/old [--tree main=/tmp/main] [--conns 16,64,256]
        [--rounds 5] [--seconds 0.5] [--workers] [--peer cpp] [--serve-args "this=--max-threads 300"]

A tree may be named twice (``--tree w=.`` with ``--serve-args "w=--workers auto"``) to compare two ways of
serving it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench import harness, native_build
from bench.call_count import tree_path


def _serve_tree(name: str, tree: str, workers: bool, workdir: Path, extra: List[str]) -> harness.Server:
    port = harness.free_port()
    argv = [sys.executable, "-m", "thrift_handshake", "serve", "--port", str(port)] + extra
    if workers:
        argv += ["--workers", "auto"]
    log = workdir / f"server-{name}.log"
    env = dict(os.environ, PYTHONPATH=tree_path(tree))
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir)
    return _started(harness.Server("p", proc, port, log))


def _started(server: harness.Server) -> harness.Server:
    import socket
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return server
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                server.proc.kill()
                raise RuntimeError(f"server did not start: {server.log.read_text()[-2000:]}")
            time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="another checkout to serve beside this one (repeatable)")
    parser.add_argument("--conns", default="16,64,256", help="connection counts (comma-separated)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--workers", action="store_true", help="serve the trees with --workers auto")
    parser.add_argument("--peer", action="append", default=[], choices=["cpp", "tp2", "tp2a"],
                        help="another server beside B: cpp (the C++ TThreadedServer, the native floor), tp2, tp2a (thriftpy2 aio)")
    parser.add_argument("--serve-args", action="append", default=[], metavar="NAME=ARGS",
                        help="more `serve` arguments for one tree, e.g. this='--max-threads 300' (repeatable)")
    args = parser.parse_args(argv)
    harness.raise_fd_limit()
    programs = native_build.build()
    loadgen = programs["bench_loadgen"]
    trees: Dict[str, str] = {"this": str(harness.ROOT)}
    for spec in args.tree:  # NAME=PATH; the same PATH may come twice under two names (other --serve-args)
        name, _, path = spec.partition("=")
        trees[name] = os.path.abspath(path)
    extra = {name: words.split() for name, _, words in (spec.partition("=") for spec in args.serve_args)}
    conns = [int(count) for count in args.conns.split(",")]
    samples: Dict[Tuple[str, int], List[harness.Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="thrift-handshake-conns-") as tmp:
        servers = {"b": harness.start_server("b", programs, Path(tmp), 0)}
        try:
            for peer in args.peer:
                servers[peer] = harness.start_server(peer, programs, Path(tmp), 0)
            for name, tree in trees.items():
                servers[name] = _serve_tree(name, tree, args.workers, Path(tmp), extra.get(name, []))
            for server in servers.values():
                harness.measure_native(server, loadgen, harness.Workload("warm-up", "echo", 4), 0.2)
            names = list(servers)
            for round_index in range(args.rounds):
                for count in conns:
                    shift = round_index % len(names)
                    for name in names[shift:] + names[:shift]:
                        load = harness.Workload(f"echo x{count}", "echo", count)
                        samples.setdefault((name, count), []).append(
                            harness.measure_native(servers[name], loadgen, load, args.seconds))
                print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for server in servers.values():
                harness.stop(server.proc)
    print(f"native hello-then-echo, {args.rounds} interleaved rounds of {args.seconds} s; ratios to B of the same "
          f"round, median (min-max){'; trees with --workers auto' if args.workers else ''}")
    for count in conns:
        base = samples[("b", count)]
        print(f"  {count:4} connections: B {statistics.median(s.rate for s in base):8.0f} calls/s, "
              f"{statistics.median(s.cpu_us for s in base):5.1f} us CPU/call")
        for name in list(trees) + args.peer:
            mine = samples[(name, count)]
            rate = [m.rate / b.rate for m, b in zip(mine, base)]
            cpu = [m.cpu_us / b.cpu_us for m, b in zip(mine, base)]
            p99 = [m.p99 / b.p99 for m, b in zip(mine, base)]
            print(f"    {name:8} P/B {statistics.median(rate):.2f}x ({min(rate):.2f}-{max(rate):.2f})  "
                  f"CPU/call {statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f})  "
                  f"p99 {statistics.median(p99):.2f}x  errors {sum(m.errors for m in mine)}  "
                  f"threads {max(m.threads for m in mine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
