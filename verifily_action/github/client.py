"""A small GitHub REST client on `requests`: retries with backoff, rate limits, pagination, no token leaks.

Retries (urllib3 `Retry`, subclassed as `GitHubRetry`):
- network errors and 500/502/503/504: exponential backoff;
- 429, and 403 that carries `retry-after` or `x-ratelimit-remaining: 0`: wait what the headers say (a 429 without
  headers: 60 s, GitHub's advice for secondary limits), never longer than `max_wait`;
- a 403 without those headers whose message names a secondary rate limit: 60 s (capped) in `request()`, because
  only the body tells it apart from a permission error, and urllib3 decides before the body is read;
- never 400/401/404/422: those will not change by asking again.
The token lives only in the session's Authorization header; it is never in a URL, a log line or an error message,
and `download()` fetches GitHub's signed redirect targets with a separate session that has no token at all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from .. import __version__
from ..errors import VerifilyError

log = logging.getLogger("verifily_action.github")

DEFAULT_API_URL = "https://api.github.com"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
SECONDARY_DEFAULT_WAIT = 60.0
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds


class GitHubError(VerifilyError):
    """A GitHub API call failed after retries. `status` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def _ratelimit_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait, from `retry-after` or an exhausted `x-ratelimit-remaining`; else None."""
    retry_after = headers.get("Retry-After")
    if retry_after is not None and retry_after.strip().isdigit():
        return float(retry_after.strip())
    if headers.get("X-RateLimit-Remaining") == "0" and (reset := headers.get("X-RateLimit-Reset")):
        try:
            return max(0.0, float(reset) - (now if now is not None else time.time())) + 1.0
        except ValueError:
            return None
    return None


class GitHubRetry(Retry):
    """urllib3 Retry that understands GitHub's rate-limit headers and sleeps through an injectable function."""

    def __init__(self, *args: Any, max_wait: float = 300.0, sleep: Callable[[float], None] = time.sleep, **kw: Any):
        super().__init__(*args, **kw)
        self.max_wait = max_wait
        self.sleep_fn = sleep

    def new(self, **kw: Any) -> GitHubRetry:
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("sleep", self.sleep_fn)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code in (403, 429):
            return bool(self.total)  # `increment` refuses the 403s that are not rate limits
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and response.status in (403, 429):
            wait = _ratelimit_wait(response.headers)
            if response.status == 403 and wait is None:
                # a permission error (or a header-less secondary limit, handled in GitHubClient.request)
                raise MaxRetryError(_pool, url or "", "403 without rate-limit headers")  # type: ignore[arg-type]
            if wait is not None and wait > self.max_wait:
                log.warning("rate limited for %.0f s, more than the %.0f s we may wait", wait, self.max_wait)
                raise MaxRetryError(_pool, url or "", "rate limit wait too long")  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_retry_after(self, response: Any) -> float | None:
        wait = _ratelimit_wait(response.headers)
        if wait is None and response.status == 429:
            wait = SECONDARY_DEFAULT_WAIT
        return None if wait is None else min(wait, self.max_wait)

    def sleep_for_retry(self, response: Any) -> bool:
        wait = self.get_retry_after(response)
        if wait:
            log.info("GitHub asked us to wait %.0f s (HTTP %s)", wait, response.status)
            self.sleep_fn(wait)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.sleep_fn(backoff)


def make_retry(
    total: int = 5, backoff: float = 1.0, max_wait: float = 300.0, sleep: Callable[[float], None] = time.sleep
) -> GitHubRetry:
    return GitHubRetry(
        total=total,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # GitHub answers 5xx before acting; octokit's retry plugin retries every verb too
        backoff_factor=backoff,
        backoff_max=60.0,
        raise_on_status=False,  # hand the last response back so the error names GitHub's message
        respect_retry_after_header=True,
        max_wait=max_wait,
        sleep=sleep,
    )


def _session(retry: Retry, headers: dict[str, str]) -> requests.Session:
    s = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers.update(headers)
    return s


