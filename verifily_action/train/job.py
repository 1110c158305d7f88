"""One training job: plan -> (cache hit | train in `<run>.partial/`) -> adapter, tokenizer, hash chain -> rename.

The run folder's status moves running -> completed (run_meta.json written last, then the folder renamed to its
final name), or -> failed (with the error) / interrupted (resumable from its last checkpoint). See `runs/` for the
layout, the hash chain and the run cache: a hit in the cache folder is copied into output_dir, and a newly trained
run is copied into the cache folder.

Everything from the cache lookup to the rename runs under the run's lock (`runs.lock`), after `folder.recover` has
finished or undone what a killed process left (a sealed `.partial` is renamed, not trained again). A `.partial`
without run_meta.json was killed before it started and is started again. The run holds a small disk reserve
(`files.reserve_space`) until it is sealed: on a full disk it is freed to record `failed`, and the error says which
file could not be written and how much space it needed (exit 2).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_INTERRUPTED, VerifilyError
from ..runs import cache
from ..runs.chain import drop_links, hash_run_files, seal
from ..runs.files import (
    disk_full_error,
    is_disk_full,
    read_json,
    release_space,
    reserve_space,
    write_json_atomic,
    write_text_atomic,
)
from ..runs.folder import finalize, recover, update_meta
from ..runs.layout import (
    ADAPTER,
    CONFIG,
    ENVIRONMENT,
    LABEL_MAP,
    LOGS,
    RUN_META,
    SNAPSHOTS,
    TOKENIZER,
    TRAIN_LOG,
    is_scratch,
    partial_dir,
)
from ..runs.lock import run_lock
from . import label_tokens, ranks, trackers, trainlog
from .plan import Plan, TrainOptions, cached_run, fields_override, make_plan, unfinished_hint

Echo = Callable[[str], None]
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    run_dir: Path
    meta: dict[str, Any]
    cached: bool = False


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint."""


def run_id(started: datetime, key: str) -> str:
    """A run's id: its UTC start time to the microsecond and its run key's prefix (`20261202T084807.123456-bcb73626`).
    Seconds alone were not unique: a `--force` retrain of a small run can start within the second of the last."""
    return f"{started:%Y%m%dT%H%M%S.%f}-{key[:8]}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train(opts: TrainOptions, echo: Echo = print) -> TrainResult:
    plan = make_plan(opts)
    final = plan.output_dir / plan.run_name
    with run_lock(final, "training"):
        recover(final, echo)
        if plan.resume_dir is not None and not plan.resume_dir.is_dir():
            # recover renamed it: the run had been sealed, only its rename was missing
            if (final / RUN_META).is_file():
                return TrainResult(final, read_json(final / RUN_META))
            raise VerifilyError(f"--resume: {plan.resume_dir} is gone", hint="train again with --config")
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
        raise _exists(final, plan.run_key)
    if partial.exists() and not (partial / RUN_META).is_file():
        shutil.rmtree(partial)  # killed before its run_meta.json was written: nothing in it to keep or resume
    if partial.exists():
        if not opts.force:
            raise VerifilyError(
                f"an unfinished run is in {partial}",
                hint=unfinished_hint(partial),  # resume what was stopped; retrain what failed
            )
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _exists(final: Path, key: str) -> VerifilyError:
    """The error for a final run folder in the way: a damaged run with this run key is not "another run"."""
    try:
        meta = read_json(final / RUN_META)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return VerifilyError(
            f"run folder {final} already exists and is not a readable run (no valid {RUN_META})",
            hint="move it away, or --force to replace it",
        )
    if meta.get("run_key") == key:
        return VerifilyError(
            f"run folder {final} has this run key but fails its hash check (changed or damaged after training)",
            hint=f"`verifily reproduce --verify-only {final}` names what changed; --force retrains it",
        )
    return VerifilyError(
        f"run folder {final} already exists (another run key)",
        hint="set another run_name, or --force to replace it",
    )


