"""Upload a folder as a workflow artifact from Python, with the artifact v4 protocol of `@actions/artifact`.

The protocol (actions/toolkit, packages/artifact/src/internal/upload/upload-artifact.ts):
1. Twirp JSON `POST {ACTIONS_RESULTS_URL}/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact`
   with the runtime token as bearer, body `{workflow_run_backend_id, workflow_job_run_backend_id, name,
   version: 4}` (proto field names, as twirp-ts' JSON client sends them) -> `{ok, signed_upload_url}`.
   The two backend ids come from the runtime token's `scp` claim: `Actions.Results:<run id>:<job run id>`.
2. `PUT` the zip to the signed Azure blob URL (`x-ms-blob-type: BlockBlob`; the URL carries the credentials, so
   no Authorization header is sent there). Large zips go as blocks plus a block list, as the Azure SDK does.
3. `FinalizeArtifact` with `{…ids, name, size: "<bytes>", hash: "sha256:<hex>"}` -> `{ok, artifact_id}`.

Names are unique per workflow run and an artifact cannot be overwritten: CreateArtifact answers 409 ("an artifact
with this name already exists on the workflow run") on a rerun (GITHUB_RUN_ATTEMPT > 1: the earlier attempt's
artifact is still there) and in a matrix whose jobs share the name. We then do what upload-artifact's
`overwrite: true` does (actions/upload-artifact `src/upload/upload-artifact.ts`, toolkit
`src/internal/delete/delete-artifact.ts` `deleteArtifactInternal`): `ListArtifacts` with this run's backend ids and
`name_filter` -> `{artifacts: [{workflow_run_backend_id, workflow_job_run_backend_id, database_id, name, …}]}`,
`DeleteArtifact` with the listed artifact's own backend ids and name -> `{ok, artifact_id}`, and CreateArtifact
again. On a rerun that replaces the stale attempt's artifact, so the comment job and later baselines read the new
one; on the first attempt it can only be another job's, so it is replaced with a warning that the jobs overwrite
each other's runs. Wrapper types (StringValue) are plain JSON values, int64 a decimal string (twirp-ts'
`useProtoFieldName` JSON).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import requests
from requests.adapters import HTTPAdapter

from ..errors import VerifilyError
from . import workflow as wf
from .archive import zip_dir
from .client import TIMEOUT, make_retry

SERVICE = "github.actions.results.api.v1.ArtifactService"
BLOCK_SIZE = 8 * 1024 * 1024
SINGLE_PUT_MAX = 64 * 1024 * 1024  # above this, upload in blocks so a failure retries one block, not the file
_FORBIDDEN = set('":<>|*?\r\n\\/')


class ArtifactError(VerifilyError):
    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status  # the results service's HTTP status (409: the name exists in this run)


@dataclass
class UploadResult:
    id: int
    name: str
    size: int
    digest: str  # "sha256:<hex>"
    replaced: list[int] = field(default_factory=list)  # ids of the artifacts of the same name deleted first


def backend_ids(runtime_token: str) -> tuple[str, str]:
    """(workflow run backend id, workflow job run backend id) from the JWT's `scp` claim (not verified: the
    results service verifies it; we only read the ids it carries)."""
    try:
        payload = runtime_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        scopes = str(claims["scp"]).split(" ")
    except (IndexError, ValueError, KeyError, TypeError):
        raise ArtifactError("ACTIONS_RUNTIME_TOKEN is not a valid JWT with an `scp` claim") from None
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "Actions.Results":
            return parts[1], parts[2]
    raise ArtifactError("ACTIONS_RUNTIME_TOKEN has no Actions.Results scope; cannot upload artifacts")


def validate_name(name: str) -> None:
    bad = sorted(c for c in set(name) if c in _FORBIDDEN)
    if not name or bad:
        raise ArtifactError(
            f"invalid artifact name {name!r}",
            hint=f"these characters are not allowed: {' '.join(repr(c) for c in bad) or '(empty name)'}",
        )


class ArtifactUploader:
    def __init__(
        self,
        runtime_token: str | None = None,
        results_url: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        sleep=None,
        attempt: int | None = None,
    ) -> None:
        self.token = runtime_token or os.environ.get("ACTIONS_RUNTIME_TOKEN", "")
        run_attempt = os.environ.get("GITHUB_RUN_ATTEMPT", "")
        self.attempt = attempt or (int(run_attempt) if run_attempt.isdigit() else 1)
        self.results_url = (results_url or os.environ.get("ACTIONS_RESULTS_URL", "")).rstrip("/")
        if not self.token or not self.results_url:
            raise ArtifactError(
                "artifact upload needs ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL",
                hint="these exist inside a GitHub Actions job (a docker action sees them); locally there is "
                "nothing to upload to",
            )
        kw: dict[str, Any] = {"sleep": sleep} if sleep else {}
        retry = make_retry(retries, backoff, **kw)
        self.twirp = requests.Session()
        self.twirp.mount("http://", HTTPAdapter(max_retries=retry))
        self.twirp.mount("https://", HTTPAdapter(max_retries=retry))
        self.twirp.headers.update({"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        self.blob = requests.Session()  # no token: the signed URL authorises the upload
        self.blob.mount("http://", HTTPAdapter(max_retries=make_retry(retries, backoff, **kw)))
        self.blob.mount("https://", HTTPAdapter(max_retries=make_retry(retries, backoff, **kw)))

    def _call(self, method: str, body: dict[str, Any], *, has_ok: bool = True) -> dict[str, Any]:
        """One Twirp call; `has_ok`: the response message carries an `ok` that must be true (ListArtifacts' has
        none)."""
        url = f"{self.results_url}/twirp/{SERVICE}/{method}"
        try:
            r = self.twirp.post(url, data=json.dumps(body), timeout=TIMEOUT)
        except requests.RequestException as e:
            raise ArtifactError(f"{method} failed: {type(e).__name__}") from None
        try:
            data = r.json()
        except ValueError:
            data = {}
        if not r.ok or not isinstance(data, dict) or (has_ok and not data.get("ok")):
            msg = (data.get("msg") or data.get("code") if isinstance(data, dict) else "") or r.reason
            raise ArtifactError(f"{method} failed: HTTP {r.status_code}: {msg}", status=r.status_code)
        return data

    def _create(self, create: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """CreateArtifact; on 409 (the name exists in this workflow run) delete the existing artifact and create
        again, as upload-artifact's `overwrite: true` does. Returns the answer and the ids deleted."""
        try:
            return self._call("CreateArtifact", create), []
        except ArtifactError as e:
            if e.status != 409:
                raise
        name = create["name"]
        ids = {k: create[k] for k in ("workflow_run_backend_id", "workflow_job_run_backend_id")}
        listed = self._call("ListArtifacts", {**ids, "name_filter": name}, has_ok=False).get("artifacts") or []
        found = [a for a in listed if isinstance(a, dict) and a.get("name") == name]
        if not found:
            raise ArtifactError(
                f"an artifact named `{name}` already exists in this workflow run, but the results service does not "
                "list it (an upload of it may still be running, or was never finalized)",
                hint="rerun the job, or give this step another artifact-name",
                status=409,
            )
        if self.attempt <= 1:
            wf.warning(
                f"another job of this workflow run already uploaded an artifact named `{name}` (a matrix, or a "
                "second verifily step, with the same artifact-name): it is replaced, and the jobs overwrite each "
                f"other's runs; give each its own artifact-name, e.g. `{name}-${{{{ matrix.config }}}}`"
            )
        deleted = []
        for a in found:
            done = self._call("DeleteArtifact", {**{k: str(a.get(k) or "") for k in ids}, "name": name})
            deleted.append(int(done.get("artifact_id") or a.get("database_id") or 0))
            whose = f"attempt {self.attempt - 1} or earlier" if self.attempt > 1 else "another job"
            print(f"deleted artifact `{name}` (id {deleted[-1]}) of {whose} of this workflow run, to upload it again")
        return self._call("CreateArtifact", create), deleted

    def _put(self, url: str, zip_path: Path, size: int) -> None:
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/zip"}
        try:
            if size <= SINGLE_PUT_MAX:
                with open(zip_path, "rb") as f:
                    r = self.blob.put(url, data=f, headers={**headers, "Content-Length": str(size)}, timeout=TIMEOUT)
                r.raise_for_status()
                return
            ids = []
            sep = "&" if "?" in url else "?"
            with open(zip_path, "rb") as f:
                i = 0
                while block := f.read(BLOCK_SIZE):
                    bid = base64.b64encode(f"{i:08d}".encode()).decode()
                    r = self.blob.put(
                        f"{url}{sep}comp=block&blockid={quote(bid, safe='')}",
                        data=block,
                        timeout=TIMEOUT,
                    )
                    r.raise_for_status()
                    ids.append(bid)
                    i += 1
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><BlockList>'
                + "".join(f"<Latest>{escape(b)}</Latest>" for b in ids)
                + "</BlockList>"
            )
            r = self.blob.put(
                f"{url}{sep}comp=blocklist",
                data=xml.encode(),
                headers={"x-ms-blob-content-type": "application/zip"},
                timeout=TIMEOUT,
            )
            r.raise_for_status()
        except requests.RequestException as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            raise ArtifactError(
                f"uploading the artifact to blob storage failed ({type(e).__name__} {status or ''})".strip()
            ) from None

    def upload(
        self,
        name: str,
        root_dir: str | Path,
        *,
        extra: dict[str, bytes] | None = None,
        retention_days: int | None = None,
    ) -> UploadResult:
        """Zip `root_dir` (plus `extra` files at the zip's root) and upload it as artifact `name`."""
        validate_name(name)
        run_id, job_id = backend_ids(self.token)
        ids = {"workflow_run_backend_id": run_id, "workflow_job_run_backend_id": job_id}
        with tempfile.TemporaryDirectory(prefix="verifily-upload-") as tmp:
            info = zip_dir(root_dir, Path(tmp) / f"{name}.zip", extra)
            create: dict[str, Any] = {**ids, "name": name, "version": 4}
            if retention_days:
                from datetime import datetime, timedelta, timezone

                expires = datetime.now(timezone.utc) + timedelta(days=retention_days)
                create["expires_at"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
            created, replaced = self._create(create)
            url = created.get("signed_upload_url")
            if not url:
                raise ArtifactError("CreateArtifact returned no signed_upload_url")
            self._put(url, info.path, info.size)
            digest = f"sha256:{info.sha256}"
            done = self._call("FinalizeArtifact", {**ids, "name": name, "size": str(info.size), "hash": digest})
        artifact_id = int(done.get("artifact_id") or 0)
        return UploadResult(id=artifact_id, name=name, size=info.size, digest=digest, replaced=replaced)


def upload_artifact(name: str, root_dir: str | Path, **kw: Any) -> UploadResult:
    """Convenience wrapper: upload with the runtime token and results URL from the environment."""
    extra = kw.pop("extra", None)
    retention = kw.pop("retention_days", None)
    return ArtifactUploader(**kw).upload(name, root_dir, extra=extra, retention_days=retention)
