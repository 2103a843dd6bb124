"""scripts/test and scripts/demo as a user runs them: quiet installs, and the Python tests alone on request."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_install_runs_pytest_without_any_system_install():
    env = dict(os.environ, THRIFT_HANDSHAKE_NO_INSTALL="1")
    done = subprocess.run([str(ROOT / "scripts" / "test"), "--collect-only", "-q", "tests/test_values.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "THRIFT_HANDSHAKE_NO_INSTALL is set: no compiler, toolchains or interop packages" in done.stderr
    assert "[interop/setup]" not in done.stderr and "installing" not in done.stderr
    assert "tests/test_values.py::" in done.stdout


def test_the_first_install_into_a_new_venv_is_quiet(tmp_path):
    """The setuptools "Editable installation" warning (and pip's other chatter) is shown only on failure."""
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "node_modules", "__pycache__", "*.egg-info", ".pytest_cache", "target",
        "interop", "bench", "docs", "examples"))
    env = dict(os.environ, THRIFT_HANDSHAKE_VENV=str(tmp_path / "venv"),
               THRIFT_HANDSHAKE_VENV_OPTIONS="--system-site-packages")
    env.pop("PYTHON", None)
    done = subprocess.run(["sh", "-c", '. scripts/_bootstrap.sh; ensure_venv', "scripts/test"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Editable installation" not in done.stderr and "BuildBackendWarning" not in done.stderr, done.stderr
    assert (tmp_path / "venv" / ".pip-install.log").is_file()
