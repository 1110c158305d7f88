"""The job queue's user routes (a token of the job's org: read to look, write to submit or cancel): submit a `train`
(`POST /api/v1/jobs`), list and show jobs, read a job's log, cancel it, the month's usage, and (a site admin) an
organization's plan. The logic is in `job_submit` and `queue`; these routes parse and answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from .app import ApiError, require, session, writer_session
from .auth import Caller
from .job_models import Job, JobLog, OrgPlan
from .job_submit import Submission, job_json, submit, usage
from .names import check_org
from .queue import TERMINAL, now, sweep
from .settings import LOG_LINES_PER_PAGE, PLANS

router = APIRouter(prefix="/api/v1")
STATES = ("queued", "running", *TERMINAL)


class JobBody(BaseModel):
    config: str
    config_name: str = "train.yaml"
    labels: list[str] = []
    idempotency_key: str | None = None
    max_attempts: int | None = None


class PlanBody(BaseModel):
    plan: str


@router.post("/jobs", status_code=201)
def create_job(
    body: JobBody, request: Request, caller: Caller = Depends(require("write")), s: Session = Depends(writer_session)
) -> JSONResponse:
    sub = Submission(body.config, body.config_name, body.labels, body.idempotency_key, body.max_attempts)
    job, created, warnings = submit(s, caller, sub, request.app.state.managed)
    out = {"job": job_json(job), "created": created, "warnings": warnings}
    return JSONResponse(out, status_code=201 if created else 200)


@router.get("/jobs")
def list_jobs(
    request: Request,
    state: str | None = None,
    limit: int = 100,
    caller: Caller = Depends(require("read")),
    s: Session = Depends(session),
) -> dict[str, Any]:
    state = state or None  # `?state=` is every state
    if state is not None and state not in STATES:
        raise ApiError(422, f"state {state!r} is not one of {', '.join(STATES)}")
    if not 1 <= limit <= 1000:
        raise ApiError(422, f"limit {limit} is not between 1 and 1000")
    q = select(Job).where(Job.org == caller.org)
    if state is not None:
        q = q.where(Job.state == state)
    rows = list(s.scalars(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))
    if _settle(s, request, [j.id for j in rows if j.state == "running"]):
        rows = [j for j in (s.get(Job, j.id) for j in rows) if j is not None and (state is None or j.state == state)]
    return {"jobs": [job_json(j) for j in rows]}


@router.get("/jobs/{job_id}")
def show_job(
    job_id: str, request: Request, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> dict[str, Any]:
    job = _own(s, caller, job_id)
    if job.state == "running" and _settle(s, request, [job.id]):
        job = _own(s, caller, job_id)
    return job_json(job)


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: str, after: int = 0, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> dict[str, Any]:
    job = _own(s, caller, job_id)
    rows = s.scalars(
        select(JobLog).where(JobLog.job_id == job.id, JobLog.seq > after).order_by(JobLog.seq).limit(LOG_LINES_PER_PAGE)
    )
    return {"lines": [{"seq": r.seq, "attempt": r.attempt, "text": r.text} for r in rows], "state": job.state}


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, caller: Caller = Depends(require("write")), s: Session = Depends(writer_session)
) -> dict[str, Any]:
    job = s.scalars(
        select(Job)
        .where(Job.id == job_id, Job.org == caller.org)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if job is None:
        raise ApiError(404, f"no job {job_id} in organization {caller.org!r}")
    if job.state in TERMINAL:
        raise ApiError(409, f"job {job_id} is already {job.state}", "only a queued or running job can be cancelled")
    at = now()
    if job.state == "queued":
        job.state, job.finished_at, job.billed_minutes = "cancelled", at, 0
    else:
        job.cancel_requested = True  # the runner learns it on its next heartbeat
        sweep(s, at, [job.id])  # a lease that already expired: cancelled now, not requeued
    s.commit()
    return job_json(job)


@router.get("/usage")
def get_usage(
    request: Request, month: str | None = None, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> dict[str, Any]:
    return usage(s, caller.org, month, request.app.state.managed)


@router.put("/orgs/{org}/plan")
def set_plan(
    org: str, body: PlanBody, caller: Caller = Depends(require("admin")), s: Session = Depends(writer_session)
) -> dict[str, Any]:
    if not caller.site_admin:
        raise ApiError(403, "only a site admin token (organization 'admin') sets plans")
    org = check_org(org)
    if body.plan not in PLANS:
        raise ApiError(422, f"plan {body.plan!r} is not one of {', '.join(PLANS)}")
    row = s.get(OrgPlan, org)
    if row is None:
        s.add(OrgPlan(org=org, plan=body.plan))
    else:
        row.plan = body.plan
    s.commit()
    return {"org": org, "plan": body.plan}


def _own(s: Session, caller: Caller, job_id: str) -> Job:
    job = s.get(Job, job_id) if len(job_id) <= 32 else None
    if job is None or job.org != caller.org:
        raise ApiError(404, f"no job {job_id} in organization {caller.org!r}")
    return job


def _settle(s: Session, request: Request, running: list[str]) -> int:
    """Sweep these running jobs' expired leases (so a show or list never reports a dead lease as running). The
    read session `s` ends its transaction first (its rows are read again after), so no request holds two
    connections of the pool at once."""
    if not running:
        return 0
    s.rollback()
    with request.app.state.writers() as w:
        n = sweep(w, now(), running)
        w.commit()
    return n
