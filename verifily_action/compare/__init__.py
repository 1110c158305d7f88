"""Compare runs slice by slice: deltas against a baseline with paired significance, plain-English summary, gating.

Reads only run folders (json, yaml, numpy; never torch), so it runs wherever a run folder was downloaded.

    comparison = compare(["runs/a", "runs/b"], slice_by=["source"], fail_on=["macro_f1@source=human<-0.02"])
    comparison["summary"], comparison["gates"], report.comparison.markdown(comparison)

Modules: loading (run folders), paired (statistics), power (smallest detectable change), engine (rows of values and
deltas), fdr (q-values across slices: what `significant` means), gates (rules), datadiff (dataset versions),
attribution (the newest run's "which data" block). The
sentences of `summary` and every rendering (table, markdown, json) live in `report/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluate import slices
from ..report import summary
from . import engine, fdr, gates, loading


def compare(
    paths: Sequence[str | Path],
    *,
    metrics: Sequence[str] | None = None,
    slice_by: Sequence[str] | None = None,
    eval_name: str | None = None,
    fail_on: Sequence[str] = (),
    config_gates: bool = True,
    datasets_root: str | Path | None = None,
    seed: int = 0,
    fdr_method: str | None = None,
    discover: bool = False,
    discover_max_candidates: int | None = None,
) -> dict[str, Any]:
    """Compare runs (the first is the baseline); returns the comparison dict (schemas/comparison.schema.json) with
    `summary`, `dataset_diffs` and `gates` filled. Raises VerifilyError on bad input; never on a failing gate (read
    `failed_gates(comparison)`). `fdr_method` (bh, by) adjusts every candidate's p-values; None: each candidate's
    config (`eval.fdr`). `discover`: also name the combination of tags that regressed most (compare/discovery.py),
    testing at most `discover_max_candidates` slices (default: eval.discover_max_candidates')."""
    rules = gates.parse_rules(fail_on, "--fail-on")
    runs = loading.load_runs(paths, eval_name)
    if config_gates:
        for r in runs[1:]:
            rules += gates.parse_rules(r.gates, f"config of {r.name}")
    wanted = list(metrics or [])
    chosen = loading.choose_metrics(runs, wanted or None)
    chosen += [m for m in dict.fromkeys(rule.metric for rule in rules) if m not in chosen]
    chosen = loading.choose_metrics(runs, chosen)  # validates the rules' metrics against the task too
    exprs = slices.parse_list(slice_by if slice_by else loading.default_slicing(runs), "--slice-by")
    exprs = slices.dedupe(exprs + [r.slice for r in rules if r.slice is not None])  # a gate's slices are computed
    warnings: list[str] = []
    comparison = engine.build(runs, chosen, exprs, seed=seed, warn=warnings.append)
    comparison["warnings"] = warnings
    fdr.apply(comparison, [fdr_method or fdr.configured(r.dir) for r in runs[1:]])
    gates.check_rules_apply(rules, comparison["rows"])
    conf = comparison["confidence"]
    results = gates.evaluate(rules, comparison["rows"], lambda row, i: summary.change_text(row, i, conf))
    comparison["summary"] = summary.lines(comparison)
    if discover:
        from . import discovery

        comparison["discovery"] = discovery.search(runs, comparison, discover_max_candidates)
        comparison["summary"] += discovery.summary_lines(comparison["discovery"])
    from .datadiff import dataset_diffs

    comparison["dataset_diffs"] = dataset_diffs(runs, datasets_root, slices.keys_of(exprs))
    from .attribution import which_data

    block = which_data(runs[-1].dir, runs[-1].name, comparison, warnings.append)
    if block is not None:
        comparison["which_data"] = block
    comparison["gates"] = [g.to_dict() for g in results]
    return comparison


def failed_gates(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in comparison.get("gates", []) if g["failed"]]
