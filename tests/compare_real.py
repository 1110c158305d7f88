"""Two real runs for compare and reproduce tests: all-MiniLM-L6-v2 + LoRA trained for a few steps on a small, fixed
subset of the real ds_demo v1 and v2 (examples/datasets), each evaluated on the same real eval rows.

Built once per test session (the folder under pytest's session temp dir is reused by every module that asks), so
the suites stay fast: tests that change a run work on a copy (`copy_run`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from .builders import write_config, write_dataset
from .paths import DEMO_ROOT

DEMO = DEMO_ROOT / "ds_demo"
PER_SOURCE = {"train": 40, "eval": 40}  # rows per source (human, synthetic) in each split
TRAINING = {"max_steps": 3, "batch_size": 16, "learning_rate": 0.005, "max_length": 32, "seed": 0, "logging_steps": 1}


def _subset(src: Path, per_source: int) -> list[str]:
    """The first `per_source` rows of each source, alternating labels: a deterministic, balanced subset."""
    picked: dict[tuple[str, str], list[str]] = {}
    for line in src.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = (row["tags"]["source"], row["label"])
        bucket = picked.setdefault(key, [])
        if len(bucket) < per_source // 2:
            bucket.append(line)
    return [line for _, lines in sorted(picked.items()) for line in lines]


def write_subset(root: Path) -> Path:
    """ds_demo v1 and v2 reduced to PER_SOURCE rows per source and split, with valid manifests (the committed
    manifest's other keys kept)."""
    for version in ("v1", "v2"):
        manifest = yaml.safe_load((DEMO / version / "manifest.yaml").read_text(encoding="utf-8"))
        splits = {}
        for split, files in manifest.pop("splits").items():
            (entry,) = files["files"]
            assert entry["path"] == f"{split}.jsonl", entry  # the file name write_dataset gives a split
            lines = _subset(DEMO / version / entry["path"], PER_SOURCE[split])
            splits[split] = "".join(x + "\n" for x in lines).encode()  # the source lines as they are
        about = {k: v for k, v in manifest.items() if k not in ("schema_version", "name", "version")}
        write_dataset(root, "ds_demo", version, splits, **about)
    return root


def demo_config(version: str, datasets_root: str, output_dir: str, **extra) -> dict:
    """train.yaml values: all-MiniLM-L6-v2 + LoRA for a few steps on ds_demo@`version`, evaluated per source."""
    return {
        "task": "classification",
        "model": "all-MiniLM-L6-v2",
        "dataset": f"ds_demo@{version}",
        "datasets_root": datasets_root,
        "lora": {"r": 4, "alpha": 8},
        "training": dict(TRAINING),
        "eval": {"slice_by": ["source"], "batch_size": 40},
        "output_dir": output_dir,
        **extra,
    }


def build(base: Path) -> dict[str, Path]:
    """Train and evaluate demo_v1 and demo_v2 under `base` (once: later calls reuse them)."""
    done = base / "done.json"
    if done.is_file():
        return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    datasets = write_subset(base / "datasets")
    out: dict[str, Path] = {"datasets": datasets}
    for version in ("v1", "v2"):
        values = demo_config(version, str(datasets), str(base / "runs"), run_name=f"demo_{version}")
        cfg = write_config(base / f"train_{version}.yaml", **values)
        result = train(TrainOptions(config=cfg), echo=lambda s: None)
        # Evaluate both on v1's eval split (identical rows in v2): the runs pair example by example.
        evaluate_run(result.run_dir, EvalOptions(dataset="ds_demo@v1", datasets_root=str(datasets)))
        out[version] = result.run_dir
        out[f"config_{version}"] = cfg
    done.write_text(json.dumps({k: str(v) for k, v in out.items()}))
    return out


def shared_runs(tmp_path_factory) -> dict[str, Path]:
    """The session's two runs. Set VERIFILY_TEST_RUNS_DIR to keep them across sessions while developing (delete
    the folder after changing training or eval code)."""
    keep = os.environ.get("VERIFILY_TEST_RUNS_DIR")
    base = Path(keep) if keep else tmp_path_factory.getbasetemp() / "compare_real_runs"
    base.mkdir(parents=True, exist_ok=True)
    return build(base)


def copy_run(run: Path, dest: Path) -> Path:
    target = dest / run.name
    shutil.copytree(run, target)
    return target