def _write_error(e: OSError, run_dir: Path) -> VerifilyError:
    if is_disk_full(e, run_dir):
        return disk_full_error(e, run_dir)
    return VerifilyError(f"cannot write the run folder {run_dir}: {e}", hint="check the output folder's permissions")


def _start(plan: Plan, run_dir: Path) -> dict[str, Any]:
    """Write a new run's config.yaml, environment.json and run_meta.json (status running, written last)."""
    import yaml

    from .. import environment

    cfg = plan.cfg
    write_text_atomic(run_dir / CONFIG, yaml.safe_dump(plan.config_dict, sort_keys=False))
    write_json_atomic(run_dir / ENVIRONMENT, environment.collect())
    meta: dict[str, Any] = {
        "schema_version": 1,
        "id": run_id(datetime.now(timezone.utc), plan.run_key),
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
        "distributed": plan.distributed,
    }
    write_json_atomic(run_dir / RUN_META, meta)
    return meta


def _mark(run_dir: Path, **changes: Any) -> bool:
    """Record how the run ended (failed, interrupted), after freeing the disk reserve; False if even that failed."""
    release_space(run_dir)
    try:
        update_meta(run_dir, ended_at=_now(), **changes)
    except OSError:
        return False
    return True


def execute(plan: Plan, opts: TrainOptions, echo: Echo = print) -> TrainResult:
    """Train into the run's `.partial` folder (new, or the one resumed), seal it and rename it. Call it under the
    run's lock (`train` does)."""
    try:
        run_dir = _prepare_dir(plan, opts)
    except OSError as e:
        raise _write_error(e, plan.output_dir) from e
    cfg = plan.cfg
    try:
        reserve_space(run_dir)  # before the run says `running`: it must be able to say how it ended
        if plan.resume_dir is None:
            meta = _start(plan, run_dir)
        else:
            meta = update_meta(run_dir, status="running", error=None, ended_at=None)
    except OSError as e:
        release_space(run_dir)
        if plan.resume_dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing of it started
        raise _write_error(e, run_dir) from e
    if plan.resume_dir is not None:
        echo(f"resuming {run_dir}")
    echo(f"training {cfg.task} {cfg.model} on {plan.manifest.ref} -> {run_dir}")
    try:
        ranks.announce(run_dir)  # under a multi-process launch the other ranks train with this folder now
        meta = _run(plan, run_dir, meta, echo)
    except (Interrupted, KeyboardInterrupt):
        _mark(run_dir, status="interrupted", error="interrupted (Ctrl-C)")
        raise VerifilyError(
            f"training interrupted; {run_dir} has status interrupted",
            hint=f"continue with `verifily train --resume {run_dir}`",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    except BaseException as e:
        err = disk_full_error(e, run_dir) if is_disk_full(e, run_dir) else None
        if err is None and isinstance(e, OSError):
            err = VerifilyError(f"training failed while writing the run: {e}", hint="check the output folder")
        msg = err.message if err else e.message if isinstance(e, VerifilyError) else f"{type(e).__name__}: {e}"
        # If even this write fails, the folder keeps its .partial name: it never looks complete.
        marked = _mark(run_dir, status="failed", error=msg)
        if err is None:
            raise
        err.hint = (err.hint or "") + (
            f"; {run_dir} is marked failed"
            if marked
            else f"; {run_dir} could not even be marked failed (its status may still say running)"
        )
        raise err from e
    final = finalize(run_dir)
    echo(f"completed: {final} (root hash {meta['root_hash'][:16]})")
    return TrainResult(final, meta)


def _run(plan: Plan, run_dir: Path, meta: dict[str, Any], echo: Echo) -> dict[str, Any]:
    from ..datasets import check_data, load_split
    from . import data as D
    from .models import load_tokenizer
    from .pretrain import refuse_empty_documents

    cfg = plan.cfg
    if cfg.data.streaming:  # an iterable over the verified files, checked in one pass (train/streaming.py)
        from .streaming import prepare

        return train_from(plan, run_dir, echo, **prepare(plan, run_dir, meta, echo))
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
    if cfg.task == "pretrain":  # an empty document is an error (file:line), where other tasks note it
        refuse_empty_documents(checked)
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
    verbalizers = label_tokens.for_config(cfg, tokenizer, label_map)  # classifier label_tokens; else None
    enc = D.encode(cfg.task, rows, tokenizer, cfg.training.max_length, label_map, verbalizers)
    notes += enc.notes
    for note in notes[len(meta.get("notes") or []) :] + checked.notes():
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
    return train_from(plan, run_dir, echo, meta, D.to_dataset(enc), tokenizer, label_map)


def train_from(
    plan: Plan, run_dir: Path, echo: Echo, meta: dict[str, Any], train_ds: Any, tokenizer: Any, label_map: Any,
    late: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train on `train_ds` (from the last checkpoint when resuming), save the outputs and seal the run. `late`: what
    run_meta.json learns only from training (a stream's truncation counts)."""
    from .trainer import build_and_train

    cfg = plan.cfg
    ckpt = trainlog.last_checkpoint(run_dir / CHECKPOINTS) if plan.resume_dir is not None else None
    log_path = run_dir / TRAIN_LOG
    if plan.resume_dir is not None:
        step = int(Path(ckpt).name.rsplit("-", 1)[-1]) if ckpt else 0
        trainlog.truncate(log_path, step)
        meta = update_meta(run_dir, resumed_from=ckpt and Path(ckpt).name)
        echo(f"resuming from {ckpt}" if ckpt else "no checkpoint to resume from; training from the start")
    elif log_path.exists():
        log_path.unlink()
    with trackers.env(**trackers.tracker_env(cfg, run_dir)):
        try:
            outcome = build_and_train(
                cfg, plan.model, tokenizer, train_ds, label_map, run_dir / CHECKPOINTS, log_path, ckpt, echo
            )
        finally:
            trackers.close_trackers(cfg)
    if outcome.interrupted:
        raise Interrupted()
    metrics = {k: v for k, v in outcome.summary.items() if isinstance(v, (int, float))}
    metrics["global_step"] = outcome.global_step
    # The Trainer's train_loss covers the steps since a resume only; the log covers the whole run.
    whole = trainlog.mean_loss(log_path)
    if whole is not None:
        metrics["train_loss"] = whole
    meta = update_meta(run_dir, metrics=metrics, **(late() if late else {}))
    save_outputs(run_dir, outcome.model, tokenizer, meta, plan, metrics)
    return finish(run_dir, plan)


def save_outputs(run_dir: Path, model: Any, tokenizer: Any, meta: dict[str, Any], plan: Plan, metrics: dict) -> None:
    """adapter/ (PEFT safetensors + label_map.json + model card) and tokenizer/; the checkpoints go."""
    from .card import model_card

    adapter = run_dir / ADAPTER
    model.save_pretrained(str(adapter), safe_serialization=True)
    if meta.get("label_map"):
        write_json_atomic(adapter / LABEL_MAP, label_tokens.label_map_file(plan.cfg, meta["label_map"], tokenizer))
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
    release_space(run_dir)
    for f in run_dir.rglob("*"):  # a temporary file of a write cut short by a kill before a resume
        if f.is_file() and is_scratch(f.name):
            f.unlink()
    for d in (run_dir / SNAPSHOTS).glob(".*"):  # a snapshot cut short (train.snapshots writes under a scratch name)
        shutil.rmtree(d, ignore_errors=True)
    files = [CONFIG, ENVIRONMENT, TRAIN_LOG, ADAPTER, SNAPSHOTS, TOKENIZER, LOGS]  # logs/: trackers, closed by now
    entries.update(hash_run_files(run_dir, [p for p in files if (run_dir / p).exists()]))
    return seal(run_dir, entries, status="completed", ended_at=_now(), error=None)
