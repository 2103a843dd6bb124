"""The wire cells of Apache's cross test that need the one port to grow: THeader inside a framed transport,
TZlibTransport around every dialect (inflated within the byte budgets: a zlib bomb is refused), written
with Thrift's own client classes, as Apache's TestClients stack them."""

from __future__ import annotations

import select
import socket
import struct
import zlib

import pytest
from conftest import eventually, report_reliability
from server_process import memory_kib, read_log_until, serve_subprocess
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport import TSocket, TTransport
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID
from thrift.transport.TZlibTransport import TZlibTransport

from thrift_handshake import Client, ServerLimits
from thrift_handshake.wire import sniff
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRequired

#: (protocol, transport) as Apache's TestClients stack them: "header" is THeaderProtocol over the transport,
#: "zlib" TZlibTransport over TBufferedTransport (the zlib cells: TZlibTransport over a stream, never framed).
CELLS = [(protocol, transport) for protocol in ("binary", "compact", "header")
         for transport in ("buffered", "framed", "zlib")]


class Recording(TSocket.TSocket):
    """A TSocket that keeps the first bytes each way (to show what the wire carried)."""

    sent = b""
    received = b""

    def write(self, buff: bytes) -> None:
        self.sent = (self.sent + bytes(buff))[:16]
        super().write(buff)

    def read(self, sz: int) -> bytes:
        data = super().read(sz)
        self.received = (self.received + data)[:16]
        return data


def _stub(port: int, protocol: str, transport: str):
    sock = Recording("127.0.0.1", port)
    sock.setTimeout(5000)
    trans = (TTransport.TFramedTransport if transport == "framed" else TTransport.TBufferedTransport)(sock)
    if transport == "zlib":
        trans = TZlibTransport(trans, 9)
    if protocol == "header":
        stack = THeaderProtocol(trans, (THeaderClientType.HEADERS,), THeaderSubprotocolID.BINARY)
    else:
        stack = (TCompactProtocol.TCompactProtocol if protocol == "compact" else TBinaryProtocol.TBinaryProtocol)(trans)
    trans.open()
    return sock, trans, HandshakeService.Client(stack)


@pytest.mark.parametrize("protocol, transport", CELLS, ids=[f"{p}-{t}" for p, t in CELLS])
def test_apache_stacks_are_served_on_one_port(server, protocol, transport):
    """Each stack gets a session and its calls answered, in its own dialect."""
    sock, trans, stub = _stub(server.port, protocol, transport)
    try:
        hello = stub.hello(ClientHello(client_name="apache-stack", min_version=1, max_version=2))
        assert hello.session_id
        assert [stub.echo("一 ✓"), stub.echo("x" * 100_000)] == ["一 ✓", "x" * 100_000]
    finally:
        trans.close()
    if transport == "zlib":  # a zlib stream each way (zlib's own header), whatever is inside
        assert str(sniff(sock.sent)) == str(sniff(sock.received)) == "zlib (TZlibTransport)"
    elif protocol == "header" and transport == "framed":
        assert str(sniff(sock.received)) == "THeader inside a framed transport"


def test_a_zlib_stream_inside_a_zlib_stream_is_refused(server, caplog):
    inner = zlib.compressobj(9)
    outer = zlib.compressobj(9)
    data = inner.compress(b"\x80\x01\x00\x01") + inner.flush(zlib.Z_SYNC_FLUSH)
    data = outer.compress(data) + outer.flush(zlib.Z_SYNC_FLUSH)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert "the client speaks zlib (TZlibTransport)" in caplog.text


def _bomb(name: bytes, inflated: int):
    """A strict binary call of ``name`` whose arguments are unknown string fields of 1 MiB of zeros each,
    ``inflated`` bytes in all, compressed as TZlibTransport sends it: chunk after chunk (deflate inflates
    about 1000 times at most, so a gigabyte takes about a megabyte)."""
    stream = zlib.compressobj(9)
    yield stream.compress(struct.pack("!iI", -2147418112 | TMessageType.CALL, len(name)) + name + struct.pack("!i", 1))
    field = struct.pack("!bhi", 11, 99, 1 << 20)
    for _ in range(inflated >> 20):
        yield stream.compress(field + bytes(1 << 20))
    yield stream.compress(b"\x00") + stream.flush(zlib.Z_SYNC_FLUSH)


