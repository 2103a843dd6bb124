"""The graceful stop: in-flight calls finish within the grace period, idle connections close, the
port and every thread are freed; stop() races; what the stop logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import socket
import threading
import time

import pytest
from server_process import Background, wait_in_flight

from thrift_handshake import (
    ServiceError,
    Client,
    ConnectError,
    ConnectionBroken,
    HandshakeServer,
    RemoteApplicationError,
    ServerConfig,
)
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen.ttypes import Request
from thrift_handshake_gen import HandshakeService


def test_graceful_stop_lets_the_in_flight_call_finish(start_server):
    server = start_server()
    busy = Client("127.0.0.1", server.port, service=HandshakeService)
    idle = Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    idle.connect()
    call = Background(busy.process, Request(request_id="in-flight", payload="p", work_ms=500))
    wait_in_flight(server, "process")
    started = time.monotonic()
    server.stop(grace=5.0)
    stopped_in = time.monotonic() - started
    assert call.result().request_id == "in-flight"
    assert 0.2 < stopped_in < 4.0
    with pytest.raises(ConnectionBroken):
        idle.echo("idle connections are closed")
    with pytest.raises(ConnectionBroken):
        busy.echo("closed after its reply")
    with pytest.raises(ConnectError):
        Client("127.0.0.1", server.port, service=HandshakeService).connect()
    busy.close()
    idle.close()


def test_grace_period_bounds_the_stop(start_server):
    server = start_server()
    busy, waiting = Client("127.0.0.1", server.port, service=HandshakeService), Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    waiting.connect()
    ack = waiting.submit(Request(request_id="job", work_ms=9000))
    process = Background(busy.process, Request(request_id="r", work_ms=8000))
    wait = Background(waiting.get_result, ack.ticket, 30000)
    wait_in_flight(server, "process")
    wait_in_flight(server, "get_result")
    started = time.monotonic()
    server.stop(grace=0.5)
    assert time.monotonic() - started < 3.0, "the grace period must bound the stop"
    aborted = process.result()  # the cut-off call learns why, not "read 0 bytes"
    assert isinstance(aborted, RemoteApplicationError) and "server is stopping" in str(aborted), aborted
    waited = wait.result()
    assert isinstance(waited, (ServiceError, ConnectionBroken)), waited
    busy.close()
    waiting.close()


def test_stop_frees_the_port_and_leaves_no_threads(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("x")
    port = server.port
    server.stop()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_request_stop_then_stop_keeps_the_grace_period(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        call = Background(client.process, Request(request_id="drained", work_ms=400))
        wait_in_flight(server, "process")
        server.request_stop()
        server.stop()
        assert call.result().request_id == "drained"


def test_a_planned_abort_is_one_warning_not_an_error_with_a_traceback(start_server, caplog):
    server = start_server()
    busy = Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    process = Background(busy.process, Request(request_id="r", work_ms=8000))
    wait_in_flight(server, "process")
    with caplog.at_level("WARNING"):
        server.stop(grace=0.3)
        process.result()
    aborted = [r for r in caplog.records if "aborted" in r.getMessage()]
    assert aborted and all(r.levelname == "WARNING" and r.exc_info is None for r in aborted), aborted
    assert not [r for r in caplog.records if r.levelname == "ERROR" and "handler" in r.getMessage()]
    busy.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_constructing_a_server_opens_no_socket():
    before = _open_fds()
    server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
    assert _open_fds() == before  # the stop's wake-up pair belongs to serve(), not to the object
    server.stop()
    assert _open_fds() == before


def test_stop_right_after_serve_began_on_a_user_thread_always_returns():
    for _ in range(30):
        server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
        thread = threading.Thread(target=server.serve)
        thread.start()
        server.stop()
        thread.join(5)
        assert not thread.is_alive(), "serve() kept running after stop()"
        with pytest.raises(RuntimeError):
            server.serve()  # a stopped server cannot be restarted


def test_serve_leaves_the_process_signal_handlers_alone():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    server = HandshakeServer(HandshakeHandler(), ServerConfig(port=0))
    threading.Timer(0.1, server.request_stop).start()
    server.serve()  # on the main thread: still the CLI's job, not the library's, to own signals
    assert {signum: signal.getsignal(signum) for signum in before} == before



_STUCK_HANDLER_SCRIPT = """
import threading
from thrift_handshake import Client, HandshakeServer, ServerConfig
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService

class Stuck(HandshakeHandler):
    def echo(self, message):
        threading.Event().wait()  # never returns, whatever the server aborts

server = HandshakeServer(Stuck(), ServerConfig(port=0)).start()
client = Client("127.0.0.1", server.port, service=HandshakeService)
client.connect()
threading.Thread(target=client.echo, args=("x",), daemon=True).start()
while server.metrics.snapshot().calls.get("echo", 0) < 1:
    threading.Event().wait(0.01)
server.stop(grace=0.2)
print("stopped", flush=True)
"""


def test_a_handler_stuck_past_the_grace_period_does_not_keep_the_process_alive():
    # The pool's threads are daemons; TThreadedServer's daemon=True was never used (serve() is ours).
    done = subprocess.run([sys.executable, "-c", _STUCK_HANDLER_SCRIPT], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "stopped\n", done.stderr[-2000:]
    assert "handler still running after the grace period; left behind" in done.stderr
