"""`verifily attribute`'s flow: check the run, load its train and eval rows, value every train row for every eval
slice, aggregate by tag segment with bootstrap intervals, write `attribution/<method>/` into the run and its chain.

Outputs (`runs.layout.attribution_dir`): rows.jsonl (one line per train row: id, tags, label, value overall and per
eval slice), segments.json (per tag key and value: the segment's summed value with an interval, overall and per eval
slice), method.json (method, parameters, embedding, data, seeds, timings). As `eval` does, the new folder and the
extended chain are written into a copy of the run that then takes its place in one step (`runs.folder.replace_run`),
under the run's lock: every crash leaves the run as it was or with the new attribution, never a half-written one;
a bad input fails before anything is written.

Methods: `knn-shapley` (classification; `knn_shapley`), `loo` and `segment-shapley` (`segments`, `retrain`), `tracin`
(every task; `tracin`, `gradients`, written through `common`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from ..runs.files import disk_full_error, is_disk_full
from ..runs.folder import recover
from ..runs.lock import run_lock
from . import common, defaults, knn_shapley

METHODS = ("knn-shapley", "loo", "segment-shapley", "tracin")
BUILT = ("knn-shapley", "loo", "segment-shapley", "tracin")
RETRAINING = ("loo", "segment-shapley")


@dataclass
class AttributeOptions:
    method: str = "knn-shapley"
    by: list[str] = field(default_factory=list)  # tag keys of the train rows; default: every key they carry
    slice_by: list[str] | None = None  # eval slice expressions; default: the run config's eval.slice_by
    k: int = knn_shapley.DEFAULT_K
    nearest: int | None = None  # knn-shapley: 0 exact; M truncated; None: exact up to knn_shapley.EXACT_UP_TO rows
    base_embeddings: bool = False  # embed with the base model (no adapter)
    datasets_root: str | None = None
    batch_size: int | None = None
    resamples: int = defaults.RESAMPLES
    confidence: float | None = None  # default: eval.confidence
    seed: int = 0  # of the bootstrap resamples (and of tracin's projection)
    projection_dim: int = defaults.PROJECTION_DIM  # tracin: the length of the projected gradients
    projection: str = defaults.PROJECTION  # tracin: sketch (sparse, fast) or gaussian (dense); gradients.Projector
    jobs: int = defaults.JOBS  # retrains at once (loo, segment-shapley)
    budget: int = defaults.BUDGET  # the most retrains a segment method may start
    seeds: int = defaults.SEEDS  # loo, segment-shapley: training seeds per coalition (the run's own seed first)


@dataclass
class Attribution:
    folder: Path
    method: dict[str, Any]
    segments: dict[str, Any]
    rows: list[dict[str, Any]]
    root_hash: str | None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise VerifilyError(f"unknown attribution method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    if method not in BUILT:
        raise VerifilyError(
            f"attribution method {method!r} is not built yet",
            hint=f"this version computes: {', '.join(BUILT)}",
        )


def attribute_run(run_dir: str | Path, opts: AttributeOptions) -> Attribution:
    check_method(opts.method)
    if opts.k < 1:
        raise VerifilyError(f"--k must be at least 1, not {opts.k}")
    d = Path(run_dir)
    with run_lock(d, "attributing"):
        recover(layout.final_dir_for(d.resolve()), _stderr)
        try:
            if opts.method in RETRAINING:
                from .segments import attribute_by_retraining

                return attribute_by_retraining(d, opts)
            return _attribute(d, opts)
        except Exception as e:
            if not isinstance(e, VerifilyError) and is_disk_full(e, d):
                raise disk_full_error(e, d, "the attribution") from e
            raise


def _attribute(run_dir: Path, opts: AttributeOptions) -> Attribution:
    if opts.method == "tracin":
        from . import tracin

        return tracin.attribute(run_dir, opts)
    from ..evaluate.runner import check_run
    from ..runs.folder import load_run
    from . import embeddings

    first = load_run(run_dir)
    task = str(first.meta.get("task") or first.config.task)
    if task != "classification":
        raise VerifilyError(
            f"KNN-Shapley values classification runs; this run's task is {task}",
            hint="for generation tasks use --method tracin",
        )
    run = check_run(run_dir)
    ecfg = run.config.eval
    confidence = opts.confidence if opts.confidence is not None else ecfg.confidence
    train_manifest, train_split, train = common.split_rows(run, "train", opts.datasets_root)
    eval_manifest, eval_split, ev = common.split_rows(run, "eval", opts.datasets_root)
    train_tags, eval_tags = list(train["tags"]), list(ev["tags"])
    segs, seg_matrix = common.segments_of(train_tags, opts.by)
    eval_slices = common.eval_slices(run, eval_tags, opts.slice_by, _stderr)

    started = time.perf_counter()
    lm = embeddings.load(run, base=opts.base_embeddings)
    batch = opts.batch_size or ecfg.batch_size
    _stderr(f"embedding {len(train):,} train and {len(ev):,} eval rows ({lm.device})")
    x_train = embeddings.embed(lm, [str(t) for t in train["text"]], batch)
    x_eval = embeddings.embed(lm, [str(t) for t in ev["text"]], batch)
    embed_seconds = time.perf_counter() - started

    started = time.perf_counter()
    labels = sorted({str(x) for x in train["label"]} | {str(x) for x in ev["label"]})
    code = {lab: i for i, lab in enumerate(labels)}
    y_train = np.array([code[str(x)] for x in train["label"]])
    y_eval = np.array([code[str(x)] for x in ev["label"]])
    n_train, n_eval = len(y_train), len(y_eval)
    nearest = (
        opts.nearest
        if opts.nearest is not None
        else (knn_shapley.NEAREST_DEFAULT if n_train > knn_shapley.EXACT_UP_TO else 0)
    )
    if nearest:
        _stderr(f"knn-shapley truncated to each eval row's {nearest:,} nearest train rows (of {n_train:,})")
    totals = common.Totals(n_train, n_eval, eval_slices, seg_matrix)
    for part, values in knn_shapley.batches(x_train, y_train, x_eval, y_eval, opts.k, nearest or None):
        totals.add(np.arange(part.start, part.stop), values)
    value_seconds = time.perf_counter() - started
    segments = common.segments_doc(opts.method, totals, segs, opts.resamples, confidence, opts.seed)
    rows = common.rows_doc(train, totals)
    row_value = totals.row_value
    method = {
        "schema_version": 1,
        "method": opts.method,
        "reference": "Jia et al., Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms, VLDB 2019",
        "k": opts.k,
        "distance": "euclidean on unit-length embeddings (cosine order)",
        "nearest": nearest or None,  # null: exact; M: each eval row's recursion over its M nearest train rows
        "embedding": {
            "model": embeddings.model_label(opts.base_embeddings),
            "pooling": "mean of the last hidden layer over real tokens, L2-normalized",
            "dim": int(x_train.shape[1]) if x_train.size else 0,
            "max_length": lm.max_length,
        },
        "train": {"ref": train_manifest.ref, "split": train_split, "n": n_train},
        "eval": {"ref": eval_manifest.ref, "split": eval_split, "n": n_eval},
        "by": sorted({k for k, _ in segs}, key=[k for k, _ in segs].index),
        "slices": totals.labels,
        "resamples": opts.resamples,
        "confidence": confidence,
        "seed": opts.seed,
        "utility": float(row_value.sum()),
        "seconds": {"embed": round(embed_seconds, 3), "values": round(value_seconds, 3)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    root = common.write(run.dir, opts.method, rows, segments, method)
    return Attribution(layout.attribution_dir(run.dir, opts.method), method, segments, rows, root)
