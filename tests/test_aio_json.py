"""JSON (TJSONProtocol) over buffered and framed TCP on the asyncio server and from AsyncClient, now that
``wire.MessageFramer`` cuts JSON messages. The threaded server's tests of the same cells run here
unchanged against the asyncio server (the ``server`` and ``start_server`` fixtures of tests/on_asyncio.py
start it). HTTP: test_aio_http.py."""

from __future__ import annotations

import asyncio
import socket

import pytest
from thrift.protocol import TJSONProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport

from conftest import read_until_closed
from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_http_server import (  # noqa: F401 (run here against the asyncio server)
    json_message, test_apache_json_over_plain_tcp_is_served_on_the_same_port, test_this_clients_json_over_plain_tcp)

from thrift_handshake import ClientOptions, ServerConfig, ServerLimits, Wire
from thrift_handshake.aio import AsyncClient
from thrift_handshake.demo import demo_server
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Color, Point, Shape

JSON_WIRES = [Wire(protocol="json", transport=transport) for transport in ("buffered", "framed")]
RICH = AllTypes(id="ä-id", flag=True, text='a]"}\\[{ 文字', data=b"\x00\xff", color=Color.BLUE,
                shape=Shape(polygon=[Point(1, 2, "a"), Point(-3, 4)]), numbers=list(range(-10, 10)),
                tags={"x", "y"}, counts={"k": -1}, groups={"g": [Point(1, 2)], "empty": []}, layers=[{"s": {1, 2}}, {}],
                palette={1: Color.RED}, blobs=[b"", b"\x80" * 20])


@pytest.mark.parametrize("wire", JSON_WIRES, ids=str)
def test_the_async_client_pipelines_json_calls_to_the_asyncio_server(server, wire: Wire) -> None:
    async def calls() -> list:
        async with AsyncClient("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
            echoed = await asyncio.gather(*(client.echo(f"{index}]\"\\") for index in range(20)))
            return [*echoed, await client.echo_types(RICH)]

    *echoed, rich = asyncio.run(calls())
    assert echoed == [f"{index}]\"\\" for index in range(20)]
    assert rich == RICH


@pytest.mark.parametrize("wire", JSON_WIRES, ids=str)
def test_the_async_client_speaks_json_to_the_threaded_server(wire: Wire) -> None:
    threaded = demo_server(ServerConfig(host="127.0.0.1", port=0)).start()

    async def call() -> str:
        async with AsyncClient("127.0.0.1", threaded.port, ClientOptions(wire=wire), service=HandshakeService) as client:
            return await client.echo("über JSON")

    try:
        assert asyncio.run(call()) == "über JSON"
    finally:
        threaded.stop()


def test_a_json_message_over_max_message_bytes_is_refused_by_name_and_the_connection_closed(start_async) -> None:  # noqa: F811
    server = start_async(optional_hello=True, limits=ServerLimits(max_message_bytes=1000))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(json_message("echo", HandshakeService.echo_args("x" * 5000), seqid=9))
        reply = read_until_closed(sock, 5.0)
    protocol = TJSONProtocol.TJSONProtocol(TTransport.TMemoryBuffer(reply))
    name, _, seqid = protocol.readMessageBegin()
    refused = TApplicationException()
    refused.read(protocol)
    assert (name, seqid, refused.type) == ("echo", 9, TApplicationException.PROTOCOL_ERROR)
    assert "max_message_bytes" in refused.message


def test_a_server_of_one_wire_tells_a_json_client_in_json(start_async) -> None:  # noqa: F811
    server = start_async(detect_wire=False)
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", server.port))
    stub = HandshakeService.Client(TJSONProtocol.TJSONProtocol(transport))
    transport.open()
    try:
        with pytest.raises(TApplicationException) as refused:
            stub.echo("hi")
    finally:
        transport.close()
    assert refused.value.type == TApplicationException.INVALID_PROTOCOL
    assert refused.value.message == "the client speaks buffered json; this server speaks Thrift buffered binary"
