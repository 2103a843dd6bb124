"""One connection of the asyncio server, on its own task: the dialect from its first bytes, whole
messages cut by ``wire.MessageFramer`` under the server's limits and deadlines, each served in order
through the gate (``SessionProcessor.process_async``) over a stack in memory, the reply written back.

Deadlines, as on the threaded server: before hello, one for the whole handshake (and at most
``handshake_max_bytes``); after it, ``idle_timeout`` between messages, ``request_timeout`` from a
message's first byte until it is whole, ``reply_timeout`` for the peer to take a reply.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, Collection, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from ..config import ServerConfig
from ..gate import SessionProcessor
from ..gate_state import SessionClosed
from ..peerlog import WarningBudget, clip_for_log
from ..server.answers import Answers
from ..server.server import DRAINING_TOLD
from ..server.outcome import Ending, Outcome, closing_outcome, transport_outcome
from ..session import bind_task_session
from ..states import ConnectionEvent
from ..wire import (SNIFF_BYTES, BudgetExceeded, Dialect, DialectKind, MessageFramer, NoMessageYet, sniff,
                   write_application_exception)
from ..wire.stack import FramedTransport
from .compressed import DeflatingWriter, InflatingReader
from .dialects import framer_for, speaks, stack_for
from .http import HttpPipe, HttpRequestFramer
from .opening import READ_CHUNK, Stream, refuse
from .refusals import answer_bad_message, refuse_message
from .standing import NEVER, PARK_AFTER, ConnectionStanding

__all__ = ["AsyncConnection", "PARKED"]

logger = logging.getLogger(__name__)

_STOPPING: Outcome = ("closed", "server stopping")
_EVICTED: Any = ("evicted",)  # (told, then worded by ``_told``)
#: What ``run`` and ``resume`` return when the connection waits without a task (``park``).
PARKED: Any = ("parked",)


class AsyncConnection(ConnectionStanding):
    """One accepted connection: ``run(stream, identity)`` serves it until it ends and returns how
    ("closed" or "dropped", why). ``stop(force)`` ends it once no message is in flight (with ``force``,
    at once)."""

    __slots__ = ("_processor", "_warnings", "_limits", "_received_before_hello", "_message_started", "_zlib",
                 "_stack", "_framer_wire", "sock", "http_origins")

    def __init__(self, config: ServerConfig, processor: SessionProcessor, warnings: WarningBudget, peer: str,
                 accepted_at: float) -> None:
        super().__init__(config, peer, accepted_at)
        self._processor = processor
        self._warnings = warnings
        self._limits = config.limits
        self._received_before_hello = 0
        self._message_started: Optional[float] = None  # loop time of the first byte of the message being read
        self._zlib = False  # the peer speaks TZlibTransport
        self._stack: Optional[Tuple[Any, Any, Any]] = None  # transport, protocol, pipe once the dialect is known
        self._framer_wire: Any = None  # what its messages are cut by, while it may park (the framer is not kept)
        self.sock: Optional[socket.socket] = None  # the accepted socket (the kernel counts its bytes)
        #: Browser origins allowed to call over HTTP (CORS): the server's set, read at each request.
        self.http_origins: Collection[str] = config.http_origins

    # -- serving ------------------------------------------------------------------------------

    async def run(self, stream: Stream, identity: Optional[str], mismatch: Optional[str] = None) -> Optional[Outcome]:
        """Serves the connection; how it ended, or None when it was refused (already told and logged)."""
        reader, writer = stream
        try:
            received, dialect, ending = await self._first_bytes(reader)
            if ending is not None:
                return ending
            inside = ""
            if mismatch is None and dialect is not None and dialect.kind is DialectKind.ZLIB:  # inflated from here on
                reader, writer = stream = InflatingReader(reader, received), DeflatingWriter(writer)
                self._zlib = True
                received, dialect, ending = await self._first_bytes(reader)
                if ending is not None:
                    return ending
                inside = f" inside {Dialect(DialectKind.ZLIB)}"
                if not self.config.detect_wire:
                    mismatch = "this server speaks " + speaks(self.config)
            stack, framer_wire = (None, None) if mismatch is not None else stack_for(
                self.config, dialect, self._zlib, self.http_origins)
            if stack is None:
                said = ("nothing it recognises" if dialect is None else str(dialect)) + inside
                explanation = f"the client speaks {said}; {mismatch or 'this server speaks ' + speaks(self.config)}"
                self._warnings.warning("refused peer=%s: %s (first bytes %s)", self.peer, explanation,
                                       received[:6].hex(" "))
                await refuse(stream, received, dialect, TApplicationException.INVALID_PROTOCOL, explanation,
                             self._limits)
                return None
            transport, protocol, pipe = self._stack = stack
            if isinstance(pipe, HttpPipe):
                pipe.sink = stream[1].write
            elif not self._zlib:  # (its stream is the socket's own: an idle read may give up its task)
                self._parks = reader
                self._framer_wire = framer_wire
            self.state = self._processor.connection(protocol, self.peer, identity or None, listener=self,
                                                    collected=False)  # (the server closes it: no finalizer)
            bind_task_session(self.state.context)  # this task's calls, and the pool threads that run them
            if self._stopping:
                return _STOPPING
            framer = framer_for(framer_wire, self._limits)
            ending = await self._serve(reader, writer, framer, received, transport, protocol, pipe)
        except asyncio.CancelledError:
            ending = self._interrupted()
        return await self._told(writer, ending)

    async def resume(self) -> Optional[Outcome]:
        """Serves a parked connection again (see ``ConnectionStanding.park``) until it ends or parks again;
        how it ended, or ``PARKED``."""
        self._resuming = False
        stream = self._parks
        try:
            if self._stopping or self._evicted:
                ending = _STOPPING if self._stopping else _EVICTED
            elif self._expired:
                self._expired = False
                ending = transport_outcome(self._ending(False), TTransportException(TTransportException.TIMED_OUT,
                                                                                    "timed out"))
            else:
                bind_task_session(self.state.context)
                transport, protocol, pipe = self._stack
                framer = framer_for(self._framer_wire, self._limits)
                ending = await self._serve(stream, stream, framer, b"", transport, protocol, pipe)
        except asyncio.CancelledError:
            ending = self._interrupted()
        return await self._told(stream, ending)

    def _interrupted(self) -> Any:
        """In a CancelledError's handler: ``_STOPPING`` or ``_EVICTED`` when the cancel was a stop's or an
        eviction's (the task is uncancelled); else the error goes on."""
        if not (self._stopping or self._evicted):
            raise  # (the CancelledError being handled: not ours)
        asyncio.current_task().uncancel()
        return _STOPPING if self._stopping else _EVICTED

    async def _told(self, writer: Any, ending: Any) -> Any:
        """``ending``, once a session the server stops or evicts was told why."""
        if ending is _EVICTED:
            if self._eviction_reason:  # a session given up for another host is told why
                await self._tell(writer, f"evicted: {self._eviction_reason}; connect again later")
            return closing_outcome(ConnectionEvent.EVICTED, self.config.handshake, "", self._eviction_reason)
        if ending is _STOPPING:
            await self._tell(writer, DRAINING_TOLD)
        return ending

    async def _tell(self, writer: Any, message: str) -> None:
        """A session the server closes (not one in a call, nor one that said goodbye) is told why first,
        as the threaded server tells it: an exception to seqid 0 that its next call reads."""
        state = self.state
        session = None if state is None else state.session
        if self._stack is None or session is None or not session.established or session.closing or state.in_flight:
            return
        _, protocol, pipe = self._stack
        try:
            write_application_exception(protocol, "", 0, TApplicationException.INTERNAL_ERROR, message)
            await self._write(writer, pipe)
        except (OSError, TTransportException):  # gone already
            pass
        except asyncio.CancelledError:  # the stop's grace is over while the peer does not read: reset
            if not self._stopping:
                raise
            asyncio.current_task().uncancel()
            _reset(writer)

    async def _first_bytes(self, reader: Any) -> Tuple[bytes, Any, Optional[Outcome]]:
        """The first bytes, their dialect, and how the connection ended if it did before they told."""
        handshake = self.config.handshake or self.config.tls is not None
        deadline = self.accepted_at + (self._limits.handshake_timeout if handshake else self._limits.idle_timeout)
        data, dialect = b"", None
        while dialect is None and len(data) < SNIFF_BYTES:
            try:
                chunk = await self._by(reader.read(READ_CHUNK), deadline)
            except TimeoutError:
                return data, None, ("dropped", "handshake timeout" if handshake else "idle timeout")
            except OSError:
                return data, None, ("dropped", "peer reset the connection")
            except (TProtocolException, TTransportException) as error:  # a corrupt (or ended) zlib stream
                return data, None, ("dropped", f"bad message: {error}")
            if not chunk:
                break
            self._heard = True
            # (a copy: the chunk may be the start of a large receive buffer, and the first bytes are kept)
            data = data + chunk if data else bytes(memoryview(chunk))
            dialect = sniff(data)
        if not data:
            return data, None, ("closed", "peer closed the connection")
        return data, dialect, None

    async def _serve(self, reader: Any, writer: Any, framer: MessageFramer,
                     received: bytes, transport: Any, protocol: Any, pipe: Any) -> Outcome:
        """Serves whole messages in order until the connection ends; how it ended."""
        loop = asyncio.get_running_loop()
        state = self.state
        http = isinstance(framer, HttpRequestFramer)
        data = received
        pending = 0  # the framer's bytes not yet part of a whole message (read once per turn)
        # a frame may hold more than one message: the rest is served next, as the threaded server does
        # (THeader reads a frame per message, dropping the rest, on both servers)
        frames = isinstance(transport, FramedTransport)
        unread = False  # the last frame holds a message after the one answered
        while True:
            try:
                fresh, message = False, None
                if unread:
                    message = b""  # (already in the read buffer)
                elif data:
                    fresh = not pending  # a message's first bytes: its request_timeout runs from now
                    framer.receive(data)
                    if not self._in_session:
                        self._count(data)
                    message = framer.next_message()
                    data = b""
                    pending = framer.pending
                elif pending:  # what came behind the last message
                    message = framer.next_message()
                    pending = framer.pending
                if message is None:
                    if fresh:  # (timed only when the message is not whole at once)
                        self._message_started = loop.time()
                    if http and framer.interim:  # 100 Continue
                        writer.write(framer.interim)
                        framer.interim = b""
                    mid_request = pending > 0
                    self._wait_until(mid_request, loop)
                    self._between_messages = not mid_request
                    self._stalled_since = time.monotonic() if mid_request else None
                    try:  # (as _by, without a coroutine of its own: this wait is every idle connection's)
                        data = await reader.read(READ_CHUNK)
                    except asyncio.CancelledError:
                        if not self._timed_out():
                            raise
                        error = TTransportException(TTransportException.TIMED_OUT, "timed out")
                        return transport_outcome(self._ending(mid_request), error)
                    except OSError as reset:
                        error = TTransportException(TTransportException.UNKNOWN, str(reset), inner=reset)
                        return transport_outcome(self._ending(mid_request), error)
                    finally:
                        self.expires_at = NEVER
                        self._between_messages = False
                        self._stalled_since = None
                    if data is None:  # idle for PARK_AFTER: it waits without a task from here
                        self.park()
                        return PARKED
                    if not data:
                        error = TTransportException(TTransportException.END_OF_FILE, "the peer closed the connection")
                        return transport_outcome(self._ending(mid_request), error)
                    continue
            except (TProtocolException, TTransportException) as error:  # refused before it was decoded
                return await refuse_message((reader, writer), protocol, pipe, framer, error, self._limits)
            self._message_started = loop.time() if pending else None
            if not unread:
                pipe.feed(message)
            try:
                await self._processor.process_async(protocol, protocol)
            except NoMessageYet:  # over HTTP: a request that carried no Thrift message (a CORS preflight), answered
                ending = await self._write(writer, pipe)
                if ending is not None:
                    return ending
                continue
            except SessionClosed:
                await self._write(writer, pipe)
                return "closed", state.session.close_reason
            except TTransportException as error:
                if state.closing and error.type == TTransportException.END_OF_FILE:
                    return _STOPPING
                if error.type == TTransportException.END_OF_FILE and state.in_flight is None:
                    # no message begun: an orderly end (e.g. a CORS preflight that asked to close, answered)
                    return transport_outcome(self._ending(False), error)
                return await answer_bad_message((reader, writer), state, protocol, pipe, error, self._limits)
            except Exception as error:
                if state.in_flight is None or not transport.has_unflushed():  # the request failed
                    return await answer_bad_message((reader, writer), state, protocol, pipe, error, self._limits)
                name = state.in_flight[0]
                logger.error("peer=%s: the %s reply cannot be encoded: %s: %s", self.peer, name,
                             type(error).__name__, clip_for_log(error))
                Answers.send_exception(state, protocol, TApplicationException.INTERNAL_ERROR,
                                       f"the server could not encode the {name} reply")
                state.end()
            if http:
                transport.keep_unread_input()  # a request its message left unanswered (one-way) gets its 200 now
            ending = await self._write(writer, pipe)
            if ending is not None:
                return ending
            if state.closing or self._stopping:  # (stopped while the message came: see ``stop``)
                return _STOPPING
            unread = frames and transport.keep_unread_input() > 0
            if http and not transport.request.keep_alive:  # answered, then closed
                error = TTransportException(TTransportException.END_OF_FILE, "the HTTP client asked to close")
                return transport_outcome(self._ending(False), error)

    def _wait_until(self, mid_request: bool, loop: asyncio.AbstractEventLoop) -> None:
        """When the read for the next bytes gives up (loop time): the handshake's deadline before the
        session, ``request_timeout`` from a message's first byte, else ``idle_timeout`` from now; a
        session between messages that may park is looked at by the sweep after ``PARK_AFTER`` already."""
        limits = self._limits
        if not self._in_session:
            self.expires_at = self._deadline_at = self.accepted_at + limits.handshake_timeout
        elif mid_request:
            self.expires_at = self._deadline_at = self._message_started + limits.request_timeout
        else:
            now = loop.time()
            self.expires_at = self._deadline_at = now + limits.idle_timeout
            if self._parks is not None and limits.idle_timeout > PARK_AFTER:
                self.expires_at = now + PARK_AFTER

    def _count(self, data: bytes) -> None:
        """Counts bytes against the handshake's budget (until the session starts)."""
        self._received_before_hello += len(data)
        budget = self.config.pre_session_bytes
        if self._received_before_hello > budget:
            said = "once inflated from zlib" if self._zlib else "before hello() succeeded"
            raise BudgetExceeded(TTransportException.SIZE_LIMIT, f"more than {budget} bytes {said} (handshake_max_bytes)")

    def _ending(self, mid_request: bool) -> Ending:
        return Ending.of(None, self.config.handshake, self.state, mid_request)

    async def _write(self, writer: Any, pipe: Any) -> Optional[Outcome]:
        """Writes what the gate answered; the peer has ``reply_timeout`` to take it."""
        data = pipe.take_output()
        if data:
            writer.write(data)
        if not writer.writing_paused:  # the transport takes more: no wait (the common case)
            return None
        try:
            await self._by(writer.drain(), asyncio.get_running_loop().time() + self._limits.reply_timeout)
        except TimeoutError:
            _reset(writer)
            return "dropped", "the peer did not read its reply within reply_timeout"
        except OSError as reset:
            error = TTransportException(TTransportException.UNKNOWN, str(reset), inner=reset)
            return transport_outcome(self._ending(False), error)
        return None


def _reset(writer: Any) -> None:
    """Closes ``writer``'s connection with a reset, as the threaded server does (``PlainSocketStream.reset``)."""
    writer.transport.reset()
