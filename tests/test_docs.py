"""The README shows the two set-up commands first and the phase diagrams as the tables define them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from thrift_handshake.states import CLIENT_TRANSITIONS, CONNECTION_TRANSITIONS, SESSION_TRANSITIONS, mermaid_diagram

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_first_screen_has_demo_and_test_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert "scripts/demo" in first_screen and "scripts/test" in first_screen


def test_diagrams_match_the_transition_tables():
    assert mermaid_diagram(CLIENT_TRANSITIONS) in README
    assert mermaid_diagram(SESSION_TRANSITIONS) in README
    assert mermaid_diagram(CONNECTION_TRANSITIONS) in README


def _block(language: str, after: str) -> str:
    """The first ```language block after the heading ``after``."""
    start = README.index(f"```{language}\n", README.index(after)) + len(language) + 4
    return README[start:README.index("```", start)]


def test_the_host_your_own_service_python_snippets_run_as_written(tmp_path):
    """The README's IDL and handler files, then its one-process snippet and its stock-TThreadedServer
    wiring, run for real (the five shell steps run in test_packaging, against the installed wheel)."""
    import socket
    import subprocess
    import sys

    import readme

    section = readme.section("## Host your own service", "\n## ")
    for name, content in readme.files(section).items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["thrift", "-I", str(root / "idl"), "--gen", "py", "calc.thrift"], cwd=tmp_path, check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "gen-py"), str(tmp_path)])}
    ours = _block("python", "**In one Python process**").replace("9090", str(port))
    result = subprocess.run([sys.executable, "-c", ours], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0 and result.stdout.strip() == "3", result.stderr
    stock = _block("python", "**Apache Thrift's own server hosts the gate**").replace("9090", str(port))
    program = ("from calc import Calculator\nfrom calc_handler import CalculatorHandler\n"
               + stock.replace("server.serve()", "import threading\nthreading.Thread(target=server.serve, daemon=True).start()"))
    program += (f"\nimport time\nfrom thrift_handshake import Client, ConnectError\n"
                f"client = Client('127.0.0.1', {port}, service=Calculator)\n"
                "for attempt in range(200):  # until the stock server's thread is listening\n"
                "    try:\n        client.connect()\n        break\n"
                "    except ConnectError:\n        time.sleep(0.05)\n"
                "print(client.add(2, 3), client.version)\nclient.close()\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0 and result.stdout.split() == ["5", "2"], result.stderr


def test_the_plain_service_example_takes_the_readmes_argument(tmp_path):
    """`plain.thrift` was never shown, and the example argument failed with the IDL a reader would guess."""
    import shlex
    import subprocess
    import sys

    import readme

    section = readme.section("## A bigger example, and calling any Thrift service")
    (tmp_path / "plain.thrift").write_text(readme.files(section)["plain.thrift"], encoding="utf-8")
    line = next(line for line in section.splitlines() if line.startswith("thrift-handshake call --idl plain.thrift"))
    argv = shlex.split(line, comments=True)[1:] + ["--port", "1", "--connect-timeout", "2"]  # nothing listens
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    # exit 1 "cannot connect": the IDL compiled and the argument passed its checks (they exit 2)
    assert done.returncode == 1 and "cannot connect" in done.stderr, done.stderr


def _documented_commands() -> "list[tuple[str, str]]":
    """Every `thrift-handshake ...` line in a shell block of the README, docs/ and examples/, and in the
    examples of the CLI's own --help."""
    import readme

    from thrift_handshake.cli.parser import EXAMPLES

    root = Path(__file__).resolve().parent.parent
    sources = [(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")) for path in
               [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "examples").rglob("README.md"))]]
    sources += [(f"{command} --help", f"```sh\n{text}\n```\n") for command, text in EXAMPLES.items()]
    found = []
    for where, text in sources:
        for language, content in readme.blocks(text.replace("\\\n", " ")):
            if language not in ("sh", "bash", "shell", ""):
                continue
            for line in content.splitlines():
                for inner in re.findall(r"\$\((thrift-handshake [^)]*)\)", line):  # "$(thrift-handshake idl-path)"
                    found.append((where, inner))
                line = re.sub(r"\$\(thrift-handshake [^)]*\)", "DIR", line)
                for part in line.split("&&"):
                    command = re.match(r"\s*(?:\w+=\S*\s+)*(thrift-handshake\s.*)", part)
                    if command:
                        found.append((where, command.group(1)))
    return found


def test_every_documented_command_line_parses():
    """Docs drift: every `thrift-handshake` command shown in the README, docs/ and examples/ is one the
    CLI accepts (flags spelled in full, values of the right type)."""
    import shlex

    from thrift_handshake.cli import build_parser

    commands = _documented_commands()
    assert len(commands) >= 20, commands
    parser = build_parser()
    for where, line in commands:
        argv = shlex.split(line, comments=True)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as error:  # --help and --version exit 0
            if error.code != 0:
                pytest.fail(f"{where}: `{line}` is refused by the CLI (exit {error.code})")


def test_the_readme_shows_the_latest_benchmark_targets():
    """scripts/bench writes its targets table into the README; the README and bench/results agree."""
    import sys
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from bench import report

    latest = (root / "bench" / "results" / "latest.md").read_text(encoding="utf-8")
    block = README[README.index(report.README_BEGIN):README.index(report.README_END)]
    table = latest[latest.index("| target |"):latest.index("\n\n", latest.index("| target |"))]
    assert table in block


def test_max_threads_is_described_as_the_pools_usual_size_not_a_cap():
    """The pool grows past max_threads when every thread is stuck and connections wait for one
    (test_attacks_pool shows it): ``serve --help`` and the README say so, and up to what."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    help_text = " ".join(done.stdout.split())
    flag = help_text[help_text.rindex("--max-threads INT"):]  # the option, not the usage line
    described = [flag[:flag.index("(default")]]
    described += [bullet for bullet in README.split("\n- ") if "`max_threads`" in bullet]
    assert len(described) >= 3
    for text in described:
        text = " ".join(text.split())
        assert "stuck" in text and "max_connections" in text, text
