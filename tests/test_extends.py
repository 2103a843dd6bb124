"""A user's own service that extends HandshakeService gets the session layer unchanged."""

from __future__ import annotations


import pytest
from conftest import generated
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport import TSocket, TTransport

from thrift.Thrift import TApplicationException

from thrift_handshake.demo import HandshakeHandler
from thrift_handshake import (
    Client,
    ClientOptions,
    HandshakeServer,
    RemoteApplicationError,
    ServerConfig,
    current_session,
)
from thrift_handshake_gen.session.ttypes import HandshakeRequired

USER_IDL = """
include "handshake.thrift"
include "session.thrift"
namespace py user_service_gen
service Shouter extends handshake.HandshakeService {
  string shout(1: string text) throws (1: session.HandshakeRequired handshake_required),
  string whisper(1: string text),
}
"""


class ShouterHandler(HandshakeHandler):
    def shout(self, text):
        if current_session().version >= 2:
            return text.upper() + "!"
        return text.upper()

    def whisper(self, text):
        return text.lower()


@pytest.fixture(scope="module")
def shouter(tmp_path_factory):
    with generated(tmp_path_factory.mktemp("user-gen"), "shouter.thrift", USER_IDL, "user_service_gen.Shouter") as module:
        yield module


@pytest.fixture
def shouter_server(shouter):
    server = HandshakeServer(ShouterHandler(), ServerConfig(port=0), service=shouter).start()
    yield server
    server.stop()


def test_extended_service_has_sessions_and_its_own_methods(shouter, shouter_server):
    with Client("127.0.0.1", shouter_server.port, service=shouter) as client:
        assert client.shout("hi") == "HI!"
        assert client.echo("base method") == "base method"
        assert client.stats().calls["shout"] == 1
    with Client("127.0.0.1", shouter_server.port, ClientOptions(versions=(1, 1)), service=shouter) as v1:
        assert v1.shout("hi") == "HI"


def test_extended_methods_are_gated_before_hello(shouter, shouter_server):
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", shouter_server.port))
    stub = shouter.Client(TBinaryProtocolAccelerated(transport))
    transport.open()
    try:
        with pytest.raises(HandshakeRequired):
            stub.shout("x")
        # whisper does not declare HandshakeRequired: the refusal arrives as a TApplicationException
        with pytest.raises(TApplicationException) as caught:
            stub.whisper("x")
        assert "whisper() needs a completed hello()" in caught.value.message
        stub.ping()
    finally:
        transport.close()


def test_remote_errors_through_an_extended_client(shouter, shouter_server):
    with Client("127.0.0.1", shouter_server.port, service=shouter) as client:
        with pytest.raises(RemoteApplicationError):
            client.fail("x")
        assert client.whisper("QUIET") == "quiet"
