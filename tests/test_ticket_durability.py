"""Acknowledged tickets are never silently lost or unknown: across graceful stops of ``serve --workers``,
a store deleted while serving, a restarted worker, two servers on one store, and a killed worker.
Each test prints its figure."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import eventually, report_reliability
from test_workers import serve  # noqa: F401 (the fixture: a `serve --workers` process)

from thrift_handshake import Client, ConnectionBroken, ServerConfig
from thrift_handshake.demo import demo_server
from thrift_handshake.demo.ledger import DONE, TicketLedger
from thrift_handshake.peerlog import clip_for_log
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import NotReady, Overloaded, Request, UnknownTicket


def remove_store(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)


def test_tickets_finished_inside_the_grace_period_read_done_after_a_stop(serve, tmp_path):
    # A worker could exit between its work's end and the outcome's write: 2 of 8 graceful stops left a
    # ticket that had finished inside the grace period reading "lost" after the restart.
    store = tmp_path / "tickets.sqlite"
    rounds, per_worker, lost = 10, 8, []
    started = time.monotonic()
    for _ in range(rounds):
        workers = serve("--workers", "2", "--ticket-store", str(store), "--grace", "10", "--submit-workers",
                        str(per_worker))
        tickets = []
        for client in workers.clients_on_each_worker().values():
            for n in range(per_worker):  # all finishing at once, right before their worker may exit
                tickets.append(client.submit(Request(request_id=f"t{n}", payload="x", work_ms=300)).ticket)
        assert workers.stop() == 0
        ledger = TicketLedger(str(store), ttl=600.0)
        lost += [ticket for ticket in tickets if ledger.outcome(ticket)[0] != DONE]
        ledger.close()
    total = rounds * per_worker * 2
    figure = (f"{rounds} stops, {total} tickets finishing in the grace period: {len(lost)} not done after the "
              f"stop ({time.monotonic() - started:.1f} s)")
    print("\n" + figure)
    report_reliability("graceful stops of --workers 2: tickets finished in the grace period", total, True,
                       len(lost), figure=figure)
    assert lost == []


def test_a_store_deleted_while_serving_is_an_error_not_a_fresh_file(tmp_path, caplog):
    store = tmp_path / "tickets.sqlite"
    server = demo_server(ServerConfig(port=0), ticket_store=str(store)).start()
    try:
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            ack = client.submit(Request(request_id="before", payload="x"))
            assert client.get_result(ack.ticket, 5000).request_id == "before"
            remove_store(store)
            with pytest.raises(Overloaded, match="ticket store cannot record"):
                client.submit(Request(request_id="after", payload="x"))
            assert client.get_result(ack.ticket, 0).request_id == "before"  # still answered from memory
    finally:
        server.stop()
    assert not store.exists(), "the deleted store was made again"
    assert [r for r in caplog.records if "was deleted or replaced while serving" in r.getMessage()]
    # A server started on the path afterwards starts afresh (it cannot tell); the error above said why.


def test_a_restarted_worker_never_opens_a_new_empty_store(serve, tmp_path):
    # A worker restarted after the store was deleted made a new, empty one: about half of all
    # look-ups (those it served) answered UnknownTicket for tickets acknowledged before.
    store = tmp_path / "tickets.sqlite"
    workers = serve("--workers", "2", "--ticket-store", str(store))
    clients = workers.clients_on_each_worker()
    tickets = [client.submit(Request(request_id=f"r{n}", payload="x")).ticket
               for client in clients.values() for n in range(10)]
    for ticket in tickets:
        next(iter(clients.values())).get_result(ticket, 5000)
    remove_store(store)
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    workers.wait_for(r"could not start: ticket store .* is gone")
    assert not store.exists(), "a restarted worker made a new, empty store"
    unknown = answered = 0
    for ticket in tickets * 2:  # new connections: they land on whichever worker serves
        with Client("127.0.0.1", workers.port, service=HandshakeService) as client:
            try:
                client.get_result(ticket, 0)
                answered += 1
            except UnknownTicket:
                unknown += 1
            except NotReady as error:  # the killed worker's tickets: the store that knew them is gone
                assert "ticket store cannot be read" in error.message, error.message
    figure = f"{unknown} of {len(tickets) * 2} look-ups UnknownTicket, {answered} answered"
    print("\nafter the store was deleted and a worker restarted: " + figure)
    report_reliability("store deleted, then a worker restarted (no new empty store)", len(tickets) * 2, True,
                       unknown, figure=figure)
    assert unknown == 0


def test_an_outcome_the_locked_store_missed_is_written_once_it_is_free(tmp_path, caplog):
    # Another process held the file's write lock past SQLite's busy timeout as the work ended: the
    # outcome was never written, so a server sharing the store said "still running" for finished work.
    store = tmp_path / "tickets.sqlite"
    owner = demo_server(ServerConfig(port=0), ticket_store=str(store)).start()
    other = demo_server(ServerConfig(port=0), ticket_store=str(store)).start()
    blocker = sqlite3.connect(str(store), isolation_level=None)
    try:
        with Client("127.0.0.1", owner.port, service=HandshakeService) as client:
            ticket = client.submit(Request(request_id="r1", payload="kept", work_ms=50)).ticket
            blocker.execute("BEGIN EXCLUSIVE")
            assert eventually(lambda: "database is locked" in caplog.text, 15), caplog.text[-2000:]
            blocker.execute("COMMIT")
        with Client("127.0.0.1", other.port, service=HandshakeService) as client:
            response = client.get_result(ticket, 5_000)  # no call to the owner meanwhile
    finally:
        blocker.close()
        other.stop()
        owner.stop()
    assert (response.request_id, response.digest) == ("r1", hashlib.sha256(b"kept").hexdigest())


def test_a_killed_servers_tickets_read_lost_on_the_server_sharing_its_store(tmp_path):
    # The other server answered "still running" forever: only a ledger's opening marked tickets lost.
    store = tmp_path / "tickets.sqlite"
    other = demo_server(ServerConfig(port=0), ticket_store=str(store)).start()
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--port", "0", "--ticket-store",
                                str(store)], stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"listening on \S+:(\d+)", _first_line(process)).group(1))
        with Client("127.0.0.1", port, service=HandshakeService) as doomed:
            tickets = [doomed.submit(Request(request_id=f"long{n}", work_ms=10_000)).ticket for n in range(3)]
        process.kill()
        process.wait(10)
        answers = []
        with Client("127.0.0.1", other.port, service=HandshakeService) as client:
            for ticket in tickets:
                with pytest.raises(NotReady) as caught:
                    client.get_result(ticket, 0)
                answers.append(caught.value.message)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stderr.close()
        other.stop()
    figure = f"{len(tickets)} tickets of the killed server read: {sorted(set(a.split(':')[0] for a in answers))}"
    print("\n" + figure)
    report_reliability("two servers on one store, one SIGKILLed: its running tickets", len(tickets), True,
                       sum(not answer.startswith("lost: ") for answer in answers), figure=figure)
    assert all(answer.startswith("lost: ") for answer in answers), answers


def _first_line(process: subprocess.Popen) -> str:
    line = process.stderr.readline()
    while "listening on" not in line and line:
        line = process.stderr.readline()
    return line


def test_clients_of_a_killed_worker_are_told_the_server_went_away(serve):
    # They were told "does it expect TLS, another Thrift protocol or transport, or is it at its
    # connection limit?", as if the connection had never worked.
    workers = serve("--workers", "2")
    pid, client = next(iter(workers.clients_on_each_worker().items()))
    os.kill(pid, signal.SIGKILL)
    workers.wait_for(r"\(pid %d\) killed by SIGKILL" % pid)
    with pytest.raises(ConnectionBroken) as caught:
        client.echo("anyone there?")
    message = str(caught.value)
    print(f"\na client of a SIGKILLed worker is told: {message}")
    report_reliability("a worker SIGKILLed: its client is told the server went away", 1, True,
                       int("went away" not in message), figure=clip_for_log(message.split(": ", 3)[-1], 45))
    assert "went away" in message and "TLS" not in message and "connection limit" not in message, message
