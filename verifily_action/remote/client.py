"""HTTP calls to the Verifily server (requests): the token in the Authorization header, and every failure — no
answer, a refused token, a 4xx with the server's reason — raised as one VerifilyError naming the URL."""

from __future__ import annotations

from typing import Any

from ..errors import VerifilyError
from .credentials import normalize, server_url, token_for

TIMEOUT = 60.0
API = "/api/v1"  # where the routes are; a runner's lease routes are under API/leases/<lease>


class Client:
    def __init__(self, url: str, token: str) -> None:
        import requests

        self.url = normalize(url)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def connect(cls, url: str | None = None) -> Client:
        base = server_url(url)
        return cls(base, token_for(base))

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        """The response (JSON decoded unless `stream`); statuses in `ok` are returned, not raised."""
        import requests

        kw.setdefault("timeout", TIMEOUT)
        try:
            r = self.http.request(method, self.url + path, **kw)
        except requests.RequestException as e:
            raise VerifilyError(
                f"cannot reach the server {self.url}: {type(e).__name__}",
                hint="check the URL and that `verifily server` runs there; a push resumes where it stopped",
            ) from None
        if r.status_code >= 400 and r.status_code not in ok:
            raise _error(self.url, method, path, r)
        if kw.get("stream"):
            return r
        return r.json() if r.content else None


def _error(url: str, method: str, path: str, r: Any) -> VerifilyError:
    from ..errors import Problem

    try:
        body = r.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("error") or (body.get("detail") and str(body["detail"])) or r.reason
    problems = [Problem(p) for p in body.get("problems") or [] if isinstance(p, str)]
    hint = body.get("hint")
    if r.status_code == 401 and not hint:
        hint = f"run `verifily login {url}`"
    return VerifilyError(f"{url}: {method} {path}: {r.status_code} {message}", hint=hint, problems=problems)
