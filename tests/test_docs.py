"""The README shows the two set-up commands first and the phase diagrams as the tables define them."""

from __future__ import annotations

from pathlib import Path

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


def test_the_host_your_own_service_snippets_run_as_written(tmp_path):
    """The README's IDL, handler and client, and its stock-TThreadedServer wiring, run for real."""
    import socket
    import subprocess
    import sys

    idl = _block("thrift", "## Host your own service")
    (tmp_path / "calc.thrift").write_text("namespace py calc\n" + idl)
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["thrift", "-I", str(root / "idl"), "--gen", "py", "-out", str(tmp_path),
                    str(tmp_path / "calc.thrift")], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ours = _block("python", "## Host your own service").replace("9090", str(port))
    result = subprocess.run([sys.executable, "-c", ours], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "3", result.stderr
    stock = _block("python", "**Apache Thrift's own server hosts the gate**").replace("9090", str(port))
    handler = ours[:ours.index("server = HandshakeServer")]  # the README's imports and handler class
    program = handler + stock.replace("server.serve()", "import threading\nthreading.Thread(target=server.serve, daemon=True).start()")
    program += (f"\nimport time\nfrom thrift_handshake import ConnectError\n"
                f"client = Client('127.0.0.1', {port}, service=Calculator)\n"
                "for attempt in range(200):  # until the stock server's thread is listening\n"
                "    try:\n        client.connect()\n        break\n"
                "    except ConnectError:\n        time.sleep(0.05)\n"
                "print(client.add(2, 3), client.version)\nclient.close()\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.split() == ["5", "2"], result.stderr


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