class GitHubClient:
    """REST calls against `api_url` (GITHUB_API_URL, so GitHub Enterprise Server works too)."""

    def __init__(
        self,
        token: str | None,
        api_url: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        max_wait: float = 300.0,
        timeout: tuple[float, float] = TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.timeout = timeout
        self.max_wait = max_wait
        self._sleep = sleep
        self._token = token or ""
        retry = make_retry(retries, backoff, max_wait, sleep)
        base = {"User-Agent": f"verifily-action/{__version__}", "X-GitHub-Api-Version": "2022-11-28"}
        self.session = _session(retry, {**base, "Accept": "application/vnd.github+json"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        # signed URLs (artifact downloads) carry their own credentials in the query: no token may go there
        self.bare = _session(make_retry(retries, backoff, max_wait, sleep), base)

    def redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.api_url}/{path_or_url.lstrip('/')}"

    def request(self, method: str, path_or_url: str, *, ok: tuple[int, ...] = (), **kw: Any) -> requests.Response:
        """Send a request; return the response when it is 2xx (or in `ok`), else raise GitHubError."""
        url = self.url(path_or_url)
        kw.setdefault("timeout", self.timeout)
        for attempt in range(3):
            try:
                resp = self.session.request(method, url, **kw)
            except requests.RequestException as e:
                msg = self.redact(f"{method} {_show(url)} failed: {type(e).__name__}: {e}")
                log.warning(msg)
                raise GitHubError(msg, hint="a network problem; the call was retried with backoff") from None
            if resp.status_code == 403 and _is_secondary_limit(resp) and attempt < 2:
                wait = min(SECONDARY_DEFAULT_WAIT, self.max_wait)
                log.warning("secondary rate limit on %s %s; waiting %.0f s", method, _show(url), wait)
                self._sleep(wait)
                continue
            break
        if resp.ok or resp.status_code in ok:
            return resp
        raise self._error(method, url, resp)

    def _error(self, method: str, url: str, resp: requests.Response) -> GitHubError:
        try:
            body = resp.json()
            detail = body.get("message", "") if isinstance(body, dict) else ""
            errors = body.get("errors") if isinstance(body, dict) else None
            if errors:
                detail += f" {errors}"
        except ValueError:
            detail = resp.text[:200]
        msg = self.redact(f"GitHub API {method} {_show(url)} answered {resp.status_code}: {detail}".strip())
        log.warning(msg)
        hint = {
            401: "the token is invalid or expired",
            403: "the token lacks a permission (see the `permissions:` in the README's example workflows), "
            "or this is a pull request from a fork with a read-only token",
            404: "not found, or the token cannot see it",
        }.get(resp.status_code)
        return GitHubError(msg, status=resp.status_code, hint=hint)

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def paginate(
        self, path: str, params: dict[str, Any] | None = None, *, key: str | None = None, max_items: int = 10_000
    ) -> Iterator[dict[str, Any]]:
        """Yield items across pages by following `Link: rel="next"`. `key` names the list in wrapped answers
        (`{"total_count": …, "workflow_runs": [...]}`)."""
        url: str | None = self.url(path)
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        seen = 0
        while url:
            resp = self.request("GET", url, params=query)
            data = resp.json()
            items = data[key] if key else data
            for item in items:
                yield item
                seen += 1
                if seen >= max_items:
                    return
            url = resp.links.get("next", {}).get("url")
            query = None  # the next link already carries every parameter

    def download(self, path: str, dest: str | Path, max_bytes: int) -> Path:
        """GET an endpoint that answers 302 to a signed URL, and stream the target to `dest` (at most `max_bytes`).

        The redirect is followed by hand with the token-free session: requests would strip the header for another
        host too, but being explicit keeps that guarantee from depending on a library detail.
        """
        resp = self.request("GET", path, allow_redirects=False, ok=(301, 302, 303, 307, 308))
        if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
            target = resp.headers.get("Location", "")
            if urlsplit(target).scheme not in ("http", "https"):
                raise GitHubError(f"GitHub redirected the download of {path} to an unusable location")
            resp = self.bare.get(target, stream=True, timeout=self.timeout, allow_redirects=True)
            if not resp.ok:
                raise GitHubError(f"downloading {_show(target)} failed: HTTP {resp.status_code}", resp.status_code)
        dest = Path(dest)
        size = 0
        with open(dest, "wb") as f:
            for chunk in resp.iter_content(chunk_size=1024 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise GitHubError(f"download of {path} exceeds the limit of {max_bytes:,} bytes")
                f.write(chunk)
        return dest


def _show(url: str) -> str:
    """A URL for messages: without its query string (signed URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _is_secondary_limit(resp: requests.Response) -> bool:
    try:
        message = str(resp.json().get("message", ""))
    except (ValueError, AttributeError):
        return False
    return "secondary rate limit" in message.lower()
