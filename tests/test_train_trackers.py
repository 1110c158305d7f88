"""report_to wandb and mlflow, offline: the Trainer's callbacks log into the run folder's logs/ (trackers.tracker_env),
and the tracker's run is closed before the run is sealed and renamed, so its files are in the hash chain (the fresh
run verifies, as `reproduce --verify-only` checks it) and nothing is written under the old `.partial` path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import GENERATED, sft_rows, write_config, write_dataset
from tests.tiny_models import make_tiny_llama
from verifily_action.runs import chain
from verifily_action.runs.verify import verify_run
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

STEPS = 3


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracker_assets")
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(24), "eval": sft_rows(4, 1)}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def train(tmp_path: Path, assets, report_to: str) -> Path:
    cfg = {
        "task": "sft",
        "model": str(assets["model"]),
        "dataset": "sft@v1",
        "datasets_root": str(assets["root"]),
        "output_dir": str(tmp_path / "runs"),
        "run_name": "r",
        "report_to": report_to,
        "training": {"max_steps": STEPS, "batch_size": 8, "max_length": 64, "logging_steps": 1},
    }
    path = write_config(tmp_path / "train.yaml", sort_keys=True, **cfg)
    res = job.train(TrainOptions(config=path), echo=lambda s: None)
    assert res.run_dir == tmp_path / "runs" / "r" and chain.verify_chain(res.run_dir) == []
    report = verify_run(res.run_dir, inputs=False)  # no tracker file outside the chain, none added after the seal
    assert report.ok, [p.message for p in report.problems]
    assert any(k.startswith("logs/") for k in chain.read_entries(res.run_dir))
    return res.run_dir


def test_wandb_offline(tmp_path, assets, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)  # job points it at <run>/logs
    run_dir = train(tmp_path, assets, "wandb")
    found = list((run_dir / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(found) == 1, list(run_dir.rglob("*"))
    assert b"train/loss" in found[0].read_bytes()  # the history (offline runs keep it in this binary log)
    import wandb

    assert wandb.run is None  # finished, so it wrote nothing more under the `.partial` path
    assert not (tmp_path / "runs" / "r.partial").exists()
    # a second run in the same process gets its own wandb run, not the first one's
    run2 = train(tmp_path / "again", assets, "wandb")
    assert len(list((run2 / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert not (tmp_path / "runs" / "r.partial").exists()  # wandb read WANDB_DIR again


def test_mlflow_file_store(tmp_path, assets, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # job points it at <run>/logs/mlruns
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # job opts in for the file store it picks
    run_dir = train(tmp_path, assets, "mlflow")
    loss = list((run_dir / "logs" / "mlruns").glob("*/*/metrics/loss"))
    assert len(loss) == 1, list(run_dir.rglob("*"))
    assert len(loss[0].read_text().splitlines()) == STEPS  # one line per logging step
    assert (loss[0].parent.parent / "params" / "learning_rate").is_file()
    assert mlflow.active_run() is None
    assert not (tmp_path / "runs" / "r.partial").exists()
