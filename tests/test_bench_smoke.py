"""The benchmark harness (scripts/bench) works end to end: a smoke test of the harness, not of speed.

`scripts/bench --quick` installs what it needs (the bench extras; as root the native toolchain), builds the C++
programs, runs every system on loopback and stops by itself. Its table must have every system's row with finite
ratios to B. No figure is compared with a speed: the machines are shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.harness import ROW, Run, Sample, Settings, Workload  # noqa: E402

RATIO = re.compile(r"^(\d+\.\d+)x \((\d+\.\d+)-(\d+\.\d+)\)")
# Cold (fresh machine: pip extras, apt packages, the C++ build) it takes about two minutes; warm well under one.
TIMEOUT = 900


def _rows(markdown: str, section: str) -> dict:
    """First table under the heading that starts with ``section``: {row label: [cells]}."""
    part = markdown.split("\n## " + section, 1)[1].split("\n## ", 1)[0]
    rows, started = {}, False
    for line in part.splitlines():
        if line.startswith("| system"):
            started = True
        elif started and line.startswith("|---"):
            continue
        elif started and line.startswith("| "):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif started:
            break
    return rows


def _finite_ratio(cell: str) -> bool:
    match = RATIO.match(cell)
    return bool(match) and all(math.isfinite(float(x)) and float(x) > 0 for x in match.groups())


def test_quick_run_reports_every_system(tmp_path: Path) -> None:
    # A session of its own, so that a hung run takes its servers and clients down with it.
    bench = subprocess.Popen([str(ROOT / "scripts" / "bench"), "--quick", "--out", str(tmp_path)], cwd=ROOT,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        stdout, stderr = bench.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        stdout, stderr = bench.communicate()
        pytest.fail(f"scripts/bench --quick did not stop by itself within {TIMEOUT} s:\n{stderr[-5000:]}")
    assert bench.returncode == 0, stderr[-5000:]
    markdown = (tmp_path / "quick.md").read_text(encoding="utf-8")
    assert stdout.strip() in markdown           # the printed table is the one written
    assert (tmp_path / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    settings = json.loads((tmp_path / "quick.json").read_text())["settings"]
    for kind, section in (("python", "Python clients"), ("native", "Native C++")):
        rows = _rows(markdown, section)
        for system in settings[f"{kind}_systems"]:
            cells = rows[ROW[(kind, system)]]
            assert cells and all(cell != "-" for cell in cells), (kind, system, cells)
            if system == "b":
                assert all(cell.endswith("/s") for cell in cells), cells
            else:
                assert all(_finite_ratio(cell) for cell in cells), (kind, system, cells)
    assert "Issue 8 targets" in markdown
    assert "failed calls" not in markdown, markdown


def _issue14_rows(markdown: str, section: str) -> dict:
    """The issue-14 table under ``## Issue 14: SECTION``: {row label: [cells]}."""
    part = markdown.split("\n## Issue 14: " + section, 1)[1].split("\n## ", 1)[0]
    return {cells[0]: cells[1:] for cells in ([cell.strip() for cell in line.strip("|").split("|")]
                                              for line in part.splitlines() if line.startswith("| ")
                                              and not line.startswith("| system"))}


