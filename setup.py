"""The package list comes from the folders, so a new subpackage of service/ is never left out of the wheel
(everything else is in setup.cfg). The folders keep the design card's layout; the installed names say
what they are: service/ is thrift_handshake, idl/ is thrift_handshake.idl, gen-py/ thrift_handshake_gen."""

from setuptools import find_packages, setup


def _under(name: str, folder: str) -> list:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(packages=_under("thrift_handshake", "service") + ["thrift_handshake.idl"]
      + _under("thrift_handshake_gen", "gen-py/thrift_handshake_gen"))
