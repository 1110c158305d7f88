"""`verifily eval`'s flow: check the run, load the eval split, infer, score, slice, write, extend the hash chain.

Outputs go to `<run>/eval/<dataset name>@<version>-<split>/` (so evaluating another dataset version never
overwrites the first): eval_results.json (schemas/eval_results.schema.json), predictions.jsonl and
hard_examples.jsonl; their hashes are appended to the run's hashes.json through `add_artifacts`.

The whole evaluation holds the run's lock (`runs.lock`). The new eval folder and the extended chain are written
into a copy of the run beside it, which then takes the run's place in one step (`runs.folder.replace_run`): a kill
at any point leaves the run as it was or with the new evaluation, both sealed. A full disk is a user error (exit 2)
that leaves the run as it was.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from ..runs.chain import add_artifacts, verify_chain
from ..runs.files import disk_full_error, is_disk_full, write_text_atomic
from ..runs.folder import load_run, recover, replace_run
from ..runs.layout import ADAPTER, TOKENIZER
from ..runs.lock import run_lock
from ..train import ranks
from . import bootstrap, hard, metrics, preference, pretrain, sharded, slices, streaming
from .records import build_records as build_records  # where the tests build predictions.jsonl rows
from .records import jsonl, records_for

SCHEMA = "eval_results.schema.json"


@dataclass
class EvalOptions:
    dataset: str | None = None  # name@version or manifest path; default: the run's eval dataset, else its dataset
    split: str | None = None  # default: the run config's eval_split
    slice_by: Sequence[str | slices.SliceExpr] | None = None  # slice expressions; default: eval.slice_by
    cross: Sequence[str | Mapping[str, str] | slices.SliceExpr] | None = None  # --slice; None: eval.slices
    datasets_root: str | None = None
    batch_size: int | None = None
    seed: int = 0
    discover: bool = False  # worst-slice discovery (evaluate/discover.py), recorded as `discovery`
    discover_max_candidates: int | None = None  # default: eval.discover_max_candidates
    streaming: bool | None = None  # chunk by chunk (evaluate/streaming.py); None: as the run trained (data.streaming)


@dataclass
class EvalOutcome:
    results: dict[str, Any]
    eval_dir: Path
    root_hash: str | None


# ---------------------------------------------------------------- checks


def check_run(run_dir: Path) -> Any:
    """Load a completed run whose adapter exists and whose hash chain verifies; else a clear VerifilyError."""
    run = load_run(run_dir, require_completed=True)
    adapter = run.dir / ADAPTER
    if not (adapter / "adapter_config.json").is_file():
        raise VerifilyError(
            f"run {run.dir} has no adapter ({adapter / 'adapter_config.json'} is missing)",
            hint="evaluate a completed run folder written by `verifily train`",
        )
    problems = verify_chain(run.dir)
    if problems:
        raise VerifilyError(
            f"run {run.dir} fails its hash check: {len(problems)} file(s) differ from {layout.HASHES}",
            problems=problems,
            hint="the run folder was changed after training; restore it or train again "
            "(`verifily reproduce --verify-only` shows the same check)",
        )
    return run


def dataset_ref(opts: EvalOptions, meta: Mapping[str, Any]) -> str:
    if opts.dataset:
        return opts.dataset
    for key in ("eval_dataset", "dataset"):
        entry = meta.get(key)
        if isinstance(entry, Mapping) and entry.get("ref"):
            return str(entry["ref"])
    raise VerifilyError("the run names no dataset to evaluate on", hint="pass --dataset name@version")


def content_hash(manifest: Any, split: str) -> str | None:
    """What the evaluated rows are: a hash over the split's files' sha256, in order. Byte-identical eval files in two
    dataset versions hash the same (`compare` then knows them for one eval set); the names do not count."""
    from ..hashing import sha256_json

    shas = [f.sha256 for f in manifest.splits[split]]
    return sha256_json({"split_files": shas}) if shas and all(shas) else None


# ---------------------------------------------------------------- inference per task


def base_model_dir(run: Any) -> str:
    """The base model folder: the one recorded at training time, else the config's name resolved again (a run
    downloaded from another machine records a path that does not exist here)."""
    recorded = run.meta.get("model_path")
    if recorded and Path(recorded).is_dir():
        return str(recorded)
    from ..train.models import resolve_model

    return str(resolve_model(run.config.model).path)


def load_model(task: str, run: Any) -> Any:
    from . import inference

    dirs = (base_model_dir(run), run.dir / ADAPTER, run.dir / TOKENIZER)
    return inference.load_for_eval(task, *dirs, max_length=run.config.training.max_length)


def _infer(
    task: str, run: Any, rows: Any, batch_size: int, max_new_tokens: int, lm: Any = None
) -> tuple[Any, list[str], list[str]]:
    """Run the model (`lm`, else the run's, loaded); returns (inference.Outputs, references, inputs shown in
    hard_examples.jsonl)."""
    from ..train.data import format_prompt  # the exact prompt text training used
    from . import inference

    lm = lm or load_model(task, run)
    cols = set(rows.column_names)
    if task == "pretrain" and "text" in cols:  # documents scored whole (evaluate/pretrain.py); nothing generated
        inputs, refs = [str(x) for x in rows["text"]], [""] * len(rows)
        out = pretrain.score_documents(lm, inputs, batch_size)
    elif task == "classification":
        inputs = [str(x) for x in rows["text"]]
        refs = [str(x) for x in rows["label"]]
        out = inference.classify(lm, inputs, refs, batch_size)
    elif {"prompt", "response"} <= cols:
        inputs = [str(x) for x in rows["prompt"]]
        refs = [str(x) for x in rows["response"]]
        prompts = [format_prompt(task, p, lm.tokenizer) for p in inputs]
        if task == "seq2seq":
            out = inference.generate_seq2seq(lm, prompts, refs, batch_size, max_new_tokens)
        else:
            chat = bool(getattr(lm.tokenizer, "chat_template", None))
            out = inference.generate_causal(lm, prompts, refs, batch_size, max_new_tokens, add_special_tokens=not chat)
    elif task == "sft" and "text" in cols:
        # Plain-text sft trains on the whole text: score its loss; there is no prompt to generate from.
        inputs = refs = [str(x) for x in rows["text"]]
        out = inference.generate_causal(lm, [""] * len(refs), refs, batch_size, max_new_tokens, generate=False)
    else:
        need = "a text field" if task == "pretrain" else "prompt and response fields"
        raise VerifilyError(
            f"{task} evaluation needs {need}; the eval rows have {', '.join(sorted(cols))}",
            hint="map them with the config's `fields:` (fields.text; fields.prompt, fields.response)",
        )
    out.extra["device"] = lm.device
    out.extra["label_map"] = lm.label_map
    out.extra["generated"] = task == "classification" or {"prompt", "response"} <= cols
    return out, refs, inputs


# ---------------------------------------------------------------- scoring


def _block(
    names: Sequence[str],
    scores: dict[str, np.ndarray],
    refs: Sequence[str],
    preds: Sequence[str],
    label_scope: str,
    **boot: Any,
) -> dict[str, dict[str, float]]:
    """Values and intervals; macro-F1 averages over the labels `label_scope` names (metrics.macro_f1_labels)."""
    values = metrics.from_scores(names, scores, refs, preds, label_scope=label_scope)
    ivs = bootstrap.intervals(values, scores, refs, preds, label_scope=label_scope, **boot)
    return {m: ivs[m].to_dict() for m in names}


def score(
    task: str,
    metric_names: Sequence[str],
    records: list[dict[str, Any]],
    *,
    slice_by: Sequence[str | slices.SliceExpr],
    cross: Sequence[str | Mapping[str, str] | slices.SliceExpr],
    min_slice_size: int,
    resamples: int,
    confidence: float,
    seed: int,
    slice_macro_f1: str = "slice_labels",
) -> dict[str, Any]:
    """Everything in eval_results.json that follows from the per-example records (no model needed).
    `slice_macro_f1` (eval.slice_macro_f1): the labels a slice's macro-F1 averages over; the whole set's averages
    over every label seen."""
    refs, preds, scores = metrics.record_scores(task, records)  # pretrain's token weights, dpo's margins
    boot = {"resamples": resamples, "confidence": confidence, "seed": seed}
    out: dict[str, Any] = {"overall": _block(metric_names, scores, refs, preds, "all_labels", **boot)}
    if "macro_f1" in metric_names:
        out["slice_macro_f1"] = slice_macro_f1
    tags = [r["tags"] for r in records]
    out["slices"] = []
    exprs = slices.normalize(slice_by, cross)
    out["slicing"] = [e.text for e in exprs]
    for sl in slices.build_slices(tags, exprs, (), min_slice_size):
        if sl.n == 0:
            block: dict[str, Any] = {}
        else:
            sub = {k: v[sl.indices] for k, v in scores.items()}
            sub_refs, sub_preds = [refs[i] for i in sl.indices], [preds[i] for i in sl.indices]
            block = _block(metric_names, sub, sub_refs, sub_preds, slice_macro_f1, **boot)
        out["slices"].append({"key": sl.key, "n": sl.n, "too_small": sl.too_small, "metrics": block})
    if task == "classification":
        out["per_class"] = metrics.per_class(refs, preds)
        out["confusion_matrix"] = metrics.confusion_matrix(refs, preds)
    else:
        out["per_class"] = out["confusion_matrix"] = None
    keys = slices.keys_of(slices.normalize(slice_by))  # pretrain has no right or wrong, so no failures to break down
    out["failure_breakdown"] = [] if task == "pretrain" else hard.failure_breakdown(records, keys)
    return out


# ---------------------------------------------------------------- writing


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)  # stdout carries the results (--json)


def evaluate_run(run_dir: str | Path, opts: EvalOptions | None = None) -> EvalOutcome:
    """Evaluate a run end to end and write its eval folder; returns the results dict (also written). Holds the
    run's lock throughout: a run another process trains or evaluates is a user error, not a race."""
    d = Path(run_dir)
    with run_lock(d, "evaluating"):
        recover(layout.final_dir_for(d.resolve()), _stderr)
        try:
            outcome = _evaluate(d, opts or EvalOptions())
            if outcome is None:  # only another rank's _evaluate returns None (sharded.py)
                raise RuntimeError("rank 0 of a sharded eval got no results")
            return outcome
        except Exception as e:
            if not isinstance(e, VerifilyError) and is_disk_full(e, d):
                raise disk_full_error(e, d, "the evaluation's results") from e
            raise


