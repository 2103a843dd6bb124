"""Bounded load, fuzz and protocol-choice checks: loopback only, fixed seeds, stop by themselves."""

from __future__ import annotations

import random
import threading

import pytest
from conftest import encode_call, eventually

from thrift_handshake import (
    Client,
    ClientOptions,
    Wire,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.ttypes import AllTypes, Color, Point, Request, Shape


def test_concurrent_clients_all_get_their_own_answers(server):
    clients, calls = 16, 40
    errors = []

    def run(n: int) -> None:
        try:
            with Client("127.0.0.1", server.port, ClientOptions(client_name=f"load-{n}"), service=HandshakeService) as client:
                for i in range(calls):
                    response = client.process(Request(request_id=f"{n}-{i}", payload=str(n)))
                    if response.request_id != f"{n}-{i}" or response.sequence != i + 1:
                        errors.append((n, i, response))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with Client("127.0.0.1", server.port, service=HandshakeService) as observer:
        stats = observer.stats()
    assert stats.calls["process"] == clients * calls
    assert stats.handshakes_ok == clients + 1
    assert stats.sessions_active == 1


def test_mutated_messages_never_take_the_server_down(server, client, send_raw):
    """Flips, truncations and insertions in real messages: 300 cases, fixed seed, bounded time."""
    rng = random.Random(20261125)
    hello = SessionService.hello_args(hello=None)
    seeds = [
        encode_call("echo", HandshakeService.echo_args(message="请求数据")),
        encode_call("process", HandshakeService.process_args(request=Request(request_id="r", payload="p",
                                                                                  headers={"a": "b"}))),
        encode_call("echo_types", HandshakeService.echo_types_args(value=AllTypes(
            id="x", tags={"a"}, groups={"g": [Point(x=1, y=2)]}, shape=Shape(name="n"), color=Color.BLUE))),
        encode_call("hello", hello),
    ]
    for case in range(300):
        message = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(message))
            action = rng.random()
            if action < 0.5:
                message[position] = rng.randrange(256)
            elif action < 0.75:
                del message[position:]
                if not message:
                    message.append(0)
            else:
                message[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        send_raw(server.port, bytes(message))
    assert client.echo("still serving") == "still serving"
    # the server may still be closing the last fuzz connection
    assert eventually(lambda: client.stats().connections_open == 1)


@pytest.mark.parametrize("server_accelerated, client_accelerated", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("protocol, transport", [("binary", "buffered"), ("compact", "framed")])
def test_pure_python_and_accelerated_implementations_interoperate(start_server, server_accelerated,
                                                                  client_accelerated, protocol, transport):
    server = start_server(wire=Wire(protocol, transport, server_accelerated))
    value = AllTypes(id="p", big_number=-(2**63), data=bytes(range(256)), text="请求数据",
                     groups={"g": [Point(x=1, y=-1, label="中")]}, palette={-1: Color.UNKNOWN_COLOR})
    with Client("127.0.0.1", server.port, ClientOptions(wire=Wire(protocol, transport, client_accelerated)), service=HandshakeService) as client:
        assert client.echo_types(value) == value
        assert client.echo("请求数据") == "请求数据"
