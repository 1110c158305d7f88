"""Before training: resolve the config, dataset and model, hash them into the run key, and find a cached run
(in output_dir, then in the run cache folder).

Nothing here loads a model, so a dry run and a cache hit answer in seconds. A dry run also loads the train split
(every row checked) and, for sft, its tokenizer, so the rows and steps it reports are the ones training will take
(rows whose prompt fills max_length are left out of training).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import TrainConfig, from_dict, load_config, resolve_path
from ..errors import Problem, VerifilyError
from ..runs.cache import find_cached, run_key
from ..runs.files import read_json
from ..runs.layout import CONFIG, PARTIAL, RUN_META, final_dir_for
from . import ranks
from .label_tokens import check_plan
from .models import ResolvedModel, hash_model, resolve_model
from .pretrain import check_causal_lm


@dataclass
class TrainOptions:
    """What the CLI passes: the config (or a run to resume) and command-line overrides."""

    config: Path | None = None
    dataset: str | None = None
    datasets_root: str | None = None
    output_dir: str | None = None
    cache_dir: str | None = None
    force: bool = False
    resume: str | None = None
    dry_run: bool = False
    world_size: int | None = None  # processes that will train (`--nproc`); None: this launch's (WORLD_SIZE)


@dataclass
class Plan:
    cfg: TrainConfig
    config_dict: dict[str, Any]  # the resolved config, as written to config.yaml
    manifest: Any
    eval_manifest: Any
    model: ResolvedModel
    model_hash: str
    model_entries: dict[str, str]
    dataset_hash: str
    eval_hash: str | None
    run_key: str
    run_name: str
    output_dir: Path
    train_rows: int | None
    steps: int | None
    resume_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    cache_dir: Path | None = None  # the run cache folder (absolute), or None
    trainable_rows: int | None = None  # rows left after encoding (a dry run counts them; None: not counted)
    distributed: dict[str, Any] = field(default_factory=dict)  # world size, strategy, global batch (train/ranks.py)


def _datasets_root(cfg: TrainConfig, opts: TrainOptions) -> str:
    """The root this run reads its datasets from (recorded in its config, absolute)."""
    from ..datasets.registry import search_roots

    return str(search_roots(opts.datasets_root, resolve_path(cfg, cfg.datasets_root))[0].resolve())


def _cache_dir(cfg: TrainConfig, opts: TrainOptions) -> Path | None:
    """--cache-dir, else VERIFILY_RUN_CACHE, else the config's cache_dir (relative to the config file)."""
    if opts.cache_dir:
        return Path(opts.cache_dir).resolve()
    if os.environ.get("VERIFILY_RUN_CACHE"):
        return Path(os.environ["VERIFILY_RUN_CACHE"]).resolve()
    if cfg.cache_dir:
        return resolve_path(cfg, cfg.cache_dir).resolve()
    return None


def _resolve_dataset(ref: str, cfg: TrainConfig, root: str | None) -> Any:
    from ..datasets import resolve

    if "@" not in ref:
        # a manifest path: relative to the config's folder first, like every path in the config
        p = resolve_path(cfg, ref)
        if p.exists():
            ref = str(p)
    return resolve(ref, root, server=cfg.server)


def _rows(manifest: Any, split: str) -> int | None:
    files = manifest.splits.get(split)
    if files is None:
        return None
    if any(f.rows is None for f in files):
        return None
    return sum(int(f.rows) for f in files)


def estimate_steps(cfg: TrainConfig, rows: int | None, world_size: int = 1) -> int | None:
    """Optimizer steps the Trainer will take, as transformers 5 computes them: batches per epoch (the last one
    partial), optimizer steps per epoch rounded up (a partial accumulation still steps), at least one. Under
    `world_size` processes each step takes a batch on every rank."""
    t = cfg.training
    if t.max_steps is not None:
        return int(t.max_steps)
    if rows is None:
        return None
    per_epoch = max(math.ceil(math.ceil(rows / (t.batch_size * world_size)) / t.gradient_accumulation_steps), 1)
    return math.ceil(per_epoch * t.epochs)


def count_trainable(plan: Plan) -> None:
    """The dry run's exact numbers: load the train split (a bad row fails the dry run as it would fail training)
    and count the rows training keeps, encoding them as training does where rows can be left out (sft with a
    prompt: one that fills max_length leaves nothing to learn) or become other rows (pretrain: max_length blocks)."""
    from ..datasets import load_split

    cfg = plan.cfg
    rows = load_split(plan.manifest, cfg.train_split, fields=fields_override(cfg))
    plan.train_rows = plan.trainable_rows = len(rows)
    if cfg.task == "pretrain" or (cfg.task == "sft" and {"prompt", "response"} <= set(rows.column_names)):
        from .data import encode
        from .models import load_tokenizer

        tokenizer, _ = load_tokenizer(plan.model)
        plan.trainable_rows = len(encode(cfg.task, rows, tokenizer, cfg.training.max_length).columns["input_ids"])
    plan.steps = estimate_steps(cfg, plan.trainable_rows, plan.distributed["world_size"])


