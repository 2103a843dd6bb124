"""The console script: call, --trace, demo, serve flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thrift_handshake.cli import build_parser


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrift_handshake.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_call_echo_prints_json(server):
    done = run_cli("call", "echo", '"请求数据"', "--port", str(server.port))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "请求数据"
    assert run_cli("call", "ping", "--port", str(server.port)).stdout.strip() == "null"


def test_call_process_with_a_struct_and_trace(server):
    request = json.dumps({"request_id": "cli-1", "payload": "abc", "work_ms": 5})
    done = run_cli("call", "process", request, "--port", str(server.port), "--trace")
    assert done.returncode == 0, done.stderr
    result, _, trace = done.stdout.partition("\nphase ")
    response = json.loads(result)
    assert response["request_id"] == "cli-1" and response["sequence"] == 1
    for phase in ["connect", "handshake", "request", "response", "disconnect", "T_s="]:
        assert phase in trace


def test_call_reports_declared_exceptions(server):
    done = run_cli("call", "get_result", '"nope"', "0", "--port", str(server.port))
    assert done.returncode == 1
    assert "UnknownTicket" in done.stderr and "nope" in done.stderr


def test_call_checks_arguments_before_sending(server):
    done = run_cli("call", "process", '{"request_id": "x", "work_ms": "slow"}', "--port", str(server.port))
    assert done.returncode == 2
    assert "work_ms" in done.stderr
    assert server.metrics.snapshot().connections_total == 0, "nothing may be sent for bad arguments"


def test_call_with_an_unsupported_version_range(server):
    done = run_cli("call", "ping", "--versions", "5-6", "--port", str(server.port))
    assert done.returncode == 1 and "no common version" in done.stderr


def test_call_to_a_closed_port():
    done = run_cli("call", "ping", "--port", "1")
    assert done.returncode == 1 and "cannot connect" in done.stderr


def test_demo_runs_the_whole_flow_and_exits_zero():
    done = run_cli("demo", timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ["'请求数据'", "process ->", "submit -> ticket", "get_result ->", "notify ->", "stats ->",
                     "goodbye ->", "R = bytes sent / send time", "S = bytes received / receive time",
                     "T_s", "network", "T_e", "server stopped"]:
        assert expected in out, f"{expected!r} missing from the demo output:\n{out}"


def test_serve_flags_come_from_the_limits():
    args = build_parser().parse_args(["serve", "--max-connections", "7", "--idle-timeout", "1.5"])
    assert args.max_connections == 7 and args.idle_timeout == 1.5
    assert args.host == "127.0.0.1" and args.port == 9090


def test_bad_flag_values_are_refused():
    done = run_cli("serve", "--port", "0", "--max-connections", "0")
    assert done.returncode == 2 and "max_connections" in done.stderr


@pytest.mark.parametrize("command", ["serve", "call", "demo"])
def test_help(command):
    assert run_cli(command, "--help").returncode == 0


def test_call_goodbye_prints_the_farewell(server):
    done = run_cli("call", "goodbye", "--port", str(server.port), "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    farewell = json.loads(done.stdout)
    assert farewell["calls"] == 0 and len(farewell["session_id"]) >= 16
    # nothing on stderr but, where thrift lacks its C extension, the pure-Python fallback's one warning
    assert [line for line in done.stderr.splitlines() if "C extension is missing" not in line] == []


@pytest.mark.parametrize("flags, says", [
    (["--port", "70000"], "70000 is outside 0..65535"),
    (["--handshake-timeout", "1e12"], "handshake_timeout must be a number in (0, 86400]"),
    (["--idle-timeout", "1e12"], "idle_timeout must be a number in (0, 86400]"),
    (["--tls-cert", "server.pem"], "TLS needs both --tls-cert and --tls-key"),
    (["--tls-cert", "/nonexistent/s.pem", "--tls-key", "/nonexistent/s.key"], "'/nonexistent/s.pem': no such file"),
    (["--auth-token-file", "/nonexistent/token"], "--auth-token-file /nonexistent/token: No such file"),
    (["--log-level", "foo"], "invalid choice: 'FOO'"),
    (["--grace", "-1"], "grace must be within"),
])
def test_serve_refuses_bad_settings_before_listening(flags, says):
    done = run_cli("serve", *flags, timeout=30)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_auth_token_is_refused_at_start_up(tmp_path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    done = run_cli("serve", "--port", "0", "--auth-token-file", str(empty), timeout=30)
    assert done.returncode == 2 and "is empty" in done.stderr
    env = dict(os.environ, THRIFT_HANDSHAKE_AUTH_TOKEN="")
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "$THRIFT_HANDSHAKE_AUTH_TOKEN is empty" in done.stderr


def test_call_refuses_a_version_range_that_is_not_one_without_connecting():
    done = run_cli("call", "ping", "--versions", "2-1", "--port", "1")  # nothing listens on port 1
    assert done.returncode == 2 and "versions must be a range" in done.stderr


def test_version_flag():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("thrift-handshake ")


def test_call_refuses_a_missing_argument_before_connecting():
    done = run_cli("call", "echo", "--port", "1")  # nothing listens on port 1: nothing may be sent
    assert done.returncode == 2 and "parameter 1 'message' is missing" in done.stderr


def test_call_takes_connect_and_handshake_timeouts(server):
    done = run_cli("call", "ping", "--port", str(server.port), "--connect-timeout", "2", "--handshake-timeout", "2")
    assert done.returncode == 0, done.stderr
    done = run_cli("call", "ping", "--port", "1", "--connect-timeout", "0")
    assert done.returncode == 2 and "Timeouts.connect must be within" in done.stderr


@pytest.mark.parametrize("args, says", [
    (["echo", "[" * 5000 + "]" * 5000], "nested too deeply"),
    (["--service", "nosuch_module_here", "echo", '"x"'], "--service nosuch_module_here"),
    (["--service", "os", "echo", '"x"'], "--service os: not a generated Thrift service"),
    (["--tls-key", "client.key", "echo", '"x"'], "--tls-key needs --tls-cert"),
    (["--tls-server-name", "localhost", "echo", '"x"'], "--tls-server-name needs --tls"),
], ids=["deep JSON", "no such module", "not a service", "key alone", "server name alone"])
def test_call_refuses_bad_input_in_one_line_without_a_traceback(args, says):
    # Each of these printed a Python traceback and exited 1, or (TLS flags alone) called in plaintext.
    result = run_cli("call", "--port", "1", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and says in result.stderr, result.stderr[-2000:]


def test_call_clips_what_the_server_says():
    # A peer's 1 MB exception message went to stderr whole.
    import socket
    import threading

    from conftest import encode_call
    from thrift.Thrift import TApplicationException, TMessageType

    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ServerHello

    hello = encode_call("hello", SessionService.hello_result(success=ServerHello(session_id="s", version=2)), 1,
                        TMessageType.REPLY)
    loud = encode_call("echo", TApplicationException(6, "x" * 1_000_000), 2, TMessageType.EXCEPTION)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def answer() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(hello)
                connection.recv(65536)
                connection.sendall(loud)
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                except OSError:
                    pass

        peer = threading.Thread(target=answer)
        peer.start()
        result = run_cli("call", "--port", str(listener.getsockname()[1]), "echo", '"hi"')
        peer.join(5)
    assert result.returncode == 1 and len(result.stderr) < 5000, len(result.stderr)
    assert "characters)" in result.stderr
