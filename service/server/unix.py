"""The server's Unix domain socket (``ServerConfig.unix_socket``, ``serve --unix PATH``): listening on a
path without clobbering what is there, and removing only our own socket file at the stop."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from typing import Tuple

__all__ = ["listen_unix", "remove_unix", "UNIX_MODE"]

logger = logging.getLogger(__package__)

#: Who may connect: the owner and the group (the path's directory may restrict it further).
UNIX_MODE = 0o660


def listen_unix(path: str, backlog: int = socket.SOMAXCONN) -> Tuple[socket.socket, Tuple[int, int]]:
    """A listening socket at ``path`` and the (device, inode) of its file. A stale socket file (nothing
    accepts on it) is replaced; a live one is EADDRINUSE; any other file there is EEXIST, left alone."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket: not removed", path)
        if _accepting(path):
            raise OSError(errno.EADDRINUSE, f"another server accepts on {path}", path)
        logger.info("removing the stale socket file %s (nothing accepts on it)", path)
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)  # nothing connects before listen(), so the mode is set before anyone can
        os.chmod(path, UNIX_MODE)
        sock.listen(backlog)
        info = os.stat(path)
    except BaseException:
        sock.close()
        raise
    return sock, (info.st_dev, info.st_ino)


def remove_unix(path: str, identity: Tuple[int, int]) -> None:
    """Removes the socket file at ``path`` if it is still the one ``listen_unix`` made (not a newer
    server's, nor whatever replaced it)."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity and stat.S_ISSOCK(info.st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _accepting(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:  # e.g. a full backlog: someone is there
        return True
    finally:
        probe.close()
