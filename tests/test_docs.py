"""The README shows the two set-up commands first and the phase diagrams as the tables define them."""

from __future__ import annotations

from pathlib import Path

from thrift_handshake.states import CLIENT_TRANSITIONS, SESSION_TRANSITIONS, mermaid_diagram

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_first_screen_has_demo_and_test_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert "scripts/demo" in first_screen and "scripts/test" in first_screen


def test_diagrams_match_the_transition_tables():
    assert mermaid_diagram(CLIENT_TRANSITIONS) in README
    assert mermaid_diagram(SESSION_TRANSITIONS) in README
