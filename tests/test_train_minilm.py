"""The real thing, small: LoRA on the pretrained all-MiniLM-L6-v2 (embedded, offline) learns the demo sentiment data.

Held-out accuracy is computed here with a plain forward pass (base + PeftModel adapter + saved tokenizer), so the
test depends on nothing but the run folder; chance is 0.5 (balanced binary labels).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import write_config
from tests.paths import DEMO_ROOT
from verifily_action.runs import chain
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

DATASETS = DEMO_ROOT


@pytest.mark.skipif(not (DATASETS / "ds_demo" / "v1").is_dir(), reason="examples/datasets/ds_demo/v1 not built")
def test_minilm_learns_demo_sentiment(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from verifily_action.datasets import load_split, resolve

    cfg = {
        "task": "classification",
        "model": "all-MiniLM-L6-v2",
        "dataset": "ds_demo@v1",
        "datasets_root": str(DATASETS),
        "output_dir": str(tmp_path / "runs"),
        # few steps keep this under a minute on 2 cores; a constant, high LR learns within them
        "training": {"max_steps": 12, "batch_size": 16, "learning_rate": 0.003, "scheduler": "constant",
                     "max_length": 48, "logging_steps": 4},
    }  # fmt: skip
    path = write_config(tmp_path / "train.yaml", sort_keys=True, **cfg)
    res = job.train(TrainOptions(config=path), echo=lambda s: None)
    meta = res.meta
    assert meta["status"] == "completed" and chain.verify_chain(res.run_dir) == []
    assert meta["data_report"]["dataset"] == "ds_demo@v1"
    label_map = meta["label_map"]
    assert set(label_map) == {"negative", "positive"}

    tok = AutoTokenizer.from_pretrained(res.run_dir / "tokenizer")
    base = AutoModelForSequenceClassification.from_pretrained(meta["model_path"], num_labels=len(label_map))
    model = PeftModel.from_pretrained(base, Path(res.run_dir) / "adapter").eval()
    rows = load_split(resolve("ds_demo@v1", DATASETS), "eval")
    rows = rows.select(range(0, len(rows), 4))  # 300 of 1,200 held-out rows, every source represented
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(rows), 64):
            batch = rows[i : i + 64]
            enc = tok(batch["text"], truncation=True, max_length=48, padding=True, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).tolist()
            correct += sum(p == label_map[y] for p, y in zip(pred, batch["label"], strict=True))
    accuracy = correct / len(rows)
    assert accuracy > 0.75, f"held-out accuracy {accuracy:.3f} (chance 0.5)"