def _refuse_empty(manifest: Any, split: str) -> None:
    """A train split the manifest says is empty fails before any folder is made or model file hashed."""
    if _rows(manifest, split) == 0:
        from ..datasets.loading import display_path

        raise VerifilyError(
            f"dataset {manifest.ref} split {split!r} has no rows: nothing to train on",
            problems=[Problem(f"split {split!r} has no rows", file=display_path(manifest, manifest.splits[split][0]))],
            hint="add rows to it (then `verifily dataset hash`), or train on another split (train_split)",
        )


def unfinished_hint(partial: Path) -> str:
    """What to say about an unfinished run folder in the way: resume what was stopped, retrain what failed (resuming
    a failed run re-reads the same data and config; without a checkpoint it only starts over, and fails again)."""
    try:
        meta = read_json(partial / RUN_META)
    except (OSError, ValueError, VerifilyError):
        meta = None
    resume = f"`verifily train --resume {partial}`"
    if not isinstance(meta, dict) or meta.get("status") != "failed":
        return f"resume it with {resume}, or --force to start over"
    why = str(meta.get("error") or "no error recorded")
    why = why if len(why) <= 200 else why[:199] + "…"
    more = f"; {resume} continues from its last checkpoint" if any(partial.glob("checkpoints/checkpoint-*")) else ""
    return f"it failed ({why}): fix the cause, then --force retrains it from the start{more}"


def load_for(opts: TrainOptions) -> tuple[TrainConfig, Path | None]:
    """The config to train with: the given file, or the resumed run's config.yaml."""
    if opts.resume:
        d = Path(opts.resume)
        if not d.is_dir() and opts.output_dir:
            d = Path(opts.output_dir) / opts.resume
        if not d.is_dir() and d.with_name(d.name + PARTIAL).is_dir():
            d = d.with_name(d.name + PARTIAL)
        if not (d / RUN_META).is_file():
            raise VerifilyError(
                f"--resume {opts.resume}: no run folder there",
                hint=f"give the folder of an unfinished run (*{PARTIAL})",
            )
        meta = read_json(d / RUN_META)
        # A completed `.partial` was sealed but not renamed (killed in between): train.job finishes it.
        if meta.get("status") == "completed" and not d.name.endswith(PARTIAL):
            raise VerifilyError(f"run {d} is already completed; nothing to resume", hint="use --force to retrain")
        from ..yamlsource import load_yaml

        cfg = from_dict(load_yaml(d / CONFIG, "run config"))
        return replace(cfg, source_path=str(d / CONFIG)), d.resolve()
    if opts.config is None:
        raise VerifilyError("give --config CONFIG (or --resume RUN)")
    return load_config(opts.config), None


def make_plan(opts: TrainOptions) -> Plan:
    from .lora import check_quantization

    cfg, resume_dir = load_for(opts)
    cache_dir = _cache_dir(cfg, opts)  # on resume the run's config.yaml holds it already resolved
    if resume_dir is None:
        overrides: dict[str, Any] = {}
        if opts.dataset:
            overrides["dataset"] = opts.dataset
        if opts.output_dir:
            overrides["output_dir"] = opts.output_dir
        root = _datasets_root(cfg, opts)
        overrides["datasets_root"] = root
        overrides["cache_dir"] = str(cache_dir) if cache_dir else None
        cfg = replace(cfg, **overrides)
    else:
        root = cfg.datasets_root
    # QLoRA without CUDA fails here, before any data or model is loaded.
    check_quantization(cfg.quantization)
    manifest = _resolve_dataset(cfg.dataset, cfg, root)
    eval_manifest = _resolve_dataset(cfg.eval_dataset, cfg, root) if cfg.eval_dataset else manifest
    if cfg.train_split not in manifest.splits:
        raise VerifilyError(
            f"dataset {manifest.ref} has no split {cfg.train_split!r}",
            hint=f"its splits: {', '.join(sorted(manifest.splits))}; set train_split",
        )
    _refuse_empty(manifest, cfg.train_split)
    base = Path(cfg.source_path).resolve().parent if cfg.source_path and resume_dir is None else None
    model = resolve_model(cfg.model, base)
    if cfg.task in ("pretrain", "dpo"):
        check_causal_lm(cfg.task, model)  # an encoder-decoder or a classifier: one clear error before hashing
    check_plan(cfg, model, manifest, fields_override(cfg))  # classifier label_tokens: model kind, verbalizers
    meta = read_json(resume_dir / RUN_META) if resume_dir is not None else None
    dist = ranks.settings(cfg, opts.world_size)
    ranks.check(cfg, dist, meta, resume_dir)  # the strategy runs here; a resume keeps its world size
    if meta is not None:
        model = replace(model, path=Path(meta.get("model_path") or model.path))
    model_hash, model_entries = hash_model(model)
    dataset_hash = manifest.dataset_hash()
    eval_hash = eval_manifest.dataset_hash() if cfg.eval_dataset else None
    config_dict = cfg.to_dict()
    key = run_key(
        dataset_hash=dataset_hash,
        eval_dataset_hash=eval_hash,
        config=config_dict,
        model_hash=model_hash,
        version=__version__,
    )
    key = ranks.run_key(key, dist)
    if resume_dir is not None:
        name = final_dir_for(resume_dir).name
        out = resume_dir.parent
    else:
        name = cfg.run_name or f"{manifest.name}-{manifest.version}-{cfg.task}-{key[:8]}"
        out = Path(cfg.output_dir)
    rows = _rows(manifest, cfg.train_split)
    plan = Plan(
        cfg, config_dict, manifest, eval_manifest, model, model_hash, model_entries, dataset_hash, eval_hash,
        key, name, out, rows, estimate_steps(cfg, rows, dist["world_size"]), resume_dir, cache_dir=cache_dir,
        distributed=dist,
    )  # fmt: skip
    if opts.dry_run:
        count_trainable(plan)
    return plan


