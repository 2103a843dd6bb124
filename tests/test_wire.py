"""Both protocols and both transports on one port, THeader too; every wrong combination explained."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from conftest import eventually, exchange, report_reliability
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket
from thrift.transport.THeaderTransport import THeaderClientType

from thrift_handshake.config import TRANSPORTS
from thrift_handshake import (
    Client,
    ClientOptions,
    ClientPhase,
    ClientTLS,
    ConnectError,
    ConnectionBroken,
    Wire,
    WireMismatch,
)
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.wire import sniff
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello

CERTS = Path(__file__).resolve().parent / "certs"
WIRES = [Wire(p, t, accelerated) for p in ("binary", "compact") for t in TRANSPORTS
         for accelerated in (True, False)]


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_one_port_serves_every_thrift_dialect(server, wire):
    with Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
        assert client.echo("请求数据") == "请求数据"
        assert client.stats().sessions_active >= 1


def test_one_port_serves_a_theader_client(server):
    sock = TSocket.TSocket("127.0.0.1", server.port)
    protocol = THeaderProtocol(sock, (THeaderClientType.HEADERS,))
    stub = HandshakeService.Client(protocol)
    sock.open()
    try:
        hello = stub.hello(ClientHello(client_name="header", min_version=1, max_version=2))
        assert hello.version == 2
        assert stub.echo("over THeader") == "over THeader"
        assert stub.goodbye().calls == 1
    finally:
        sock.close()


@pytest.mark.parametrize("client_wire", [Wire("compact", "framed"), Wire("binary", "framed"), Wire("compact"),
                                         Wire("binary", "header")], ids=str)
def test_a_server_of_one_dialect_tells_another_what_it_speaks(start_server, client_wire):
    server = start_server(detect_wire=False)
    client = Client("127.0.0.1", server.port, ClientOptions(wire=client_wire), service=HandshakeService)
    with pytest.raises(WireMismatch) as caught:
        client.connect()
    speaks = "THeader" if client_wire.transport == "header" else f"{client_wire.transport} {client_wire.protocol}"
    expected = f"the client speaks {speaks}; this server speaks Thrift buffered binary"
    assert expected in str(caught.value)
    assert client.phase.value == "CLOSED"


def test_a_peer_of_another_dialect_with_a_frame_over_the_limit_is_told_to_its_call(start_server):
    """Refused by its frame's length before the frame is read, it still gets the mismatch answer, to the
    call its frame starts (as a full server answers), instead of a silent close."""
    from thrift.protocol.TCompactProtocol import TCompactProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport.TTransport import TFramedTransport, TMemoryBuffer

    server = start_server(detect_wire=False)
    too_large = server.config.limits.max_message_bytes + 1
    answer = exchange(server.port, struct.pack("!i", too_large) + b"\x82\x21\x09\x04echo\x00")
    protocol = TCompactProtocol(TFramedTransport(TMemoryBuffer(answer)))
    assert protocol.readMessageBegin() == ("echo", TMessageType.EXCEPTION, 9)
    error = TApplicationException()
    error.read(protocol)
    assert error.type == TApplicationException.INVALID_PROTOCOL
    assert error.message == "the client speaks framed compact; this server speaks Thrift buffered binary"


def test_an_http_get_gets_an_http_answer_that_explains(server, caplog):
    answer = exchange(server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 Method Not Allowed")  # Thrift over HTTP is POST (test_http_server)
    assert b"This is a Thrift server" in body and b"application/vnd.apache.thrift.json" in body
    assert eventually(lambda: any("GET / is not a Thrift call" in record.getMessage() for record in caplog.records))


def test_http_on_a_port_serving_one_wire_only_is_refused_with_400(start_server, caplog):
    server = start_server(detect_wire=False)
    answer = exchange(server.port, b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n[]")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"not an HTTP server" in body and b"Thrift" in body
    assert any("the client speaks HTTP" in record.getMessage() for record in caplog.records)


def test_a_tls_client_on_a_plain_port_learns_it_from_its_own_error(server):
    options = ClientOptions(tls=ClientTLS(ca_file=str(CERTS / "ca.pem"), server_hostname="localhost"))
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    with pytest.raises(ConnectError, match="does not speak TLS on this port"):
        client.connect()


def test_an_unknown_binary_version_is_answered_in_binary(server):
    answer = exchange(server.port, b"\x80\x02\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x00\x00")
    assert answer[:4] == b"\x80\x01\x00\x03"  # strict binary, version 1, an EXCEPTION message
    assert b"binary protocol version 2" in answer


def test_junk_is_logged_and_closed(server, caplog):
    assert exchange(server.port, b"hello there, server") == b""
    assert any("nothing it recognises" in r.getMessage() or "not Thrift" in r.getMessage()
               for r in caplog.records)


def test_a_client_talking_to_an_http_server_is_told_so():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def http_server():
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=http_server)
        thread.start()
        client = Client("127.0.0.1", port, service=HandshakeService)
        with pytest.raises(ConnectionBroken, match="the server answered with HTTP"):
            client.connect()
        thread.join(5)


def test_sniff_tells_the_dialects_apart():
    assert str(sniff(b"\x80\x01\x00\x01")) == "buffered binary"
    assert str(sniff(b"\x82\x21")) == "buffered compact"
    assert str(sniff(b"\x00\x00\x00\x20\x80\x01")) == "framed binary"
    assert str(sniff(b"\x00\x00\x00\x20\x82\x21")) == "framed compact"
    assert str(sniff(b"\x00\x00\x00\x20\x0f\xff")) == "THeader"
    assert str(sniff(b"POST /x HTTP/1.1")) == "HTTP"
    assert str(sniff(b"\x16\x03\x01\x00\xa5")) == "TLS"
    assert str(sniff(b"\x15\x03\x03\x00\x02")) == "TLS"  # an alert record: a TLS server refusing a plain client
    assert sniff(b"\x80") is None and sniff(b"\x00\x00\x00") is None  # not enough yet


@pytest.mark.parametrize("wire", [w for w in WIRES if w.accelerated], ids=str)
def test_both_ends_decode_through_the_c_extension(start_server, wire):
    """The generated code decodes in C only when the protocol has the C decoder and its transport is a
    CReadableTransport; anything else silently falls back to pure Python (2.6x slower for structs)."""
    from thrift.protocol import fastbinary
    from thrift.transport.TTransport import CReadableTransport

    decoder = fastbinary.decode_compact if wire.protocol == "compact" else fastbinary.decode_binary
    server = start_server(wire=wire, detect_wire=False)
    server_side = server.inputProtocolFactory.getProtocol(server.inputTransportFactory.getTransport(None))
    with Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
        client_side = client._stub._iprot
        for end, protocol in (("server", server_side), ("client", client_side)):
            assert protocol._fast_decode.c_decode is decoder, f"the {end} decodes {wire} in pure Python"
            assert isinstance(protocol.trans, CReadableTransport), f"the {end}'s transport hides the C path"


def _header_stub(port: int, transform: bool = False):
    from thrift.transport.THeaderTransport import THeaderTransformID

    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(5000)
    protocol = THeaderProtocol(sock, (THeaderClientType.HEADERS,))
    if transform:
        protocol.trans.add_transform(THeaderTransformID.ZLIB)
    sock.open()
    return sock, HandshakeService.Client(protocol)


def test_theader_compression_is_refused(server):
    """A zlib frame lets a few bytes decode to megabytes past every byte budget: refused."""
    sock, stub = _header_stub(server.port, transform=True)
    try:
        with pytest.raises(TApplicationException) as refused:
            stub.hello(ClientHello(client_name="zlib", min_version=1, max_version=2))
        assert refused.value.type == TApplicationException.PROTOCOL_ERROR
        assert refused.value.message == ("cannot decode the request: THeader transform 1 is not accepted by this "
                                         "server (compression)")
    finally:
        sock.close()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo("still serving") == "still serving"
    report_reliability("a THeader frame with zlib (compression bomb) refused", 1, True, 0)


def _stub(port: int, wire: Wire):
    """A generated client over Thrift's own stack for ``wire`` (no thrift_handshake client)."""
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.transport import TTransport
    from thrift.transport.THeaderTransport import THeaderSubprotocolID

    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(5000)
    if wire.transport == "header":
        protocol_id = THeaderSubprotocolID.COMPACT if wire.protocol == "compact" else THeaderSubprotocolID.BINARY
        protocol = THeaderProtocol(sock, (THeaderClientType.HEADERS,), protocol_id)
    else:
        transport = (TTransport.TFramedTransport if wire.transport == "framed" else TTransport.TBufferedTransport)(sock)
        module = TCompactProtocol if wire.protocol == "compact" else TBinaryProtocol
        protocol = getattr(module, f"T{wire.protocol.title()}Protocol{'Accelerated' if wire.accelerated else ''}")(
            transport)
    sock.open()
    return sock, HandshakeService.Client(protocol)


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_every_dialect_meets_the_same_read_limits(start_server, wire):
    """max_container_items holds for every protocol and transport a client may pick on one port."""
    from thrift_handshake import ServerLimits
    from thrift_handshake_gen.ttypes import AllTypes

    server = start_server(limits=ServerLimits(max_container_items=100))
    sock, stub = _stub(server.port, wire)
    try:
        stub.hello(ClientHello(client_name=str(wire), min_version=1, max_version=2))
        assert len(stub.echo_types(AllTypes(id="ok", numbers=list(range(100)))).numbers) == 100
        with pytest.raises(TApplicationException) as refused:
            stub.echo_types(AllTypes(id="big", numbers=list(range(101))))
        assert refused.value.type == TApplicationException.PROTOCOL_ERROR
        assert refused.value.message == ("cannot decode the echo_types request: a string, binary or container "
                                         "exceeds this server's limits (max_message_bytes=16777216, "
                                         "max_container_items=100)")
    finally:
        sock.close()


