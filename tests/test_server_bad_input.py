"""Bad input from a peer: oversized, undecodable or misdirected messages are refused with a reason and
hurt no one else; a flood of them cannot flood the log."""

from __future__ import annotations

import time

import pytest
from conftest import encode_call, eventually, report_reliability

from thrift_handshake import (
    Client,
    ClientPhase,
    RemoteApplicationError,
    ServerLimits,
    Wire,
)
from thrift_handshake_gen.ttypes import AllTypes
from thrift_handshake_gen import HandshakeService


@pytest.mark.parametrize("accelerated", [True, False], ids=["C extension", "pure Python"])
def test_oversized_message_is_refused_with_a_protocol_error(start_server, accelerated):
    server = start_server(limits=ServerLimits(max_message_bytes=1024), wire=Wire(accelerated=accelerated))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo("x" * 1000) == "x" * 1000
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x" * 5000)
        assert caught.value.type == 7  # PROTOCOL_ERROR
        assert "exceeds this server's limits (max_message_bytes=1024" in str(caught.value)
        assert client.phase is ClientPhase.BROKEN
    with Client("127.0.0.1", server.port, service=HandshakeService) as fresh:
        assert fresh.echo("server fine") == "server fine"


def test_an_oversized_request_gets_its_refusal_even_while_still_sending(start_server):
    server = start_server(limits=ServerLimits(max_message_bytes=1024))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x" * 8_000_000)
        assert caught.value.type == 7 and "limit" in str(caught.value)


def test_a_container_over_max_container_items_is_refused_with_a_protocol_error(start_server):
    server = start_server(limits=ServerLimits(max_container_items=100))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert len(client.echo_types(AllTypes(id="ok", numbers=list(range(100)))).numbers) == 100
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo_types(AllTypes(id="big", numbers=list(range(101))))
        assert caught.value.type == 7


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"\x82\x21\x00\x04ping\x00",  # compact protocol
        b"\x00\x00\x00\x10\x80\x01\x00\x01\x00\x00\x00\x04ping",  # framed
        b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x00\x0b\x00\x01\xff\xff\xff\xff",  # bad length
        bytes(range(256)) * 4,
    ],
)
def test_garbage_first_bytes_leave_other_clients_served(server, client, send_raw, garbage):
    send_raw(server.port, garbage)
    assert client.echo("still here") == "still here"


def test_a_non_call_message_is_refused(server, client, send_raw):
    import struct as wire

    name = b"echo"
    reply_type_message = wire.pack("!I", 0x80010002) + wire.pack("!I", len(name)) + name + wire.pack("!i", 0) + b"\0"
    assert b"not a call" in send_raw(server.port, reply_type_message)
    assert client.echo("fine") == "fine"


def test_a_malformed_message_after_a_good_one_is_reported_as_what_it_is(server, raw, caplog):
    connection = raw(server.port)
    connection.hello()
    assert connection.stub.echo("good") == "good"
    connection.socket.handle.sendall(b"\x80\x07\x00\x01\x00\x00\x00\x04echo")  # version 7: not binary 1
    with caplog.at_level("WARNING", logger="thrift_handshake.server"):
        assert eventually(lambda: any("bad message" in r.getMessage() for r in list(caplog.records))), \
            "the server did not report the bad message"
    line = next(r.getMessage() for r in caplog.records if "bad message" in r.getMessage())
    assert "TProtocolException" in line and "TypeError" not in line, line


def test_a_reply_the_handler_cannot_encode_fails_that_call_only(start_server):
    from thrift_handshake.demo import HandshakeHandler

    class WrongType(HandshakeHandler):
        def echo(self, message):
            return 12345 if message == "bad" else message

    server = start_server(WrongType())
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("bad")
        assert caught.value.type == 6 and "encode the echo reply" in str(caught.value)
        assert client.echo("fine") == "fine"
        assert client.phase is ClientPhase.READY


def test_a_flood_of_bad_connections_cannot_flood_the_log(server, send_raw, caplog):
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="thrift_handshake.server"):
        for _ in range(150):
            send_raw(server.port, b"junk that is not thrift")
        assert eventually(lambda: server.connection_count == 0)  # every junk connection handled
        time.sleep(1.05)  # into the next second: the suppressed ones are summarised there
        send_raw(server.port, b"one more junk")
        assert eventually(lambda: any("suppressed" in r.getMessage() for r in list(caplog.records))), \
            "the suppressed warnings were not summarised"
    warnings = [r for r in caplog.records if r.name == "thrift_handshake.server" and r.levelname == "WARNING"]
    seconds = time.monotonic() - started
    assert len(warnings) <= 21 * (int(seconds) + 2), f"{len(warnings)} warning lines in {seconds:.1f} s"
    report_reliability("150 junk connections in a burst (log lines rate-limited)", 150, True, 0)


def test_one_way_calls_before_hello_are_logged_once_per_connection(server, send_raw, caplog):
    from thrift_handshake_gen.ttypes import Event

    notify = encode_call("notify", HandshakeService.notify_args(event=Event(name="n", payload="p")), message_type=4)
    with caplog.at_level("DEBUG", logger="thrift_handshake.calllog"):
        send_raw(server.port, notify * 300)  # 300 one-way calls before hello on one connection
        assert eventually(lambda: server.metrics.snapshot().calls.get("notify", 0) >= 300)
    lines = [r for r in caplog.records if r.name == "thrift_handshake.calllog" and r.levelname == "WARNING"]
    assert len(lines) == 1 and "further drops on this connection are not logged" in lines[0].getMessage()



def test_a_message_over_max_message_bytes_is_refused_when_it_arrives_in_pieces(start_server, raw):
    """The budget counts the whole message, not each read: the rest of a message that arrives after a
    pause may only make it up to the limit."""
    from thrift.Thrift import TApplicationException

    server = start_server(limits=ServerLimits(max_message_bytes=1024, request_timeout=10))
    connection = raw(server.port)
    connection.hello()
    call = encode_call("echo", HandshakeService.echo_args(message="x" * 1010), seqid=2)
    assert len(call) == 1034  # no string over the limit, the whole message 10 bytes over
    handle = connection.socket.handle
    handle.sendall(call[:600])
    assert eventually(lambda: any(c.socket.stalled_since is not None for c in server._connections))
    handle.sendall(call[600:])
    with pytest.raises(TApplicationException) as refused:
        connection.stub.recv_echo()
    assert refused.value.type == TApplicationException.PROTOCOL_ERROR
    assert refused.value.message == "cannot decode the echo request: a message of more than 1024 bytes (max_message_bytes)"
