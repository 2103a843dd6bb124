"""The heap memory a large turn of messages freed is given back to the system by the server itself (the
RSS measurements are in test_memory_after_hello.py; this checks the decision, in process)."""

from __future__ import annotations

import pytest
from conftest import eventually

from thrift_handshake import Client, ClientOptions
from thrift_handshake.memory import give_back
from thrift_handshake_gen import HandshakeService


@pytest.mark.skipif(not give_back(), reason="memory can be given back only with glibc's malloc_trim")
def test_a_turn_that_moved_a_mebibyte_or_more_gives_its_memory_back(start_server):
    server = start_server(handshake=False)
    memory = server._loop.memory
    assert memory.given_back == 0
    with Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService) as client:
        big = "Z" * (512 * 1024)
        assert client.echo(big) == big  # the connection's first turn: 1 MiB in and out together
        assert eventually(lambda: memory.given_back == 1)  # on the watch's tick, once releases stopped
