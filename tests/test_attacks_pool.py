"""Attacks on the pool server (epoll watch + bounded pool threads), from the outside, on loopback.

Each test here failed on the first version of the pool server (a fresh-eyed attack found them) and
guards its fix, so each checks that the good client IS served: slow peers cannot starve the pool (it adds threads when every one is stuck), a
descriptor closed behind the server's back cannot unwatch a newcomer that reused its number, the
expiry sweep keeps connections parked while it runs, and a TLS handshake in progress is interrupted by
stop() and by eviction.

Tried and held up (no test kept): 25k connect/close/RST/half-close/partial storms against 6 clients
echoing unique strings (pipelined hello and fast close mixed): no reply on a wrong connection; stop()
with slowloris, partial requests, non-reading peers, 50 idle sessions and 5 s process() calls in flight
(grace 2 s): 2.5 s, no thread left; eviction of plain-TCP no-hello peers frees their threads; strict
UTF-8 (message, map keys/values, surrogates, overlong) answered PROTOCOL_ERROR by C and pure-Python
decoders over binary/compact, buffered/framed and THeader; two clients streaming pipelined calls with
max_threads=2 do not starve a third; --workers 3: SIGKILL of a worker mid-calls (restarted, others
serve), SIGTERM with 8 process(2 s) calls in flight (all answered, exit 0 in 1.4 s).
A method name that is invalid UTF-8, once closed without any answer, is now answered with a
PROTOCOL_ERROR naming it (test_undecodable_values.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import encode_call, eventually
from thrift_handshake import Client, ClientOptions, ClientTLS, ServerFull, ServerLimits, ServerTLS, Timeouts
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import Request

CERTS = Path(__file__).resolve().parent / "certs"
SERVER_TLS = ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key"))
QUICK = Timeouts(connect=2.0, handshake=2.0, call=2.0)
HELLO = encode_call("hello", SessionService.hello_args(
    hello=ClientHello(min_version=1, max_version=2, client_name="attacker")))


def good_client_echo(port: int, tls: bool = False) -> float:
    """A well-behaved client: connect, hello, echo, goodbye; returns the seconds it took (raises on failure)."""
    options = ClientOptions(timeouts=QUICK, tls=ClientTLS(ca_file=str(CERTS / "ca.pem")) if tls else None)
    started = time.monotonic()
    with Client("127.0.0.1", port, options, service=HandshakeService) as client:
        assert client.call("echo", "still served") == "still served"
    return time.monotonic() - started


@contextlib.contextmanager
def held_connections() -> Iterator[List[socket.socket]]:
    """A list for an attack's connections, every one closed at the end whatever happened."""
    held: List[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def raw_session(port: int) -> socket.socket:
    """A raw connection whose hello succeeded (its answer read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HELLO)
    sock.recv(65536)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(65536) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


class _SlowOn(logging.Handler):
    """A log handler that is slow on one kind of line (a remote syslog, a full disk): it sets ``seen``
    and blocks the logging thread for ``seconds``. Used to widen a race window deterministically."""

    def __init__(self, needle: str, seconds: float) -> None:
        super().__init__(logging.DEBUG)
        self.needle, self.seconds = needle, seconds
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage() and not self.seen.is_set():
            self.seen.set()
            time.sleep(self.seconds)


@pytest.fixture
def slow_log():
    handlers: List[_SlowOn] = []
    log = logging.getLogger("thrift_handshake.server")
    level = log.level

    def install(needle: str, seconds: float) -> _SlowOn:
        handler = _SlowOn(needle, seconds)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        handlers.append(handler)
        return handler

    yield install
    for handler in handlers:
        log.removeHandler(handler)
    log.setLevel(level)


# -- 1. slowloris before hello: one byte per connection holds a pool thread for handshake_timeout --------


def test_one_byte_per_connection_does_not_starve_a_good_client_with_default_limits(start_server):
    server = start_server()  # default limits: max_threads 60, handshake_timeout 10 s
    with held_connections() as attackers:
        for _ in range(server.config.limits.max_threads):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"\x80")  # the start of a strict-binary header: the sniffer waits for more
            attackers.append(sock)
        assert eventually(lambda: server.connection_count == len(attackers))
        good_client_echo(server.port)  # every pool thread waits on an attacker: the pool adds one for it


def test_a_partial_hello_slowloris_does_not_starve_a_good_client(start_server):
    server = start_server(limits=ServerLimits(max_threads=4, handshake_timeout=8.0))
    with held_connections() as attackers:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(HELLO[:len(HELLO) // 2])
            attackers.append(sock)
        assert eventually(lambda: sum(1 for c in server._connections if c.in_flight) == 4)  # each holds a thread
        good_client_echo(server.port)


# -- 2. after hello: a partial request, or a peer that never reads, holds a thread for minutes ---------


def test_partial_requests_after_hello_do_not_starve_a_good_client(start_server):
    server = start_server(limits=ServerLimits(max_threads=2))
    with held_connections() as attackers:
        for _ in range(2):
            sock = raw_session(server.port)
            sock.sendall(encode_call("echo", HandshakeService.echo_args(message="x" * 100))[:20])
            attackers.append(sock)
        assert eventually(lambda: sum(1 for c in server._connections if c.in_flight) == 2)  # each holds a thread
        good_client_echo(server.port)


def test_peers_that_never_read_do_not_starve_a_good_client(start_server):
    server = start_server(limits=ServerLimits(max_threads=2))
    attackers = []
    stop = threading.Event()
    big = encode_call("echo", HandshakeService.echo_args(message="x" * 200_000))

    def pump(sock: socket.socket) -> None:
        try:
            while not stop.is_set():
                sock.sendall(big)
        except OSError:
            pass

    pumps = []
    try:
        for _ in range(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(HELLO)
            sock.recv(65536)
            sock.settimeout(10)
            attackers.append(sock)
            pumps.append(threading.Thread(target=pump, args=(sock,), daemon=True))
            pumps[-1].start()
        time.sleep(1.0)  # both send buffers full: the two pool threads sit in sendall
        good_client_echo(server.port)
    finally:
        stop.set()
        for sock in attackers:
            sock.close()
        for thread in pumps:
            thread.join(5)


# -- 3. fd reuse: a failed TLS handshake unregisters the NEXT connection that got its fd number -------


def test_failed_tls_handshake_does_not_unregister_next_connection(start_server, slow_log):
    server = start_server(tls=SERVER_TLS, limits=ServerLimits(handshake_timeout=5.0))
    # The window between the close (inside wrap_socket) and watch.remove() is the warning's logging;
    # a slow handler widens it (any scheduling delay does too: a storm hits it a few times a second).
    slow = slow_log("TLS handshake failed", 0.5)
    # the good client's socket exists before the fd is freed (in this one process it would take the
    # lowest free number itself): the server's accept() gets the freed number
    good = socket.socket()
    bad = socket.create_connection(("127.0.0.1", server.port))
    try:
        bad.sendall(b"\x16\x03\x01\x00\x08" + b"\x01\x00\x00\x04abcd")  # a TLS record, not a ClientHello
        assert slow.seen.wait(5)
        good.settimeout(3)
        good.connect(("127.0.0.1", server.port))
        context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
        tls = context.wrap_socket(good, server_hostname="localhost")
        tls.sendall(HELLO)
        assert tls.recv(65536)  # hello answered (served before the failed connection's _release)
        assert eventually(lambda: len(server._connections) == 1, 5)  # the failed connection's _release() ran
        tls.sendall(encode_call("echo", HandshakeService.echo_args(message="still served"), seqid=2))
        assert b"still served" in tls.recv(65536)  # times out: nobody watches this connection any more
    finally:
        bad.close()
        good.close()


# Tried without the slow handler: 4 threads of bad TLS records + 4 good TLS clients (separate sockets) for
# 15 s: 2-4 good clients of ~1200 hang (CallTimeout) and "a pool task failed ... rearm ...
# FileNotFoundError" is logged (the newcomer's rearm after its fd was unregistered).


# -- 4. the expiry sweep loses a connection that parks while it runs ---------------------------------


def test_idle_timeout_enforced_for_connection_parked_during_sweep(start_server, slow_log):
    server = start_server(limits=ServerLimits(handshake_timeout=0.5, idle_timeout=1.0))
    session = raw_session(server.port)
    try:
        # a 1 s call: not parked when the sweep takes its snapshot, parked while the sweep still runs
        session.sendall(encode_call("process", HandshakeService.process_args(
            request=Request(request_id="r", payload="p", work_ms=1000)), seqid=2))
        time.sleep(0.1)
        slow = slow_log("handshake timeout", 1.5)  # the sweep's drop of the silent peer below is slow
        silent = socket.create_connection(("127.0.0.1", server.port))  # expires at +0.5 s: a sweep
        try:
            assert slow.seen.wait(3)
            session.settimeout(3)
            assert session.recv(65536)  # the process() reply; the session parks (idle deadline +1 s)
            # the sweep ends after this; with the idle timeout kept, the session is closed by ~+1.2 s
            assert closed_by_server(session, within=4.0), "idle session never closed (idle_timeout=1s)"
        finally:
            silent.close()
    finally:
        session.close()


# -- 5. a TLS handshake in progress cannot be interrupted (stop, eviction) -------------------------------


def half_client_hello() -> bytes:
    """The first half of a real TLS ClientHello: the server's wrap_socket() waits for the rest."""
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[:len(hello) // 2]


def stuck_in_tls_handshakes(port: int, count: int) -> List[socket.socket]:
    """``count`` connections that sent half a ClientHello: each server thread waits for the rest."""
    stuck = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        stuck.append(sock)
        sock.sendall(half_client_hello())
    return stuck


def pool_threads(server) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"thrift-handshake:{server.port} ") and t.is_alive()]