def _send_until_answered(port: int, chunks, most: int) -> tuple:
    """Sends the chunks until the server answers or closes, or ``most`` bytes are sent; (compressed bytes
    sent, what the server answered within 10 s)."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for chunk in chunks:
            if sent >= most or select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # reset: the server stopped reading
                break
            sent += len(chunk)
        while True:  # the answer, then the close
            try:
                more = sock.recv(1 << 16)
            except OSError:
                break
            if not more:
                break
            answer += more
    return sent, answer


def _refusal(answer: bytes, name: str) -> TApplicationException:
    """The TApplicationException the server answered call ``name`` (seqid 1) with, in a zlib stream."""
    reply = TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(zlib.decompressobj().decompress(answer)))
    assert reply.readMessageBegin() == (name, TMessageType.EXCEPTION, 1)
    error = TApplicationException()
    error.read(reply)
    return error


def test_a_zlib_bomb_before_hello_is_refused_at_handshake_max_bytes(server, caplog):
    sent, answer = _send_until_answered(server.port, _bomb(b"hello", 1 << 30), 256 * 1024)
    error = _refusal(answer, "hello")
    expected = "more than 65536 bytes once inflated from zlib (handshake_max_bytes)"
    assert (error.type, error.message) == (TApplicationException.PROTOCOL_ERROR,
                                           f"cannot decode the hello request: {expected}")
    assert sent < 64 * 1024
    assert eventually(lambda: f"bad message: {expected}" in caplog.text)  # logged once the connection closes


def test_a_zlib_bomb_is_refused_at_max_message_bytes_and_the_server_stays_small():
    """About 1 MB of zlib that inflates to 1 GiB: the server inflates no more than max_message_bytes (1 MiB
    here) of it, answers PROTOCOL_ERROR in the client's own zlib stream, logs why, and serves on."""
    process, port = serve_subprocess("--no-hello", "--max-message-bytes", str(1 << 20))
    try:
        before = memory_kib(process.pid)
        sent, answer = _send_until_answered(port, _bomb(b"echo", 1 << 30), 256 * 1024)
        after = memory_kib(process.pid)
        log = read_log_until(process, "dropped peer=")
        error = _refusal(answer, "echo")
        expected = "more than 1048576 bytes once inflated from zlib (max_message_bytes)"
        assert (error.type, error.message) == (TApplicationException.PROTOCOL_ERROR,
                                               f"cannot decode the echo request: {expected}")
        assert f"bad message: {expected}" in log
        grown = after["VmHWM"] - before["VmRSS"]
        print(f"\nzlib bomb: {sent / 1024:.0f} KiB of zlib sent (of about 1 MiB that inflates to 1 GiB); server RSS "
              f"before {before['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB (+{grown / 1024:.1f})")
        report_reliability("a zlib bomb (1 GiB inflated) on TZlibTransport", 1, process.poll() is None, 0,
                           (before["VmRSS"], after["VmHWM"], after["VmRSS"]), figure=f"{sent} compressed bytes read")
        assert grown < 16 * 1024, "the server's memory grew with what the bomb inflated to"
        assert sent < 64 * 1024, "the server read far past max_message_bytes before refusing"
        sock, trans, stub = _stub(port, "binary", "zlib")  # still serving, zlib too
        try:
            assert stub.echo("after the bomb") == "after the bomb"
        finally:
            trans.close()
    finally:
        process.kill()
        process.wait(5)
        process.stderr.close()


@pytest.mark.parametrize("protocol, transport", [("header", "framed"), ("binary", "zlib")], ids=["header-framed", "zlib"])
def test_a_server_of_one_dialect_tells_these_clients_what_it_speaks(start_server, protocol, transport):
    """Refused, each client reads why in its own framing (inside its framed transport, or compressed)."""
    server = start_server(detect_wire=False)
    _, trans, stub = _stub(server.port, protocol, transport)
    try:
        with pytest.raises(TApplicationException) as refused:
            stub.hello(ClientHello(client_name="apache-stack", min_version=1, max_version=2))
    finally:
        trans.close()
    speaks = {"framed": "THeader inside a framed transport",
              "zlib": "buffered binary inside zlib (TZlibTransport)"}[transport]
    assert refused.value.type == TApplicationException.INVALID_PROTOCOL
    assert refused.value.message == f"the client speaks {speaks}; this server speaks Thrift buffered binary"


