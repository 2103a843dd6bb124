"""Issue 14's cells of the benchmark: the ``AsyncClient`` beside thriftpy2's aio client and grpc.aio, the asyncio
server beside thriftpy2's aio server and grpc.aio's. Every system's clients stay connected through a cell while
its seconds, cut into windows, alternate between the systems, so that the shared machine's bursts of load hit all
alike; ``bench.harness.run`` files the figures with the other cells', ``bench.report`` prints ours / each peer's.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from bench.harness import (CLIENT_SERVER, ROOT, SERVED_BY_P, Sample, Server, Workload, cpu_seconds, exit_all,
                           memory_and_threads, read_line, send)

#: Windows per system and cell, alternating between the cell's systems, each a fifth of ``--seconds`` (so a
#: system gets twice ``--seconds`` per cell): on the shared machine, whose load comes and goes within a tenth of a
#: second, a 1-connection cell's rate swings 20x from one window to the next, so the systems take turns often
SLICES = 10
WINDOW = 0.2


class AioClients:
    """A long-lived async client process (bench/aio_peers.py) per async client system, and one for grpc.aio's
    clients of its server's cells: no system's imports, threads or heap in another's process."""

    def __init__(self, systems: Sequence[str]) -> None:
        self.procs = {system: subprocess.Popen([sys.executable, "-m", "bench.aio_peers"], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True, cwd=ROOT) for system in systems}

    def close(self) -> None:
        exit_all(list(self.procs.values()))


@dataclass
class Opened:
    """One system's clients of an issue-14 cell, kept open for its interleaved windows."""
    system: str          # the system the cell's figures are filed under
    server: Server
    proc: subprocess.Popen
    native: bool         # the C++ load generator (else an async client process, bench/aio_peers.py)
    windows: List[dict] = field(default_factory=list)   # each window's answer, with the server's CPU seconds

    @property
    def what(self) -> str:
        return f"{'native' if self.native else 'async'} client of {self.system} against {self.server.system}"

    def answer(self, line: str, timeout: float) -> dict:
        send(self.proc, line)
        got = read_line(self.proc, timeout, self.what)
        answer = {"ready": True} if got == "ready" else json.loads(got)
        if "error" in answer:
            raise RuntimeError(f"{self.what}: {answer['error']}")
        return answer

    def window(self, seconds: float) -> None:
        cpu0 = cpu_seconds(self.server.proc.pid)
        answer = self.answer("go", seconds + 60)
        answer["server_cpu"] = cpu_seconds(self.server.proc.pid) - cpu0
        self.windows.append(answer)

    def close(self) -> None:
        if self.native:
            send(self.proc, "close")
            self.proc.wait(120)
        else:
            self.answer("close", 60)

    def sample(self) -> Sample:
        calls = sum(window["calls"] for window in self.windows)
        if calls == 0:
            raise RuntimeError(f"{self.what}: no call completed")
        rss, threads = memory_and_threads(self.server.proc.pid)
        middle = (lambda key: statistics.median(window[key] for window in self.windows)) if self.native else \
            (lambda key: math.nan)
        return Sample(rate=calls / sum(window["seconds"] for window in self.windows), p50=middle("p50_us"),
                      p99=middle("p99_us"), p999=middle("p999_us"),
                      cpu_us=sum(window["server_cpu"] for window in self.windows) * 1e6 / calls, rss_mib=rss,
                      threads=threads, errors=sum(window.get("errors", 0) for window in self.windows),
                      client_cpu_us=math.nan if self.native else
                      sum(window["cpu_us"] * window["calls"] for window in self.windows) / calls)


def open_clients(kind: str, load: Workload, system: str, servers: Dict[str, Server], aio: AioClients,
                 loadgen: Path, window: float) -> Opened:
    """``system``'s clients of an issue-14 cell, connected and (the async ones) warmed up: the async clients
    with N in flight (on one connection, or on N for thriftpy2: no overlap on one); the Thrift asyncio servers
    with the C++ load generator; grpc.aio's server with its own client, a channel per connection."""
    if kind == "aioc" or system == "grpca":
        client = system if kind == "aioc" else "grpcac"
        server = servers[CLIENT_SERVER[system]] if kind == "aioc" else servers[system]
        conns = 1 if client in ("ac", "grpcac") and kind == "aioc" else load.conns
        opened = Opened(system, server, aio.procs[system], native=False)
        opened.answer(json.dumps({"system": client, "port": server.port, "conns": conns, "in_flight": load.conns,
                                  "seconds": window}), 120)
        return opened
    server = servers[system]
    proc = subprocess.Popen([str(loadgen), str(server.port), load.op, str(load.conns), str(window),
                             "1" if system in SERVED_BY_P else "0", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    opened = Opened(system, server, proc, native=True)
    if read_line(proc, 120, opened.what) != "ready":
        raise RuntimeError(f"{opened.what}: unexpected output")
    return opened


def measure_interleaved(kind: str, load: Workload, systems: Sequence[str], servers: Dict[str, Server],
                        aio: AioClients, loadgen: Path, window: float, slices: int = SLICES) -> Dict[str, Sample]:
    """Every system of an issue-14 cell over ``slices`` windows of ``window`` seconds that alternate between the
    systems (the order rotating), each system's clients connected throughout: the machine's load, which comes
    and goes faster than a cell lasts, hits all alike."""
    opened: List[Opened] = []
    try:
        for system in systems:
            opened.append(open_clients(kind, load, system, servers, aio, loadgen, window))
        for index in range(slices):
            for clients in opened[index % len(opened):] + opened[:index % len(opened)]:
                clients.window(window)
    finally:
        for clients in opened:
            try:
                clients.close()
            finally:
                if clients.native and clients.proc.poll() is None:
                    clients.proc.kill()
                    clients.proc.wait()
    return {clients.system: clients.sample() for clients in opened}
