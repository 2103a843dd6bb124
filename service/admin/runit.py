"""The admin page's "run it" panel: its static files, the browser's Thrift client that ``scripts/gen-js``
builds (Apache Thrift's JavaScript library and the code generated from idl/), and where its calls go.

The panel runs in the page and calls the Thrift server's own port with Thrift over HTTP (POST, the JSON
protocol), as Thrift's ``XHRConnection`` does; that port answers the browser's CORS checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional

if TYPE_CHECKING:
    from ..server import HandshakeServer

__all__ = ["StaticFile", "static_file", "runit_target", "CLIENT_PATH", "THRIFT_HTTP_PATH"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

#: Where the page finds the browser's Thrift client (built by scripts/gen-js, not kept in git).
CLIENT_PATH = "/admin/js/thrift-handshake.js"

#: The HTTP path the panel POSTs its Thrift calls to, on the Thrift server's port.
THRIFT_HTTP_PATH = "/"

_JS, _CSS, _HTML, _TEXT = ("text/javascript; charset=utf-8", "text/css; charset=utf-8",
                           "text/html; charset=utf-8", "text/plain; charset=utf-8")

#: URL path -> (file under static/, content type). Nothing else under static/ is served.
_FILES = {
    "/admin/static/runit.html": ("runit.html", _HTML),
    "/admin/static/runit.css": ("runit.css", _CSS),
    "/admin/static/runit.js": ("runit.js", _JS),
    CLIENT_PATH: ("gen/thrift-handshake.js", _JS),
    CLIENT_PATH + ".LICENSES.txt": ("gen/thrift-handshake.js.LICENSES.txt", _TEXT),
}

_NOT_BUILT = (b"the browser's Thrift client is not built here: run scripts/gen-js (it needs thrift-compiler, "
              b"node and npm)\n")


class StaticFile(NamedTuple):
    """An answer for one of the panel's files."""

    status: int
    body: bytes
    content_type: str


def static_file(path: str) -> Optional[StaticFile]:
    """The file at this URL path, a 404 that says how to build it when it is missing, or None when the path
    is none of the panel's files."""
    known = _FILES.get(path)
    if known is None:
        return None
    name, content_type = known
    try:
        return StaticFile(200, (STATIC / name).read_bytes(), content_type)
    except FileNotFoundError:
        logger.warning("admin: %s is missing: run scripts/gen-js", STATIC / name)
        return StaticFile(404, _NOT_BUILT, _TEXT)


def runit_target(servers: List["HandshakeServer"]) -> Dict[str, Any]:
    """Where the panel sends its calls: the first server's host and port (host None: the page's own host, for a
    server on every interface), HTTP path and scheme, and whether hello needs the auth token; or why it
    cannot (``unavailable``)."""
    if not servers:
        return {"unavailable": "no Thrift server runs in this process"}
    server = servers[0]
    config = server.config
    if config.unix_socket is not None:
        return {"unavailable": f"the server listens on a Unix socket ({config.unix_socket}): a browser cannot"}
    host, port = server.address
    return {"host": None if host in ("", "0.0.0.0", "::") else host, "port": port, "path": THRIFT_HTTP_PATH,
            "https": config.tls is not None, "token_required": config.auth_token is not None,
            "client": CLIENT_PATH.lstrip("/")}
