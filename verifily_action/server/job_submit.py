"""Queueing a job (`POST /api/v1/jobs`): the config is read only for the dataset versions it names (each must be on
the server in the caller's org), the idempotency key makes a retried submission one job (the same key with another
body is refused), managed mode enforces the free plan's monthly job limit, and a job no recent runner could lease
is queued with a warning. What a job looks like on the wire (`job_json`) and the month's usage are here too."""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import VerifilyError
from ..hashing import sha256_json
from .app import ApiError
from .auth import Caller
from .commit import find_version
from .job_models import Job, OrgPlan, Runner
from .names import NAME, check_labels
from .queue import iso, labels_of, may_lease, now
from .settings import (
    ADMIN_ORG,
    FREE_JOBS_PER_MONTH,
    MAX_ATTEMPTS,
    MAX_ATTEMPTS_LIMIT,
    MAX_CONFIG_BYTES,
    PLANS,
    RUNNER_SEEN_SECONDS,
)

KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Submission:
    config: str
    config_name: str = "train.yaml"
    labels: list[str] | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None


def submit(s: Session, caller: Caller, sub: Submission, managed: bool) -> tuple[Job, bool, list[str]]:
    """(the job, whether this call made it, warnings). Commits."""
    labels = check_labels(sub.labels or [])
    key = sub.idempotency_key or secrets.token_hex(16)
    if not KEY.match(key):
        raise ApiError(422, f"idempotency_key {key!r} is not 1-64 letters, digits, '_' or '-'")
    attempts = MAX_ATTEMPTS if sub.max_attempts is None else sub.max_attempts
    if not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
        raise ApiError(422, f"max_attempts {attempts} is not between 1 and {MAX_ATTEMPTS_LIMIT}")
    request = sha256_json([sub.config, sub.config_name, labels, sub.max_attempts])
    found = _by_key(s, caller.org, key)
    if found is not None:
        return _replayed(found, key, request), False, []
    datasets = [_dataset(s, caller.org, ref) for ref in config_datasets(sub.config, sub.config_name)]
    if managed:
        check_quota(s, caller.org)
    at = now()
    job = Job(
        id=f"job_{secrets.token_hex(8)}",
        org=caller.org,
        state="queued",
        config_text=sub.config,
        config_name=Path(sub.config_name).name or "train.yaml",
        labels=json.dumps(labels),
        dataset_ref=datasets[0]["ref"],
        dataset_hash=datasets[0]["hash"],
        datasets_json=json.dumps(datasets),
        idempotency_key=key,
        request_sha256=request,
        attempts=0,
        max_attempts=attempts,
        cancel_requested=False,
        created_at=at,
        created_by=caller.token_id,
        gpu_seconds=0.0,
        wall_seconds=0.0,
        billed_minutes=0,
    )
    s.add(job)
    try:
        s.commit()
    except IntegrityError:  # the same key, sent twice at once: the other request made it
        s.rollback()
        found = _by_key(s, caller.org, key)
        assert found is not None
        return _replayed(found, key, request), False, []
    return job, True, runner_warnings(s, job.org, labels, at)


def _by_key(s: Session, org: str, key: str) -> Job | None:
    return s.scalars(select(Job).where(Job.org == org, Job.idempotency_key == key)).first()


def _replayed(job: Job, key: str, request: str) -> Job:
    if job.request_sha256 != request:
        raise ApiError(
            409,
            f"idempotency key {key} was used for another submission ({job.id})",
            "a new submission needs a new key (`verifily submit` makes one per call)",
        )
    return job


def config_datasets(text: str, name: str) -> list[str]:
    """The `dataset` and `eval_dataset` refs a train config names (read with the tool's one YAML reader)."""
    from ..yamlsource import load_yaml

    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ApiError(413, f"the config is over {MAX_CONFIG_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="verifily-job-") as tmp:
        path = Path(tmp) / (Path(name).name or "train.yaml")
        path.write_text(text, encoding="utf-8")
        try:
            data = load_yaml(path, "config")
        except VerifilyError as e:
            why = "; ".join(p.render() for p in e.problems) or e.message
            raise ApiError(422, why.replace(f"{tmp}/", ""), e.hint) from None
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str):
        raise ApiError(422, f"{name}: the config names no `dataset`", "run `verifily validate --config` on it")
    refs = [data["dataset"]]
    if isinstance(data.get("eval_dataset"), str) and data["eval_dataset"] not in refs:
        refs.append(data["eval_dataset"])
    return refs


