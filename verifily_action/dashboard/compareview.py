"""What the comparison page shows, taken from the comparison `compare` computes (never recomputed): the table's
header, cells and footnotes exactly as `verifily compare` renders them (report.comparison), the dataset diffs, the
gates, the "which data" block, and for the chart each slice's change against the baseline with its interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..report import comparison as render
from ..report.summary import metric_name, slice_name


def compare_runs(paths: Sequence[str | Path], datasets_root: str | Path | None = None) -> dict[str, Any]:
    """`verifily compare` on `paths` (the first is the baseline), with the runs' own config gates."""
    from ..compare import compare

    return compare(list(paths), datasets_root=datasets_root)


def chart_data(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """Per metric, the candidate runs' change against the baseline on each slice: {slices, metrics: [{metric,
    label, direction, series: [{run, deltas, lows, highs, significant}]}]}; a slice a run was not compared on is
    None (no bar)."""
    slices: list[str] = []
    for row in comparison["rows"]:
        name = slice_name(row["slice"])
        if name not in slices:
            slices.append(name)
    out = []
    for metric in comparison["metrics"]:
        rows = {slice_name(r["slice"]): r for r in comparison["rows"] if r["metric"] == metric}
        series = []
        for i, run in enumerate(comparison["runs"][1:]):
            deltas, lows, highs, sig = [], [], [], []
            for name in slices:
                d = rows[name]["deltas"][i] if name in rows else {"status": "absent"}
                ok = d["status"] == "compared"
                deltas.append(d["delta"] if ok else None)
                lows.append(d["ci_low"] if ok else None)
                highs.append(d["ci_high"] if ok else None)
                sig.append(bool(d["significant"]) if ok else False)
            series.append({"run": run["name"], "deltas": deltas, "lows": lows, "highs": highs, "significant": sig})
        direction = (comparison.get("directions") or {}).get(metric, "higher")
        out.append({"metric": metric, "label": metric_name(metric), "direction": direction, "series": series})
    return {"slices": slices, "metrics": out, "confidence": comparison["confidence"]}


def compare_view(comparison: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "baseline": comparison["baseline"],
        "runs": [r["name"] for r in comparison["runs"]],
        "summary": list(comparison.get("summary", [])),
        "header": render.header(comparison),
        "cells": render.cells(comparison),
        "footnotes": render.footnotes(comparison),
        "dataset_diffs": [d["text"] for d in comparison.get("dataset_diffs", [])],
        "gates": list(comparison.get("gates", [])),
        "which_data": comparison.get("which_data"),
        "chart": chart_data(comparison),
    }
