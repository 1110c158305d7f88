"""The job queue's user routes and a job's life over real HTTP (raw `requests`, as `verifily submit` and a runner
call them), against SQLite and a real PostgreSQL, one managed-mode server per database: submissions (idempotency
keys, datasets checked by name@version, label warnings), a job completed exactly once with a verified run, GPU-time
metering and usage, cancellation, the free plan's limit, and what a runner token may not do."""

from __future__ import annotations

import math
import re
import threading

import pytest
import requests

from verifily_action.hashing import sha256_file
from verifily_action.server.settings import LOG_LINES_PER_HEARTBEAT, LOG_LINES_PER_PAGE, RUNNER_SEEN_SECONDS

from .builders import sealed_run
from .queue_http import Api, config
from .server_proc import init_on

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, tmp_path_factory):
    srv = init_on(request, tmp_path_factory, "jobs").start("--managed")
    yield Api(srv)
    srv.stop()


def test_a_submission_is_idempotent_and_names_datasets_on_the_server(api, tmp_path):
    t = api.org("acme", "read", "write")
    ds = api.push(t["write"], tmp_path)
    body = {"config": config(), "labels": ["gpu"], "idempotency_key": "k" * 32}
    first = api.call("POST", "/api/v1/jobs", t["write"], json=body)
    assert first.status_code == 201, first.text
    job = first.json()["job"]
    assert first.json()["created"] and job["state"] == "queued" and job["id"].startswith("job_")
    assert job["dataset"] == "ds@v1" and job["org"] == t["org"] and job["attempts"] == 0 and job["max_attempts"] == 3
    from verifily_action.datasets.manifest import load_manifest

    assert job["dataset_hash"] == load_manifest(ds / "manifest.yaml").dataset_hash()
    again = api.call("POST", "/api/v1/jobs", t["write"], json=body)
    assert again.status_code == 200 and again.json()["job"]["id"] == job["id"] and not again.json()["created"]
    racing = {**body, "idempotency_key": "r" * 32}  # a retry racing the first attempt: still one job
    codes: list[tuple[int, str]] = []
    start = threading.Barrier(6)

    def send() -> None:
        mine = Api(api.srv)
        start.wait()
        r = mine.call("POST", "/api/v1/jobs", t["write"], json=racing)
        codes.append((r.status_code, r.json()["job"]["id"]))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(c for c, _ in codes) == [200] * 5 + [201] and len({j for _, j in codes}) == 1
    api.call("POST", f"/api/v1/jobs/{codes[0][1]}/cancel", t["write"])
    other = api.call("POST", "/api/v1/jobs", t["write"], json={**body, "labels": ["cpu"]})
    assert other.status_code == 409 and "idempotency key" in other.json()["error"]
    assert [j["id"] for j in api.call("GET", "/api/v1/jobs?state=queued", t["read"]).json()["jobs"]] == [job["id"]]
    assert api.call("GET", "/api/v1/jobs?state=running", t["read"]).json()["jobs"] == []
    assert len(api.call("GET", "/api/v1/jobs?state=&limit=5", t["read"]).json()["jobs"]) == 2
    assert api.call("GET", "/api/v1/jobs?state=done", t["read"]).status_code == 422

    for text, needle in [
        (config("ds@v9"), "ds@v9"),
        (config(eval_dataset="ev@v1"), "ev@v1"),
        (config("data/reviews"), "not name@version"),
        ("task: [classification\n", "YAML"),
        ("task: classification\n", "no `dataset`"),
    ]:
        r = api.submit(t["write"], text)
        assert r.status_code == 422 and needle in r.json()["error"], (text, r.text)
    assert "verifily dataset push ds@v9" in api.submit(t["write"], config("ds@v9")).json()["hint"]
    assert api.submit(t["read"]).status_code == 403  # submitting needs write
    assert api.submit(t["write"], max_attempts=0).status_code == 422
    stranger = api.org("globex", "read")
    assert api.call("GET", f"/api/v1/jobs/{job['id']}", stranger["read"]).status_code == 404
    assert api.call("GET", "/api/v1/jobs", stranger["read"]).json()["jobs"] == []
    assert api.call("POST", f"/api/v1/jobs/{job['id']}/cancel", t["write"]).json()["state"] == "cancelled"


