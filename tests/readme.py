"""The README as data for the tests that run it: sections, fenced blocks, the files its blocks name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
#: A block that is a file says so on its first line: ``// calc.thrift`` or ``# calc_handler.py``.
_FILE_NAME = re.compile(r"^(?://|#) ([\w.-]+\.(?:thrift|py))$")


def section(heading: str, until: str = "\n## ") -> str:
    """The README from ``heading`` to the next heading of its level (or to ``until``)."""
    start = README.index(heading)
    end = README.find(until, start + len(heading))
    return README[start:end if end >= 0 else len(README)]


def blocks(text: str) -> List[Tuple[str, str]]:
    """The fenced blocks of ``text`` in order, as (language, content)."""
    return [(match.group(1), match.group(2)) for match in _FENCE.finditer(text)]


def file_name(content: str) -> str:
    """The file a block stands for (its first line names it), or ""."""
    match = _FILE_NAME.match(content.splitlines()[0]) if content else None
    return match.group(1) if match else ""


def files(text: str) -> Dict[str, str]:
    """Every block of ``text`` that names its file, by file name."""
    return {file_name(content): content for _, content in blocks(text) if file_name(content)}
