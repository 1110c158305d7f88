"""A PNG chart of a comparison: every run's metric value on the whole eval set and on each tag slice, with its
confidence interval as an error bar (`verifily compare --chart FILE.png`).

One panel per metric; slices along the x axis (the example count under each name), the runs side by side within a
slice in the order given (the baseline first). matplotlib is imported inside `write_chart` with the Agg backend, so
`compare` without `--chart` never pays for it and no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from .summary import metric_name, slice_name

DPI = 100
_PANEL_HEIGHT = 2.8  # inches per metric panel
_SLICE_WIDTH = 1.7  # inches per slice on the x axis
_MIN_WIDTH = 7.0
_MARGIN = 1.2  # inches for the title and the legend


def figure_size(n_slices: int, n_metrics: int) -> tuple[float, float]:
    """The figure's size in inches; the PNG is this times DPI pixels (the layout never changes the canvas)."""
    return max(_MIN_WIDTH, 1.5 + _SLICE_WIDTH * n_slices), _MARGIN + _PANEL_HEIGHT * max(n_metrics, 1)


def _slices(comparison: Mapping[str, Any]) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for row in comparison["rows"]:
        if row["slice"] not in seen:
            seen.append(row["slice"])
    return seen


def write_chart(comparison: Mapping[str, Any], path: str | Path) -> Path:
    """Draw `comparison` (the dict `compare()` returns) into the PNG file `path` (parent folders created)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI runners, containers
    import matplotlib.pyplot as plt

    runs = [r["name"] for r in comparison["runs"]]
    metrics = list(comparison["metrics"])
    slices = _slices(comparison)
    rows = {(slice_name(r["slice"]), r["metric"]): r for r in comparison["rows"]}
    conf = round(float(comparison["confidence"]) * 100)

    width, height = figure_size(len(slices), len(metrics))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(width, height), dpi=DPI, squeeze=False, sharex=True)
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
    spread = 0.6  # share of a slice's x slot the runs' points use
    offsets = [0.0] if len(runs) == 1 else [spread * (i / (len(runs) - 1) - 0.5) for i in range(len(runs))]
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for i, run in enumerate(runs):
            for x, key in enumerate(slices):
                row = rows.get((slice_name(key), metric))
                v = row["values"][i] if row else None
                if not v or v["value"] is None:
                    continue
                value = v["value"]
                lo = v["ci_low"] if v["ci_low"] is not None else value
                hi = v["ci_high"] if v["ci_high"] is not None else value
                ax.errorbar(
                    x + offsets[i],
                    value,
                    yerr=[[value - lo], [hi - value]],
                    fmt="o",
                    color=colors[i % len(colors)],
                    mfc="white" if v.get("too_small") else colors[i % len(colors)],  # hollow: under min_slice_size
                    capsize=4,
                    label=run if x == 0 else None,
                )
                ax.annotate(
                    f"{value:.3f}",
                    (x + offsets[i], hi),
                    textcoords="offset points",
                    xytext=(0, 4),
                    ha="center",
                    fontsize=8,
                )
        direction = (comparison.get("directions") or {}).get(metric, "higher")
        ax.set_ylabel(f"{metric_name(metric)} ({direction} is better)", fontsize=9)
        ax.margins(y=0.25)
        ax.grid(axis="y", alpha=0.3)
        for x in range(1, len(slices)):
            ax.axvline(x - 0.5, color="0.85", lw=0.8)
    counts = []
    for key in slices:
        row = next(r for r in comparison["rows"] if r["slice"] == key)
        # one line per tag of a cross slice, so neighbouring labels do not run into each other
        label = "\n".join(f"{k}={v}" for k, v in key.items()) if key else slice_name(key)
        counts.append(f"{label}\nn={row['values'][0]['n']}")
    last = axes[-1, 0]
    last.set_xticks(range(len(slices)), counts)
    last.set_xlim(-0.5, len(slices) - 0.5)
    axes[0, 0].legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(runs), 2), frameon=False)
    title = f"Per-slice metrics with {conf}% confidence intervals (baseline: {comparison['baseline']})"
    fig.suptitle(title, fontsize=10)
    fig.set_layout_engine("constrained")
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=DPI)
    except OSError as e:
        raise VerifilyError(f"cannot write the chart {out}: {e.strerror or e}", hint="choose a writable path") from e
    finally:
        plt.close(fig)
    return out
