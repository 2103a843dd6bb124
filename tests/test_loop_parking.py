"""Where a connection waits after a message (server/loop.py): before hello it goes back to the watch at
once, holding no pool thread while its peer is silent (real servers on 127.0.0.1)."""

from __future__ import annotations

import socket

from conftest import encode_call, eventually
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import ServerLimits
from thrift_handshake_gen import HandshakeService


def test_after_a_message_before_hello_the_connection_waits_in_the_watch_not_on_a_thread(start_server):
    server = start_server(limits=ServerLimits(handshake_timeout=30))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="before hello")))
        protocol = TBinaryProtocol(TMemoryBuffer(sock.recv(65536)))
        _, _, seqid = protocol.readMessageBegin()
        result = HandshakeService.echo_result()
        result.read(protocol)
        assert seqid == 1 and result.handshake_required is not None
        # a thread reading on would hold it until the 30 s handshake deadline
        assert eventually(lambda: [c.phase for c in server.connections_now()] == ["WAITING"], timeout=3.0)