def test_concurrent_runners_never_lease_the_same_job(api, tmp_path):
    """8 threads (two runner tokens, a runner name each) × 25 leases over 100 queued jobs: each job leased once."""
    t = api.org("crowd", "read", "write")
    assert api.call("PUT", f"/api/v1/orgs/{t['org']}/plan", api.srv.admin_token, json={"plan": "paid"}).ok
    runners = [api.token(t["org"], "runner") for _ in range(2)]
    api.push(t["write"], tmp_path)
    queued = {api.submit(t["write"]).json()["job"]["id"] for _ in range(100)}
    got: list[str] = []
    nothing: list[int] = []
    lock = threading.Barrier(8)

    def runner(i: int) -> None:
        mine = Api(api.srv)  # its own connection
        lock.wait()
        for _ in range(25):
            r = mine.lease(runners[i % 2], runner=f"r{i}")
            assert r.status_code in (200, 204), r.text
            got.append(r.json()["job"]["id"]) if r.status_code == 200 else nothing.append(i)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == len(set(got)) == 100 and set(got) == queued and len(nothing) == 100
    jobs = api.call("GET", "/api/v1/jobs?limit=1000", t["read"]).json()["jobs"]
    assert {j["state"] for j in jobs} == {"running"} and {j["attempts"] for j in jobs} == {1}


def test_labels_a_runner_lacks_keep_the_job_from_it_and_warn_until_one_is_seen(api, tmp_path):
    t = api.org("labels", "write", "runner")
    api.push(t["write"], tmp_path)
    r = api.submit(t["write"], labels=["h100", "gpu"])
    assert r.json()["warnings"] == ["no runner matches labels gpu,h100; the job waits until one does"]
    assert r.json()["job"]["labels"] == ["gpu", "h100"]
    assert api.lease(t["runner"], labels=("gpu",)).status_code == 204
    got = api.leased(t["runner"], labels=("gpu", "h100", "fp8"))
    assert got["job"]["id"] == r.json()["job"]["id"] and got["job"]["labels"] == ["gpu", "h100"]
    assert api.submit(t["write"], labels=["gpu"]).json()["warnings"] == []  # a runner with gpu,h100,fp8 was seen
    assert api.submit(t["write"], labels=["tpu"]).json()["warnings"] != []
    assert api.finish(t["runner"], got["lease"]["id"], "cancelled").json()["state"] == "cancelled"


def test_a_job_without_labels_warns_only_while_no_runner_of_its_org_was_seen(api, tmp_path):
    t = api.org("nolabels", "write", "runner")
    api.push(t["write"], tmp_path)
    first = api.submit(t["write"]).json()
    assert first["warnings"] == [
        f"no runner was seen in the last {RUNNER_SEEN_SECONDS} s; the job waits until one leases it"
    ]
    leased = api.leased(t["runner"], labels=())
    assert leased["job"]["id"] == first["job"]["id"]  # a runner with no labels takes a job with none
    assert api.submit(t["write"]).json()["warnings"] == []
    assert api.finish(t["runner"], leased["lease"]["id"], "cancelled").json()["state"] == "cancelled"


def _upload_run(api, token, lease_id, tmp_path):
    from verifily_action.runs.entries import scan
    from verifily_action.runs.verify import verify_run

    run = sealed_run(tmp_path, "run")
    files = {rel: api.upload(token, lease_id, (run / rel).read_bytes()) for rel in scan(run).files}
    return files, verify_run(run, inputs=False).root_hash


