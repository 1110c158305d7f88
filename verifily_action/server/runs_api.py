"""The run store and model registry. `PUT /api/v1/runs/ROOT` records a run whose files were uploaded (by content
hash, as a dataset's are) once its chain holds (`run_check`), and can name it `model@version` (set once: a version
never changes) and point a stage (`production`, …) at that version (stages move). `GET /api/v1/runs/ROOT` and
`GET /api/v1/models/MODEL/REF` (REF: a version, else a stage) give the files to fetch."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from .app import ApiError, require, session
from .auth import Caller
from .models import ModelStage, ModelVersion, OrgBlob, Run, RunFile
from .names import check_name, check_sha256
from .run_check import check_run

router = APIRouter(prefix="/api/v1")


class RunBody(BaseModel):
    files: dict[str, str]
    model: str | None = None
    version: str | None = None
    stage: str | None = None


@router.put("/runs/{root}")
def put_run(
    root: str,
    body: RunBody,
    request: Request,
    caller: Caller = Depends(require("write")),
    s: Session = Depends(session),
) -> dict[str, Any]:
    root = check_sha256(root)
    if body.stage and not (body.model and body.version):
        raise ApiError(422, "a stage points at a model version: give --tag MODEL@VERSION with --stage")
    run = s.get(Run, (caller.org, root))
    created = run is None
    if run is None:
        held = set(s.scalars(select(OrgBlob.sha256).where(OrgBlob.org == caller.org)))
        store = request.app.state.store
        run_id = check_run(body.files, root, store, held, store.root / "scratch")
        run = Run(org=caller.org, root_hash=root, run_id=run_id, created_at=_now(), created_by=caller.token_id)
        s.add(run)
        s.add_all(RunFile(org=caller.org, root_hash=root, path=p, sha256=h) for p, h in body.files.items())
    out: dict[str, Any] = {"root_hash": root, "run_id": run.run_id, "created": created}
    if body.model and body.version:
        model, version = check_name(body.model, "model"), check_name(body.version, "version")
        found = s.get(ModelVersion, (caller.org, model, version))
        if found is not None and found.root_hash != root:
            s.rollback()
            raise ApiError(409, f"{model}@{version} is the run {found.root_hash}; versions never change")
        if found is None:
            s.add(ModelVersion(org=caller.org, model=model, version=version, root_hash=root, created_at=_now()))
        out["version"] = f"{model}@{version}"
        if body.stage:
            stage = check_name(body.stage, "stage")
            row = s.get(ModelStage, (caller.org, model, stage))
            if row is None:
                s.add(ModelStage(org=caller.org, model=model, stage=stage, version=version, updated_at=_now()))
            else:
                row.version, row.updated_at = version, _now()
            out["stage"] = f"{model}@{stage}"
    s.commit()  # the run, its version and its stage together, or none of them
    return out


@router.get("/runs/{root}")
def get_run(root: str, caller: Caller = Depends(require("read")), s: Session = Depends(session)) -> dict[str, Any]:
    return _run(s, caller.org, check_sha256(root))


@router.get("/models/{model}/{ref}")
def get_model(
    model: str, ref: str, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> dict[str, Any]:
    model, ref = check_name(model, "model"), check_name(ref, "version or stage")
    version, stage = ref, None
    if s.get(ModelVersion, (caller.org, model, ref)) is None:
        row = s.get(ModelStage, (caller.org, model, ref))
        if row is None:
            raise ApiError(404, f"no version or stage {model}@{ref} in organization {caller.org!r}")
        version, stage = row.version, ref
    mv = s.get(ModelVersion, (caller.org, model, version))
    assert mv is not None
    return {**_run(s, caller.org, mv.root_hash), "model": model, "version": version, "stage": stage}


def _run(s: Session, org: str, root: str) -> dict[str, Any]:
    run = s.get(Run, (org, root))
    if run is None:
        raise ApiError(404, f"no run {root} in organization {org!r}")
    files = s.scalars(select(RunFile).where(RunFile.org == org, RunFile.root_hash == root))
    return {"root_hash": root, "run_id": run.run_id, "files": {f.path: f.sha256 for f in files}}


def _now() -> datetime:
    return datetime.now(timezone.utc)
