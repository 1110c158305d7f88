"""The adapter's model card (adapter/README.md): base model, dataset version and hash, settings, metrics, usage."""

from __future__ import annotations

import json
from typing import Any


def model_card(meta: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any]) -> str:
    ds = meta["dataset"]
    lora = config["lora"]
    t = config["training"]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {meta['model']}",
        "tags: [verifily, lora]",
        "---",
        f"# LoRA adapter: {meta['task']} on {ds['ref']}",
        "",
        f"- Base model: `{meta['model']}`",
        f"- Dataset: `{ds['ref']}` split `{ds['split']}`, dataset hash `{ds['hash']}`",
        f"- Run: `{meta['id']}`, run key `{meta['run_key']}`",
        f"- LoRA: r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, "
        f"target_modules={lora['target_modules']}; quantization: {config['quantization']}",
        f"- Training: {t['epochs']} epochs (max_steps {t['max_steps']}), batch {t['batch_size']}, "
        f"lr {t['learning_rate']}, max_length {t['max_length']}, seed {t['seed']}",
        "",
        "## Metrics (training)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for k, v in sorted(metrics.items()):
        lines.append(f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |")
    if meta.get("label_map"):
        lines += ["", "## Labels", "", "```json", json.dumps(meta["label_map"], indent=2), "```"]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "# base = AutoModelFor...from_pretrained(<base model>)  (classification: num_labels=len(label_map))",
        "model = PeftModel.from_pretrained(base, 'adapter')",
        "```",
        "",
        "Evaluation results, when present, are in the run folder's `eval/` (see `verifily eval`).",
        "",
    ]
    return "\n".join(lines)