def evaluate_rank(run_dir: str | Path, opts: EvalOptions | None = None) -> None:
    """A rank other than 0 of a multi-process eval: score its share of the rows for rank 0, write nothing (no lock:
    rank 0 holds it)."""
    _evaluate(Path(run_dir), opts or EvalOptions())


def _evaluate(run_dir: Path, opts: EvalOptions) -> EvalOutcome | None:
    from ..datasets import load_split
    from ..datasets.registry import resolve_first, search_roots
    from ..schemas import validator

    run = check_run(run_dir)
    cfg, meta = run.config, run.meta
    task = str(meta.get("task") or cfg.task)
    ecfg = cfg.eval
    metric_names = metrics.metrics_for(task, ecfg.metrics)
    slice_by, cross = slices.eval_slicing(ecfg, opts.slice_by, opts.cross, run.dir / layout.CONFIG)

    roots = search_roots(opts.datasets_root, cfg.datasets_root)
    manifest = resolve_first(dataset_ref(opts, meta), roots, server=cfg.server)  # server: pulled, verified
    split = opts.split or cfg.eval_split
    manifest.require_split(split)
    fields = {k: v for k, v in vars(cfg.fields).items() if v is not None}
    rows = load_split(manifest, split, fields=fields or None)
    if len(rows) == 0:
        raise VerifilyError(f"the {split} split of {manifest.ref} has no rows: nothing to evaluate")
    streamed = cfg.data.streaming if opts.streaming is None else opts.streaming
    sharded.check(streamed)
    tags = streaming.tags(rows) if streamed else list(rows["tags"])  # one Arrow->Python conversion
    # Check slice keys before spending time on inference.
    slices.build_slices(tags, slice_by, cross, ecfg.min_slice_size, warn=lambda w: _stderr(f"warning: {w}"))

    batch_size = opts.batch_size or ecfg.batch_size
    infer = preference.infer if task == "dpo" else _infer  # dpo: pairs against the adapter-disabled base
    scratch = worst = None
    if streamed:
        out, refs, records, worst, scratch = streaming.infer(task, run, rows, batch_size, ecfg, _infer, load_model)
    elif ranks.world().size > 1:  # torchrun / accelerate launch: each rank scores its share, rank 0 writes
        got = sharded.infer(task, run, rows, batch_size, ecfg.max_new_tokens, infer)
        if got is None:
            return None
        out, refs, records, inputs = got
    else:
        out, refs, inputs = infer(task, run, rows, batch_size, ecfg.max_new_tokens)
        records = records_for(task, list(rows["id"]), tags, out, refs)
    if task != "classification" and any(r["loss"] is None for r in records):
        # A prompt filling the whole window leaves no reference token to score (training drops such rows too).
        metric_names = [m for m in metric_names if m not in ("loss", "perplexity")]
    if not out.extra["generated"]:
        metric_names = [m for m in metric_names if m in ("loss", "perplexity")] or ["loss", "perplexity"]
    if not metric_names:
        raise VerifilyError("no metric can be computed on this eval set", hint="see the notes above")

    unseen = None
    if task == "classification":
        known = set(out.extra.get("label_map") or {})
        counts = Counter(r for r in refs if r not in known)
        unseen = {"count": sum(counts.values()), "labels": dict(sorted(counts.items()))}

    scored = score(
        task,
        metric_names,
        records,
        slice_by=slice_by,
        cross=cross,
        min_slice_size=ecfg.min_slice_size,
        resamples=ecfg.bootstrap_resamples,
        confidence=ecfg.confidence,
        seed=opts.seed,
        slice_macro_f1=ecfg.slice_macro_f1,
    )
    if opts.discover:
        from . import discover

        cap = opts.discover_max_candidates or ecfg.discover_max_candidates
        found = discover.for_records(
            task,
            records,
            metric_names,
            min_size=ecfg.min_slice_size,
            max_candidates=cap,
            confidence=ecfg.confidence,
            fdr_method=ecfg.fdr,
        )
        if found is None:
            _stderr("note: --discover needs a per-example score or loss; this evaluation has neither")
        else:
            scored["discovery"] = found
    name = layout.eval_name(manifest.ref, split)
    results: dict[str, Any] = {
        "schema_version": 1,
        "run_id": str(meta.get("id", run.dir.name)),
        "task": task,
        "eval_name": name,
        "dataset": {
            "ref": manifest.ref,
            "name": manifest.name,
            "version": manifest.version,
            "split": split,
            "hash": manifest.dataset_hash(),
            "content_hash": content_hash(manifest, split),
        },
        "n": len(records),
        "confidence": ecfg.confidence,
        "bootstrap_resamples": ecfg.bootstrap_resamples,
        "seed": opts.seed,
        "min_slice_size": ecfg.min_slice_size,
        "metrics": list(metric_names),
        "directions": {m: metrics.DIRECTIONS[m] for m in metric_names},
        **scored,
        "unseen_labels": unseen,
        "truncation": out.extra["truncation"],
        "files": {"predictions": layout.PREDICTIONS, "hard_examples": layout.HARD_EXAMPLES},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timing": {
            "seconds": out.seconds,
            "examples_per_second": len(records) / out.seconds if out.seconds > 0 else 0.0,
            "batch_size": batch_size,
            "device": str(out.extra.get("device", "cpu")),
        },
    }
    errors = sorted(validator(SCHEMA).iter_errors(results), key=str)
    if errors:  # a bug in this module, not the user's input
        raise RuntimeError(f"{layout.EVAL_RESULTS} does not match its schema: {errors[0].message}")

    if worst is None:
        worst = hard.hard_examples([dict(r, input=inputs[i]) for i, r in enumerate(records)], ecfg.hard_examples)

    def write(stage: Path) -> str:
        """The eval folder and the extended chain, in the copy of the run that replaces it."""
        out = layout.eval_dir(stage, name)
        out.mkdir(parents=True, exist_ok=True)
        if scratch is not None:
            streaming.place(scratch, out / layout.PREDICTIONS)
        else:
            write_text_atomic(out / layout.PREDICTIONS, jsonl(records))
        write_text_atomic(out / layout.HARD_EXAMPLES, jsonl(worst))
        write_text_atomic(out / layout.EVAL_RESULTS, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        return add_artifacts(stage, [out / n for n in layout.EVAL_FILES])

    try:
        root = replace_run(run.dir, write)
    finally:
        if scratch is not None:
            scratch.close()
    return EvalOutcome(results, layout.eval_dir(run.dir, name), root)
