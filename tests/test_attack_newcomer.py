"""A newcomer's first commands, tried as written: `new` with a name that cannot work must say so
before writing anything."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrift_handshake.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("name", ["json", "os", "logging", "pytest"])
def test_new_refuses_the_name_of_a_module_its_generated_package_could_not_replace(tmp_path, name):
    """`new json` wrote a service whose own test failed at collection and whose serve said
    "cannot import name 'Json' from 'json'": the standard library's module wins the import."""
    done = run_cli("new", name, "--dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"new {name!r}: {name!r} is already a Python module" in done.stderr
    assert "choose another name" in done.stderr
    assert not (tmp_path / name).exists()
