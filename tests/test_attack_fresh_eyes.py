"""Attacks by a fresh-eyed outsider, each a defect found and fixed: idle or reset connections to the
admin endpoint, peer-chosen names that forged log lines or JSON fields, sets priced below what they hold
decoded, and Endpoints that stopped at a server that took the connection but never answered hello."""

from __future__ import annotations

import json
import logging
import socket
import struct

import pytest

from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics

from thrift_handshake.logs import JsonFormatter

from conftest import encode_call, eventually, exchange


@pytest.fixture
def endpoint():
    with AdminEndpoint(PrometheusMetrics(), token="s3cret", idle_timeout=0.5) as endpoint:
        yield endpoint


def test_a_connection_that_never_finishes_its_request_is_closed(endpoint):
    with socket.create_connection(("127.0.0.1", endpoint.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        sock.settimeout(5.0)
        assert sock.recv(1024) == b""  # closed by the endpoint (a timeout here would raise)


def test_a_reset_connection_is_one_debug_line_not_a_traceback_on_stderr(endpoint, capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger="thrift_handshake.admin.endpoint"):
        sock = socket.create_connection(("127.0.0.1", endpoint.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, not a FIN
        assert eventually(lambda: any("reset" in r.getMessage().lower() for r in caplog.records))
    assert capsys.readouterr().err == ""


FORGED = ("x session=FAKE peer=6.6.6.6:1\n2026-12-07 12:00:00,000 WARNING thrift_handshake.server: "
          "admin logged in\u2028\x85")


@pytest.fixture
def access_lines(start_server):
    handler = _Kept()
    logger = logging.getLogger("thrift_handshake.calllog")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    server = start_server(call_log_level="INFO")
    yield server, handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _send_forged_call(port: int) -> None:
    from thrift_handshake_gen import HandshakeService

    exchange(port, encode_call(FORGED, HandshakeService.echo_args(message="hi")))


def test_a_method_name_cannot_break_a_text_log_line(access_lines):
    server, records = access_lines
    _send_forged_call(server.port)
    assert eventually(lambda: records)
    message = records[0].getMessage()
    assert message.splitlines() == [message], message
    assert message.startswith("call x session=FAKE peer=6.6.6.6:1\\n2026-12-07")


def test_a_method_name_cannot_forge_the_peer_or_session_of_a_json_line(access_lines):
    server, records = access_lines
    _send_forged_call(server.port)
    assert eventually(lambda: records)
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["peer"].startswith("127.0.0.1:") and "session" not in line, line


def test_a_dropped_one_way_call_s_name_cannot_forge_the_peer_of_its_warning(access_lines):
    from thrift_handshake_gen import HandshakeService

    server, records = access_lines
    exchange(server.port, encode_call(FORGED, HandshakeService.echo_args(message="hi"), message_type=4))
    assert eventually(lambda: [r for r in records if r.getMessage().startswith("dropped")])
    [dropped] = [r for r in records if r.getMessage().startswith("dropped")]
    assert json.loads(JsonFormatter().format(dropped))["peer"].startswith("127.0.0.1:")


@pytest.mark.parametrize("kind", ["set<i32>", "set<string>"])
def test_a_set_is_priced_near_what_the_decoder_holds(kind):
    # A set holds a hash table (16-byte entries, at most 3/5 full) besides its elements: priced as a
    # list's 8-byte slots, 200,000 distinct elements held 2.05 times their price.
    import gc
    import tracemalloc

    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.protocol.TCompactProtocol import TCompactProtocolAccelerated
    from thrift.transport.TTransport import TMemoryBuffer

    from thrift_handshake import Wire
    from thrift_handshake.wire.framer import FramerLimits
    from thrift_handshake.wire.price import decoded_price, decoded_price_compact
    from thrift_handshake.wire.whole_arguments import ArgumentsFramer
    from thrift_handshake_gen.ttypes import AllTypes

    count = 200_000
    value = (AllTypes(layers=[{"a": set(range(1000, 1000 + count))}]) if kind == "set<i32>"
             else AllTypes(tags={f"t{i}" for i in range(count)}))
    for protocol_class, name, walk in ((TBinaryProtocolAccelerated, "binary", decoded_price),
                                       (TCompactProtocolAccelerated, "compact", decoded_price_compact)):
        buffer = TMemoryBuffer()
        value.write(protocol_class(buffer))
        data = buffer.getvalue()
        framer = ArgumentsFramer(Wire(protocol=name), FramerLimits(2**30, max_decoded_bytes=10**10))
        framer.receive(data)
        framer.whole()
        price = walk(data, 10**12)
        assert framer.price == price
        gc.collect()
        tracemalloc.start()
        decoded = AllTypes()
        decoded.read(protocol_class(TMemoryBuffer(data)))
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert held <= 1.5 * price, (name, held, price, round(held / price, 2))


@pytest.fixture
def silent_listener():
    """A port that takes TCP connections (the kernel's backlog) and never answers: a wedged server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def closing_listener():
    """A port whose server closes every connection unanswered, as one at its connection limit may."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def refuse() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=refuse)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join()


@pytest.mark.parametrize("bad", ["silent_listener", "closing_listener"])
def test_first_available_fails_over_past_a_server_that_never_answers_hello(start_server, request, bad):
    from thrift_handshake import Client, ClientOptions, Endpoints, Timeouts
    from thrift_handshake_gen import HandshakeService

    good = start_server()
    endpoints = Endpoints([("127.0.0.1", request.getfixturevalue(bad)), ("127.0.0.1", good.port)],
                          policy="first_available")
    options = ClientOptions(timeouts=Timeouts(handshake=0.5))
    with Client(endpoints, options=options, service=HandshakeService) as client:
        assert client.echo("served") == "served"
        assert client.port == good.port


def test_a_runtime_word_without_a_value_still_names_the_field_in_a_json_line():
    # "session=None" is the runtime's own word (no session yet): peer text quoted after it must not fill it.
    record = logging.LogRecord("thrift_handshake.server", logging.INFO, __file__, 1, "closed peer=%s session=%s: %s",
                               ("127.0.0.1:5", None, "bad message: 'x session=FAKE peer=6.6.6.6:1'"), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["peer"] == "127.0.0.1:5" and "session" not in line, line


def test_connections_past_max_clients_are_closed_at_once_and_the_endpoint_recovers():
    import urllib.error
    import urllib.request

    with AdminEndpoint(PrometheusMetrics(), idle_timeout=30.0, max_clients=2) as endpoint:
        held = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(2)]
        with socket.create_connection(("127.0.0.1", endpoint.port)) as third:
            third.settimeout(5.0)
            assert third.recv(1024) == b""  # not a thread held for 30 s
        for sock in held:
            sock.close()

        def scraped() -> bool:
            try:
                with urllib.request.urlopen(endpoint.url, timeout=2) as answer:
                    return answer.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        assert eventually(scraped)


def test_the_request_line_an_admin_client_sends_is_logged_escaped(endpoint, caplog):
    with caplog.at_level(logging.DEBUG, logger="thrift_handshake.admin.endpoint"):
        with socket.create_connection(("127.0.0.1", endpoint.port)) as sock:
            sock.sendall(b"GET /a\rforged line\x1b[2J HTTP/1.0\r\n\r\n")
            sock.settimeout(5.0)
            while sock.recv(65536):
                pass
        assert eventually(lambda: any("forged" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert all(line.isprintable() and "/a\\rforged line\\x1b[2J" in line for line in lines), lines
