"""A Mermaid bar chart of a comparison (GitHub renders ```mermaid blocks in comments and job summaries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .escape import mermaid_label
from .summary import UNBOUNDED, metric_name, slice_name


def chart(comparison: Mapping[str, Any]) -> str:
    """The first metric's change per slice; empty when fewer than two slices were compared."""
    metric = comparison["metrics"][0]
    bars = [
        (slice_name(r["slice"]), r["deltas"][0]["delta"])
        for r in comparison["rows"]
        if r["metric"] == metric and r["deltas"] and r["deltas"][0].get("status") == "compared"
    ]
    if len(bars) < 2:
        return ""
    points = metric not in UNBOUNDED
    values = [round(v * 100, 2) if points else round(v, 4) for _, v in bars]
    unit = "points" if points else "change"
    labels = ", ".join(f'"{mermaid_label(n)}"' for n, _ in bars)
    return (
        f'\n```mermaid\nxychart-beta\n  title "Δ {metric_name(metric)} by slice ({unit})"\n'
        f'  x-axis [{labels}]\n  y-axis "Δ {unit}"\n  bar [{", ".join(f"{v:g}" for v in values)}]\n```\n'
    )
