"""Attacks on the supervisor (``serve --workers``): a worker that dies before it serves must not stop a
service whose other workers can still serve."""

from __future__ import annotations

import textwrap

from test_workers import serve  # noqa: F401 (the fixture: a `serve --workers` process)

HANDLER = """
import os, signal, time
from thrift_handshake.demo import HandshakeHandler

class DiesOnceAtStart(HandshakeHandler):
    '''The first worker to build it dies at once (before serving); the others take a while to start.'''

    def __init__(self):
        try:
            os.unlink({marker!r})
        except FileNotFoundError:
            time.sleep(1.0)  # still starting when the first one dies
            super().__init__()
            return
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_dying_before_serving_does_not_stop_a_sibling_still_starting(serve, tmp_path):
    # Before: "worker 0 ... killed by SIGKILL before serving, and no worker ever served: stopping", and
    # the service exited 1 while worker 1 was a moment from serving (seen as a flaky
    # test_a_worker_that_cannot_restart_while_another_serves_keeps_the_service_up: a worker SIGKILLed
    # after it logged "listening" but before the supervisor had read that it served).
    marker = tmp_path / "die-once"
    marker.write_text("")
    (tmp_path / "dies_once.py").write_text(textwrap.dedent(HANDLER.format(marker=str(marker))))
    workers = serve("--workers", "2", "--path", str(tmp_path), "--handler", "dies_once:DiesOnceAtStart")
    client = workers.connect()
    assert client.echo("served") == "served"
    [died] = workers.matches(r"worker (\d) .* killed by SIGKILL before serving; waiting for the other workers to start")
    assert not workers.matches("no worker ever served")
    workers.wait_for(r"worker %s started: pid" % died.group(1), count=2)  # its slot restarts once one serves
    assert workers.stop() == 0
