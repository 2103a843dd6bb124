"""The benchmark harness: starts every system's server in its own process on 127.0.0.1, drives each with its
clients in rounds that interleave the systems, and reports every figure as a ratio to B measured in the same
round (median of the rounds, with min and max). See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")

# name -> (label, how it is served)
SYSTEMS = {
    "b": "B: Apache Thrift TThreadedServer + TBufferedTransport + TBinaryProtocolAccelerated",
    "p": "P: thrift-handshake serve (HandshakeServer)",
    "pw": "P with --workers auto",
    "pa": "P: thrift-handshake serve --asyncio (AsyncHandshakeServer, uvloop when installed)",
    "pae": "P: serve --asyncio --handler bench.coroutine_echo:CoroutineEcho (echo a coroutine, on the loop)",
    "tp2": "thriftpy2 threaded server, cybin protocol",
    "grpc": "grpcio sync server (64 worker threads)",
    "cpp": "C++ Thrift TThreadedServer (native reference)",
    "tp2a": "thriftpy2 aio server (TAsyncServer: its own binary protocol and buffered transport)",
    "grpca": "grpc.aio server",
}
ROW = {
    ("python", "b"): "B (bare generated client)",
    ("python", "p"): "P (Client wrapper: hello, goodbye)",
    ("python", "tp2"): "thriftpy2 (cybin)",
    ("python", "grpc"): "grpcio sync",
    ("native", "b"): "B, C++ client",
    ("native", "p"): "P, C++ client (hello first)",
    ("native", "pw"): "P --workers auto, C++ client",
    ("native", "pa"): "P --asyncio, C++ client (hello first)",
    ("native", "tp2"): "thriftpy2 server, C++ client",
    ("native", "cpp"): "C++ server, C++ client (native floor)",
    ("aioc", "ac"): "AsyncClient, N in flight on one connection (C++ server)",
    ("aioc", "tp2ac"): "thriftpy2 aio client, N connections, a call in flight each (C++ server)",
    ("aioc", "grpcac"): "grpc.aio, N in flight on one channel (its grpc.aio server)",
    ("aios", "pae"): "P --asyncio, coroutine echo, C++ clients (hello first)",
    ("aios", "tp2a"): "thriftpy2 aio server, coroutine echo, C++ clients",
    ("aios", "grpca"): "grpc.aio server, grpc.aio clients (a channel each; grpc speaks no Thrift)",
}
#: The async clients' server: the native C++ one for the Thrift clients (a few us per call: the client sets the
#: pace); grpc.aio's own, the only one it can talk to.
CLIENT_SERVER = {"ac": "cpp", "tp2ac": "cpp", "grpcac": "grpca"}
#: Whose figures the peers' are divided by in the issue-14 cells: this project's
OURS = {"aioc": "ac", "aios": "pae"}
#: The issue-14 systems' short names, in ratios
SHORT = {"ac": "AsyncClient", "tp2ac": "thriftpy2 aio", "grpcac": "grpc.aio", "pae": "P --asyncio",
         "tp2a": "thriftpy2 aio", "grpca": "grpc.aio"}
#: The systems served by this project's ``serve`` command (their clients say hello first).
SERVED_BY_P = ("p", "pw", "pa", "pae")
CLIENTS = {
    "python": "Python clients, one process per connection (64: 16 processes x 4 threads); ratios to B",
    "native": "Native C++ load generator (built from idl/), a thread per connection; ratios to B driven by the "
              "same generator",
    "aioc": "Async clients, N calls in flight (one process per system, asyncio's own loop, echo 32 B)",
    "aios": "Asyncio servers, N connections of one call in flight each (echo 32 B)",
}


@dataclass(frozen=True)
class Workload:
    key: str
    op: str          # echo | types | lifecycle
    conns: int
    idle: int = 0    # idle sessions held while the clients call


@dataclass
class Settings:
    rounds: int
    seconds: float
    python_systems: List[str]
    native_systems: List[str]
    python_workloads: List[Workload]
    native_workloads: List[Workload]
    idle_systems: List[str]
    name: str
    aioc_systems: List[str] = field(default_factory=list)   # issue 14: async clients (keys of CLIENT_SERVER)
    aios_systems: List[str] = field(default_factory=list)   # issue 14: asyncio servers
    aioc_workloads: List[Workload] = field(default_factory=list)   # conns: calls in flight
    aios_workloads: List[Workload] = field(default_factory=list)

    def systems(self, kind: str) -> List[str]:
        return getattr(self, f"{kind}_systems")

    def workloads(self, kind: str) -> List[Workload]:
        return getattr(self, f"{kind}_workloads")


def settings(args: argparse.Namespace, idle_max: int) -> Settings:
    idle = min(args.idle if args.idle is not None else (200 if args.quick else 10000), idle_max)
    if args.quick:
        loads = [Workload("echo x1", "echo", 1), Workload("types x1", "types", 1), Workload("echo x4", "echo", 4),
                 Workload("lifecycle", "lifecycle", 1)]
        native = loads[:3] + [Workload("echo x16", "echo", 16)] + loads[3:] + [Workload("idle", "echo", 1, idle)]
        aioc = [Workload("x1", "echo", 1), Workload("x16", "echo", 16)]
        aios = [Workload("echo x1", "echo", 1), Workload("echo x16", "echo", 16)]
        rounds, seconds, name = 2, 0.15, "quick"
    else:
        loads = [Workload("echo x1", "echo", 1), Workload("types x1", "types", 1), Workload("echo x4", "echo", 4),
                 Workload("echo x16", "echo", 16), Workload("echo x64", "echo", 64),
                 Workload("lifecycle", "lifecycle", 1)]
        # 256 connections: natively only (a thread per connection in the generator; 256 Python clients would
        # be 16 processes of 16 threads, a cell of its own minutes long)
        native = loads[:5] + [Workload("echo x256", "echo", 256)] + loads[5:] + [Workload("idle", "echo", 1, idle)]
        # issue 14: the async clients at 1, 16 and 100 in flight, the asyncio servers at 1 to 64 connections
        aioc = [Workload(f"x{n}", "echo", n) for n in (1, 16, 100)]
        aios = [Workload(f"echo x{n}", "echo", n) for n in (1, 4, 16, 64)]
        rounds, seconds, name = 5, 0.5, "latest"
    groups = {"python": loads, "native": native, "aioc": aioc, "aios": aios}
    systems = {"python": ["b", "p", "tp2", "grpc"], "native": ["b", "p", "pa", "tp2", "cpp"],
               "aioc": list(CLIENT_SERVER), "aios": ["pae", "tp2a", "grpca"]}
    cells = getattr(args, "cells", None)
    if cells:  # a short run of some cells only (its own file name: the README keeps the full run's table)
        wanted = [cell.strip() for cell in cells.split(",") if cell.strip()]
        known = {f"{kind}:{load.key}" for kind, group in groups.items() for load in group}
        unknown = [cell for cell in wanted if cell not in known and not any(k.endswith(f":{cell}") for k in known)]
        if unknown:
            raise SystemExit(f"--cells: no such cell {', '.join(unknown)}; cells: {', '.join(sorted(known))}")
        groups = {kind: [load for load in group if load.key in wanted or f"{kind}:{load.key}" in wanted]
                  for kind, group in groups.items()}
        systems = {kind: names if groups[kind] else [] for kind, names in systems.items()}
        name = "cells"
    return Settings(rounds=args.rounds or rounds, seconds=args.seconds or seconds,
                    python_systems=systems["python"], native_systems=systems["native"],
                    python_workloads=groups["python"], native_workloads=groups["native"], idle_systems=["b", "p", "pa"],
                    name=args.name or name, aioc_systems=systems["aioc"], aios_systems=systems["aios"],
                    aioc_workloads=groups["aioc"], aios_workloads=groups["aios"])


# -- processes --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _stat(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> List[int]:
    """The process and its descendants (a pre-forking server's workers count as the server)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server (every thread of it and of its child processes), from /proc/PID/stat."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def memory_and_threads(pid: int) -> Tuple[float, int]:
    """(RSS in MiB, thread count) of a server and its child processes, from /proc/PID/status."""
    rss, threads = 0.0, 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) / 1024
                    elif line.startswith("Threads:"):
                        threads += int(line.split()[1])
        except OSError:
            continue
    return rss, threads


