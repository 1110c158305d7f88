"""The job queue's transactions: lease (after a sweep of expired leases), heartbeat, checkpoint and finish, with
the metering they record. The HTTP routes (`leases_api`, `jobs_api`) only parse and call these.

Concurrency: every function here runs in a `database.writer` session. On PostgreSQL a leaser picks a queued job
with `SELECT … FOR UPDATE SKIP LOCKED` (two leasers skip each other's row), and heartbeat/checkpoint/finish lock the
job row (`FOR UPDATE`) and re-read the lease under that lock, so a sweep and a heartbeat never both win. On SQLite the
session's BEGIN IMMEDIATE takes the database's write lock first: the same transactions, one at a time.
Exactly once: a job becomes `completed` only in `finish`, on its live current lease, with its row locked.
Metering: a lease accrues `gpus × (end − start)` GPU-seconds, where end is its finish, or for an expired lease its
last heartbeat; a job sums its leases; billed minutes = ceil(GPU-seconds / 60), for completed jobs only.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .auth import Caller
from .job_models import Job, JobLog, Lease, Runner
from .models import DatasetVersion, OrgBlob, Run, RunFile
from .settings import ADMIN_ORG, LOG_LINE_CHARS

TERMINAL = ("completed", "failed", "cancelled")
OUTCOMES = ("completed", "failed", "cancelled", "released")
CANDIDATES = 100  # queued jobs read per page while looking for one whose labels the runner has


class Gone(Exception):
    """A lease route on a lease that is not live: HTTP 410, stop working on the job."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def utc(t: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def iso(t: datetime | None) -> str | None:
    t = utc(t)
    return t.isoformat() if t is not None else None


def labels_of(text: str) -> list[str]:
    return list(json.loads(text))


def may_lease(runner_org: str, runner_labels: set[str], job_org: str, job_labels: list[str]) -> bool:
    """The org rule (a runner of `admin` runs every org's jobs; another only its own) and job labels ⊆ runner's."""
    return runner_org in (ADMIN_ORG, job_org) and set(job_labels) <= runner_labels


def _locked(s: Session, *where: Any, skip: bool = False) -> Job | None:
    q = select(Job).where(*where).with_for_update(skip_locked=skip).execution_options(populate_existing=True)
    return s.scalars(q).first()


def _end_lease(job: Job, lease: Lease, end: datetime, outcome: str, at: datetime) -> None:
    seconds = max(0.0, (end - utc(lease.started_at)).total_seconds())  # type: ignore[operator]
    job.wall_seconds = (job.wall_seconds or 0.0) + seconds
    job.gpu_seconds = (job.gpu_seconds or 0.0) + lease.gpus * seconds
    lease.ended_at, lease.outcome = at, outcome
    job.lease_id = None


def _final(job: Job, state: str, at: datetime, error: str | None = None) -> None:
    job.state, job.finished_at, job.error = state, at, error
    job.billed_minutes = math.ceil(job.gpu_seconds / 60 - 1e-9) if state == "completed" else 0


def sweep(s: Session, at: datetime, job_ids: list[str] | None = None) -> int:
    """Jobs whose current lease expired: back to `queued`; `failed` once attempts reached max_attempts; `cancelled`
    when a cancel was asked. Rows another transaction holds are skipped (it is heartbeating or finishing them)."""
    q = (
        select(Job)
        .join(Lease, Lease.id == Job.lease_id)
        .where(Job.state == "running", Lease.expires_at <= at)
        .with_for_update(skip_locked=True, of=Job)
        .execution_options(populate_existing=True)
    )
    if job_ids is not None:
        q = q.where(Job.id.in_(job_ids))
    swept = 0
    for job in s.scalars(q).all():
        lease = s.get(Lease, job.lease_id, populate_existing=True)  # re-read under the lock: a heartbeat may have won
        if lease is None or lease.ended_at is not None or utc(lease.expires_at) > at:  # type: ignore[operator]
            continue
        _end_lease(job, lease, utc(lease.last_heartbeat), "expired", at)  # type: ignore[arg-type]
        if job.cancel_requested:
            _final(job, "cancelled", at)
        elif job.attempts >= job.max_attempts:
            lost = s.scalar(select(func.count()).where(Lease.job_id == job.id, Lease.outcome == "expired"))
            _final(job, "failed", at, f"lease lost {lost} times (the runner stopped heartbeating); no attempts left")
        else:
            job.state = "queued"
        swept += 1
    s.flush()
    return swept


