"""Managed mode under failure, all real processes on 127.0.0.1: a PostgreSQL cluster, a server with short leases
(4 s), three `verifily runner` processes and many tiny sft jobs (each its own seed, so each its own run), while a
chaos loop SIGKILLs a random runner at random times (a bounded number of kills, each runner down a bounded while)
and starts it again. Every job ends exactly once as completed (one lease with outcome `completed` per job, every
other lease `expired`), none is lost, each run is in the run store under its own root hash, the runners logged no
traceback, and a job resumed from a checkpoint another runner uploaded ends with the adapter of a straight run.

The issue asks for 200 jobs: the suite runs VERIFILY_CHAOS_JOBS (default 30, about 70 s on two cores);
`VERIFILY_CHAOS_JOBS=200 pytest tests/test_jobs_chaos.py` runs the issue's count (the closing note has its time).
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from verifily_action.datasets.manifest import load_manifest
from verifily_action.remote.client import Client
from verifily_action.remote.push import push
from verifily_action.server.database import make_engine
from verifily_action.server.job_models import Job, Lease
from verifily_action.server.settings import MAX_ATTEMPTS_LIMIT
from verifily_action.train import job as train_job
from verifily_action.train.plan import TrainOptions

from .adapters import max_diff, served, weights
from .builders import GENERATED, sft_rows, write_config, write_dataset
from .paths import REPO
from .queue_http import Api
from .server_proc import init_server
from .tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration

JOBS = int(os.environ.get("VERIFILY_CHAOS_JOBS", "30"))
RUNNERS = 3
KILLS = min(MAX_ATTEMPTS_LIMIT - 1, max(3, JOBS // 8))  # SIGKILLs in all: bounded, so every job can finish
MAX_ATTEMPTS = KILLS + 1  # even a job hit by every kill still completes
TTL = 4  # seconds a lease outlives its last heartbeat
HANG_GUARD = 60 * 30  # only a hang reaches it
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}
# a resume equals a straight run with these (tests/test_runner_agent.py shows it for one job)
TRAINING = {"max_length": 64, "logging_steps": 1, "learning_rate": 0.01, "group_by_length": False, "batch_size": 4,
            "max_steps": 8, "checkpoint_steps": 2}  # fmt: skip


def config(seed: int, **paths: str) -> dict:
    return {"task": "sft", "model": "", "dataset": "sft@v1", "run_name": f"seed{seed}", "lora": LORA,
            "training": {**TRAINING, "seed": seed}, **paths}  # fmt: skip


class Fleet:
    """The runner processes, one work dir each; `kill(i)` SIGKILLs runner i, `start(i)` starts it again."""

    def __init__(self, url: str, token: str, folder: Path) -> None:
        self.url, self.token, self.folder = url, token, folder
        self.procs: list[subprocess.Popen | None] = [None] * RUNNERS
        self.starts = [0] * RUNNERS

    def start(self, i: int) -> None:
        self.starts[i] += 1
        log = self.folder / f"runner-{i}-{self.starts[i]}.log"
        args = ["runner", "--server", self.url, "--token", self.token, "--labels", "chaos", "--name", f"chaos-{i}"]
        args += ["--work-dir", str(self.folder / "work" / str(i)), "--poll", "0.3"]
        with open(log, "wb") as err:
            self.procs[i] = subprocess.Popen([sys.executable, "-m", "verifily_action.cli", *args], cwd=REPO, stderr=err)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("runner-*.log")))


@pytest.fixture
def world(postgres, tmp_path):
    db = postgres.create_database("chaos")
    server = init_server(db, tmp_path / "store").start("--lease-ttl", str(TTL))
    api = Api(server)
    root = tmp_path / "datasets"
    write_dataset(root, "sft", "v1", {"train": sft_rows(16), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    user = api.token("acme", "write")
    push(load_manifest(root / "sft" / "v1"), Client(server.url, user))
    fleet = Fleet(server.url, api.token("acme", "runner"), tmp_path)
    yield api, user, fleet, {"root": root, "model": make_tiny_llama(tmp_path / "llama")}
    for i in range(RUNNERS):
        fleet.kill(i)
    server.stop()


def test_killed_runners_lose_no_job_and_complete_none_twice(world, tmp_path, record_property):
    api, user, fleet, assets = world
    ids = []
    for seed in range(JOBS):
        text = yaml.safe_dump({**config(seed), "model": str(assets["model"])})
        r = api.submit(user, text, config_name="train.yaml", labels=["chaos"], max_attempts=MAX_ATTEMPTS)
        assert r.status_code == 201, r.text
        ids.append(r.json()["job"]["id"])

    engine = make_engine(api.srv.db)
    t0 = time.monotonic()
    rng = random.Random(21)
    kills = 0
    for i in range(RUNNERS):
        fleet.start(i)
    try:
        while True:
            with Session(engine) as s:
                states = collections.Counter(s.scalars(select(Job.state).where(Job.id.in_(ids))))
            if states["completed"] + states["failed"] + states["cancelled"] == JOBS:
                break
            assert time.monotonic() - t0 < HANG_GUARD, f"hung: {states}\n{fleet.logs()[-4000:]}"
            time.sleep(rng.uniform(1.0, 4.0))
            if kills < KILLS and states["queued"] > RUNNERS:  # while there is work for the one that comes back
                victim = pick(engine, ids, rng, targeted=kills % 2 == 0)
                fleet.kill(victim)
                kills += 1
                time.sleep(rng.uniform(0.0, 2.0))  # down a while
                fleet.start(victim)
        took = time.monotonic() - t0

        with Session(engine) as s:
            jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
            leases = list(s.scalars(select(Lease).where(Lease.job_id.in_(ids))))
    finally:
        engine.dispose()

    by_job = collections.defaultdict(list)
    for lease in leases:
        by_job[lease.job_id].append(lease.outcome)
    expired = sum(o == "expired" for o in (lease.outcome for lease in leases))
    resumed = [j for j in ids if "resuming" in logs(api, user, j)]
    record_property("chaos", {"jobs": JOBS, "kills": kills, "expired_leases": expired, "seconds": round(took, 1)})
    print(f"{JOBS} jobs, {kills} kills, {expired} expired leases, {len(resumed)} resumed: {took:.1f} s")

    assert {j.state for j in jobs.values()} == {"completed"}, {j.id: (j.state, j.error) for j in jobs.values()}
    assert all(sorted(by_job[j], key=str) == ["completed"] + ["expired"] * (len(by_job[j]) - 1) for j in ids), by_job
    assert all(jobs[j].attempts == len(by_job[j]) for j in ids)
    roots = [jobs[j].run_root_hash for j in ids]
    assert len(set(roots)) == JOBS and None not in roots  # each job its own run
    for root in roots:
        r = api.call("GET", f"/api/v1/runs/{root}", user)
        assert r.status_code == 200, r.text
    assert kills == KILLS and expired >= 1, "no kill hit a running job: the chaos did nothing"
    assert "Traceback" not in fleet.logs()

    assert resumed, "no job resumed from a checkpoint: no kill hit a job after its first checkpoint"
    job = jobs[resumed[0]]
    seed = int(yaml.safe_load(job.config_text)["training"]["seed"])
    paths = {"model": str(assets["model"]), "datasets_root": str(assets["root"]), "output_dir": str(tmp_path / "r")}
    local = write_config(tmp_path / "straight.yaml", sort_keys=True, **{**config(seed), **paths})
    straight = train_job.train(TrainOptions(config=local), echo=lambda s: None)
    assert max_diff(served(api.url, user, job.run_root_hash), weights(straight.run_dir)) < 1e-6


def pick(engine, ids: list[str], rng: random.Random, targeted: bool) -> int:
    """A targeted kill hits a runner whose job has a checkpoint uploaded (its successor resumes from there), waiting
    a while for one; the others hit any runner, busy or not."""
    end = time.monotonic() + (10 if targeted else 0)
    while time.monotonic() < end:
        with Session(engine) as s:
            query = select(Job.runner).where(Job.id.in_(ids), Job.state == "running", Job.checkpoint_step.is_not(None))
            names = sorted(n for n in s.scalars(query) if n)
        if names:
            return int(rng.choice(names).removeprefix("chaos-"))
        time.sleep(0.1)
    return rng.randrange(RUNNERS)


def logs(api: Api, token: str, job_id: str) -> str:
    r = api.call("GET", f"/api/v1/jobs/{job_id}/logs", token)
    assert r.status_code == 200, r.text
    return "\n".join(x["text"] for x in r.json()["lines"])
