"""How ``AsyncClient`` takes what the connection hands it: replies, the server's notices, the end.

Each whole reply goes to the call with its seqid, in whatever order the server answers (a reply to a
cancelled call is read and dropped; one for no call in flight, or of the wrong method or message type,
breaks the connection); its outcome is decoded and handed to the call's future (``InFlight.answered``).
A notice, a reply that cannot be decoded, a timeout or the connection's end moves the client to BROKEN:
the socket is closed and every call in flight fails with the same error type (``_break``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, List, Optional, Tuple, Union

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TException, TMessageType
from thrift.transport.TTransport import TTransportException

from ..client_core import ClientBase, broken_error, reconnect_asked, refusal_error
from ..errors import ConnectError, ConnectionBroken, ReconnectAsked, RemoteApplicationError, ServiceError, \
    ThriftHandshakeError
from ..interceptors import ClientCall
from ..states import ClientEvent, ClientPhase
from ..timing import Record
from .behind import WrittenBehind
from .codec import MessageCodec
from .fastpath import Reply
from .inflight import InFlight
from .reply_stream import ReplyStream

__all__ = ["ReplyPath"]

logger = logging.getLogger(__name__)

_ANSWERS = (TMessageType.REPLY, TMessageType.EXCEPTION)  # the message types a reply may have


class ReplyPath(ClientBase):
    """The replies and the failures of ``AsyncClient`` (which provides the connection's steps)."""

    _stream: Optional[ReplyStream]
    _codec: MessageCodec
    _inflight: InFlight
    _behind: WrittenBehind
    _resend: List[Tuple[str, Tuple[Any, ...]]]
    _notice_unheard: bool
    _broken_as: Callable[[str], ConnectionBroken]
    _refused: bool
    _replies: int
    _pipelined_session: Optional[str]

    def _on_reply(self, message: Union[bytes, Reply], arrived: float) -> None:
        """A whole reply arrived (or was cut and decoded, ``Reply``): handed to its call, or dropped if
        that call was cancelled."""
        decode: Callable[[str], Any]
        reply: Optional[Reply] = None
        if isinstance(message, Reply):
            reply, name, message_type, seqid, size = message, message.name, message.type, message.seqid, message.size
            decode = message.outcome
        else:
            try:
                name, message_type, seqid = self._codec.header(message)
            except Exception as error:
                self._break(error)
                return
            if (name, seqid) == ("", 0) and message_type == TMessageType.EXCEPTION:  # the server ends the session
                self._notice_unheard = not self._inflight  # no call hears it: the next one does
                self._break(self._codec.notice())
                return
            size, decode = len(message), self._codec.decode
        waiting = self._inflight.waiting.get(seqid)
        if waiting is None or name != waiting.call.method or message_type not in _ANSWERS:
            expected = "no call" if waiting is None else f"the call {waiting.call.method}"
            self._break(TProtocolException(TProtocolException.INVALID_DATA,
                                           f"a reply for {name or '?'} (seqid {seqid}, message type {message_type}) "
                                           f"came for {expected} in flight: a stale or foreign reply"))
            return
        self._replies += 1
        self._last_activity = time.perf_counter()
        if waiting.abandoned or waiting.future.cancelled():
            self._inflight.take(seqid)
            asked = self._asked_to_reconnect(name, decode)  # still says what becomes of the calls behind it
            if asked is not None:
                self._reconnect_asked(seqid, asked)
                return
            if self._behind.unconfirmed:
                self._behind.answered(seqid, not self._inflight)
            logger.debug("%s: the reply to cancelled %s (seqid %d) dropped", self._peer, name, seqid)
            return
        result: Any = None
        error_out: Optional[ThriftHandshakeError] = None
        try:
            if reply is None:
                result = decode(name)
            elif reply.error is not None:  # as ``Reply.outcome``, without the call
                raise reply.error
            else:
                result = reply.result
        except TApplicationException as error:
            error_out = RemoteApplicationError(name, error)
            if not self.options.handshake and self._replies == 1:  # a refusal answers the first call
                error_out = refusal_error(self._peer, error) or error_out
        except TException as error:
            if not isinstance(error, self._service_methods[name].declared_exceptions):
                self._break(error, waiting.call)  # e.g. a corrupt reply: the stream is no longer trusted
                return
            error_out = reconnect_asked(name, error) or ServiceError.wrap(error)
        except Exception as error:  # a reply that cannot be decoded
            self._break(error, waiting.call)
            return
        server_us = getattr(result, "processing_us", None) if name in self.options.server_timed_methods else None
        pipelined = name == "hello" and self.options.pipeline_hello
        if pipelined and result is not None:  # the calls written behind it run in its session
            self._pipelined_session = result.session_id
        elif waiting.call.session_id is None and name != "hello":
            waiting.call.session_id = self._pipelined_session
        self._inflight.answered(seqid, arrived, size, result, error_out, server_us, pipelined)
        if error_out is None:
            pass
        elif isinstance(error_out, RemoteApplicationError) and error_out.type == TApplicationException.PROTOCOL_ERROR:
            self._break(error_out.error)  # the server closes after this answer
        elif isinstance(error_out, ConnectError):  # refused: the server closes the connection
            self._close_stream()
            self._refused = True
        elif isinstance(error_out, ReconnectAsked):
            self._reconnect_asked(seqid, error_out)
            return
        if self._behind.unconfirmed:
            self._behind.answered(seqid, not self._inflight)

    def _asked_to_reconnect(self, name: str, decode: Callable[[str], Any]) -> Optional[ReconnectAsked]:
        """Whether the reply to a cancelled call, whose header was just read, is "reconnect"."""
        try:
            decode(name)
        except TException as error:
            return reconnect_asked(name, error)
        except Exception:  # undecodable: dropped with the call, as any reply to a cancelled one
            pass
        return None

    def _reconnect_asked(self, seqid: int, asked: ReconnectAsked) -> None:
        """The server closes after this answer: the calls and one-way calls written behind ``seqid`` never
        ran; the calls learn it from the broken connection, the one-way calls are kept to send again."""
        self._resend = self._behind.unread(seqid) if self.options.reconnect_when_asked else []
        self._break(asked)

    def _on_end(self, error: Optional[BaseException]) -> None:
        """The stream ended. Closed by the client (its stream already dropped), or by the server after
        the answer that ends a session (hello refused, goodbye: the step awaiting it closes), nothing
        is to be done; else the connection broke."""
        if self._stream is None:
            return
        if error is None and not self._inflight and self.phase in (ClientPhase.HANDSHAKING, ClientPhase.CLOSING):
            return
        self._break(error or TTransportException(TTransportException.END_OF_FILE, "the server closed the connection"))

    def _timed_out(self, seqid: int) -> None:
        waiting = self._inflight.get(seqid)
        timeout = TTransportException(TTransportException.TIMED_OUT, "no reply within the timeout")
        if self.endpoints is not None:  # silent: retries and reconnects go elsewhere first
            self.endpoints.failed((self.host, self.port))
        self._break(timeout, waiting.call if waiting is not None else None)

    def _break(self, error: BaseException, culprit: Optional[ClientCall] = None) -> None:
        """Moves to BROKEN, closes the socket and fails every call in flight with the same error type."""
        stream, self._stream = self._stream, None
        first_reply = stream.first_reply if stream is not None else b""
        answered_before = self._replies > 0
        self._broken_by = error
        if self._state.allows(ClientEvent.FAILURE):
            self._state.apply(ClientEvent.FAILURE)
        if stream is not None:
            stream.end(None)

        def broken_as(name: str) -> ConnectionBroken:
            failure = broken_error(name, error, self.options, first_reply, answered_before)
            failure.__cause__ = error
            return failure

        self._broken_as = broken_as
        self._inflight.fail_all(broken_as, culprit)

    def _close_stream(self, event: ClientEvent = ClientEvent.CLOSED) -> None:
        """Closes the connection (calls still in flight fail) and applies ``event``."""
        stream, self._stream = self._stream, None
        if stream is not None:
            start = time.perf_counter()
            stream.end(None, graceful=True)
            self.timeline.add(Record("disconnect", "close", start - self._epoch, time.perf_counter() - start))
        self._inflight.fail_all(lambda name: ConnectionBroken(f"{name}: the client closed the connection while "
                                                              "the call was in flight"))
        self._state.apply(event)
