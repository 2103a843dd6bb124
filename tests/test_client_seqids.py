"""The client numbers its requests 1, 2, ... (hello first) within Thrift's i32 sequence ids, and wraps to
1 after the largest, so a connection's calls never run out of numbers (a real server on 127.0.0.1)."""

from __future__ import annotations

from thrift_handshake import Client
from thrift_handshake_gen import HandshakeService


def test_sequence_ids_wrap_to_one_after_the_largest_i32(server):
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo("second") == "second"
        assert client._seqid == 2  # hello was 1
        client._seqid = 0x7FFFFFFE  # as after 2^31 - 2 requests
        assert client.echo("largest") == "largest"
        assert client._seqid == 0x7FFFFFFF
        assert client.echo("wrapped") == "wrapped"
        assert client._seqid == 1
