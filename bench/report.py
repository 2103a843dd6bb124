"""Turns a run into ratios to B (same round, median [min-max] of the rounds), markdown tables and a chart."""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.harness import CLIENTS, OURS, ROW, SHORT, Run

Cell = Tuple[float, float, float]   # median, min, max


def ratios(run: Run, kind: str, load: str, system: str, metric: str, base: str = "b") -> List[float]:
    """system / base for one metric, round by round."""
    mine, ref = run.samples.get((kind, load, system)), run.samples.get((kind, load, base))
    if not mine or not ref:
        return []
    return [getattr(a, metric) / getattr(b, metric) for a, b in zip(mine, ref)
            if getattr(b, metric) and getattr(b, metric) > 0]


def summary(values: List[float]) -> Optional[Cell]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def ratio_cell(run: Run, kind: str, load: str, system: str, metric: str) -> Optional[Cell]:
    return summary(ratios(run, kind, load, system, metric))


def absolute(run: Run, kind: str, load: str, system: str, metric: str) -> Optional[float]:
    samples = run.samples.get((kind, load, system))
    return statistics.median(getattr(s, metric) for s in samples) if samples else None


def fmt_ratio(cell: Optional[Cell]) -> str:
    if cell is None:
        return "-"
    median, low, high = cell
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def fmt_abs(value: Optional[float], metric: str) -> str:
    if value is None:
        return "-"
    if metric == "rate":
        return f"{value / 1000:.1f}k/s" if value >= 1000 else f"{value:.0f}/s"
    if metric in ("p50", "p99", "p999", "cpu_us"):
        return f"{value:.0f} us"
    if metric == "rss_mib":
        return f"{value:.0f} MiB"
    return f"{value:.0f}"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _systems(run: Run, kind: str) -> List[str]:
    return run.settings.systems(kind)


def _loads(run: Run, kind: str, idle: bool = False):
    return [load for load in run.settings.workloads(kind) if bool(load.idle) == idle]


def throughput_table(run: Run, kind: str) -> List[str]:
    loads = _loads(run, kind)
    header = ["system"] + [f"{load.key} {'lifecycles' if load.op == 'lifecycle' else 'calls'}/s" for load in loads]
    rows = []
    for system in _systems(run, kind):
        row = [ROW[(kind, system)]]
        for load in loads:
            if system == "b":
                row.append(fmt_abs(absolute(run, kind, load.key, system, "rate"), "rate"))
            else:
                row.append(fmt_ratio(ratio_cell(run, kind, load.key, system, "rate")))
        rows.append(row)
    return _table(header, rows)


def cost_table(run: Run, kind: str) -> List[str]:
    loads = {load.key: load for load in _loads(run, kind)}
    biggest = max((load for load in loads.values() if load.op == "echo"), key=lambda load: load.conns, default=None)
    if biggest is None:  # a run of some cells only (--cells) without this kind's echo
        return []
    columns = [("echo x1", "p50", "p50 echo x1"), ("echo x1", "p99", "p99 echo x1"),
               ("echo x1", "p999", "p99.9 echo x1")]
    columns += [(key, "cpu_us", f"server CPU/call {key}") for key in ("echo x1", "types x1", "echo x4", "echo x16")
                if key in loads]
    columns += [("lifecycle", "cpu_us", "server CPU/lifecycle")] if "lifecycle" in loads else []
    columns += [(biggest.key, "rss_mib", f"server RSS {biggest.key}"), (biggest.key, "threads",
                                                                        f"server threads {biggest.key}")]
    rows = []
    for system in _systems(run, kind):
        row = [ROW[(kind, system)]]
        for key, metric, _ in columns:
            if system == "b":
                row.append(fmt_abs(absolute(run, kind, key, system, metric), metric))
            else:
                row.append(fmt_ratio(ratio_cell(run, kind, key, system, metric)))
        rows.append(row)
    return _table(["system"] + [title for _, _, title in columns], rows)


def fmt_spread(run: Run, kind: str, load: str, system: str, metric: str) -> str:
    """A system's own median of the rounds, with min-max."""
    samples = run.samples.get((kind, load, system))
    if not samples:
        return "-"
    values = [getattr(sample, metric) for sample in samples]
    return (f"{fmt_abs(statistics.median(values), metric)} ({fmt_abs(min(values), metric).split()[0].removesuffix('/s')}"
            f"-{fmt_abs(max(values), metric)})")


def ours_to_peer(run: Run, kind: str, load: str, peer: str, metric: str) -> Optional[Cell]:
    """This project's figure / the peer's, round by round (median, min-max)."""
    return summary(ratios(run, kind, load, OURS[kind], metric, base=peer))


