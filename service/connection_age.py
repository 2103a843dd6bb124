"""The max connection age (``ServerLimits.max_connection_age``), without sockets: when a connection has
lived long enough, and what the call that finds it so is answered.

Each connection draws its own age within +-``JITTER`` of the limit, so that the connections a fleet of
clients opened together do not all end, and reconnect, at once (gRPC's MAX_CONNECTION_AGE does the same).
Past its age, the next call that declares ``HandshakeRequired`` is answered with it, ``reconnect`` set,
before it runs; the server then closes the connection. The call never ran, so a client may send it again
on a new connection whatever the method (``Client`` does, once).
"""

from __future__ import annotations

import random
from typing import Callable

from thrift_handshake_gen.session.ttypes import HandshakeRequired

__all__ = ["JITTER", "age_deadline", "asks_to_reconnect", "reconnect_answer"]

#: How far each connection's age may be from the limit, as a share of it (either way).
JITTER = 0.1


def age_deadline(opened_at: float, max_age: float, draw: Callable[[], float] = random.random,
                 jitter: float = JITTER) -> float:
    """When a connection opened at ``opened_at`` (any clock) reaches its age: ``max_age`` times a factor
    within [1 - jitter, 1 + jitter], from ``draw()`` (a number in [0, 1))."""
    if max_age <= 0:
        raise ValueError(f"max_age must be positive, not {max_age!r}")
    return opened_at + max_age * (1.0 + jitter * (2.0 * draw() - 1.0))


def reconnect_answer(method: str, age: float) -> HandshakeRequired:
    """What a call to ``method`` on a connection ``age`` seconds old is answered instead of being run."""
    return HandshakeRequired(
        message=f"{method}() was not run: this connection reached the server's max connection age "
                f"({age:.1f} s) and closes now; connect again, say hello and send the call again",
        reconnect=True)


def asks_to_reconnect(error: BaseException) -> bool:
    """Whether ``error`` (a call's declared answer) says the call did not run and the connection closes."""
    return isinstance(error, HandshakeRequired) and error.reconnect is True
