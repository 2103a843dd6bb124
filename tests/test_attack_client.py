"""The Python client under attack from its own user: interceptors that are interrupted or block,
retries after close(). Each case pins what a caller relies on: the client can always be closed and
reconnected, and it never opens a connection nobody asked for."""

from __future__ import annotations

import signal
import socket
import threading
import time
import types
from pathlib import Path
from typing import List, Optional

import pytest

from thrift_handshake import Client, ClientOptions, RetryPolicy, ServerFull, ServerLimits, Timeouts, Wire
from thrift_handshake.errors import ArgumentError, ConnectionBroken, PhaseError, ThriftHandshakeError
from thrift_handshake.interceptors import Call, Interceptor
from thrift_handshake.states import ClientPhase
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

from conftest import eventually, generated
from test_client_phases import _hello_reply, loopback_peer
from test_examples import mypy
from test_full_server_without_hello import BlockingEcho


class Interrupts(Interceptor):
    """Raises KeyboardInterrupt (as Ctrl-C would, in a hook that blocks) once, in one hook of one method."""

    def __init__(self, method: str, hook: str) -> None:
        self.method, self.hook, self.armed = method, hook, True

    def _maybe(self, call: Call, hook: str) -> None:
        if self.armed and call.method == self.method and hook == self.hook:
            self.armed = False
            raise KeyboardInterrupt

    def call_started(self, call: Call) -> None:
        self._maybe(call, "call_started")

    def call_ended(self, call: Call) -> None:
        self._maybe(call, "call_ended")


@pytest.mark.parametrize("pipeline_hello", [False, True])
@pytest.mark.parametrize("hook", ["call_started", "call_ended"])
def test_a_hello_interrupted_in_an_interceptor_leaves_a_client_that_closes_and_reconnects(
        server, hook, pipeline_hello):
    options = ClientOptions(interceptors=(Interrupts("hello", hook),), pipeline_hello=pipeline_hello)
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    try:
        with pytest.raises(KeyboardInterrupt):
            client.connect()
            client.echo("the pipelined hello is answered here")
        assert client.phase is ClientPhase.BROKEN  # hello's fate is unknown: nothing more is read
        client.close()
        assert client.phase is ClientPhase.CLOSED
        assert eventually(lambda: server.metrics.snapshot().connections_open == 0)  # the socket is gone
        client.reconnect()
        assert client.echo("again") == "again"
    finally:
        client.close()


class ClosesOnHello(Interceptor):
    """Closes its client from one hook of hello (then, if asked, raises KeyboardInterrupt), noting what close() raised."""

    def __init__(self, hook: str, interrupt: bool) -> None:
        self.hook, self.interrupt = hook, interrupt
        self.client: Optional[Client] = None
        self.close_raised: List[BaseException] = []

    def _maybe(self, call: Call, hook: str) -> None:
        if self.client is not None and call.method == "hello" and hook == self.hook:
            client, self.client = self.client, None
            try:
                client.close()
            except ThriftHandshakeError as error:
                self.close_raised.append(error)
            if self.interrupt:
                raise KeyboardInterrupt

    def call_started(self, call: Call) -> None:
        self._maybe(call, "call_started")

    def call_ended(self, call: Call) -> None:
        self._maybe(call, "call_ended")


@pytest.mark.parametrize("interrupt", [False, True], ids=["", "then-ctrl-c"])
@pytest.mark.parametrize("pipeline_hello", [False, True])
@pytest.mark.parametrize("hook", ["call_started", "call_ended"])
def test_a_client_an_interceptor_closes_during_hello_is_closed(server, hook, pipeline_hello, interrupt):
    """close() from a hook of hello dropped the socket, then raised PhaseError ('cannot closed in phase
    HANDSHAKING'), and the client stayed in HANDSHAKING (or READY) without a socket: every close() and
    reconnect() after it raised. It is CLOSED now (hello's fate unknown: BROKEN, then CLOSED)."""
    closes = ClosesOnHello(hook, interrupt)
    options = ClientOptions(interceptors=(closes,), pipeline_hello=pipeline_hello)
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    closes.client = client
    try:
        with pytest.raises(KeyboardInterrupt if interrupt else PhaseError) as raised:  # the hello the hook cut short
            client.connect()
            client.echo("the pipelined hello is answered here")
        if not interrupt:  # (it read "cannot hello_accepted in phase CLOSED: allowed here: connect, closed")
            assert str(raised.value) == ("cannot call hello" if hook == "call_started" else "cannot finish hello") + \
                " in phase CLOSED: the connection is closed; call connect()"
        assert closes.close_raised == [] and closes.client is None
        assert client.phase is ClientPhase.CLOSED and client._sock is None
        assert client.close() is None and client.phase is ClientPhase.CLOSED
        assert eventually(lambda: server.metrics.snapshot().connections_open == 0)  # the socket is gone
        client.reconnect()
        assert client.echo("again") == "again"
    finally:
        client.close()


