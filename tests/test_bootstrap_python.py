"""scripts/_bootstrap.sh chooses the Python as the README says: PYTHON is honoured or refused (never
silently replaced), a venv of another Python is rebuilt with the chosen one, and the choice is printed.

Each test runs the real bootstrap on a temp copy of scripts/ (its venv goes there too); interpreters that
must be too old or different are small shell scripts that answer the bootstrap's probe as such a Python
would. Nothing is installed: only the venv step (``prepare_venv``) runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "scripts" / "_bootstrap.sh"
#: The interpreter running the tests, outside its venv: what a user would pass as PYTHON.
BASE_PYTHON = os.path.realpath(sys.executable)

PROBE = """#!/bin/sh
. "$(dirname "$0")/_bootstrap.sh"
prepare_venv
echo "venv base: $("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp project root holding a copy of the bootstrap and a script that runs its venv step."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy2(BOOTSTRAP, scripts / "_bootstrap.sh")
    (scripts / "probe").write_text(PROBE)
    # only the real interpreter as python3 on PATH, whatever else this machine has
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(BASE_PYTHON)
    return tmp_path


def fake_python(path: Path, version: str, prefix: str) -> Path:
    """A stand-in interpreter: answers any command as the bootstrap's probe of Python ``version`` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' {version} {prefix} {prefix}/bin/python\n")
    path.chmod(0o755)
    return path


def fake_venv(project: Path, version: str, prefix: str) -> Path:
    venv = project / ".venv"
    fake_python(venv / "bin" / "python", version, prefix)
    (venv / "pyvenv.cfg").write_text(f"home = {prefix}/bin\nversion = {version}\n")
    return venv


def run_probe(project: Path, python: Optional[str] = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "THRIFT_HANDSHAKE_VENV")}
    env["PATH"] = f"{project / 'bin'}:/usr/bin:/bin"
    env["THRIFT_HANDSHAKE_VENV_OPTIONS"] = "--without-pip"  # the venv's interpreter is what counts here
    if python is not None:
        env["PYTHON"] = python
    return subprocess.run(["sh", str(project / "scripts" / "probe")], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_too_old_python_is_an_error_not_replaced(project):
    old = fake_python(project / "old" / "python3.8", "3.8.18", "/opt/python3.8")
    done = run_probe(project, str(old))
    assert done.returncode != 0
    assert f"PYTHON={old} is Python 3.8.18" in done.stderr and "3.9 or newer" in done.stderr, done.stderr
    assert not (project / ".venv").exists(), "no venv may be made with another Python"


def test_a_python_that_does_not_exist_is_an_error(project):
    missing = project / "nowhere" / "python3.12"
    done = run_probe(project, str(missing))
    assert done.returncode != 0
    assert f"PYTHON={missing}: no such command or file" in done.stderr, done.stderr
    assert not (project / ".venv").exists()


def test_a_venv_of_another_python_is_rebuilt_with_the_chosen_one(project):
    fake_venv(project, "3.10.99", "/opt/other-python")
    done = run_probe(project, BASE_PYTHON)
    assert done.returncode == 0, done.stderr
    assert "rebuilding" in done.stderr and "3.10.99 (/opt/other-python)" in done.stderr, done.stderr
    assert f"venv base: {sys.base_prefix}" in done.stdout
    version = "%d.%d.%d" % sys.version_info[:3]
    assert f"Python {version} from {sys.base_prefix} (PYTHON={BASE_PYTHON})" in done.stderr, done.stderr


def test_without_python_the_venv_keeps_its_own_and_says_which(project):
    venv = fake_venv(project, "3.12.99", "/opt/venv-python")
    done = run_probe(project)
    assert done.returncode == 0, done.stderr
    assert "rebuilding" not in done.stderr
    assert "Python 3.12.99 from /opt/venv-python (the venv's own" in done.stderr, done.stderr
    assert "/opt/venv-python" in (venv / "bin" / "python").read_text(), "the venv must be left as it was"


def test_a_venv_of_an_unsupported_python_is_rebuilt_with_the_default(project):
    fake_venv(project, "3.8.18", "/opt/python3.8")
    done = run_probe(project)
    assert done.returncode == 0, done.stderr
    assert "rebuilding" in done.stderr and "first on PATH: python3" in done.stderr, done.stderr
    assert f"venv base: {sys.base_prefix}" in done.stdout
