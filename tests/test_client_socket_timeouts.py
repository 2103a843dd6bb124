"""The client's call timeout on its socket (wire/sockets.py's CountingSocket): armed at the socket's
first exchange however short it is, and kept a timeout under TLS (real servers on 127.0.0.1)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from thrift_handshake import CallTimeout, Client, ClientOptions, ClientTLS, ServerTLS, Timeouts
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

CERTS = Path(__file__).resolve().parent / "certs"
SLOW = Request(request_id="slow", payload="p", work_ms=1500)
TIMED_OUT = "^process: no reply within the timeout; the connection is closed$"


def test_a_first_call_with_a_timeout_shorter_than_the_re_arming_slack_still_times_out(start_server):
    # no hello: the call is the socket's first exchange; its 30 ms differ from "no timeout yet" (0) by
    # less than the 50 ms slack, so only "not armed on this socket yet" says the timeout must be set
    server = start_server(handshake=False)
    options = ClientOptions(handshake=False, timeouts=Timeouts(call=0.03))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=TIMED_OUT):
            client.process(SLOW)
        assert time.monotonic() - started < 1.4  # its 30 ms, not the handler's 1.5 s


def test_a_tls_call_times_out_as_a_timeout(start_server):
    server = start_server(tls=ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key")))
    options = ClientOptions(timeouts=Timeouts(call=0.5), tls=ClientTLS(ca_file=str(CERTS / "ca.pem")))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=TIMED_OUT):
            client.process(SLOW)
        assert time.monotonic() - started < 1.4  # its half second, not the handler's 1.5 s





def test_a_tls_reply_its_peer_does_not_read_is_dropped_at_the_reply_timeout(start_server):
    """A TLS session's socket keeps Python's timeout mode: a reply's writes must switch it from the
    request's deadline (30 s here) to reply_timeout (0.5 s), or a peer that reads nothing holds the
    reply (and its thread) for the rest of the request's time."""
    import socket
    import ssl

    from conftest import encode_call, eventually

    from thrift_handshake import ServerLimits
    from thrift_handshake.demo import HandshakeHandler

    class Large(HandshakeHandler):
        def echo(self, message):
            return message * (8 << 20)  # more than the socket buffers hold

    server = start_server(Large(), handshake=False, limits=ServerLimits(request_timeout=30, reply_timeout=0.5),
                          tls=ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key")))
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="x")))  # and reads nothing
        assert eventually(lambda: server.connections_now() == [], timeout=8.0)


def test_a_tls_reply_its_peer_reads_late_is_waited_for_up_to_the_reply_timeout(start_server):
    """The other way round: reply_timeout (5 s) longer than what is left of the request's deadline
    (0.3 s): a peer that starts reading its reply after 0.8 s still gets all of it."""
    import socket
    import ssl

    from conftest import encode_call

    from thrift_handshake import ServerLimits
    from thrift_handshake.demo import HandshakeHandler

    size = 8 << 20

    class Large(HandshakeHandler):
        def echo(self, message):
            return message * size  # more than the socket buffers hold

    server = start_server(Large(), handshake=False, limits=ServerLimits(request_timeout=0.3, reply_timeout=5),
                          tls=ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key")))
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="x")))
        time.sleep(0.8)  # pacing: the reader comes late (what is checked is that the whole reply comes)
        received = 0
        while received < size:
            chunk = sock.recv(1 << 20)
            assert chunk, f"cut off after {received} bytes"
            received += len(chunk)


@pytest.fixture
def counting_pair():
    """(a CountingSocket connected on 127.0.0.1, the peer's end), for the socket's exchanges alone."""
    import socket

    from thrift_handshake.wire import CountingSocket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # the peer's, fixed: it does not grow
        sock = CountingSocket("127.0.0.1", listener.getsockname()[1])
        sock.open()
        peer, _ = listener.accept()
    peer.settimeout(10)
    with peer:
        yield sock, peer
        sock.close()


def _timed_exchange(sock, peer, timeout: float) -> None:
    """A request and a one-byte reply within ``timeout``: the socket's kernel timeouts are armed."""
    sock.begin_exchange(timeout)
    sock.write(b"ping")
    assert peer.recv(4) == b"ping"
    peer.sendall(b"p")
    assert sock.read(1) == b"p"


def _later(seconds: float, action):
    import threading

    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))  # pacing, not a proof
    thread.start()
    return thread


def test_a_read_without_a_deadline_after_a_timed_exchange_waits_as_long_as_it_takes(counting_pair):
    # a pipelined reply read with no deadline of its own, right after a timed one: nothing written between
    sock, peer = counting_pair
    _timed_exchange(sock, peer, 0.3)
    sock.expect_reply(None)
    answering = _later(1.0, lambda: peer.sendall(b"late"))
    assert sock.read(4) == b"late", "the last exchange's 0.3 s bounded this read"
    answering.join()


def test_a_write_without_a_deadline_after_a_timed_exchange_waits_for_a_slow_reader(counting_pair):
    import socket

    sock, peer = counting_pair
    _timed_exchange(sock, peer, 0.3)
    sock.handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)  # fixed, as the peer's
    request = b"x" * (4 << 20)  # more than they hold
    received = []

    def read_all() -> None:
        while sum(map(len, received)) < len(request):
            received.append(peer.recv(1 << 20))

    # later than the last exchange's 0.3 s, and than two sends of a second each (each may move a few bytes)
    reading = _later(3.5, read_all)
    sock.begin_exchange(None)
    sock.write(request)
    reading.join()
    assert b"".join(received) == request


def test_a_short_timeout_after_a_long_one_is_armed_anew(counting_pair):
    # 25 ms after 2 s: the kernel timeout must be set again, however small the two are multiplied
    from thrift.transport.TTransport import TTransportException

    from thrift_handshake.wire import is_timeout

    sock, peer = counting_pair
    _timed_exchange(sock, peer, 2.0)
    sock.begin_exchange(0.025)
    started = time.monotonic()
    with pytest.raises(TTransportException) as failed:
        sock.read(1)  # the peer sends nothing
    assert is_timeout(failed.value)
    assert time.monotonic() - started < 1.0, "the last exchange's 2 s bounded the read"
