"""`verifily attribute --method loo|segment-shapley`: value the segments of one tag key by retraining without them
(attribute/retrain.py does the retraining and the arithmetic); writes segments.json and method.json into the run
(no rows.jsonl: these methods value segments, not rows)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from ..tags import slice_label, tag_value
from . import retrain


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _eval_spec(run: Any, datasets_root: str | None) -> dict[str, Any]:
    """The run's newest evaluation: its dataset, split, datasets root and slicing (retrains are evaluated alike)."""
    from ..datasets.registry import resolve_first, search_roots
    from ..runs.results import load_eval_results

    path = layout.latest_eval_results(run.dir)
    if path is None:
        raise VerifilyError(
            f"run {run.dir} has no evaluation to compare retrains with",
            hint=f"evaluate it first: verifily eval --run {run.dir}",
        )
    res = load_eval_results(path)
    ds = res["dataset"]
    manifest = resolve_first(ds["ref"], search_roots(datasets_root, run.config.datasets_root))
    return {
        "ref": ds["ref"],
        "split": ds["split"],
        "root": str(manifest.dir.parent.parent),
        "slice_by": list(res.get("slicing") or []),
        "cross": [],
    }


def _key(train_tags: list[Any], by: list[str]) -> str:
    from ..evaluate.slices import existing_keys

    known = existing_keys(train_tags)
    if len(by) > 1:
        raise VerifilyError("segment methods value one tag key at a time", hint="give one --by KEY")
    if not by and len(known) != 1:
        raise VerifilyError(
            "give the tag key whose segments to value: --by KEY",
            hint=f"tag keys of the train rows: {', '.join(known) or '(none)'}",
        )
    key = by[0] if by else known[0]
    if key not in known:
        raise VerifilyError(
            f"--by {key}: no train row has that tag", hint=f"tag keys of the train rows: {', '.join(known) or '(none)'}"
        )
    return key


def attribute_by_retraining(run_dir: Path, opts: Any) -> Any:
    from ..evaluate.runner import check_run
    from .common import split_rows, write_files
    from .runner import Attribution

    run = check_run(run_dir)
    confidence = opts.confidence if opts.confidence is not None else run.config.eval.confidence
    manifest, split, train = split_rows(run, "train", opts.datasets_root)
    tags = list(train["tags"])
    key = _key(tags, opts.by)
    counts: dict[str, int] = {}
    for t in tags:
        v = tag_value(t, key)
        counts[v] = counts.get(v, 0) + 1
    values = sorted(counts)
    if len(values) < 2:
        raise VerifilyError(f"--by {key}: the train rows have one value ({values[0]}), nothing to leave out")
    subsets = retrain.plan(opts.method, values)
    if len(subsets) > opts.budget:
        raise VerifilyError(
            f"{opts.method} over {len(values)} segments of {key} needs {len(subsets)} retrains, over --budget "
            f"{opts.budget}",
            hint="raise --budget, or value a tag key with fewer values",
        )
    spec = _eval_spec(run, opts.datasets_root)
    _stderr(f"{opts.method}: {len(subsets)} retrain(s) of {run.dir.name} without segments of {key} (jobs {opts.jobs})")
    started = time.perf_counter()
    root = run.dir.resolve().parent / retrain.PRIVATE_ROOT / "datasets"
    datasets = retrain.derived_versions(manifest, split, key, subsets, root)
    folders = retrain.retrain_all(run, datasets, root, spec, opts.jobs, _stderr)
    seconds = time.perf_counter() - started

    def entry(value: str, e: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "value": value, "rows": counts[value], **{k: v for k, v in e.items() if k != "value"}}

    if opts.method == "loo":
        metric, per_slice = retrain.loo_values(run.dir, folders, spec["slice_by"], confidence)
        by_slice = {lab: [entry(e["value"], e) for e in es] for lab, es in per_slice.items()}
    else:
        metric, by_slice = _shapley(run.dir, folders, values, key, counts, confidence, spec["slice_by"], opts)
    overall = by_slice.pop(slice_label({}), [])
    segments = {
        "schema_version": 1,
        "method": opts.method,
        "metric": metric,
        "confidence": confidence,
        "overall": overall,
        "slices": [{"slice": lab, "segments": es} for lab, es in by_slice.items()],
    }
    method = {
        "schema_version": 1,
        "method": opts.method,
        "by": key,
        "metric": metric,
        "train": {"ref": manifest.ref, "split": split, "n": len(train)},
        "eval": {"ref": spec["ref"], "split": spec["split"], "slicing": spec["slice_by"]},
        "retrains": [{"dropped": sorted(d), "dataset": datasets[d], "run": str(folders[d].name)} for d in subsets],
        "jobs": opts.jobs,
        "confidence": confidence,
        "resamples": opts.resamples,
        "seed": opts.seed,
        "seconds": round(seconds, 3),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    files = {
        layout.ATTRIBUTION_SEGMENTS: json.dumps(segments, indent=2, allow_nan=False) + "\n",
        layout.ATTRIBUTION_METHOD: json.dumps(method, indent=2) + "\n",
    }
    root_hash = write_files(run.dir, opts.method, files)
    return Attribution(layout.attribution_dir(run.dir, opts.method), method, segments, [], root_hash)


def _shapley(
    run_dir: Path,
    folders: dict[frozenset[str], Path],
    values: list[str],
    key: str,
    counts: dict[str, int],
    confidence: float,
    slice_by: list[str],
    opts: Any,
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Per slice (whole set first): each segment's Shapley value of the mean primary score, with an interval."""
    from ..evaluate import slices
    from ..evaluate.metrics import PRIMARY_SCORE

    order = list(folders)
    ids, scores, eval_tags = retrain.score_matrix([run_dir, *(folders[d] for d in order)])
    full = frozenset(values)
    kept = [full] + [full - d for d in order]
    rng = np.random.default_rng(opts.seed)
    exprs = slices.parse_list(slice_by, "--slice-by") if slice_by else []
    cut = [s for s in slices.build_slices(eval_tags, exprs, (), 1) if s.n] if exprs else []
    groups: list[tuple[dict[str, Any], np.ndarray]] = [({}, np.arange(len(ids)))]
    groups += [(s.key, np.asarray(s.indices)) for s in cut]
    out: dict[str, list[dict[str, Any]]] = {}
    for where, idx in groups:
        sub = scores[:, idx]
        point = retrain.shapley_values({k: np.asarray(sub[j].mean()) for j, k in enumerate(kept)}, values)
        draws = rng.integers(0, sub.shape[1], size=(opts.resamples, sub.shape[1]))
        boot = retrain.shapley_values({k: sub[j][draws].mean(axis=1) for j, k in enumerate(kept)}, values)
        alpha = (1 - confidence) / 2
        rows = []
        for v in values:
            lo, hi = np.quantile(boot[v], [alpha, 1 - alpha])
            verdict = "hurt" if hi < 0 else "helped" if lo > 0 else "unclear"
            rows.append(
                {"key": key, "value": v, "rows": counts[v], "sum": float(point[v]), "ci_low": float(lo),
                 "ci_high": float(hi), "verdict": verdict}
            )  # fmt: skip
        out[slice_label(where)] = rows
    task = json.loads((run_dir / layout.RUN_META).read_text()).get("task", "classification")
    return PRIMARY_SCORE.get(task, "accuracy"), out
