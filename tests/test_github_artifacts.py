"""Artifact upload with the v4 results-service protocol against the fake (Twirp + signed blob URL)."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile

import pytest

from verifily_action.github import artifacts
from verifily_action.github.artifacts import ArtifactError, ArtifactUploader, backend_ids

from .github_fake import RUNTIME, TOKEN, runtime_token

pytestmark = pytest.mark.unit


def test_backend_ids_from_scp_claim():
    assert backend_ids(RUNTIME) == ("ce7f54c7-61c7", "ca395085-040a")
    with pytest.raises(ArtifactError, match="no Actions.Results"):
        backend_ids(runtime_token("Actions.Other"))
    with pytest.raises(ArtifactError, match="not a valid JWT"):
        backend_ids("garbage")


def _run_dir(tmp_path, big: bool = False):
    d = tmp_path / "run"
    (d / "eval").mkdir(parents=True)
    (d / "run_meta.json").write_text('{"status": "completed"}')
    # random bytes do not compress: 1.5 MiB of them make a zip of several 256 KiB blocks
    (d / "eval" / "eval_results.json").write_bytes(random.Random(0).randbytes(3 * 512 * 1024) if big else b"{}")
    return d


def test_upload_create_put_finalize(fake_github, tmp_path):
    fake_github.twirp_token = RUNTIME
    up = ArtifactUploader(RUNTIME, fake_github.api_url + "/", sleep=lambda s: None)
    res = up.upload("verifily-run", _run_dir(tmp_path), extra={"verifily-pr.json": b'{"number": 2}'})
    stored = fake_github.uploads["verifily-run"]
    assert stored["create"]["workflow_run_backend_id"] == "ce7f54c7-61c7"
    assert stored["create"]["version"] == 4
    data = stored["data"]
    assert res.size == len(data) and res.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stored["finalize"]["size"] == str(len(data)) and stored["finalize"]["hash"] == res.digest
    assert res.id > 0
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == ["eval/eval_results.json", "run_meta.json", "verifily-pr.json"]
    puts = fake_github.calls("PUT", "/upload/", host="blob")
    assert len(puts) == 1 and "authorization" not in puts[0].headers
    assert all(TOKEN not in v and RUNTIME not in v for v in puts[0].headers.values())


def test_large_upload_goes_in_blocks(fake_github, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "SINGLE_PUT_MAX", 512 * 1024)
    monkeypatch.setattr(artifacts, "BLOCK_SIZE", 256 * 1024)
    up = ArtifactUploader(RUNTIME, fake_github.api_url, sleep=lambda s: None)
    res = up.upload("big-run", _run_dir(tmp_path, big=True))
    stored = fake_github.uploads["big-run"]
    assert len(stored["blocks"]) >= 2
    assert hashlib.sha256(stored["data"]).hexdigest() == res.digest.split(":")[1]
    assert zipfile.ZipFile(io.BytesIO(stored["data"])).read("run_meta.json") == b'{"status": "completed"}'


def test_results_service_errors_are_retried_then_reported(fake_github, tmp_path):
    fake_github.fault("POST", "CreateArtifact", 503, body={"code": "unavailable", "msg": "busy"})
    up = ArtifactUploader(RUNTIME, fake_github.api_url, sleep=lambda s: None)
    assert up.upload("r1", _run_dir(tmp_path)).size > 0
    fake_github.fault("POST", "FinalizeArtifact", 400, body={"code": "invalid_argument", "msg": "bad size"})
    with pytest.raises(ArtifactError, match="FinalizeArtifact failed: HTTP 400: bad size"):
        up.upload("r2", _run_dir(tmp_path / "b"))


def test_invalid_names_and_missing_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    monkeypatch.delenv("ACTIONS_RESULTS_URL", raising=False)
    with pytest.raises(ArtifactError, match="ACTIONS_RUNTIME_TOKEN"):
        ArtifactUploader()
    up = ArtifactUploader(RUNTIME, "http://127.0.0.1:9")
    with pytest.raises(ArtifactError, match="invalid artifact name"):
        up.upload("a/b", tmp_path)