def test_a_job_completes_exactly_once_with_a_verified_run_and_is_metered(api, tmp_path):
    t = api.org("meter", "read", "write", "runner")
    ds = api.push(t["write"], tmp_path / "data")
    job_id = api.submit(t["write"]).json()["job"]["id"]
    got = api.leased(t["runner"], gpus=2)
    lease, job = got["lease"], got["job"]
    assert job["id"] == job_id and job["attempt"] == 1 and job["checkpoint"] is None and job["config"] == config()
    assert [d["ref"] for d in job["datasets"]] == ["ds@v1"] and job["datasets"][0]["manifest"]["name"] == "ds"
    assert lease["ttl_seconds"] == 30 and lease["heartbeat_seconds"] == 5
    data = api.on("GET", lease["id"], f"blobs/{sha256_file(ds / 'train.jsonl')}", t["runner"])
    assert data.status_code == 200 and data.content == (ds / "train.jsonl").read_bytes()
    assert api.job(t["read"], job_id)["state"] == "running"

    files, root = _upload_run(api, t["runner"], lease["id"], tmp_path)
    bad = api.finish(t["runner"], lease["id"], "completed", files=files, root_hash="0" * 64)
    assert bad.status_code == 422 and api.job(t["read"], job_id)["state"] == "running"  # refused, nothing recorded
    done = api.finish(t["runner"], lease["id"], "completed", files=files, root_hash=root, wall_seconds=1.0)
    assert done.status_code == 200, done.text
    shown = api.job(t["read"], job_id)
    assert shown["state"] == "completed" and shown["run_root_hash"] == root and shown["run_id"]
    assert shown["gpu_seconds"] == pytest.approx(2 * shown["wall_seconds"]) and shown["wall_seconds"] > 0
    assert shown["billed_minutes"] == math.ceil(shown["gpu_seconds"] / 60) == 1
    run = api.call("GET", f"/api/v1/runs/{root}", t["read"])
    assert run.status_code == 200 and run.json()["files"] == files  # in the run store of the job's org

    for method, tail, kw in [
        ("POST", "finish", {"json": {"outcome": "completed", "files": files, "root_hash": root}}),
        ("POST", "heartbeat", {"json": {"log": []}}),
        ("PUT", f"uploads/{'1' * 64}?offset=0", {"data": b"x"}),
        ("GET", f"blobs/{sha256_file(ds / 'train.jsonl')}", {}),
    ]:
        r = api.on(method, lease["id"], tail, t["runner"], **kw)
        assert r.status_code == 410 and "the job is completed" in r.json()["error"], (tail, r.text)
    assert api.job(t["read"], job_id)["state"] == "completed"

    failed = api.submit(t["write"]).json()["job"]["id"]
    lease2 = api.leased(t["runner"], gpus=1)["lease"]["id"]
    out = api.finish(t["runner"], lease2, "failed", error="CUDA out of memory", retry=False).json()
    assert out["id"] == failed and out["state"] == "failed" and out["error"] == "CUDA out of memory"
    assert out["billed_minutes"] == 0 and out["gpu_seconds"] > 0  # metered, not billed
    usage = api.call("GET", "/api/v1/usage", t["read"]).json()
    assert usage["org"] == t["org"] and usage["completed_jobs"] == 1 and usage["managed"] is True
    assert usage["gpu_seconds"] == pytest.approx(shown["gpu_seconds"]) and usage["billed_minutes"] == 1
    assert usage["plan"] == "free" and usage["free_jobs_per_month"] == 100
    assert api.call("GET", "/api/v1/usage?month=2020-01", t["read"]).json()["completed_jobs"] == 0
    assert api.call("GET", "/api/v1/usage?month=2020-13", t["read"]).status_code == 422


def test_cancel_a_queued_job_at_once_and_a_running_one_through_its_heartbeat(api, tmp_path):
    t = api.org("cancel", "read", "write", "runner")
    api.push(t["write"], tmp_path)
    queued = api.submit(t["write"]).json()["job"]["id"]
    assert api.call("POST", f"/api/v1/jobs/{queued}/cancel", t["write"]).json()["state"] == "cancelled"
    again = api.call("POST", f"/api/v1/jobs/{queued}/cancel", t["write"])
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    assert api.lease(t["runner"]).status_code == 204  # a cancelled job is never leased

    running = api.submit(t["write"]).json()["job"]["id"]
    lease = api.leased(t["runner"])["lease"]["id"]
    assert api.on("POST", lease, "heartbeat", t["runner"], json={"log": ["step 1"]}).json()["cancel"] is False
    assert api.call("POST", f"/api/v1/jobs/{running}/cancel", t["read"]).status_code == 403
    flagged = api.call("POST", f"/api/v1/jobs/{running}/cancel", t["write"]).json()
    assert flagged["state"] == "running" and flagged["cancel_requested"] is True
    beat = api.on("POST", lease, "heartbeat", t["runner"], json={"log": ["stopping"]})
    assert beat.status_code == 200 and beat.json()["cancel"] is True
    flood = [f"line {i}" for i in range(LOG_LINES_PER_HEARTBEAT + 10)]
    assert api.on("POST", lease, "heartbeat", t["runner"], json={"log": flood}).status_code == 200
    assert api.finish(t["runner"], lease, "cancelled").json()["state"] == "cancelled"
    logs = api.call("GET", f"/api/v1/jobs/{running}/logs", t["read"]).json()
    texts = [x["text"] for x in logs["lines"]]
    assert texts[:3] == ["step 1", "stopping", "[11 log lines dropped]"] and logs["state"] == "cancelled"
    assert texts[3] == "line 11" and len(texts) == LOG_LINES_PER_PAGE  # a page; the rest on the next
    seq, pages = logs["lines"][-1]["seq"], []
    while page := api.call("GET", f"/api/v1/jobs/{running}/logs?after={seq}", t["read"]).json()["lines"]:
        pages.append(page)
        seq = page[-1]["seq"]
    texts += [x["text"] for p in pages for x in p]
    assert len(pages) == 5 and texts[-1] == f"line {len(flood) - 1}" and len(texts) == 2 + LOG_LINES_PER_HEARTBEAT
    after = api.call("GET", f"/api/v1/jobs/{running}/logs?after={logs['lines'][0]['seq']}", t["read"]).json()
    assert after["lines"][0]["text"] == "stopping" and {x["attempt"] for x in logs["lines"]} == {1}
    assert api.call("GET", "/api/v1/usage", t["read"]).json()["completed_jobs"] == 0