def peers_table(run: Run, kind: str) -> List[str]:
    """Issue 14's cells: each system's calls/s and CPU per call, and ours / each peer's in the same round."""
    loads, systems, ours = _loads(run, kind), _systems(run, kind), OURS[kind]
    cpu = "client_cpu_us" if kind == "aioc" else "cpu_us"
    cpu_name = "client CPU/call" if kind == "aioc" else "server CPU/call"
    column = (lambda load: f"{load.conns} in flight") if kind == "aioc" else (lambda load: f"{load.conns} conns")
    rows = [[f"{ROW[(kind, system)]}: calls/s"] + [fmt_spread(run, kind, load.key, system, "rate") for load in loads]
            for system in systems]
    rows += [[f"{SHORT[ours]} / {SHORT[peer]}, calls/s (higher: ours ahead)"] +
             [fmt_ratio(ours_to_peer(run, kind, load.key, peer, "rate")) for load in loads]
             for peer in systems if peer != ours]
    rows += [[f"{SHORT[system]}: {cpu_name}"] + [fmt_spread(run, kind, load.key, system, cpu) for load in loads]
             for system in systems]
    rows += [[f"{SHORT[ours]} / {SHORT[peer]}, {cpu_name} (lower: ours ahead)"] +
             [fmt_ratio(ours_to_peer(run, kind, load.key, peer, cpu)) for load in loads]
             for peer in systems if peer != ours]
    return _table(["system"] + [column(load) for load in loads], rows)


def peer_targets(run: Run) -> List[Tuple[str, str, str, str]]:
    """Issue 14: ahead of thriftpy2 aio and grpc.aio in every cell (calls/s, ours / the peer's, same round)."""
    out = []
    for kind, what in (("aioc", "{n} in flight"), ("aios", "{n} connections")):
        ours = OURS[kind]
        peers = [peer for peer in _systems(run, kind) if peer != ours]
        for load in _loads(run, kind):
            cells = [(peer, ours_to_peer(run, kind, load.key, peer, "rate")) for peer in peers]
            behind = [SHORT[peer] for peer, cell in cells if cell is not None and cell[0] < 1.0]
            measured = "; ".join(f"/ {SHORT[peer]} {fmt_ratio(cell)}" for peer, cell in cells)
            met = "not measured" if any(cell is None for _, cell in cells) else \
                ("no (" + ", ".join(behind) + ")" if behind else "yes")
            out.append((f"{SHORT[ours]}, {what.format(n=load.conns)}: calls/s / each peer's", measured,
                        ">= 1.0x each", met))
    pipelined, sequential = run.samples.get(("aioc", "x16", "ac")), run.samples.get(("aioc", "x1", "ac"))
    if pipelined and sequential:  # its own rate with 16 in flight / one in flight, round by round
        cell = summary([many.rate / one.rate for many, one in zip(pipelined, sequential) if one.rate > 0])
        out.append((f"{SHORT['ac']}, 16 in flight / 1 in flight: calls/s (C++ server, same round)", fmt_ratio(cell),
                    ">= 5.0x", _met(cell, 5.0, True)))
    return out


def idle_p99_vs_alone(run: Run, system: str, idle_key: str) -> Optional[Cell]:
    """The good client's p99 with the idle sessions held / its p99 alone (echo x1), same system, same round."""
    held, alone = run.samples.get(("native", idle_key, system)), run.samples.get(("native", "echo x1", system))
    if not held or not alone:
        return None
    return summary([a.p99 / b.p99 for a, b in zip(held, alone) if b.p99 > 0])


def idle_table(run: Run) -> List[str]:
    lines = []
    for load in _loads(run, "native", idle=True):
        header = ["system", f"server RSS, {load.idle} idle sessions", "server threads",
                  "good client's p99 (1 connection)", "its p99 / p99 without idle sessions (same system)"]
        rows = []
        for system in run.settings.idle_systems:
            row = [ROW[("native", system)]]
            for metric in ("rss_mib", "threads", "p99"):
                if system == "b":
                    row.append(fmt_abs(absolute(run, "native", load.key, system, metric), metric))
                else:
                    row.append(fmt_ratio(ratio_cell(run, "native", load.key, system, metric)) + " = " +
                               fmt_abs(absolute(run, "native", load.key, system, metric), metric))
            row.append(fmt_ratio(idle_p99_vs_alone(run, system, load.key)))
            rows.append(row)
        lines += _table(header, rows)
    return lines


def _met(cell: Optional[Cell], target: float, higher: bool, every: bool = False) -> str:
    if cell is None:
        return "not measured"
    value = cell[1] if (every and higher) else cell[0]
    ok = value >= target if higher else value <= target
    return "yes" if ok else "no"


