"""A small GitHub REST client on `requests`: retries with backoff, rate limits, pagination, no token leaks.

Retries:
- network errors and 500/502/503/504: exponential backoff (urllib3 `Retry`, subclassed as `GitHubRetry`);
- rate limits — 429, and 403 that carries `retry-after` or `x-ratelimit-remaining: 0`, or whose message names a
  rate limit (only the body tells a header-less secondary limit from a permission error): `request()` waits what
  the headers say (else 60 s, GitHub's "at least a minute" for secondary limits), once. A wait longer than
  `max_wait`, or a limit that persists after the wait, fails at once with the real reason ("rate limited: …"),
  never as a permission error;
- never 400/401/404/422: those will not change by asking again.
The token lives only in the session's Authorization header; it is never in a URL, a log line or an error message,
and `download()` fetches GitHub's signed redirect targets with a separate session that has no token at all. A signed
URL carries its credentials in the query string, so no message or log line shows a URL's query (urllib3's own
retry warnings included).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
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
RATE_LIMITED_HINT = (
    "GitHub rate-limits this token (too many requests at once, or its hourly quota is spent); rerun the job later"
)


class GitHubError(VerifilyError):
    """A GitHub API call failed after retries. `status` is the HTTP status (None for network errors);
    `rate_limited` says GitHub refused it for the rate limit, whatever the status."""

    def __init__(
        self, message: str, status: int | None = None, hint: str | None = None, *, rate_limited: bool = False
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.rate_limited = rate_limited


def _no_query(text: str) -> str:
    """`text` with every URL's query string cut out (a signed URL's credentials are there)."""
    return re.sub(r"\?[^\s'\")]+", "?…", text)


class _NoQueryFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _no_query(record.getMessage()), None
        return True


for _name in ("connectionpool", "connection", "poolmanager", "response", "util.retry"):
    logging.getLogger(f"urllib3.{_name}").addFilter(_NoQueryFilter())  # they log URLs with their queries


def _seconds(value: str, now: float) -> float | None:
    """A Retry-After value: seconds, or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _ratelimit_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait, from `retry-after` or an exhausted `x-ratelimit-remaining`; else None."""
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after is not None and (wait := _seconds(retry_after, now)) is not None:
        return wait
    if headers.get("X-RateLimit-Remaining") == "0" and (reset := headers.get("X-RateLimit-Reset")):
        try:
            return max(0.0, float(reset) - now) + 1.0
        except ValueError:
            return None
    return None


def rate_limit_wait(resp: requests.Response) -> float | None:
    """How long GitHub asks us to wait before asking again when `resp` is a rate limit; None when it is not
    (a 403 without rate-limit headers or words is a permission error)."""
    if resp.status_code not in (403, 429):
        return None
    wait = _ratelimit_wait(resp.headers)
    if wait is None and (resp.status_code == 429 or _is_secondary_limit(resp)):
        wait = SECONDARY_DEFAULT_WAIT
    return wait


class GitHubRetry(Retry):
    """urllib3 Retry that understands GitHub's rate-limit headers and sleeps through an injectable function.
    `rate_limits=False` leaves 403 and 429 to the caller (GitHubClient.request, which reads the body too)."""

    def __init__(
        self,
        *args: Any,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        rate_limits: bool = True,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.max_wait = max_wait
        self.sleep_fn = sleep
        self.rate_limits = rate_limits

    def new(self, **kw: Any) -> GitHubRetry:
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("sleep", self.sleep_fn)
        kw.setdefault("rate_limits", self.rate_limits)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code in (403, 429):
            return self.rate_limits and bool(self.total)  # `increment` refuses the 403s that are not rate limits
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and (wait := _ratelimit_wait(response.headers)) is not None and wait > self.max_wait:
            log.warning("GitHub asks to wait %.0f s, more than the %.0f s we may wait", wait, self.max_wait)
            raise MaxRetryError(_pool, url or "", "rate limit wait too long")  # type: ignore[arg-type]
        if response is not None and response.status == 403 and _ratelimit_wait(response.headers) is None:
            # a permission error (or a header-less secondary limit, which only GitHubClient.request can tell)
            raise MaxRetryError(_pool, url or "", "403 without rate-limit headers")  # type: ignore[arg-type]
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
    total: int = 5,
    backoff: float = 1.0,
    max_wait: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    rate_limits: bool = True,
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
        rate_limits=rate_limits,
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
        retry = make_retry(retries, backoff, max_wait, sleep, rate_limits=False)
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
        """Send a request; return the response when it is 2xx (or in `ok`), else raise GitHubError. A rate limit
        is waited out once (see the module docstring)."""
        url = self.url(path_or_url)
        kw.setdefault("timeout", self.timeout)
        waited = 0.0
        while True:
            try:
                resp = self.session.request(method, url, **kw)
            except requests.RequestException as e:
                msg = self.redact(f"{method} {_show(url)} failed: {type(e).__name__}: {_no_query(str(e))}")
                log.warning(msg)
                raise GitHubError(msg, hint="a network problem; the call was retried with backoff") from None
            wait = rate_limit_wait(resp)
            if wait is None or resp.status_code in ok:
                break
            if wait > self.max_wait or waited:
                raise self._rate_limited(method, url, resp, wait, waited)
            log.warning("rate limited on %s %s; waiting %.0f s", method, _show(url), wait)
            self._sleep(wait)
            waited = wait
        if resp.ok or resp.status_code in ok:
            return resp
        raise self._error(method, url, resp)

    def _rate_limited(self, method: str, url: str, resp: requests.Response, wait: float, waited: float) -> GitHubError:
        why = (
            f"GitHub asks to wait {wait:.0f} s, more than the cap {self.max_wait:.0f} s"
            if wait > self.max_wait
            else f"GitHub still refuses after a wait of {waited:.0f} s"
        )
        msg = self.redact(f"rate limited: {why} ({method} {_show(url)} answered {resp.status_code})")
        log.warning(msg)
        return GitHubError(msg, status=resp.status_code, hint=RATE_LIMITED_HINT, rate_limited=True)

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
        wait = _ratelimit_wait(resp.headers)
        if wait is not None and wait > self.max_wait:  # a 5xx the retries gave up on: say why they stopped early
            msg += f" (GitHub asks to wait {wait:.0f} s, more than the cap {self.max_wait:.0f} s)"
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
        host too, but being explicit keeps that guarantee from depending on a library detail. A failure names the
        storage host, never the signed URL's query.
        """
        resp = self.request("GET", path, allow_redirects=False, ok=(301, 302, 303, 307, 308))
        target = ""
        if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
            target = resp.headers.get("Location", "")
            if urlsplit(target).scheme not in ("http", "https"):
                raise GitHubError(f"GitHub redirected the download of {path} to an unusable location")
        dest = Path(dest)
        size = 0
        try:
            if target:
                resp = self.bare.get(target, stream=True, timeout=self.timeout, allow_redirects=True)
                if not resp.ok:
                    raise GitHubError(f"downloading {_show(target)} failed: HTTP {resp.status_code}", resp.status_code)
            with open(dest, "wb") as f:
                for chunk in resp.iter_content(chunk_size=1024 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise GitHubError(f"download of {path} exceeds the limit of {max_bytes:,} bytes")
                    f.write(chunk)
        except requests.RequestException as e:
            where = _show(target or self.url(path))
            reason = _no_query(self.redact(str(e)))[:300]
            raise GitHubError(
                f"downloading {where} failed after {size:,} bytes: {type(e).__name__}: {reason}",
                hint="a network problem between the runner and GitHub's artifact storage; rerun the job",
            ) from None
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
    return "rate limit" in message.lower()
