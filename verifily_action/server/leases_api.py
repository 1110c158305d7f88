"""The runner routes (a `runner` token, and nothing else may call them): lease a job, then on that lease heartbeat
(log lines in, cancel flag out), fetch the job's files, upload checkpoints and the run, and finish. Every
`/leases/L/...` call checks the lease is this token's, live and the job's current one, else 410: stop working on it.
A blob operation acts in the leased job's organization, never the token's, and reads only that job's files."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from . import uploads
from .app import ApiError, require, session, writer_session
from .auth import Caller
from .job_models import Job
from .job_submit import job_json
from .models import DatasetFile, DatasetVersion, OrgBlob
from .names import check_labels, check_name, check_sha256
from .queue import OUTCOMES, Finish, Gone, RunnerInfo, finish, heartbeat, lease, live
from .run_check import check_run
from .settings import HEARTBEAT_SECONDS, LOG_LINES_PER_HEARTBEAT

router = APIRouter(prefix="/api/v1")
RUNNER = require("runner")
MAX_ERROR_CHARS = 65536


class LeaseBody(BaseModel):
    runner: str
    labels: list[str] = []
    devices: dict[str, Any] = {}


class HeartbeatBody(BaseModel):
    log: list[str] = []
    step: int | None = None


class CheckpointBody(BaseModel):
    sha256: str
    step: int | None = None


class FinishBody(BaseModel):
    outcome: str
    files: dict[str, str] | None = None
    root_hash: str | None = None
    error: str | None = None
    retry: bool = False
    wall_seconds: float | None = None


def leased_job(lease_id: str, caller: Caller = Depends(RUNNER), s: Session = Depends(session)) -> Job:
    """The job of a live lease of this runner (410 otherwise), detached: the read ends here, so an upload that streams
    its body holds no connection of the pool meanwhile."""
    with gone():
        job = live(s, caller, lease_id, lock=False)[1]
    s.expunge(job)
    s.rollback()
    return job


class gone:  # noqa: N801 - used as `with gone():`
    """Gone -> 410: the runner stops working on the job."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, _tb: Any) -> None:
        if isinstance(exc, Gone):
            raise ApiError(410, str(exc), "stop working on this job") from None


@router.post("/runner/lease", response_model=None)
def lease_job(
    body: LeaseBody, request: Request, caller: Caller = Depends(RUNNER), s: Session = Depends(writer_session)
) -> Response | dict[str, Any]:
    gpus = body.devices.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= 1024:
        raise ApiError(422, f"devices.gpus {gpus!r} is not a count of GPUs")
    info = RunnerInfo(check_name(body.runner, "runner"), check_labels(body.labels), gpus, body.devices)
    ttl = request.app.state.lease_ttl
    got = lease(s, caller, info, ttl, min(float(HEARTBEAT_SECONDS), ttl / 3))
    return Response(status_code=204) if got is None else got


@router.post("/leases/{lease_id}/heartbeat")
def lease_heartbeat(
    lease_id: str,
    body: HeartbeatBody,
    request: Request,
    caller: Caller = Depends(RUNNER),
    s: Session = Depends(writer_session),
) -> dict[str, Any]:
    lines = body.log
    if len(lines) > LOG_LINES_PER_HEARTBEAT:  # a flood is cut, never refused: the heartbeat must keep the lease
        lines = [
            f"[{len(lines) - LOG_LINES_PER_HEARTBEAT + 1} log lines dropped]",
            *lines[-LOG_LINES_PER_HEARTBEAT + 1 :],
        ]
    with gone():
        return heartbeat(s, caller, lease_id, lines, request.app.state.lease_ttl)


@router.get("/leases/{lease_id}/blobs/{sha}")
def lease_blob(
    sha: str, request: Request, job: Job = Depends(leased_job), s: Session = Depends(session)
) -> FileResponse:
    sha = uploads.sha(sha)
    refs = [d["ref"].partition("@") for d in json.loads(job.datasets_json)]
    in_data = s.scalars(
        select(DatasetFile.sha256)
        .join(DatasetVersion, DatasetVersion.id == DatasetFile.version_id)
        .where(DatasetVersion.org == job.org, DatasetFile.sha256 == sha)
        .where(or_(*(and_(DatasetVersion.name == n, DatasetVersion.version == v) for n, _, v in refs)))
    ).first()
    if in_data is None and sha != job.checkpoint_sha256:
        raise ApiError(404, f"no file {sha} in this job's datasets or checkpoint")
    return uploads.download(s, request, job.org, sha)


@router.post("/leases/{lease_id}/blobs/missing")
def lease_missing(
    body: uploads.Hashes, job: Job = Depends(leased_job), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.missing(s, job.org, body.hashes)


@router.get("/leases/{lease_id}/uploads/{sha}")
def lease_upload_state(
    sha: str, request: Request, job: Job = Depends(leased_job), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.state(s, request, job.org, sha)


@router.put("/leases/{lease_id}/uploads/{sha}")
async def lease_upload_chunk(sha: str, offset: int, request: Request, job: Job = Depends(leased_job)) -> dict[str, Any]:
    return await uploads.append_chunk(request, job.org, sha, offset)


@router.post("/leases/{lease_id}/uploads/{sha}/complete")
def lease_upload_complete(
    sha: str, request: Request, job: Job = Depends(leased_job), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.complete(s, request, job.org, sha)


@router.put("/leases/{lease_id}/checkpoint")
def lease_checkpoint(
    lease_id: str, body: CheckpointBody, caller: Caller = Depends(RUNNER), s: Session = Depends(writer_session)
) -> dict[str, Any]:
    from .queue import checkpoint

    digest = uploads.sha(body.sha256)
    with gone():
        try:
            return checkpoint(s, caller, lease_id, digest, body.step)
        except LookupError as e:
            raise ApiError(422, str(e), "upload the checkpoint through this lease's upload routes first") from None


@router.post("/leases/{lease_id}/finish")
def lease_finish(
    lease_id: str,
    body: FinishBody,
    request: Request,
    caller: Caller = Depends(RUNNER),
    s: Session = Depends(writer_session),
) -> dict[str, Any]:
    if body.outcome not in OUTCOMES:
        raise ApiError(422, f"outcome {body.outcome!r} is not one of {', '.join(OUTCOMES)}")
    error = body.error[-MAX_ERROR_CHARS:] if body.error else None
    f = Finish(body.outcome, error, body.retry)
    if body.outcome == "completed":
        f = Finish("completed", None, False, _verified_run(request, caller, lease_id, body), body.files)
    with gone():
        return job_json(finish(s, caller, lease_id, f))


def _verified_run(request: Request, caller: Caller, lease_id: str, body: FinishBody) -> tuple[str, str]:
    """(root hash, run id) of the run the runner uploaded, its chain checked as `PUT /api/v1/runs/ROOT` checks one;
    done before the job is locked (it reads every file), then `finish` records it with the job."""
    if not body.files or not body.root_hash:
        raise ApiError(422, "a completed finish needs the run's files {path: sha256} and its root_hash")
    with request.app.state.sessions() as s:
        with gone():
            job = live(s, caller, lease_id, lock=False)[1]
        root = check_sha256(body.root_hash)  # a VerifilyError answers 422 with its problems (app.py)
        wanted = set(body.files.values())
        held = set(s.scalars(select(OrgBlob.sha256).where(OrgBlob.org == job.org, OrgBlob.sha256.in_(wanted))))
        store = request.app.state.store
        return root, check_run(body.files, root, store, held, store.root / "scratch")
