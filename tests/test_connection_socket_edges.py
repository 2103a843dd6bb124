"""The server's connection socket (wire/connection_socket.py) at its edges, over real socket pairs: a
peer gone while a reply is written or before its first bytes tell, and a socket closed under it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator, List, Tuple

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

from thrift_handshake import ServerLimits
from thrift_handshake.wire import ConnectionSocket, NoMessageYet, is_reset
from thrift_handshake_gen import HandshakeService


@pytest.fixture
def pair() -> Iterator[Tuple[ConnectionSocket, socket.socket]]:
    """(the server's ConnectionSocket, the peer's end) of a socket pair."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    sock = ConnectionSocket()
    sock.setHandle(ours)
    yield sock, theirs
    sock.close()
    theirs.close()


def _given_up(action: Callable[[], object], peer: socket.socket) -> Tuple[bool, float, List[TTransportException]]:
    """Runs ``action`` on a thread: whether it still ran 10 s later, how long it took, and the transport errors it
    raised (``peer`` is closed then, which ends an action still blocked)."""
    failed: List[TTransportException] = []

    def run() -> None:
        try:
            action()
        except TTransportException as error:
            failed.append(error)

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    held, took = thread.is_alive(), time.monotonic() - started
    peer.close()
    thread.join(5)
    return held, took, failed


def _two_echo_replies(receive: Callable[[], bytes]) -> List[Tuple[int, str]]:
    """The first two echo replies read from ``receive()`` (the connection's bytes, decompressed or decrypted):
    each one's seqid and the exception it carries. A timeout of ``receive`` (5 s) fails the test: the second
    call was not seen."""
    received, replies = b"", []
    while len(replies) < 2:
        chunk = receive()
        assert chunk, f"closed after {replies}"
        received += chunk
        protocol = TBinaryProtocol(TMemoryBuffer(received))
        replies = []
        try:
            while True:
                _, _, seqid = protocol.readMessageBegin()
                result = HandshakeService.echo_result()
                result.read(protocol)
                protocol.readMessageEnd()
                replies.append((seqid, type(result.handshake_required).__name__))
        except EOFError:
            pass  # the rest has not arrived yet
    return replies


def test_a_reply_written_to_a_peer_that_is_gone_fails_as_a_reset(pair):
    sock, theirs = pair
    sock.start_session(ServerLimits(), linger=0.05)
    theirs.close()
    with pytest.raises(TTransportException, match="^write failed: ") as failed:
        sock.write(b"a reply")
    assert failed.value.type == TTransportException.UNKNOWN and is_reset(failed.value)


def test_closing_after_a_reply_timed_out_on_a_socket_already_closed_is_quiet(pair):
    sock, theirs = pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.start_session(ServerLimits(reply_timeout=0.1), linger=0.05)
    with pytest.raises(TTransportException, match="within reply_timeout"):
        sock.write(b"x" * (8 << 20))  # the peer reads none of it: the rest is to be reset at the close
    sock.handle.close()  # closed under it: setting SO_LINGER fails
    sock.close()
    assert sock.handle is None


def test_a_reply_its_peer_does_not_read_is_given_up_at_a_reply_timeout_of_seconds(pair):
    """The kernel's send timeout ends the first send with part of the reply out; the rest is due by
    reply_timeout after the reply's start, not at some other time (a timeout of more than a second)."""

    sock, theirs = pair
    sock.start_session(ServerLimits(reply_timeout=1.5), linger=0.05)
    # more than the socket buffers hold; the peer reads none of it
    held, took, failed = _given_up(lambda: sock.write(b"x" * (8 << 20)), theirs)
    assert not held, "the reply still held its thread 10 s later"
    assert 1.5 <= took < 6, took
    assert failed and failed[0].type == TTransportException.TIMED_OUT and "within reply_timeout" in str(failed[0])


