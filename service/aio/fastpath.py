"""Binary and compact requests and replies straight through Thrift's C extension, for the pipelined client.

On the buffered and framed binary (strict) and compact wires with the C extension, a request is its
message header (packed once per method, but for the seqid) and the arguments struct encoded by
``fastbinary``: the same bytes as the generated ``send_<method>`` writes through the protocol, without
the Python protocol's calls. A reply is decoded
where it lies in the bytes just received: its ``<method>_result`` struct by the wire's own protocol
(its limits and strict decoding) on a reader of those bytes, then the result or the declared exception
it holds, as the generated ``recv_<method>`` hands them out (which reads an EXCEPTION message); where it
ends is where the decoder stopped, so no separate walk over the message is needed to find its end.

Only what reads cleanly takes this path: a reply cut short by the end of the bytes received, one that
fails to decode, breaks a limit, names no method of the service or is not a reply, is left to
``wire.MessageFramer`` and ``MessageCodec.header``/``decode``, which report every fault as before.
"""

from __future__ import annotations

import functools
import struct
from io import BytesIO
from typing import Any, Dict, NamedTuple, Optional, Tuple

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TProtocol import TProtocolException, TProtocolFactory
from thrift.Thrift import TApplicationException, TException, TMessageType
from thrift.transport.TTransport import CReadableTransport, TTransportBase, TTransportException

from ..config import Wire
from ..multiplex import SEPARATOR
from ..wire import accelerated_available

__all__ = ["FastBinary", "Reply", "fast_binary"]

_I32 = struct.Struct("!i")
_HEAD = struct.Struct("!ii")
_VERSION_MASK = TBinaryProtocol.VERSION_MASK
_VERSION_1 = TBinaryProtocol.VERSION_1
_COMPACT_ID, _COMPACT_VERSION = 0x82, 1


class Reply(NamedTuple):
    """A reply cut and decoded where it arrived: its header, its size on the wire and its outcome."""

    name: str
    type: int
    seqid: int
    size: int
    result: Any
    error: Optional[TException]

    def outcome(self, name: str) -> Any:
        """What ``recv_<name>`` returned, or raises what it raised (as ``MessageCodec.decode``)."""
        if self.error is not None:
            raise self.error
        return self.result


_reply = tuple.__new__  # a Reply made without NamedTuple's __new__: one Python call less per reply


class _Result:
    """A method's ``<method>_result`` struct, and what ``recv_<method>`` makes of one."""

    __slots__ = ("spec", "_name", "returns", "_exceptions")

    def __init__(self, name: str, result_class: Any) -> None:
        self.spec = [result_class, result_class.thrift_spec]
        fields = [field[2] for field in result_class.thrift_spec if field is not None]
        self._name = name
        self.returns = "success" in fields  # field 0: not a void method
        self._exceptions = tuple(field for field in fields if field != "success")

    def outcome(self, result: Any) -> Any:
        """The result, or raises the exception set, as ``recv_<method>`` (MISSING_RESULT when neither)."""
        if self.returns and result.success is not None:
            return result.success
        for field in self._exceptions:
            raised = getattr(result, field)
            if raised is not None:
                raise raised
        if self.returns:
            raise TApplicationException(TApplicationException.MISSING_RESULT, f"{self._name} failed: unknown result")
        return None


class _Received(TTransportBase, CReadableTransport):
    """The bytes of one chunk received, read in place; reading past them marks the reply cut short."""

    cstringio_buf: Any = None  # what the C decoder reads: the chunk (an attribute, not the base's property)

    def __init__(self) -> None:
        self.cstringio_buf = self.buffer = BytesIO()
        self.cut_short = False
        self.refill_error: Optional[Exception] = None  # what the strict decoder reports for a cut-short read

    def read(self, sz: int) -> bytes:
        data = self.buffer.read(sz)
        if len(data) < sz:
            self._short()
        return data

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        self._short()
        raise AssertionError("unreachable")  # pragma: no cover

    def _short(self) -> None:
        self.cut_short = True
        self.refill_error = TTransportException(TTransportException.END_OF_FILE, "the reply is not whole yet")
        raise self.refill_error

    def isOpen(self) -> bool:
        return True


