"""The asyncio benches print their peers' rows in the same run (issue 14): thriftpy2's aio client and
grpc.aio beside the AsyncClient (`python -m bench.aio_client`), thriftpy2's aio server beside ours
(bench/aio_server.py). A smoke test of the benches, not of speed: every row has a positive figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600


def _bench_extra() -> None:
    """The peers come with the bench extra (as scripts/bench installs it); quick when present."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], check=True,
                   timeout=TIMEOUT, capture_output=True)


def _positive(output: str, label: str, before: int = 0) -> int:
    """How many rows start with ``label`` and carry a positive calls/s after ``before`` other numbers."""
    pattern = r"^" + re.escape(label) + r"\s+" + r"\d+\s+" * before + r"(\d+)\s"
    return sum(int(m.group(1)) > 0 for m in re.finditer(pattern, output, re.MULTILINE))


def test_the_async_client_bench_prints_thriftpy2_and_grpc_aio_beside_it() -> None:
    _bench_extra()
    done = subprocess.run([sys.executable, "-m", "bench.aio_client", "--seconds", "0.05", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("threaded, sequential", "async, 16 in flight", "thriftpy2 aio, 16 conns", "grpc.aio, 16 in flight"):
        assert _positive(done.stdout, label) == 2, (label, done.stdout)  # loopback and through the relay


def test_the_asyncio_server_bench_prints_thriftpy2s_aio_server_beside_it() -> None:
    _bench_extra()
    done = subprocess.run([sys.executable, "-m", "bench.aio_server", "--rounds", "1", "--seconds", "0.2",
                           "--connections", "4"], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("threaded", "asyncio+async-echo", "thriftpy2-aio"):
        assert _positive(done.stdout, label, before=1) == 1, (label, done.stdout)  # after the connections


def test_the_async_client_bench_puts_another_tree_both_loops_and_the_bare_ceiling_side_by_side() -> None:
    """``--tree`` (here this tree again, as "other"), ``--loop both`` and ``--bare``: every row set in the
    same rounds, each with the ratio CPU allows; no peers needed."""
    done = subprocess.run([sys.executable, "-m", "bench.aio_client", "--seconds", "0.05", "--rounds", "1",
                           "--no-peers", "--no-relay", "--bare", "--loop", "both", "--tree", f"other={ROOT}",
                           "--count-calls"], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    for tree in ("this", "other"):
        assert re.search(rf"^AsyncClient {tree}, Python function calls per call .* 16 in flight \d+", done.stdout,
                         re.MULTILINE), done.stdout
        for loop in ("asyncio", "uvloop"):
            assert _positive(done.stdout, f"async {tree} ({loop}), 16 in flight") == 1, done.stdout
            assert f"async {tree} ({loop}): 16 in flight / sequential that CPU allows" in done.stdout
    for loop in ("asyncio", "uvloop"):
        assert _positive(done.stdout, f"bare ({loop}), 16 in flight") == 1, done.stdout
    assert "thriftpy2" not in done.stdout and "relay" not in done.stdout
