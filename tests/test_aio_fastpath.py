"""The AsyncClient's fast path on the strict binary wire (``aio.fastpath``): the same bytes out as the
generated client writes, and the same replies in as the framer and the generated ``recv_<method>``
make of them, wherever the reads cut the stream. Sans-IO: the codec and the reply stream are fed bytes."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import TFramedTransport, TMemoryBuffer

from thrift_handshake import ClientOptions, Wire
from thrift_handshake.aio.codec import MessageCodec
from thrift_handshake.aio.fastpath import Reply, fast_binary
from thrift_handshake.aio.reply_stream import ReplyStream
from thrift_handshake.wire import protocol_factory
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRequired
from thrift_handshake_gen.ttypes import AllTypes, Event, InvalidRequest, Request, Response

REQUEST = Request(request_id="r1", payload="p" * 40, work_ms=0, headers={"k": "v", "é": "ü"})
CALLS: List[Tuple[str, Tuple[Any, ...]]] = [
    ("echo", ("x" * 32,)), ("process", (REQUEST,)), ("notify", (Event(name="n", payload="p"),)),
    ("hello", (ClientHello(client_name="c", min_version=1, max_version=2, features={"a"}),)),
    ("echo_types", (AllTypes(),)), ("goodbye", ()), ("echo", (None,)),
]
WIRES = [Wire(), Wire(transport="framed"), Wire(protocol="compact"), Wire(protocol="compact", transport="framed")]


def protocol_for(wire: Wire, transport: Any) -> Any:
    """Apache Thrift's pure-Python protocol of ``wire``."""
    return TCompactProtocol(transport) if wire.protocol == "compact" else TBinaryProtocol(transport)


def generated_request(wire: Wire, multiplexed: Optional[str], name: str, args: Tuple[Any, ...], seqid: int) -> bytes:
    """What Apache Thrift's generated client writes for the call (pure-Python protocol)."""
    memory = TMemoryBuffer()
    transport = TFramedTransport(memory) if wire.transport == "framed" else memory
    protocol: Any = protocol_for(wire, transport)
    if multiplexed is not None:
        protocol = TMultiplexedProtocol(protocol, multiplexed)
    client = HandshakeService.Client(protocol)
    client._seqid = seqid
    getattr(client, "send_" + name)(*args)
    return memory.getvalue()


@pytest.mark.parametrize("multiplexed", [None, "HandshakeService"])
@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_requests_are_the_generated_clients_bytes(wire: Wire, multiplexed: Optional[str]) -> None:
    codec = MessageCodec(HandshakeService, wire, 1 << 20, 1000, multiplexed)
    assert codec.cut is not None  # the fast path is on for this wire
    fast = fast_binary(HandshakeService.Client, wire, protocol_factory(wire, 1 << 20, 1000), 1 << 20, multiplexed)
    assert fast is not None
    for seqid, (name, args) in enumerate(CALLS, start=2**31 - 1 - len(CALLS)):
        expected = generated_request(wire, multiplexed, name, args, seqid)
        assert fast.encode(name, args, seqid) == expected, name  # the fast path's own bytes
        assert codec.encode(name, args, seqid) == expected, name


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_a_request_that_cannot_be_encoded_raises_and_leaves_the_codec_usable(wire: Wire) -> None:
    codec = MessageCodec(HandshakeService, wire, 1 << 20, 1000)
    with pytest.raises(TypeError):
        codec.encode("echo", (7,), 1)
    assert codec.encode("echo", ("x",), 2) == generated_request(wire, None, "echo", ("x",), 2)


def reply(wire: Wire, name: str, seqid: int, result: Any, message_type: int = TMessageType.REPLY) -> bytes:
    """A server's reply on ``wire`` (Apache Thrift's pure-Python protocol), framed if the wire is."""
    memory = TMemoryBuffer()
    protocol = protocol_for(wire, memory)
    protocol.writeMessageBegin(name, message_type, seqid)
    result.write(protocol)
    protocol.writeMessageEnd()
    message = memory.getvalue()
    return len(message).to_bytes(4, "big") + message if wire.transport == "framed" else message