def _dataset(s: Session, org: str, ref: str) -> dict[str, str]:
    name, at, version = ref.partition("@")
    if not (at and NAME.match(name) and NAME.match(version)):
        raise ApiError(
            422,
            f"dataset {ref!r} is not name@version: a job reads dataset versions pushed to the server",
            f"push it with `verifily dataset push {Path(ref).name}@VERSION` and name it so in the config",
        )
    row = find_version(s, org, name, version)
    if row is None:
        raise ApiError(
            422, f"dataset {ref} is not on the server in organization {org!r}", f"verifily dataset push {ref}"
        )
    return {"ref": ref, "hash": row.dataset_hash}


def month_bounds(month: str | None) -> tuple[str, datetime, datetime]:
    at = now()
    month = month or f"{at.year:04d}-{at.month:02d}"
    m = MONTH.match(month)
    if m is None:
        raise ApiError(422, f"month {month!r} is not YYYY-MM", "e.g. 2026-12")
    year, mon = int(m[1]), int(m[2])
    start = datetime(year, mon, 1, tzinfo=timezone.utc)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=timezone.utc)
    return month, start, end


def plan_of(s: Session, org: str) -> str:
    row = s.get(OrgPlan, org)
    return row.plan if row is not None else PLANS[0]


def check_quota(s: Session, org: str) -> None:
    if plan_of(s, org) != "free":
        return
    if s.get_bind().dialect.name == "postgresql":  # one org's submissions count one at a time (SQLite: BEGIN IMMEDIATE)
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:org))"), {"org": f"verifily-quota:{org}"})
    _, start, end = month_bounds(None)
    done = s.scalar(
        select(func.count()).where(
            Job.org == org, Job.state == "completed", Job.finished_at >= start, Job.finished_at < end
        )
    )
    pending = s.scalar(select(func.count()).where(Job.org == org, Job.state.in_(("queued", "running"))))
    if (done or 0) + (pending or 0) >= FREE_JOBS_PER_MONTH:
        raise ApiError(
            402,
            f"organization {org!r} is on the free plan: {FREE_JOBS_PER_MONTH} jobs a month, and it has {done} "
            f"completed this month and {pending} queued or running",
            "wait for next month, or ask the operator for the paid plan; failed and cancelled jobs do not count",
        )


def runner_warnings(s: Session, org: str, labels: list[str], at: datetime) -> list[str]:
    seen = s.scalars(
        select(Runner).where(
            Runner.org.in_((org, ADMIN_ORG)), Runner.last_seen >= at - timedelta(seconds=RUNNER_SEEN_SECONDS)
        )
    )
    if any(may_lease(r.org, set(labels_of(r.labels)), org, labels) for r in seen):
        return []
    if not labels:
        return [f"no runner was seen in the last {RUNNER_SEEN_SECONDS} s; the job waits until one leases it"]
    return [f"no runner matches labels {','.join(labels)}; the job waits until one does"]


def usage(s: Session, org: str, month: str | None, managed: bool) -> dict[str, Any]:
    month, start, end = month_bounds(month)
    n, gpu, billed, wall = s.execute(
        select(func.count(), func.sum(Job.gpu_seconds), func.sum(Job.billed_minutes), func.sum(Job.wall_seconds)).where(
            Job.org == org, Job.state == "completed", Job.finished_at >= start, Job.finished_at < end
        )
    ).one()
    return {
        "org": org,
        "month": month,
        "completed_jobs": int(n or 0),
        "gpu_seconds": float(gpu or 0.0),
        "billed_minutes": int(billed or 0),
        "wall_seconds": float(wall or 0.0),
        "plan": plan_of(s, org),
        "free_jobs_per_month": FREE_JOBS_PER_MONTH,
        "managed": managed,
    }


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "org": job.org,
        "state": job.state,
        "labels": labels_of(job.labels),
        "dataset": job.dataset_ref,
        "dataset_hash": job.dataset_hash,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested": bool(job.cancel_requested),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "run_root_hash": job.run_root_hash,
        "run_id": job.run_id,
        "error": job.error,
        "gpu_seconds": job.gpu_seconds,
        "wall_seconds": job.wall_seconds,
        "billed_minutes": job.billed_minutes,
        "runner": job.runner,
        "checkpoint_step": job.checkpoint_step,
    }