def test_stop_interrupts_a_tls_handshake_in_progress(start_server):
    server = start_server(tls=SERVER_TLS, grace=0.5, limits=ServerLimits(handshake_timeout=8.0))
    # Closing the attackers at the end ends the stuck handshakes, so the fixture's thread check passes either way.
    with held_connections() as attackers:
        attackers += stuck_in_tls_handshakes(server.port, 2)
        assert eventually(lambda: len(pool_threads(server)) >= 2)  # both handshakes under way on a thread
        server.stop()
        assert server.connection_count == 0
        assert eventually(lambda: not pool_threads(server)), "pool threads still in a TLS handshake after stop()"


def test_eviction_frees_a_connection_stuck_in_its_tls_handshake(start_server):
    server = start_server(tls=SERVER_TLS, limits=ServerLimits(max_threads=4, max_connections=6, handshake_timeout=8.0,
                                                              evict_after=0.2))
    with held_connections() as attackers:
        attackers += stuck_in_tls_handshakes(server.port, 4)
        time.sleep(0.3)
        for _ in range(3):  # each newcomer evicts one stuck attacker (plain TCP: this works)
            good_client_echo(server.port, tls=True)
            assert server.connection_count <= 6


# -- 7. a peer that reads its reply a trickle at a time ---------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_reply_must_be_read_whole_within_the_reply_timeout(start_server, tls, caplog):
    # The kernel's send timeout (and Python's, per send on TLS) restarts whenever a few bytes move: a
    # peer reading 16 KiB every 0.3 s held a pool thread and an 8 MiB reply for minutes.
    server = start_server(tls=SERVER_TLS if tls else None, limits=ServerLimits(reply_timeout=1.0))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.connect(("127.0.0.1", server.port))
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    peer = context.wrap_socket(raw, server_hostname="localhost") if tls else raw
    try:
        peer.settimeout(5)
        peer.sendall(encode_call("hello", SessionService.hello_args(
            hello=ClientHello(client_name="trickle", min_version=1, max_version=2))))
        peer.recv(65536)
        peer.sendall(encode_call("echo", HandshakeService.echo_args(message="Z" * (8 << 20)), seqid=2))
        started, ended = time.monotonic(), None
        while time.monotonic() - started < 6:
            time.sleep(0.3)
            try:
                if not peer.recv(16384):
                    ended = "EOF"
                    break
            except OSError as error:  # reset: also the end
                ended = repr(error)
                break
        assert ended is not None, "the server was still writing the reply after 6 s"
        assert eventually(lambda: "did not read its reply" in caplog.text)
    finally:
        peer.close()