@dataclass(frozen=True)
class RunnerInfo:
    name: str
    labels: list[str]
    gpus: int
    devices: dict[str, Any]


def touch_runner(s: Session, caller: Caller, r: RunnerInfo, at: datetime) -> None:
    row = s.get(Runner, (caller.token_id, r.name))
    if row is None:
        row = Runner(token_id=caller.token_id, name=r.name, org=caller.org)
        s.add(row)
    row.labels, row.devices_json, row.last_seen = json.dumps(r.labels), json.dumps(r.devices), at


def lease(s: Session, caller: Caller, r: RunnerInfo, ttl: float, heartbeat: float) -> dict[str, Any] | None:
    """Sweep, then give the runner the oldest queued job it may take (None: nothing to do). Commits."""
    s.connection()  # BEGIN first (on SQLite: wait for the write lock), then read the clock
    at = now()
    sweep(s, at)
    touch_runner(s, caller, r, at)
    have = set(r.labels)
    job = None
    base = select(Job.id, Job.org, Job.labels).where(Job.state == "queued").order_by(Job.created_at, Job.id)
    if caller.org != ADMIN_ORG:
        base = base.where(Job.org == caller.org)
    page = 0
    while job is None:
        rows = s.execute(base.offset(page * CANDIDATES).limit(CANDIDATES)).all()
        for jid, org, labels in rows:
            if may_lease(caller.org, have, org, labels_of(labels)):
                job = _locked(s, Job.id == jid, Job.state == "queued", skip=True)
                if job is not None:
                    break
        if len(rows) < CANDIDATES:
            break
        page += 1
    if job is None:
        s.commit()
        return None
    row = Lease(
        id=secrets.token_hex(16),
        job_id=job.id,
        runner=r.name,
        runner_token_id=caller.token_id,
        gpus=r.gpus,
        started_at=at,
        last_heartbeat=at,
        expires_at=at + timedelta(seconds=ttl),
    )
    s.add(row)
    job.state, job.attempts, job.lease_id, job.runner = "running", job.attempts + 1, row.id, r.name
    job.started_at = job.started_at or at
    payload = {
        "lease": {
            "id": row.id,
            "expires_at": iso(row.expires_at),
            "ttl_seconds": ttl,
            "heartbeat_seconds": heartbeat,
        },
        "job": {
            "id": job.id,
            "org": job.org,
            "attempt": job.attempts,
            "config": job.config_text,
            "config_name": job.config_name,
            "labels": labels_of(job.labels),
            "datasets": _datasets(s, job),
            "checkpoint": {"sha256": job.checkpoint_sha256, "step": job.checkpoint_step}
            if job.checkpoint_sha256
            else None,
        },
    }
    s.commit()
    return payload


def _datasets(s: Session, job: Job) -> list[dict[str, Any]]:
    out = []
    for d in json.loads(job.datasets_json):
        name, _, version = d["ref"].partition("@")
        row = s.scalars(
            select(DatasetVersion).where(
                DatasetVersion.org == job.org, DatasetVersion.name == name, DatasetVersion.version == version
            )
        ).first()
        manifest = json.loads(row.manifest_json) if row is not None else None
        out.append({"ref": d["ref"], "hash": d["hash"], "manifest": manifest})
    return out


