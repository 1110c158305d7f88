"""The fake results service's artifact records: CreateArtifact, FinalizeArtifact, ListArtifacts, DeleteArtifact.

As the real `github.actions.results.api.v1.ArtifactService` behaves (actions/toolkit packages/artifact:
`src/generated/results/api/v1/artifact.ts` for the messages, `src/internal/delete/delete-artifact.ts` for the
overwrite): names are unique per workflow run (`workflow_run_backend_id`), so CreateArtifact of a name the run
already has answers 409 `already_exists` "an artifact with this name already exists on the workflow run" (the
error upload-artifact users see on reruns and matrices); ListArtifacts lists the run's finalized artifacts with the
backend ids of the job that made each, filtered by `name_filter` / `id_filter`; DeleteArtifact takes those ids and
the name. A run mapped in `FakeGitHub.backend_runs` (backend id -> REST run id) shows its finalized artifacts in
the REST API too, and a deleted one disappears there, as on GitHub (an artifact's REST id is its `database_id`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .github_fake import FakeGitHub

_IDS = {
    "workflow_run_backend_id": {"type": "string", "minLength": 1},
    "workflow_job_run_backend_id": {"type": "string", "minLength": 1},
}
SCHEMAS = {
    "ListArtifacts": {
        "type": "object",
        "required": ["workflow_run_backend_id", "workflow_job_run_backend_id"],
        "properties": {
            **_IDS,
            "name_filter": {"type": "string"},  # StringValue
            "id_filter": {"type": "string", "pattern": "^[0-9]+$"},  # Int64Value
        },
        "additionalProperties": False,
    },
    "DeleteArtifact": {
        "type": "object",
        "required": ["workflow_run_backend_id", "workflow_job_run_backend_id", "name"],
        "properties": {**_IDS, "name": {"type": "string", "minLength": 1}},
        "additionalProperties": False,
    },
}
EXISTS = "an artifact with this name already exists on the workflow run"
_EPOCH = datetime(2024, 6, 1, tzinfo=timezone.utc)


def timestamp(n: int) -> str:
    """An RFC 3339 time that grows with `n` (the fake's ids), so "newest" is well defined without a clock."""
    return (_EPOCH + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResultsStore:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.records: list[dict[str, Any]] = []  # one per created artifact, in creation order

    def _find(self, run: str, name: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["workflow_run_backend_id"] == run and r["name"] == name), None)

    def call(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, Twirp JSON answer) for one call whose body matched its schema."""
        run = body["workflow_run_backend_id"]
        if method == "ListArtifacts":
            found = [
                r
                for r in self.records
                if r["workflow_run_backend_id"] == run
                and r["database_id"] is not None
                and body.get("name_filter") in (None, r["name"])
                and body.get("id_filter") in (None, r["database_id"])
            ]
            keys = ("workflow_run_backend_id", "workflow_job_run_backend_id", "database_id", "name", "size")
            return 200, {"artifacts": [{**{k: r[k] for k in keys}, "created_at": r["created_at"]} for r in found]}
        name = body["name"]
        record = self._find(run, name)
        if method == "CreateArtifact":
            if record is not None:
                return 409, {"code": "already_exists", "msg": EXISTS}
            self.records.append({**{k: body[k] for k in _IDS}, "name": name, "database_id": None, "size": "0"})
            self.fake.uploads[name] = {"create": body, "blocks": {}, "data": None, "finalize": None}
            return 200, {"ok": True, "signed_upload_url": f"{self.fake.blob_url}/upload/{name}?sig=abc&sv=1"}
        if method == "DeleteArtifact":
            if record is None or record["workflow_job_run_backend_id"] != body["workflow_job_run_backend_id"]:
                return 404, {"code": "not_found", "msg": "artifact not found"}
            self.records.remove(record)
            rest_run = self.fake.backend_runs.get(run)
            if rest_run is not None and record["database_id"] is not None:
                aid = int(record["database_id"])
                self.fake.artifacts[rest_run] = [a for a in self.fake.artifacts[rest_run] if a["id"] != aid]
                self.fake.blobs.pop(aid, None)
            return 200, {"ok": True, "artifact_id": record["database_id"] or "0"}
        # FinalizeArtifact
        up = self.fake.uploads.get(name)
        if record is None or up is None or up["data"] is None:
            return 404, {"code": "not_found", "msg": "nothing uploaded"}
        up["finalize"] = body
        rest_run = self.fake.backend_runs.get(run)
        if rest_run is None:
            aid = self.fake.new_id()
        else:
            listed = self.fake.add_artifact(rest_run, name, up["data"])
            aid = listed["id"]
            listed["created_at"] = listed["updated_at"] = timestamp(aid)
        record.update(database_id=str(aid), size=body["size"], created_at=timestamp(aid))
        return 200, {"ok": True, "artifact_id": str(aid)}
