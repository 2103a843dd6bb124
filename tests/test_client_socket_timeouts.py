"""The client's call timeout on its socket (wire/sockets.py's CountingSocket): armed at the socket's
first exchange however short it is, and kept a timeout under TLS (real servers on 127.0.0.1)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from thrift_handshake import CallTimeout, Client, ClientOptions, ClientTLS, ServerTLS, Timeouts
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

CERTS = Path(__file__).resolve().parent / "certs"
SLOW = Request(request_id="slow", payload="p", work_ms=1500)
TIMED_OUT = "^process: no reply within the timeout; the connection is closed$"


def test_a_first_call_with_a_timeout_shorter_than_the_re_arming_slack_still_times_out(start_server):
    # no hello: the call is the socket's first exchange; its 30 ms differ from "no timeout yet" (0) by
    # less than the 50 ms slack, so only "not armed on this socket yet" says the timeout must be set
    server = start_server(handshake=False)
    options = ClientOptions(handshake=False, timeouts=Timeouts(call=0.03))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=TIMED_OUT):
            client.process(SLOW)
        assert time.monotonic() - started < 1.4  # its 30 ms, not the handler's 1.5 s


def test_a_tls_call_times_out_as_a_timeout(start_server):
    server = start_server(tls=ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key")))
    options = ClientOptions(timeouts=Timeouts(call=0.5), tls=ClientTLS(ca_file=str(CERTS / "ca.pem")))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=TIMED_OUT):
            client.process(SLOW)
        assert time.monotonic() - started < 1.4  # its half second, not the handler's 1.5 s