def cached_run(plan: Plan) -> Path | None:
    """A completed, intact run with the plan's run key: in output_dir first, then in the run cache folder."""
    for root in (plan.output_dir, plan.cache_dir):
        found = find_cached(root, plan.run_key) if root is not None else None
        if found is not None:
            return found
    return None


def summary(plan: Plan) -> dict[str, Any]:
    """What would train, on what, for how long: the dry run's answer as data (`--dry-run --json`)."""
    cfg = plan.cfg
    t = cfg.training
    cached = cached_run(plan)
    return {
        "task": cfg.task,
        "model": cfg.model,
        "model_path": str(plan.model.path),
        "dataset": plan.manifest.ref,
        "manifest": str(plan.manifest.path),
        "split": cfg.train_split,
        "eval_dataset": plan.eval_manifest.ref,
        "eval_split": cfg.eval_split,
        "rows": plan.train_rows,
        "trainable_rows": plan.trainable_rows,
        "steps": plan.steps,
        "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "distributed": plan.distributed,
        "max_steps": t.max_steps,
        "epochs": t.epochs,
        "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules},
        "quantization": cfg.quantization,
        "run_key": plan.run_key,
        "run_dir": str(plan.output_dir / plan.run_name),
        "cache_dir": None if plan.cache_dir is None else str(plan.cache_dir),
        "cached": None if cached is None else str(cached),
        "cached_here": cached is not None and cached.parent.resolve() == plan.output_dir.resolve(),
    }


def describe(plan: Plan) -> str:
    """The dry run's answer as text."""
    s = summary(plan)
    rows = "?" if s["rows"] is None else str(s["rows"])
    unit = "rows"
    if s["task"] == "pretrain" and s["trainable_rows"] is not None:
        unit = f"documents, packed into {s['trainable_rows']} blocks of max_length"
    elif s["trainable_rows"] is not None and s["trainable_rows"] != s["rows"]:
        rows += f" ({s['rows'] - s['trainable_rows']} left out: the prompt fills max_length)"
    steps = "?" if s["steps"] is None else str(s["steps"])
    lines = [
        f"task: {s['task']}",
        f"model: {s['model']} -> {s['model_path']}",
        f"dataset: {s['dataset']} ({s['manifest']}), split {s['split']}: {rows} {unit}",
        f"eval: {s['eval_dataset']}, split {s['eval_split']}",
        f"steps: {steps} (batch {s['batch_size']} x accumulation {s['gradient_accumulation_steps']}, "
        + (f"max_steps {s['max_steps']})" if s["max_steps"] is not None else f"{s['epochs']:g} epochs)"),
        f"lora: r={s['lora']['r']} alpha={s['lora']['alpha']:g} target_modules={s['lora']['target_modules']}; "
        f"quantization: {s['quantization']}",
        f"run key: {s['run_key']}",
        f"run folder: {s['run_dir']}",
    ]
    if s["cache_dir"] is not None:
        lines.append(f"run cache: {s['cache_dir']}")
    if s["cached"]:
        where = "return it" if s["cached_here"] else "copy it to the run folder"
        lines.append(f"cached: {s['cached']} has this run key (train would {where}; --force retrains)")
    return "\n".join(lines)


def fields_override(cfg: TrainConfig) -> dict[str, str | None]:
    return dict(asdict(cfg.fields))
