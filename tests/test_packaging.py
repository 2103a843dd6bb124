"""The wheel, installed as a user would, outside the repository: its CLI, its README, its types.

The wheel is built once (``pip wheel --no-deps .``) and installed, not editable, into a fresh venv in a
temporary folder: the project from the wheel only (``--no-index``), thrift from the index (or pip's
cache). Every command then runs from a folder outside the repository, with nothing of the repository
on the import path. The README's "Host your own service" runs as written, in an empty folder.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import venv
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import readme
from serving import listening_port

ROOT = Path(__file__).resolve().parent.parent


class Installed:
    """The fresh venv: its interpreter, its scripts, and an environment that knows nothing of the repo."""

    def __init__(self, folder: Path, wheel: Path) -> None:
        self.folder, self.wheel = folder, wheel
        self.bin = folder / "venv" / "bin"
        self.python = self.bin / "python"
        self.env: Dict[str, str] = {key: value for key, value in os.environ.items()
                                    if key not in ("PYTHONPATH", "VIRTUAL_ENV", "MYPYPATH", "PYTHONHOME")}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["XDG_CACHE_HOME"] = str(folder / "cache")
        self.outside = folder / "elsewhere"  # the working folder: not the repository
        self.outside.mkdir()

    def run(self, *args: str, cwd: Optional[Path] = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=cwd or self.outside, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    folder = tmp_path_factory.mktemp("packaging")
    leftover = ROOT / "build" / "lib" / "thrift_handshake" / "_leftover_of_an_earlier_build.py"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text("# a module that was removed from the tree\n")  # must not ship (see setup.py)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(folder / "dist"), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    (wheel,) = (folder / "dist").glob("thrift_handshake-*.whl")
    venv.EnvBuilder(with_pip=False).create(folder / "venv")
    target = Installed(folder, wheel)
    pip = [sys.executable, "-m", "pip", "--python", str(target.python), "install", "-q"]
    done = subprocess.run(pip + ["--no-index", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # thrift as this suite's own venv has it (the same release; pip's cache usually serves it)
    done = subprocess.run(pip + [f"thrift=={installed_version('thrift')}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def test_the_wheel_carries_every_package_the_idl_and_the_type_markers(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "thrift_handshake/_leftover_of_an_earlier_build.py" not in names  # build/lib is emptied first
    for folder in [p.parent for p in (ROOT / "service").rglob("__init__.py") if "__pycache__" not in p.parts]:
        package = "thrift_handshake/" + "/".join(folder.relative_to(ROOT / "service").parts)
        assert f"{package.rstrip('/')}/__init__.py" in names, f"{folder} is not in the wheel"
    for name in ("thrift_handshake/idl/session.thrift", "thrift_handshake/idl/handshake.thrift",
                 "thrift_handshake/py.typed", "thrift_handshake_gen/py.typed", "thrift_handshake/demo/__init__.py",
                 "thrift_handshake_gen/handshake.xml", "thrift_handshake/admin/static/runit.html",
                 "thrift_handshake/admin/static/runit.css", "thrift_handshake/admin/static/runit.js"):
        assert name in names, name


def test_the_metadata_is_publishable(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["License"] == "Apache-2.0" or metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert "thrift<0.26,>=0.17" in metadata.get_all("Requires-Dist")
    assert "## Host your own service" in metadata.get_payload()
    twine = shutil.which("twine", path=str(Path(sys.executable).parent)) or shutil.which("twine")
    if twine:  # not a test dependency; run where installed (pip install twine)
        checked = subprocess.run([twine, "check", "--strict", str(installed.wheel)], capture_output=True, text=True,
                                 timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_cli_runs_from_the_wheel(installed):
    """Every command ended in `No module named 'thrift_handshake.demo'`."""
    where = installed.run(str(installed.python), "-c", "import thrift_handshake; print(thrift_handshake.__file__)")
    assert where.stdout.startswith(str(installed.folder / "venv")), where.stdout + where.stderr
    done = installed.run("thrift-handshake", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"thrift-handshake {installed_version('thrift-handshake')}"
    demo = installed.run("thrift-handshake", "demo")
    assert demo.returncode == 0 and "server stopped" in demo.stdout, demo.stderr
    idl = installed.run("thrift-handshake", "idl-path")
    folder = Path(idl.stdout.strip())
    assert folder.is_relative_to(installed.folder / "venv") and (folder / "session.thrift").is_file(), idl.stdout
    same = installed.run(str(installed.python), "-m", "thrift_handshake.idl")
    assert same.stdout.strip() == str(folder)


@pytest.fixture
def serve(installed) -> Iterator:
    """Starts ``thrift-handshake serve --port 0 ARGS`` from the venv; yields its port; SIGTERM at the end."""
    started: List[subprocess.Popen] = []

    def start(*args: str, cwd: Optional[Path] = None, command: Optional[List[str]] = None) -> int:
        process = subprocess.Popen(command or ["thrift-handshake", "serve", "--port", "0", *args],
                                   cwd=cwd or installed.outside, env=installed.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        started.append(process)
        return listening_port(process, [])

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_serve_and_call_from_the_wheel(installed, serve):
    port = serve()
    done = installed.run("thrift-handshake", "call", "--port", str(port), "--format", "json", "echo", '"wheel"')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "wheel"


def test_the_readme_python_snippet_runs_from_the_wheel(installed):
    """`from thrift_handshake.demo import demo_server` failed outside the repository."""
    snippet = next(content for language, content in readme.blocks(readme.section("From Python:", "\n## "))
                   if language == "python")
    done = installed.run(str(installed.python), "-c", snippet, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "请求数据" in done.stdout and "handshake hello" in done.stdout


TYPED_USER = """
from thrift_handshake import Client, ClientOptions
from thrift_handshake_gen import HandshakeService

