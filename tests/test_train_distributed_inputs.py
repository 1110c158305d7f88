"""Multi-process training's bad inputs and run key, without starting any process: `--nproc` beyond the machine, a
strategy the schema or this device cannot run, `--nproc` inside a launch; one process keeps its run key whatever
`distributed:` says, while world size and strategy enter a multi-process run's key. (The world-size mismatch on
resume is in tests/test_train_distributed.py, on a real failed two-process run.)"""

from __future__ import annotations

import json
import os

import pytest

from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.tiny_models import make_tiny_llama
from verifily_action.errors import VerifilyError
from verifily_action.train.plan import TrainOptions, make_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_inputs")
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(32), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def config(folder, assets, **extra):
    return tiny_sft_config(folder, assets, {"max_steps": 6, "batch_size": 4}, **extra)


def cores() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize("n", [0, 10_000])
def test_nproc_beyond_the_machine_is_one_error_before_anything_starts(tmp_path, assets, cli, n):
    r = cli("train", "--config", str(config(tmp_path, assets)), "--nproc", str(n))
    assert r.returncode == 2, r.stderr
    assert f"--nproc {n}: this machine has {cores()} CPU cores" in r.stderr
    assert f"between 1 and {cores()}" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()


def test_nproc_inside_a_launch_is_refused(tmp_path, assets, cli, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = cli("train", "--config", str(config(tmp_path, assets)), "--nproc", "1")
    assert r.returncode == 2 and "WORLD_SIZE is set" in r.stderr and "drop --nproc" in r.stderr


def test_an_unknown_strategy_is_a_config_error_with_its_line(tmp_path, assets, cli):
    cfg = config(tmp_path, assets, distributed={"strategy": "zero3"})
    line = 1 + cfg.read_text().splitlines().index("  strategy: zero3")
    r = cli("train", "--config", str(cfg), "--nproc", "1")
    assert r.returncode == 2
    assert f"{cfg}:{line}:3 $.distributed.strategy: 'zero3' is not one of: ddp, fsdp" in r.stderr


def test_fsdp_on_cpu_is_one_clear_error(tmp_path, assets, cli, monkeypatch):
    """accelerate applies its FSDP plugin to GPU (and other accelerator) process groups only; on CPU processes it
    would silently train plain data-parallel, so the strategy is refused before any process starts."""
    cfg = config(tmp_path, assets, distributed={"strategy": "fsdp"})
    r = cli("train", "--config", str(cfg), "--nproc", "2" if cores() >= 2 else "1", "--json")
    if cores() < 2:
        pytest.skip("one core: --nproc 2 is refused first")
    assert r.returncode == 2
    err = json.loads(r.stdout)
    assert "strategy fsdp cannot run on cpu" in err["error"] and "strategy: ddp" in err["hint"]
    assert err["problems"][0]["json_path"] == "$.distributed.strategy"
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")  # the same under torchrun, on every rank
    with pytest.raises(VerifilyError, match="fsdp cannot run on cpu"):
        make_plan(TrainOptions(config=cfg))
    assert make_plan(TrainOptions(config=cfg, world_size=1)).distributed["strategy"] == "none"  # one process: unused


def test_world_size_and_strategy_enter_the_key_of_multi_process_runs_only(tmp_path, assets):
    ddp = config(tmp_path / "ddp", assets)
    fsdp = config(tmp_path / "fsdp", assets, distributed={"strategy": "fsdp"})
    solo = make_plan(TrainOptions(config=ddp, world_size=1))
    assert solo.distributed == {"world_size": 1, "strategy": "none", "global_batch": 4}
    from verifily_action import __version__
    from verifily_action.runs.cache import run_key

    config_without = {k: v for k, v in solo.config_dict.items() if k != "distributed"}
    assert solo.run_key == run_key(  # the key of a config without `distributed:`: cached one-process runs stay hits
        dataset_hash=solo.dataset_hash, eval_dataset_hash=None, config=config_without, model_hash=solo.model_hash,
        version=__version__,
    )  # fmt: skip
    assert make_plan(TrainOptions(config=fsdp, world_size=1)).run_key == solo.run_key
    pair = make_plan(TrainOptions(config=ddp, world_size=2))
    assert pair.distributed == {"world_size": 2, "strategy": "ddp", "global_batch": 8}
    assert len({solo.run_key, pair.run_key, make_plan(TrainOptions(config=ddp, world_size=3)).run_key}) == 3


def test_dry_run_counts_steps_over_the_global_batch(tmp_path, assets, cli):
    cfg = tiny_sft_config(tmp_path, assets, {"epochs": 1, "batch_size": 4})  # 32 rows
    r = cli("train", "--config", str(cfg), "--dry-run", "--json", "--nproc", "2")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["distributed"] == {"world_size": 2, "strategy": "ddp", "global_batch": 8}
    assert plan["steps"] == 4  # 32 rows / (4 per rank x 2 ranks)
    assert not (tmp_path / "runs").exists()


def test_a_streaming_eval_is_refused_as_one_rank_of_several(monkeypatch):
    """A streaming eval (evaluate/streaming.py) is not sharded: as one rank of several it is one clear error."""
    from verifily_action.evaluate import sharded

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    sharded.check(False)  # an in-memory eval is sharded over the ranks
    with pytest.raises(VerifilyError) as e:
        sharded.check(True)
    assert "a streaming eval runs in one process; this is rank 1 of 2" in str(e.value)
    assert "without torchrun" in (e.value.hint or "")
