"""The job queue over raw HTTP, as a runner and a user would call it (tests/test_jobs_api.py, test_jobs_leases.py,
bench/queue_throughput.py) against a real server subprocess (tests/server_proc.py, on SQLite or PostgreSQL): tokens
made with the admin token, and small wrappers for submit, lease, the lease routes and uploads."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import requests

from .builders import cls_rows, write_dataset
from .server_proc import Server

TIMEOUT = 60


def config(dataset: str = "ds@v1", **more: str) -> str:
    lines = ["task: classification", "model: tiny", f"dataset: {dataset}", *(f"{k}: {v}" for k, v in more.items())]
    return "\n".join(lines) + "\n"


class Api:
    def __init__(self, srv: Server) -> None:
        self.srv, self.url = srv, srv.url
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, self.url + path, headers=headers, timeout=TIMEOUT, **kw)

    def token(self, org: str, scope: str) -> str:
        r = self.call("POST", "/api/v1/tokens", self.srv.admin_token, json={"org": org, "scope": scope})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def org(self, name: str, *scopes: str) -> dict[str, str]:
        """Tokens of a fresh organization `name-<hex>` (each test its own, so no test sees another's jobs)."""
        org = f"{name}-{secrets.token_hex(3)}"
        return {"org": org, **{s: self.token(org, s) for s in scopes}}

    def push(self, token: str, root: Path, name: str = "ds", version: str = "v1", seed: int = 0) -> Path:
        from verifily_action.datasets.manifest import load_manifest
        from verifily_action.remote.client import Client
        from verifily_action.remote.push import push

        write_dataset(root, name, version, {"train": cls_rows(6, seed=seed)})
        manifest = root / name / version / "manifest.yaml"
        push(load_manifest(manifest), Client(self.url, token))
        return root / name / version

    def submit(self, token: str, text: str | None = None, **body: Any) -> requests.Response:
        body = {"config": text or config(), "idempotency_key": secrets.token_hex(16), **body}
        return self.call("POST", "/api/v1/jobs", token, json=body)

    def job(self, token: str, job_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/v1/jobs/{job_id}", token)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def lease(self, token: str, runner: str = "r1", labels: tuple[str, ...] = (), gpus: int = 0) -> requests.Response:
        body = {"runner": runner, "labels": list(labels), "devices": {"gpus": gpus, "kind": "cuda" if gpus else "cpu"}}
        return self.call("POST", "/api/v1/runner/lease", token, json=body)

    def leased(self, token: str, **kw: Any) -> dict[str, Any]:
        r = self.lease(token, **kw)
        assert r.status_code == 200, (r.status_code, r.text)
        return dict(r.json())

    def on(self, method: str, lease_id: str, tail: str, token: str, **kw: Any) -> requests.Response:
        return self.call(method, f"/api/v1/leases/{lease_id}/{tail}", token, **kw)

    def finish(self, token: str, lease_id: str, outcome: str, **body: Any) -> requests.Response:
        return self.on("POST", lease_id, "finish", token, json={"outcome": outcome, **body})

    def upload(self, token: str, lease_id: str, data: bytes) -> str:
        """One file through the lease's upload routes (missing, chunk, complete); returns its sha256."""
        from verifily_action.hashing import sha256_bytes

        sha = sha256_bytes(data)
        got = self.on("POST", lease_id, "blobs/missing", token, json={"hashes": [sha]})
        assert got.status_code == 200, got.text
        if got.json()["missing"]:
            put = self.on("PUT", lease_id, f"uploads/{sha}?offset=0", token, data=data)
            assert put.status_code == 200, put.text
            done = self.on("POST", lease_id, f"uploads/{sha}/complete", token)
            assert done.status_code == 200, done.text
        return sha
