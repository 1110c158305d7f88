"""FSDP on CUDA: `verifily train --nproc 2` with `distributed: {strategy: fsdp}` shards the frozen base over two
GPUs, gathers the LoRA adapter on rank 0 for saving, and trains what DDP trains (same global batch, dropout 0, fp32).
Skipped without two CUDA GPUs; on CPU processes fsdp is refused (tests/test_train_distributed_inputs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.paths import REPO
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if torch.cuda.device_count() < 2:
    pytest.skip("needs two CUDA GPUs", allow_module_level=True)


def test_fsdp_trains_what_ddp_trains(tmp_path):
    from safetensors.torch import load_file

    write_dataset(tmp_path / "d", "sft", "v1", {"train": sft_rows(32), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    assets = {"root": tmp_path / "d", "model": make_tiny_llama(tmp_path / "llama")}
    runs = {}
    for strategy in ("ddp", "fsdp"):
        cfg = tiny_sft_config(
            tmp_path / strategy, assets,
            {"max_steps": 6, "batch_size": 4, "learning_rate": 0.01, "group_by_length": False, "precision": "fp32"},
            lora={"r": 4, "alpha": 8, "dropout": 0.0}, distributed={"strategy": strategy},
        )  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "verifily_action.cli", "train", "--config", str(cfg), "--nproc", "2"],
            cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        runs[strategy] = run = tmp_path / strategy / "runs" / "r"
        meta = json.loads((run / "run_meta.json").read_text())
        assert meta["distributed"] == {"world_size": 2, "strategy": strategy, "global_batch": 8}
    a = load_file(runs["ddp"] / "adapter" / "adapter_model.safetensors")
    b = load_file(runs["fsdp"] / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
