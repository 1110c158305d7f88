"""Multi-process training on CPU, through real torchrun processes on gloo (docs/distributed.md).

- `verifily train --nproc 2` completes a run that rank 0 alone wrote and sealed; with LoRA dropout 0 and the same
  global batch, its adapter equals a one-process run's to 1e-5, and so do its per-step losses and gradient norms (a
  sum over the ranks would double the norm), while a run in which each rank trained its half batch alone (= one
  process with half the batch) is far from it: the gradients are averaged over the global batch.
  Why the data order is the same: the Trainer's RandomSampler is seeded (data_seed) identically on every rank and
  accelerate hands rank r the batches r, r+2, ... of that one permutation, so step t of two ranks with batch 4 sees
  exactly the 8 rows step t of one process with batch 8 sees (group_by_length off: length grouping depends on the
  per-device batch size). The loss is averaged over the tokens of all ranks (average_tokens_across_devices).
- A rank killed mid-run (tests/dist_worker.py: os._exit at step 5) ends every rank; the run is marked failed, a
  resume with another world size is refused, and `--resume --nproc 2` completes it with the uninterrupted adapter.
- `verifily eval` under torchrun: each rank scores its share of the rows, rank 0 writes the eval folder alone, and
  it equals a one-process eval of the same run.
- Two "nodes" on this machine (`torchrun --nnodes 2 --node-rank 0|1 --rdzv-endpoint 127.0.0.1:PORT`) rendezvous and
  finish the same run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.adapters import max_diff, weights
from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.paths import REPO
from tests.tiny_models import make_tiny_llama
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

TRAINING = {"max_steps": 6, "learning_rate": 0.01, "group_by_length": False}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}
TIMEOUT = 300  # a hang is a failure, not a stuck suite


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_assets")
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(32), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def config(folder: Path, assets, **training) -> Path:
    return tiny_sft_config(folder, assets, {**TRAINING, **training}, lora=LORA)


def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    r = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return r


def log(run_dir: Path, key: str) -> list[float]:
    return [json.loads(x)[key] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_meta.json").read_text())


@pytest.fixture(scope="module")
def two(assets, tmp_path_factory):
    """`verifily train --nproc 2` with batch 4 per rank (global batch 8)."""
    folder = tmp_path_factory.mktemp("two")
    cfg = config(folder, assets, batch_size=4)
    r = launch("-m", "verifily_action.cli", "train", "--config", str(cfg), "--nproc", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(r.stdout.strip())


def one(folder: Path, assets, **training) -> Path:
    return job.train(TrainOptions(config=config(folder, assets, **training)), echo=lambda s: None).run_dir


def test_two_processes_average_gradients_over_the_global_batch(two, assets, tmp_path):
    m = meta(two)
    assert m["status"] == "completed"
    assert m["distributed"] == {"world_size": 2, "strategy": "ddp", "global_batch": 8}
    assert sorted(p.name for p in two.parent.iterdir()) == ["r"]  # no .partial, no rank's folder left
    from verifily_action.runs.chain import verify_chain

    assert verify_chain(two) == []  # no problem found
    single = one(tmp_path / "one", assets, batch_size=8)
    assert meta(single)["distributed"] == {"world_size": 1, "strategy": "none", "global_batch": 8}
    assert meta(single)["run_key"] != m["run_key"]  # world size is part of the key
    assert log(two, "loss") == pytest.approx(log(single, "loss"), abs=1e-5)
    # the gradient itself, before clipping: a sum over two ranks would have twice the norm (AdamW's update hardly
    # changes with the gradient's scale, so the weights alone could not tell a sum from a mean)
    assert log(two, "grad_norm") == pytest.approx(log(single, "grad_norm"), rel=1e-4)
    assert max_diff(weights(two), weights(single)) < 1e-5
    # again: rank 0 finds the run in the cache and the other rank returns it too; only rank 0 prints
    r = launch("-m", "verifily_action.cli", "train", "--config", str(two.parent.parent / "train.yaml"), "--nproc", "2",
               "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout) | {"root_hash": None} == {
        "ok": True, "run_dir": str(two), "cached": True, "run_key": m["run_key"], "status": "completed",
        "root_hash": None,
    }  # fmt: skip
    # a rank that trained its half batch alone (the same rows on every rank, or no averaging) = one process with
    # half the batch: far from it
    duplicated = one(tmp_path / "half", assets, batch_size=4)
    assert max_diff(weights(two), weights(duplicated)) > 1e-3


def test_a_killed_rank_ends_every_rank_and_the_run_resumes(two, assets, tmp_path, cli):
    cfg = config(tmp_path, assets, batch_size=4, checkpoint_steps=2)
    r = launch(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tests.dist_worker",
        "train", "--config", str(cfg),
        env={"VERIFILY_TEST_DIE_RANK": "1", "VERIFILY_TEST_DIE_STEP": "5"},
    )  # fmt: skip
    assert r.returncode != 0  # torchrun returned: every rank has exited
    assert "rank 1: dying at step 5" in r.stderr
    partial = tmp_path / "runs" / "r.partial"
    m = meta(partial)
    # not `running` or `interrupted`: nothing looks resumable by mistake
    assert m["status"] == "failed", r.stderr[-4000:]
    assert m["error"]
    assert not (tmp_path / "runs" / "r").exists()
    assert any(partial.glob("checkpoints/checkpoint-4/rng_state_1.pth"))  # rank 1's state, in rank 0's checkpoint

    bad = cli("train", "--resume", str(partial))  # one process for a run of two: one clear error, nothing trained
    assert bad.returncode == 2, bad.stderr
    assert "trained by 2 processes, this launch has 1" in bad.stderr and "--nproc 2" in bad.stderr
    assert meta(partial)["status"] == "failed"

    r = launch("-m", "verifily_action.cli", "train", "--resume", str(partial), "--nproc", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    done = Path(r.stdout.strip())
    assert meta(done)["status"] == "completed" and meta(done)["resumed_from"] == "checkpoint-4"
    assert log(done, "step") == list(range(1, 7))
    assert max_diff(weights(done), weights(two)) < 1e-6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_local_nodes_rendezvous_and_finish_a_run(two, assets, tmp_path):
    cfg = config(tmp_path, assets, batch_size=4)
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "-m",
                "verifily_action.cli",
                "train",
                "--config",
                str(cfg),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=TIMEOUT) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    run = tmp_path / "runs" / "r"
    assert outs[0][0].strip() == str(run) and outs[1][0].strip() == ""  # rank 0 prints the run; node 1 nothing
    assert meta(run)["distributed"]["world_size"] == 2
    assert meta(run)["run_key"] == meta(two)["run_key"]  # the same run as two processes on one node
    assert max_diff(weights(run), weights(two)) < 1e-6
    assert yaml.safe_load((run / "config.yaml").read_text())["distributed"] == {"strategy": "ddp"}


def test_an_error_rank_0_finds_ends_every_rank_with_its_exit_code(assets, tmp_path):
    """A folder in the way of the run is found by rank 0 (it alone looks at the output folder): it tells the other
    rank, both stop with the same error, and `--nproc` exits 2 as the one-process CLI does (torchrun itself says 1)."""
    cfg = config(tmp_path, assets, batch_size=4)
    (tmp_path / "runs" / "r").mkdir(parents=True)
    r = launch("-m", "verifily_action.cli", "train", "--config", str(cfg), "--nproc", "2")
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count("already exists and is not a readable run") == 2  # rank 0's error, and rank 1's copy
    assert "Traceback" not in r.stderr
    assert list((tmp_path / "runs").iterdir()) == [tmp_path / "runs" / "r"]  # nothing written


def test_eval_under_two_ranks_equals_one_process(two, tmp_path, cli):
    """Rank r scores rows r, r+2, ...; rank 0 gathers them in the eval set's order and writes (evaluate/sharded.py).
    Batch size 1: no padding, so each row is computed alike in both evals. `-r`, not `--run`: torchrun's own parser
    reads `--run` as an ambiguous abbreviation of its --run-path (docs/distributed.md)."""
    import shutil

    from verifily_action.runs.chain import verify_chain

    solo, sharded = tmp_path / "solo" / "r", tmp_path / "sharded" / "r"
    for d in (solo, sharded):
        shutil.copytree(two, d)
    out = cli("eval", "--run", str(solo), "--batch-size", "1", "--json")
    assert out.returncode == 0, out.stderr
    r = launch("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "verifily_action.cli",
               "eval", "-r", str(sharded), "--batch-size", "1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout)  # one JSON document: only rank 0 printed
    expected = json.loads(out.stdout)
    assert results["n"] == expected["n"] == 8
    for metric, value in expected["overall"].items():
        assert results["overall"][metric]["value"] == pytest.approx(value["value"], abs=1e-5), metric

    def predictions(run):
        (f,) = run.glob("eval/*/predictions.jsonl")
        return [json.loads(x) for x in f.read_text().splitlines()]

    got, want = predictions(sharded), predictions(solo)
    assert [x["id"] for x in got] == [x["id"] for x in want]  # the eval set's order, not rank by rank
    assert [x["prediction"] for x in got] == [x["prediction"] for x in want]
    assert [x["loss"] for x in got] == pytest.approx([x["loss"] for x in want], abs=1e-5)
    assert verify_chain(sharded) == []  # rank 0 sealed the eval into the chain
    assert sorted(p.name for p in sharded.parent.iterdir()) == ["r"]  # no other rank wrote anything beside it
