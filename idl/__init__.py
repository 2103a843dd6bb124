"""The runtime's Thrift IDL files, installed with the package: ``session.thrift`` (the session contract
every service extends) and ``handshake.thrift`` (the demo service).

    thrift -I "$(thrift-handshake idl-path)" --gen py calc.thrift     # include "session.thrift" is found
    python -m thrift_handshake.idl                                    # the same folder

In a source checkout this is the repository's ``idl/`` folder itself.
"""

from pathlib import Path

__all__ = ["directory", "SESSION_IDL", "HANDSHAKE_IDL"]


def directory() -> Path:
    """The folder holding the runtime's ``.thrift`` files (give it to ``thrift -I``)."""
    return Path(__file__).resolve().parent


SESSION_IDL = directory() / "session.thrift"
HANDSHAKE_IDL = directory() / "handshake.thrift"
