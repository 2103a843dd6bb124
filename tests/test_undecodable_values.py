"""Invalid UTF-8 and mistyped container elements get one clear answer, whichever decoder reads them.

Thrift's C extension reads invalid UTF-8 as U+FFFD and pure Python raises UnicodeDecodeError; the C
extension refuses list elements of another type and pure Python reads them as the IDL's type. Here a
real server (both decoders) is sent such requests in every dialect it serves and must answer each with
the same PROTOCOL_ERROR naming the problem, then close; a genuine U+FFFD still reaches the handler. A
client (both decoders) reading such a reply fails with the same typed error.
"""

from __future__ import annotations

import struct
from typing import Callable, List, Tuple

import pytest
from conftest import encode_call, exchange
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderTransport
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Client, ClientOptions, ConnectionBroken, HandshakeServer, ServerConfig, Wire
from thrift_handshake.demo import HandshakeHandler, demo_server
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello

DIALECTS = [("binary", "buffered"), ("binary", "framed"), ("compact", "buffered"), ("compact", "framed"), ("header", "")]
WRONG_ELEMENTS = "a list, set or map holds elements of another type than the IDL declares"

Body = Callable[[object], None]  # writes a call's argument struct with the protocol it is given


def _hello(protocol) -> None:
    SessionService.hello_args(hello=ClientHello(client_name="utf8", min_version=1, max_version=2)).write(protocol)


def _end_structs(protocol, levels: int) -> None:
    """Ends the field being written and the ``levels`` structs around it, innermost first."""
    for _ in range(levels):
        protocol.writeFieldEnd()
        protocol.writeFieldStop()
        protocol.writeStructEnd()


def _echo_raw(raw: bytes) -> Body:
    """echo's arguments with ``raw`` as the message's bytes, valid UTF-8 or not."""
    def write(protocol) -> None:
        protocol.writeStructBegin("echo_args")
        protocol.writeFieldBegin("message", TType.STRING, 1)
        protocol.writeBinary(raw)
        _end_structs(protocol, 1)
    return write


def _echo_types_numbers_as_i64(protocol) -> None:
    """echo_types(AllTypes(numbers=...)) with list<i32> sent as list<i64>."""
    protocol.writeStructBegin("echo_types_args")
    protocol.writeFieldBegin("value", TType.STRUCT, 1)
    protocol.writeStructBegin("AllTypes")
    protocol.writeFieldBegin("numbers", TType.LIST, 16)
    protocol.writeListBegin(TType.I64, 2)
    protocol.writeI64(1)
    protocol.writeI64(2)
    protocol.writeListEnd()
    _end_structs(protocol, 2)


def _echo_types_bad_label(protocol) -> None:
    """echo_types(AllTypes(text=valid, groups={"g": [Point(label=invalid UTF-8)]}))."""
    protocol.writeStructBegin("echo_types_args")
    protocol.writeFieldBegin("value", TType.STRUCT, 1)
    protocol.writeStructBegin("AllTypes")
    protocol.writeFieldBegin("text", TType.STRING, 8)
    protocol.writeBinary("fine \ufffd".encode())
    protocol.writeFieldEnd()
    protocol.writeFieldBegin("groups", TType.MAP, 19)
    protocol.writeMapBegin(TType.STRING, TType.LIST, 1)
    protocol.writeBinary(b"g")
    protocol.writeListBegin(TType.STRUCT, 1)
    protocol.writeStructBegin("Point")
    protocol.writeFieldBegin("label", TType.STRING, 3)
    protocol.writeBinary(b"\xe8\xaf")  # the first two bytes of a three-byte character
    _end_structs(protocol, 1)
    protocol.writeListEnd()
    protocol.writeMapEnd()
    _end_structs(protocol, 2)


