"""Build a comparison of runs: for the whole eval set and each tag slice, every metric of every run and the change of
each run against the first (the baseline), paired where the runs saw the same examples.

Slices are named by slice expressions (evaluate/slices.py: `source`, `source=human&origin=imdb`, `source=*&origin=*`)
and computed from each run's per-example tags in predictions.jsonl, so a cross slice can be compared even when `eval`
did not report it (when it did, with the same confidence, its interval is reused).

The result is a plain JSON-able dict (schemas/comparison.schema.json) that summary, gates and render read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..evaluate import slices as slicing
from ..evaluate.metrics import DIRECTIONS
from ..tags import slice_label
from . import paired
from .loading import EvalRun

SCHEMA = "comparison.schema.json"


@dataclass
class Pairing:
    """How a candidate's examples line up with the baseline's."""

    run: str
    paired: bool
    reason: str
    order: np.ndarray | None = None  # candidate row of each baseline row (paired only)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "paired": self.paired, "reason": self.reason}


def pair(a: EvalRun, b: EvalRun) -> Pairing:
    """Paired when both runs have exactly the same example ids (each once) with the same references."""
    if len(set(a.ids)) != a.n or len(set(b.ids)) != b.n:
        return Pairing(b.name, False, "example ids repeat within a run, so examples cannot be matched")
    if set(a.ids) != set(b.ids):
        common = len(set(a.ids) & set(b.ids))
        return Pairing(
            b.name,
            False,
            f"the runs were evaluated on different examples ({common} ids in common; {a.n} in {a.name}, "
            f"{b.n} in {b.name}): unpaired intervals",
        )
    where = {i: k for k, i in enumerate(b.ids)}
    order = np.fromiter((where[i] for i in a.ids), dtype=np.int64, count=a.n)
    differ = sum(1 for k, j in enumerate(order) if a.references[k] != b.references[j])
    if differ:
        return Pairing(
            b.name, False, f"same ids but {differ} reference(s) differ, so they are not the same examples: unpaired"
        )
    return Pairing(b.name, True, f"paired on {a.n} matching examples", order)


def same_eval_set(a: EvalRun, b: EvalRun) -> bool:
    """Evaluated on the same rows: the eval split's content hashes agree (byte-identical files, whatever the version
    is called), else, for results written before content hashes were recorded, the same eval name."""
    ha, hb = ((r.results.get("dataset") or {}).get("content_hash") for r in (a, b))
    if ha and hb:
        return bool(ha == hb)
    return a.eval_name == b.eval_name


def slice_macro_f1(runs: Sequence[EvalRun]) -> str:
    """The labels a slice's macro-F1 averages over in this comparison: what the runs' evals used, or slice_labels
    (eval.slice_macro_f1's default) when they differ; a run whose eval used another has it recomputed."""
    used = {r.slice_macro_f1 for r in runs}
    return used.pop() if len(used) == 1 else "slice_labels"


def _reported(
    run: EvalRun, key: dict[str, str], metric: str, confidence: float, scope: str = "all_labels"
) -> dict[str, float] | None:
    """The interval `verifily eval` already computed for this slice and metric (same confidence, and for a slice's
    macro-F1 the same label scope), if any."""
    res = run.results
    if res["confidence"] != confidence or (key and metric == "macro_f1" and run.slice_macro_f1 != scope):
        return None
    if not key:
        return res["overall"].get(metric)
    for s in res.get("slices", []):
        if s.get("key") == key:
            return (s.get("metrics") or {}).get(metric)
    return None


def _values(
    run: EvalRun,
    idx: np.ndarray,
    key: dict[str, str],
    metrics: Sequence[str],
    boot: dict[str, Any],
    scope: str = "all_labels",
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for m in metrics:
        rep = _reported(run, key, m, boot["confidence"], scope) if len(idx) else None
        if rep is not None:
            out[m] = {"value": rep["value"], "ci_low": rep["ci_low"], "ci_high": rep["ci_high"]}
        else:
            todo.append(m)
    if todo and len(idx):
        for m, (v, lo, hi) in paired.value_intervals(todo, run.outcomes(idx, scope), **boot).items():
            out[m] = {"value": v, "ci_low": lo, "ci_high": hi}
    for m in todo:
        out.setdefault(m, {"value": None, "ci_low": None, "ci_high": None})
    return out


def _absent(run: str, status: str) -> dict[str, Any]:
    return {
        "run": run,
        "status": status,
        "method": None,
        "delta": None,
        "ci_low": None,
        "ci_high": None,
        "relative": None,
        "p_value": None,
        "q_value": None,
        "test": None,
        "significant": False,
        "improved": None,
        "discordant": None,
        "mde": None,
        "reconciled": None,
    }


def _delta_entry(run: str, metric: str, d: paired.Delta, base_value: float) -> dict[str, Any]:
    higher = DIRECTIONS.get(metric, "higher") == "higher"
    entry = {"run": run, "status": "compared", **d.to_dict()}
    entry["relative"] = d.value / abs(base_value) if base_value else None
    entry["improved"] = None if d.value == 0 else (d.value > 0) == higher
    entry["discordant"] = list(d.discordant) if d.discordant else None
    return entry


def build(
    runs: Sequence[EvalRun],
    metrics: Sequence[str],
    slice_by: Sequence[str | slicing.SliceExpr],
    *,
    confidence: float | None = None,
    resamples: int | None = None,
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The comparison of `runs` (the first is the baseline) as a JSON-able dict, without summary and gates.
    `slice_by`: slice expressions (a bare tag key is every value of it); `warn` hears of a value no row has."""
    base = runs[0]
    confidence = float(confidence or base.results["confidence"])
    resamples = int(resamples or base.results["bootstrap_resamples"])
    boot: dict[str, Any] = {"resamples": resamples, "confidence": confidence, "seed": seed}
    pairings = [pair(base, r) for r in runs[1:]]
    notes = [p.reason for p in pairings if not p.paired]
    label_scope = slice_macro_f1(runs)
    if "macro_f1" in metrics and len({r.slice_macro_f1 for r in runs}) > 1:
        notes.append(
            "the runs' evals averaged a slice's macro-F1 over different labels; here every slice's macro-F1 is "
            "recomputed over the labels of its references (slice_labels)"
        )
    if not all(same_eval_set(base, r) for r in runs[1:]):
        notes.append(
            "the runs were evaluated on different datasets: " + ", ".join(f"{r.name}: {r.eval_name}" for r in runs)
        )
    exprs = slicing.normalize(slice_by)
    keys: list[dict[str, str]] = [{}, *slicing.expand(exprs, [r.tags for r in runs], warn)]

    columns: dict[tuple[int, str], np.ndarray] = {}  # (run, tag key) -> each example's value

    def in_slice(i: int, key: dict[str, str]) -> np.ndarray:
        m = np.ones(runs[i].n, dtype=bool)
        for k, v in key.items():
            if (i, k) not in columns:
                columns[i, k] = runs[i].tag_values(k)
            m &= columns[i, k] == v
        return m

    rows: list[dict[str, Any]] = []
    for key in keys:
        masks = [in_slice(i, key) for i in range(len(runs))]
        idxs = [np.flatnonzero(m) for m in masks]
        scope = label_scope if key else "all_labels"
        values = [_values(r, idx, key, metrics, boot, scope) for r, idx in zip(runs, idxs, strict=True)]
        deltas: list[dict[str, dict[str, Any]]] = []
        for j, (r, p) in enumerate(zip(runs[1:], pairings, strict=True), start=1):
            na, nb = len(idxs[0]), len(idxs[j])
            if not na or not nb:
                status = "only_in_baseline" if na else ("only_in_run" if nb else "absent")
                deltas.append({m: _absent(r.name, status) for m in metrics})
                continue
            a_out = base.outcomes(idxs[0], scope)
            if p.paired and p.order is not None and np.array_equal(masks[j][p.order], masks[0]):
                ds = paired.paired_deltas(metrics, a_out, r.outcomes(p.order[idxs[0]], scope), **boot)
            else:
                ds = paired.unpaired_deltas(metrics, a_out, r.outcomes(idxs[j], scope), **boot)
                if p.paired:
                    notes.append(
                        f"{slice_label(key)}: the examples' tags differ "
                        f"between {base.name} and {r.name}; that slice is compared unpaired"
                    )
            deltas.append({m: _delta_entry(r.name, m, ds[m], values[0][m]["value"]) for m in metrics})
        min_size = int(base.results["min_slice_size"])
        for m in metrics:
            rows.append(
                {
                    "slice": dict(key),
                    "metric": m,
                    "direction": DIRECTIONS.get(m, "higher"),
                    "values": [
                        {
                            "run": r.name,
                            "n": int(len(idx)),
                            "too_small": bool(key) and 0 < len(idx) < min_size,
                            **vals[m],
                        }
                        for r, idx, vals in zip(runs, idxs, values, strict=True)
                    ],
                    "deltas": [d[m] for d in deltas],
                }
            )

    return {
        "schema_version": 1,
        "task": base.task,
        "baseline": base.name,
        "runs": [
            {
                "name": r.name,
                "dir": str(r.dir),
                "run_id": str(r.meta.get("id") or r.results.get("run_id") or r.name),
                "eval_name": r.eval_name,
                "dataset": r.results.get("dataset"),
                "train_dataset": r.meta.get("dataset"),
                "n": r.n,
            }
            for r in runs
        ],
        "metrics": list(metrics),
        "directions": {m: DIRECTIONS.get(m, "higher") for m in metrics},
        "slice_by": [e.text for e in exprs],
        "slice_macro_f1": label_scope,
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
        "pairing": [p.to_dict() for p in pairings],
        "rows": rows,
        "notes": notes,
    }
