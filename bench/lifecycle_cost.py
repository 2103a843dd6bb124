"""The cost of one whole lifecycle with the Python ``Client`` (connect, hello, one echo, goodbye, close), on
the client and on the server, of this tree against another checkout's, side by side in one run.

For each tree (and for bare Apache Thrift, ``B``: its generated client without hello against
``bench.servers``' stock TThreadedServer) this starts, each in its own process:

- a client process running lifecycles on command: under ``sys.setprofile`` to count the Python (and C)
  function calls of its thread per lifecycle (deterministic), or unprofiled for its CPU time per lifecycle;
- a server that counts its threads' calls (``threading.setprofile``, as ``bench.call_count`` does), and an
  unprofiled one for its CPU time (from /proc, every thread).

The CPU rounds alternate the trees (and B) so that the shared machine's noise hits them alike; the
figures are medians over the rounds with min-max, and the ratio to the other tree and to B.
``--options`` picks the client's ClientOptions: ``fast`` (hello pipelined, goodbye not awaited: the
benchmark's), ``default`` (whatever the tree's defaults are) or ``both`` (this tree's client with each).

    .venv/bin/python -m bench.lifecycle_cost --tree /tmp/old [--rounds 7] [--lifecycles 300] [--options fast]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List

from bench.call_count import tree_path
from bench.harness import cpu_seconds

#: A client process: one JSON command a line ({"op": "count"|"cpu", "n": N}), one JSON answer a line.
CLIENT = r"""
import json, sys, time
from thrift_handshake_gen import HandshakeService
kind, port, options_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TEXT = "x" * 32
if kind == "b":
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport
    def lifecycle():
        transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", port))
        stub = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
        transport.open()
        stub.echo(TEXT)
        transport.close()
else:
    from thrift_handshake import Client, ClientOptions
    options = ClientOptions(pipeline_hello=True, await_farewell=False) if options_name == "fast" else ClientOptions()
    def lifecycle():
        client = Client("127.0.0.1", port, options, service=HandshakeService)
        client.connect()
        client.echo(TEXT)
        client.close()
from bench.call_count import _counts as counts, _profile as profile
for _ in range(50):
    lifecycle()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    n = command["n"]
    if command["op"] == "count":
        counts.update(python=0, c=0)
        sys.setprofile(profile)
        for _ in range(n):
            lifecycle()
        sys.setprofile(None)
        answer = {"python": counts["python"] / n, "c": counts["c"] / n}
    else:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            lifecycle()
        answer = {"cpu_us": (time.process_time() - cpu) * 1e6 / n, "rate": n / (time.perf_counter() - wall)}
    print(json.dumps(answer), flush=True)
"""

#: A server process of a tree (the demo server, INFO log lines to a file as ``serve`` logs), or B; with
#: "count", its threads' calls are counted and each line on stdin is answered with the counts so far
#: (once every connection is closed).
SERVER = r"""
import json, logging, os, sys, tempfile, threading, time
from bench.call_count import _counts as counts, _profile as profile
kind, profiled = sys.argv[1], sys.argv[2] == "count"
if profiled:
    threading.setprofile(profile)
if kind == "b":
    import socket
    from bench.servers import serve_b
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=serve_b, args=(port,), daemon=True).start()
    closed = lambda: True
else:
    log = tempfile.NamedTemporaryFile(prefix="lifecycle_cost", suffix=".log", delete=False)
    logging.basicConfig(level=logging.INFO, filename=log.name)
    from thrift_handshake import ServerConfig
    from thrift_handshake.demo import demo_server
    server = demo_server(ServerConfig(port=0, host="127.0.0.1"))
    server.start()
    port = server.port
    closed = lambda: server.metrics.snapshot().connections_open == 0
    print(port, flush=True)
for line in sys.stdin:
    deadline = time.monotonic() + 10
    while not closed() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    print(json.dumps(counts), flush=True)
