"""Artifact upload with the v4 results-service protocol against the fake (Twirp + signed blob URL)."""

from __future__ import annotations

import hashlib
import io
import json
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


def _twirp_calls(fake) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in fake.calls("POST", "/twirp/")]


def test_a_rerun_replaces_the_earlier_attempts_artifact(fake_github, tmp_path, capsys):
    """Attempt 2 of a run (say, after a failed gate) gets 409 on CreateArtifact: the stale artifact is listed,
    deleted and created again, as upload-artifact's overwrite does, and the REST API then lists only the new one."""
    fake_github.twirp_token = RUNTIME
    run = fake_github.add_run("a" * 40)
    fake_github.backend_runs["ce7f54c7-61c7"] = run["id"]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "attempt.txt").write_text("1")
    first = ArtifactUploader(RUNTIME, fake_github.api_url, attempt=1).upload("verifily-run", tmp_path / "one")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "attempt.txt").write_text("2")
    second = ArtifactUploader(RUNTIME, fake_github.api_url, attempt=2).upload("verifily-run", tmp_path / "two")
    assert _twirp_calls(fake_github) == [
        *("CreateArtifact", "FinalizeArtifact"),
        *("CreateArtifact", "ListArtifacts", "DeleteArtifact", "CreateArtifact", "FinalizeArtifact"),
    ]
    listed, deleted = (json.loads(r.body) for r in fake_github.calls("POST", "/(ListArtifacts|DeleteArtifact)$"))
    assert listed == {
        "workflow_run_backend_id": "ce7f54c7-61c7",
        "workflow_job_run_backend_id": "ca395085-040a",
        "name_filter": "verifily-run",
    }
    assert deleted["name"] == "verifily-run"
    assert second.replaced == [first.id] and second.id != first.id
    (only,) = fake_github.artifacts[run["id"]]
    assert only["id"] == second.id
    assert zipfile.ZipFile(io.BytesIO(fake_github.blobs[only["id"]])).read("attempt.txt") == b"2"
    out = capsys.readouterr().out
    assert f"deleted artifact `verifily-run` (id {first.id}) of attempt 1 or earlier" in out
    assert "::warning" not in out


def test_a_matrix_sharing_the_name_replaces_the_other_jobs_artifact_with_a_warning(fake_github, tmp_path, capsys):
    job_a = runtime_token("Actions.Results:run-1:job-a")
    job_b = runtime_token("Actions.Results:run-1:job-b")
    ArtifactUploader(job_a, fake_github.api_url, attempt=1).upload("verifily-run", _run_dir(tmp_path))
    res = ArtifactUploader(job_b, fake_github.api_url, attempt=1).upload("verifily-run", _run_dir(tmp_path / "b"))
    assert len(res.replaced) == 1
    (deleted,) = [json.loads(r.body) for r in fake_github.calls("POST", "/DeleteArtifact$")]
    # the listed artifact's own ids, not the deleting job's: as the toolkit's deleteArtifactInternal sends them
    assert deleted == {
        "workflow_run_backend_id": "run-1",
        "workflow_job_run_backend_id": "job-a",
        "name": "verifily-run",
    }
    out = capsys.readouterr().out
    assert "::warning::another job of this workflow run already uploaded an artifact named `verifily-run`" in out
    assert "verifily-run-${{ matrix.config }}" in out
    # another workflow run may use the name freely
    other = ArtifactUploader(runtime_token("Actions.Results:run-2:job-a"), fake_github.api_url)
    assert other.upload("verifily-run", _run_dir(tmp_path / "c")).replaced == []


def test_a_clash_the_service_cannot_list_is_one_clear_error(fake_github, tmp_path):
    up = ArtifactUploader(RUNTIME, fake_github.api_url, attempt=2)
    fake_github.fault("POST", "FinalizeArtifact", 400, body={"code": "invalid_argument", "msg": "bad size"})
    with pytest.raises(ArtifactError, match="FinalizeArtifact"):
        up.upload("verifily-run", _run_dir(tmp_path))  # created, never finalized: not listed
    with pytest.raises(ArtifactError, match="already exists in this workflow run, but the results service does not"):
        up.upload("verifily-run", _run_dir(tmp_path / "b"))
    assert not fake_github.calls("POST", "/DeleteArtifact$")


def test_the_attempt_comes_from_the_runner(monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "3")
    assert ArtifactUploader(RUNTIME, "http://127.0.0.1:9").attempt == 3
    monkeypatch.delenv("GITHUB_RUN_ATTEMPT")
    assert ArtifactUploader(RUNTIME, "http://127.0.0.1:9").attempt == 1
