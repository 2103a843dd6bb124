"""What a client says when an exchange fails: the server's silence or a reply it cannot decode is not
blamed on the client's own reply limits (real listeners on 127.0.0.1)."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Callable

import pytest

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from thrift_handshake import Client, ClientOptions, ConnectionBroken, Endpoints, ServerFull, Wire, WireMismatch
from thrift_handshake.client_core import WENT_AWAY, ServerNotice, broken_error, over_size_limit, refusal_error
from thrift_handshake_gen import HandshakeService


def _hello_failure(answer: Callable[[socket.socket], None], options: ClientOptions = ClientOptions()) -> str:
    """The error of a client whose hello ``answer`` (a peer on 127.0.0.1, after reading it) answers."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            answer(connection)
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.raises(ConnectionBroken) as caught:
            Client("127.0.0.1", listener.getsockname()[1], options, service=HandshakeService).connect()
    finally:
        thread.join(5)
        listener.close()
    return str(caught.value)


def test_a_server_that_closes_without_answering_is_said_to_and_not_blamed_on_the_reply_limits():
    message = _hello_failure(lambda connection: None)
    assert "the server closed the connection without answering" in message
    assert "max_reply_bytes" not in message


def test_a_reply_of_an_unknown_type_is_not_blamed_on_the_reply_limits():
    def unknown_type(connection: socket.socket) -> None:
        name = b"hello"  # a REPLY to hello, seqid 1, whose struct starts with a field of type 99
        connection.sendall(struct.pack("!iI", -2147418112 | 2, len(name)) + name + struct.pack("!ibh", 1, 99, 0))
        connection.recv(16)
    message = _hello_failure(unknown_type, ClientOptions(wire=Wire(accelerated=False)))
    assert "invalid TType: the server's answer is not a reply this client can decode" in message
    assert "max_reply_bytes" not in message


def test_a_client_of_several_endpoints_starts_at_the_first():
    client = Client(Endpoints([("127.0.0.1", 9101), ("127.0.0.2", 9102)]), service=HandshakeService)
    assert (client.host, client.port) == ("127.0.0.1", 9101)


@pytest.mark.parametrize("message_type", [1, 4], ids=["CALL", "ONEWAY"])
def test_an_answer_that_is_a_call_or_one_way_is_not_taken_as_the_reply(message_type):
    def calls_back(connection: socket.socket) -> None:
        name = b"hello"
        connection.sendall(struct.pack("!iI", -2147418112 | message_type, len(name)) + name
                           + struct.pack("!ib", 1, 0))
        connection.recv(16)
    message = _hello_failure(calls_back)
    assert f"the answer to hello has message type {message_type}, not a reply (2) or an exception (3)" in message


@pytest.mark.parametrize("name, seqid, named, message_type", [
    (b"echo", 7, "echo", 2), (b"", 1, "?", 2), (b"echo", 7, "echo", 3), (b"", 0, "?", 2),
], ids=["stale", "unnamed", "stale-exception", "unnamed-seqid-0-reply"])
def test_a_reply_to_another_call_is_named_with_its_seqid_and_the_call_it_is_not(name, seqid, named, message_type):
    """Only an EXCEPTION named "" with seqid 0 is the server's notice; any other answer that is not the
    call's is a stale or foreign reply."""
    def answers_another(connection: socket.socket) -> None:
        connection.sendall(struct.pack("!iI", -2147418112 | message_type, len(name)) + name
                           + struct.pack("!ib", seqid, 0))
        connection.recv(16)
    message = _hello_failure(answers_another)
    assert (f"the reply is for {named} (seqid {seqid}), the call was hello (seqid 1): a stale or foreign reply"
            in message)


@pytest.mark.parametrize("kind", [TApplicationException.PROTOCOL_ERROR, TApplicationException.INVALID_TRANSFORM,
                                  TApplicationException.UNSUPPORTED_CLIENT_TYPE])
def test_only_an_invalid_protocol_first_answer_is_a_wire_mismatch(kind):
    """A first answer is a refusal when it says "server full" or INVALID_PROTOCOL (what this server sends
    another wire); any other exception (a foreign server's UNSUPPORTED_CLIENT_TYPE) is not one."""
    mismatch = refusal_error("peer:1", TApplicationException(TApplicationException.INVALID_PROTOCOL, "speaks compact"))
    assert type(mismatch) is WireMismatch and str(mismatch) == "peer:1: speaks compact"
    full = refusal_error("peer:1", TApplicationException(TApplicationException.INTERNAL_ERROR, "server full (64)"))
    assert type(full) is ServerFull and str(full) == "peer:1: server full (64)"
    assert refusal_error("peer:1", TApplicationException(kind, "no")) is None


