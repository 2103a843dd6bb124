"""The asyncio server catching up with the threaded one (issue 14): several services on one port, THeader
inside a framed transport, TZlibTransport, the shares of client hosts at max_connections, a Unix domain
socket (``serve --asyncio --workers N``: tests/test_aio_workers.py).

Where the threaded server's tests say what a user relies on, they run here unchanged against
``AsyncHandshakeServer``: they are imported below, and this module's ``server``, ``start_server`` and
``serve`` fixtures start the asyncio server instead (pytest resolves a test's fixtures in the module that
collects it).
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
from typing import Any, Callable

import pytest
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TTransport
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID

import test_fairness_between_hosts
from conftest import eventually
from server_process import memory_kib, read_log_until, serve_subprocess
from serving import listening_endpoint
from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_connection_end_log import test_a_connection_logged_closed_no_longer_counts_among_the_open_ones  # noqa: F401
from test_fairness_between_hosts import (  # noqa: F401 (run here against the asyncio server)
    test_a_client_pausing_before_hello_is_not_evicted_by_a_flood_of_silent_sockets,
    test_a_flood_of_one_byte_then_silence_cannot_keep_another_hosts_clients_out,
    test_idle_sessions_of_one_host_cannot_lock_out_another_host,
    test_one_host_still_may_fill_the_server_when_no_other_host_needs_room,
    test_two_hosts_holding_their_shares_still_make_room_for_a_third)
from test_multiplexed import (  # noqa: F401 (run here against the asyncio server)
    apache, gen, handlers, test_a_one_way_call_to_an_unknown_service_is_dropped_and_logged,
    test_an_unknown_service_is_named_and_the_connection_kept,
    test_apache_multiplexed_clients_call_two_services_in_one_session,
    test_bare_names_reach_the_default_service_only_when_one_is_named, test_before_hello_every_service_refuses,
    test_interceptors_see_the_bare_method_and_its_service, test_our_client_calls_one_service_of_a_multiplexed_port)
from test_wire_cells import (  # noqa: F401 (run here against the asyncio server)
    _bomb, _refusal, _send_until_answered, _stub, test_a_call_pipelined_in_one_zlib_flush_is_answered_before_hello,
    test_a_full_server_tells_a_framed_theader_client_in_its_own_framing,
    test_a_server_of_one_dialect_tells_these_clients_what_it_speaks, test_a_zlib_bomb_before_hello_is_refused_at_handshake_max_bytes,
    test_a_zlib_stream_inside_a_zlib_stream_is_refused, test_apache_stacks_are_served_on_one_port)
from test_unix_socket import path, test_an_apache_zlib_client_is_served_over_a_unix_socket  # noqa: F401

from thrift_handshake import Client, ClientOptions, ServerConfig
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello

ASYNC_LOG = "thrift_handshake.aio"


@pytest.fixture(autouse=True)
def _the_asyncio_servers_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fairness tests read the server's log by its logger's name: the asyncio server's here."""
    monkeypatch.setattr(test_fairness_between_hosts, "SERVER_LOG", ASYNC_LOG)


@pytest.fixture
def serve(gen: Any, start_async) -> Callable[..., AsyncHandshakeServer]:  # noqa: F811
    """test_multiplexed's ``serve(default_service=None, **config)``: Calc and Store on one asyncio port."""

    def start(default_service: Any = None, **config: Any) -> AsyncHandshakeServer:
        calc, store = handlers(gen)
        return start_async(services={"Calc": calc, "Store": store}, default_service=default_service, **config)

    return start


# -- several services on one port -------------------------------------------------------------

def test_without_the_gate_plain_services_share_a_port(gen: Any, apache: Any, start_async) -> None:  # noqa: F811
    from mux_gen import Plain

    class PlainHandler(Plain.Iface):
        async def add(self, a: int, b: int) -> int:  # a coroutine handler beside a plain one
            return -(a + b)

    calc, _ = handlers(gen)
    server = start_async(services={"Calc": calc, "Plain": PlainHandler()}, default_service="Plain", handshake=False)
    client = apache(server.port)
    assert client.calc.add(1, 2) == 3
    assert client.service("Plain").add(1, 2) == -3
    assert client.bare.add(1, 2) == -3


def test_a_default_that_is_not_hosted_is_refused(gen: Any) -> None:
    calc, store = handlers(gen)
    with pytest.raises(ValueError, match="default_service 'Nope' is not one of"):
        AsyncHandshakeServer(services={"Calc": calc, "Store": store}, default_service="Nope")
    with pytest.raises(ValueError, match="without ':'"):
        AsyncHandshakeServer(services={"Ca:lc": calc})
    with pytest.raises(ValueError, match="services is empty"):
        AsyncHandshakeServer(services={})
    with pytest.raises(TypeError, match="a handler, or several by name"):
        AsyncHandshakeServer(calc, services={"Calc": calc})