@pytest.mark.parametrize("reply_timeout, signal_at", [(30.0, 0.3), (1.5, 0.6)], ids=["long", "last-second"])
def test_a_reply_whose_send_a_signal_cuts_short_is_sent_on_within_its_reply_timeout(pair, reply_timeout, signal_at):
    """A signal handled while the first send waits for the peer ends that send with part of the reply
    out, long before the kernel's timeout: the rest still has what is left of reply_timeout, be it
    under a second."""
    import signal

    sock, theirs = pair
    sock.start_session(ServerLimits(reply_timeout=reply_timeout), linger=0.05)
    reply = b"x" * (2 << 20)  # more than the socket buffers hold
    signalled = threading.Event()
    received = []

    def read_after_the_signal() -> None:
        signalled.wait(10)
        theirs.settimeout(10)
        while sum(map(len, received)) < len(reply):
            received.append(theirs.recv(1 << 20))

    reader = threading.Thread(target=read_after_the_signal)
    reader.start()
    handler = signal.signal(signal.SIGALRM, lambda *_: signalled.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, signal_at)  # to this (the main) thread, blocked in the send
        sock.write(reply)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        signalled.set()
        reader.join(15)
    assert b"".join(received) == reply
    started = time.monotonic()
    with pytest.raises(NoMessageYet):
        sock.read(4)  # nothing comes: the next message is awaited for the linger, as before the reply
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("request_timeout", [1.5, 0.1])
def test_the_rest_of_a_request_is_awaited_until_its_request_timeout(pair, request_timeout):
    """A message's first bytes start its request_timeout (over a second, or a tenth): a peer that
    stops there is given up that long after, not at some other time."""

    sock, theirs = pair
    sock.start_session(ServerLimits(request_timeout=request_timeout), linger=0.05)
    theirs.sendall(b"\x80\x01")
    assert sock.read(2) == b"\x80\x01"
    held, took, failed = _given_up(lambda: sock.read(10), theirs)  # the peer sends nothing more
    assert not held, "the rest was still awaited 10 s later"
    assert request_timeout * 0.6 <= took < request_timeout + 0.7, took
    assert failed and failed[0].type == TTransportException.TIMED_OUT


def test_a_peer_that_closes_before_its_first_bytes_tell_is_told_as_nothing(pair):
    sock, theirs = pair
    theirs.sendall(b"\x00\x00")
    theirs.shutdown(socket.SHUT_WR)
    assert sock.first_bytes() == (b"\x00\x00", None)
    assert sock.read(2) == b"\x00\x00", "read again by the transport"


