"""`verifily dataset push`: send a dataset version to a server.

The files go first, by content hash: the server says which it lacks (the rest are skipped), each missing one is
sent in chunks of CHUNK_BYTES from where its upload stands (so a push that died resumes, whoever died), and the
server keeps it only if its bytes hash to its name. The manifest goes last; the server checks every file's hash and
rows and only then makes the version visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..datasets.manifest import Manifest
from ..errors import VerifilyError
from ..server.settings import CHUNK_BYTES
from .client import API, Client


@dataclass
class PushResult:
    ref: str
    dataset_hash: str
    created: bool
    uploaded: list[str] = field(default_factory=list)  # sha256 of the files sent
    skipped: list[str] = field(default_factory=list)  # the server had them
    resumed_bytes: int = 0  # bytes the server already held of the files sent


def push(
    m: Manifest,
    client: Client,
    chunk_bytes: int = CHUNK_BYTES,
    on_chunk: Callable[[str, int], None] | None = None,
) -> PushResult:
    entries = [(s, f) for s, files in m.splits.items() for f in files]
    unhashed = [f.path for _, f in entries if f.sha256 is None or f.rows is None]
    if unhashed:
        raise VerifilyError(
            f"{m.path}: files without a sha256 or row count: {', '.join(unhashed)}",
            hint=f"run `verifily dataset hash {m.path}` first",
        )
    paths = {str(f.sha256): m.file_path(f) for _, f in entries}
    missing = client.call("POST", "/api/v1/blobs/missing", json={"hashes": list(paths)})["missing"]
    result = PushResult(m.ref, m.dataset_hash(), created=False)
    result.skipped = [h for h in paths if h not in missing]
    for sha in missing:
        result.resumed_bytes += upload(client, sha, paths[sha], chunk_bytes, on_chunk)
        result.uploaded.append(sha)
    body = client.call("PUT", f"/api/v1/datasets/{m.name}/{m.version}", json={"manifest": m.data})
    result.created = bool(body["created"])
    return result


def upload(
    client: Client,
    sha: str,
    path: Any,
    chunk_bytes: int,
    on_chunk: Callable[[str, int], None] | None,
    prefix: str = API,
) -> int:
    """Send one file from where the server's upload of it stands; returns the bytes it already had. `prefix`: where
    the upload routes are (a runner uploads through its lease: /api/v1/leases/<lease>)."""
    state = client.call("GET", f"{prefix}/uploads/{sha}")
    if state["complete"]:
        return 0
    offset = start = int(state["offset"])
    size = path.stat().st_size
    if offset > size:  # a stale upload of other bytes: the server refuses it at complete, and we start over
        offset = start = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while offset < size:
            chunk = f.read(chunk_bytes)
            got = client.call("PUT", f"{prefix}/uploads/{sha}", params={"offset": offset}, data=chunk, ok=(409,))
            if "offset" not in got:  # 409: the server is elsewhere (another push of the same file): follow it
                state = client.call("GET", f"{prefix}/uploads/{sha}")
                if state["complete"]:
                    return start
                offset = int(state["offset"])
                f.seek(offset)
                continue
            offset = int(got["offset"])
            if on_chunk is not None:
                on_chunk(sha, offset)
    client.call("POST", f"{prefix}/uploads/{sha}/complete")
    return start
