"""QLoRA on CUDA (4bit nf4 double-quant and 8bit through bitsandbytes), bf16 auto precision. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest

from tests.builders import GENERATED, sft_rows, write_config, write_dataset
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)
pytest.importorskip("bitsandbytes")


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_qlora_sft_on_cuda(tmp_path, quantization):
    from verifily_action.runs import chain
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    write_dataset(
        tmp_path / "datasets", "sft", "v1", {"train": sft_rows(32), "eval": sft_rows(8, 1)}, task="sft", **GENERATED
    )
    model = make_tiny_llama(tmp_path / "llama")
    cfg = {
        "task": "sft",
        "model": str(model),
        "dataset": "sft@v1",
        "datasets_root": str(tmp_path / "datasets"),
        "output_dir": str(tmp_path / "runs"),
        "quantization": quantization,
        "training": {"max_steps": 4, "batch_size": 8, "max_length": 64, "logging_steps": 1},
    }
    path = write_config(tmp_path / "train.yaml", sort_keys=True, **cfg)
    said: list[str] = []
    res = job.train(TrainOptions(config=path), echo=said.append)
    assert res.meta["status"] == "completed" and chain.verify_chain(res.run_dir) == []
    assert any("device cuda" in s for s in said)
    env = json.loads((res.run_dir / "environment.json").read_text())
    assert env["cuda"]["available"] and env["cuda"]["gpu_count"] >= 1
    log = [json.loads(x) for x in (res.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(x["loss"] == x["loss"] for x in log)  # no NaN
    assert (res.run_dir / "adapter" / "adapter_model.safetensors").is_file()