def replies(wire: Wire) -> List[bytes]:
    return [
        reply(wire, "echo", 1, HandshakeService.echo_result(success="é" * 20)),
        reply(wire, "process", 2, HandshakeService.process_result(invalid=InvalidRequest("bad", "payload"))),
        reply(wire, "process", 4, HandshakeService.process_result(success=Response("r", "d", 5, "s", 1))),
        reply(wire, "process", 5, HandshakeService.process_result()),  # no result: MISSING_RESULT
        reply(wire, "fail", 6, HandshakeService.fail_result()),  # void: None
        reply(wire, "fail", 7, HandshakeService.fail_result(handshake_required=HandshakeRequired("hello first"))),
        reply(wire, "echo", 2**31 - 1, HandshakeService.echo_result(success="")),  # the longest seqid
        reply(wire, "echo", 3, TApplicationException(TApplicationException.INTERNAL_ERROR, "boom"),
              TMessageType.EXCEPTION),  # last: on compact the framer takes it (and what follows in its read)
    ]


def bad_replies(wire: Wire) -> List[bytes]:
    """Replies the fast path leaves to the framer: invalid UTF-8, an unknown method, a string field
    holding an i32, a header cut to pieces."""
    good = reply(wire, "echo", 6, HandshakeService.echo_result(success="ok"))
    return [good.replace(b"ok", b"\xff\xfe"), reply(wire, "nosuch", 7, HandshakeService.echo_result(success="x")),
            reply(wire, "echo", 8, _WrongType())]


class _WrongType:
    """echo's result with an i32 where its string goes."""

    def write(self, protocol: Any) -> None:
        protocol.writeStructBegin("echo_result")
        protocol.writeFieldBegin("success", TType.I32, 0)
        protocol.writeI32(5)
        protocol.writeFieldEnd()
        protocol.writeFieldStop()
        protocol.writeStructEnd()


def observe(wire: Wire, chunks: List[bytes], fast: bool, max_reply_bytes: int = 1 << 20) -> List[Any]:
    """What the client is handed for ``chunks``: each reply's header, size and outcome, and the end."""
    options = ClientOptions(wire=wire, max_reply_bytes=max_reply_bytes)
    codec = MessageCodec(HandshakeService, wire, options.max_reply_bytes, options.max_reply_items)
    seen: List[Any] = []

    def on_reply(message: Any, arrived: float) -> None:
        if isinstance(message, Reply):
            header, size, decode = (message.name, message.type, message.seqid), message.size, message.outcome
            seen.append("fast")
        else:
            header, size, decode = codec.header(message), len(message), codec.decode
        try:
            outcome: Any = decode(header[0])
        except Exception as error:
            outcome = (type(error).__name__, str(error))
        seen.append((header, size, repr(outcome)))

    stream = ReplyStream(options, on_reply, lambda error: seen.append(("end", repr(error))),
                         codec.cut if fast else None)
    for chunk in chunks:
        stream.data_received(chunk)
    return seen


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_replies_cut_anywhere_reach_the_client_as_the_framer_cuts_them(wire: Wire) -> None:
    sent = replies(wire)
    data = b"".join(sent)
    whole = observe(wire, [data], fast=True)
    fast = len(sent) - (1 if wire.protocol == "compact" else 0)  # compact's EXCEPTION message: the framer's
    assert whole.count("fast") == fast  # the rest taken by the fast path when they arrive whole
    expected = observe(wire, [data], fast=False)
    assert [entry for entry in whole if entry != "fast"] == expected
    assert len(expected) == len(sent)
    for split in range(1, len(data)):
        for second in (split + 1, len(data)):
            chunks = [data[:split], data[split:second], data[second:]]
            assert [entry for entry in observe(wire, chunks, fast=True) if entry != "fast"] == expected, split


@pytest.mark.parametrize("wire", WIRES, ids=str)
@pytest.mark.parametrize("which", [0, 1, 2], ids=["utf8", "foreign", "type"])
def test_a_reply_the_fast_path_cannot_read_is_reported_as_before(wire: Wire, which: int) -> None:
    good = replies(wire)
    data = good[0] + bad_replies(wire)[which] + good[3]
    seen = observe(wire, [data], fast=True)
    assert [entry for entry in seen if entry != "fast"] == observe(wire, [data], fast=False)


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_a_reply_over_the_limit_is_refused_as_the_framer_refuses_it(wire: Wire) -> None:
    data = reply(wire, "process", 1, HandshakeService.process_result(success=Response("r" * 60, "d" * 60, 5, "s", 1)))
    refused = observe(wire, [data], fast=False, max_reply_bytes=100)
    assert refused[-1][0] == "end" and "None" not in refused[-1][1]
    assert observe(wire, [data], fast=True, max_reply_bytes=100) == refused