with Client("127.0.0.1", 9090, ClientOptions(client_name="me"), service=HandshakeService) as client:
    service = client.typed(HandshakeService.Iface)
    reveal_type(service)
    service.echoo("x")
"""


def test_mypy_sees_the_installed_types(installed):
    """Outside the repository mypy said `Cannot find implementation or library stub for module named
    thrift_handshake`, and client.typed(...) was Any."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (pip install mypy)")
    user = installed.outside / "user.py"
    user.write_text(TYPED_USER, encoding="utf-8")
    done = installed.run(mypy, "--python-executable", str(installed.python), "--no-incremental",
                         "--cache-dir", str(installed.folder / "mypy-cache"), "--no-error-summary", str(user),
                         timeout=120)
    out = done.stdout
    assert "Cannot find implementation" not in out and "missing library stubs" not in out, out
    assert 'Revealed type is "thrift_handshake_gen.HandshakeService.Iface"' in out, out
    assert '"Iface" has no attribute "echoo"' in out, out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_host_your_own_service_in_five_steps_as_written(installed, serve, tmp_path):
    """The README's steps, from an empty folder: the compiler found no session.thrift, the server snippet
    needed gen-py on the path, and calc_handler.py was never shown."""
    steps = readme.section("## Host your own service", "**In one Python process**")
    project = tmp_path / "empty"
    project.mkdir()
    port = str(_free_port())
    printed = []
    for language, content in readme.blocks(steps):
        content = content.replace("9090", port)
        name = readme.file_name(content)
        if name:
            (project / name).write_text(content, encoding="utf-8")
            continue
        assert language == "sh", f"a {language} block that names no file:\n{content}"
        for line in filter(None, (line.strip() for line in content.splitlines())):
            if line.startswith("thrift-handshake serve"):  # step 4 runs on while step 5 calls it
                assert serve(command=["sh", "-c", "exec " + line], cwd=project) == int(port)
                continue
            done = installed.run("sh", "-c", line, cwd=project)
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
            if "# prints " in line:
                printed.append((done.stdout.strip(), line.split("# prints ")[1].strip()))
    assert (project / "gen-py" / "calc" / "Calculator.py").is_file()
    assert printed == [("3", "3"), ("3", "3")], printed


def test_new_scaffolds_a_service_that_serves_and_answers(installed, serve, tmp_path):
    done = installed.run("thrift-handshake", "new", "calc", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "calc"
    generated = installed.run("./gen.sh", cwd=folder)
    assert generated.returncode == 0, generated.stderr
    port = serve("--handler", "calc_handler:CalcHandler", "--path", "gen-py", "--path", ".", cwd=folder)
    called = installed.run("thrift-handshake", "call", "--idl", "calc.thrift", "--port", str(port), "echo", '"hi"',
                           cwd=folder)
    assert called.returncode == 0 and json.loads(called.stdout).startswith("hi (session "), called.stderr


def test_the_sdist_builds_the_same_wheel(installed, tmp_path):
    """Everything the wheel needs is in the sdist (the IDL and the generated code live outside service/)."""
    done = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "sdist",
                           "--dist-dir", str(tmp_path / "sdist")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (sdist,) = (tmp_path / "sdist").glob("thrift[-_]handshake-*.tar.gz")  # setuptools >= 69 normalizes the name
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                            str(sdist)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    files = lambda path: sorted(n for n in zipfile.ZipFile(path).namelist() if ".dist-info/" not in n)  # noqa: E731
    assert files(wheel) == files(installed.wheel)
