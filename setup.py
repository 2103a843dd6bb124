"""The package list comes from the folders, so a new subpackage of service/ is never left out of the wheel
(everything else is in setup.cfg). The folders keep the design card's layout; the installed names say
what they are: service/ is thrift_handshake, idl/ is thrift_handshake.idl, gen-py/ thrift_handshake_gen."""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TOP_LEVEL = ("thrift_handshake", "thrift_handshake_gen")


class FreshBuild(build_py):
    """Builds into an emptied build/lib: a module removed from the tree (or moved, as transport.py to
    wire/) must not ship in the next wheel from an earlier build's leftovers."""

    def run(self) -> None:
        for name in TOP_LEVEL:
            shutil.rmtree(os.path.join(self.build_lib, name), ignore_errors=True)
        super().run()


def _under(name: str, folder: str) -> list:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(packages=_under("thrift_handshake", "service") + ["thrift_handshake.idl"]
      + _under("thrift_handshake_gen", "gen-py/thrift_handshake_gen"),
      cmdclass={"build_py": FreshBuild})
