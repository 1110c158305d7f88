"""Uploads by content hash, for one organization: the functions behind `/api/v1/uploads/…` and `/api/v1/blobs/…`
(the org of the token) and behind a runner's `/api/v1/leases/L/uploads/…` (the org of the leased job), so both route
sets run the same code. The protocol: `missing` says which hashes the org does not hold yet; `state` says where an
upload stands (it resumes after a failure or a server restart); `append_chunk` appends one chunk at an offset;
`complete` hashes the bytes and stores them only when they match their name."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import VerifilyError
from .app import ApiError
from .blobs import HashMismatch, OffsetMismatch
from .models import Blob, OrgBlob
from .names import check_sha256
from .settings import MAX_CHUNK_BYTES


class Hashes(BaseModel):
    hashes: list[str]


def sha(value: str) -> str:
    try:
        return check_sha256(value)
    except VerifilyError as e:
        raise ApiError(422, e.message) from None


def held(s: Session, org: str, digest: str) -> bool:
    return s.get(OrgBlob, (org, digest)) is not None


def missing(s: Session, org: str, hashes: list[str]) -> dict[str, Any]:
    wanted = [sha(h) for h in hashes]
    have = set(s.scalars(select(OrgBlob.sha256).where(OrgBlob.org == org, OrgBlob.sha256.in_(wanted))))
    return {"missing": [h for h in dict.fromkeys(wanted) if h not in have]}


def state(s: Session, request: Request, org: str, digest: str) -> dict[str, Any]:
    digest = sha(digest)
    if held(s, org, digest):
        return {"offset": None, "complete": True}
    return {"offset": request.app.state.store.upload_offset(org, digest), "complete": False}


async def append_chunk(request: Request, org: str, digest: str, offset: int) -> dict[str, Any]:
    digest = sha(digest)
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_CHUNK_BYTES:
        raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes; this one is {declared}")
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > MAX_CHUNK_BYTES:
            raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes")
    try:
        size = await run_in_threadpool(request.app.state.store.append, org, digest, offset, bytes(data))
    except OffsetMismatch as e:
        raise ApiError(409, f"the upload of {digest} is at byte {e.have}, not {offset}", "resume from there") from None
    return {"offset": size}


def complete(s: Session, request: Request, org: str, digest: str) -> dict[str, Any]:
    digest = sha(digest)
    if held(s, org, digest):
        request.app.state.store.discard(org, digest)  # bytes sent again for a file already here
        return {"sha256": digest, "stored": False}
    try:
        size = request.app.state.store.finish(org, digest)
    except HashMismatch as e:
        raise ApiError(422, f"refused: {e}", "nothing was stored; upload the file again") from None
    if s.get(Blob, digest) is None:
        s.add(Blob(sha256=digest, size=size))
        s.flush()
    s.add(OrgBlob(org=org, sha256=digest))
    s.commit()
    return {"sha256": digest, "stored": True, "size": size}


def download(s: Session, request: Request, org: str, digest: str) -> FileResponse:
    digest = sha(digest)
    path = request.app.state.store.local_path(digest) if held(s, org, digest) else None
    if path is None:
        raise ApiError(404, f"no file {digest} in your organization")
    return FileResponse(path, media_type="application/octet-stream")
