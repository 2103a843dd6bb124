"""Interceptors on both ends: every call seen once, with its arguments, session, outcome and timing;
one that raises is reported and breaks neither the call nor the connection."""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Tuple

import pytest

from thrift_handshake import Client, ClientOptions, ServerConfig
from thrift_handshake.errors import ConnectionBroken, RemoteApplicationError, ServiceError
from thrift_handshake.interceptors import Call, ClientCall, Interceptor, InterceptorChain, Outcome, ServerCall
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, InvalidRequest, Request

from conftest import encode_call, eventually, exchange


class Recorder(Interceptor):
    """Keeps every call it sees, with what each hook saw at its time."""

    def __init__(self) -> None:
        self.started: List[Tuple[str, object, object]] = []
        self.ended: List[Call] = []
        self.lock = threading.Lock()

    def call_started(self, call: Call) -> None:
        with self.lock:
            self.started.append((call.method, call.args, call.outcome))

    def call_ended(self, call: Call) -> None:
        with self.lock:
            self.ended.append(call)

    def calls(self, method: str) -> List[Call]:
        with self.lock:
            return [call for call in self.ended if call.method == method]


class Exploding(Interceptor):
    def __init__(self) -> None:
        self.tries = 0

    def call_started(self, call: Call) -> None:
        self.tries += 1
        raise RuntimeError("interceptor bug")

    def call_ended(self, call: Call) -> None:
        raise KeyError("another interceptor bug")


def _client(port: int, **options) -> Client:
    return Client("127.0.0.1", port, ClientOptions(**options), service=HandshakeService)


def test_a_server_interceptor_sees_the_call_its_arguments_session_result_and_timing(start_server):
    recorder = Recorder()
    server = start_server(interceptors=[recorder])
    with _client(server.port, client_name="seen") as client:
        assert client.echo("hi") == "hi"
        session_id = client.session_id
    assert eventually(lambda: recorder.calls("goodbye"))
    [echo] = recorder.calls("echo")
    assert isinstance(echo, ServerCall)
    assert (echo.args, echo.result, echo.outcome, echo.error) == (("hi",), "hi", Outcome.OK, None)
    assert echo.session.session_id == session_id and echo.session.client_name == "seen"
    assert echo.peer == echo.session.peer and echo.peer.startswith("127.0.0.1:")
    assert 0 <= echo.handler_seconds <= echo.duration
    assert ("echo", ("hi",), None) in recorder.started  # the arguments are there before the handler runs
    assert [call.method for call in recorder.ended] == ["hello", "echo", "goodbye"]


def test_hello_arguments_are_hidden_from_interceptors_on_both_ends(start_server):
    server_side, client_side = Recorder(), Recorder()
    server = start_server(interceptors=[server_side], auth_token="s3cret")
    with _client(server.port, auth_token="s3cret", interceptors=[client_side]):
        pass
    assert eventually(lambda: server_side.calls("goodbye"))
    [hello] = server_side.calls("hello")
    assert hello.args is None and hello.outcome is Outcome.OK
    [sent] = client_side.calls("hello")
    assert sent.args is None and sent.phase == "handshake"


def test_declared_errors_undeclared_failures_and_refusals_are_told_apart(start_server):
    recorder = Recorder()
    server = start_server(interceptors=[recorder])
    with _client(server.port) as client:
        with pytest.raises(InvalidRequest):
            client.process(Request(request_id=""))
        with pytest.raises(RemoteApplicationError):
            client.fail("on purpose")
    assert eventually(lambda: recorder.calls("goodbye"))
    [process] = recorder.calls("process")
    assert process.outcome is Outcome.DECLARED_ERROR and isinstance(process.error, InvalidRequest)
    [fail] = recorder.calls("fail")
    assert fail.outcome is Outcome.FAILED and str(fail.error) == "on purpose"

    before_hello = encode_call("echo", HandshakeService.echo_args(message="early"), seqid=7)
    exchange(server.port, before_hello + encode_call("nosuch", HandshakeService.echo_args(message="?"), seqid=8))
    assert eventually(lambda: recorder.calls("nosuch"))
    refused = [call for call in recorder.calls("echo") if call.seqid == 7][0]
    assert (refused.outcome, refused.args) == (Outcome.REFUSED, None)
    assert refused.reason == "echo() needs a completed hello() on this connection"
    assert ("echo", None, Outcome.REFUSED) in recorder.started  # refused: known when it starts
    [unknown] = recorder.calls("nosuch")
    assert unknown.outcome is Outcome.UNKNOWN_METHOD and unknown.reason == "Unknown function nosuch"


class Counting(Recorder):
    """Reads only what is known without watching the handler (method, outcome, timing)."""

    observes_handler = False


