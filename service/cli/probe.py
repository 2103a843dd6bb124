"""``thrift-handshake probe``: a health check that speaks the protocol, for an orchestrator's exec
probe (Kubernetes readiness and liveness) or a script: one ``ping()`` before any hello, which the
session gate admits. Exit 0 when the server serves; 1 when it drains (``ping`` answered ``Draining``),
is full (``ServerFull``: every slot in a session) or is down (no connection, no reply within
``--timeout``). With ``--alive`` (a liveness probe) a draining or full server is alive too: 1 only when
it is down, so an orchestrator does not restart a server for being busy."""

from __future__ import annotations

import argparse

from ..client import Client
from ..config import ClientOptions, Timeouts
from ..errors import ServerFull, ThriftHandshakeError

__all__ = ["run_probe", "probe"]

#: The exit status of each outcome (the orchestrator reads only the status).
SERVING, NOT_SERVING = 0, 1


def probe(host: str, port: int, timeout: float) -> str:
    """What the server at ``host:port`` answers a ``ping()``: "serving", "draining: ...", "full: ..." or
    "down: ..."."""
    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import Draining

    options = ClientOptions(handshake=False, timeouts=Timeouts(connect=timeout, call=timeout))
    try:
        with Client(host, port, options, service=SessionService) as client:
            client.ping()
    except Draining as draining:
        return f"draining: {draining.remaining_ms} ms of its grace period left"
    except ServerFull as full:
        return f"full: {full}"
    except (ThriftHandshakeError, OSError) as error:
        return f"down: {error}"
    return "serving"


def run_probe(args: argparse.Namespace) -> int:
    """Prints the outcome; 0 serving (or, with ``--alive``, draining or full), else 1."""
    outcome = probe(args.host, args.port, args.timeout)
    print(outcome)
    up = outcome == "serving" or (args.alive and outcome.startswith(("draining", "full")))
    return SERVING if up else NOT_SERVING