def test_serve_asyncio_hosts_several_handlers(tmp_path) -> None:
    (tmp_path / "two.py").write_text(
        "from thrift_handshake.demo import HandshakeHandler\n"
        "class Loud(HandshakeHandler):\n"
        "    async def echo(self, message):\n"
        "        return message.upper()\n")
    process, port = serve_subprocess("--asyncio", "--path", str(tmp_path), "--handler", "Quiet=thrift_handshake.demo:"
                                     "HandshakeHandler", "--handler", "Loud=two:Loud", "--default-service", "Quiet")
    try:
        with Client(port=port, service=HandshakeService, options=ClientOptions(multiplexed="Loud")) as loud:
            assert loud.echo("hi") == "HI"
        with Client(port=port, service=HandshakeService) as bare:  # bare names: the default service
            assert bare.echo("hi") == "hi"
    finally:
        process.kill()
        process.wait(5)
        process.stderr.close()


# -- THeader inside a framed transport, its first bytes split --------------------------------------

def test_framed_theader_is_told_from_first_bytes_that_arrive_split(server) -> None:
    """Framed THeader needs 10 bytes to be told apart (two lengths, then THeader's magic): 7 bytes in the
    first read are not enough, and the server must read on (it stopped at 6, then refused the peer as
    speaking nothing it recognises)."""
    written = TTransport.TMemoryBuffer()
    protocol = THeaderProtocol(TTransport.TFramedTransport(written), (THeaderClientType.HEADERS,),
                               THeaderSubprotocolID.BINARY)
    HandshakeService.Client(protocol).send_hello(ClientHello(client_name="split", min_version=1, max_version=2))
    request = written.getvalue()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request[:7])
        time.sleep(0.2)  # the server reads those 7 bytes alone (what is under test is that it then reads on)
        sock.sendall(request[7:])
        reply = sock.recv(65536)
    answer = THeaderProtocol(TTransport.TFramedTransport(TTransport.TMemoryBuffer(reply)),
                             (THeaderClientType.HEADERS,), THeaderSubprotocolID.BINARY)
    assert HandshakeService.Client(answer).recv_hello().session_id


# -- TZlibTransport: a bomb after hello ---------------------------------------------------------

def test_a_zlib_bomb_is_refused_at_max_message_bytes_and_the_server_stays_small() -> None:
    """About 1 MB of zlib that inflates to 1 GiB: the asyncio server inflates a read at a time, its framer
    refuses the message at max_message_bytes (1 MiB here), the answer goes out in the client's zlib stream."""
    process, port = serve_subprocess("--asyncio", "--no-hello", "--max-message-bytes", str(1 << 20))
    try:
        before = memory_kib(process.pid)
        sent, answer = _send_until_answered(port, _bomb(b"echo", 1 << 30), 256 * 1024)
        after = memory_kib(process.pid)
        log = read_log_until(process, "dropped peer=")
        error = _refusal(answer, "echo")
        expected = "a message of more than 1048576 bytes (max_message_bytes)"
        assert (error.type, error.message) == (TApplicationException.PROTOCOL_ERROR,
                                               f"cannot decode the echo request: {expected}")
        assert f"bad message: {expected}" in log
        grown = after["VmHWM"] - before["VmRSS"]
        print(f"\nzlib bomb on the asyncio server: {sent / 1024:.0f} KiB of zlib sent; RSS before "
              f"{before['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB (+{grown / 1024:.1f})")
        assert grown < 16 * 1024, "the server's memory grew with what the bomb inflated to"
        sock, trans, stub = _stub(port, "binary", "zlib")  # still serving, zlib too
        try:
            assert stub.echo("after the bomb") == "after the bomb"
        finally:
            trans.close()
    finally:
        process.kill()
        process.wait(5)
        process.stderr.close()


def test_a_corrupt_zlib_stream_is_dropped_and_logged(server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=ASYNC_LOG)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x78\xda\xff\xff\xff\xff\xff\xff")
        assert sock.recv(100) == b""
    assert eventually(lambda: "dropped peer=" in caplog.text and "not a zlib stream" in caplog.text), caplog.text


def test_a_peer_that_says_too_little_to_tell_is_refused_not_a_server_failure(server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=ASYNC_LOG)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x00\x01")  # three bytes, then the end: no dialect to tell
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert eventually(lambda: "the client speaks nothing it recognises" in caplog.text), caplog.text
    assert "failed serving it" not in caplog.text


# -- a Unix domain socket ---------------------------------------------------------------------

def test_a_unix_socket_serves_our_client_and_its_file_goes_at_the_stop(start_async, event_loop_thread,  # noqa: F811
                                                                       path, caplog) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger=ASYNC_LOG)
    server = start_async(unix_socket=path)
    assert server.endpoint == f"unix:{path}" and f"listening on unix:{path} " in caplog.text
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    with Client(options=ClientOptions(unix_socket=path), service=HandshakeService) as client:
        assert client.echo("over a path") == "over a path"
    assert eventually(lambda: f"closed peer=unix:{path} session=" in caplog.text)
    event_loop_thread.run(server.stop(grace=1.0))
    assert not os.path.exists(path)


def test_serve_asyncio_unix_and_call_unix(tmp_path) -> None:
    path = str(tmp_path / "aio.sock")
    server = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--asyncio", "--unix", path],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert listening_endpoint(server, []) == f"unix:{path}"
        result = subprocess.run([sys.executable, "-m", "thrift_handshake", "call", "--unix", path, "echo", '"hi"'],
                                capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stdout.strip()) == (0, '"hi"'), result.stderr
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()
    assert not os.path.exists(path)
