"""Which GitHub the Action runs on, and what that rules out.

GitHub Enterprise Server has no artifacts v4 (the results service the built-in upload and the baseline download
use): actions/toolkit throws `GHESNotSupportedError` there (packages/artifact/src/internal/shared/errors.ts).
`is_ghes` is the toolkit's `isGhes()` (packages/artifact/src/internal/shared/config.ts): GITHUB_SERVER_URL's host
is GitHub Enterprise Server unless it is github.com, ends with `.ghe.com` (GitHub Enterprise Cloud with data
residency) or ends with `.localhost`. There the Action says so once and skips both; the documented path is the
README's "GitHub Enterprise Server": actions/upload-artifact@v3 keeps the run, `baseline: <path>` compares.
"""

from __future__ import annotations

from urllib.parse import urlsplit

GHES_DOCS = 'the README\'s "GitHub Enterprise Server"'


def is_ghes(server_url: str | None) -> bool:
    """True for a GitHub Enterprise Server URL, as actions/toolkit's isGhes() decides (empty: github.com)."""
    try:
        host = (urlsplit((server_url or "").strip() or "https://github.com").hostname or "").upper()
    except ValueError:  # not a URL at all: the toolkit would throw; nothing to skip on that account
        return False
    if not host:
        return False
    return not (host == "GITHUB.COM" or host.endswith(".GHE.COM") or host.endswith(".LOCALHOST"))


def ghes_notice(server_url: str, mode: str) -> str:
    """The one notice a job on GitHub Enterprise Server gets."""
    host = urlsplit(server_url.strip()).hostname or server_url
    said = f"GitHub Enterprise Server ({host}) has no artifacts v4"
    if mode == "comment":
        return (
            f"{said}: the comment job cannot read the run's artifact, so there is nothing to comment; there a pull "
            f"request's report is in its own job's summary (see {GHES_DOCS})"
        )
    return (
        f"{said}: the run folder is not uploaded and the base branch's run is not downloaded. Keep the run with "
        f"actions/upload-artifact@v3 (path: the run-dir output) and compare with `baseline: <path>` (see {GHES_DOCS})"
    )


NO_BASELINE_ON_GHES = (
    "GitHub Enterprise Server has no artifacts v4 to download the base branch's run from; give the baseline as a "
    f"run folder (`baseline: <path>`, see {GHES_DOCS})"
)
