"""`training.snapshots` (train/snapshots.py): adapters kept along the way into snapshots/step-<n>/, sealed in the
run's chain, dropped past the checkpoint of a resumed run, part of the run key; and TracIn summing over them
(attribute/tracin.py), each weighted by the learning rates of the steps it stands for."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.builders import GENERATED, cls_rows, sft_rows, tiny_sft_config, write_config, write_dataset
from tests.tiny_models import make_tiny_llama
from verifily_action.runs.layout import attribution_dir, snapshot_dirs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("snap-model") / "llama")


def test_planned_steps_are_evenly_spaced_and_leave_the_final_step_to_the_adapter():
    from verifily_action.train.snapshots import planned_steps

    assert planned_steps(1, 100) == [] and planned_steps(3, 1) == []
    assert planned_steps(3, 6) == [2, 4]
    assert planned_steps(4, 10) == [2, 5, 8]  # round(2.5) is 2: Python rounds half to even
    assert planned_steps(10, 4) == [1, 2, 3]  # more snapshots than steps: one a step, never step 0 or the last


def test_a_resumed_run_drops_the_snapshots_after_its_checkpoint(tmp_path):
    from verifily_action.train.snapshots import SnapshotCallback

    root = tmp_path / "snapshots"
    for name in ("step-000002", "step-000004", ".step-000006.tmp", "stray"):
        (root / name).mkdir(parents=True)
    cb = SnapshotCallback(4, tmp_path)
    cb.on_train_begin(None, SimpleNamespace(max_steps=8, global_step=3), None)
    assert sorted(p.name for p in root.iterdir()) == ["step-000002"]  # 4 is trained again, the scratch one is gone
    assert cb.steps == {2, 4, 6}


def _lr_sums(run, bounds):
    lines = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, bounds[-1] + 1))  # logging every step: each step's lr
    edges = [0, *bounds]
    pairs = zip(edges, edges[1:], strict=False)
    return [sum(x["lr"] for x in lines if a < x["step"] <= b) / bounds[-1] for a, b in pairs]


def test_snapshots_are_sealed_and_tracin_sums_over_them(cli, llama, tmp_path):
    from verifily_action.runs.cache import key_config
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    write_dataset(tmp_path / "datasets", "sft", "v1", {"train": sft_rows(24), "eval": sft_rows(6, 1)}, task="sft",
                  **GENERATED)  # fmt: skip
    training = {"max_steps": 6, "batch_size": 4, "learning_rate": 0.01, "warmup_ratio": 0.3, "snapshots": 3}
    cfg = tiny_sft_config(tmp_path, {"model": llama, "root": tmp_path / "datasets"}, training)
    run = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
    snaps = snapshot_dirs(run)
    assert [step for step, _ in snaps] == [2, 4]
    for _, d in snaps:
        assert sorted(p.name for p in d.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    chain = json.loads((run / "hashes.json").read_text())
    assert "snapshots/step-000002/adapter_model.safetensors" in json.dumps(chain)
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0
    # the run key covers it: the same config with the default keeps no snapshots and is another run
    config = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert key_config(config)["training"]["snapshots"] == 3

    out = cli("attribute", "--run", str(run), "--method", "tracin", "--resamples", "100")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tracin (3 checkpoints"), out.stdout
    method = json.loads((attribution_dir(run, "tracin") / "method.json").read_text())
    got = method["checkpoints"]
    assert [(c["name"], c["step"]) for c in got] == [
        ("snapshots/step-000002", 2), ("snapshots/step-000004", 4), ("adapter", 6)
    ]  # fmt: skip
    want = _lr_sums(run, [2, 4, 6])
    assert [c["learning_rate"] for c in got] == pytest.approx(want)
    assert want[0] < want[1]  # the warmup: the first interval's steps are smaller, so is its weight
    assert "3 checkpoints" in method["checkpoint_note"]
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0

    # a changed snapshot breaks the chain
    weights = snaps[0][1] / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    bad = cli("reproduce", "--verify-only", str(run))
    assert bad.returncode != 0 and "snapshots/step-000002" in bad.stdout + bad.stderr


def test_a_classifier_snapshot_loads_with_its_labels(cli, llama, tmp_path):
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    write_dataset(tmp_path / "datasets", "d", "v1", {"train": cls_rows(24), "eval": cls_rows(8, 1)},
                  task="classification", **GENERATED)  # fmt: skip
    cfg = write_config(
        tmp_path / "train.yaml", task="classification", model=str(llama), dataset="d@v1",
        datasets_root=str(tmp_path / "datasets"), output_dir=str(tmp_path / "runs"),
        training={"max_steps": 4, "batch_size": 8, "max_length": 64, "snapshots": 2},
    )  # fmt: skip
    run = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
    [(step, snap)] = snapshot_dirs(run)
    assert step == 2 and json.loads((snap / "label_map.json").read_text()) == {
        "label2id": json.loads((run / "adapter" / "label_map.json").read_text())["label2id"]
    }
    out = cli("attribute", "--run", str(run), "--method", "tracin", "--resamples", "100")
    assert out.returncode == 0, out.stderr
    method = json.loads((attribution_dir(run, "tracin") / "method.json").read_text())
    assert [c["step"] for c in method["checkpoints"]] == [2, 4]
