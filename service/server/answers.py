"""What the server writes to a peer it refuses or cannot serve, through ``wire.answers``: the mismatch
explanation (in the peer's own dialect, logged once) and the exception that answers a message in flight.
"""

from __future__ import annotations

from typing import Any, Optional

from thrift.Thrift import TApplicationException

from ..config import ServerConfig
from ..gate_state import ConnectionState
from ..peerlog import WarningBudget
from ..wire import Dialect, answer_refusal, write_application_exception
from .connection import Connection

__all__ = ["Answers"]


class Answers:
    """Answers to peers this server cannot serve, worded and framed for them."""

    def __init__(self, config: ServerConfig, warnings: WarningBudget) -> None:
        self.config = config
        self._warnings = warnings

    def explain_mismatch(self, connection: Connection, first: bytes, dialect: Optional[Dialect], expected: str,
                         inside: str = "") -> None:
        """Answers a peer this server cannot serve, where it can read the answer, and logs why; ``inside``
        names what the dialect came wrapped in (the answer is wrapped the same)."""
        said = "nothing it recognises" if dialect is None else str(dialect)
        said += f" inside {inside}" if inside else ""
        explanation = f"the client speaks {said}; {expected}"
        self._warnings.warning("refused peer=%s: %s (first bytes %s)", connection.peer, explanation, first.hex(" "))
        limits = self.config.limits
        try:
            answer_refusal(connection.socket, dialect, TApplicationException.INVALID_PROTOCOL, explanation,
                           limits.max_message_bytes, limits.max_container_items)
        except Exception:  # the peer is gone, or its message was not even a header
            pass

    @staticmethod
    def send_exception(state: ConnectionState, protocol: Any, kind: int, message: str) -> None:
        """Answers the message in flight with a TApplicationException, dropping any half-written reply."""
        name, seqid = state.in_flight
        protocol.trans.discard_unflushed()
        write_application_exception(protocol, name, seqid, kind, message)
