"""Plain-English lines about a comparison: one per significant change, then what stayed flat, then slices present in
one run only. For example::

    macro-F1 on source=synthetic improved: 0.68 → 0.72 (+4.0 pts, 95% CI +1.2…+6.8, p=0.003)

Metrics bounded in [0, 1] are shown with changes in points (hundredths); loss and perplexity in their own units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tags import slice_label

DISPLAY = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "micro_f1": "micro-F1",
    "exact_match": "exact match",
    "token_f1": "token F1",
    "rouge_l": "ROUGE-L",
    "loss": "loss",
    "perplexity": "perplexity",
}
UNBOUNDED = ("loss", "perplexity")  # not in [0, 1]: no "points"


def metric_name(metric: str) -> str:
    return DISPLAY.get(metric, metric)


slice_name = slice_label  # `source=human`; `overall` for the whole set


def where(key: Mapping[str, str]) -> str:
    return f"on {slice_name(key)}" if key else "overall"


def fmt_value(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if metric in UNBOUNDED else f"{value:.2f}"


def fmt_change(metric: str, value: float | None, unit: bool = True) -> str:
    """+4.0 pts (bounded metrics) or +0.012 (loss, perplexity); a real minus sign."""
    if value is None:
        return "–"
    text = f"{value:+.3f}" if metric in UNBOUNDED else f"{value * 100:+.1f}" + (" pts" if unit else "")
    return text.replace("-", "−")


def fmt_p(p: float | None) -> str:
    if p is None:
        return "p=–"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.1 else f"p={p:.2f}"


def change_text(row: Mapping[str, Any], i: int, confidence: float) -> str:
    """`0.68 → 0.72 (+4.0 pts, 95% CI +1.2…+6.8, p=0.003)` for the i-th candidate of a comparison row."""
    m = row["metric"]
    d = row["deltas"][i]
    before, after = row["values"][0]["value"], row["values"][i + 1]["value"]
    head = f"{fmt_value(m, before)} → {fmt_value(m, after)}"
    if d["status"] != "compared":
        return head + f" ({d['status'].replace('_', ' ')})"
    ci = f"{round(confidence * 100):g}% CI {fmt_change(m, d['ci_low'], False)}…{fmt_change(m, d['ci_high'], False)}"
    extra = "" if d["method"] == "paired" else ", unpaired"
    return f"{head} ({fmt_change(m, d['delta'])}, {ci}, {fmt_p(d['p_value'])}{extra})"


def lines(comparison: Mapping[str, Any]) -> list[str]:
    """The summary: significant changes (largest first), what is flat, slices found in one run only."""
    rows = comparison["rows"]
    runs = [r["name"] for r in comparison["runs"]]
    confidence = float(comparison["confidence"])
    out: list[str] = []
    for i, run in enumerate(runs[1:]):
        prefix = f"{run} vs {runs[0]}: " if len(runs) > 2 else ""
        sig, flat, lonely = [], [], []
        for row in rows:
            d = row["deltas"][i]
            label = f"{metric_name(row['metric'])} {where(row['slice'])}"
            if d["status"] == "compared" and d["significant"]:
                verb = "improved" if d["improved"] else "regressed"
                sig.append((abs(d["delta"]), f"{prefix}{label} {verb}: {change_text(row, i, confidence)}"))
            elif d["status"] == "compared":
                flat.append(label)
            elif d["status"] in ("only_in_baseline", "only_in_run") and row["metric"] == comparison["metrics"][0]:
                holder = runs[0] if d["status"] == "only_in_baseline" else run
                n = row["values"][0 if d["status"] == "only_in_baseline" else i + 1]["n"]
                lonely.append(f"{prefix}{slice_name(row['slice'])} is only in {holder} (n={n}); not compared")
        out.extend(text for _, text in sorted(sig, key=lambda t: -t[0]))
        if flat:
            out.append(f"{prefix}no significant change ({round(confidence * 100):g}% confidence): {', '.join(flat)}.")
        out.extend(lonely)
    return out