def test_ctrl_c_while_a_request_is_being_written_leaves_the_client_broken():
    """Part of the request is out: the connection is given up (BROKEN, socket closed), the call recorded
    as failed, so the rest of it can never be taken for the next request."""
    main, done = threading.main_thread().ident, threading.Event()

    def serve(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply())
        connection.recv(65536)  # the start of the echo request: the client is in its send
        signal.pthread_kill(main, signal.SIGALRM)
        done.wait(10)  # reads nothing more: the send cannot finish

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        with loopback_peer(serve, receive_buffer=8192) as port:
            client = Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(call=None)), service=HandshakeService)
            client.connect()
            with pytest.raises(KeyboardInterrupt):
                client.echo("x" * (16 << 20))
            assert client.phase is ClientPhase.BROKEN and client._sock is None
            record = client.timeline.calls("echo")[-1]
            assert record.error == "KeyboardInterrupt()" and record.bytes_out == 0
            done.set()
            client.close()
    finally:
        done.set()
        signal.signal(signal.SIGALRM, previous)


class Blocks(Interceptor):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def call_started(self, call: Call) -> None:
        if call.method == "echo":
            time.sleep(self.seconds)  # a slow hook (a lock, a remote audit log): longer than the timeout


def test_an_interceptor_slower_than_the_call_timeout_does_not_break_the_call(server):
    options = ClientOptions(interceptors=(Blocks(0.5),), timeouts=Timeouts(call=0.3))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("sent after the hook") == "sent after the hook"
        assert client.phase is ClientPhase.READY


def test_retries_never_reopen_a_client_its_user_closed(server):
    options = ClientOptions(retry=RetryPolicy(idempotent={"ping", "echo"}))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("in the block") == "in the block"
    with pytest.raises(PhaseError, match="cannot call echo in phase CLOSED"):
        client.echo("after the block")
    assert client.phase is ClientPhase.CLOSED
    assert eventually(lambda: server.metrics.snapshot().connections_open == 0)


@pytest.mark.parametrize("options", [lambda: RetryPolicy(idempotent="stats"), lambda: ClientOptions(features="zstd"),
                                     lambda: ClientOptions(server_timed_methods="process")],
                         ids=["idempotent", "features", "server_timed_methods"])
def test_a_bare_string_where_names_go_is_refused(options):
    """RetryPolicy(idempotent="stats") meant {'s', 't', 'a'}: stats was silently never retried, and
    features="zstd" offered four one-letter features."""
    with pytest.raises(TypeError, match=r"takes a collection of names, e\.g\. \{'\w+'\}, not the string '\w+'"):
        options()


NATURAL_OPTIONS = """
from thrift_handshake import ClientOptions, Interceptor, RetryPolicy

options = ClientOptions(features={"zstd"}, interceptors=[Interceptor()], server_timed_methods=["process"],
                        retry=RetryPolicy(idempotent=["ping", "echo"]))
"""


def test_sets_and_lists_of_names_type_check(tmp_path: Path):
    """mypy refused `RetryPolicy(idempotent={"add"})` and `interceptors=[...]` (frozenset and tuple only),
    although the runtime takes any collection."""
    user = tmp_path / "user.py"
    user.write_text(NATURAL_OPTIONS, encoding="utf-8")
    checked = mypy(tmp_path, str(user))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    options = ClientOptions(features={"zstd"}, retry=RetryPolicy(idempotent=["ping"]))
    assert options.features == frozenset({"zstd"}) and options.retry.idempotent == frozenset({"ping"})


