"""TLS and mutual TLS by configuration (test-only certificates in tests/certs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from thrift_handshake import (
    Client,
    ClientOptions,
    ClientTLS,
    ConnectError,
    ConnectionBroken,
    current_session,
    ServerLimits,
    ServerTLS,
    WireMismatch,
)
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService

from conftest import eventually

CERTS = Path(__file__).resolve().parent / "certs"
SERVER_TLS = ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key"))
MUTUAL_TLS = ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key"), str(CERTS / "ca.pem"))
CLIENT_CERT = dict(cert_file=str(CERTS / "client.pem"), key_file=str(CERTS / "client.key"))


class WhoAmI(HandshakeHandler):
    def echo(self, message):
        return f"{message} from {current_session().peer_identity}"


def tls_client(port: int, **tls) -> Client:
    tls.setdefault("ca_file", str(CERTS / "ca.pem"))
    return Client("127.0.0.1", port, ClientOptions(tls=ClientTLS(**tls)), service=HandshakeService)


def test_tls_round_trip(start_server):
    server = start_server(tls=SERVER_TLS)
    with tls_client(server.port) as client:
        assert client.echo("请求数据") == "请求数据"
        assert client.timeline.calls("echo")[-1].bytes_out > 0  # plaintext bytes still counted


def test_untrusted_server_certificate_is_refused(start_server):
    server = start_server(tls=SERVER_TLS)
    client = tls_client(server.port, ca_file=str(CERTS / "other-ca.pem"))
    with pytest.raises(ConnectError) as caught:
        client.connect()
    assert "certificate verify failed" in str(caught.value)


def test_wrong_host_name_is_refused(start_server):
    server = start_server(tls=SERVER_TLS)
    with pytest.raises(ConnectError) as caught:
        tls_client(server.port, server_hostname="elsewhere.example").connect()
    assert "Hostname mismatch, certificate is not valid for 'elsewhere.example'" in str(caught.value)
    assert "(or does not name this host: ClientTLS.server_hostname)" in str(caught.value)


def test_a_plain_client_on_the_tls_port_is_told_it_needs_tls(start_server):
    server = start_server(tls=SERVER_TLS)
    plain = Client("127.0.0.1", server.port, service=HandshakeService)
    with pytest.raises(WireMismatch, match="the client speaks buffered binary; this server requires TLS"):
        plain.connect()
    assert plain.phase.value == "CLOSED"
    with tls_client(server.port) as client:
        assert client.echo("server fine") == "server fine"


def test_mutual_tls_passes_the_client_identity_to_the_handler(start_server):
    server = start_server(WhoAmI(), tls=MUTUAL_TLS)
    with tls_client(server.port, **CLIENT_CERT) as client:
        assert client.echo("hi") == "hi from thrift-handshake test client"


def test_mutual_tls_refuses_a_client_without_certificate(start_server):
    server = start_server(tls=MUTUAL_TLS)
    with pytest.raises(ConnectionBroken):
        tls_client(server.port).connect()


def test_cli_call_over_tls(start_server):
    server = start_server(tls=MUTUAL_TLS)
    done = subprocess.run(
        [sys.executable, "-m", "thrift_handshake", "call", "echo", '"tls"', "--port", str(server.port),
         "--tls-ca", str(CERTS / "ca.pem"), "--tls-cert", CLIENT_CERT["cert_file"],
         "--tls-key", CLIENT_CERT["key_file"]],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"tls"'


def test_missing_tls_files_are_named_before_connecting():
    with pytest.raises(ValueError, match="TLS client certificate '/nonexistent/client.pem': no such file"):
        ClientTLS(cert_file="/nonexistent/client.pem", key_file="/nonexistent/client.key")
    with pytest.raises(ValueError, match="TLS key '/nonexistent/server.key': no such file"):
        ServerTLS(cert_file=str(CERTS / "server.pem"), key_file="/nonexistent/server.key")


def test_unloadable_tls_files_are_a_connect_error_naming_them(server, tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    client = tls_client(server.port, cert_file=str(bogus), key_file=str(bogus))
    with pytest.raises(ConnectError) as caught:
        client.connect()
    assert "bogus.pem" in str(caught.value)
    assert client.phase.value == "CLOSED"


def test_a_clients_certificate_files_are_read_once_per_options(start_server, tmp_path):
    """As the README says: once per ClientOptions, not per connection; new files need new options."""
    server = start_server(tls=SERVER_TLS)
    ca = tmp_path / "ca.pem"
    ca.write_bytes((CERTS / "ca.pem").read_bytes())
    options = ClientOptions(tls=ClientTLS(ca_file=str(ca)))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("first") == "first"
    ca.write_text("not a certificate")
    for attempt in range(2):  # the same options: what they read at the first connection
        with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
            assert client.echo(f"again {attempt}") == f"again {attempt}"
    client = Client("127.0.0.1", server.port, ClientOptions(tls=ClientTLS(ca_file=str(ca))), service=HandshakeService)
    with pytest.raises(ConnectError) as caught:
        client.connect()
    assert "ca.pem" in str(caught.value)


def test_a_client_without_the_certificate_mutual_tls_requires_is_told_so(start_server):
    server = start_server(tls=MUTUAL_TLS)
    client = tls_client(server.port)  # trusts the server, presents no certificate of its own
    with pytest.raises((ConnectError, ConnectionBroken), match="require.? a client certificate"):
        client.connect()


def test_an_idle_tls_session_waits_in_the_watch_and_outlives_the_request_timeout(start_server):
    server = start_server(tls=SERVER_TLS, limits=ServerLimits(request_timeout=0.3, idle_timeout=30))
    with tls_client(server.port) as client:
        assert client.echo("first") == "first"
        (connection,) = server._connections
        # nothing decrypted waits: the session goes back to the watch, no thread waits for a request
        assert eventually(lambda: connection.in_the_watch)
        assert connection.socket.stalled_since is None
        assert client.echo("second") == "second"
        assert eventually(lambda: connection.in_the_watch)


def test_a_tls_call_whose_rest_arrives_after_a_pause_is_served(start_server):
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport import TSSLSocket, TTransport

    from conftest import encode_call
    from thrift_handshake_gen.session.ttypes import ClientHello

    server = start_server(tls=SERVER_TLS, limits=ServerLimits(request_timeout=10, idle_timeout=30))
    sock = TSSLSocket.TSSLSocket("127.0.0.1", server.port, ca_certs=str(CERTS / "ca.pem"), server_hostname="localhost")
    transport = TTransport.TBufferedTransport(sock)
    stub = HandshakeService.Client(TBinaryProtocol(transport))
    transport.open()
    try:
        stub.hello(ClientHello(client_name="paused", min_version=1, max_version=2))
        call = encode_call("echo", HandshakeService.echo_args(message="paused"), seqid=2)
        sock.handle.sendall(call[:10])
        (served,) = server._connections
        assert eventually(lambda: served.socket.stalled_since is not None)  # waits for the rest
        sock.handle.sendall(call[10:])
        assert stub.recv_echo() == "paused"
    finally:
        transport.close()


def test_a_tls_call_without_timeout_is_not_cut_by_the_handshake_timeout(start_server):
    from thrift_handshake import Timeouts
    from thrift_handshake_gen.ttypes import Request

    server = start_server(tls=SERVER_TLS)
    options = ClientOptions(tls=ClientTLS(ca_file=str(CERTS / "ca.pem")), timeouts=Timeouts(handshake=0.3, call=None))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.process(Request(request_id="slow", payload="p", work_ms=700)).request_id == "slow"
        assert client.echo("after") == "after"
