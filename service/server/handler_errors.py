"""What the log says of a handler's exception: Thrift's generated processors log every one at ERROR
with a traceback on the root logger; this filter words a planned abort as one warning and clips any
text that may quote the peer."""

from __future__ import annotations

import logging
import traceback

from ..errors import WorkAborted
from ..peerlog import clip_for_log

__all__ = ["install_handler_error_filter"]

#: How a traceback's frame lines begin (the rest, each exception's own text, may quote the peer).
_TRACEBACK_FRAME = '  File "'


class _HandlerErrorFilter(logging.Filter):
    """Thrift's generated processors log every handler exception at ERROR with a traceback on the root
    logger. A ``WorkAborted`` is a planned stop: one WARNING line, no traceback. Any other exception's
    text may quote the peer (``fail(message)`` raises with the caller's whole message): it is clipped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, WorkAborted):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = f"handler work aborted: {error}", (), None, None
        elif error is not None:
            lines = traceback.format_exception(*record.exc_info)
            clipped = [line if line.startswith(_TRACEBACK_FRAME) else clip_for_log(line, keep_newlines=True)
                       for line in lines]
            if clipped != lines:  # only then: handlers that read exc_info themselves would show it whole
                record.exc_info, record.exc_text = None, "".join(clipped).rstrip("\n")
        return True


def install_handler_error_filter() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _HandlerErrorFilter) for f in root.filters):
        root.addFilter(_HandlerErrorFilter())