def test_typed_calls_take_arguments_by_name_as_the_iface_declares(connect):
    """`client.typed(HandshakeService.Iface).echo(message="hi")` type-checks against the generated Iface,
    but raised a bare TypeError (outside the documented hierarchy): call() took no keyword arguments."""
    service = connect().typed(HandshakeService.Iface)
    assert service.echo(message="by name") == "by name"
    response = service.process(request=Request(request_id="kw", payload="abc"))
    assert response.request_id == "kw"
    with pytest.raises(ArgumentError, match=r"^echo\(\) has no parameter 'msg'; its parameters: message$"):
        service.echo(msg="x")
    with pytest.raises(ArgumentError, match=r"^echo\(\) got two values for parameter 'message'$"):
        service.echo("x", message="y")  # type: ignore[misc]
    with pytest.raises(ArgumentError, match=r"^get_result\(\) is missing parameter\(s\) wait_ms"):
        service.get_result(ticket="t")  # type: ignore[call-arg]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_client_accepts_the_url_form_and_names_its_peer_unambiguously(start_server, host):
    """Client("[::1]", port) failed to resolve (the CLI takes that form), and the timeline's connect record
    was named "::1:PORT" while the interceptors' peer was "[::1]:PORT"."""
    server = start_server(host="::1")
    with Client(host, server.port, service=HandshakeService) as client:
        assert client.echo("v6") == "v6"
    assert next(iter(client.timeline)).name == f"[::1]:{server.port}"


@pytest.mark.parametrize("host, kept", [("[::1]", "::1"), ("[::1", "[::1"), ("::1]", "::1]"), ("[]x", "[]x")])
def test_a_host_loses_its_brackets_only_when_it_has_both(host, kept):
    assert Client(host, 9090, service=HandshakeService).host == kept


FILES_IDL = """include "session.thrift"
namespace py files_gen
service Files extends session.SessionService {
  string close(1: i32 fd),
  string phase(),
  string call(1: string what),
  string timeline(),
}
"""


def test_the_typed_view_calls_service_methods_named_like_the_clients_own(start_server, tmp_path):
    """`client.typed(Files.Iface).close(3)` type-checks as the service's close(fd), but ran Client.close()
    (TypeError: takes 1 positional argument); `.phase()` called a ClientPhase."""
    with generated(tmp_path, "files.thrift", FILES_IDL, "files_gen.Files") as files:

        class Handler(files.Iface):
            def close(self, fd: int) -> str:
                return f"closed {fd}"

            def phase(self) -> str:
                return "moon"

            def call(self, what: str) -> str:
                return f"called {what}"

            def timeline(self) -> str:
                return "history"

        server = start_server(Handler())
        with Client("127.0.0.1", server.port, service=files) as client:
            remote = client.typed(files.Iface)
            assert remote.close(3) == "closed 3"
            assert remote.phase() == "moon" and remote.call("x") == "called x" and remote.timeline() == "history"
            assert client.phase is ClientPhase.READY  # the client itself is untouched
            farewell = remote.goodbye()  # the session's own goodbye is still the phase
        assert farewell.calls == 4 and client.phase is ClientPhase.CLOSED


@pytest.mark.parametrize("accelerated", [True, False], ids=["C extension", "pure Python"])
def test_a_reply_over_the_clients_own_limits_names_the_option_to_raise(connect, accelerated):
    """A 2 MiB echo with max_reply_bytes=1 MiB said "the server's answer is not a reply this client can
    decode": a newcomer would look for a wire mismatch, not at ClientOptions."""
    client = connect(max_reply_bytes=1024 * 1024, wire=Wire(accelerated=accelerated))
    # Thrift's own words (they differ between C and Python), then what to change
    with pytest.raises(ConnectionBroken, match=r"^echo: connection failed: [\w ]+: 1048576: "
                                               r"the reply is over this client's limits \(ClientOptions\."
                                               r"max_reply_bytes=1048576 per string, binary or frame, "
                                               r"max_reply_items=1000000 per container\)"):
        client.echo("x" * (2 * 1024 * 1024))
    assert client.phase is ClientPhase.BROKEN
    client.reconnect()
    assert client.echo("small") == "small"


