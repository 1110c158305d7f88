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
    manifest = resolve_first(ds["ref"], search_roots(datasets_root, run.config.datasets_root), server=run.config.server)
    return {
        "ref": ds["ref"],
        "split": ds["split"],
        "root": str(manifest.dir.parent.parent),
        "slice_by": list(res.get("slicing") or []),  # every expression, cross-tag ones too: --slice-by takes them
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
    seeds = [run.config.training.seed + i for i in range(opts.seeds)]  # the first is the run's own
    orders = None
    if opts.method == "segment-shapley" and len(values) > retrain.MAX_EXACT:
        room = (opts.budget - len(seeds) + 1) // len(seeds)  # coalitions that fit, each with every seed
        subsets, orders = retrain.monte_carlo_plan(values, room, opts.seed)
        _stderr(f"segment-shapley over {len(values)} segments: {len(orders)} sampled orderings (Monte Carlo)")
    else:
        subsets = retrain.plan(opts.method, values)
    total = len(subsets) * len(seeds) + len(seeds) - 1  # each coalition per seed, and the full data per other seed
    if total > opts.budget:
        raise VerifilyError(
            f"{opts.method} over {len(values)} segments of {key} with {len(seeds)} seed(s) needs {total} retrains, "
            f"over --budget {opts.budget}",
            hint="raise --budget, or value a tag key with fewer values, or use fewer --seeds",
        )
    spec = _eval_spec(run, opts.datasets_root)
    _stderr(
        f"{opts.method}: {total} retrain(s) of {run.dir.name} without segments of {key}, {len(seeds)} seed(s) "
        f"(jobs {opts.jobs})"
    )
    started = time.perf_counter()
    root = run.dir.resolve().parent / retrain.PRIVATE_ROOT / "datasets"
    datasets = retrain.derived_versions(manifest, split, key, subsets, root)
    jobs = [(d, s, datasets[d], root) for d in subsets for s in seeds]
    jobs += [(frozenset(), s, manifest.ref, manifest.dir.parent.parent) for s in seeds[1:]]
    folders = retrain.retrain_all(run, jobs, spec, opts.jobs, _stderr)
    folders[(frozenset(), seeds[0])] = run.dir
    seconds = time.perf_counter() - started

    def entry(value: str, e: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "value": value, "rows": counts[value], **{k: v for k, v in e.items() if k != "value"}}

    if opts.method == "loo" and len(seeds) == 1:  # compare's paired test and false-discovery control
        one = {d: folders[(d, seeds[0])] for d in subsets}
        metric, per_slice = retrain.loo_values(run.dir, one, spec["slice_by"])
        by_slice = {lab: [entry(e["value"], e) for e in es] for lab, es in per_slice.items()}
    else:
        metric, by_slice = _scored(
            run.dir, folders, subsets, seeds, values, key, counts, confidence, spec, opts, orders
        )
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
        "seeds": seeds,
        "orderings": len(orders) if orders else None,  # Monte Carlo segment Shapley: the orderings sampled
        "retrains": [
            {"dropped": sorted(d), "seed": s, "dataset": ref, "run": str(folders[(d, s)].name)} for d, s, ref, _ in jobs
        ],
        "jobs": opts.jobs,
        "interval": _interval_note(opts.method, len(seeds), bool(orders)),
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


def _interval_note(method: str, seeds: int, orderings: bool) -> str:
    """How `retrain.seeded_values` (or compare) made the intervals, for method.json."""
    if method == "loo" and seeds == 1:
        return "compare's paired bootstrap over the eval rows, q-values for the false-discovery rate"
    if seeds == 1 and not orderings:
        return "bootstrap percentile over the eval rows"
    parts = ["var over eval-row resamples"]
    if seeds > 1:
        parts.append(f"var over the seeds' values / {seeds}")
    if orderings:
        parts.append("var of the marginal gains over the sampled orderings / their number")
    return f"value +- {f't({seeds - 1})' if seeds > 1 else 'z'} x sqrt({' + '.join(parts)})"


def _scored(
    run_dir: Path,
    folders: dict[Any, Path],
    subsets: list[frozenset[str]],
    seeds: list[int],
    values: list[str],
    key: str,
    counts: dict[str, int],
    confidence: float,
    spec: dict[str, Any],
    opts: Any,
    orders: list[tuple] | None = None,
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Per slice (whole set first): each segment's value of the mean primary score — Shapley, or leave-one-out with
    several seeds — with an interval over the eval rows and the seeds (`retrain.seeded_values`)."""
    from ..evaluate import slices
    from ..evaluate.metrics import PRIMARY_SCORE

    full = frozenset(values)
    coalitions: list[frozenset[str]] = [frozenset(), *subsets]  # by what is left out; the utility: what is kept
    keys = [(d, s) for d in coalitions for s in seeds]
    ids, matrix, eval_tags = retrain.score_matrix([folders[k] for k in keys])
    scores = {full - d: matrix[i * len(seeds) : (i + 1) * len(seeds)] for i, d in enumerate(coalitions)}
    if opts.method == "loo":

        def value_of(u: dict[frozenset[str], np.ndarray]) -> dict[str, np.ndarray]:
            return {v: u[full] - u[full - {v}] for v in values}
    else:

        def value_of(u: dict[frozenset[str], np.ndarray]) -> dict[str, np.ndarray]:
            return retrain.sampled_shapley(u, orders) if orders else retrain.shapley_values(u, values)

    rng = np.random.default_rng(opts.seed)
    exprs = slices.parse_list(spec["slice_by"], "--slice-by") if spec["slice_by"] else []
    cut = [s for s in slices.build_slices(eval_tags, exprs, (), 1) if s.n] if exprs else []
    groups: list[tuple[dict[str, Any], np.ndarray]] = [({}, np.arange(len(ids)))]
    groups += [(s.key, np.asarray(s.indices)) for s in cut]
    out: dict[str, list[dict[str, Any]]] = {}
    for where, idx in groups:
        spread = (lambda u: retrain.ordering_variance(u, orders)) if orders else None
        found = retrain.seeded_values(scores, value_of, idx, opts.resamples, confidence, rng, spread)
        out[slice_label(where)] = [
            {"key": key, "value": v, "rows": counts[v], "sum": val, "ci_low": lo, "ci_high": hi,
             "verdict": "hurt" if hi < 0 else "helped" if lo > 0 else "unclear"}
            for v, (val, lo, hi) in found.items()
        ]  # fmt: skip
    task = json.loads((run_dir / layout.RUN_META).read_text()).get("task", "classification")
    return PRIMARY_SCORE.get(task, "accuracy"), out
