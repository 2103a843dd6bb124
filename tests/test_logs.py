"""Logs as an operator reads them: one JSON object per line with the session on every line about one,
and an access line per call at the level the operator chooses."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Dict, List

import pytest

from thrift_handshake import Client, ServerConfig, ServerLimits
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake import logs
from thrift_handshake.logs import JsonFormatter
from thrift_handshake_gen import HandshakeService

from conftest import encode_call, eventually, exchange
from server_process import json_log_of_one_session


def _record(message: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("thrift_handshake.server", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_names_the_peer_and_session_of_the_runtime_s_words():
    line = json.loads(JsonFormatter().format(_record(
        "closed peer=%s session=%s calls=1: after goodbye", "[::1]:5051", "ab12", )))
    assert line["peer"] == "[::1]:5051" and line["session"] == "ab12"
    assert (line["level"], line["logger"]) == ("INFO", "thrift_handshake.server")
    assert line["msg"] == "closed peer=[::1]:5051 session=ab12 calls=1: after goodbye"
    assert line["ts"].endswith("Z") and "pid" not in line


def test_a_json_line_keeps_extra_fields_and_the_traceback():
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record("failed", method="echo", duration_ms=1.5)
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter(with_pid=True).format(record))
    assert (line["method"], line["duration_ms"], line["pid"]) == ("echo", 1.5, record.process)
    assert line["error"].startswith("Traceback") and "ValueError: bad" in line["error"]
    assert "session" not in line  # no session word, no call on this thread


@pytest.mark.parametrize("with_pid", [False, True])
def test_the_cli_s_logging_gathers_the_process_id_when_its_lines_write_it(with_pid):
    flags = ("_srcfile", "logThreads", "logMultiprocessing", "logProcesses")
    saved = {flag: getattr(logging, flag) for flag in flags}
    try:
        logs.configure("INFO", "json", with_pid=with_pid)
        record = logging.getLogger("thrift_handshake.server").makeRecord(
            "thrift_handshake.server", logging.INFO, "f.py", 1, "closed peer=%s", ("h:1",), None)
        line = json.loads(JsonFormatter(with_pid=with_pid).format(record))
        assert line.get("pid") == (os.getpid() if with_pid else None)
        assert line["msg"] == "closed peer=h:1" and line["peer"] == "h:1"
    finally:
        for flag, value in saved.items():
            setattr(logging, flag, value)


class LoggingEcho(HandshakeHandler):
    def echo(self, message: str) -> str:
        logging.getLogger("the.handler").warning("echoing %s", message)
        return message


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: List[Dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured():
    handler = Captured()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_handler_s_own_lines_carry_the_session_of_the_call(start_server, captured):
    server = start_server(handler=LoggingEcho(), features=frozenset({"stats"}))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("hi")
        session = client.session_id
    [line] = [line for line in captured.lines if line["logger"] == "the.handler"]
    assert (line["session"], line["msg"]) == (session, "echoing hi")
    assert line["peer"].startswith("127.0.0.1:")


def test_lines_between_calls_belong_to_no_session(start_server, captured):
    # One pool thread: the connection without a session is served by the thread that served the call.
    server = start_server(limits=ServerLimits(max_threads=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("first")
    exchange(server.port, encode_call("echo", HandshakeService.echo_args(message="early")) + b"\xff" * 8)
    assert eventually(lambda: [line for line in captured.lines if line["msg"].startswith("dropped")])
    [dropped] = [line for line in captured.lines if line["msg"].startswith("dropped")]
    assert "session" not in dropped, dropped


def test_every_call_gets_an_access_line_at_the_chosen_level(start_server, captured):
    server = start_server(call_log_level="INFO")
    logging.getLogger().setLevel(logging.INFO)
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("hi")
        session = client.session_id
    assert eventually(lambda: [line for line in captured.lines if line.get("method") == "goodbye"])
    calls = [line for line in captured.lines if line["logger"] == "thrift_handshake.calllog"]
    assert [(line["method"], line["outcome"], line["level"]) for line in calls] == [
        ("hello", "ok", "INFO"), ("echo", "ok", "INFO"), ("goodbye", "ok", "INFO")]
    assert all(line["session"] == session and line["duration_ms"] >= 0 for line in calls)


def test_a_call_log_level_that_is_not_a_level_is_refused():
    with pytest.raises(ValueError, match="call_log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        ServerConfig(call_log_level="LOUD")


def test_serve_log_format_json_writes_only_json_lines():
    sessions = []

    def use(port: int) -> None:
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            client.echo("json")
            sessions.append(client.session_id)

    lines = json_log_of_one_session(use, "--call-log-level", "INFO")
    [session] = sessions
    [closed] = [line for line in lines if line["msg"].startswith("closed")]
    assert closed["session"] == session and closed["peer"].startswith("127.0.0.1:")
    assert [line["method"] for line in lines if "method" in line] == ["hello", "echo", "goodbye"]
