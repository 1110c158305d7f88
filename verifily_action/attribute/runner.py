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

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from ..runs.chain import hash_run_files, read_entries, seal
from ..runs.files import disk_full_error, is_disk_full, write_text_atomic
from ..runs.folder import recover, replace_run
from ..runs.lock import run_lock
from ..tags import NONE_TAG, slice_label, tag_value
from . import knn_shapley

METHODS = ("knn-shapley", "loo", "segment-shapley", "tracin")
BUILT = ("knn-shapley", "loo", "segment-shapley", "tracin")
RETRAINING = ("loo", "segment-shapley")
DEFAULT_RESAMPLES = 1000


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
    resamples: int = DEFAULT_RESAMPLES
    confidence: float | None = None  # default: eval.confidence
    seed: int = 0  # of the bootstrap resamples (and of tracin's projection)
    projection_dim: int = 512  # tracin: the length of the projected gradients
    projection: str = "sketch"  # tracin: sketch (sparse, fast) or gaussian (dense); gradients.Projector
    jobs: int = 1  # retrains at once (loo, segment-shapley)
    budget: int = 16  # the most retrains a segment method may start (retrain.DEFAULT_BUDGET)


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


def _rows(run: Any, which: str, datasets_root: str | None) -> tuple[Any, str, Any]:
    """(manifest, split, rows) of the run's train or eval data."""
    from ..datasets import load_split
    from ..datasets.registry import resolve_first, search_roots
    from ..evaluate.runner import EvalOptions, dataset_ref

    cfg, meta = run.config, run.meta
    if which == "train":
        entry = meta.get("dataset") or {}
        ref, split = str(entry.get("ref") or cfg.dataset), str(entry.get("split") or cfg.train_split)
    else:
        ref, split = dataset_ref(EvalOptions(), meta), cfg.eval_split
    manifest = resolve_first(ref, search_roots(datasets_root, cfg.datasets_root))
    manifest.require_split(split)
    fields = {k: v for k, v in vars(cfg.fields).items() if v is not None}
    rows = load_split(manifest, split, fields=fields or None)
    if len(rows) == 0:
        raise VerifilyError(f"the {split} split of {manifest.ref} has no rows: nothing to attribute")
    return manifest, split, rows


