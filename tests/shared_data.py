"""Tests that need ../shared/data (the raw data beside the repository, tests/paths.py SHARED_DATA) ask for the
`shared_data` fixture. Without the folder they skip, all with one reason prefix, and the end of the run names them
in a block of its own, so a run that quietly tested less says so.

Loaded as a plugin by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .paths import SHARED_DATA, SHARED_DATA_ENV

SKIP_REASON = "needs shared data:"  # every skip for a missing ../shared/data starts with this


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips the test (and says so at the end of the run) when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SKIP_REASON} {SHARED_DATA} is missing")
    return SHARED_DATA


def _skipped_for_shared_data(terminalreporter) -> list[str]:
    ids = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if SKIP_REASON in reason and report.nodeid not in ids:
            ids.append(report.nodeid)
    return ids


def pytest_terminal_summary(terminalreporter) -> None:
    ids = _skipped_for_shared_data(terminalreporter)
    if not ids:
        return
    tr = terminalreporter
    tests = "test needs" if len(ids) == 1 else "tests need"
    tr.write_sep("=", f"SKIPPED: {len(ids)} {tests} {SHARED_DATA}, which is missing", yellow=True, bold=True)
    for nodeid in ids:
        tr.write_line(f"  {nodeid}")
    tr.write_line(f"Put the shared data there (or set {SHARED_DATA_ENV} to its folder) to run them.", yellow=True)
