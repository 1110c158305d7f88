"""`verifily submit`, `verifily jobs list|show|logs|cancel` and `verifily usage` against a real server on 127.0.0.1
(tests/server_proc.py, SQLite). Each test works in its own organization, so what one queues never reaches another's
runner or job list. The runner side is played here with raw HTTP calls, as a runner makes them (lease, heartbeat,
uploads through the lease's routes, finish); what a bad input leaves behind is read back from the server."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from verifily_action.errors import VerifilyError
from verifily_action.remote.client import Client
from verifily_action.remote.runs import fetch_run, send_run_files
from verifily_action.runs.verify import verify_run

from .builders import GENERATED, cls_rows, sealed_run, sft_rows, tiny_sft_config, write_config, write_dataset
from .pg_server import free_port
from .server_proc import Server, init_server
from .tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration

JOB_ID = re.compile(r"^job_[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("jobs-server") / "store"
    srv = init_server(f"sqlite:///{store.parent / 'verifily.db'}", store).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_dataset(root, "reviews", "v1", {"train": cls_rows(24), "eval": cls_rows(8, seed=1)})
    return root


def _token(srv: Server, org: str, scope: str) -> str:
    r = _http(srv, "POST", "/api/v1/tokens", srv.admin_token, json={"org": org, "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _http(srv: Server, method: str, path: str, token: str, **kw) -> requests.Response:
    return requests.request(method, srv.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw)


def _env(srv: Server, token: str, tmp_path: Path) -> dict[str, str]:
    return {"VERIFILY_SERVER": srv.url, "VERIFILY_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "config")}


def _config(path: Path, root: Path, dataset: str = "reviews@v1", **extra) -> Path:
    return write_config(
        path, task="classification", model="tiny-model", dataset=dataset, datasets_root=str(root), **extra
    )


def _jobs(srv: Server, token: str) -> list[dict]:
    r = _http(srv, "GET", "/api/v1/jobs", token)
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def _lease(srv: Server, runner_token: str, labels: tuple[str, ...] = ()) -> requests.Response:
    body = {"runner": "test-runner", "labels": list(labels), "devices": {"gpus": 1, "kind": "cuda"}}
    return _http(srv, "POST", "/api/v1/runner/lease", runner_token, json=body)


def _lease_next(srv: Server, runner_token: str, submitting: subprocess.Popen) -> dict:
    """Lease the next job, waiting while `submitting` (a `verifily submit` process) is still on its way."""
    deadline = time.monotonic() + 60  # a wait for the other process, not a measurement
    while time.monotonic() < deadline and submitting.poll() is None:
        r = _lease(srv, runner_token)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 204, r.text
        time.sleep(0.2)
    submitting.kill()
    raise AssertionError(f"no job was queued: {submitting.communicate()[1]}")


def _finish(srv: Server, runner_token: str, lease: str, **body) -> dict:
    body = {"files": None, "root_hash": None, "error": None, "retry": False, "wall_seconds": 1.0, **body}
    r = _http(srv, "POST", f"/api/v1/leases/{lease}/finish", runner_token, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_submit_pushes_the_dataset_queues_the_job_and_the_jobs_commands_show_and_cancel_it(
    cli, server, data_root, tmp_path
):
    token = _token(server, "acme", "write")
    env = _env(server, token, tmp_path)
    config = _config(tmp_path / "train.yaml", data_root)
    first = cli("submit", "--config", str(config), env=env)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    assert JOB_ID.match(job_id), first.stdout  # the job id alone on stdout
    assert "reviews@v1: pushed (2 file(s) sent" in first.stderr and f"job {job_id} queued" in first.stderr
    assert _http(server, "GET", "/api/v1/datasets/reviews/v1", token).status_code == 200

    second = cli("submit", "--config", str(config), "--max-attempts", "5", env=env)  # a new submission: a new job
    assert second.returncode == 0, second.stderr
    assert "pushed" not in second.stderr and second.stdout.strip() != job_id
    assert {j["id"] for j in _jobs(server, token)} == {job_id, second.stdout.strip()}

    listed = cli("jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "state", "dataset", "labels", "attempts", "created"]
    assert [r.split()[:5] for r in rows] == [  # newest first
        [second.stdout.strip(), "queued", "reviews@v1", "-", "0/5"],
        [job_id, "queued", "reviews@v1", "-", "0/3"],
    ]
    shown = cli("jobs", "show", job_id, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"id: {job_id}" in lines and "state: queued" in lines and "dataset: reviews@v1" in lines

    cancelled = cli("jobs", "cancel", job_id, env=env)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{job_id}: cancelled", cancelled.stderr
    assert "state: cancelled" in cli("jobs", "show", job_id, env=env).stdout.splitlines()
    again = cli("jobs", "cancel", job_id, env=env)
    assert again.returncode == 2 and "409" in again.stderr, again.stderr
    only = cli("jobs", "list", "--state", "cancelled", env=env)
    assert [r.split()[0] for r in only.stdout.splitlines()[1:]] == [job_id]
    other_org = cli("jobs", "show", job_id, env=_env(server, _token(server, "globex", "read"), tmp_path))
    assert other_org.returncode == 2 and "404" in other_org.stderr


def test_bad_input_is_one_clear_error_and_queues_nothing(cli, server, data_root, tmp_path):
    token = _token(server, "bad", "write")
    env = _env(server, token, tmp_path)

    broken = tmp_path / "broken.yaml"
    broken.write_text(f"task: classification\nmodel: m\ndataset: reviews@v1\ndatasets_root: {data_root}\nepochs: 2\n")
    got = cli("submit", "--config", str(broken), env=env)
    assert got.returncode == 2 and f"{broken}:5" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert _http(server, "GET", "/api/v1/datasets", token).json()["versions"] == []  # nothing sent at all

    missing = cli("submit", "--config", str(_config(tmp_path / "missing.yaml", data_root, "nope@v1")), env=env)
    assert missing.returncode == 2 and "no dataset named 'nope'" in missing.stderr, missing.stderr

    for labels, bad in (("gpu,,h100", "''"), ("gpu,H 100!", "'H 100!'")):
        got = cli("submit", "--config", str(_config(tmp_path / "t.yaml", data_root)), "--labels", labels, env=env)
        assert got.returncode == 2 and f"{bad} is not a label" in got.stderr, got.stderr

    too_many = cli("submit", "--config", str(_config(tmp_path / "t.yaml", data_root)), "--max-attempts", "0", env=env)
    assert too_many.returncode == 2 and "--max-attempts 0 is not between 1 and" in too_many.stderr

    # the server has reviews@v1; here another reviews@v1 with other rows: refused by its hash, before queueing
    ours = tmp_path / "ours"
    write_dataset(ours, "reviews", "v1", {"train": cls_rows(24, seed=7), "eval": cls_rows(8, seed=1)})
    assert cli("dataset", "push", "reviews@v1", "--datasets-root", str(data_root), env=env).returncode == 0
    changed = cli("submit", "--config", str(_config(tmp_path / "changed.yaml", ours)), env=env)
    assert changed.returncode == 2, changed.stderr
    server_hash = _http(server, "GET", "/api/v1/datasets/reviews/v1", token).json()["dataset_hash"]
    assert f"dataset reviews@v1 changed under the same name (server hash {server_hash}, here " in changed.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = cli("submit", "--config", str(_config(tmp_path / "u.yaml", data_root)), "--server", nowhere, env=env)
    assert unreachable.returncode == 2 and f"cannot reach the server {nowhere}" in unreachable.stderr

    unknown = cli("jobs", "show", "job_0123456789abcdef", env=env)
    assert unknown.returncode == 2 and "404" in unknown.stderr and "Traceback" not in unknown.stderr
    malformed = cli("jobs", "logs", "job-1", env=env)
    assert malformed.returncode == 2 and "'job-1' is not a job id" in malformed.stderr
    assert _jobs(server, token) == []


class _Proxy(ThreadingHTTPServer):
    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _LossyProxy)
        self.upstream_port = upstream_port
        self.job_posts: list[dict] = []  # the bodies of POST /api/v1/jobs, in order


class _LossyProxy(BaseHTTPRequestHandler):
    """Forwards every request to the server; the first POST /api/v1/jobs reaches it, but its answer is dropped (the
    connection closes without a response), as when a network fails after the server committed."""

    def forward(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else None
        proxy: _Proxy = self.server  # type: ignore[assignment]
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection", "content-length"}}
        upstream.request(self.command, self.path, body, headers)
        resp = upstream.getresponse()
        data = resp.read()
        upstream.close()
        if self.command == "POST" and self.path == "/api/v1/jobs":
            proxy.job_posts.append(json.loads(body or b"{}"))
            if len(proxy.job_posts) == 1:
                self.close_connection = True
                return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in {"connection", "content-length", "transfer-encoding", "date", "server"}:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = forward

    def log_message(self, *args) -> None:
        pass


def test_a_lost_answer_is_sent_again_with_the_same_key_and_makes_one_job(cli, server, data_root, tmp_path):
    token = _token(server, "lossy", "write")
    proxy = _Proxy(server.port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        config = _config(tmp_path / "train.yaml", data_root)
        got = cli("submit", "--config", str(config), "--server", url, env=_env(server, token, tmp_path))
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert got.returncode == 0, got.stderr
    assert "trying again" in got.stderr and "already submitted (queued)" in got.stderr, got.stderr
    posts = proxy.job_posts
    assert len(posts) == 2 and posts[0] == posts[1]  # the same body, its idempotency key included
    assert [j["id"] for j in _jobs(server, token)] == [got.stdout.strip()]  # one job


def test_labels_no_runner_has_are_queued_with_a_warning(cli, server, data_root, tmp_path):
    token, runner = _token(server, "labels", "write"), _token(server, "labels", "runner")
    env = _env(server, token, tmp_path)
    config = _config(tmp_path / "train.yaml", data_root)
    assert _lease(server, runner, ("gpu",)).status_code == 204  # a runner with only `gpu` has been seen
    got = cli("submit", "--config", str(config), "--labels", "h100,gpu", env=env)
    assert got.returncode == 0 and JOB_ID.match(got.stdout.strip()), got.stderr
    assert "warning: no runner matches labels gpu,h100" in got.stderr
    assert "labels: gpu,h100" in cli("jobs", "show", got.stdout.strip(), env=env).stdout.splitlines()
    matched = cli("submit", "--config", str(config), "--labels", "gpu", env=env)
    assert matched.returncode == 0 and "warning" not in matched.stderr, matched.stderr
    elsewhere = _config(tmp_path / "elsewhere.yaml", tmp_path / "no-datasets-here")  # only the server has it
    taken = cli("submit", "--config", str(elsewhere), "--labels", "gpu", env=env)
    assert taken.returncode == 0 and "reviews@v1: not on this machine; the server has it" in taken.stderr
    broken = tmp_path / "broken" / "reviews" / "v1"
    broken.mkdir(parents=True)
    (broken / "manifest.yaml").write_text("name: reviews\n")  # here, but no dataset: never swapped for the server's
    refused = cli("submit", "--config", str(_config(tmp_path / "b.yaml", tmp_path / "broken")), env=env)
    assert refused.returncode == 2 and "manifest.yaml" in refused.stderr, refused.stderr
    assert len(_jobs(server, token)) == 3


def _submit_process(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "verifily_action.cli", "submit", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_submit_wait_follows_the_log_and_fetches_the_verified_run_or_says_how_the_job_ended(
    cli, server, data_root, tmp_path
):
    token, runner = _token(server, "waiting", "write"), _token(server, "waiting", "runner")
    env = _env(server, token, tmp_path)
    config = _config(tmp_path / "train.yaml", data_root, output_dir="out")
    run = sealed_run(tmp_path / "made", "run")  # what a runner's `train` sealed
    meta = json.loads((run / "run_meta.json").read_text())

    proc = _submit_process(["--config", str(config), "--wait"], env, tmp_path)
    got = _lease_next(server, runner, proc)
    lease = got["lease"]["id"]
    beat = _http(server, "POST", f"/api/v1/leases/{lease}/heartbeat", runner, json={"log": ["step 1 loss 0.7"]})
    assert beat.status_code == 200 and beat.json()["cancel"] is False, beat.text
    root, files, _ = send_run_files(run, Client(server.url, runner), prefix=f"/api/v1/leases/{lease}")
    _finish(server, runner, lease, outcome="completed", files=files, root_hash=root)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"job {got['job']['id']} queued" in err and "step 1 loss 0.7" in err and "completed" in err
    folder = Path(out.strip())  # the run folder alone on stdout, as `train` prints it
    assert folder == Path("out") / meta["id"]
    report = verify_run(tmp_path / folder, inputs=False)
    assert report.ok and report.root_hash == root == meta["root_hash"]
    client = Client(server.url, token)
    assert fetch_run(client, root, tmp_path / "out") == (tmp_path / folder, False)  # that verified run: kept
    (tmp_path / folder / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(VerifilyError, match="exists and is not the run"):
        fetch_run(client, root, tmp_path / "out")  # anything else there: never overwritten

    logs = cli("jobs", "logs", got["job"]["id"], env=env)
    assert logs.returncode == 0 and logs.stdout.splitlines() == ["step 1 loss 0.7"]
    followed = cli("jobs", "logs", got["job"]["id"], "--follow", env=env)  # an ended job: its log, then done
    assert followed.stdout.splitlines() == ["step 1 loss 0.7"] and "completed" in followed.stderr
    shown = cli("jobs", "show", got["job"]["id"], env=env).stdout.splitlines()
    assert "state: completed" in shown and f"run_root_hash: {root}" in shown
    job = _http(server, "GET", f"/api/v1/jobs/{got['job']['id']}", token).json()
    usage = cli("usage", env=env)
    assert usage.returncode == 0, usage.stderr
    assert "completed jobs: 1" in usage.stdout
    assert f"billed {job['billed_minutes']} minute(s)" in usage.stdout and job["billed_minutes"] >= 1

    failing = _submit_process(["--config", str(config), "--wait"], env, tmp_path)
    lease = _lease_next(server, runner, failing)["lease"]["id"]
    _finish(server, runner, lease, outcome="failed", error="CUDA out of memory", retry=False)
    _, err = failing.communicate(timeout=120)
    assert failing.returncode == 1 and "failed after 1/3 attempt(s): CUDA out of memory" in err, err

    cancelled = _submit_process(["--config", str(config), "--wait"], env, tmp_path)
    got = _lease_next(server, runner, cancelled)
    lease = got["lease"]["id"]
    assert cli("jobs", "cancel", got["job"]["id"], env=env).stdout.strip().endswith("running (cancel requested)")
    beat = _http(server, "POST", f"/api/v1/leases/{lease}/heartbeat", runner, json={"log": []})
    assert beat.json()["cancel"] is True
    _finish(server, runner, lease, outcome="cancelled")
    _, err = cancelled.communicate(timeout=120)
    assert cancelled.returncode == 130 and "was cancelled" in err, err
    assert "completed jobs: 1" in cli("usage", env=env).stdout  # failed and cancelled jobs do not count


def test_submit_wait_with_a_real_runner_prints_the_run_folder_and_it_verifies(cli_process, server, tmp_path):
    token, runner_token = _token(server, "fleet", "write"), _token(server, "fleet", "runner")
    env = _env(server, token, tmp_path)
    with open(tmp_path / "runner.log", "w") as log:
        runner = subprocess.Popen(  # started first: it loads torch while the model and data are made here
            [sys.executable, "-m", "verifily_action.cli", "runner", "--server", server.url, "--token", runner_token]
            + ["--max-jobs", "1", "--work-dir", str(tmp_path / "work"), "--poll", "0.2"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            root = tmp_path / "datasets"
            write_dataset(root, "sft", "v1", {"train": sft_rows(16), "eval": sft_rows(4, 1)}, task="sft", **GENERATED)
            assets = {"model": make_tiny_llama(tmp_path / "model"), "root": root}
            config = tiny_sft_config(tmp_path / "job", assets, {"max_steps": 2, "batch_size": 4})
            submit = cli_process("submit", "--config", str(config), "--wait", env=env, cwd=tmp_path, timeout=300)
            runner.wait(timeout=120)  # --max-jobs 1: it exits after the job
        finally:
            runner.kill()
    assert submit.returncode == 0, submit.stderr + (tmp_path / "runner.log").read_text()
    assert runner.returncode == 0, (tmp_path / "runner.log").read_text()
    folder = Path(submit.stdout.strip())  # the run folder alone on stdout
    (job,) = _jobs(server, token)
    assert job["state"] == "completed" and folder == tmp_path / "job" / "runs" / job["run_id"]
    report = verify_run(folder, inputs=False)
    assert report.ok and report.root_hash == job["run_root_hash"], report.problems
    assert "step 2/2" in submit.stderr  # the runner's training log, followed as it came


def test_ctrl_c_while_waiting_stops_the_following_not_the_job(cli, server, data_root, tmp_path):
    token = _token(server, "patient", "write")
    env = _env(server, token, tmp_path)
    waiting = _submit_process(["--config", str(_config(tmp_path / "train.yaml", data_root)), "--wait"], env, tmp_path)
    assert waiting.stderr is not None
    while " queued on " not in (line := waiting.stderr.readline()):
        assert line, waiting.communicate()  # the process ended before it queued the job
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=60)
    (job,) = _jobs(server, token)
    assert waiting.returncode == 130 and f"stopped following {job['id']}; the job goes on" in err, err
    assert job["state"] == "queued"
    followed = cli("jobs", "logs", job["id"], env=env)
    assert followed.returncode == 0 and f"{job['id']}: no log lines yet (queued)" in followed.stderr
