"""Builds the native programs from idl/ at bench time: a C++ Thrift server (the native reference) and a C++ load
generator. Code is generated with ``thrift -r --gen cpp``, compiled with g++ under ``nice`` and cached in
~/.cache/thrift-handshake-bench/native-<hash of the IDL, the sources and the toolchain>/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

from bench.payloads import IDL, cache_dir, digest

SOURCES = Path(__file__).resolve().parent / "native"
PROGRAMS = {"bench_server": "server.cpp", "bench_loadgen": "loadgen.cpp"}


class BuildError(RuntimeError):
    pass


def _run(argv: List[str], cwd: Path) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError as error:
        raise BuildError(f"{argv[0]} not found: install thrift-compiler libthrift-dev libboost-dev g++ "
                         "(scripts/bench does so as root)") from error
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}")
    return done.stdout


def _toolchain() -> bytes:
    parts = []
    for argv in (["g++", "--version"], ["thrift", "--version"], ["pkg-config", "--modversion", "thrift"]):
        try:
            parts.append(subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout)
        except FileNotFoundError:
            raise BuildError(f"{argv[0]} not found: install thrift-compiler libthrift-dev libboost-dev pkg-config "
                             "g++ (scripts/bench does so as root)") from None
    return b"".join(parts)


def build() -> Dict[str, Path]:
    """Paths of the built programs, building them unless a build of the same sources is cached."""
    inputs = [path.read_bytes() for path in sorted(IDL.parent.glob("*.thrift"))]
    inputs += [path.read_bytes() for path in sorted(SOURCES.iterdir()) if path.suffix in (".cpp", ".h")]
    out = cache_dir() / f"native-{digest(*inputs, _toolchain())}"
    programs = {name: out / name for name in PROGRAMS}
    if all(path.exists() for path in programs.values()):
        return programs
    work = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "gen").mkdir(parents=True)
    _run(["thrift", "-r", "--gen", "cpp", "-out", str(work / "gen"), str(IDL)], work)
    flags = _run(["pkg-config", "--cflags", "--libs", "thrift"], work).split()
    cflags = [f for f in flags if not f.startswith("-l")]
    libs = [f for f in flags if f.startswith("-l")] or ["-lthrift"]
    units = [p for p in sorted((work / "gen").glob("*.cpp")) if "skeleton" not in p.name]
    units += [SOURCES / source for source in PROGRAMS.values()]
    compile_cmd = ["nice", "-n", "10", "g++", "-std=c++17", "-O2", "-I", str(work / "gen"), "-I", str(SOURCES),
                   *cflags, "-c"]
    objects, running, failures = [], [], []
    jobs = max(1, min(2, os.cpu_count() or 1))
    for unit in units:
        obj = work / (unit.stem + ".o")
        objects.append(obj)
        running.append((unit, subprocess.Popen([*compile_cmd, str(unit), "-o", str(obj)], stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)))
        while len(running) >= jobs or (unit is units[-1] and running):
            source, proc = running.pop(0)
            output = proc.communicate()[0]
            if proc.returncode != 0:
                failures.append(f"{source.name}:\n{output[-3000:]}")
    if failures:
        raise BuildError("compiling the native programs failed:\n" + "\n".join(failures))
    shared = [obj for obj in objects if obj.stem not in ("server", "loadgen")]
    for name, source in PROGRAMS.items():
        _run(["nice", "-n", "10", "g++", "-o", str(work / name), *map(str, shared),
              str(work / (Path(source).stem + ".o")), *libs, "-pthread"], work)
    try:
        os.rename(work, out)
    except OSError:  # a concurrent build got there first
        shutil.rmtree(work, ignore_errors=True)
    # Keep the three most recent builds (other checkouts may use older sources).
    builds = sorted((p for p in out.parent.glob("native-*") if p.is_dir() and ".tmp" not in p.name),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[3:]:
        shutil.rmtree(old, ignore_errors=True)
    return programs


if __name__ == "__main__":
    for program in build().values():
        print(program)
