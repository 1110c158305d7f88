"""What every attribution method shares once it has a value of each train row for each eval row: the eval slices,
the running sums (overall, per slice, per tag segment and eval row), segments.json's blocks with bootstrap
intervals, rows.jsonl's rows, and the write into the run: `runner`'s formats and write path, for methods built
outside `runner`.

A method feeds `Totals.add` blocks of its (eval rows x train rows) values; a train row's value is then the mean over
the eval rows (or a slice's eval rows) of its values, and a segment's is the mean over eval rows of its rows' summed
values, with a percentile bootstrap over the eval rows (`interval`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from ..runs.chain import hash_run_files, read_entries, seal
from ..runs.files import write_text_atomic
from ..runs.folder import replace_run
from ..tags import NONE_TAG, slice_label, tag_value


def eval_slices(run: Any, eval_tags: Sequence[Any], slice_by: list[str] | None, warn: Callable[[str], None]):
    """The non-empty eval slices (`eval`'s slicing: --slice-by, else the run's eval.slice_by)."""
    from ..evaluate import slices

    ecfg = run.config.eval
    exprs = slices.parse_list(slice_by, "--slice-by") if slice_by else None
    by, cross = slices.eval_slicing(ecfg, exprs, None, run.dir / layout.CONFIG)
    return [s for s in slices.build_slices(eval_tags, by, cross, ecfg.min_slice_size, warn=warn) if s.n]


class Totals:
    """Running sums of value blocks: per train row overall and per slice, per eval row and segment."""

    def __init__(self, n_train: int, n_eval: int, slices: Sequence[Any], seg_matrix: np.ndarray):
        self.n_train, self.n_eval, self.slices, self.seg_matrix = n_train, n_eval, list(slices), seg_matrix
        self.total = np.zeros(n_train)
        self.per_slice = np.zeros((len(self.slices), n_train))
        self.masks = [np.zeros(n_eval, dtype=bool) for _ in self.slices]
        for m, s in zip(self.masks, self.slices, strict=True):
            m[s.indices] = True
        self.seg_per_query = np.zeros((n_eval, seg_matrix.shape[1]))

    def add(self, part: np.ndarray, values: np.ndarray) -> None:
        """`values`: (len(part) x n_train), the values of every train row for the eval rows `part`."""
        self.total += values.sum(axis=0)
        for j, m in enumerate(self.masks):
            sel = m[part]
            if sel.any():
                self.per_slice[j] += values[sel].sum(axis=0)
        self.seg_per_query[part] = values @ self.seg_matrix

    @property
    def row_value(self) -> np.ndarray:
        return self.total / self.n_eval

    @property
    def slice_values(self) -> np.ndarray:
        return self.per_slice / np.array([[s.n] for s in self.slices]) if self.slices else self.per_slice

    @property
    def labels(self) -> list[str]:
        return [slice_label(s.key) for s in self.slices]


def segments_doc(
    method: str, totals: Totals, segs: Sequence[tuple[str, str]], resamples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """segments.json: each segment's summed value with its interval, overall and per eval slice."""
    rng = np.random.default_rng(seed)
    seg_matrix = totals.seg_matrix

    def block(mask: np.ndarray | None) -> list[dict[str, Any]]:
        sub = totals.seg_per_query if mask is None else totals.seg_per_query[mask]
        lo, hi = interval(sub, resamples, confidence, rng)
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

    return {
        "schema_version": 1,
        "method": method,
        "confidence": confidence,
        "utility": float(totals.row_value.sum()),
        "overall": block(None),
        "slices": [
            {"slice": lab, "key": dict(s.key), "n": s.n, "segments": block(m)}
            for lab, s, m in zip(totals.labels, totals.slices, totals.masks, strict=True)
        ],
    }


def rows_doc(train: Any, totals: Totals) -> list[dict[str, Any]]:
    """rows.jsonl: id, tags, label (when the rows have one), text (the prompt for prompt/response rows), response
    (when they have one), value and per-slice values of each train row."""
    cols = set(train.column_names)
    tags, ids = list(train["tags"]), list(train["id"])
    texts = list(train["text"] if "text" in cols else train["prompt"])
    labels = list(train["label"]) if "label" in cols else None
    responses = list(train["response"]) if "response" in cols else None
    value, per_slice, names = totals.row_value, totals.slice_values, totals.labels
    out = []
    for i in range(len(ids)):
        row: dict[str, Any] = {"id": str(ids[i]), "tags": {k: tag_value(tags[i], k) for k in (tags[i] or {})}}
        if labels is not None:
            row["label"] = str(labels[i])
        row["text"] = str(texts[i])
        if responses is not None:
            row["response"] = str(responses[i])
        row["value"] = float(value[i])
        row["slices"] = {lab: float(per_slice[j, i]) for j, lab in enumerate(names)}
        out.append(row)
    return out


def write(run_dir: Path, method: str, rows: list[dict], segments: dict, method_doc: dict) -> str:
    """attribution/<method>/{rows.jsonl,segments.json,method.json} written into the run and its chain
    (`write_files`); the caller holds the run's lock. Returns the new root hash."""
    files = {
        layout.ATTRIBUTION_ROWS: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
        layout.ATTRIBUTION_SEGMENTS: json.dumps(segments, indent=2, allow_nan=False) + "\n",
        layout.ATTRIBUTION_METHOD: json.dumps(method_doc, indent=2) + "\n",
    }
    return write_files(run_dir, method, files)


def write_files(run_dir: Path, method: str, files: dict[str, str]) -> str:
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


def refuse_label_tokens(run: Any, method: str) -> None:
    """tracin differentiates a classification run's loss through its head: one clear error for a run that
    classifies by label tokens (`classifier: label_tokens`, a causal LM without a head; its snapshots do not record
    the verbalizers). knn-shapley needs no head: it embeds with the run's model, a causal LM's hidden states too."""
    cfg = run.config
    if cfg.task == "classification" and cfg.classifier == "label_tokens":
        raise VerifilyError(
            f"--method {method} values classification runs with a head; run {run.dir} classifies by label tokens "
            "(classifier: label_tokens)",
            hint="use --method knn-shapley (it embeds with the run's causal LM), loo or segment-shapley (they retrain "
            "the run's config), or train with `classifier: head`",
        )


def split_rows(run: Any, which: str, datasets_root: str | None) -> tuple[Any, str, Any]:
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
    manifest = resolve_first(ref, search_roots(datasets_root, cfg.datasets_root), server=cfg.server)
    manifest.require_split(split)
    fields = {k: v for k, v in vars(cfg.fields).items() if v is not None}
    rows = load_split(manifest, split, fields=fields or None)
    if len(rows) == 0:
        raise VerifilyError(f"the {split} split of {manifest.ref} has no rows: nothing to attribute")
    return manifest, split, rows


def segments_of(train_tags: Sequence[Any], by: list[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
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


def interval(per_query: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator) -> np.ndarray:
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