def test_an_interceptor_that_does_not_observe_the_handler_sees_calls_without_their_details(start_server):
    counting = Counting()
    server = start_server(interceptors=[counting])
    with _client(server.port) as client:
        assert client.echo("hi") == "hi"
        with pytest.raises(InvalidRequest):
            client.process(Request(request_id=""))
    assert eventually(lambda: counting.calls("goodbye"))
    [echo], [process] = counting.calls("echo"), counting.calls("process")
    assert (echo.args, echo.result, echo.handler_seconds, echo.outcome) == (None, None, None, Outcome.OK)
    assert process.outcome is Outcome.OK and process.error is None  # a declared error is the handler's business
    assert echo.duration > 0
    assert counting.calls("hello")[0].outcome is Outcome.OK  # session methods are always watched


def test_one_interceptor_that_observes_the_handler_is_enough_to_watch_it(start_server):
    counting, recorder = Counting(), Recorder()
    server = start_server(interceptors=[counting, recorder])
    with _client(server.port) as client:
        client.echo("both")
    assert eventually(lambda: recorder.calls("goodbye"))
    assert counting.calls("echo")[0].args == recorder.calls("echo")[0].args == ("both",)


def test_the_call_log_watches_handlers_only_while_debug_is_on(start_server, caplog):
    server = start_server()
    with _client(server.port) as client, caplog.at_level(logging.DEBUG, logger="thrift_handshake.calllog"):
        with pytest.raises(InvalidRequest):
            client.process(Request(request_id=""))
        assert eventually(lambda: "call process" in caplog.text)
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("call process")]
    assert ": declared_error in " in line


def test_one_way_calls_are_seen_as_one_way(start_server):
    recorder, sent = Recorder(), Recorder()
    server = start_server(interceptors=[recorder])
    with _client(server.port, interceptors=[sent]) as client:
        client.notify(Event(name="seen"))
        client.ping()
    assert eventually(lambda: recorder.calls("notify"))
    [notify] = recorder.calls("notify")
    assert notify.oneway and notify.outcome is Outcome.OK and notify.args[0].name == "seen"
    assert not recorder.calls("ping")[0].oneway
    assert [(call.method, call.oneway) for call in sent.ended] == [
        ("hello", False), ("notify", True), ("ping", False), ("goodbye", False)]  # and so on the client


def test_an_interceptor_that_raises_is_reported_and_breaks_nothing(start_server, caplog):
    exploding, recorder = Exploding(), Recorder()
    server = start_server(interceptors=[exploding, recorder])
    with caplog.at_level(logging.WARNING, logger="thrift_handshake.interceptors"):
        with _client(server.port, interceptors=[Exploding()]) as client:
            for _ in range(5):
                assert client.echo("still") == "still"
            assert client.stats().calls["echo"] == 5  # the runtime's own counting still ran
    assert eventually(lambda: recorder.calls("goodbye"))
    assert exploding.tries == 8  # hello, 5 echoes, stats, goodbye
    assert all(call.outcome is Outcome.OK for call in recorder.ended)
    reports = [r for r in caplog.records if r.name == "thrift_handshake.interceptors"]
    # the first failure of each hook with its traceback; the rest within the next ten seconds are counted
    assert {(r.getMessage().split(" for ")[0]) for r in reports} == {
        "interceptor Exploding failed in call_started", "interceptor Exploding failed in call_ended"}
    assert len(reports) == 4 and reports[0].exc_info is not None


def test_a_call_written_before_a_pipelined_hellos_answer_is_seen_in_its_session(start_server):
    recorder = Recorder()
    server = start_server()
    with _client(server.port, interceptors=[recorder], pipeline_hello=True) as client:
        assert client.echo("first") == "first"
        session_id = client.session_id
    [echo] = recorder.calls("echo")
    assert session_id and echo.session_id == session_id


def test_a_client_interceptor_sees_each_request_with_its_timeline_record(start_server):
    recorder = Recorder()
    server = start_server()
    with _client(server.port, interceptors=[recorder]) as client:
        client.echo("out")
        with pytest.raises(ServiceError):
            client.process(Request(request_id=""))
        session_id = client.session_id
    [echo] = recorder.calls("echo")
    assert isinstance(echo, ClientCall) and echo.phase == "call"
    assert (echo.args, echo.result, echo.outcome, echo.session_id) == (("out",), "out", Outcome.OK, session_id)
    assert echo.record is client.timeline.calls("echo")[-1]  # the timeline is the chain's first member
    assert echo.record.bytes_out > 0 and echo.duration >= echo.record.duration
    [process] = recorder.calls("process")
    assert process.outcome is Outcome.DECLARED_ERROR and isinstance(process.error, InvalidRequest)
    assert process.args == (Request(request_id=""),)
    assert [call.method for call in recorder.ended] == ["hello", "echo", "process", "goodbye"]


def test_a_broken_call_ends_failed_on_the_client(start_server):
    recorder = Recorder()
    server = start_server()
    client = _client(server.port, interceptors=[recorder])
    client.connect()
    client._sock.handle.close()  # the socket is gone under the client
    with pytest.raises(ConnectionBroken):
        client.echo("lost")
    [echo] = recorder.calls("echo")
    assert echo.outcome is Outcome.FAILED and echo.error is not None
    client.close()


