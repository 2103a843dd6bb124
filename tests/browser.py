"""Headless Chromium (Debian's chromium, which scripts/test installs) as the admin page's tests drive it."""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["chromium", "browse"]


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed (scripts/test installs Debian's chromium as root)"
    return browser


def browse(url: str, *flags: str, budget_ms: int = 3000) -> str:
    """What Chromium prints for ``url`` (the DOM with ``--dump-dom``) once the page has run ``budget_ms`` of
    virtual time (time stands still while requests are in flight)."""
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--virtual-time-budget={budget_ms}", *flags, url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
