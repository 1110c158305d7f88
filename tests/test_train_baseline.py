"""`training.max_steps: 0` (train/trainer.py): a baseline run of the base model, its LoRA adapter as initialised —
sealed, evaluated and compared like any run, computing exactly what the base model computes."""

from __future__ import annotations

import json

import pytest

from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration


def test_a_zero_step_run_is_the_base_model_sealed_and_comparable(cli, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    llama = make_tiny_llama(tmp_path / "llama")
    write_dataset(tmp_path / "datasets", "sft", "v1", {"train": sft_rows(16), "eval": sft_rows(6, 1)}, task="sft",
                  **GENERATED)  # fmt: skip
    assets = {"model": llama, "root": tmp_path / "datasets"}
    base_cfg = tiny_sft_config(tmp_path / "base", assets, {"max_steps": 0, "batch_size": 4})
    dry = cli("train", "--config", str(base_cfg), "--dry-run")
    assert dry.returncode == 0 and "steps: 0 (batch 4 x accumulation 1, max_steps 0)" in dry.stdout, dry.stdout
    base = job.train(TrainOptions(config=base_cfg), echo=lambda s: None).run_dir
    meta = json.loads((base / "run_meta.json").read_text())
    assert meta["status"] == "completed" and meta["metrics"]["global_step"] == 0
    assert cli("reproduce", "--verify-only", str(base)).returncode == 0

    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    plain = AutoModelForCausalLM.from_pretrained(llama).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama), str(base / "adapter")).eval()
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, adapted(ids).logits)  # B = 0: the adapter adds exactly nothing

    trained_cfg = tiny_sft_config(tmp_path / "trained", assets, {"max_steps": 6, "batch_size": 4,
                                                                 "learning_rate": 0.01})  # fmt: skip
    trained = job.train(TrainOptions(config=trained_cfg), echo=lambda s: None).run_dir
    for run in (base, trained):
        assert cli("eval", "--run", str(run)).returncode == 0
    out = cli("compare", "--runs", f"{base},{trained}", "-f", "json")
    assert out.returncode in (0, 1), out.stderr
    loss = next(r for r in json.loads(out.stdout)["rows"] if r["metric"] == "loss" and not r["slice"])
    assert loss["deltas"][0]["delta"] < 0  # six steps at a high learning rate lower the held-out loss
