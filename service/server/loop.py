"""The message loop of one connection, on a pool thread: serve the messages the peer has sent, then
hand the connection back to the watch or close it, saying why."""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable, Optional, Tuple

from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from ..config import ServerConfig
from ..memory import MemoryReturn
from ..gate import SessionProcessor
from ..gate_state import ConnectionState, SessionClosed
from ..peerlog import clip_for_log
from ..pool import WorkerPool
from ..states import ConnectionEvent, SocketMode
from ..wire import DecodedSizeRefused, NoMessageYet, discard_input
from .answers import Answers
from .connection import Connection
from .opening import Opening
from .outcome import BAD_INPUT, Ending, Outcome, bad_input, closing_outcome, transport_outcome

__all__ = ["MessageLoop"]

logger = logging.getLogger(__package__)  # the server's one logger: operators filter on its name

#: Bytes read and written in one turn on a pool thread above which their memory is given back once freed.
_LARGE_TURN = 1024 * 1024
#: Read after every message: a module name is found faster than an enum member (Python 3.11).
_HANDSHAKE = SocketMode.HANDSHAKE


class _BadMessage(Exception):
    """A message that could not be decoded (or was too big); the connection closes after answering."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class MessageLoop:
    """Serves connections that have input. ``park(connection)`` hands one back to the watch (False when
    it must close instead); ``finish(connection, event, reason)`` closes one and logs how it ended;
    ``release(connection)`` closes one whose start failed (already explained and logged)."""

    def __init__(self, config: ServerConfig, processor: SessionProcessor, opening: Opening, answers: Answers,
                 pool: Callable[[], Optional[WorkerPool]], park: Callable[[Connection], bool],
                 finish: Callable[[Connection, str, str], None], release: Callable[[Connection], None]) -> None:
        self._config = config
        self._processor = processor
        self._opening = opening
        self._answers = answers
        self._pool = pool
        self._park = park
        self._finish = finish
        self._release = release
        self.memory = MemoryReturn()  # given back on the server's watch tick too (settle)

    def serve(self, connection: Connection) -> None:
        """Serves the messages the connection has, then lets it wait or closes it."""
        if connection.protocol is None and not self._opening.begin(connection):
            self._release(connection)
            return
        moved = connection.socket.moved
        try:
            event, reason = self._serve_messages(connection)
        except BaseException as error:  # not an Exception (a handler's or interceptor's SystemExit...): the
            # connection must not stay open, counted and "in flight" for ever; the pool logs the traceback
            call = connection.in_flight
            self._finish(connection, "dropped", f"the server failed serving {call[0] if call else 'a message'}: "
                                                f"{type(error).__name__}: {clip_for_log(error)}")
            raise
        moved = connection.socket.moved - moved
        if event is not None and connection.transport is not None:
            connection.transport.keep_unread_input()  # a closed connection's last message is freed now
        if event is None:
            if self._park(connection):
                self._released(moved)
                return
            event, reason = self._closing(connection)
        self._finish(connection, event, reason)
        self._released(moved)

    def _released(self, moved: int) -> None:
        """The messages of one turn on a pool thread are freed: large ones give their memory back."""
        if moved >= _LARGE_TURN:
            self.memory.released(moved)

    def _closing(self, connection: Connection) -> Outcome:
        return closing_outcome(connection.closed_by, self._config.handshake, connection.expiry_reason,
                               connection.eviction_reason)

    def _serve_messages(self, connection: Connection) -> Tuple[Optional[str], str]:
        """Serves messages while the peer has some; (None, "") when it has none for now, else how the
        connection ends: ("closed" or "dropped", why)."""
        state, transport, protocol, sock = connection.state, connection.transport, connection.protocol, connection.socket
        pool = self._pool()  # the same for the whole turn
        try:
            if connection.closing:
                raise TTransportException(TTransportException.END_OF_FILE, "server stopping")
            while True:
                try:
                    self._processor.process(protocol, protocol)
                except NoMessageYet:
                    return None, ""
                except SessionClosed:  # goodbye (or a refused token) answered
                    return "closed", state.session.close_reason
                except DecodedSizeRefused as refused:  # an unframed request too big decoded (wire.whole_arguments)
                    if not refused.stream_intact:  # refused midway: where it ends is unknown
                        raise _BadMessage(refused) from refused
                    self._answers.send_exception(state, protocol, TApplicationException.PROTOCOL_ERROR, refused.message)
                    transport.refill_error = None  # read past: the connection reads on
                    state.end()
                    _free_frames(refused)
                except TTransportException as error:
                    if error.type not in BAD_INPUT:
                        raise
                    raise _BadMessage(error) from error
                except Exception as error:
                    if state.in_flight is None or not transport.has_unflushed():  # the request failed
                        raise _BadMessage(error) from error
                    self._answer_unencodable_reply(state, protocol, error)
                    state.end()
                    _free_frames(error)
                pending = sock.message_done()  # bytes already below the transport (pushed back, TLS, zlib)?
                if connection.closing:
                    return self._closing(connection)
                unread = transport.keep_unread_input()
                if unread or pending:
                    sock.message_started(unread)  # part of the next message is here: its deadline runs
                elif connection.mode is _HANDSHAKE or pool.saturated:
                    # before the session, or others wait for a thread: no linger, wait in the watch
                    return None, ""
        except TTransportException as error:
            if connection.closed_by is ConnectionEvent.EVICTED:  # its socket was shut to make room
                return self._closing(connection)
            ending = Ending.of(connection.closed_by, self._config.handshake, state, sock.deadline is not None)
            if (error.type == TTransportException.END_OF_FILE and ending.in_flight and not ending.session_closing
                    and connection.closed_by is None):
                # cut off mid-request (a peer that half-closed can still read why)
                self._answer_bad_message(connection, state, protocol, "the request ended before it was complete")
            _free_frames(error)
            return transport_outcome(ending, error)
        except _BadMessage as bad:  # undecodable input: answer if we can, then close
            problem = bad_input(bad.error, self._config.limits)
            self._answer_bad_message(connection, state, protocol, problem)
            _free_frames(bad)
            return "dropped", f"bad message: {problem}"

    def _answer_unencodable_reply(self, state: ConnectionState, protocol: Any, error: Exception) -> None:
        """The handler returned something its IDL type cannot carry: INTERNAL_ERROR for this call only."""
        name = state.in_flight[0]
        logger.error("peer=%s: the %s reply cannot be encoded: %s: %s", state.context.peer, name,
                     type(error).__name__, clip_for_log(error))
        self._answers.send_exception(state, protocol, TApplicationException.INTERNAL_ERROR,
                                     f"the server could not encode the {name} reply")

    def _answer_bad_message(self, connection: Connection, state: ConnectionState, protocol: Any,
                            problem: str) -> None:
        """Tells the caller why its message was refused before the connection closes."""
        if state.in_flight is None:
            return
        try:
            name = state.in_flight[0]
            self._answers.send_exception(state, protocol, TApplicationException.PROTOCOL_ERROR,
                                         f"cannot decode the {name + ' ' if name else ''}request: {problem}")
            discard_input(connection.socket.handle)
        except Exception:  # the peer may be gone already
            pass


def _free_frames(error: BaseException) -> None:
    """Frees the locals of the frames an exception passed through (the call's arguments, result and
    encoded reply): the call refers to its error, whose traceback refers back to the call's frames, a
    cycle that only the garbage collector would break, seconds later and after the memory was counted."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
