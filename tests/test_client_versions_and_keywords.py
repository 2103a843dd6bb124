"""A client's hello at either end of its version range, and calls with keyword arguments (real servers on
127.0.0.1)."""

from __future__ import annotations

import pytest

from thrift_handshake import Client, ClientOptions
from thrift_handshake_gen import HandshakeService


@pytest.mark.parametrize("server_versions", [(1, 1), (2, 2)], ids=["lowest", "highest"])
def test_a_server_choosing_either_end_of_the_offered_range_is_accepted(start_server, server_versions):
    server = start_server(versions=server_versions)
    with Client("127.0.0.1", server.port, ClientOptions(versions=(1, 2)), service=HandshakeService) as client:
        assert client.version == server_versions[0]
        assert client.echo("v") == "v"


def test_keyword_arguments_reach_the_server(start_server):
    server = start_server()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo(message="by name") == "by name"
