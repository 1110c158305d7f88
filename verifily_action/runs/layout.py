"""Where each file of a run lives and what it is called: the one place these names are spelled.

<output_dir>/<run_name>/      a completed run (built under <run_name>.partial/, renamed when sealed)
    run_meta.json             status, ids, dataset/model identity, data report, root_hash
    config.yaml               the resolved config (schema defaults filled)
    hashes.json               the hash chain (see `chain`)
    environment.json          library versions, hardware, git commit
    train_log.jsonl           one line per logging step
    adapter/                  PEFT adapter, label_map.json, README.md
    tokenizer/                the tokenizer files eval loads
    eval/<ref>-<split>/       eval_results.json, predictions.jsonl, hard_examples.jsonl (added to the chain)
"""

from __future__ import annotations

from pathlib import Path

RUN_META = "run_meta.json"
HASHES = "hashes.json"
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
TRAIN_LOG = "train_log.jsonl"
ADAPTER = "adapter"
TOKENIZER = "tokenizer"
ADAPTER_WEIGHTS = f"{ADAPTER}/adapter_model.safetensors"
LABEL_MAP = "label_map.json"  # in adapter/: a classification run's label -> id
EVAL = "eval"
EVAL_RESULTS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
HARD_EXAMPLES = "hard_examples.jsonl"
EVAL_FILES = (EVAL_RESULTS, PREDICTIONS, HARD_EXAMPLES)
PARTIAL = ".partial"
STATUSES = ("running", "completed", "failed", "interrupted")
SEALS = (RUN_META, HASHES)  # the two files that hold the chain itself


def eval_name(dataset_ref: str, split: str) -> str:
    """An evaluation's folder name: the evaluated dataset version and split (`ds_demo@v2-eval`)."""
    return f"{dataset_ref}-{split}"


def eval_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / EVAL / name


def eval_results(run_dir: Path, name: str) -> Path:
    return eval_dir(run_dir, name) / EVAL_RESULTS


def eval_names(run_dir: Path) -> list[str]:
    """The run's evaluations (folders holding eval results), sorted by name."""
    return sorted(p.parent.name for p in (Path(run_dir) / EVAL).glob(f"*/{EVAL_RESULTS}"))


def latest_eval_results(run_dir: Path) -> Path | None:
    """The eval results written last (the newest evaluation when the run holds several); None when there is none."""
    found = sorted((Path(run_dir) / EVAL).glob(f"*/{EVAL_RESULTS}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def partial_dir(output_dir: str | Path, run_name: str) -> Path:
    return Path(output_dir) / f"{run_name}{PARTIAL}"


def final_dir_for(partial: Path) -> Path:
    name = partial.name[: -len(PARTIAL)] if partial.name.endswith(PARTIAL) else partial.name
    return partial.with_name(name)


def is_hidden_or_partial(folder: Path) -> bool:
    """Unfinished runs, and copies or replaced runs on their way in or out (`.name.copy-*`, `.name.old-*`)."""
    return folder.name.endswith(PARTIAL) or folder.name.startswith(".")
