"""Side-by-side cost of the phased client against the bare generated Thrift client, in one run.

Both talk to the same HandshakeServer, run in its own process on loopback (in-process, the server
would fight the client for the GIL), alternating short rounds so machine noise hits both alike.
Prints calls/s, the ratio wrapper/bare (median of the rounds' ratios, min-max) and the ratio of this
process's CPU per call for: echo (32 bytes) on an open connection, process() with a struct,
echo_types(AllTypes) (the benchmark's struct-heavy call), and the full lifecycle (open, hello, ping,
goodbye, close) vs bare open+ping+close, with the default options and with hello pipelined and
goodbye not awaited (one round trip, like bare).

    .venv/bin/python -m bench.client_overhead [--seconds 0.3] [--rounds 10] [--only echo_types]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport import TSocket, TTransport

from thrift_handshake import Client, ClientOptions
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request
from thrift_handshake_gen.session.ttypes import ClientHello

from bench.payloads import thrift_all_types

TEXT = "x" * 32
ALL_TYPES = thrift_all_types()
REQUEST = Request(request_id="bench", payload="p" * 64, work_ms=0, headers={f"k{i}": "v" for i in range(10)})


def rate(operation: Callable[[], None], seconds: float) -> "tuple[float, float]":
    """Operations per second over about ``seconds``, and this process's CPU microseconds per operation."""
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            operation()
        count += 50
    return count / (time.perf_counter() - started), (time.process_time() - cpu) * 1e6 / count


def bare_stub(port: int):
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", port))
    stub = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
    transport.open()
    stub.hello(ClientHello(client_name="bare", min_version=1, max_version=2))
    return stub, transport


def bare_lifecycle(port: int) -> None:
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", port))
    stub = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
    transport.open()
    stub.ping()  # the one call served without hello
    transport.close()


#: One round trip, like the bare lifecycle: hello written with the call, goodbye written on close.
FAST = ClientOptions(pipeline_hello=True, await_farewell=False)


def wrapped_lifecycle(port: int, options: Optional[ClientOptions] = None) -> None:
    with Client("127.0.0.1", port, options, service=HandshakeService) as client:
        client.ping()


def start_server() -> "tuple[subprocess.Popen, int]":
    """A server process on a free loopback port; its log is read (and dropped) on a thread."""
    server = subprocess.Popen([sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        match = re.search(r"listening on \S+:(\d+)", line)
        if match:
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, int(match.group(1))
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", default="", help="only the workloads whose name contains this")
    args = parser.parse_args()
    server, port = start_server()
    try:
        stub, transport = bare_stub(port)
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        pairs = {
            "echo 32 B, open connection": (lambda: stub.echo(TEXT), lambda: client.echo(TEXT)),
            "process(struct), open connection": (lambda: stub.process(REQUEST), lambda: client.process(REQUEST)),
            "echo_types(AllTypes), open connection":
                (lambda: stub.echo_types(ALL_TYPES), lambda: client.echo_types(ALL_TYPES)),
            "lifecycle: wrapper open+hello+ping+goodbye+close vs bare open+ping+close":
                (lambda: bare_lifecycle(port), lambda: wrapped_lifecycle(port)),
            "same, pipeline_hello=True, await_farewell=False":
                (lambda: bare_lifecycle(port), lambda: wrapped_lifecycle(port, FAST)),
        }
        pairs = {name: pair for name, pair in pairs.items() if args.only in name}
        results: Dict[str, Dict[str, List["tuple[float, float]"]]] = {name: {"bare": [], "wrapper": []}
                                                                     for name in pairs}
        for _ in range(args.rounds):
            for name, (bare, wrapped) in pairs.items():
                results[name]["bare"].append(rate(bare, args.seconds))
                results[name]["wrapper"].append(rate(wrapped, args.seconds))
        client.close()
        transport.close()
    finally:
        server.terminate()
        server.wait()
    print(f"{'workload':<75} {'bare/s':>9} {'wrapper/s':>10} {'ratio':>6} {'min-max':>10} {'CPU/call':>9}")
    for name, measured in results.items():
        ratios = [w[0] / b[0] for b, w in zip(measured["bare"], measured["wrapper"])]  # same round
        cpu = statistics.median(w[1] / b[1] for b, w in zip(measured["bare"], measured["wrapper"]))
        bare, wrapped = (statistics.median(rate for rate, _ in measured[side]) for side in ("bare", "wrapper"))
        print(f"{name:<75} {bare:>9.0f} {wrapped:>10.0f} {statistics.median(ratios):>6.2f} "
              f"{min(ratios):>4.2f}-{max(ratios):<4.2f} {cpu:>8.2f}x")


if __name__ == "__main__":
    main()