def test_the_free_plan_limits_jobs_per_month_in_managed_mode(api, tmp_path):
    t = api.org("free", "write", "admin")
    api.push(t["write"], tmp_path)
    for _ in range(100):
        assert api.submit(t["write"]).status_code == 201
    refused = api.submit(t["write"])
    assert refused.status_code == 402 and "free plan" in refused.json()["error"] and refused.json()["hint"]
    plan = {"plan": "paid"}
    assert api.call("PUT", f"/api/v1/orgs/{t['org']}/plan", t["admin"], json=plan).status_code == 403
    assert api.call("PUT", f"/api/v1/orgs/{t['org']}/plan", api.srv.admin_token, json=plan).status_code == 200
    assert api.submit(t["write"]).status_code == 201


def test_a_runner_token_reaches_only_the_runner_routes_and_only_its_jobs_files(api, tmp_path):
    t = api.org("sec", "read", "write", "admin", "runner")
    ds = api.push(t["write"], tmp_path / "a")
    evals = api.push(t["write"], tmp_path / "b", "evals", "v2", seed=5)  # the job's eval_dataset
    other = api.push(t["write"], tmp_path / "d", "ds", "v2", seed=6)  # the org's, not the job's (ds@v1 and evals@v2)
    rival = api.org("rival", "write", "runner")
    theirs = api.push(rival["write"], tmp_path / "c", "ds", "v1", seed=9)
    sha = sha256_file(ds / "train.jsonl")
    for method, path in [
        ("GET", "/api/v1/datasets"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", f"/api/v1/blobs/{sha}"),
        ("GET", f"/api/v1/runs/{sha}"),
        ("POST", "/api/v1/blobs/missing"),
        ("GET", "/api/v1/usage"),
        ("GET", "/api/v1/whoami"),
    ]:
        r = api.call(method, path, t["runner"], json={})
        assert r.status_code == 403 and "yours is runner" in r.json()["error"], (method, path, r.status_code)
    for scope in ("read", "write", "admin"):
        assert api.lease(t[scope]).status_code == 403
        assert api.on("POST", "0" * 32, "heartbeat", t[scope], json={}).status_code == 403
    assert api.lease(api.srv.admin_token).status_code == 403  # even the site admin's token is not a runner's
    browser = requests.Session()  # nor does a runner token open the dashboard's pages
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get(api.url + "/ui/login", timeout=60).text)[1]
    login = browser.post(api.url + "/ui/login", data={"token": t["runner"], "csrf": csrf}, allow_redirects=False)
    assert login.status_code == 401 and "vf_session" not in login.headers.get("set-cookie", "")

    job_id = api.submit(t["write"], config("ds@v1", eval_dataset="evals@v2")).json()["job"]["id"]
    assert api.lease(rival["runner"]).status_code == 204  # another org's runner never gets it
    lease = api.leased(t["runner"])["lease"]["id"]
    assert api.on("POST", lease, "heartbeat", rival["runner"], json={}).status_code == 410  # not its lease
    assert api.on("GET", lease, f"blobs/{sha}", t["runner"]).status_code == 200
    assert api.on("GET", lease, f"blobs/{sha256_file(evals / 'train.jsonl')}", t["runner"]).status_code == 200
    for not_the_jobs in (sha256_file(other / "train.jsonl"), sha256_file(theirs / "train.jsonl")):
        assert api.on("GET", lease, f"blobs/{not_the_jobs}", t["runner"]).status_code == 404
    bogus = api.on("PUT", lease, "checkpoint", t["runner"], json={"sha256": "2" * 64, "step": 4})
    assert bogus.status_code == 422  # a checkpoint is uploaded first
    ckpt = api.upload(t["runner"], lease, b"a checkpoint tarball")
    assert api.on("PUT", lease, "checkpoint", t["runner"], json={"sha256": ckpt, "step": 4}).status_code == 200
    fetched = api.on("GET", lease, f"blobs/{ckpt}", t["runner"])
    assert fetched.status_code == 200 and fetched.content == b"a checkpoint tarball"
    assert api.job(t["read"], job_id)["checkpoint_step"] == 4
    assert api.call("GET", f"/api/v1/blobs/{ckpt}", t["read"]).status_code == 200  # stored in the job's org
    assert api.call("GET", f"/api/v1/blobs/{ckpt}", rival["write"]).status_code == 404
    api.finish(t["runner"], lease, "cancelled")