def test_a_reply_its_peer_reads_a_trickle_of_is_given_up_at_its_reply_timeout(pair):
    """A Unix socket's kernel send timeout starts again whenever a few bytes move: a peer reading a
    kilobyte now and then must not hold a reply (and its thread) past reply_timeout."""

    sock, theirs = pair  # a Unix socket pair, as for serve --unix
    sock.start_session(ServerLimits(reply_timeout=1.0), linger=0.05)
    stop = threading.Event()

    def trickle() -> None:
        theirs.settimeout(0.05)
        while not stop.wait(0.02):  # pacing: a kilobyte now and then
            try:
                theirs.recv(1024)
            except socket.timeout:
                pass
        theirs.shutdown(socket.SHUT_RDWR)  # a reply still going fails now

    reader = threading.Thread(target=trickle)
    reader.start()
    threading.Timer(10, stop.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(TTransportException, match="within reply_timeout") as failed:
            sock.write(b"x" * (2 << 20))  # more than the socket buffers hold
        took = time.monotonic() - started
    finally:
        stop.set()
        reader.join(5)
    assert failed.value.type == TTransportException.TIMED_OUT
    assert took < 3, f"the trickle held the reply {took:.1f} s, past its 1 s reply_timeout"


def test_first_bytes_that_come_in_pieces_are_read_up_to_the_sniffed_ten(pair):

    sock, theirs = pair
    sent = b"\x00\x00\x00" + bytes(range(1, 21))
    theirs.sendall(sent[:3])  # not enough to tell: the rest is awaited
    rest = threading.Thread(target=lambda: (time.sleep(0.3), theirs.sendall(sent[3:])))  # pacing, not a proof
    rest.start()
    data, _ = sock.first_bytes()
    rest.join()
    assert data == sent[:10], "no more than the ten bytes a dialect is told from"
    assert sock.read(64) == sent[:10], "read again by the transport"
    assert sock.read(64) == sent[10:]


def test_two_calls_in_one_zlib_flush_before_hello_are_both_answered_without_more_input(start_server):
    """As the TLS case below, with the bytes held above the socket by the zlib stream's inflater: the
    first call ends where the transport's 4 KiB reads end (after the 10 sniffed bytes)."""
    import zlib

    from conftest import encode_call


    server = start_server(detect_wire=True)
    first = encode_call("echo", HandshakeService.echo_args(message="x" * (10 + 4096 - 24)), seqid=1)
    assert len(first) == 10 + 4096
    calls = first + encode_call("echo", HandshakeService.echo_args(message="second"), seqid=2)
    deflate = zlib.compressobj()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(deflate.compress(calls) + deflate.flush(zlib.Z_SYNC_FLUSH))  # one flush
        inflate = zlib.decompressobj()
        replies = _two_echo_replies(lambda: inflate.decompress(sock.recv(65536)))
    assert replies == [(1, "HandshakeRequired"), (2, "HandshakeRequired")]


def test_a_session_call_held_in_the_zlib_inflater_is_served_in_its_turn_when_others_wait(start_server):
    """In a session, with every thread busy and another connection waiting for one, a connection goes
    back to the watch after a message unless more of its input is already here: the next call of one
    zlib flush, held in the inflater where the watch cannot see it, is served in the same turn."""
    import zlib

    from conftest import encode_call, eventually

    from thrift_handshake import Client
    from thrift_handshake.demo import HandshakeHandler
    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello
    from thrift_handshake_gen.ttypes import Request

    class Held(HandshakeHandler):
        def __init__(self) -> None:
            super().__init__()
            self.holding, self.release = threading.Event(), threading.Event()

        def process(self, request):
            if request.request_id == "held":
                self.holding.set()
                self.release.wait(10)
            return super().process(request)

    handler = Held()
    server = start_server(handler, detect_wire=True, limits=ServerLimits(max_threads=1))
    hello = encode_call("hello", SessionService.hello_args(hello=ClientHello(client_name="z", min_version=1, max_version=2)))
    pad = 4096 - len(encode_call("process", HandshakeService.process_args(request=Request(request_id="held", payload=""))))
    held = encode_call("process", HandshakeService.process_args(request=Request(request_id="held", payload="p" * pad)), seqid=2)
    assert len(held) == 4096  # one of the transport's reads: none of the next call is read with it
    deflate, inflate = zlib.compressobj(), zlib.decompressobj()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock, \
            Client("127.0.0.1", server.port, service=HandshakeService) as other:
        received = b""

        def replies() -> list:
            protocol, found = TBinaryProtocol(TMemoryBuffer(received)), []
            try:
                for result in (SessionService.hello_result(), HandshakeService.process_result(),
                               HandshakeService.echo_result()):
                    _, _, seqid = protocol.readMessageBegin()
                    result.read(protocol)
                    protocol.readMessageEnd()
                    found.append(seqid)
            except EOFError:
                pass
            return found

        def receive_until(count: int) -> None:
            nonlocal received
            while len(replies()) < count:
                chunk = sock.recv(65536)  # a timeout here (5 s) fails the test
                assert chunk, f"closed after {replies()}"
                received += inflate.decompress(chunk)

        sock.sendall(deflate.compress(hello) + deflate.flush(zlib.Z_SYNC_FLUSH))
        receive_until(1)
        sock.sendall(deflate.compress(held + encode_call("echo", HandshakeService.echo_args(message="next"), seqid=3))
                     + deflate.flush(zlib.Z_SYNC_FLUSH))  # one flush
        assert handler.holding.wait(5)  # the other's hello was answered when it connected
        waiting = threading.Thread(target=other.echo, args=("other",))
        waiting.start()  # its call waits for the only thread
        assert eventually(lambda: server._loop._pool().saturated)
        handler.release.set()
        try:
            receive_until(3)
        finally:
            handler.release.set()
            waiting.join(10)
        assert replies() == [1, 2, 3]


def test_two_calls_in_one_tls_record_before_hello_are_both_answered_without_more_input(start_server):
    """Before hello the server waits in its watch once the transport has nothing unread, unless TLS
    holds decrypted bytes: the first call ends exactly where the transport's 4 KiB reads end (after the
    10 sniffed bytes), and the second was decrypted with it, in the same record."""
    import ssl
    from pathlib import Path

    from conftest import encode_call

    from thrift_handshake import ServerTLS

    certs = Path(__file__).resolve().parent / "certs"
    server = start_server(tls=ServerTLS(str(certs / "server.pem"), str(certs / "server.key")))
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    first = encode_call("echo", HandshakeService.echo_args(message="x" * (10 + 4096 - 24)), seqid=1)
    assert len(first) == 10 + 4096
    calls = first + encode_call("echo", HandshakeService.echo_args(message="second"), seqid=2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(calls)  # one write: one TLS record
        replies = _two_echo_replies(lambda: sock.recv(65536))
    assert replies == [(1, "HandshakeRequired"), (2, "HandshakeRequired")]
