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
    response = json.loads(done.stdout)  # stdout is the result alone: `| jq` works
    trace = done.stderr
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
    assert "TThreadedServer" not in out  # it is not one: a thread pool serves connections that have a message
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
    assert done.returncode == 2 and "--max-connections must be a number in (0, 100000], not 0" in done.stderr


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
    (["--handshake-timeout", "1e12"], "--handshake-timeout must be a number in (0, 86400]"),
    (["--idle-timeout", "1e12"], "--idle-timeout must be a number in (0, 86400]"),
    (["--idle-timeout", "-1"], "--idle-timeout must be a number in (0, 86400], not -1.0"),
    (["--max-wait", "0"], "--max-wait must be a number"),
    (["--tls-cert", "server.pem"], "TLS needs both --tls-cert and --tls-key"),
    (["--tls-cert", "/nonexistent/s.pem", "--tls-key", "/nonexistent/s.key"], "--tls-cert '/nonexistent/s.pem': no such file"),
    (["--auth-token-file", "/nonexistent/token"], "--auth-token-file /nonexistent/token: No such file"),
    (["--log-level", "foo"], "invalid choice: 'FOO'"),
    (["--grace", "-1"], "--grace must be within"),
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
    assert done.returncode == 2 and "--connect-timeout must be within (0, 86400] seconds, not 0.0" in done.stderr


@pytest.mark.parametrize("args, says", [
    (["echo", "[" * 5000 + "]" * 5000], "nested too deeply"),
    (["--module", "nosuch_module_here", "echo", '"x"'], "--module nosuch_module_here"),
    (["--module", "os", "echo", '"x"'], "--module os: not a generated Thrift service"),
    (["--service", "Calculator", "add", "1", "2"], "--service needs --idl FILE (a generated module is --module)"),
    (["--tls-cert", "client.pem", "echo", '"x"'], "--tls-cert needs --tls-key"),
    (["--timeout", "0", "echo", '"x"'], "--timeout must be within (0, 86400] seconds, not 0.0"),
    (["--tls-ca", "/nonexistent/ca.pem", "echo", '"x"'], "--tls-ca '/nonexistent/ca.pem': no such file"),
    (["add", "1", "2"], "without --idl, call speaks the demo's HandshakeService"),
    (["--tls-key", "client.key", "echo", '"x"'], "--tls-key needs --tls-cert"),
    (["--tls-server-name", "localhost", "echo", '"x"'], "--tls-server-name needs --tls"),
], ids=["deep JSON", "no such module", "not a service", "--service without --idl", "cert without key",
       "zero timeout", "missing CA file", "own method without --idl", "key alone", "server name alone"])
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


# ---------------------------------------------------------------------------------------------
# Options: full names only, secrets never echoed, one --service, help for everything
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["serve", "--auth-token", "SECRET-7f3a"],
    ["serve", "--auth-token=SECRET-7f3a"],
    ["call", "--auth-token", "SECRET-7f3a", "ping", "--port", "1"],
], ids=["serve", "serve with =", "call"])
def test_an_unknown_option_is_named_without_its_value(argv):
    """`--auth-token SECRET` was taken as an abbreviation of --auth-token-file, and the error printed the
    secret (`--auth-token-file SECRET: No such file`)."""
    done = run_cli(*argv, timeout=30)
    assert done.returncode == 2
    assert "SECRET-7f3a" not in done.stdout + done.stderr
    assert "unknown option --auth-token (did you mean --auth-token-file?)" in done.stderr


def test_options_are_never_matched_by_prefix():
    done = run_cli("call", "ping", "--port", "1", "--time", "1")  # was taken for --timeout
    assert done.returncode == 2 and "unknown option --time" in done.stderr, done.stderr


