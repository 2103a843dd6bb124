"""Unframed (buffered) requests priced before they are decoded, in-process servers on loopback: both
decoders, compact, a large honest call pipelined with the next one.
(Issue 18; tests/test_memory_after_hello.py measures the server's memory in its own process)."""

from __future__ import annotations

import socket
import struct

import pytest
from conftest import encode_call, read_until_closed
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport import TSocket, TTransport

from thrift_handshake import Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import AllTypes, Point


def _list_of_empty_structs(count: int) -> bytes:
    """echo_types(AllTypes{groups: {"g": [Point() x count]}}) in strict binary, written by hand."""
    return (struct.pack("!iI", -2147418112 | TMessageType.CALL, 10) + b"echo_types" + struct.pack("!i", 7)
            + struct.pack("!bh", 12, 1) + struct.pack("!bhbbi", 13, 19, 11, 15, 1)
            + struct.pack("!i", 1) + b"g" + struct.pack("!bi", 12, count) + b"\0" * count + b"\0\0")


def _stock_client(port: int, protocol=TBinaryProtocol):
    """Apache Thrift's own client after hello (it keeps its connection after an exception answer)."""
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", port))
    client = HandshakeService.Client(protocol(transport))
    transport.open()
    client.hello(ClientHello(client_name="stock", min_version=1, max_version=2))
    return transport, client


@pytest.mark.parametrize("accelerated", [True, False], ids=["C decoder", "pure Python"])
def test_an_unframed_request_too_big_decoded_is_refused_by_either_decoder(start_server, accelerated):
    server = start_server(wire=Wire(accelerated=accelerated))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer:
        peer.sendall(encode_call("hello", SessionService.hello_args(
            hello=ClientHello(client_name="raw", min_version=1, max_version=2))))
        assert peer.recv(65536)
        peer.sendall(_list_of_empty_structs(1_000_000))  # 1 MB on the wire, about 158 MB decoded
        answer = read_until_closed(peer)  # the answer, then the end of the connection
    protocol = TBinaryProtocol(TTransport.TMemoryBuffer(answer))
    assert protocol.readMessageBegin() == ("echo_types", TMessageType.EXCEPTION, 7)
    refused = TApplicationException()
    refused.read(protocol)
    assert refused.type == TApplicationException.PROTOCOL_ERROR
    assert refused.message == (
        "cannot decode the echo_types request: the request would take over 158 MB decoded; one client host may "
        "hold 67 MB (decoded_host_share of max_decoded_bytes=268435456)")


def _large_values():
    """Honest requests over the 64 KiB left unpriced, one per shape of what the walk meets."""
    points = AllTypes(id="points", groups={"g": [Point(x=index, y=-index) for index in range(20_000)]})
    text = AllTypes(id="text", text="語" * 40_000, data=bytes(range(256)) * 400)  # one long string, one binary
    many = AllTypes(id="many", tags={f"t{index}" for index in range(5_000)}, numbers=list(range(-30_000, 30_000)),
                    counts={f"c{index}": index * 2**40 for index in range(3_000)},
                    layers=[{f"k{index}": {index, -index}} for index in range(2_000)], blobs=[b"\0\xff"] * 9_000)
    return [points, text, many]


@pytest.mark.parametrize("accelerated", [True, False], ids=["C decoder", "pure Python"])
@pytest.mark.parametrize("protocol", [TBinaryProtocol, TCompactProtocol], ids=["binary", "compact"])
def test_large_honest_unframed_calls_are_served_whole_and_the_next_one_pipelined_behind_them(start_server, protocol,
                                                                                              accelerated):
    wire = Wire(protocol="compact" if protocol is TCompactProtocol else "binary", accelerated=accelerated)
    server = start_server(wire=wire, detect_wire=False)
    transport, client = _stock_client(server.port, protocol)
    try:
        for value in _large_values():
            client.send_echo_types(value)  # written to the buffer, not flushed: both go out in one write
            client.send_echo("behind")
            transport.flush()
            assert client.recv_echo_types() == value
            assert client.recv_echo() == "behind"
        assert server.processor.decoded_budget.used == 0  # every price given back with its reply
    finally:
        transport.close()
