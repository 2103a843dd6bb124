"""``python -m thrift_handshake`` is the ``thrift-handshake`` command."""

import sys

from .cli import main

sys.exit(main())