os._exit(0)  # stdin closed: done (no wait for the server's threads)
"""


class Side:
    """One system's client process, its counted server and its timed server."""

    def __init__(self, name: str, kind: str, tree: str, options: str) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree_path(tree), here]))
        self.name = name

        def start(script: str, *argv: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-c", script, *argv], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=here)

        self.counted, self.timed = start(SERVER, kind, "count"), start(SERVER, kind, "time")
        if kind == "b":  # serve_b announces its port itself
            self.counted_port = int(self.counted.stdout.readline().split()[1])
            self.timed_port = int(self.timed.stdout.readline().split()[1])
        else:
            self.counted_port, self.timed_port = (int(s.stdout.readline()) for s in (self.counted, self.timed))
        self.count_client = start(CLIENT, kind, str(self.counted_port), options)
        self.time_client = start(CLIENT, kind, str(self.timed_port), options)
        for client in (self.count_client, self.time_client):
            json.loads(client.stdout.readline())

    @staticmethod
    def ask(process: subprocess.Popen, command: object) -> dict:
        process.stdin.write(json.dumps(command) + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    def count(self, lifecycles: int) -> Dict[str, float]:
        """Function calls per lifecycle: the client's thread's, and the server's."""
        before = self.ask(self.counted, "counts")
        client = self.ask(self.count_client, {"op": "count", "n": lifecycles})
        after = self.ask(self.counted, "counts")
        return {"client_python": client["python"], "client_c": client["c"],
                "server_python": (after["python"] - before["python"]) / lifecycles,
                "server_c": (after["c"] - before["c"]) / lifecycles}

    def cpu(self, lifecycles: int) -> Dict[str, float]:
        """CPU microseconds per lifecycle: the client process's, and the server's."""
        before = cpu_seconds(self.timed.pid)
        client = self.ask(self.time_client, {"op": "cpu", "n": lifecycles})
        return {"client_cpu_us": client["cpu_us"], "rate": client["rate"],
                "server_cpu_us": (cpu_seconds(self.timed.pid) - before) * 1e6 / lifecycles}

    def stop(self) -> None:
        for process in (self.count_client, self.time_client, self.counted, self.timed):
            process.stdin.close()
        for process in (self.count_client, self.time_client, self.counted, self.timed):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _spread(values: List[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", help="the other checkout (its service/ and gen-py/)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lifecycles", type=int, default=300, help="lifecycles per system per round")
    parser.add_argument("--options", default="fast",
                        help="fast, default, or both (this tree's client with each, side by side)")
    parser.add_argument("--no-bare", action="store_true", help="leave B out")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    chosen = ["fast", "default"] if args.options == "both" else [args.options]
    systems = [("this" if i == 0 else f"this-{name}", "p", here, name) for i, name in enumerate(chosen)]
    if args.tree:
        systems.append(("other", "p", os.path.abspath(args.tree), chosen[0]))
    if not args.no_bare:
        systems.append(("B", "b", here, "fast"))
    sides = [Side(name, kind, tree, options) for name, kind, tree, options in systems]
    counts: Dict[str, Dict[str, float]] = {}
    cpu: Dict[str, Dict[str, List[float]]] = {side.name: {"client_cpu_us": [], "server_cpu_us": [], "rate": []}
                                             for side in sides}
    try:
        for side in sides:
            counts[side.name] = side.count(min(args.lifecycles, 200))
        for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
            order = sides if round_number % 2 else list(reversed(sides))
            for side in order:
                figures = side.cpu(args.lifecycles)
                if round_number:
                    for key, value in figures.items():
                        cpu[side.name][key].append(value)
    finally:
        for side in sides:
            side.stop()
    print(f"per lifecycle (connect, hello, echo 32 B, goodbye, close), options {', '.join(chosen)} (the first is "
          f"this and other's); this = {here}" + (f", other = {os.path.abspath(args.tree)}" if args.tree else "")
          + "; B = bare Apache Thrift (no hello); medians of the rounds (min-max):")
    print(f"  {'':12} {'client calls Py/C':>18} {'server calls Py/C':>18} {'client CPU us':>22} {'server CPU us':>22}"
          f" {'lifecycles/s':>22}")
    for side in sides:
        c, t = counts[side.name], cpu[side.name]
        print(f"  {side.name:12} {c['client_python']:8.1f}/{c['client_c']:<8.1f} {c['server_python']:8.1f}/"
              f"{c['server_c']:<8.1f} {_spread(t['client_cpu_us']):>22} {_spread(t['server_cpu_us']):>22}"
              f" {_spread(t['rate']):>22}")
    names = [side.name for side in sides]
    for base in names[1:]:
        for key in ("client_cpu_us", "server_cpu_us", "rate"):
            ratios = [a / b for a, b in zip(cpu["this"][key], cpu[base][key]) if b]
            if ratios:
                label = key[:-3] if key.endswith("_us") else key
                print(f"  this/{base} {label}: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
