"""The asyncio server's stop and a message half received (issue 14): as on the threaded server, a call
whose first bytes have come is in flight; the stop lets its rest come and serves it within the grace,
then tells the session and closes it, instead of cutting the call off at once."""

from __future__ import annotations

import asyncio
import socket

import pytest

from conftest import encode_call, eventually
from test_fairness_between_hosts import HELLO
from test_aio_unread_replies import _read_exactly
from test_async_server import LOOPS, event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)

from thrift_handshake_gen import HandshakeService


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_call_half_received_at_the_stop_is_served_within_the_grace(start_async, event_loop_thread):
    server = start_async()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer:
        peer.sendall(HELLO)
        assert peer.recv(65536)
        call = encode_call("echo", HandshakeService.echo_args(message="begun before the stop"), seqid=2)
        assert eventually(lambda: server.connection_phases()["WAITING"] == 1)  # (hello's reply is behind it)
        peer.sendall(call[:20])
        assert eventually(lambda: server.connection_phases()["SERVING"] == 1)  # its read waits for the rest
        stopping = asyncio.run_coroutine_threadsafe(server.stop(grace=5.0), event_loop_thread.loop)
        assert eventually(lambda: _refused(server.port))  # the port is closed: every connection was stopped
        peer.sendall(call[20:])
        reply = encode_call("echo", HandshakeService.echo_result(success="begun before the stop"), seqid=2,
                            message_type=2)
        assert _read_exactly(peer, len(reply)) == reply
        stopping.result(10)
    assert server.connection_count == 0