# -- 8. first bytes that trickle in on the TLS port -------------------------------------------------------

def test_waiting_for_the_rest_of_the_first_bytes_on_the_tls_port_costs_no_cpu(start_server):
    # Telling TLS from a plain client needs a few bytes; the server peeked every 5 ms until they came, so
    # 400 one-byte connections (400 bytes in all) kept 1.65 cores busy and slowed good clients 30-fold.
    server = start_server(tls=SERVER_TLS, limits=ServerLimits(handshake_timeout=8.0))
    peers = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    try:
        for peer in peers:
            peer.sendall(b"\x16")  # the first byte of a TLS record, and nothing more
        assert eventually(lambda: server.connection_count == 100)
        time.sleep(0.3)
        before = os.times()
        time.sleep(1.0)
        after = os.times()
        busy = (after.user - before.user) + (after.system - before.system)
        assert busy < 0.1, f"the server used {busy:.2f} s of CPU in 1 s waiting on 100 silent peers"
        assert good_client_echo(server.port, tls=True) < 5
    finally:
        for peer in peers:
            peer.close()


# -- 9. newcomers to a full server that drip their first message ----------------------------------------

def test_refusing_dripping_newcomers_takes_at_most_the_refusal_time(start_server):
    # The "server full" answers (16 at once) waited up to 1 s per read, not 1 s in all: 16 newcomers
    # sending a byte every 0.5 s held them all, and a real newcomer got a bare close instead of ServerFull.
    server = start_server(limits=ServerLimits(max_connections=1))
    stop = threading.Event()

    def drip(sock: socket.socket) -> None:
        for byte in HELLO:
            if stop.wait(0.5):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    with Client("127.0.0.1", server.port, ClientOptions(timeouts=QUICK), service=HandshakeService):
        drippers = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(16)]
        threads = [threading.Thread(target=drip, args=(sock,)) for sock in drippers]
        try:
            for thread in threads:
                thread.start()
            time.sleep(2.5)  # every refusal has had more than its second
            with pytest.raises(ServerFull):
                Client("127.0.0.1", server.port, ClientOptions(timeouts=QUICK), service=HandshakeService).connect()
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)
            for sock in drippers:
                sock.close()


def test_a_newcomer_to_a_full_server_is_refused_from_its_first_bytes_only(start_server):
    # The "server full" answer read the newcomer's whole frame first, up to max_message_bytes: 16
    # newcomers sending 15 MiB frames took 170 MiB. Now at most handshake_max_bytes are read, as before
    # any hello: a frame declaring 2 MiB is answered from its header without waiting for the rest.
    server = start_server(limits=ServerLimits(max_connections=1))
    echo = encode_call("echo", HandshakeService.echo_args(message="x" * 100), seqid=9)
    with Client("127.0.0.1", server.port, ClientOptions(timeouts=QUICK), service=HandshakeService):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
            newcomer.sendall(struct.pack("!i", 2 << 20) + echo)  # the rest of the 2 MiB never comes
            answer = newcomer.recv(65536)
    assert b"server full" in answer and answer[4:6] == b"\x80\x01", answer[:80]
