"""A message the asyncio server refuses once the connection is serving: answered PROTOCOL_ERROR in the
peer's own dialect (to the call it starts, as far as its bytes tell), then the connection closes with
"bad message", as on the threaded server."""

from __future__ import annotations

from typing import Any

from thrift.Thrift import TApplicationException

from ..config import ServerLimits
from ..gate_state import ConnectionState
from ..server.answers import Answers
from ..server.outcome import Outcome, bad_input
from ..wire import AnswerableReadError, write_application_exception
from .opening import Stream, send_last

__all__ = ["refuse_message", "answer_bad_message"]

#: Of a refused message, this much is looked at for its name and seqid.
_HEAD_BYTES = 64 * 1024


async def refuse_message(stream: Stream, protocol: Any, pipe: Any, framer: Any, error: Exception,
                         limits: ServerLimits) -> Outcome:
    """A message the framer (or the handshake's budget) refused before it was whole."""
    name, seqid = "", 0
    if isinstance(error, AnswerableReadError):
        name, seqid = error.name, error.seqid
    if not name:  # read the message's start with the connection's own stack (THeader's header too),
        # which also sets it to answer in the dialect of that very frame
        pipe.feed(framer.head(_HEAD_BYTES))
        try:
            name, _, seqid = protocol.readMessageBegin()
        except AnswerableReadError as refused:
            name, seqid = refused.name or name, refused.seqid or seqid
        except Exception:  # not even a header: answered to seqid 0
            pass
    problem = bad_input(error, limits)
    try:
        write_application_exception(protocol, name, seqid, TApplicationException.PROTOCOL_ERROR,
                                    f"cannot decode the {name + ' ' if name else ''}request: {problem}")
    except Exception:  # e.g. a THeader stream that never framed a message: nothing it could read
        pipe.take_output()
    await send_last(stream, pipe.take_output())
    return "dropped", f"bad message: {problem}"


async def answer_bad_message(stream: Stream, state: ConnectionState, protocol: Any, pipe: Any, error: Exception,
                             limits: ServerLimits) -> Outcome:
    """A whole message that could not be decoded."""
    problem = bad_input(error, limits)
    if state.in_flight is not None:
        name = state.in_flight[0]
        try:
            Answers.send_exception(state, protocol, TApplicationException.PROTOCOL_ERROR,
                                   f"cannot decode the {name + ' ' if name else ''}request: {problem}")
        except Exception:  # the protocol's own state is beyond answering
            pipe.take_output()
    await send_last(stream, pipe.take_output())
    return "dropped", f"bad message: {problem}"
