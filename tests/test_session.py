"""The session logic without sockets: plain objects in, answers and listener events out."""

from __future__ import annotations

import ast
import dataclasses
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from thrift_handshake import Session, SessionContext, SessionSettings
from thrift_handshake.states import SESSION_ADMITS, SessionPhase, admits
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRejected

PACKAGE = Path(__file__).resolve().parent.parent / "service"


class Recorder:
    """A SessionListener that remembers what it was told."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, object]] = []

    def session_started(self, session: Session) -> None:
        self.events.append(("started", session.context.session_id))

    def session_rejected(self, session: Session, reason: str) -> None:
        self.events.append(("rejected", reason))

    def session_ended(self, session: Session, goodbye: bool) -> None:
        self.events.append(("ended", goodbye))


def make_session(**settings) -> Tuple[Session, Recorder]:
    recorder = Recorder()
    return Session(SessionSettings(**settings), SessionContext(peer="test"), recorder), recorder


def hello(low: int = 1, high: int = 2, **fields) -> ClientHello:
    fields.setdefault("client_name", "unit")
    return ClientHello(min_version=low, max_version=high, **fields)


def test_hello_negotiates_and_opens_the_gate():
    session, recorder = make_session(versions=(1, 3), features=frozenset({"a", "b"}), idle_timeout_ms=5000)
    assert not session.admits("echo") and session.admits("ping") and session.admits("hello")
    answer = session.hello(hello(2, 9, features={"b", "zzz"}))
    assert (answer.version, answer.features, answer.idle_timeout_ms) == (3, {"b"}, 5000)
    assert session.phase is SessionPhase.ESTABLISHED and session.admits("echo") and session.admits("stats")
    assert recorder.events == [("started", answer.session_id)]
    assert session.context.client_name == "unit" and session.context.version == 3


@pytest.mark.parametrize("request_hello, reason", [
    (hello(3, 4), "no common version"),
    (hello(2, 1), "greater than"),
    (ClientHello(client_name="x"), "min_version and max_version"),
    (ClientHello(min_version=1, max_version=2), "client_name is required"),
    (hello(client_name="n" * 257), "limited to 256"),
    (hello(features={str(i) for i in range(65)}), "at most 64 features"),
    (hello(), "requires an auth token"),
    (hello(auth_token="wrong"), "wrong auth token"),
])
def test_a_refused_hello_names_its_reason_and_keeps_the_gate_closed(request_hello, reason):
    session, recorder = make_session(auth_token="secret" if "token" in reason else None)
    with pytest.raises(HandshakeRejected) as caught:
        session.hello(request_hello)
    assert reason in caught.value.reason and (caught.value.min_version, caught.value.max_version) == (1, 2)
    assert not session.admits("echo")
    assert recorder.events == [("rejected", caught.value.reason)]
    if "token" in reason:  # a failed auth also ends the connection: one guess per connection
        assert session.closing and not session.admits("hello")
    else:
        assert session.phase is SessionPhase.AWAITING_HELLO and session.admits("hello")


def test_a_second_hello_is_refused_and_the_session_stays():
    session, recorder = make_session()
    first = session.hello(hello())
    with pytest.raises(HandshakeRejected) as caught:
        session.hello(hello())
    assert first.session_id in caught.value.reason
    assert session.established and session.context.session_id == first.session_id


def test_calls_count_only_once_established_and_goodbye_reports_them():
    session, recorder = make_session()
    session.call_served()  # ping before hello: not a session call
    session.hello(hello())
    session.call_served()
    session.call_served()
    farewell = session.goodbye()
    assert farewell.calls == 2 and farewell.session_id == session.context.session_id
    assert session.closing and not session.admits("echo") and not session.admits("ping")
    session.disconnected()
    session.disconnected()  # idempotent
    assert recorder.events[1:] == [("ended", True)]  # ended once, by goodbye
    assert session.phase is SessionPhase.CLOSED


def test_a_session_gone_without_goodbye_ends_once():
    session, recorder = make_session()
    session.hello(hello())
    session.disconnected()
    session.disconnected()
    assert recorder.events[1:] == [("ended", False)]


def test_a_connection_gone_before_hello_ends_no_session():
    session, recorder = make_session()
    session.disconnected()
    assert recorder.events == [] and session.phase is SessionPhase.CLOSED


def test_the_gate_table_is_the_only_source_of_admission():
    assert SESSION_ADMITS[SessionPhase.AWAITING_HELLO] == {"hello", "ping"}
    for phase in SessionPhase:
        for method in ("hello", "ping", "stats", "goodbye", "echo", "calls", "close", "phase"):
            expected = (method if method in {"hello", "ping", "stats", "goodbye"} else "<service methods>") \
                in SESSION_ADMITS[phase]
            assert admits(phase, method) is expected


# -- layering: the session below the server, the runtime below the demo, no import circle --------

def _imports(path: Path) -> List[str]:
    """The package-relative modules a module (or every module of a subpackage) imports (``.server`` ->
    "server"); inside a subpackage, only what it imports from outside itself (``..config``)."""
    if path.suffix != ".py" and path.with_suffix("").is_dir():
        return [name for inner in sorted(path.with_suffix("").glob("*.py")) for name in _imports(inner)]
    depth = 2 if path.parent != PACKAGE else 1
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level >= depth:
                base = (node.module or "").split(".")[0]
                if base:
                    names.append(base)
                else:
                    names.extend(alias.name for alias in node.names)
            elif node.module and node.module.startswith("thrift_handshake_gen"):
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names if alias.name.startswith("thrift_handshake"))
    return names


RUNTIME = ["config", "states", "errors", "contract", "session", "metrics", "gate", "wire", "server", "client",
           "timing"]


def test_the_session_layer_imports_nothing_of_the_server():
    assert not {"server", "gate", "wire", "client", "cli", "demo"} & set(_imports(PACKAGE / "session.py"))


def test_the_runtime_imports_nothing_of_the_demo_service():
    for module in RUNTIME:
        imported = _imports(PACKAGE / module) if (PACKAGE / module).is_dir() else _imports(PACKAGE / f"{module}.py")
        assert "demo" not in imported, module
        demo_contract = [name for name in imported if name.startswith("thrift_handshake_gen")
                         and not name.startswith("thrift_handshake_gen.session")]
        assert not demo_contract, f"{module} imports the demo's contract: {demo_contract}"


def test_the_runtime_imports_nothing_of_the_admin_endpoint():
    for module in RUNTIME:
        imported = _imports(PACKAGE / module) if (PACKAGE / module).is_dir() else _imports(PACKAGE / f"{module}.py")
        assert "admin" not in imported, module


def test_no_import_circle_among_the_package_modules():
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")}
    modules.update({path.name: path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()})
    graph = {name: [m for m in _imports(path) if m in modules] for name, path in modules.items()}

    def visit(name: str, trail: Tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join(trail + (name,))}"
        for target in graph[name]:
            visit(target, trail + (name,))

    for name in graph:
        visit(name, ())


@pytest.mark.parametrize("offered", ["s3cret!", "s3cre", "S3CRET", "s3cret\x00", " s3cret"])
def test_only_the_exact_auth_token_opens_a_session(offered):
    session, recorder = make_session(auth_token="s3cret")
    with pytest.raises(HandshakeRejected, match="wrong auth token"):
        session.hello(hello(auth_token=offered))
    assert session.closing and recorder.events == [("rejected", "wrong auth token")]
    accepted, _ = make_session(auth_token="s3cret")
    accepted.hello(hello(auth_token="s3cret"))
    assert accepted.established


def test_a_server_with_no_features_grants_none_whatever_is_offered():
    session, _ = make_session()  # SessionSettings' default, as ServerConfig's: no features
    answer = session.hello(hello(features={"submit", "notify", "timing"}))
    assert answer.features == set() and session.context.features == frozenset()


def test_settings_are_frozen_and_default_to_no_idle_timeout_and_no_message_limit():
    settings = SessionSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.auth_token = "changed"  # type: ignore[misc]
    answer = Session(settings, SessionContext(peer="test")).hello(hello())
    assert (answer.idle_timeout_ms, answer.max_message_bytes) == (0, 0)


def test_no_common_version_names_both_ranges():
    session, _ = make_session(versions=(1, 2))
    with pytest.raises(HandshakeRejected) as caught:
        session.hello(hello(3, 4))
    assert caught.value.reason == "no common version: client speaks 3..4, server speaks 1..2"


def test_a_refused_method_is_told_why_in_each_phase():
    session, _ = make_session()
    assert session.refusal("echo") == "echo() needs a completed hello() on this connection"
    session.hello(hello())
    session.goodbye()
    assert session.refusal("echo") == "echo() is not served: the session is closing"


def test_names_and_features_at_their_limits_are_accepted():
    session, _ = make_session(features=frozenset({"f" * 256}))
    offered = {"f" * 256} | {str(i) for i in range(63)}
    answer = session.hello(hello(client_name="n" * 256, language="l" * 256, features=offered))
    assert answer.features == {"f" * 256}


def test_a_language_over_the_limit_is_refused():
    session, _ = make_session()
    with pytest.raises(HandshakeRejected) as caught:
        session.hello(hello(language="l" * 257))
    assert caught.value.reason == "client_name and language are limited to 256 characters"


def test_server_time_and_session_duration_are_in_milliseconds(monkeypatch):
    session, _ = make_session()
    before = time.time()
    answer = session.hello(hello())
    after = time.time()
    assert int(before * 1000) <= answer.server_time_ms <= int(after * 1000)
    opened = session.context.established_at
    monkeypatch.setattr(time, "monotonic", lambda: opened + 2.5)
    assert session.goodbye().duration_ms == 2500


# -- optional hello (SessionSettings.optional_hello): sans-IO ------------------------------------------------


def test_optional_hello_a_first_call_opens_an_anonymous_session():
    session, recorder = make_session(optional_hello=True)
    assert session.admit("ping") and session.phase is SessionPhase.AWAITING_HELLO  # ping changes nothing
    assert session.admit("echo")
    assert session.phase is SessionPhase.ANONYMOUS and session.anonymous and session.established
    assert recorder.events == [("started", None)]
    assert session.context.session_id is None and session.context.features == frozenset()
    session.call_served()
    farewell = session.goodbye()
    assert (farewell.session_id, farewell.calls) == (None, 1)
    assert session.closing and recorder.events[-1] == ("ended", True)


def test_optional_hello_a_late_hello_is_refused_and_the_session_stays_anonymous():
    session, recorder = make_session(optional_hello=True)
    session.admit("stats")
    with pytest.raises(HandshakeRejected) as late:
        session.hello(hello())
    assert "hello must be the first call on a connection" in late.value.reason
    assert session.phase is SessionPhase.ANONYMOUS and session.admit("echo")
    assert recorder.events[-1][0] == "rejected"


def test_optional_hello_hello_first_is_a_session_as_usual():
    session, _ = make_session(optional_hello=True, features=frozenset({"a"}))
    answer = session.hello(hello(features={"a"}))
    assert session.phase is SessionPhase.ESTABLISHED and answer.features == {"a"} and not session.anonymous


def test_without_optional_hello_a_first_call_is_refused_as_before():
    session, recorder = make_session()
    assert not session.admit("echo") and not session.admit("stats")
    assert session.phase is SessionPhase.AWAITING_HELLO and recorder.events == []


def test_an_anonymous_session_that_disconnects_ends():
    session, recorder = make_session(optional_hello=True)
    session.admit("echo")
    session.disconnected()
    assert session.phase is SessionPhase.CLOSED and recorder.events == [("started", None), ("ended", False)]