def test_the_issue14_cells_alone_put_ours_beside_thriftpy2_aio_and_grpc_aio(tmp_path: Path) -> None:
    """``--cells`` of the async clients and the asyncio servers only (no native cell: the run used to stop on
    ``serve --workers``' system, never started then): every system's calls/s and CPU per call, ours / each
    peer's, and one target row per cell."""
    done = subprocess.run([sys.executable, "-m", "bench", "--cells", "aioc:x16,aios:echo x4", "--rounds", "1",
                           "--seconds", "0.1", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-5000:]
    markdown = (tmp_path / "cells.md").read_text(encoding="utf-8")
    clients, servers = _issue14_rows(markdown, "Async clients"), _issue14_rows(markdown, "Asyncio servers")
    for rows, systems, ours in ((clients, ("ac", "tp2ac", "grpcac"), "AsyncClient"),
                                (servers, ("pae", "tp2a", "grpca"), "P --asyncio")):
        for system in systems:
            (rate,) = rows[f"{ROW[('aioc' if rows is clients else 'aios', system)]}: calls/s"]
            assert re.match(r"^\d+(\.\d)?k?/s \(", rate), (system, rate)
        for peer in ("thriftpy2 aio", "grpc.aio"):
            for metric in ("calls/s", "client CPU/call" if rows is clients else "server CPU/call"):
                (ratio,) = [cells for label, cells in rows.items() if label.startswith(f"{ours} / {peer}, {metric}")][0]
                assert _finite_ratio(ratio), (peer, metric, ratio)
    targets = [line for line in markdown.splitlines() if "calls/s / each peer's" in line]
    assert len(targets) == 2 and all("thriftpy2 aio" in line and "grpc.aio" in line for line in targets), targets


def test_the_thriftpy2_server_keeps_a_connection_idle_past_its_default_client_timeout() -> None:
    """thriftpy2's threaded server closes a connection idle 3 s unless told otherwise: a Python client process
    waiting that long for its "go" on a loaded machine then failed its calls ("failed calls" in the table)."""
    from thriftpy2.rpc import make_client

    from bench.harness import free_port
    from bench.payloads import load_thriftpy2

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.servers", "tp2", str(port)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("listening")
        client = make_client(load_thriftpy2().HandshakeService, "127.0.0.1", port, timeout=None)
        try:
            assert client.echo("first") == "first"
            time.sleep(3.5)  # the idle time itself (past thriftpy2's default 3000 ms), not a wait for an event
            assert client.echo("after idling") == "after idling"
        finally:
            client.close()
    finally:
        server.terminate()
        server.wait(30)


def _sample(rate: float, p99: float = 100.0) -> Sample:
    return Sample(rate=rate, p50=50.0, p99=p99, p999=200.0, cpu_us=20.0, rss_mib=20.0, threads=5, errors=0)


def test_ratios_are_taken_round_by_round() -> None:
    load = Workload("echo x1", "echo", 1)
    cfg = Settings(rounds=3, seconds=0.1, python_systems=["b", "p"], native_systems=["b", "p"],
                   python_workloads=[load], native_workloads=[load], idle_systems=["b", "p"], name="t")
    run = Run(cfg)
    # B swings with the machine from round to round; P is 0.9x of B in every round.
    run.samples[("python", "echo x1", "b")] = [_sample(1000), _sample(2000), _sample(500)]
    run.samples[("python", "echo x1", "p")] = [_sample(900), _sample(1800), _sample(450)]
    median, low, high = report.ratio_cell(run, "python", "echo x1", "p", "rate")
    assert median == pytest.approx(0.9) and low == pytest.approx(0.9) and high == pytest.approx(0.9)
    assert report.fmt_ratio((0.9, 0.9, 0.9)) == "0.90x (0.90-0.90)"
    assert report.ratio_cell(run, "native", "echo x1", "p", "rate") is None   # not measured: no figure


def test_the_gate_call_cost_bench_runs_and_prints_both_figures() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.gate_call_cost", "--rounds", "1", "--calls", "200"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.match(r"gate CPU per 32-byte unframed echo, in-process: budget on \d+\.\d+ us, off \d+\.\d+ us",
                    done.stdout), done.stdout


def test_the_lifecycle_cost_bench_counts_and_times_both_ends() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.lifecycle_cost", "--rounds", "1", "--lifecycles", "20",
                           "--options", "both", "--no-bare"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:] if "/" in line and "x (" not in line}
    assert set(rows) == {"this", "this-default"}, done.stdout
    for name, cells in rows.items():  # client calls Py/C, server calls Py/C, then the CPU and rate medians
        client_python, server_python = (float(cell.split("/")[0]) for cell in cells[:2])
        assert client_python > 0 and server_python > 0, (name, done.stdout)
    assert "this/this-default rate:" in done.stdout

def test_cells_pick_a_short_run_of_some_workloads_only() -> None:
    import argparse

    from bench import harness

    args = argparse.Namespace(quick=False, rounds=None, seconds=None, idle=None, name=None,
                              cells="native:echo x64,echo x256")
    cfg = harness.settings(args, idle_max=20000)
    assert [load.key for load in cfg.native_workloads] == ["echo x64", "echo x256"]
    assert cfg.python_workloads == [] and cfg.python_systems == []
    assert cfg.native_systems == ["b", "p", "pa", "tp2", "cpp"]
    assert cfg.name == "cells", "a partial run must not overwrite the full run's results"
    args.cells = "native:echo x65"
    with pytest.raises(SystemExit, match=r"--cells: no such cell native:echo x65; cells: .*native:echo x256"):
        harness.settings(args, idle_max=20000)