def test_call_ended_runs_in_reverse_order_so_the_first_interceptor_wraps_the_rest():
    order: List[str] = []

    class Named(Interceptor):
        def __init__(self, name: str) -> None:
            self.name = name

        def call_started(self, call: Call) -> None:
            order.append(f"start {self.name}")

        def call_ended(self, call: Call) -> None:
            order.append(f"end {self.name}")

    chain = InterceptorChain([Named("a"), Named("b")])
    call = Call("m", 1, False, "peer", 0.0)
    chain.started(call)
    chain.ended(call)
    assert order == ["start a", "start b", "end b", "end a"]


def test_something_that_is_not_an_interceptor_is_refused_when_configured():
    with pytest.raises(TypeError, match="is not an interceptor"):
        InterceptorChain([object()])
    with pytest.raises(TypeError, match="is not an interceptor"):
        Client(options=ClientOptions(interceptors=[print]))


def test_interceptors_are_configured_in_one_place_per_end():
    assert ServerConfig(interceptors=[Recorder()]).interceptors.__class__ is tuple
    assert ClientOptions(interceptors=[Recorder()]).interceptors.__class__ is tuple


def test_an_interceptor_keeps_its_own_data_on_the_call_between_its_hooks(start_server):
    class Stopwatch(Interceptor):
        def __init__(self) -> None:
            self.spans: List[Tuple[str, float]] = []

        def call_started(self, call: Call) -> None:
            call.attributes["begun"] = call.started + 1.0

        def call_ended(self, call: Call) -> None:
            self.spans.append((call.method, call.attributes["begun"] - call.started))

    stopwatch = Stopwatch()
    server = start_server(interceptors=[stopwatch])
    with _client(server.port) as client:
        client.echo("timed")
    assert eventually(lambda: len(stopwatch.spans) == 3)
    assert stopwatch.spans == [("hello", 1.0), ("echo", 1.0), ("goodbye", 1.0)]
    fresh = Call("m", 1, False, "peer", 2.0)
    assert fresh.attributes == {} and fresh.attributes is fresh.attributes
    assert fresh.duration is None and repr(fresh) == "<Call m seqid=1 peer=peer running>"
    fresh.ended, fresh.outcome = 2.5, Outcome.OK
    assert fresh.duration == 0.5 and repr(fresh) == "<Call m seqid=1 peer=peer ok>"


def test_a_call_whose_arguments_cannot_be_decoded_is_still_started_and_ended(start_server, send_raw):
    recorder = Recorder()
    server = start_server(interceptors=[recorder], handshake=False)
    broken = encode_call("echo", HandshakeService.echo_args(message="x"), seqid=5)[:-3] + b"\x08\x00\x01"
    send_raw(server.port, broken)  # the message field arrives as an i32: the arguments cannot be decoded
    assert eventually(lambda: recorder.calls("echo"))
    [echo] = recorder.calls("echo")
    assert ("echo", None, None) in recorder.started
    assert echo.outcome is Outcome.FAILED and echo.error is not None and echo.args is None
    assert server.metrics.snapshot().calls == {"echo": 1}


def test_an_object_with_only_one_hook_is_not_an_interceptor():
    class OnlyStarted:
        def call_started(self, call: Call) -> None:
            pass

    with pytest.raises(TypeError, match="needs call_started"):
        InterceptorChain([OnlyStarted()])


def test_a_failing_hook_is_reported_at_most_every_ten_seconds_with_the_count_between(monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    chain = InterceptorChain([Exploding()])
    call = Call("m", 1, False, "peer", 0.0)
    with caplog.at_level(logging.WARNING, logger="thrift_handshake.interceptors"):
        for at in (1000.0, 1005.0, 1009.99, 1010.0, 1019.0, 1021.0):
            now[0] = at
            chain.started(call)
    reports = [r for r in caplog.records if r.name == "thrift_handshake.interceptors"]
    line = ("interceptor Exploding failed in call_started for m; the call goes on without it: "
            "RuntimeError: interceptor bug")
    assert [r.getMessage() for r in reports] == [line, line + " (2 more failures since the last report)",
                                                 line + " (1 more failures since the last report)"]
    assert [bool(r.exc_info) for r in reports] == [True, False, False]  # the traceback once


def test_the_readme_interceptor_example_runs_as_written(start_server, caplog):
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Interceptors: see every call, on both ends", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    server = start_server(interceptors=names["server_config"].interceptors)
    with caplog.at_level(logging.WARNING):
        with Client("127.0.0.1", server.port, names["client_options"], service=HandshakeService) as client:
            client.process(Request(request_id="slow", work_ms=150))
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("process from ")]
    assert len(slow) == 2 and all("(ok)" in line for line in slow), slow  # seen by the server and the client
