"""One training job: plan -> (cache hit | train in `<run>.partial/`) -> adapter, tokenizer, hash chain -> rename.

The run folder's status moves running -> completed (run_meta.json written last, then the folder renamed to its
final name), or -> failed (with the error) / interrupted (resumable from its last checkpoint). See `runs/` for the
layout, the hash chain and the run cache: a hit in the cache folder is copied into output_dir, and a newly trained
run is copied into the cache folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_INTERRUPTED, VerifilyError
from ..runs import cache
from ..runs.chain import drop_links, hash_run_files, seal
from ..runs.files import read_json, write_json_atomic, write_text_atomic
from ..runs.folder import finalize, update_meta
from ..runs.layout import ADAPTER, CONFIG, ENVIRONMENT, LABEL_MAP, RUN_META, TOKENIZER, TRAIN_LOG, partial_dir
from .plan import Plan, TrainOptions, cached_run, fields_override, make_plan

Echo = Callable[[str], None]
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    run_dir: Path
    meta: dict[str, Any]
    cached: bool = False


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train(opts: TrainOptions, echo: Echo = print) -> TrainResult:
    plan = make_plan(opts)
    if plan.resume_dir is None and not opts.force:
        cached = cached_run(plan)
        if cached is not None:
            run_dir = cache.bring_in(cached, plan.output_dir, plan.run_name, plan.run_key, echo)
            return TrainResult(run_dir, read_json(run_dir / RUN_META), cached=True)
    result = execute(plan, opts, echo)
    if plan.cache_dir is not None:
        cache.store(plan.cache_dir, result.run_dir, plan.run_key, echo)
    return result


def _ds(manifest: Any, split: str, hash_: str) -> dict[str, Any]:
    return {"ref": manifest.ref, "name": manifest.name, "version": manifest.version, "hash": hash_, "split": split}


def _prepare_dir(plan: Plan, opts: TrainOptions) -> Path:
    if plan.resume_dir is not None:
        return plan.resume_dir
    final = plan.output_dir / plan.run_name
    partial = partial_dir(plan.output_dir, plan.run_name)
    if final.exists() and not opts.force:
        raise VerifilyError(
            f"run folder {final} already exists (another run key)",
            hint="set another run_name, or --force to replace it",
        )
    if partial.exists():
        if not opts.force:
            raise VerifilyError(
                f"an unfinished run is in {partial}",
                hint=f"resume it with `verifily train --resume {partial}`, or --force to start over",
            )
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def execute(plan: Plan, opts: TrainOptions, echo: Echo = print) -> TrainResult:
    import yaml

    from .. import environment

    run_dir = _prepare_dir(plan, opts)
    cfg = plan.cfg
    if plan.resume_dir is None:
        write_text_atomic(run_dir / CONFIG, yaml.safe_dump(plan.config_dict, sort_keys=False))
        write_json_atomic(run_dir / ENVIRONMENT, environment.collect())
        meta: dict[str, Any] = {
            "schema_version": 1,
            "id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{plan.run_key[:8]}",
            "run_key": plan.run_key,
            "status": "running",
            "started_at": _now(),
            "ended_at": None,
            "task": cfg.task,
            "model": cfg.model,
            "model_path": str(plan.model.path),
            "model_revision": plan.model.revision,
            "dataset": _ds(plan.manifest, cfg.train_split, plan.dataset_hash),
            "eval_dataset": _ds(plan.eval_manifest, cfg.eval_split, plan.eval_hash) if plan.eval_hash else None,
            "verifily_version": __version__,
            "root_hash": None,
            "error": None,
            "data_report": None,
            "unverified_data": False,
            "label_map": None,
            "truncation": None,
            "unseen_eval_labels": None,
            "metrics": None,
            "notes": [],
            "resumed_from": None,
        }
        write_json_atomic(run_dir / RUN_META, meta)
    else:
        meta = update_meta(run_dir, status="running", error=None, ended_at=None)
        echo(f"resuming {run_dir}")
    echo(f"training {cfg.task} {cfg.model} on {plan.manifest.ref} -> {run_dir}")
    try:
        meta = _run(plan, run_dir, meta, echo)
    except (Interrupted, KeyboardInterrupt):
        update_meta(run_dir, status="interrupted", ended_at=_now(), error="interrupted (Ctrl-C)")
        raise VerifilyError(
            f"training interrupted; {run_dir} has status interrupted",
            hint=f"continue with `verifily train --resume {run_dir}`",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    except BaseException as e:
        msg = e.message if isinstance(e, VerifilyError) else f"{type(e).__name__}: {e}"
        # If even this write fails (disk full), the folder keeps its .partial name: it never looks complete.
        with contextlib.suppress(OSError):
            update_meta(run_dir, status="failed", ended_at=_now(), error=msg)
        if isinstance(e, OSError) and not isinstance(e, VerifilyError):
            raise VerifilyError(
                f"training failed while writing the run: {e}", hint=f"{run_dir} is marked failed; free space and retry"
            ) from e
        raise
    final = finalize(run_dir)
    echo(f"completed: {final} (root hash {meta['root_hash'][:16]})")
    return TrainResult(final, meta)


@contextmanager
def _env(**values: str):
    """Set environment variables for the duration (only those the user has not set)."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if old[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, prev in old.items():
            if prev is None:
                os.environ.pop(k, None)


