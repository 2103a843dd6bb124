"""How a thrift-handshake process logs: plain text lines or one JSON object per line (``--log-format``).

In JSON each line carries ``ts``, ``level``, ``logger`` and ``msg``; ``session`` and ``peer`` when the line
is about one (from the call being served on the thread, or the runtime's ``peer=`` and ``session=``
words, unless the call passes ``peer`` in ``extra=``); ``trace_id`` while a call whose caller sent a
trace context is served (``tracing``); ``pid`` with workers; ``error`` with a traceback;
and any ``extra=`` fields of the call.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Dict

from .session import bound_session

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure"]

LOG_FORMATS = ("text", "json")

#: The runtime's own lines name their connection this way (``peer=127.0.0.1:5 session=ab12...``).
_WORDS = re.compile(r"\b(peer|session)=(\S+?)(?=[\s,;)]|:\s|:?$)")
#: What every LogRecord has: anything else on a record came from ``extra=`` and is written out.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module)."""

    def __init__(self, with_pid: bool = False) -> None:
        super().__init__()
        self._with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: Dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        if self._with_pid:
            line["pid"] = record.process
        extra = {name: value for name, value in vars(record).items() if name not in _STANDARD and name not in line}
        if "peer" not in extra:  # a line that names its peer itself is not read: its words may quote the peer
            words: Dict[str, str] = {}
            for word, value in _WORDS.findall(message):
                words.setdefault(word, value)  # the runtime's word comes first; later ones may be the peer's
            line.update((word, value) for word, value in words.items() if value not in ("None", "-"))
        context = bound_session()
        if context is not None:  # a line written while a call is served (the handler's own lines too)
            line.setdefault("peer", context.peer)
            if context.session_id:
                line.setdefault("session", context.session_id)
            if context.traceparent is not None:  # checked when it was read
                line.setdefault("trace_id", context.traceparent[3:35])
        for name, value in extra.items():
            if name not in line and not (name in ("peer", "session", "trace_id") and value is None):
                line[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, log_format: str = "text", with_pid: bool = False) -> None:
    """Sets up the process's logging on stderr, as the CLI does."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(with_pid))
    else:
        process = "[%(process)d]" if with_pid else ""  # which worker said it
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # What these formats never write is not gathered for every record (the logging HOWTO's "Optimization"):
    # the caller's file, line and function (a walk up the stack), the thread's and multiprocessing's names;
    # the process id only with workers. About 7 of the 25 us of a line, such as each connection's.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = with_pid
    # Thrift's TSocket logs each failed connect with a traceback; our errors already say it in one line.
    logging.getLogger("thrift.transport.TSocket").setLevel(logging.CRITICAL)