def _encode(dialect: Tuple[str, str], calls: List[Tuple[str, Body]]) -> bytes:
    """The calls (seqids 1, 2, ...) as a client of ``dialect`` puts them on the wire."""
    protocol_name, transport = dialect
    data = b""
    for seqid, (method, body) in enumerate(calls, 1):
        buffer = TMemoryBuffer()
        if protocol_name == "header":
            protocol = THeaderProtocol(THeaderTransport(buffer, [THeaderClientType.HEADERS]), [THeaderClientType.HEADERS])
        else:
            protocol = (TBinaryProtocol(buffer) if protocol_name == "binary" else TCompactProtocol(buffer))
        protocol.writeMessageBegin(method, TMessageType.CALL, seqid)
        body(protocol)
        protocol.writeMessageEnd()
        protocol.trans.flush()
        message = buffer.getvalue()
        data += struct.pack("!i", len(message)) + message if transport == "framed" else message
    return data


def _answers(dialect: Tuple[str, str], data: bytes) -> List[Tuple[str, object]]:
    """("reply", the result struct) or ("exception", TApplicationException) for each answer."""
    protocol_name, transport = dialect
    buffer = TMemoryBuffer(data)
    if protocol_name == "header":
        protocol = THeaderProtocol(buffer, [THeaderClientType.HEADERS])
    elif transport == "framed":
        protocol = None
    else:
        protocol = TBinaryProtocol(buffer) if protocol_name == "binary" else TCompactProtocol(buffer)
    answers = []
    while data:
        if transport == "framed":
            size, = struct.unpack("!i", data[:4])
            frame, data = data[4:4 + size], data[4 + size:]
            protocol = (TBinaryProtocol if protocol_name == "binary" else TCompactProtocol)(TMemoryBuffer(frame))
        try:
            name, message_type, seqid = protocol.readMessageBegin()
        except Exception:  # the end of what came back
            break
        if message_type == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(protocol)
            error.seqid = seqid
            answers.append(("exception", error))
        else:
            service = SessionService if name == "hello" else HandshakeService
            result = getattr(service, f"{name}_result")()
            result.read(protocol)
            answers.append(("reply", result))
        protocol.readMessageEnd()
    return answers


@pytest.fixture(scope="module", params=[True, False], ids=["C", "pure"])
def server(request):
    server = demo_server(ServerConfig(port=0, wire=Wire(accelerated=request.param))).start()
    yield server
    server.stop(grace=2)


def _call(server: HandshakeServer, dialect: Tuple[str, str], method: str, body: Body) -> List[Tuple[str, object]]:
    """hello, the call, then a valid echo: what the server answered before it closed."""
    calls = [("hello", _hello), (method, body), ("echo", _echo_raw(b"after"))]
    return _answers(dialect, exchange(server.port, _encode(dialect, calls)))


def _refused(answers: List[Tuple[str, object]], message: str) -> None:
    """hello answered, the call refused with PROTOCOL_ERROR ``message``, and nothing after it."""
    assert [kind for kind, _ in answers] == ["reply", "exception"], answers
    error = answers[1][1]
    assert (error.type, error.message) == (TApplicationException.PROTOCOL_ERROR, message)


@pytest.mark.parametrize("dialect", DIALECTS, ids="-".join)
def test_invalid_utf8_in_a_request_is_refused_naming_the_field(server, dialect):
    answers = _call(server, dialect, "echo", _echo_raw(b"a\xffb"))
    _refused(answers, "cannot decode the echo request: UndecodableValue: field 'message' is not valid UTF-8 "
                      "(invalid start byte at byte 1)")


@pytest.mark.parametrize("dialect", DIALECTS, ids="-".join)
def test_a_genuine_replacement_character_reaches_the_handler_intact(server, dialect):
    answers = _call(server, dialect, "echo", _echo_raw("a\ufffdb".encode()))
    assert [(kind, getattr(result, "success", None)) for kind, result in answers[1:]] == [
        ("reply", "a\ufffdb"), ("reply", "after")]


@pytest.mark.parametrize("dialect", DIALECTS, ids="-".join)
def test_a_method_name_that_is_not_utf8_is_answered_naming_it(server, dialect):
    calls = [("hello", _hello), ("echX", _echo_raw(b"x")), ("echo", _echo_raw(b"after"))]
    data = _encode(dialect, calls).replace(b"echX", b"ech\xff")  # same length: frames stay whole
    answers = _answers(dialect, exchange(server.port, data))
    _refused(answers, "cannot decode the ech\ufffd request: UndecodableMethodName: the method name is not valid "
                      "UTF-8 (invalid start byte at byte 3)")
    assert answers[1][1].seqid == 2  # the answer matches the call it refuses