def test_only_thrifts_size_errors_are_taken_for_the_reply_limits():
    """Thrift's C extension says "size exceeded" with an OverflowError; no other OverflowError, and no
    other error saying so, is blamed on ``max_reply_bytes``."""
    assert over_size_limit(OverflowError("size exceeded specified limit: 1000"))
    assert not over_size_limit(OverflowError("Python int too large to convert to C long"))
    assert not over_size_limit(ValueError("size exceeded, said a handler"))
    assert over_size_limit(TTransportException(TTransportException.SIZE_LIMIT, "frame"))
    assert over_size_limit(TProtocolException(TProtocolException.SIZE_LIMIT, "string"))
    for other in (TTransportException(TTransportException.INVALID_CLIENT_TYPE, "x"),
                  TTransportException(TTransportException.END_OF_FILE, "x"),
                  TProtocolException(TProtocolException.BAD_VERSION, "x"),
                  TProtocolException(TProtocolException.NEGATIVE_SIZE, "x")):
        assert not over_size_limit(other), other


def test_a_call_broken_by_the_servers_notice_did_not_run_and_other_broken_calls_may_have():
    notice = ServerNotice(TProtocolException.INVALID_DATA, "the server closed the session: draining")
    broken = broken_error("echo", notice, ClientOptions(), b"", True)
    assert broken.may_have_run is False
    assert str(broken) == ("echo: the server closed the session: draining; the call did not run; "
                           "reconnect() to try again")
    assert broken_error("echo", EOFError("gone"), ClientOptions(), b"", True).may_have_run is True


def test_a_server_that_answered_before_and_then_closes_went_away():
    from test_client_phases import _reply, loopback_peer

    def answers_once(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(_reply("echo", HandshakeService.echo_result(success="x"), seqid=1))
        connection.recv(4096)  # the second call: never answered
    with loopback_peer(answers_once) as port:
        client = Client("127.0.0.1", port, ClientOptions(handshake=False), service=HandshakeService)
        client.connect()
        assert client.echo("x") == "x"
        with pytest.raises(ConnectionBroken) as caught:
            client.echo("y")
        client.close()
    assert str(caught.value).endswith(f": {WENT_AWAY}")


@pytest.mark.parametrize("kind, broken", [(TApplicationException.PROTOCOL_ERROR, True),
                                          (TApplicationException.INVALID_TRANSFORM, False)],
                         ids=["protocol-error", "invalid-transform"])
def test_only_a_protocol_error_answer_breaks_the_connection(kind, broken):
    """The server closes after answering PROTOCOL_ERROR, so the client gives the connection up; any other
    application exception is an answer like a reply."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport.TTransport import TMemoryBuffer

    from test_client_phases import loopback_peer
    from thrift_handshake import ClientPhase, RemoteApplicationError

    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin("echo", TMessageType.EXCEPTION, 1)
    TApplicationException(kind, "no").write(protocol)
    protocol.writeMessageEnd()

    def refuses(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(buffer.getvalue())
        connection.recv(4096)

    with loopback_peer(refuses) as port:
        client = Client("127.0.0.1", port, ClientOptions(handshake=False), service=HandshakeService)
        client.connect()
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x")
        assert caught.value.error.type == kind
        assert client.phase is (ClientPhase.BROKEN if broken else ClientPhase.READY)
        client.close()


@pytest.mark.parametrize("kind, words", [(TApplicationException.INVALID_PROTOCOL, "another wire"),
                                         (TApplicationException.INTERNAL_ERROR, "server full: of words")],
                         ids=["invalid-protocol", "server-full-words"])
def test_without_hello_only_the_first_answer_can_be_a_refusal(start_server, kind, words):
    """A refusal (server full, another wire) is the first answer on a connection: a handler's own
    application exception that looks like one, later, is that handler's error and the connection stays."""
    from thrift_handshake import ClientPhase, RemoteApplicationError
    from thrift_handshake.demo import HandshakeHandler

    class LooksLikeARefusal(HandshakeHandler):
        def echo(self, message: str) -> str:
            if message == "refuse":
                raise TApplicationException(kind, words)
            return message

    server = start_server(handler=LooksLikeARefusal(), handshake=False)
    with Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService) as client:
        assert client.echo("first") == "first"
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("refuse")
        assert type(caught.value) is RemoteApplicationError and words in str(caught.value)
        assert client.phase is ClientPhase.READY and client.echo("after") == "after"
