"""Uploads by content hash and dataset versions.

Uploading a file: `POST /api/v1/blobs/missing` says which hashes the org does not hold yet; `GET /api/v1/uploads/SHA`
says where an upload stands (so it resumes after a failure or a server restart); `PUT /api/v1/uploads/SHA?offset=N`
appends one chunk; `POST /api/v1/uploads/SHA/complete` hashes the bytes and stores them only when they match.
A version: `PUT /api/v1/datasets/NAME/VERSION` with the manifest (verified, then committed in one transaction),
`GET` it back, `GET /api/v1/datasets` lists the org's versions, `GET /api/v1/blobs/SHA` downloads a file.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import VerifilyError
from .app import ApiError, require, session
from .auth import Caller
from .blobs import HashMismatch, OffsetMismatch
from .commit import Conflict, commit_version, find_version, parse_manifest
from .models import Blob, DatasetFile, DatasetVersion, OrgBlob
from .names import check_name, check_sha256
from .settings import MAX_CHUNK_BYTES

router = APIRouter(prefix="/api/v1")


class Hashes(BaseModel):
    hashes: list[str]


class ManifestBody(BaseModel):
    manifest: dict[str, Any]


def _sha(value: str) -> str:
    try:
        return check_sha256(value)
    except VerifilyError as e:
        raise ApiError(422, e.message) from None


def _held(s: Session, org: str, sha: str) -> bool:
    return s.get(OrgBlob, (org, sha)) is not None


@router.post("/blobs/missing")
def missing(body: Hashes, caller: Caller = Depends(require("write")), s: Session = Depends(session)) -> dict[str, Any]:
    wanted = [_sha(h) for h in body.hashes]
    held = set(s.scalars(select(OrgBlob.sha256).where(OrgBlob.org == caller.org, OrgBlob.sha256.in_(wanted))))
    return {"missing": [h for h in dict.fromkeys(wanted) if h not in held]}


@router.get("/uploads/{sha}")
def upload_state(
    sha: str, request: Request, caller: Caller = Depends(require("write")), s: Session = Depends(session)
) -> dict[str, Any]:
    sha = _sha(sha)
    if _held(s, caller.org, sha):
        return {"offset": None, "complete": True}
    return {"offset": request.app.state.store.upload_offset(caller.org, sha), "complete": False}


@router.put("/uploads/{sha}")
async def upload_chunk(
    sha: str, offset: int, request: Request, caller: Caller = Depends(require("write"))
) -> dict[str, Any]:
    sha = _sha(sha)
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_CHUNK_BYTES:
        raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes; this one is {declared}")
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > MAX_CHUNK_BYTES:
            raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes")
    try:
        size = await run_in_threadpool(request.app.state.store.append, caller.org, sha, offset, bytes(data))
    except OffsetMismatch as e:
        raise ApiError(409, f"the upload of {sha} is at byte {e.have}, not {offset}", "resume from there") from None
    return {"offset": size}


@router.post("/uploads/{sha}/complete")
def upload_complete(
    sha: str, request: Request, caller: Caller = Depends(require("write")), s: Session = Depends(session)
) -> dict[str, Any]:
    sha = _sha(sha)
    if _held(s, caller.org, sha):
        request.app.state.store.discard(caller.org, sha)  # bytes sent again for a file already here
        return {"sha256": sha, "stored": False}
    try:
        size = request.app.state.store.finish(caller.org, sha)
    except HashMismatch as e:
        raise ApiError(422, f"refused: {e}", "nothing was stored; upload the file again") from None
    if s.get(Blob, sha) is None:
        s.add(Blob(sha256=sha, size=size))
        s.flush()
    s.add(OrgBlob(org=caller.org, sha256=sha))
    s.commit()
    return {"sha256": sha, "stored": True, "size": size}


@router.get("/blobs/{sha}")
def download(
    sha: str, request: Request, caller: Caller = Depends(require("read")), s: Session = Depends(session)
) -> FileResponse:
    sha = _sha(sha)
    path = request.app.state.store.local_path(sha) if _held(s, caller.org, sha) else None
    if path is None:
        raise ApiError(404, f"no file {sha} in your organization")
    return FileResponse(path, media_type="application/octet-stream")


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