def test_a_full_server_tells_a_framed_theader_client_in_its_own_framing(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):  # a session: not evicted for a newcomer
        _, trans, stub = _stub(server.port, "header", "framed")
        try:
            with pytest.raises(TApplicationException) as full:
                stub.hello(ClientHello(client_name="newcomer", min_version=1, max_version=2))
        finally:
            trans.close()
    assert full.value.type == TApplicationException.INTERNAL_ERROR
    assert full.value.message.startswith("server full: 1 connections")


def test_a_call_pipelined_in_one_zlib_flush_is_answered_before_hello(server):
    """Framed messages inside a zlib stream, ping and hello in one flush: after ping's answer hello waits in
    the inflater, not on the socket, and the server must see it there rather than wait in the watch for bytes
    that never come (with the inflater left out of ``pending_input``, hello went unanswered)."""
    memory = TTransport.TMemoryBuffer()
    framed = TTransport.TFramedTransport(memory)
    protocol = TBinaryProtocol.TBinaryProtocol(framed)
    hello = ClientHello(client_name="pipelining", min_version=1, max_version=2)
    for seqid, (name, args) in enumerate((("ping", SessionService.ping_args()),
                                          ("hello", SessionService.hello_args(hello=hello)))):
        protocol.writeMessageBegin(name, TMessageType.CALL, seqid)
        args.write(protocol)
        protocol.writeMessageEnd()
        framed.flush()
    stream = zlib.compressobj()
    inflater, replies = zlib.decompressobj(), b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(stream.compress(memory.getvalue()) + stream.flush(zlib.Z_SYNC_FLUSH))
        while _frames(replies) < 2:
            chunk = sock.recv(65536)  # a timeout here: hello was never answered
            assert chunk, f"closed after {_frames(replies)} replies"
            replies += inflater.decompress(chunk)
    answers = TBinaryProtocol.TBinaryProtocol(TTransport.TFramedTransport(TTransport.TMemoryBuffer(replies)))
    assert answers.readMessageBegin() == ("ping", TMessageType.REPLY, 0)
    answers.skip(TType.STRUCT)
    answers.readMessageEnd()
    assert answers.readMessageBegin() == ("hello", TMessageType.REPLY, 1)
    result = SessionService.hello_result()
    result.read(answers)
    assert result.success.session_id


def _frames(data: bytes) -> int:
    """How many whole frames ``data`` starts with."""
    count = 0
    while len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
        data, count = data[4 + int.from_bytes(data[:4], "big"):], count + 1
    return count


def test_calls_pipelined_in_one_zlib_write_are_all_answered(server):
    """The calls after the first are already inflated when the first is answered: they are served
    without waiting for more bytes from the peer."""
    from conftest import encode_call

    hello = encode_call("hello", SessionService.hello_args(
        hello=ClientHello(client_name="zlib", min_version=1, max_version=2)), seqid=1)
    calls = b"".join(encode_call("echo", HandshakeService.echo_args(message=f"m{n}"), seqid=n) for n in (2, 3, 4))
    stream, inflate = zlib.compressobj(9), zlib.decompressobj()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(stream.compress(hello + calls) + stream.flush(zlib.Z_SYNC_FLUSH))
        received = b""
        echoes = []
        while len(echoes) < 3:
            more = sock.recv(65536)  # times out (5 s) if a call waits for bytes that never come
            assert more, "closed before every call was answered"
            received += inflate.decompress(more)
            reply = TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(received))
            echoes = []
            try:
                reply.readMessageBegin()
                SessionService.hello_result().read(reply)
                for _ in range(3):
                    reply.readMessageBegin()
                    result = HandshakeService.echo_result()
                    result.read(reply)
                    echoes.append(result.success)
            except (EOFError, TTransport.TTransportException):  # not all of them yet
                pass
    assert echoes == ["m2", "m3", "m4"]
