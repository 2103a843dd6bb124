"""The handshake as the server enforces it: negotiation, auth, second hello, calls before hello."""

from __future__ import annotations

import pytest

from thrift_handshake import Client, ClientOptions, ClientPhase, HandshakeFailed
from thrift_handshake.session import negotiate_version
from thrift_handshake_gen.ttypes import AllTypes, Event, Request
from thrift_handshake_gen.session.ttypes import HandshakeRejected, HandshakeRequired
from thrift_handshake_gen import HandshakeService


@pytest.mark.parametrize(
    "client_range, chosen",
    [((1, 1), 1), ((1, 2), 2), ((2, 2), 2), ((1, 9), 2), ((0, 1), 1), ((2, 5), 2)],
)
def test_negotiation_picks_the_highest_common_version(connect, client_range, chosen):
    client = connect(versions=client_range)
    assert client.version == chosen
    assert client.server_hello.version == chosen


@pytest.mark.parametrize("client_range", [(2, 1), (-5, -1)])
def test_a_range_that_is_not_one_is_refused_before_connecting(client_range):
    with pytest.raises(ValueError, match="versions must be a range"):
        ClientOptions(versions=client_range)


def test_the_server_refuses_a_range_that_is_not_one(raw):
    with pytest.raises(HandshakeRejected) as caught:
        raw().hello(min_version=2, max_version=1)
    assert "greater than" in caught.value.reason


@pytest.mark.parametrize("client_range", [(3, 4), (0, 0)])
def test_no_common_version_is_rejected_with_the_server_range(server, client_range):
    client = Client("127.0.0.1", server.port, ClientOptions(versions=client_range), service=HandshakeService)
    with pytest.raises(HandshakeFailed) as caught:
        client.connect()
    rejected = caught.value.rejected
    assert isinstance(rejected, HandshakeRejected)
    assert (rejected.min_version, rejected.max_version) == (1, 2)
    assert rejected.reason
    assert client.phase is ClientPhase.CLOSED


def test_negotiate_version_edges():
    assert negotiate_version((1, 2), (1, 2)) == 2
    assert negotiate_version((2, 2), (1, 3)) == 2
    for bad in [(None, 2), (1, None), (3, 1), (4, 8)]:
        with pytest.raises(ValueError):
            negotiate_version(bad, (1, 2))


def test_server_hello_describes_the_session(client, server):
    hello = client.server_hello
    assert len(hello.session_id) >= 16
    assert hello.server_name == "thrift-handshake"
    assert hello.idle_timeout_ms == server.config.limits.idle_timeout * 1000
    assert hello.max_message_bytes == server.config.limits.max_message_bytes
    assert hello.server_time_ms > 1_600_000_000_000


def test_features_are_the_intersection(connect):
    client = connect(features={"submit", "timing", "teleport"})
    assert client.server_hello.features == {"submit", "timing"}
    assert connect().server_hello.features == set()


def test_sessions_are_distinct_per_connection(connect):
    assert connect().session_id != connect().session_id


def test_second_hello_is_rejected_and_the_session_stays(raw):
    connection = raw()
    first = connection.hello()
    with pytest.raises(HandshakeRejected) as caught:
        connection.hello(client_name="again")
    assert first.session_id in caught.value.reason
    assert connection.stub.process(Request(request_id="r", payload="x")).session_id == first.session_id


def test_second_hello_through_the_client_keeps_it_ready(client):
    session = client.session_id
    with pytest.raises(HandshakeRejected):
        client.call("hello", None)
    assert client.phase is ClientPhase.READY
    assert client.process(Request(request_id="r", payload="")).session_id == session


@pytest.mark.parametrize(
    "method, args",
    [
        ("echo", ("x",)),
        ("process", (Request(request_id="r"),)),
        ("submit", (Request(request_id="r"),)),
        ("get_result", ("t", 0)),
        ("echo_types", (AllTypes(id="x"),)),
        ("stats", ()),
        ("fail", ("x",)),
        ("goodbye", ()),
    ],
)
def test_every_method_needs_hello_and_the_connection_stays_usable(raw, method, args):
    connection = raw()
    with pytest.raises(HandshakeRequired) as caught:
        getattr(connection.stub, method)(*args)
    assert method in caught.value.message
    connection.stub.ping()
    assert connection.hello().version == 2
    if method != "goodbye":
        assert connection.stub.echo("now") == "now"


def test_ping_works_before_hello(raw):
    connection = raw()
    assert connection.stub.ping() is None
    assert connection.stub.ping() is None


def test_notify_before_hello_is_dropped_not_counted(raw, client, server):
    connection = raw()
    connection.stub.notify(Event(name="early", payload=""))
    connection.stub.ping()  # the oneway message was read before this reply
    assert client.stats().notifications == 0
    assert server.handler.recent_events == []


def test_missing_client_name_is_rejected(raw):
    with pytest.raises(HandshakeRejected) as caught:
        raw().hello(client_name="")
    assert "client_name" in caught.value.reason


def test_rejections_are_counted(server, client):
    with pytest.raises(HandshakeFailed):
        Client("127.0.0.1", server.port, ClientOptions(versions=(7, 8)), service=HandshakeService).connect()
    assert client.stats().handshakes_rejected == 1


class TestAuthToken:
    TOKEN = "s3cret-token"

    @pytest.fixture
    def secured(self, start_server):
        return start_server(auth_token=self.TOKEN)

    def test_right_token_opens_a_session(self, secured):
        with Client("127.0.0.1", secured.port, ClientOptions(auth_token=self.TOKEN), service=HandshakeService) as client:
            assert client.echo("in") == "in"

    @pytest.mark.parametrize("token, reason", [(None, "requires an auth token"), ("wrong", "wrong auth token")])
    def test_missing_or_wrong_token_is_rejected(self, secured, token, reason):
        client = Client("127.0.0.1", secured.port, ClientOptions(auth_token=token), service=HandshakeService)
        with pytest.raises(HandshakeFailed) as caught:
            client.connect()
        assert reason in caught.value.rejected.reason
        assert self.TOKEN not in str(caught.value)


@pytest.mark.parametrize("fields, reason", [
    ({"client_name": "n" * 257}, "client_name and language are limited to 256 characters"),
    ({"language": "l" * 257}, "client_name and language are limited to 256 characters"),
    ({"features": {f"f{i}" for i in range(65)}}, "at most 64 features of 256 characters each"),
    ({"features": {"f" * 257}}, "at most 64 features of 256 characters each"),
])
def test_oversized_hello_fields_are_rejected(raw, fields, reason):
    with pytest.raises(HandshakeRejected) as caught:
        raw().hello(**fields)
    assert caught.value.reason == reason
