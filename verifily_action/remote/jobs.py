"""The client side of the job queue (`verifily submit`, `verifily jobs …`, `verifily usage`): the datasets a config
names pushed before its job is queued, the submission itself, and following a job to its end.

A submission carries an idempotency key made here: on a connection error or a 5xx it is sent again with the SAME
key (SUBMIT_TRIES times, backing off), so a request that reached the server but whose answer was lost yields one
job, not two. A dataset version that exists on the server with another hash is refused before anything is queued
(versions never change); one the server lacks is pushed (remote/push.py: files by content hash, then the manifest).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import VerifilyError
from .client import TIMEOUT, Client, _error

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..datasets.manifest import Manifest

SUBMIT_TRIES = 3  # POST /api/v1/jobs attempts on a connection error or a 5xx, all with one idempotency key
RETRY_BACKOFF_SECONDS = 0.5  # before the 2nd try; doubled before each next one
POLL_SECONDS = 1.0  # `submit --wait` and `jobs logs --follow`: how often the job and its log are read
STATES = ("queued", "running", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")

Echo = Callable[[str], None]


def parse_labels(text: str | None) -> list[str]:
    """`--labels gpu,h100` → ["gpu", "h100"] (sorted, no repeats); a bad label is one clear error naming it."""
    from ..server.names import LABEL

    if text is None:
        return []
    labels = [part.strip() for part in text.split(",")]
    bad = [p for p in labels if not LABEL.match(p)]
    if bad:
        shown = ", ".join(repr(b) for b in bad)
        raise VerifilyError(
            f"--labels {text!r}: {shown} {'is not a label' if len(bad) == 1 else 'are not labels'}",
            hint="comma-separated names of letters, digits, '.', '_' and '-' (each at most 64, starting with a "
            "letter or digit), e.g. --labels gpu,h100",
        )
    return sorted(set(labels))


def check_max_attempts(n: int | None) -> int | None:
    """--max-attempts within what a server accepts (None: the server's default, settings.MAX_ATTEMPTS)."""
    from ..server.settings import MAX_ATTEMPTS_LIMIT

    if n is not None and not 1 <= n <= MAX_ATTEMPTS_LIMIT:
        raise VerifilyError(
            f"--max-attempts {n} is not between 1 and {MAX_ATTEMPTS_LIMIT}",
            hint="each attempt is one lease of the job by a runner; a job that fails them all ends `failed`",
        )
    return n


@dataclass
class DatasetSync:
    ref: str
    dataset_hash: str
    state: str  # pushed | on the server | server only
    uploaded: int = 0


@dataclass
class Submission:
    job: dict[str, Any]
    created: bool
    warnings: list[str] = field(default_factory=list)
    datasets: list[DatasetSync] = field(default_factory=list)


def config_refs(cfg: TrainConfig) -> list[str]:
    """The dataset versions a job needs (`dataset`, then `eval_dataset` when set), each a `name@version`."""
    from ..datasets.registry import is_path_ref

    refs = list(dict.fromkeys(r for r in (cfg.dataset, cfg.eval_dataset) if r))
    for ref in refs:
        if is_path_ref(ref):
            key = "dataset" if ref == cfg.dataset else "eval_dataset"
            raise VerifilyError(
                f"{cfg.source_path}: {key}: {ref!r} is a manifest path; a submitted job needs name@version",
                hint="a runner fetches the data from the server by name: name the version in the config "
                "(e.g. dataset: ds_demo@v1) under its datasets_root",
            )
    return refs


def local_version(ref: str, cfg: TrainConfig) -> Manifest | VerifilyError:
    """`ref` from this machine's datasets roots (never from a server): the manifest, or why no root holds it. A
    version folder that is here but broken raises its error (it is never passed over for the server's copy)."""
    from ..config import resolve_path
    from ..datasets.registry import resolve, search_roots

    name, _, version = ref.partition("@")
    first: VerifilyError | None = None
    for root in search_roots(None, resolve_path(cfg, cfg.datasets_root)):
        if (root / name / version).is_dir():
            return resolve(ref, root, from_server=False)
        try:
            return resolve(ref, root, from_server=False)
        except VerifilyError as e:
            first = first or e
    return first or VerifilyError(f"dataset {ref} not found")


def sync_datasets(cfg: TrainConfig, client: Client, echo: Echo) -> list[DatasetSync]:
    """Make every version the config names present on the server with the hash it has here; push what it lacks.
    A version only the server has is taken as it is there; one in neither place is the local lookup's error."""
    from ..server.names import check_name
    from .push import push

    out = []
    for ref in config_refs(cfg):
        name, _, version = ref.partition("@")
        check_name(name, f"{cfg.source_path}: dataset name")
        check_name(version, f"{cfg.source_path}: dataset version")
        remote = client.call("GET", f"/api/v1/datasets/{name}/{version}", ok=(404,))
        remote_hash = remote.get("dataset_hash") if isinstance(remote, dict) else None
        local = local_version(ref, cfg)
        if isinstance(local, VerifilyError):
            if remote_hash is None:
                raise local
            echo(f"{ref}: not on this machine; the server has it (dataset hash {remote_hash})")
            out.append(DatasetSync(ref, remote_hash, "server only"))
            continue
        here = local.dataset_hash()
        if remote_hash is not None and remote_hash != here:
            raise changed_error(ref, remote_hash, here)
        if remote_hash == here:
            out.append(DatasetSync(ref, here, "on the server"))
            continue
        try:
            res = push(local, client)
        except VerifilyError as e:
            if " 409 " in e.message and "versions never change" in e.message:  # pushed by someone else meanwhile
                theirs = client.call("GET", f"/api/v1/datasets/{name}/{version}")["dataset_hash"]
                if theirs != here:
                    raise changed_error(ref, theirs, here) from None
            raise
        echo(f"{ref}: pushed ({len(res.uploaded)} file(s) sent, {len(res.skipped)} the server had)")
        out.append(DatasetSync(ref, here, "pushed", len(res.uploaded)))
    return out


def changed_error(ref: str, server_hash: str, here: str) -> VerifilyError:
    return VerifilyError(
        f"dataset {ref} changed under the same name (server hash {server_hash}, here {here}); nothing was queued",
        hint="versions never change: give the changed data a new version (`verifily dataset derive`, or a new "
        "version folder) and name it in the config, or pull the server's copy (`verifily dataset pull`)",
    )


def submit(
    client: Client,
    config_path: Path,
    labels: list[str],
    max_attempts: int | None,
    *,
    key: str | None = None,
    echo: Echo = lambda _: None,
) -> Submission:
    """Queue the job: POST /api/v1/jobs with one idempotency key, sent again on a lost answer or a 5xx."""
    body = {
        "config": config_path.read_text(encoding="utf-8"),
        "config_name": config_path.name,
        "labels": labels,
        "idempotency_key": key or uuid.uuid4().hex,
        "max_attempts": max_attempts,
    }
    got = post_idempotent(client, "/api/v1/jobs", body, echo)
    return Submission(got["job"], bool(got.get("created")), [str(w) for w in got.get("warnings") or []])


def post_idempotent(client: Client, path: str, body: dict[str, Any], echo: Echo) -> Any:
    """POST `body` (which carries its idempotency key) up to SUBMIT_TRIES times: again after a connection error or a
    5xx, never after a 4xx (the server's answer to this very request)."""
    import requests

    why = ""
    for attempt in range(SUBMIT_TRIES):
        if attempt:
            delay = RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
            echo(f"{why}; trying again in {delay:g} s with the same idempotency key")
            time.sleep(delay)
        try:
            r = client.http.post(client.url + path, json=body, timeout=TIMEOUT)
        except requests.RequestException as e:
            why = f"no answer from {client.url} ({type(e).__name__})"
            continue
        if r.status_code >= 500:
            why = f"{client.url} answered {r.status_code}"
            continue
        if r.status_code >= 400:
            raise _error(client.url, "POST", path, r)
        return r.json()
    raise VerifilyError(
        f"cannot reach the server {client.url} to queue the job: {why} ({SUBMIT_TRIES} tries, one idempotency key)",
        hint="check that `verifily server` runs there; if it got the job before it went away, `verifily jobs list` "
        "shows it, else submit again",
    )


def get_job(client: Client, job_id: str) -> dict[str, Any]:
    return client.call("GET", f"/api/v1/jobs/{check_job_id(job_id)}")


def list_jobs(client: Client, state: str | None, limit: int | None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit} if limit else {}
    if state:
        params["state"] = check_state(state)
    return client.call("GET", "/api/v1/jobs", params=params)["jobs"]


def cancel(client: Client, job_id: str) -> dict[str, Any]:
    return client.call("POST", f"/api/v1/jobs/{check_job_id(job_id)}/cancel")


def usage(client: Client, month: str | None) -> dict[str, Any]:
    return client.call("GET", "/api/v1/usage", params={"month": check_month(month)} if month else None)


def log_pages(client: Client, job_id: str, after: int = 0) -> Iterator[tuple[list[dict[str, Any]], str]]:
    """(lines, state) pages of the job's log from `after` on, until a page comes back empty."""
    job_id = check_job_id(job_id)
    while True:
        page = client.call("GET", f"/api/v1/jobs/{job_id}/logs", params={"after": after})
        lines = page.get("lines") or []
        yield lines, str(page.get("state"))
        if not lines:
            return
        after = max(int(line["seq"]) for line in lines)


def follow(
    client: Client,
    job_id: str,
    on_line: Callable[[dict[str, Any]], None],
    on_state: Callable[[dict[str, Any]], None] = lambda _: None,
    poll: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Print the job's log as it grows (`on_line` per line) and report state changes (`on_state` with the job)
    until the job ends; returns the job as it ended, every line of its log given."""
    after, seen = 0, ""
    while True:
        job = get_job(client, job_id)  # read before the log: a job that has ended has every line in the log read next
        for lines, _ in log_pages(client, job_id, after):
            for line in lines:
                on_line(line)
                after = max(after, int(line["seq"]))
        if job["state"] != seen:
            seen = job["state"]
            on_state(job)
        if job["state"] in TERMINAL:
            return job
        time.sleep(poll)


def check_job_id(job_id: str) -> str:
    import re

    if not re.fullmatch(r"job_[0-9a-f]{16}", job_id or ""):
        raise VerifilyError(f"{job_id!r} is not a job id", hint="a job id looks like job_0123456789abcdef")
    return job_id


def check_state(state: str) -> str:
    if state not in STATES:
        raise VerifilyError(f"--state {state!r} is not a job state", hint=f"one of {', '.join(STATES)}")
    return state


def check_month(month: str) -> str:
    import re

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise VerifilyError(f"--month {month!r} is not YYYY-MM", hint="e.g. --month 2026-12")
    return month


def server_for(given: str | None, cfg: TrainConfig | None = None) -> str | None:
    """--server, else VERIFILY_SERVER, else the config's `server:` (where its datasets live), else None (the
    default `verifily login` saved)."""
    from ..datasets.registry import ENV_SERVER

    return given or os.environ.get(ENV_SERVER) or (cfg.server if cfg is not None else None)