def live(s: Session, caller: Caller, lease_id: str, *, lock: bool) -> tuple[Lease, Job]:
    """The lease and its job when the lease is the calling runner's, not ended, not expired, and the job's current
    one; else Gone (after sweeping the job when its lease just expired, so it is back in the queue at once).
    `lock`: the job row is locked for the rest of the transaction (writers)."""
    row = s.get(Lease, lease_id) if len(lease_id) == 32 else None
    if row is None or row.runner_token_id != caller.token_id:
        raise Gone(f"lease {lease_id} has expired or ended (no such lease for this runner token)")
    job = _locked(s, Job.id == row.job_id) if lock else s.get(Job, row.job_id)
    assert job is not None
    if lock:
        row = s.get(Lease, lease_id, populate_existing=True)
        assert row is not None
    at = now()
    current = job.state == "running" and job.lease_id == row.id and row.ended_at is None
    if current and utc(row.expires_at) > at:  # type: ignore[operator]
        return row, job
    if current and lock:
        sweep(s, at, [job.id])
        s.commit()
    raise Gone(f"lease {lease_id} has expired or ended; {_fate(job)}")


def _fate(job: Job) -> str:
    if job.state == "cancelled" or job.cancel_requested:
        return "the job was cancelled"
    if job.state in ("completed", "failed"):
        return f"the job is {job.state}"
    return "the job went back to the queue"


def heartbeat(s: Session, caller: Caller, lease_id: str, lines: list[str], ttl: float) -> dict[str, Any]:
    row, job = live(s, caller, lease_id, lock=True)
    at = now()
    row.last_heartbeat, row.expires_at = at, at + timedelta(seconds=ttl)
    s.add_all(JobLog(job_id=job.id, attempt=job.attempts, text=line[:LOG_LINE_CHARS]) for line in lines)
    runner = s.get(Runner, (caller.token_id, row.runner))
    if runner is not None:
        runner.last_seen = at
    out = {"cancel": bool(job.cancel_requested), "expires_at": iso(row.expires_at)}
    s.commit()
    return out


def checkpoint(s: Session, caller: Caller, lease_id: str, sha256: str, step: int | None) -> dict[str, Any]:
    _, job = live(s, caller, lease_id, lock=True)
    if s.get(OrgBlob, (job.org, sha256)) is None:
        raise LookupError(f"no uploaded file {sha256} for this job")
    job.checkpoint_sha256, job.checkpoint_step = sha256, step
    s.commit()
    return {"job": job.id, "checkpoint": {"sha256": sha256, "step": step}}


@dataclass(frozen=True)
class Finish:
    outcome: str
    error: str | None = None
    retry: bool = False
    run: tuple[str, str] | None = None  # completed: (root hash, run id), its chain verified before the lock
    files: dict[str, str] | None = None  # completed: the run's files {path: sha256}


def finish(s: Session, caller: Caller, lease_id: str, f: Finish) -> Job:
    """End the lease and settle the job, in one transaction with the job row locked. Commits."""
    row, job = live(s, caller, lease_id, lock=True)
    at = now()
    _end_lease(job, row, at, f.outcome, at)
    if f.outcome == "completed":
        assert f.run is not None and f.files is not None
        job.run_root_hash, job.run_id = f.run
        if s.get(Run, (job.org, f.run[0])) is None:  # recorded as `PUT /api/v1/runs/ROOT` records a pushed run
            s.add(Run(org=job.org, root_hash=f.run[0], run_id=f.run[1], created_at=at, created_by=caller.token_id))
            s.add_all(RunFile(org=job.org, root_hash=f.run[0], path=p, sha256=h) for p, h in f.files.items())
        _final(job, "completed", at)
    elif job.cancel_requested or f.outcome == "cancelled":
        _final(job, "cancelled", at, f.error)
    elif f.outcome == "released":
        job.state = "queued"
    elif f.retry and job.attempts < job.max_attempts:
        job.state, job.error = "queued", f.error
    else:
        _final(job, "failed", at, f.error or "the runner reported a failure")
    s.commit()
    return job