@pytest.mark.parametrize("after_the_pause", ["session_id", "close without waiting"])
def test_a_pipelined_hello_answered_in_time_is_read_later_without_a_timeout(server, after_the_pause):
    """With pipeline_hello, reading client.session_id (or close() with await_farewell=False) a while after
    connect() read hello's answer under hello's own, long-passed deadline: CallTimeout "hello: no reply
    within the timeout" although the answer had arrived, and close() then never said goodbye."""
    options = ClientOptions(pipeline_hello=True, await_farewell=False, timeouts=Timeouts(handshake=0.2))
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    try:
        client.connect()
        assert eventually(lambda: server.metrics.snapshot().handshakes_ok == 1)  # answered in time
        time.sleep(0.3)  # the caller does other work; hello's deadline passes meanwhile
        if after_the_pause == "session_id":
            assert client.session_id is not None and client.phase is ClientPhase.READY
        client.close()
        assert client.phase is ClientPhase.CLOSED
        assert eventually(lambda: server.metrics.snapshot().calls.get("goodbye") == 1)
    finally:
        client.close()


class UsesItsClient(Interceptor):
    """Around echo, does something with the client it watches (as a keep-alive or a token refresh would)."""

    def __init__(self, started: str = "", ended: str = "") -> None:
        self.client: "Client | None" = None
        self.actions = {"call_started": started, "call_ended": ended}

    def _act(self, call: Call, hook: str) -> None:
        if call.method == "echo" and self.actions[hook]:
            getattr(self.client, self.actions[hook])()

    def call_started(self, call: Call) -> None:
        self._act(call, "call_started")

    def call_ended(self, call: Call) -> None:
        self._act(call, "call_ended")


def test_an_interceptor_may_call_its_own_client(server):
    """A ping from echo's call_started went out with echo's seqid; echo then went out with the ping's, and
    its reply was taken for a stale one: ConnectionBroken."""
    hooks = UsesItsClient(started="ping", ended="ping")
    with Client("127.0.0.1", server.port, ClientOptions(interceptors=(hooks,)), service=HandshakeService) as client:
        hooks.client = client
        assert client.echo("between two pings") == "between two pings"
        assert client.phase is ClientPhase.READY
        assert [(r.name, r.ok) for r in client.timeline][1:] == [("hello", True), ("ping", True), ("ping", True),
                                                                 ("echo", True)]
        echo = [r for r in client.timeline if r.name == "echo"][0]
        ping = [r for r in client.timeline if r.name == "ping"][0]
        assert (echo.bytes_out, ping.bytes_out) == (16 + 3 + 4 + 17 + 1, 17)  # its own bytes, not the ping's


def test_a_hook_that_closes_its_client_makes_the_call_a_phase_error(server):
    hooks = UsesItsClient(started="close")
    client = Client("127.0.0.1", server.port, ClientOptions(interceptors=(hooks,)), service=HandshakeService)
    hooks.client = client
    client.connect()
    with pytest.raises(PhaseError, match="^cannot call echo in phase CLOSED"):
        client.echo("never sent")
    assert [(r.name, r.ok) for r in client.timeline][-2:] == [("close", True), ("echo", False)]
    assert server.metrics.snapshot().calls.get("echo") is None


def test_retries_reopen_a_client_the_server_refused_as_full(start_server):
    """The other side of never reopening a closed client: a client CLOSED because the server was full (here
    without hello, at its first call) is not one its user closed, and the next idempotent call tries again."""
    handler = BlockingEcho()
    server = start_server(handler, handshake=False, limits=ServerLimits(max_connections=1))
    busy = Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService)
    busy.connect()
    caller = threading.Thread(target=busy.echo, args=("block",))
    caller.start()
    retry = RetryPolicy(idempotent={"echo"}, attempts=2, backoff=0.01)
    newcomer = Client("127.0.0.1", server.port, ClientOptions(handshake=False, retry=retry), service=HandshakeService)
    try:
        assert handler.entered.wait(5)
        newcomer.connect()
        with pytest.raises(ServerFull, match="server full: 1 connections"):
            newcomer.echo("let me in")
        assert newcomer.phase is ClientPhase.CLOSED
        handler.release.set()
        caller.join(10)
        busy.close()
        assert newcomer.echo("now there is room") == "now there is room"
    finally:
        handler.release.set()
        caller.join(10)
        busy.close()
        newcomer.close()


