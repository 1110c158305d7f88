"""Where each file of a run lives and what it is called: the one place these names are spelled.

<output_dir>/<run_name>/      a completed run (built under <run_name>.partial/, renamed when sealed)
    run_meta.json             status, ids, dataset/model identity, data report, root_hash
    config.yaml               the resolved config (schema defaults filled)
    hashes.json               the hash chain (see `chain`)
    signature.json            the root hash signed with the owner's key, when VERIFILY_SIGNING_KEY is set (`signature`)
    sigstore.json             the root hash signed keyless (Sigstore) with the Action job's OIDC identity (`keyless`)
    environment.json          library versions, hardware, git commit
    train_log.jsonl           one line per logging step
    adapter/                  PEFT adapter, label_map.json, README.md
    snapshots/step-<n>/       the adapter at step n (training.snapshots > 1): weights and config only, for TracIn
    tokenizer/                the tokenizer files eval loads
    eval/<ref>-<split>/       eval_results.json, predictions.jsonl, hard_examples.jsonl (added to the chain)
    attribution/<method>/     rows.jsonl, segments.json, method.json (`verifily attribute`; added to the chain)
    logs/                     experiment trackers' files (`report_to`), closed and hashed before the seal

Beside it, in <output_dir>, never inside a run and never hashed:
    .<run_name>.lock          the run's lock (`lock`): pid and host of the process training, evaluating or copying it
    .<run_name>.<kind>-<pid>  a folder on its way in or out (`folder`): `copy` (a copy being made), `eval` (a run
                              with a new evaluation, swapped in whole), `old` (a replaced run being deleted)

Scratch files inside a run folder are not run files either (`is_scratch`): `.<name>.<random>.tmp` from
`files.write_text_atomic` and the disk-space reserve a training run holds until it is sealed (`RESERVE`).
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
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS = f"{ADAPTER}/{ADAPTER_WEIGHTS_FILE}"
SNAPSHOTS = "snapshots"  # adapter snapshots during training (training.snapshots, train.snapshots): TracIn's checkpoints
SNAPSHOT_PREFIX = "step-"  # snapshots/step-000123/
LABEL_MAP = "label_map.json"  # in adapter/: a classification run's label -> id
EVAL = "eval"
EVAL_RESULTS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
HARD_EXAMPLES = "hard_examples.jsonl"
EVAL_FILES = (EVAL_RESULTS, PREDICTIONS, HARD_EXAMPLES)
ATTRIBUTION = "attribution"
ATTRIBUTION_ROWS = "rows.jsonl"  # each train row's value, overall and per eval slice
ATTRIBUTION_SEGMENTS = "segments.json"  # each tag segment's value with an interval
ATTRIBUTION_METHOD = "method.json"  # the method, its parameters, data and timings
ATTRIBUTION_FILES = (ATTRIBUTION_ROWS, ATTRIBUTION_SEGMENTS, ATTRIBUTION_METHOD)
PARTIAL = ".partial"
STATUSES = ("running", "completed", "failed", "interrupted")
SEALS = (RUN_META, HASHES)  # the two files that hold the chain itself
SIGNATURE = "signature.json"  # the root hash signed (runs.signature): outside the chain, which it signs
SIGSTORE_BUNDLE = "sigstore.json"  # the root hash signed keyless in the Action (runs.keyless): outside the chain too
SIGNATURES = (SIGNATURE, SIGSTORE_BUNDLE)  # files that sign the chain: never entries of it, removed by a re-seal
LOGS = "logs"
LOCK_SUFFIX = ".lock"
TEMP_SUFFIX = ".tmp"
RESERVE = ".disk-reserve.tmp"  # freed to record `failed` when the disk is full (train.job)
SIBLING_KINDS = ("copy", "eval", "old")


def eval_name(dataset_ref: str, split: str) -> str:
    """An evaluation's folder name: the evaluated dataset version and split (`ds_demo@v2-eval`)."""
    return f"{dataset_ref}-{split}"


def attribution_dir(run_dir: Path, method: str) -> Path:
    return Path(run_dir) / ATTRIBUTION / method


def snapshot_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """The adapter snapshots a run holds (snapshots/step-<n>/), by step; scratch folders of a cut-short write left
    out."""
    root = run_dir / SNAPSHOTS
    out = []
    for d in root.glob(f"{SNAPSHOT_PREFIX}*") if root.is_dir() else []:
        step = d.name[len(SNAPSHOT_PREFIX) :]
        if d.is_dir() and step.isdigit() and (d / ADAPTER_WEIGHTS_FILE).is_file():
            out.append((int(step), d))
    return sorted(out)


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


def lock_path(run_dir: str | Path) -> Path:
    """The lock file of a run: beside its folder, one for the `.partial` and the final name alike."""
    final = final_dir_for(Path(run_dir))
    return final.with_name(f".{final.name}{LOCK_SUFFIX}")


def sibling(final: Path, kind: str, pid: int) -> Path:
    """A hidden folder beside the run `final` on its way in or out (`kind` in SIBLING_KINDS)."""
    assert kind in SIBLING_KINDS, kind
    return final.with_name(f".{final.name}.{kind}-{pid}")


def siblings(final: Path) -> list[Path]:
    """The hidden folders a killed process left beside `final` (see `sibling`), oldest first."""
    if not final.parent.is_dir():
        return []
    found = [p for kind in SIBLING_KINDS for p in final.parent.glob(f".{final.name}.{kind}-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def is_scratch(rel: str) -> bool:
    """A file inside a run folder that is not a run file: an atomic write's temporary file or the reserve."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def is_hidden_or_partial(folder: Path) -> bool:
    """Unfinished runs, and copies or replaced runs on their way in or out (`.name.copy-*`, `.name.old-*`)."""
    return folder.name.endswith(PARTIAL) or folder.name.startswith(".")
