"""Attacks on a real server process (loopback only): memory stays bounded before hello, guessing a
token costs a connection per guess. Each test prints the server's RSS before, at peak and after."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import time
from typing import Iterator, Tuple

import pytest
from conftest import encode_call, exchange, report_reliability
from server_process import memory_kib
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRejected

TOKEN = "s3cret-token"


@pytest.fixture
def server_process() -> Iterator[Tuple[subprocess.Popen, int]]:
    """`thrift-handshake serve` with an auth token, in its own process (so its memory is its own)."""
    env = dict(os.environ, THRIFT_HANDSHAKE_AUTH_TOKEN=TOKEN)
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()
        while "C extension is missing" in line:  # thrift without fastbinary warns first
            line = process.stderr.readline()
        port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
        yield process, port
    finally:
        process.kill()
        process.wait(5)
        process.stderr.close()


def _answer(data: bytes, result_class):
    protocol = TBinaryProtocol(TMemoryBuffer(data))
    _, message_type, _ = protocol.readMessageBegin()
    if message_type == TMessageType.EXCEPTION:
        error = TApplicationException()
        error.read(protocol)
        return error
    result = result_class()
    result.read(protocol)
    return result


def empty_structs_call(lists: int, per_list: int) -> bytes:
    """echo_types(AllTypes{groups: map<string, list<Point>>}) with every Point empty: one byte each on
    the wire, one Python object each if decoded (written by hand: building it with objects is slow)."""
    out = [struct.pack("!iI", -2147418112 | TMessageType.CALL, 10) + b"echo_types" + struct.pack("!i", 1)]
    out.append(struct.pack("!bh", 12, 1))  # args field 1: the AllTypes struct
    out.append(struct.pack("!bhbbi", 13, 19, 11, 15, lists))  # field 19: map<string, list<Point>>
    for index in range(lists):
        key = f"g{index}".encode()
        out.append(struct.pack("!i", len(key)) + key + struct.pack("!bi", 12, per_list) + b"\0" * per_list)
    out.append(b"\0\0")  # end of AllTypes, end of the arguments
    return b"".join(out)


def _attack(process: subprocess.Popen, port: int, name: str, data: bytes):
    before = memory_kib(process.pid)
    answer = exchange(port, data)
    after = memory_kib(process.pid)
    print(f"\n{name}: sent {len(data) / 2**20:.1f} MiB; server RSS before {before['VmRSS'] / 1024:.0f} MiB, "
          f"peak {after['VmHWM'] / 1024:.0f} MiB, after {after['VmRSS'] / 1024:.0f} MiB")
    report_reliability(name, 1, process.poll() is None, 0, (before["VmRSS"], after["VmHWM"], after["VmRSS"]),
                       (None, None, _threads(process.pid)))
    assert after["VmHWM"] - before["VmRSS"] < 32 * 1024, "the server's memory grew with what an anonymous peer sent"
    return answer


def test_a_huge_call_before_hello_is_refused_within_the_handshake_budget(server_process):
    process, port = server_process
    data = empty_structs_call(lists=8, per_list=1_000_000)
    answer = _answer(_attack(process, port, "8 MB echo_types before hello", data), HandshakeService.echo_types_result)
    assert isinstance(answer, TApplicationException) and answer.type == TApplicationException.PROTOCOL_ERROR
    assert "before hello() succeeded" in answer.message


def test_a_hello_with_a_flood_of_features_is_refused_within_the_budget(server_process):
    process, port = server_process
    hello = ClientHello(client_name="flood", min_version=1, max_version=2, auth_token=TOKEN,
                        features={f"{i:06d}" + "f" * 10_000 for i in range(500)})
    data = encode_call("hello", SessionService.hello_args(hello=hello))
    answer = _answer(_attack(process, port, "hello with 500 features of 10 KB", data), SessionService.hello_result)
    assert isinstance(answer, TApplicationException) and "handshake_max_bytes" in answer.message


def test_a_wrong_token_closes_the_connection(server_process):
    _, port = server_process
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        wrong = ClientHello(client_name="guesser", min_version=1, max_version=2, auth_token="guess-1")
        sock.sendall(encode_call("hello", SessionService.hello_args(hello=wrong)))
        received = b""
        while True:  # the refusal, then the end of the connection: one guess per connection
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    answer = _answer(received, SessionService.hello_result)
    assert isinstance(answer.rejected, HandshakeRejected) and answer.rejected.reason == "wrong auth token"
    report_reliability("wrong auth token (the connection closes: one guess per connection)", 1,
                       server_process[0].poll() is None, 0)


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_64_concurrent_clients_lose_and_mix_up_nothing(server_process):
    """64 sessions at once, each with its own process() and submit()/get_result() traffic: every
    answer is checked against its request (request id, digest, per-session sequence)."""
    import hashlib
    import threading

    from thrift_handshake import Client, ClientOptions
    from thrift_handshake_gen.ttypes import Request

    process, port = server_process
    with Client("127.0.0.1", port, ClientOptions(auth_token=TOKEN), service=HandshakeService) as warm:
        # the server's own threads (all 4 submit workers) exist before the baseline is taken
        tickets = [warm.submit(Request(request_id=f"warm-{n}", payload="", work_ms=300)).ticket for n in range(4)]
        for ticket in tickets:
            warm.get_result(ticket, 5000)
    deadline = time.monotonic() + 10
    while _threads(process.pid) > 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    baseline = memory_kib(process.pid)["VmRSS"], _threads(process.pid)
    clients, rounds = 64, 25
    problems = []

    def run(n: int) -> None:
        try:
            options = ClientOptions(client_name=f"load-{n}", auth_token=TOKEN)
            with Client("127.0.0.1", port, options, service=HandshakeService) as client:
                for i in range(rounds):
                    payload = f"{n}:{i}:" + "x" * (i * 13)
                    digest = hashlib.sha256(payload.encode()).hexdigest()
                    response = client.process(Request(request_id=f"p-{n}-{i}", payload=payload))
                    if (response.request_id, response.digest, response.sequence) != (f"p-{n}-{i}", digest, i + 1):
                        problems.append(("process", n, i, response))
                    ack = client.submit(Request(request_id=f"s-{n}-{i}", payload=payload))
                    result = client.get_result(ack.ticket, 10_000)
                    if (result.request_id, result.digest) != (f"s-{n}-{i}", digest):
                        problems.append(("submit", n, i, result))
        except Exception as error:  # counted as lost below
            problems.append(("error", n, repr(error)))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    peak_threads = 0
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            peak_threads = max(peak_threads, _threads(process.pid))
            thread.join(0.05)
    deadline = time.monotonic() + 10
    while _threads(process.pid) > baseline[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = memory_kib(process.pid)
    print(f"\n64 clients x {rounds} process + {rounds} submit/get_result: lost or mismatched {len(problems)}; "
          f"server RSS before {baseline[0] / 1024:.0f} MiB, peak {after['VmHWM'] / 1024:.0f} MiB, "
          f"after {after['VmRSS'] / 1024:.0f} MiB; threads before {baseline[1]}, peak {peak_threads}, "
          f"after {_threads(process.pid)}")
    report_reliability(f"{clients} concurrent sessions, {clients * rounds * 3} calls", clients * rounds * 3,
                       process.poll() is None, len(problems), (baseline[0], after["VmHWM"], after["VmRSS"]),
                       (baseline[1], peak_threads, _threads(process.pid)))
    assert problems == []
    assert _threads(process.pid) <= baseline[1], "connection threads outlived their connections"
    assert after["VmRSS"] - baseline[0] < 64 * 1024, "memory did not come back near its baseline"