def read_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"{what}: no answer within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{what}: the process exited (code {proc.poll()})")
    return line.strip()


def send(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


@dataclass
class Server:
    system: str
    proc: subprocess.Popen
    port: int
    log: Path


def start_server(system: str, programs: Dict[str, Path], workdir: Path, idle: int) -> Server:
    port = free_port()
    if system in SERVED_BY_P:
        cli = shutil.which("thrift-handshake", path=str(Path(sys.executable).parent))
        argv = [cli] if cli else [sys.executable, "-m", "thrift_handshake"]
        argv += ["serve", "--port", str(port)]
        if idle:   # the default max_connections (1024) would refuse most of the idle sessions
            argv += ["--max-connections", str(idle + 256)]
        if system == "pw":
            argv += ["--workers", "auto"]
        if system == "pa":
            argv += ["--asyncio"]
        if system == "pae":  # as the peers' aio servers serve theirs: echo a coroutine, on the loop
            argv += ["--asyncio", "--handler", "bench.coroutine_echo:CoroutineEcho", "--path", str(ROOT)]
    elif system == "cpp":
        argv = [str(programs["bench_server"]), str(port)]
    elif system in ("tp2a", "grpca"):
        argv = [sys.executable, "-m", "bench.servers", {"tp2a": "tp2-aio", "grpca": "grpc-aio"}[system], str(port)]
    else:
        argv = [sys.executable, "-m", "bench.servers", system, str(port)]
    log = workdir / f"server-{system}-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Server(system, proc, port, log)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server {system} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PythonClients:
    """A pool of long-lived Python client processes (bench/pyclient.py)."""

    def __init__(self, count: int) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-m", "bench.pyclient"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(count)]

    def close(self) -> None:
        exit_all(self.procs)


def exit_all(procs: Sequence[subprocess.Popen]) -> None:
    """Asks client processes to exit, and kills those that have not within 5 s."""
    for proc in procs:
        try:
            send(proc, "exit")
        except OSError:
            pass
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- measurements -----------------------------------------------------------------------------------------------

@dataclass
class Sample:
    rate: float           # operations per second (calls, or lifecycles)
    p50: float            # microseconds per operation
    p99: float
    p999: float
    cpu_us: float         # server CPU per operation, microseconds
    rss_mib: float        # server RSS at the end of the window, connections (and idle sessions) still open
    threads: int
    errors: int
    client_cpu_us: float = math.nan   # the client process's CPU per operation (async clients only)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(q * len(values)))]


def measure_native(server: Server, loadgen: Path, load: Workload, seconds: float,
                   kill_server: bool = False) -> Sample:
    """The C++ load generator against one server. ``kill_server``: SIGKILL the server once the window is read,
    before the connections close (the idle workload: thousands of peers leaving at once keep a thread-per-connection
    Python server busy for tens of seconds, which would spill into the next measurements)."""
    hello = "1" if server.system in SERVED_BY_P else "0"
    proc = subprocess.Popen([str(loadgen), str(server.port), load.op, str(load.conns), str(seconds), hello,
                             str(load.idle)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    what = f"native client against {server.system}"
    try:
        if read_line(proc, 120, what) != "ready":
            raise RuntimeError(f"{what}: unexpected output")
        cpu0 = cpu_seconds(server.proc.pid)
        send(proc, "go")
        result = json.loads(read_line(proc, seconds + 60, what))
        cpu1 = cpu_seconds(server.proc.pid)
        rss, threads = memory_and_threads(server.proc.pid)
        if kill_server:
            server.proc.kill()
            server.proc.wait()
        send(proc, "close")
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    calls = result["calls"]
    if calls == 0:
        raise RuntimeError(f"{what}: no call completed ({result['errors']} errors)")
    return Sample(rate=calls / result["seconds"], p50=result["p50_us"], p99=result["p99_us"],
                  p999=result["p999_us"], cpu_us=(cpu1 - cpu0) * 1e6 / calls, rss_mib=rss, threads=threads,
                  errors=result["errors"])


def measure_python(server: Server, clients: PythonClients, load: Workload, seconds: float) -> Sample:
    workers = min(load.conns, len(clients.procs))
    threads = load.conns // workers
    procs = clients.procs[:workers]
    command = json.dumps({"system": server.system, "port": server.port, "op": load.op, "threads": threads,
                          "seconds": seconds})
    what = f"python client against {server.system}"

    def answers(line: str) -> List[dict]:
        for proc in procs:
            send(proc, line)
        got = [json.loads(read_line(proc, seconds + 120, what)) for proc in procs]
        for answer in got:
            if "error" in answer:
                raise RuntimeError(f"{what}: {answer['error']}")
        return got

    try:
        answers(command)
        cpu0 = cpu_seconds(server.proc.pid)
        results = answers("go")
        cpu1 = cpu_seconds(server.proc.pid)
        rss, nthreads = memory_and_threads(server.proc.pid)
    finally:
        answers("close")
    latencies = sorted(x for result in results for x in result["lat"])
    calls = len(latencies)
    if calls == 0:
        raise RuntimeError(f"{what}: no call completed")
    return Sample(rate=calls / seconds, p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99),
                  p999=percentile(latencies, 0.999), cpu_us=(cpu1 - cpu0) * 1e6 / calls, rss_mib=rss,
                  threads=nthreads, errors=sum(result["errors"] for result in results))


# -- progress ---------------------------------------------------------------------------------------------------

class Progress:
    """A bar redrawn in place on a terminal; elsewhere (CI logs) a line every tenth of the way."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total, self.done, self.stream, self.started = total, 0, stream, time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.printed = -1

    def show(self, label: str) -> None:
        if not self.tty:
            tenth = 10 * self.done // max(1, self.total)
            if tenth == self.printed:
                return
            self.printed = tenth
        width = 30
        filled = int(width * self.done / max(1, self.total))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        start, end = ("\r", "") if self.tty else ("", "\n")
        self.stream.write(f"{start}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"{elapsed:4.0f}s eta {eta:3.0f}s  {label:<40.40}{end}")
        self.stream.flush()

    def step(self, label: str) -> None:
        self.done += 1
        self.show(label)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


# -- the run ----------------------------------------------------------------------------------------------------

Samples = Dict[Tuple[str, str, str], List[Optional[Sample]]]   # (client kind, workload, system) -> per round


@dataclass
class Run:
    settings: Settings
    samples: Samples = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    elapsed: float = 0.0
    wall: Dict[str, float] = field(default_factory=dict)   # "client kind / workload" -> seconds spent, all rounds


def plan(cfg: Settings) -> List[Tuple[str, Workload, List[str]]]:
    cells = [("python", load, cfg.python_systems) for load in cfg.python_workloads]
    for load in cfg.native_workloads:
        cells.append(("native", load, cfg.idle_systems if load.idle else cfg.native_systems))
    cells += [(kind, load, cfg.systems(kind)) for kind in ("aioc", "aios") for load in cfg.workloads(kind)]
    return cells


def servers_of(kind: str, systems: Sequence[str]) -> List[str]:
    """The servers a cell's systems call: the systems themselves, but the async clients' servers for those."""
    return [CLIENT_SERVER[system] for system in systems] if kind == "aioc" else list(systems)


def measure_cell(kind: str, load: Workload, system: str, servers: Dict[str, Server], clients: PythonClients,
                 programs: Dict[str, Path], seconds: float, workdir: Path) -> Sample:
    """One system's window in one cell of the Python or native clients."""
    if kind == "python":
        return measure_python(servers[system], clients, load, seconds)
    if load.idle:   # a server of its own, killed after the measurement
        fresh = start_server(system, programs, workdir, load.idle)
        try:
            return measure_native(fresh, programs["bench_loadgen"], load, seconds, kill_server=True)
        finally:
            stop(fresh.proc)
    return measure_native(servers[system], programs["bench_loadgen"], load, seconds)


def run(cfg: Settings, programs: Dict[str, Path]) -> Run:
    from bench.peer_cells import WINDOW, AioClients, measure_interleaved   # it builds on this module

    result = Run(cfg)
    started = time.monotonic()
    cells = plan(cfg)
    total = cfg.rounds * sum(len(systems) for _, _, systems in cells)
    systems = sorted({s for kind, load, systems in cells if not load.idle for s in servers_of(kind, systems)},
                     key=list(SYSTEMS).index)
    progress = Progress(total)
    progress.show("starting servers and clients")
    with tempfile.TemporaryDirectory(prefix="thrift-handshake-bench-") as tmp:
        servers: Dict[str, Server] = {}
        clients = PythonClients(min(16, max((load.conns for load in cfg.python_workloads), default=0)))
        aio = AioClients(cfg.aioc_systems + (["grpca"] if "grpca" in cfg.aios_systems else []))
        try:
            for system in systems:
                servers[system] = start_server(system, programs, Path(tmp), 0)
            warm = Workload("warm-up", "echo", 1)
            for system in cfg.python_systems:
                measure_python(servers[system], clients, warm, 0.1)
            for system in cfg.native_systems:
                if system in servers:   # --cells idle alone: every server is started fresh by its cell
                    measure_native(servers[system], programs["bench_loadgen"], warm, 0.1)
            for kind in ("aioc", "aios"):   # every process's first calls (imports, caches) out of round 1
                if cfg.systems(kind):
                    measure_interleaved(kind, Workload("warm-up", "echo", 16), cfg.systems(kind), servers, aio,
                                        programs["bench_loadgen"], 0.1, slices=1)
            for round_index in range(cfg.rounds):
                for kind, load, cell_systems in cells:
                    shift = round_index % len(cell_systems)
                    label = f"round {round_index + 1}/{cfg.rounds} {kind} {load.key}"
                    cell_started = time.monotonic()
                    if kind in ("aioc", "aios"):   # the systems' windows interleaved (issue 14's peers)
                        progress.show(f"{label} (interleaved)")
                        samples = measure_interleaved(kind, load, cell_systems[shift:] + cell_systems[:shift],
                                                      servers, aio, programs["bench_loadgen"], cfg.seconds * WINDOW)
                    else:
                        samples = {}
                        for system in cell_systems[shift:] + cell_systems[:shift]:
                            progress.show(f"{label} {system}")
                            samples[system] = measure_cell(kind, load, system, servers, clients, programs,
                                                           cfg.seconds, Path(tmp))
                            progress.step(f"{label} {system}")
                    for system, sample in samples.items():
                        if sample.errors:
                            result.notes.append(f"round {round_index + 1}, {kind} {load.key}, {system}: "
                                                f"{sample.errors} failed calls")
                        result.samples.setdefault((kind, load.key, system), []).append(sample)
                    if kind in ("aioc", "aios"):
                        for system in samples:
                            progress.step(f"{label} {system}")
                    wall_key = f"{kind} / {load.key}"
                    result.wall[wall_key] = result.wall.get(wall_key, 0.0) + time.monotonic() - cell_started
        finally:
            progress.finish()
            clients.close()
            aio.close()
            for server in servers.values():
                stop(server.proc)
    result.elapsed = time.monotonic() - started
    return result


def detect_workers() -> bool:
    """Whether this project's server has `serve --workers` yet (then it is benchmarked too)."""
    cli = shutil.which("thrift-handshake", path=str(Path(sys.executable).parent))
    argv = [cli] if cli else [sys.executable, "-m", "thrift_handshake"]
    try:
        done = subprocess.run(argv + ["serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--workers" in done.stdout
