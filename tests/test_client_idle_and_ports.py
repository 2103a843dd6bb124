"""What a client says about its idle session and which ports it takes (real servers on 127.0.0.1)."""

from __future__ import annotations

import time

import pytest
from conftest import eventually

from thrift_handshake import Client, ConnectionBroken, ServerLimits
from thrift_handshake.client_core import idle_error, idle_limit
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ServerHello


def test_the_idle_error_names_the_servers_limit_in_seconds_and_idle_time_counts_from_the_last_call(start_server):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        client.echo("active")
        assert 0 <= client.idle_seconds < 0.3
        assert eventually(lambda: server.connection_count == 0, timeout=3)  # closed by the server
        assert client.idle_seconds >= 0.3
        with pytest.raises(ConnectionBroken) as caught:
            client.echo("too late")
    assert "the server closes sessions idle for 0.3 s; call reconnect()" in str(caught.value)


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_a_port_outside_1_to_65535_is_refused_when_the_client_is_made(port):
    with pytest.raises(ValueError, match=f"port must be 1..65535, not {port}"):
        Client("127.0.0.1", port, service=HandshakeService)


@pytest.mark.parametrize("port", [1, 65535])
def test_the_first_and_last_ports_are_taken(port):
    assert Client("127.0.0.1", port, service=HandshakeService).port == port


def test_timeline_starts_count_from_the_clients_epoch(start_server):
    server = start_server()
    made = time.perf_counter()
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    assert made <= client.epoch <= time.perf_counter()
    with client:
        client.echo("x")
    for record in client.timeline:
        assert made <= client.epoch + record.start <= time.perf_counter()


@pytest.mark.parametrize("idle_timeout_ms, seconds", [(1, 0.001), (1500, 1.5), (0, None), (-1, None), (None, None)])
def test_the_idle_limit_is_the_servers_idle_timeout_in_seconds_and_none_without_one(idle_timeout_ms, seconds):
    assert idle_limit(ServerHello(idle_timeout_ms=idle_timeout_ms)) == seconds


def test_a_session_idle_for_exactly_the_servers_limit_is_past_it():
    assert idle_error("echo", 1.4999, 1.5) is None
    assert str(idle_error("echo", 1.5, 1.5)) == ("echo: the session was idle 1.5 s and the server closes sessions idle "
                                                 "for 1.5 s; call reconnect()")
    assert idle_error("echo", 99.0, None) is None
