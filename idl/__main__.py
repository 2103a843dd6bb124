"""``python -m thrift_handshake.idl`` prints the folder of the runtime's IDL files."""

from . import directory

print(directory())
