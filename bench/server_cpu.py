"""Server CPU per echo and per lifecycle of this tree's threaded server against another checkout's, side by
side in one run: the CPU figure that goes with ``bench.call_count``'s call counts.

Each tree's demo server runs in its own process (INFO log lines to a file, as ``serve`` logs); this
process drives both from raw sockets with pre-encoded strict binary messages, alternating the servers
round by round so that the shared machine's noise hits both alike, and reads each server's own CPU time
(user + system, /proc) around each round. Prints the medians with min-max and the median ratio.

    .venv/bin/python -m bench.server_cpu --tree /tmp/old [--rounds 9] [--calls 3000] [--lifecycles 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
from typing import Dict, List, Tuple

from bench.call_count import _exchange, _messages, tree_path
from bench.harness import cpu_seconds

SERVER = """
import logging, sys, tempfile
logging.basicConfig(level=logging.INFO, filename=tempfile.mktemp(suffix=".log"))
from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server
server = demo_server(ServerConfig(port=0, host="127.0.0.1"))
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def _start(tree: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=tree_path(tree)))


def one_round(pid: int, held: socket.socket, port: int, calls: int, lifecycles: int,
              sizes: Dict[bytes, int]) -> Tuple[float, float]:
    """Server ``pid``'s CPU microseconds per echo (``calls`` on ``held``, whose hello is done) and per
    lifecycle (``lifecycles`` new connections to ``port``: hello, echo, goodbye)."""
    hello, echo, goodbye = _messages()
    before = cpu_seconds(pid)
    for _ in range(calls):
        _exchange(held, echo, sizes)
    middle = cpu_seconds(pid)
    for _ in range(lifecycles):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for request in (hello, echo, goodbye):
                _exchange(sock, request, sizes)
    return (middle - before) * 1e6 / calls, (cpu_seconds(pid) - middle) * 1e6 / lifecycles


def alternating_rounds(servers: Dict[str, subprocess.Popen], rounds: int, calls: int,
                       lifecycles: int) -> Dict[str, Dict[str, List[float]]]:
    """Each server's CPU per echo and per lifecycle (``{"echo": {name: [us, ...]}, "lifecycle": ...}``),
    rounds alternating their order after a warm-up round; each server printed its port on stdout and stops
    when its stdin closes (which this does)."""
    hello = _messages()[0]
    sizes: Dict[bytes, int] = {}
    figures: Dict[str, Dict[str, List[float]]] = {"echo": {n: [] for n in servers},
                                                  "lifecycle": {n: [] for n in servers}}
    try:
        ports = {name: int(server.stdout.readline()) for name, server in servers.items()}
        held = {}
        for name, port in ports.items():
            held[name] = socket.create_connection(("127.0.0.1", port))
            held[name].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _exchange(held[name], hello, sizes)
        for round_number in range(rounds + 1):  # the first round warms up and is not counted
            for name in (list(servers) if round_number % 2 else list(reversed(servers))):
                per_echo, per_lifecycle = one_round(servers[name].pid, held[name], ports[name], calls, lifecycles,
                                                    sizes)
                if round_number:
                    figures["echo"][name].append(per_echo)
                    figures["lifecycle"][name].append(per_lifecycle)
        for sock in held.values():
            sock.close()
    finally:
        for server in servers.values():
            server.stdin.close()
            server.wait(10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", required=True, help="the other checkout (its service/ and gen-py/)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000, help="echo calls per server per round")
    parser.add_argument("--lifecycles", type=int, default=300, help="lifecycles per server per round")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this": here, "other": os.path.abspath(args.tree)}
    figures = alternating_rounds({name: _start(tree) for name, tree in trees.items()}, args.rounds, args.calls,
                                 args.lifecycles)
    echo_us, life_us = figures["echo"], figures["lifecycle"]
    print(f"server CPU, {args.rounds} alternating rounds (CPU time has 10 ms ticks); this = {here}, "
          f"other = {trees['other']}:")
    for label, figures, unit in (("echo 32 B", echo_us, "us/call"), ("lifecycle", life_us, "us/lifecycle")):
        ratios = [a / b for a, b in zip(figures["this"], figures["other"])]
        print(f"  {label:10} this {statistics.median(figures['this']):7.1f} ({min(figures['this']):.1f}-"
              f"{max(figures['this']):.1f})  other {statistics.median(figures['other']):7.1f} "
              f"({min(figures['other']):.1f}-{max(figures['other']):.1f}) {unit};  this/other "
              f"{statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