def targets(run: Run) -> List[Tuple[str, str, str, str]]:
    """Issue 8's targets, and issue 14's for the asyncio server: (target, measured, wanted, met)."""
    out = []

    def add(name: str, cell: Optional[Cell], wanted: str, target: float, higher: bool, every: bool = False):
        out.append((name, fmt_ratio(cell), wanted, _met(cell, target, higher, every)))

    for conns in (4, 16):
        key = f"echo x{conns}"
        add(f"echo 32 B, C++ clients hello then echo, {conns} connections: P/B calls/s",
            ratio_cell(run, "native", key, "p", "rate"), ">= 1.0x", 1.0, True)
        add(f"same, {conns} connections: server CPU per call P/B", ratio_cell(run, "native", key, "p", "cpu_us"),
            "<= 1.1x", 1.1, False)
    for conns in (64, 256):  # past max_threads (60): no cliff
        add(f"echo 32 B, C++ clients hello then echo, {conns} connections: P/B calls/s",
            ratio_cell(run, "native", f"echo x{conns}", "p", "rate"), ">= 1.0x", 1.0, True)
    add("echo, open connection, Python client: P/B calls/s (min is the worst round)",
        ratio_cell(run, "python", "echo x1", "p", "rate"), ">= 0.95x every round", 0.95, True, every=True)
    add("lifecycle, Python client: P open+hello+echo+goodbye+close / B open+echo+close",
        ratio_cell(run, "python", "lifecycle", "p", "rate"), ">= 1.0x", 1.0, True)
    workers = ratio_cell(run, "native", "echo x16", "pw", "rate")
    if workers is None:
        out.append(("`serve --workers N`, 16 C++ connections: P/B calls/s", "does not exist yet", ">= 2.5x", "no"))
    else:
        add("`serve --workers auto`, 16 C++ connections: P/B calls/s", workers, ">= 2.5x", 2.5, True)
    if "pa" in _systems(run, "native"):  # issue 14: the asyncio server
        add("`serve --asyncio`, 64 C++ connections: P/B calls/s", ratio_cell(run, "native", "echo x64", "pa", "rate"),
            ">= 1.0x", 1.0, True)
        add("same, `--asyncio` at 64 connections: server CPU per call P/B",
            ratio_cell(run, "native", "echo x64", "pa", "cpu_us"), "<= 1.0x", 1.0, False)
        for load in _loads(run, "native", idle=True):
            add(f"{load.idle} idle sessions: `--asyncio` server RSS / the threaded server's (same round)",
                summary(ratios(run, "native", load.key, "pa", "rss_mib", base="p")), "<= 1.0x", 1.0, False)
    for load in _loads(run, "native", idle=True):
        threads = absolute(run, "native", load.key, "p", "threads")
        rss = absolute(run, "native", load.key, "p", "rss_mib")
        out.append((f"{load.idle} idle sessions: P server threads", fmt_abs(threads, "threads"), "<= 64",
                    "not measured" if threads is None else ("yes" if threads <= 64 else "no")))
        out.append((f"{load.idle} idle sessions: P server RSS", fmt_abs(rss, "rss_mib"), "<= 150 MiB",
                    "not measured" if rss is None else ("yes" if rss <= 150 else "no")))
        add(f"{load.idle} idle sessions: a good client's p99, P/B", ratio_cell(run, "native", load.key, "p", "p99"),
            "<= 1.1x", 1.1, False)
        add(f"{load.idle} idle sessions: P's good client p99 / P's p99 without them",
            idle_p99_vs_alone(run, "p", load.key), "<= 1.1x (unchanged)", 1.1, False)
    for metric, name in (("p50", "p50"), ("p99", "p99")):
        add(f"sequential latency {name}, C++ client, 1 connection: P/B", ratio_cell(run, "native", "echo x1", "p",
                                                                                   metric), "<= 1.1x", 1.1, False)
    return out + peer_targets(run)


PEER_CLIENTS = ("Each system's client runs in a process of its own, against a server that is not the bottleneck "
                "where one exists: the native C++ server for the Thrift clients, grpc.aio's own server for grpc.aio "
                "(no other speaks its protocol here, so its calls/s include that server's cost; its client CPU per "
                "call does not). thriftpy2's aio client cannot overlap calls on one connection: N in flight are N "
                "connections, and N threads of the C++ server. Calls/s: median (min-max) of the rounds; ratios: "
                "ours / the peer's in the same round.")
