"""A real headless Chromium for the dashboard's browser tests: Debian's `chromium` (installed with apt-get when
missing and this is root, as tests/pg_server.py installs PostgreSQL), driven by Playwright for Python pointed at
that executable (Playwright's own browser download needs the internet). `console` gathers what a page logs, so a
test can assert a page loaded without errors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from tests.debian import apt_install

NAMES = ("chromium", "chromium-browser")


def executable() -> str | None:
    found = next((p for p in map(shutil.which, NAMES) if p), None)
    if found or not apt_install("chromium"):
        return found
    return next((p for p in map(shutil.which, NAMES) if p), None)


@dataclass
class Console:
    """What the pages of one browser context logged: console errors and uncaught exceptions, and CSP refusals."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        return page

    def take(self) -> list[str]:
        out, self.errors = self.errors, []
        return out


def launch(playwright: Any) -> Any:
    path = executable()
    if path is None:
        raise RuntimeError("no chromium here and not root to install it")
    # --no-sandbox: the test box runs as root, where Chromium's sandbox refuses to start
    return playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