def _tracker_env(cfg: Any, run_dir: Path) -> dict[str, str]:
    logs = run_dir / "logs"
    if cfg.report_to == "tensorboard":
        return {"TENSORBOARD_LOGGING_DIR": str(logs / "tensorboard")}
    if cfg.report_to == "wandb":
        return {"WANDB_DIR": str(logs), "WANDB_PROJECT": "verifily"}
    if cfg.report_to == "mlflow":
        # MLflow 3 refuses a file store (./mlruns) unless MLFLOW_ALLOW_FILE_STORE opts in; a database backend
        # would need SQLAlchemy, which mlflow-skinny leaves out. The opt-in does nothing for a tracking server.
        return {
            "MLFLOW_TRACKING_URI": (logs / "mlruns").resolve().as_uri(),
            "MLFLOW_EXPERIMENT_NAME": "verifily",
            "MLFLOW_ALLOW_FILE_STORE": "true",
        }
    return {}


def _close_trackers(cfg: Any) -> None:
    """The Trainer leaves a wandb run open after training (and an MLflow run after an error). Close them before
    the folder is renamed: an open run would go on writing under the old `.partial` path. wandb also keeps the
    WANDB_DIR it first read for the whole process, so the next run in this process would log into this run's
    `.partial` path (creating it again): `teardown` makes it read the variable again."""
    import sys

    wandb = sys.modules.get("wandb") if cfg.report_to == "wandb" else None
    if wandb is not None:
        if getattr(wandb, "run", None) is not None:
            wandb.finish()
        wandb.teardown()
    mlflow = sys.modules.get("mlflow") if cfg.report_to == "mlflow" else None
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run()


def _data_notes(report: Any) -> list[str]:
    """The data checks' non-zero counts, one line each (run_meta.json's data_report lists where)."""

    def rows(n: int) -> str:
        return f"{n} row{'s' * (n != 1)}"

    out = [f"data check: {s}: {rows(n)} with empty text" for s, n in report.empty_text.items() if n]
    out += [
        f"data check: {s}: {rows(n)} repeating an earlier row (duplicates)" for s, n in report.duplicates.items() if n
    ]
    for pair, n in report.leakage.items():
        if n:
            a, b = pair.split("/")
            out.append(f"data check: {b}: {rows(n)} with the same text as a row of {a} (leakage)")
    if out and any(":" in s for s in report.rows):  # a split of another version (eval_dataset) took part
        out[-1] += f"; the run's {RUN_META} (data_report) lists where"
    elif out:
        out[-1] += f"; `verifily dataset verify {report.ref}` shows where"
    return out