PEER_SERVERS = ("Every server's echo is a coroutine that returns at once, served on its event loop; ours and "
                "thriftpy2's on the same loop (uvloop's when installed), grpc.aio on asyncio's. The Thrift servers "
                "are driven by the same native C++ load generator, a thread per connection (hello first on ours); "
                "grpc speaks another protocol: its server is driven by its own client (grpc.aio, a channel per "
                "connection, in a process of its own), so its calls/s include that client's pace; its server CPU "
                "per call does not. Ratios: ours / the peer's in the same round.")


def markdown(run: Run, machine: str) -> str:
    cfg = run.settings
    lines = [f"# Benchmark: {cfg.name} run", "",
             f"{machine}; {cfg.rounds} rounds of {cfg.seconds:g} s per cell, systems interleaved in every round; "
             f"run took {run.elapsed:.0f} s.",
             "Each cell: median ratio to B measured in the same round (min-max over the rounds); B's row gives "
             "B's own medians. Calls/s: higher is better. Latency, CPU, RSS, threads: lower is better. Ratios, not "
             "absolute numbers, carry across machines.", ""]
    for kind in ("python", "native"):
        if not _loads(run, kind):  # not in this run (--cells)
            continue
        lines += [f"## {CLIENTS[kind]}", "", "Throughput:", ""] + throughput_table(run, kind)
        lines += ["", "Latency (per call, 1 connection) and server cost:", ""] + cost_table(run, kind) + [""]
    if _loads(run, "native", idle=True):
        lines += ["## Idle sessions held while one good client calls (C++ clients)", ""] + idle_table(run) + [""]
    for kind, note in (("aioc", PEER_CLIENTS), ("aios", PEER_SERVERS)):
        if _loads(run, kind):
            lines += [f"## Issue 14: {CLIENTS[kind]}", "", note, ""] + peers_table(run, kind) + [""]
    lines += ["## Issue 8 targets, and issue 14's against its peers (P = this project's server, B = bare Apache "
              "Thrift, same round)", ""]
    lines += _table(["target", "measured: median (min-max)", "wanted", "met"], [list(t) for t in targets(run)])
    if run.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in run.notes]
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- bench: the latest targets table, written by scripts/bench -->"
README_END = "<!-- /bench -->"


def readme_block(run: Run, machine: str) -> str:
    """What the README shows of a run: where and when it was measured, and the issue's targets."""
    lines = [README_BEGIN, "", f"Latest run ({time.strftime('%Y-%m-%d')}, {machine}; {run.settings.rounds} rounds, "
             "median ratio to B in the same round, min-max):", ""]
    lines += _table(["target", "measured: median (min-max)", "wanted", "met"], [list(t) for t in targets(run)])
    return "\n".join(lines + ["", README_END])


def update_readme(readme: Path, block: str) -> bool:
    """Replaces the README's bench block with ``block``; False when the README has no such block."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[:start] + block + text[end + len(README_END):], encoding="utf-8")
    return True


def chart(run: Run, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.ticker
    import matplotlib.pyplot as plt

    kinds = ("python", "native")
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5), sharey=True)
    for ax, kind in zip(axes, kinds):
        loads = [load.key for load in _loads(run, kind)]
        systems = [s for s in _systems(run, kind) if s != "b"]
        width = 0.8 / max(1, len(systems))
        for i, system in enumerate(systems):
            cells = [ratio_cell(run, kind, key, system, "rate") for key in loads]
            xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(loads))]
            med = [c[0] if c else math.nan for c in cells]
            err = [[c[0] - c[1] if c else 0 for c in cells], [c[2] - c[0] if c else 0 for c in cells]]
            ax.bar(xs, med, width, yerr=err, capsize=2, label=ROW[(kind, system)])
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels(loads, rotation=20)
        ax.set_title("Python clients (B = 1)" if kind == "python" else "C++ load generator (B, same client = 1)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("throughput / B, same round (median, min-max)")
    fig.suptitle(f"thrift-handshake benchmark ({run.settings.name}): ratio to bare Apache Thrift (B)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def raw(run: Run) -> Dict:
    return {"settings": asdict(run.settings), "elapsed": run.elapsed, "wall": run.wall, "notes": run.notes,
            "samples": {" / ".join(key): [asdict(s) for s in samples] for key, samples in run.samples.items()}}


def write(run: Run, machine: str, out_dir: Path) -> Tuple[str, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(run, machine)
    md, png = out_dir / f"{run.settings.name}.md", out_dir / f"{run.settings.name}.png"
    md.write_text(text + f"\n![chart]({png.name})\n", encoding="utf-8")
    (out_dir / f"{run.settings.name}.json").write_text(json.dumps(raw(run), indent=1), encoding="utf-8")
    chart(run, png)
    return text, md, png
