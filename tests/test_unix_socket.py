"""Serving on a Unix domain socket (``ServerConfig.unix_socket``, ``serve --unix PATH``, Apache's ``domain``
cells): every dialect, the Python client, the socket file's mode, and what happens to files already there."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys

import pytest
from conftest import eventually
from thrift.protocol import TCompactProtocol
from thrift.transport import TSocket, TTransport
from thrift.transport.TZlibTransport import TZlibTransport

from thrift_handshake import Client, ClientOptions, ServerConfig, Wire
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.server import HandshakeServer
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "handshake.sock")


def _client(path: str, **options) -> Client:
    return Client(options=ClientOptions(unix_socket=path, **options), service=HandshakeService)


@pytest.mark.parametrize("wire", [Wire(), Wire("compact", "framed"), Wire("binary", "header")], ids=str)
def test_the_python_client_gets_a_session_over_a_unix_socket(start_server, path, wire, caplog):
    caplog.set_level(logging.INFO, logger="thrift_handshake.server")
    server = start_server(unix_socket=path)
    assert server.endpoint == f"unix:{path}"
    with _client(path, wire=wire) as client:
        assert client.echo("over a path") == "over a path"
        assert client.timeline[0][:2] == ("connect", f"unix:{path}")
    assert f"listening on unix:{path} " in caplog.text
    assert eventually(lambda: f"closed peer=unix:{path} session=" in caplog.text)  # the peer is the path


def test_an_apache_zlib_client_is_served_over_a_unix_socket(start_server, path):
    start_server(unix_socket=path)
    sock = TSocket.TSocket(unix_socket=path)
    transport = TZlibTransport(TTransport.TBufferedTransport(sock))
    stub = HandshakeService.Client(TCompactProtocol.TCompactProtocol(transport))
    transport.open()
    try:
        assert stub.hello(ClientHello(client_name="apache", min_version=1, max_version=2)).session_id
        assert stub.echo("zlib") == "zlib"
    finally:
        transport.close()


def test_the_socket_file_is_for_owner_and_group_and_goes_at_the_stop(path):
    server = HandshakeServer(HandshakeHandler(), ServerConfig(unix_socket=path)).start()
    try:
        mode = os.lstat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    finally:
        server.stop()
    assert not os.path.exists(path)


def test_a_stale_socket_file_is_replaced(start_server, path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening, then closed: what a killed server leaves behind
    stale.close()
    start_server(unix_socket=path)
    with _client(path) as client:
        assert client.ping() is None


def test_a_file_that_is_not_a_socket_is_left_alone(path):
    with open(path, "w") as file:
        file.write("precious")
    server = HandshakeServer(HandshakeHandler(), ServerConfig(unix_socket=path))
    with pytest.raises(FileExistsError, match="exists and is not a socket: not removed"):
        server.listen()
    with open(path) as file:
        assert file.read() == "precious"


def test_a_socket_another_server_accepts_on_is_not_taken(start_server, path):
    start_server(unix_socket=path)
    second = HandshakeServer(HandshakeHandler(), ServerConfig(unix_socket=path))
    with pytest.raises(OSError, match="another server accepts on") as busy:
        second.listen()
    assert busy.value.errno == 98  # EADDRINUSE
    with _client(path) as client:  # the first still serves
        assert client.ping() is None


def test_serve_unix_says_why_it_cannot_listen(path):
    os.mkdir(path)
    result = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--unix", path],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"cannot listen on unix:{path}: {path} exists and is not a socket: not removed" in result.stderr


def test_workers_refuse_a_unix_socket(path):
    from thrift_handshake.workers import Supervisor

    with pytest.raises(ValueError, match="a unix_socket is served by one HandshakeServer"):
        Supervisor(lambda: None, ServerConfig(unix_socket=path), 2)
    result = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--unix", path, "--workers", "2"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--unix serves from this process only: it cannot be combined with --workers" in result.stderr
    assert not os.path.exists(path)


def test_serve_unix_and_call_unix(path):
    """The command line end to end: serve on a path, call through it, SIGTERM removes the file."""
    from serving import listening_endpoint

    server = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--unix", path],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert listening_endpoint(server, []) == f"unix:{path}"
        result = subprocess.run([sys.executable, "-m", "thrift_handshake", "call", "--unix", path, "echo", '"hi"'],
                                capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stdout.strip()) == (0, '"hi"'), result.stderr
    finally:
        server.terminate()
        server.wait(10)
    assert not os.path.exists(path)
