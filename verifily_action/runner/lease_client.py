"""The runner's calls to the server: `lease` a job, then everything done under that lease (heartbeat, blobs,
uploads, checkpoint, finish) through `/api/v1/leases/<lease>/...`, with the same upload and download code a user's
push and pull use (remote/push.py, remote/pull.py, remote/runs.py take the route prefix).

Two failures matter to the loop and get their own types: a 410 on a lease route is `LeaseLost` (the lease expired or
the job was cancelled: stop working on it, upload nothing more), and no answer, a 5xx or a 429 is `Unreachable`,
which the loop retries with backoff (`retrying`) — a server restarting must not stop a runner or fail its job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import VerifilyError
from ..remote.client import API, Client

T = TypeVar("T")
TRANSIENT = (429, 500, 502, 503, 504)  # rate limited (a runner token shared by a fleet), or a server in trouble
MAX_BACKOFF_SECONDS = 30.0
REFUSED = (401, 403)


class LeaseLost(Exception):
    """The server answered 410: this lease is over (expired, ended, or its job cancelled)."""


class Unreachable(VerifilyError):
    """No answer from the server, or a 5xx: worth trying again."""


class RunnerClient(Client):
    """`Client` whose 410s and transient failures raise the types above instead of one VerifilyError."""

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        import requests

        stream = kw.pop("stream", False)
        try:
            r = super().call(method, path, ok=(*ok, 410, *TRANSIENT), stream=True, **kw)
        except VerifilyError as e:
            # Client.call raises every failure as a VerifilyError `from None`; the request's own exception is
            # still its __context__, and only that one is worth retrying
            if isinstance(e.__context__, requests.RequestException):
                raise Unreachable(e.message, hint=e.hint) from None
            raise
        if r.status_code == 410:
            raise LeaseLost(_reason(r) or f"{path}: 410")
        if r.status_code in TRANSIENT:
            raise Unreachable(f"{self.url}: {method} {path}: {r.status_code} {_reason(r) or r.reason}")
        if stream:
            return r
        return r.json() if r.content else None


def _reason(r: Any) -> str:
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def retrying(fn: Callable[[], T], what: str, log: Callable[[str], None], stop: Callable[[], bool]) -> T:
    """`fn()`, tried again after 1, 2, 4 … 30 s while the server is unreachable (until `stop()` says to give up:
    then the last Unreachable is raised)."""
    delay = 1.0
    while True:
        try:
            return fn()
        except Unreachable as e:
            if stop():
                raise
            log(f"{what}: {e.message}; trying again in {delay:.0f} s")
            end = time.monotonic() + delay
            while time.monotonic() < end and not stop():  # a stop request ends the wait, not only the next try
                time.sleep(0.2)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def lease(client: RunnerClient, runner: str, labels: list[str], devices: dict[str, Any]) -> dict[str, Any] | None:
    """A job and its lease ({"lease", "job"}), or None when the queue has nothing this runner may take."""
    body = {"runner": runner, "labels": labels, "devices": devices}
    got = client.call("POST", f"{API}/runner/lease", json=body, ok=REFUSED)
    if got is None:  # 204
        return None
    if "lease" not in got:  # a 401/403 body: {"error", "hint"}
        raise VerifilyError(
            f"{client.url} refused the runner token: {got.get('error') or 'not allowed'}",
            hint="make a runner token with `verifily token create --org ORG --scope runner` and pass it with "
            "--token or VERIFILY_RUNNER_TOKEN",
        )
    return got


@dataclass
class Lease:
    """One leased job: the routes under /api/v1/leases/<id>."""

    client: RunnerClient
    id: str
    heartbeat_seconds: float

    @property
    def prefix(self) -> str:
        return f"{API}/leases/{self.id}"

    def heartbeat(self, lines: list[str], step: int | None) -> bool:
        """Extend the lease and append `lines` to the job's log; True when the job was cancelled."""
        got = self.client.call("POST", f"{self.prefix}/heartbeat", json={"log": lines, "step": step})
        return bool(got.get("cancel"))

    def fetch_blob(self, sha: str, dest: Path) -> None:
        """One blob (a dataset file or the job's checkpoint) into `dest`, checked against its sha256."""
        import hashlib

        r = self.client.call("GET", f"{self.prefix}/blobs/{sha}", stream=True)
        h = hashlib.sha256()
        with open(dest, "wb") as f:
            for block in r.iter_content(1024 * 1024):
                h.update(block)
                f.write(block)
        if h.hexdigest() != sha:
            raise Unreachable(f"blob {sha} arrived as {h.hexdigest()} (cut off?)")

    def send_file(self, path: Path) -> str:
        """Upload one file unless the server has its blob; returns its sha256."""
        from ..hashing import sha256_file
        from ..remote.push import upload
        from ..server.settings import CHUNK_BYTES

        sha = sha256_file(path)
        missing = self.client.call("POST", f"{self.prefix}/blobs/missing", json={"hashes": [sha]})["missing"]
        if sha in missing:
            upload(self.client, sha, path, CHUNK_BYTES, None, self.prefix)
        return sha

    def put_checkpoint(self, sha: str, step: int) -> None:
        self.client.call("PUT", f"{self.prefix}/checkpoint", json={"sha256": sha, "step": step})

    def finish(self, outcome: str, **body: Any) -> None:
        full = {"files": None, "root_hash": None, "error": None, "retry": False, "wall_seconds": 0.0, **body}
        self.client.call("POST", f"{self.prefix}/finish", json={"outcome": outcome, **full})
