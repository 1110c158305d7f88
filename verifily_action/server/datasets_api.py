"""Uploads by content hash and dataset versions.

Uploading a file: `POST /api/v1/blobs/missing` says which hashes the org does not hold yet; `GET /api/v1/uploads/SHA`
says where an upload stands (so it resumes after a failure or a server restart); `PUT /api/v1/uploads/SHA?offset=N`
appends one chunk; `POST /api/v1/uploads/SHA/complete` hashes the bytes and stores them only when they match (the
code is `uploads.py`, shared with a runner's lease routes).
A version: `PUT /api/v1/datasets/NAME/VERSION` with the manifest (verified, then committed in one transaction),
`GET` it back, `GET /api/v1/datasets` lists the org's versions, `GET /api/v1/blobs/SHA` downloads a file.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import uploads
from .app import ApiError, require, session
from .auth import Caller
from .commit import Conflict, commit_version, find_version, parse_manifest
from .models import Blob, DatasetFile, DatasetVersion
from .names import check_name

router = APIRouter(prefix="/api/v1")


class ManifestBody(BaseModel):
    manifest: dict[str, Any]


@router.post("/blobs/missing")
def missing(
    body: uploads.Hashes, caller: Caller = Depends(require("write")), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.missing(s, caller.org, body.hashes)


@router.get("/uploads/{sha}")
def upload_state(
    sha: str, request: Request, caller: Caller = Depends(require("write")), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.state(s, request, caller.org, sha)


@router.put("/uploads/{sha}")
async def upload_chunk(
    sha: str, offset: int, request: Request, caller: Caller = Depends(require("write"))
) -> dict[str, Any]:
    return await uploads.append_chunk(request, caller.org, sha, offset)


@router.post("/uploads/{sha}/complete")
def upload_complete(
    sha: str, request: Request, caller: Caller = Depends(require("write")), s: Session = Depends(session)
) -> dict[str, Any]:
    return uploads.complete(s, request, caller.org, sha)


@router.get("/blobs/{sha}")
def download(
    sha: str, request: Request, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> FileResponse:
    return uploads.download(s, request, caller.org, sha)


@router.get("/datasets")
def list_versions(caller: Caller = Depends(require("read")), s: Session = Depends(session)) -> dict[str, Any]:
    rows = s.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.org == caller.org)
        .order_by(DatasetVersion.name, DatasetVersion.version)
    )
    return {"org": caller.org, "versions": [_summary(r) for r in rows]}


@router.get("/datasets/{name}/{version}")
def get_version(
    name: str, version: str, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> dict[str, Any]:
    row = find_version(s, caller.org, check_name(name, "dataset"), check_name(version, "version"))
    if row is None:
        raise ApiError(404, f"no dataset {name}@{version} in organization {caller.org!r}")
    files = s.scalars(select(DatasetFile).where(DatasetFile.version_id == row.id))
    sizes = {b.sha256: b.size for b in s.scalars(select(Blob).where(Blob.sha256.in_({f.sha256 for f in files})))}
    return {**_summary(row), "manifest": json.loads(row.manifest_json), "sizes": sizes}


@router.put("/datasets/{name}/{version}")
def put_version(
    name: str,
    version: str,
    body: ManifestBody,
    request: Request,
    caller: Caller = Depends(require("write")),
    s: Session = Depends(session),
) -> dict[str, Any]:
    m = parse_manifest(body.manifest, check_name(name, "dataset"), check_name(version, "version"))
    try:
        row, created = commit_version(s, caller, m, request.app.state.store)
    except Conflict as e:
        raise ApiError(409, f"{e}; versions never change", "push it under a new version") from None
    return {**_summary(row), "created": created}


def _summary(row: DatasetVersion) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.version,
        "ref": f"{row.name}@{row.version}",
        "dataset_hash": row.dataset_hash,
        "created_at": row.created_at.isoformat(),
    }
