"""A client with a retry policy that its user closed stays closed (real servers on 127.0.0.1)."""

from __future__ import annotations

import pytest

from thrift_handshake import Client, ClientOptions, PhaseError, RetryPolicy
from thrift_handshake.states import ClientPhase
from thrift_handshake_gen import HandshakeService


def test_a_closed_client_with_a_retry_policy_does_not_reopen_by_itself(start_server):
    server = start_server()
    client = Client("127.0.0.1", server.port, ClientOptions(retry=RetryPolicy(idempotent={"echo"})),
                    service=HandshakeService)
    client.connect()
    assert client.echo("open") == "open"
    client.close()
    with pytest.raises(PhaseError, match="call connect"):
        client.echo("closed")
    assert client.phase is ClientPhase.CLOSED


def test_a_client_with_a_retry_policy_never_connected_does_not_connect_by_itself(start_server):
    """Retries reconnect a client that was connected; one never connected is told to connect."""
    server = start_server()
    client = Client("127.0.0.1", server.port, ClientOptions(retry=RetryPolicy(idempotent={"echo"})),
                    service=HandshakeService)
    with pytest.raises(PhaseError, match="call connect"):
        client.echo("never connected")
    assert client.phase is ClientPhase.NEW
    assert server.metrics.snapshot().connections_total == 0