class FastBinary:
    """Requests of ``client_class``'s service encoded, and its replies cut and decoded, on the strict
    binary wire or the ``compact`` one (``framed`` or not) through the C extension. ``protocols`` is the
    wire's protocol factory (limits, strict decoding); ``max_message_bytes`` caps a whole reply, frame
    field included."""

    def __init__(self, client_class: type, protocols: TProtocolFactory, framed: bool, max_message_bytes: int,
                 multiplexed: Optional[str] = None, compact: bool = False) -> None:
        from thrift.protocol import fastbinary

        self._compact = compact
        self._encode_binary = fastbinary.encode_compact if compact else fastbinary.encode_binary
        self._framed = framed
        self._max_message = max_message_bytes
        self._prefix = "" if multiplexed is None else multiplexed + SEPARATOR
        self._received = _Received()
        self._chunk: Optional[bytes] = None
        reader = protocols.getProtocol(self._received)
        self._header: Tuple[str, int, int] = ("", 0, 0)
        reader.readMessageBegin = functools.partial(getattr, self, "_header")  # recv_<method> gets cut()'s
        self._stub = client_class(reader)
        self._reader = reader
        self._requests: Dict[str, Optional[Tuple[bytes, bytes, type, int]]] = {}
        self._results: Dict[str, Optional[_Result]] = {}

    def encode(self, name: str, args: Tuple[Any, ...], seqid: int) -> Optional[bytes]:
        """The request as ``send_<name>`` writes it; None for a method this path does not encode."""
        if name in self._requests:
            request = self._requests[name]
        else:
            request = self._requests[name] = self._request(name)
        if request is None or len(args) != request[3]:
            return None
        before, after, args_class, _ = request  # the header's bytes before and after the seqid
        spec = args_class.thrift_spec  # type: ignore[attr-defined]
        body = self._encode_binary(args_class(*args), [args_class, spec])
        message = before + (_varint_bytes(seqid) if self._compact else _I32.pack(seqid)) + after + body
        return _I32.pack(len(message)) + message if self._framed else message

    def _request(self, name: str) -> Optional[Tuple[bytes, bytes, type, int]]:
        send = getattr(self._stub, "send_" + name, None)
        args_class = getattr(send, "__globals__", {}).get(name + "_args")  # the struct send_<name> builds
        if send is None or args_class is None:  # not as the generator writes it: send_<name> encodes it
            return None
        message_type = TMessageType.CALL if getattr(self._stub, "recv_" + name, None) else TMessageType.ONEWAY
        raw = (self._prefix + name).encode("utf-8")
        fields = send.__func__.__code__.co_argcount - 1  # its parameters after self
        if self._compact:
            return bytes((_COMPACT_ID, _COMPACT_VERSION | message_type << 5)), _varint_bytes(len(raw)) + raw, \
                args_class, fields
        return _HEAD.pack(_VERSION_1 | message_type, len(raw)) + raw, b"", args_class, fields

    def _result(self, name: str) -> Optional["_Result"]:
        recv = getattr(self._stub, "recv_" + name, None) if name else None
        result_class = None if recv is None else recv.__func__.__globals__.get(name + "_result")  # what it reads
        return None if result_class is None else _Result(name, result_class)

    def cut(self, data: bytes, start: int) -> Optional[Reply]:
        """The reply that starts at ``start`` in ``data``, decoded, if it is whole there and reads
        cleanly; else None (the framer and the codec's slow path take it from there)."""
        if data is not self._chunk:
            self._chunk = data
            self._received.cstringio_buf = self._received.buffer = BytesIO(data)
        position, end = start, len(data)
        if self._framed:
            if end - position < 4:
                return None
            frame = _I32.unpack_from(data, position)[0]
            if frame < 0 or frame + 4 > self._max_message or end - position - 4 < frame:
                return None
            position += 4
            end = position + frame
        header = (_compact_header if self._compact else _binary_header)(data, position, end)
        if header is None:
            return None
        message_type, seqid, name_start, name_end, body = header
        if message_type != TMessageType.REPLY and (message_type != TMessageType.EXCEPTION or self._compact):
            return None  # (compact's pure-Python reader, which reads an EXCEPTION's struct, keeps a state of its own)
        try:
            name = data[name_start:name_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if name in self._results:
            method = self._results[name]
        else:
            method = self._results[name] = self._result(name)
        if method is None:
            return None
        received = self._received
        received.buffer.seek(body)
        received.cut_short = False
        self._header = (name, message_type, seqid)
        error: Optional[TException] = None
        result: Any = None
        try:
            if message_type == TMessageType.EXCEPTION:
                getattr(self._stub, "recv_" + name)()  # raises the TApplicationException it reads
            decoded = self._reader._fast_decode(None, self._reader, method.spec)
            result = decoded.success if method.returns and decoded.success is not None else method.outcome(decoded)
        except (TTransportException, TProtocolException):  # cut short, or a fault the slow path reports
            return None
        except TException as raised:  # TApplicationException, or an exception the method declares
            error = raised
        except Exception:  # undecodable (the slow path says how)
            return None
        stop = received.buffer.tell()
        if received.cut_short or (stop != end if self._framed else stop - start > self._max_message):
            return None
        if stop == len(data):  # the read is used up: not held on to (one may be large)
            self._chunk = None
            received.cstringio_buf = received.buffer = BytesIO()
        return _reply(Reply, (name, message_type, seqid, stop - start, result, error))


#: A reply's header: message type, seqid, where the name starts and ends, where the result struct starts.
_Header = Tuple[int, int, int, int, int]


def _binary_header(data: bytes, position: int, end: int) -> Optional[_Header]:
    """The strict binary header at ``position`` if it is whole before ``end``."""
    if end - position < 8:
        return None
    version, length = _HEAD.unpack_from(data, position)
    name_end = position + 8 + length
    if version & _VERSION_MASK != _VERSION_1 or length < 0 or name_end + 4 > end:
        return None
    return version & 0xFF, _I32.unpack_from(data, name_end)[0], position + 8, name_end, name_end + 4


def _compact_header(data: bytes, position: int, end: int) -> Optional[_Header]:
    """The compact header at ``position`` if it is whole before ``end``."""
    if end - position < 4 or data[position] != _COMPACT_ID or data[position + 1] & 0x1F != _COMPACT_VERSION:
        return None
    message_type = data[position + 1] >> 5
    seqid, position = _varint(data, position + 2, end)
    length, name_start = _varint(data, position, end)
    if seqid < 0 or length < 0 or name_start + length > end:
        return None
    return message_type, seqid - (1 << 32) if seqid > 0x7FFFFFFF else seqid, name_start, name_start + length, \
        name_start + length


def _varint(data: bytes, position: int, end: int) -> Tuple[int, int]:
    """A compact varint of at most 5 bytes (an i32's) and where it ends; -1 if not whole or longer."""
    value = shift = 0
    for index in range(position, min(position + 5, end)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    return -1, end


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def fast_binary(client_class: type, wire: Wire, protocols: TProtocolFactory, max_message_bytes: int,
                multiplexed: Optional[str] = None) -> Optional[FastBinary]:
    """The fast path for ``wire`` if it has one (binary or compact, buffered or framed, C extension), else None."""
    if (wire.protocol not in ("binary", "compact") or wire.transport not in ("buffered", "framed")
            or not wire.accelerated or not accelerated_available()):
        return None
    return FastBinary(client_class, protocols, wire.transport == "framed", max_message_bytes, multiplexed,
                      wire.protocol == "compact")

