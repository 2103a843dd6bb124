"""``python -m thrift_handshake.cli`` is the ``thrift-handshake`` command."""

import sys

from . import main

sys.exit(main())