@pytest.mark.parametrize("await_farewell", [True, False])
def test_close_interrupted_in_goodbye_still_closes(server, await_farewell):
    """close() with await_farewell=False, interrupted (Ctrl-C in a hook) while writing goodbye, left the client
    CLOSING with its socket open."""
    options = ClientOptions(interceptors=(Interrupts("goodbye", "call_started"),), await_farewell=await_farewell)
    client = Client("127.0.0.1", server.port, options, service=HandshakeService)
    client.connect()
    with pytest.raises(KeyboardInterrupt):
        client.close()
    assert client.phase is ClientPhase.CLOSED
    assert eventually(lambda: server.metrics.snapshot().connections_open == 0)


@pytest.mark.parametrize("port", [70000, -1, 65536])
def test_a_port_out_of_range_is_refused_not_wrapped(port):
    """Client(host, 70000) connected to port 4464 (70000 mod 65536): a typo reached another service."""
    with pytest.raises(ValueError, match=rf"^port must be 1\.\.65535, not {port}$"):
        Client("127.0.0.1", port, service=HandshakeService)


def test_a_service_that_is_not_a_generated_module_is_named():
    """service=Calculator.Iface (the class instead of its module) said "type object 'Iface' has no attribute
    'Iface'"; options as a dict said "'dict' object has no attribute 'timeline_size'"."""
    with pytest.raises(TypeError, match=r"^service must be a generated service module \(e\.g\. calc\.Calculator, "
                                        r"as imported by `from calc import Calculator`\), not <class "):
        Client("127.0.0.1", 9090, service=HandshakeService.Iface)
    with pytest.raises(TypeError, match=r"^options must be a ClientOptions, not \{'client_name': 'me'\}$"):
        Client("127.0.0.1", 9090, {"client_name": "me"}, service=HandshakeService)  # type: ignore[arg-type]


@pytest.mark.parametrize("service", [types.ModuleType("no_iface"), types.SimpleNamespace(Iface=object, Client=object),
                                     types.SimpleNamespace(Client=object)], ids=["module", "namespace", "client-only"])
def test_a_service_must_be_a_module_with_both_iface_and_client(service):
    with pytest.raises(TypeError, match=r"^service must be a generated service module"):
        Client("127.0.0.1", 9090, service=service)


class SessionIds(Interceptor):
    def __init__(self) -> None:
        self.seen: "list[tuple[str, object]]" = []

    def call_ended(self, call: Call) -> None:
        self.seen.append((call.method, call.session_id))


def test_the_first_call_after_a_pipelined_hello_knows_its_session(server):
    """ClientCall.session_id ("the session it ran in") was None for the call written before hello's answer
    was read, although it ran in that session."""
    hooks = SessionIds()
    options = ClientOptions(pipeline_hello=True, interceptors=(hooks,))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        client.echo("first")
        client.echo("second")
        session = client.session_id
    assert session is not None
    assert hooks.seen == [("hello", None), ("echo", session), ("echo", session), ("goodbye", session)]


def test_a_plain_service_with_the_handshake_on_is_one_clear_error_before_connecting(tmp_path):
    """Issue 13: the client raised `unknown method 'hello' for service plain.Store` from connect()."""
    from thrift_handshake import ArgumentError, Client, ClientOptions

    idl = "namespace py plainstore\nservice Store {\n  string get(1: string key),\n}\n"
    with generated(tmp_path, "plainstore.thrift", idl, "plainstore.Store") as store:
        with pytest.raises(ArgumentError, match=r"service plainstore\.Store has no hello\(\): it does not extend "
                                                r"session\.SessionService.*ClientOptions\(handshake=False\)"):
            Client("127.0.0.1", 9, service=store)
        plain = Client("127.0.0.1", 9, ClientOptions(handshake=False), service=store)  # no error: nothing to say
        assert plain.phase.value == "NEW"