def _last_checkpoint(run_dir: Path) -> str | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so a process killed while
    saving leaves a folder without a readable one, which is skipped."""
    import json

    d = run_dir / CHECKPOINTS
    if not d.is_dir():
        return None
    found = [(int(p.name.rsplit("-", 1)[1]), p) for p in d.glob("checkpoint-*") if p.name.rsplit("-", 1)[1].isdigit()]
    for _, p in sorted(found, reverse=True):
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(p)
    return None


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines after the checkpoint (they are logged again)."""
    import json

    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= step]
    write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def _run(plan: Plan, run_dir: Path, meta: dict[str, Any], echo: Echo) -> dict[str, Any]:
    from ..datasets import check_data, load_split
    from . import data as D
    from .models import load_tokenizer
    from .trainer import build_and_train

    cfg = plan.cfg
    notes: list[str] = list(meta.get("notes") or [])
    fields = fields_override(cfg)
    rows = load_split(plan.manifest, cfg.train_split, fields=fields)
    eval_rows = None
    if cfg.eval_split in plan.eval_manifest.splits:
        eval_rows = load_split(plan.eval_manifest, cfg.eval_split, fields=fields)
    splits = [s for s in (cfg.train_split, cfg.eval_split) if s in plan.manifest.splits]
    others: list[tuple[Any, str]] = []
    if cfg.eval_dataset and eval_rows is not None:  # the eval rows come from another version: check against those
        splits, others = [cfg.train_split], [(plan.eval_manifest, cfg.eval_split)]
    checked = check_data(plan.manifest, splits=splits, others=others)
    report = checked.to_dict()
    used = [plan.manifest.splits[cfg.train_split]]
    if eval_rows is not None:
        used.append(plan.eval_manifest.splits[cfg.eval_split])
    unverified = any(f.sha256 is None for files in used for f in files)
    tokenizer, tok_notes = load_tokenizer(plan.model)
    notes += tok_notes
    label_map = None
    unseen = None
    if cfg.task == "classification":
        label_map = D.build_label_map(rows["label"])
        if eval_rows is not None and "label" in eval_rows.column_names:
            unseen = D.unseen_labels(label_map, eval_rows["label"])
            if unseen:
                n = sum(unseen.values())
                notes.append(
                    f"{n} eval rows have labels the train split never has: "
                    + ", ".join(f"{lab!r} ({c})" for lab, c in unseen.items())
                )
    enc = D.encode(cfg.task, rows, tokenizer, cfg.training.max_length, label_map)
    notes += enc.notes
    for note in notes[len(meta.get("notes") or []) :] + _data_notes(checked):
        echo(f"note: {note}")
    if not enc.columns["input_ids"]:
        raise VerifilyError(
            f"no trainable rows in {plan.manifest.ref} split {cfg.train_split}",
            hint="; ".join(notes) + f"; raise training.max_length (now {cfg.training.max_length})",
        )
    meta = update_meta(
        run_dir,
        data_report=report,
        unverified_data=unverified,
        label_map=label_map,
        truncation={cfg.train_split: enc.stats.to_dict()},
        unseen_eval_labels=unseen,
        notes=notes,
    )
    ckpt = _last_checkpoint(run_dir) if plan.resume_dir is not None else None
    log_path = run_dir / TRAIN_LOG
    if plan.resume_dir is not None:
        step = int(Path(ckpt).name.rsplit("-", 1)[-1]) if ckpt else 0
        _truncate_log(log_path, step)
        meta = update_meta(run_dir, resumed_from=ckpt and Path(ckpt).name)
        echo(f"resuming from {ckpt}" if ckpt else "no checkpoint to resume from; training from the start")
    elif log_path.exists():
        log_path.unlink()
    with _env(**_tracker_env(cfg, run_dir)):
        try:
            outcome = build_and_train(
                cfg, plan.model, tokenizer, D.to_dataset(enc), label_map, run_dir / CHECKPOINTS, log_path, ckpt, echo
            )
        finally:
            _close_trackers(cfg)
    if outcome.interrupted:
        raise Interrupted()
    metrics = {k: v for k, v in outcome.summary.items() if isinstance(v, (int, float))}
    metrics["global_step"] = outcome.global_step
    meta = update_meta(run_dir, metrics=metrics)
    save_outputs(run_dir, outcome.model, tokenizer, meta, plan, metrics)
    return finish(run_dir, plan)


def save_outputs(run_dir: Path, model: Any, tokenizer: Any, meta: dict[str, Any], plan: Plan, metrics: dict) -> None:
    """adapter/ (PEFT safetensors + label_map.json + model card) and tokenizer/; the checkpoints go."""
    from .card import model_card

    adapter = run_dir / ADAPTER
    model.save_pretrained(str(adapter), safe_serialization=True)
    if meta.get("label_map"):
        write_json_atomic(adapter / LABEL_MAP, {"label2id": meta["label_map"]})
    write_text_atomic(adapter / "README.md", model_card(meta, plan.config_dict, metrics))
    tokenizer.save_pretrained(str(run_dir / TOKENIZER))
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)


def finish(run_dir: Path, plan: Plan) -> dict[str, Any]:
    """Hash chain, then run_meta.json with status completed (last write before the rename)."""
    from ..hashing import sha256_file, sha256_json
    from ..yamlsource import load_yaml

    entries: dict[str, str] = {}
    for m, split in ((plan.manifest, plan.cfg.train_split), (plan.eval_manifest, plan.cfg.eval_split)):
        entries[f"dataset:{m.ref}"] = m.dataset_hash()
        entries[f"dataset:{m.ref}/manifest"] = sha256_file(m.path)
        for f in m.splits.get(split, []):
            if f.sha256:
                entries[f"dataset:{m.ref}/{f.path}"] = f.sha256
    entries["config:canonical"] = sha256_json(load_yaml(run_dir / CONFIG, "run config"))
    entries.update(plan.model_entries)
    drop_links(run_dir)  # trackers' pointers (wandb's latest-run, debug logs): a run holds only regular files
    files = [CONFIG, ENVIRONMENT, TRAIN_LOG, ADAPTER, TOKENIZER]
    entries.update(hash_run_files(run_dir, [p for p in files if (run_dir / p).exists()]))
    return seal(run_dir, entries, status="completed", ended_at=_now(), error=None)