def test_both_tls_contexts_refuse_versions_before_tls_1_2():
    """Checked on the contexts: this machine's OpenSSL refuses TLS 1.0 and 1.1 at its default security
    level anyway, so a handshake would not notice a server context that allowed them."""
    import ssl

    from thrift_handshake import ServerTLS
    from thrift_handshake.wire import server_tls_context
    from thrift_handshake.wire.tls import client_tls_context

    server_tls = ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key"))
    assert server_tls_context(server_tls).minimum_version is ssl.TLSVersion.TLSv1_2
    assert client_tls_context(ClientTLS(ca_file=str(CERTS / "ca.pem"))).minimum_version is ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_the_client_reads_no_reply_over_max_reply_bytes(server, wire):
    """The reply's string (buffered) or frame (framed, THeader) over the limit is refused before it is
    read; the request, as large, is sent (the limit is the reply's)."""
    client = Client("127.0.0.1", server.port, ClientOptions(wire=wire, max_reply_bytes=1000), service=HandshakeService)
    client.connect()
    assert client.echo("x" * 900) == "x" * 900
    with pytest.raises(ConnectionBroken) as refused:
        client.echo("x" * 1001)
    if wire.transport != "buffered":
        frame = 1001 + {("framed", "compact"): 13, ("framed", "binary"): 24, ("header", "compact"): 27,
                        ("header", "binary"): 38}[wire.transport, wire.protocol]  # the reply's header and stop
        assert f"Frame size ({frame}) larger than the maximum (1000)" in str(refused.value)
    elif wire.accelerated:
        assert "size exceeded specified limit: 1000" in str(refused.value)
    else:
        assert "Length exceeded max allowed: 1000" in str(refused.value)
    assert str(refused.value).endswith(": the reply is over this client's limits (ClientOptions.max_reply_bytes=1000 "
                                       "per string, binary or frame, max_reply_items=1000000 per container)")
    assert client.phase is ClientPhase.BROKEN


class _Tenfold(HandshakeHandler):
    def echo(self, message):
        return message * 10


@pytest.mark.parametrize("wire", [w for w in WIRES if w.accelerated], ids=str)
def test_a_reply_larger_than_max_message_bytes_is_sent_in_every_dialect(start_server, wire):
    """max_message_bytes bounds what a peer sends; the server's replies are the handler's to size, in
    THeader as in the other dialects (Thrift's THeader transport applies its frame limit to writes)."""
    from thrift_handshake import ServerLimits

    server = start_server(_Tenfold(), limits=ServerLimits(max_message_bytes=1024))
    sock, stub = _stub(server.port, wire)
    try:
        stub.hello(ClientHello(client_name=str(wire), min_version=1, max_version=2))
        assert stub.echo("y" * 200) == "y" * 2000
        assert stub.echo("z") == "z" * 10  # and the connection goes on
    finally:
        sock.close()
