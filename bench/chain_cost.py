"""What the interceptor chain costs the server: server CPU per call with the runtime's default chain
(counting, the call log) against the same server with its chain emptied, side by side in one run.

Two demo servers run in their own processes on loopback; one Python client process per server calls
echo (32 bytes) on one open session. Rounds alternate between the servers so machine noise hits both
alike; each round reads the server's CPU time (user + system, /proc) before and after. Prints the
median ratio default/empty with min and max, and the difference in microseconds per call.

    .venv/bin/python -m bench.chain_cost [--rounds 7] [--calls 3000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from typing import Dict, List

from bench.harness import cpu_seconds

SERVER = """
import sys
from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server
server = demo_server(ServerConfig(port=0))
if sys.argv[1] == "empty":  # for this measurement only: the chain emptied in place
    server.processor.chain._starters = server.processor.chain._enders = ()
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""

CLIENT = """
import sys
from thrift_handshake import Client
from thrift_handshake_gen import HandshakeService
text = "x" * 32
with Client("127.0.0.1", int(sys.argv[1]), service=HandshakeService) as client:
    for line in sys.stdin:
        for _ in range(int(line)):
            client.echo(text)
        print("done", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3000, help="echo calls per server per round")
    args = parser.parse_args()
    servers: Dict[str, subprocess.Popen] = {}
    clients: Dict[str, subprocess.Popen] = {}
    try:
        for mode in ("default", "empty"):
            servers[mode] = subprocess.Popen([sys.executable, "-c", SERVER, mode], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True)
            port = servers[mode].stdout.readline().strip()
            clients[mode] = subprocess.Popen([sys.executable, "-c", CLIENT, port], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True)
        per_call: Dict[str, List[float]] = {"default": [], "empty": []}
        for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
            for mode in ("default", "empty"):
                before = cpu_seconds(servers[mode].pid)
                clients[mode].stdin.write(f"{args.calls}\n")
                clients[mode].stdin.flush()
                assert clients[mode].stdout.readline().strip() == "done"
                if round_number:
                    per_call[mode].append((cpu_seconds(servers[mode].pid) - before) * 1e6 / args.calls)
    finally:
        for process in (*clients.values(), *servers.values()):
            process.stdin.close()
        for process in (*clients.values(), *servers.values()):
            process.wait(10)
    ratios = [d / e for d, e in zip(per_call["default"], per_call["empty"])]
    default, empty = statistics.median(per_call["default"]), statistics.median(per_call["empty"])
    print(f"server CPU per echo call, {args.rounds} rounds of {args.calls} calls (CPU time has 10 ms ticks):")
    print(f"  default chain  {default:7.1f} us")
    print(f"  empty chain    {empty:7.1f} us")
    print(f"  ratio default/empty  {statistics.median(ratios):.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"difference {default - empty:+.1f} us per call")


if __name__ == "__main__":
    main()