def _segments(train_tags: Sequence[Any], by: list[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The (key, value) segments of `by` and the N x S indicator matrix of the train rows in each."""
    from ..evaluate.slices import existing_keys

    known = existing_keys(train_tags)
    keys = by or known
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise VerifilyError(
            f"--by {', '.join(unknown)}: no train row has {'that tag' if len(unknown) == 1 else 'those tags'}",
            hint=f"tag keys of the train rows: {', '.join(known) or '(none)'}",
        )
    segs: list[tuple[str, str]] = []
    columns = []
    for key in keys:
        values = np.array([tag_value(t, key) for t in train_tags], dtype=object)
        for v in sorted(set(values.tolist()), key=lambda x: (x == NONE_TAG, x)):
            segs.append((key, v))
            columns.append(values == v)
    matrix = np.stack(columns, axis=1).astype(np.float64) if columns else np.zeros((len(train_tags), 0))
    return segs, matrix


def _interval(per_query: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator) -> np.ndarray:
    """Percentile bootstrap over the eval rows of each column's mean: (2, S) low and high."""
    n = per_query.shape[0]
    if n == 0:
        return np.full((2, per_query.shape[1]), np.nan)
    means = np.empty((resamples, per_query.shape[1]))
    step = max(1, 2_000_000 // max(n, 1))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        means[start : start + b] = per_query[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=0)


def _attribute(run_dir: Path, opts: AttributeOptions) -> Attribution:
    if opts.method == "tracin":
        from . import tracin

        return tracin.attribute(run_dir, opts)
    from ..evaluate import slices
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
    train_manifest, train_split, train = _rows(run, "train", opts.datasets_root)
    eval_manifest, eval_split, ev = _rows(run, "eval", opts.datasets_root)
    train_tags, eval_tags = list(train["tags"]), list(ev["tags"])
    segs, seg_matrix = _segments(train_tags, opts.by)
    exprs = slices.parse_list(opts.slice_by, "--slice-by") if opts.slice_by else None
    slice_by, cross = slices.eval_slicing(ecfg, exprs, None, run.dir / layout.CONFIG)
    eval_slices = [
        s
        for s in slices.build_slices(eval_tags, slice_by, cross, ecfg.min_slice_size, warn=lambda w: _stderr(w))
        if s.n
    ]

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
    total = np.zeros(n_train)
    per_slice = np.zeros((len(eval_slices), n_train))
    slice_masks = [np.zeros(n_eval, dtype=bool) for _ in eval_slices]
    for m, s in zip(slice_masks, eval_slices, strict=True):
        m[s.indices] = True
    seg_per_query = np.zeros((n_eval, len(segs)))
    nearest = (
        opts.nearest
        if opts.nearest is not None
        else (knn_shapley.NEAREST_DEFAULT if n_train > knn_shapley.EXACT_UP_TO else 0)
    )
    if nearest:
        _stderr(f"knn-shapley truncated to each eval row's {nearest:,} nearest train rows (of {n_train:,})")
    for part, values in knn_shapley.batches(x_train, y_train, x_eval, y_eval, opts.k, nearest or None):
        total += values.sum(axis=0)
        for j, m in enumerate(slice_masks):
            sel = m[part]
            if sel.any():
                per_slice[j] += values[sel].sum(axis=0)
        seg_per_query[part] = values @ seg_matrix
    row_value = total / n_eval
    slice_values = per_slice / np.array([[s.n] for s in eval_slices]) if eval_slices else per_slice
    value_seconds = time.perf_counter() - started

    rng = np.random.default_rng(opts.seed)
    labels_ = [slice_label(s.key) for s in eval_slices]

    def block(mask: np.ndarray | None) -> list[dict[str, Any]]:
        sub = seg_per_query if mask is None else seg_per_query[mask]
        lo, hi = _interval(sub, opts.resamples, confidence, rng)
        means = sub.mean(axis=0) if len(sub) else np.full(len(segs), np.nan)
        out = []
        for j, (key, val) in enumerate(segs):
            size = int(seg_matrix[:, j].sum())
            verdict = "hurt" if hi[j] < 0 else "helped" if lo[j] > 0 else "unclear"
            out.append(
                {
                    "key": key,
                    "value": val,
                    "rows": size,
                    "sum": float(means[j]),
                    "per_row": float(means[j] / size) if size else 0.0,
                    "ci_low": float(lo[j]),
                    "ci_high": float(hi[j]),
                    "verdict": verdict,
                }
            )
        return out

    segments = {
        "schema_version": 1,
        "method": opts.method,
        "confidence": confidence,
        "utility": float(row_value.sum()),
        "overall": block(None),
        "slices": [
            {"slice": lab, "key": dict(s.key), "n": s.n, "segments": block(m)}
            for lab, s, m in zip(labels_, eval_slices, slice_masks, strict=True)
        ],
    }
    ids, texts = list(train["id"]), list(train["text"])
    rows = [
        {
            "id": str(ids[i]),
            "tags": {k: tag_value(train_tags[i], k) for k in (train_tags[i] or {})},
            "label": str(train["label"][i]),
            "text": str(texts[i]),
            "value": float(row_value[i]),
            "slices": {lab: float(slice_values[j, i]) for j, lab in enumerate(labels_)},
        }
        for i in range(n_train)
    ]
    method = {
        "schema_version": 1,
        "method": opts.method,
        "reference": "Jia et al., Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms, VLDB 2019",
        "k": opts.k,
        "distance": "euclidean on unit-length embeddings (cosine order)",
        "nearest": nearest or None,  # null: exact; M: each eval row's recursion over its M nearest train rows
        "embedding": {
            "model": embeddings.model_label(run.dir, opts.base_embeddings),
            "pooling": "mean of the last hidden layer over real tokens, L2-normalized",
            "dim": int(x_train.shape[1]) if x_train.size else 0,
            "max_length": lm.max_length,
        },
        "train": {"ref": train_manifest.ref, "split": train_split, "n": n_train},
        "eval": {"ref": eval_manifest.ref, "split": eval_split, "n": n_eval},
        "by": sorted({k for k, _ in segs}, key=[k for k, _ in segs].index),
        "slices": labels_,
        "resamples": opts.resamples,
        "confidence": confidence,
        "seed": opts.seed,
        "utility": float(row_value.sum()),
        "seconds": {"embed": round(embed_seconds, 3), "values": round(value_seconds, 3)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    files = {
        layout.ATTRIBUTION_ROWS: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
        layout.ATTRIBUTION_SEGMENTS: json.dumps(segments, indent=2, allow_nan=False) + "\n",
        layout.ATTRIBUTION_METHOD: json.dumps(method, indent=2) + "\n",
    }
    root = write_attribution(run.dir, opts.method, files)
    return Attribution(layout.attribution_dir(run.dir, opts.method), method, segments, rows, root)


def write_attribution(run_dir: Path, method: str, files: dict[str, str]) -> str:
    """attribution/<method>/ with `files` (name: text), in a copy of the run that replaces it, the chain extended;
    a previous attribution by the method is replaced whole."""

    def write(stage: Path) -> str:
        out = layout.attribution_dir(stage, method)
        if out.is_dir():
            for old in out.iterdir():
                if old.name not in files and old.is_file():
                    old.unlink()
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_text_atomic(out / name, text)
        prefix = f"{layout.ATTRIBUTION}/{method}/"  # the method's previous files leave the chain with them
        entries = {k: v for k, v in read_entries(stage).items() if not k.startswith(prefix)}
        entries.update(hash_run_files(stage, [out / n for n in files]))
        return str(seal(stage, entries)["root_hash"])

    return replace_run(run_dir, write)
