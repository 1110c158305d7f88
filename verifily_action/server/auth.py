"""API tokens, scopes and the per-token rate limit.

A token is `vf_<id>_<secret>`: the id finds its row, the secret's sha256 is compared in constant time
(`hmac.compare_digest`), and only that hash is stored, so the database cannot give a token back (it is shown once,
when made). Scopes are ordered: `read` < `write` < `admin`; a token acts inside its organization only, except an
admin token of the `admin` organization (the first one, from `server init`), which manages tokens of every org.
A `runner` token stands outside that order: it may call the job queue's runner routes and nothing else.
Rate limit: RATE_LIMIT_PER_MINUTE requests per token in any rolling 60 s (in memory, per server process); past it
the server answers 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .models import Token
from .names import RUNNER_SCOPE, SCOPES
from .settings import ADMIN_ORG

PREFIX = "vf_"


@dataclass(frozen=True)
class Caller:
    token_id: str
    org: str
    scope: str

    def may(self, scope: str) -> bool:
        if RUNNER_SCOPE in (self.scope, scope):  # outside the order: a runner token runs jobs and does nothing else
            return self.scope == scope
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    @property
    def site_admin(self) -> bool:
        return self.org == ADMIN_ORG and self.scope == "admin"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token(session: Any, org: str, scope: str) -> tuple[str, str]:
    """Make a token (added to `session`, committed by the caller); returns (id, the token's full text)."""
    tid = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(Token(id=tid, org=org, scope=scope, secret_sha256=_hash(secret), created_at=datetime.now(timezone.utc)))
    return tid, f"{PREFIX}{tid}_{secret}"


def check_token(session: Any, text: str, *, runner_ok: bool = False) -> Caller | None:
    """The caller a presented token stands for; None when it is malformed, unknown, wrong or revoked, or a runner
    token where `runner_ok` is not set (the dashboard's login: a runner token reads nothing)."""
    if not text.startswith(PREFIX) or text.count("_") < 2:
        return None
    tid, secret = text[len(PREFIX) :].split("_", 1)
    row = session.get(Token, tid) if len(tid) == 16 else None
    expected = row.secret_sha256 if row is not None else _hash("")
    ok = hmac.compare_digest(expected, _hash(secret))  # compared even for an unknown id: the same work either way
    if row is None or not ok or row.revoked_at is not None or (row.scope == RUNNER_SCOPE and not runner_ok):
        return None
    return Caller(row.id, row.org, row.scope)


class RateLimiter:
    """At most `limit` requests per key in any rolling `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Count one request; 0 when allowed, else the seconds until the next one would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._seen.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return q[0] + self.window - now
            q.append(now)
            return 0.0