@pytest.mark.parametrize("argv, says", [
    (["serve", "--handler", "a:One", "--handler", "b:Two", "--default-service", "A", "--default-service", "B"],
     "--default-service given twice (A and B)"),
    (["call", "--idl", "a.thrift", "--idl", "b.thrift", "ping"], "--idl given twice (a.thrift and b.thrift)"),
    (["call", "--idl", "a.thrift", "--service", "A", "--service", "B", "ping"], "--service given twice (A and B)"),
])
def test_a_second_service_is_an_error_not_a_replacement(argv, says):
    done = run_cli(*argv, timeout=30)
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_every_option_has_help_text_and_every_command_examples():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in commands.choices.items():
        missing = [a.option_strings or a.dest for a in sub._actions if not a.help]
        assert missing == [], f"{name}: no help for {missing}"
        assert "example" in (sub.epilog or ""), f"{name} --help shows no example"
    top = run_cli("--help").stdout
    assert "``" not in top, "the top-level help shows RST markup"
    for code in ("0", "1", "2", "130"):
        assert f"\n  {code} " in top, f"exit status {code} is not described"


def test_bash_completion_completes_commands_and_options():
    import shutil

    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = run_cli("completion", "bash").stdout
    probe = script + ('COMP_WORDS=(thrift-handshake serve --idle-t); COMP_CWORD=2; _thrift_handshake; '
                      'echo "${COMPREPLY[@]}"; COMP_WORDS=(thrift-handshake ca); COMP_CWORD=1; _thrift_handshake; '
                      'echo "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["--idle-timeout", "call"], done.stderr


def test_idl_path_holds_the_session_contract():
    done = run_cli("idl-path")
    assert done.returncode == 0
    folder = done.stdout.strip()
    assert os.path.isfile(os.path.join(folder, "session.thrift")), folder
    module = subprocess.run([sys.executable, "-m", "thrift_handshake.idl"], capture_output=True, text=True, timeout=30)
    assert module.stdout.strip() == folder


# ---------------------------------------------------------------------------------------------
# Output for scripts
# ---------------------------------------------------------------------------------------------


def test_call_format_json_is_one_document(server):
    done = run_cli("call", "echo", '"hi"', "--port", str(server.port), "--format", "json", "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["method"] == "echo" and document["result"] == "hi"
    assert [(r["phase"], r["name"]) for r in document["timeline"]][1:] == [
        ("handshake", "hello"), ("call", "echo"), ("disconnect", "goodbye"), ("disconnect", "close")]
    failed = run_cli("call", "get_result", '"nope"', "0", "--port", str(server.port), "--format", "json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["exception"] == "UnknownTicket"
    assert json.loads(failed.stdout)["value"] == {"ticket": "nope"}


def test_new_writes_a_service_whose_own_test_passes(tmp_path):
    done = run_cli("new", "calc", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "calc"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "calc.thrift", "calc_handler.py", "gen.sh",
                                                        "test_calc.py"]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    generated = subprocess.run(["./gen.sh"], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert generated.returncode == 0, generated.stderr
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    again = run_cli("new", "calc", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists and is not an empty folder; nothing written" in again.stderr
    keyword = run_cli("new", "class", "--dir", str(tmp_path))
    assert keyword.returncode == 2 and "not a Python keyword" in keyword.stderr


def test_enums_come_back_by_name_without_idl_and_without_a_compiler(server, tmp_path):
    """Names were accepted and numbers came back; the demo's model ships with the package, so no
    compiler is needed (THRIFT points at none here)."""
    env = dict(os.environ, THRIFT=str(tmp_path / "no-compiler"))
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "call", "--port", str(server.port),
                           "echo_types", '{"id": "e", "color": "BLUE", "palette": {"1": 2, "2": "MAX_COLOR"}}'],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    echoed = json.loads(done.stdout)
    assert echoed["color"] == "BLUE" and echoed["palette"] == {"1": "GREEN", "2": "MAX_COLOR"}


def test_list_and_describe_the_demo_without_idl_or_server():
    listed = run_cli("call", "--list", "--port", "1")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("service HandshakeService extends session.SessionService   (default)\n")
    assert "  oneway void notify(1: Event event)" in listed.stdout
    described = run_cli("call", "--describe", "Color", "--format", "json")
    assert json.loads(described.stdout) == {"kind": "enum", "name": "handshake.Color", "members": {
        "UNKNOWN_COLOR": -1, "RED": 1, "GREEN": 2, "BLUE": 3, "MAX_COLOR": 2147483647}}
