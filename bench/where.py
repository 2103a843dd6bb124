"""Where a server's time goes per call: ``python -m bench.where [--seconds 2] [--conns 4,16] [--strace]``,
and per connection lifecycle: ``python -m bench.where --lifecycle``.

Drives B, P and the C++ server with the native load generator (echo 32 B; P gets hello first) and reads, for the
server process and around the timed window only: user and system CPU per call (/proc/PID/stat), voluntary and
involuntary context switches per call (summed over /proc/PID/task/*/status) and, with --strace, system calls per
call by name (strace -c -f attached for the window; strace slows the server, so only its counts are used).
Prints a markdown table; docs/performance.md quotes it.

--lifecycle: open (+hello) + echo (+goodbye) + close from the C++ client, 5 interleaved rounds, against B and
against P as served by default, with --log-level WARNING, and with --no-hello (the same three messages as B);
the differences split P's server CPU per lifecycle into logging, the session messages and the rest.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

from bench import harness, native_build


def cpu_split(pid: int):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / harness.TICK, int(fields[12]) / harness.TICK


def switches(pid: int):
    voluntary = involuntary = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except OSError:   # a thread that ended meanwhile
            pass
    return voluntary, involuntary


def run_once(server: harness.Server, loadgen: Path, conns: int, seconds: float, trace: bool) -> Dict[str, object]:
    hello = "1" if server.system == "p" else "0"
    proc = subprocess.Popen([str(loadgen), str(server.port), "echo", str(conns), str(seconds), hello, "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tracer: Optional[subprocess.Popen] = None
    out = tempfile.NamedTemporaryFile(suffix=".strace", delete=False)
    try:
        assert harness.read_line(proc, 60, "loadgen") == "ready"
        if trace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out.name, "-p", str(server.proc.pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)   # attached to every thread
        user0, sys0 = cpu_split(server.proc.pid)
        vol0, inv0 = switches(server.proc.pid)
        harness.send(proc, "go")
        result = __import__("json").loads(harness.read_line(proc, seconds + 60, "loadgen"))
        user1, sys1 = cpu_split(server.proc.pid)
        vol1, inv1 = switches(server.proc.pid)
        if tracer:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        harness.send(proc, "close")
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    calls = result["calls"]
    row = {"calls/s": calls / result["seconds"], "user us/call": (user1 - user0) * 1e6 / calls,
           "sys us/call": (sys1 - sys0) * 1e6 / calls, "voluntary cs/call": (vol1 - vol0) / calls,
           "involuntary cs/call": (inv1 - inv0) / calls}
    if trace:
        syscalls = {}
        for line in Path(out.name).read_text().splitlines():
            match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if match and match.group(2) != "total":
                syscalls[match.group(2)] = int(match.group(1))
        # strace slows the server: per call counts come from the calls made while it was attached
        row["syscalls/call"] = ", ".join(f"{name} {count / calls:.2f}" for name, count in
                                         sorted(syscalls.items(), key=lambda kv: -kv[1]) if count / calls >= 0.05)
    os.unlink(out.name)
    return row


def lifecycle(seconds: float, rounds: int = 5) -> None:
    import statistics
    programs = native_build.build()
    cli = [sys.executable, "-m", "thrift_handshake", "serve"]
    variants = {"B": None, "P (default: INFO log, hello + goodbye)": [],
                "P --log-level WARNING": ["--log-level", "WARNING"],
                "P --log-level WARNING --no-hello (open + echo + close, as B)": ["--log-level", "WARNING", "--no-hello"]}
    servers: Dict[str, harness.Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, extra in variants.items():
                if extra is None:
                    servers[name] = harness.start_server("b", programs, Path(tmp), 0)
                    continue
                port = harness.free_port()
                proc = subprocess.Popen(cli + ["--port", str(port)] + extra, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                for _ in range(400):
                    try:
                        __import__("socket").create_connection(("127.0.0.1", port), 1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                servers[name] = harness.Server("b" if "--no-hello" in extra else "p", proc, port, Path(tmp))
            samples: Dict[str, list] = {name: [] for name in servers}
            for _ in range(rounds):
                for name, server in servers.items():
                    samples[name].append(harness.measure_native(server, programs["bench_loadgen"],
                                                                harness.Workload("lifecycle", "lifecycle", 1),
                                                                seconds))
        finally:
            for server in servers.values():
                harness.stop(server.proc)
    print("| server | lifecycles/s | server CPU us per lifecycle |")
    print("|---|---|---|")
    for name, got in samples.items():
        print(f"| {name} | {statistics.median(s.rate for s in got):.0f} | "
              f"{statistics.median(s.cpu_us for s in got):.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--conns", default="1,4,16")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--lifecycle", action="store_true")
    args = parser.parse_args()
    harness.raise_fd_limit()
    if args.lifecycle:
        lifecycle(min(args.seconds, 0.5))
        return 0
    programs = native_build.build()
    with tempfile.TemporaryDirectory() as tmp:
        servers = {s: harness.start_server(s, programs, Path(tmp), 0) for s in ("b", "p", "cpp")}
        try:
            rows = []
            for conns in [int(c) for c in args.conns.split(",")]:
                for system, server in servers.items():
                    harness.measure_native(server, programs["bench_loadgen"], harness.Workload("w", "echo", 1), 0.2)
                    rows.append((conns, system, run_once(server, programs["bench_loadgen"], conns, args.seconds,
                                                         args.strace)))
        finally:
            for server in servers.values():
                harness.stop(server.proc)
    keys = list(rows[0][2])
    print("| connections | server | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for conns, system, row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) and v < 100 else (f"{v:.0f}" if isinstance(v, float) else v)
                 for v in row.values()]
        print(f"| {conns} | {system} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