def _echo_with_length(length: bytes) -> Body:
    """echo's arguments whose string length is ``length`` as it goes on the wire, and no string."""
    def write(protocol) -> None:
        protocol.writeStructBegin("echo_args")
        protocol.writeFieldBegin("message", TType.STRING, 1)
        protocol.trans.write(length)
    return write


@pytest.mark.parametrize("dialect, length", [
    (("binary", "buffered"), struct.pack("!i", -1)),
    (("binary", "framed"), struct.pack("!i", -1)),
    (("compact", "buffered"), b"\x80\x80\x80\x80\x80\x01"),  # 2**35: a varint of six bytes
    (("compact", "framed"), b"\x80\x80\x80\x80\x80\x01"),
], ids=["binary-buffered-negative", "binary-framed-negative", "compact-buffered-2**35", "compact-framed-2**35"])
def test_impossible_lengths_are_refused_in_the_same_words_by_both_decoders(server, dialect, length):
    # The C decoder said "OverflowError: negative length: 16777216" (the limit, not the length) and
    # "OverflowError: varint exceeded 5 bytes" where pure Python names the limits.
    answers = _call(server, dialect, "echo", _echo_with_length(length))
    _refused(answers, "cannot decode the echo request: a string, binary or container exceeds this server's "
                      "limits (max_message_bytes=16777216, max_container_items=1000000)")


@pytest.mark.parametrize("dialect", DIALECTS, ids="-".join)
def test_container_elements_of_another_type_are_refused(server, dialect):
    answers = _call(server, dialect, "echo_types", _echo_types_numbers_as_i64)
    _refused(answers, f"cannot decode the echo_types request: UndecodableValue: {WRONG_ELEMENTS}")


def test_the_field_is_named_from_the_outermost_struct_down(server):
    answers = _call(server, ("binary", "buffered"), "echo_types", _echo_types_bad_label)
    _refused(answers, "cannot decode the echo_types request: UndecodableValue: field 'value.groups.label' is "
                      "not valid UTF-8 (unexpected end of data at byte 0)")


class _BytesEcho(HandshakeHandler):
    """Echoes its message's UTF-8 bytes with one byte replaced by 0xff (the C encoder writes bytes as given)."""

    def echo(self, message: str):
        return b"\xff" + message.encode()[1:]


@pytest.mark.parametrize("accelerated", [True, False], ids=["C", "pure"])
def test_a_client_refuses_a_reply_with_invalid_utf8_naming_the_field(start_server, accelerated):
    server = start_server(handler=_BytesEcho(), wire=Wire(accelerated=True))
    with Client("127.0.0.1", server.port, ClientOptions(wire=Wire(accelerated=accelerated)),
                service=HandshakeService) as client:
        with pytest.raises(ConnectionBroken, match="field 'success' is not valid UTF-8"):
            client.echo("abc")
        assert client.phase.value == "BROKEN"


@pytest.mark.parametrize("accelerated", [True, False], ids=["C", "pure"])
def test_a_client_refuses_a_reply_whose_method_name_is_not_utf8(accelerated):
    # A peer that answers any call with a reply named b"ech\xff": the client says so, typed, and breaks.
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def peer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(encode_call("echX", HandshakeService.echo_result(success="x"), seqid=1,
                                           message_type=TMessageType.REPLY).replace(b"echX", b"ech\xff"))
            connection.recv(65536)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    options = ClientOptions(wire=Wire(accelerated=accelerated), handshake=False)
    with listener, Client("127.0.0.1", listener.getsockname()[1], options, service=HandshakeService) as client:
        with pytest.raises(ConnectionBroken, match="the method name is not valid UTF-8"):
            client.echo("x")
        assert client.phase.value == "BROKEN"
    thread.join(5)
