"""What every attribution method shares once it has a value of each train row for each eval row: the eval slices,
the running sums (overall, per slice, per tag segment and eval row), segments.json's blocks with bootstrap
intervals, rows.jsonl's rows, and the write into the run: `runner`'s formats and write path, for methods built
outside `runner`.

A method feeds `Totals.add` blocks of its (eval rows x train rows) values; a train row's value is then the mean over
the eval rows (or a slice's eval rows) of its values, and a segment's is the mean over eval rows of its rows' summed
values, with a percentile bootstrap over the eval rows (`runner._interval`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..runs import layout
from ..tags import slice_label, tag_value
from .runner import _interval


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
        lo, hi = _interval(sub, resamples, confidence, rng)
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
    (`runner.write_attribution`); the caller holds the run's lock. Returns the new root hash."""
    from .runner import write_attribution

    files = {
        layout.ATTRIBUTION_ROWS: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
        layout.ATTRIBUTION_SEGMENTS: json.dumps(segments, indent=2, allow_nan=False) + "\n",
        layout.ATTRIBUTION_METHOD: json.dumps(method_doc, indent=2) + "\n",
    }
    return write_attribution(run_dir, method, files)
