"""Side-by-side benchmark: this project's server and its peers on loopback, every figure a ratio to bare Apache Thrift
(B) in the same round. Run it with scripts/bench, which installs what it needs first; see docs/performance.md."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from bench import harness, native_build, report


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    import subprocess
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=harness.ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return (f"{os.cpu_count()} cores {model}, Linux {platform.release()}, Python {platform.python_version()}"
            + (f", commit {commit}" if commit else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 short rounds, fewer workloads (CI smoke test)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; --quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 0.5; --quick 0.15)")
    parser.add_argument("--idle", type=int, help="idle sessions held in the idle workload (default 10000; --quick 200)")
    parser.add_argument("--out", type=Path, default=harness.RESULTS, help="directory for the table and chart")
    parser.add_argument("--name", help="file name of the results (default latest; --quick quick; --cells cells)")
    parser.add_argument("--cells", help="only these cells, comma-separated, each KIND:WORKLOAD or WORKLOAD for every "
                                        "kind that has it (kinds: python, native, aioc: the async clients, aios: the "
                                        "asyncio servers; e.g. 'native:echo x64,aioc:x16,aios:echo x64'); the README "
                                        "is left alone")
    args = parser.parse_args(argv)
    idle_max = harness.raise_fd_limit() - 512
    cfg = harness.settings(args, idle_max)
    print("building the native programs (cached in ~/.cache/thrift-handshake-bench)", file=sys.stderr)
    programs = native_build.build()
    if cfg.native_systems and harness.detect_workers():
        cfg.native_systems.append("pw")
    run = harness.run(cfg, programs)
    text, md, png = report.write(run, machine(), args.out)
    if cfg.name == "latest" and not args.cells and args.out.resolve() == harness.RESULTS.resolve():
        readme = harness.RESULTS.parents[1] / "README.md"
        if report.update_readme(readme, report.readme_block(run, machine())):
            print(f"updated the table in {readme}", file=sys.stderr)
    print(text)
    print(f"written: {md}, {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
