"""Plain-English lines about a comparison: one per significant change, then what stayed flat, then the smallest change
the comparison could have seen where it matters, then slices present in one run only. For example::

    macro-F1 on source=synthetic improved: 0.68 → 0.72 (+4.0 pts, 95% CI +1.2…+6.8, p=0.003), q=0.02
    no significant change (95% confidence, q-values over 9 tests): macro-F1 overall, macro-F1 on source=human.
    macro-F1 on origin=sst2, n=200: changes under 4.1 pts cannot be seen here (80% power) — add eval rows

"Significant" is after false-discovery control: q < 1 - confidence (compare/fdr.py). Metrics bounded in [0, 1] are
shown with changes in points (hundredths); loss, perplexity and dpo's reward margin in their own units.
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
    "preference_accuracy": "preference accuracy",
    "reward_margin": "reward margin",
}
UNBOUNDED = ("loss", "perplexity", "reward_margin")  # not in [0, 1]: no "points"


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
    """+4.0 pts (bounded metrics) or +0.012 (loss, perplexity, reward margin); a real minus sign."""
    if value is None:
        return "–"
    text = f"{value:+.3f}" if metric in UNBOUNDED else f"{value * 100:+.1f}" + (" pts" if unit else "")
    return text.replace("-", "−")


def fmt_p(p: float | None, name: str = "p") -> str:
    if p is None:
        return f"{name}=–"
    if p < 0.001:
        return f"{name}<0.001"
    return f"{name}={p:.3f}" if p < 0.1 else f"{name}={p:.2f}"


def fmt_q(q: float | None) -> str:
    return fmt_p(q, "q")


def change_text(row: Mapping[str, Any], i: int, confidence: float) -> str:
    """`0.68 → 0.72 (+4.0 pts, 95% CI +1.2…+6.8, p=0.003), q=0.02` for the i-th candidate of a comparison row."""
    m = row["metric"]
    d = row["deltas"][i]
    before, after = row["values"][0]["value"], row["values"][i + 1]["value"]
    head = f"{fmt_value(m, before)} → {fmt_value(m, after)}"
    if d["status"] != "compared":
        return head + f" ({d['status'].replace('_', ' ')})"
    ci = f"{round(confidence * 100):g}% CI {fmt_change(m, d['ci_low'], False)}…{fmt_change(m, d['ci_high'], False)}"
    extra = "" if d["method"] == "paired" else ", unpaired"
    q = f", {fmt_q(d['q_value'])}" if d.get("q_value") is not None else ""
    return f"{head} ({fmt_change(m, d['delta'])}, {ci}, {fmt_p(d['p_value'])}{extra}){q}"


def blind_spot(comparison: Mapping[str, Any], i: int) -> str | None:
    """`macro-F1 on origin=sst2, n=200: changes under 4.1 pts cannot be seen here (80% power) — add eval rows`: the
    slice of the first metric with the largest minimum detectable effect among those compared, large enough
    (min_slice_size) and without a significant change; None when there is none."""
    metric = comparison["metrics"][0]
    best = None
    for row in comparison["rows"]:
        d = row["deltas"][i]
        small = any(v.get("too_small") for v in (row["values"][0], row["values"][i + 1]))
        if row["metric"] != metric or d["status"] != "compared" or d["significant"] or small:
            continue
        if d.get("mde") is not None and (best is None or d["mde"] > best[1]["mde"]):
            best = (row, d)
    if best is None:
        return None
    row, d = best
    n = min(row["values"][0]["n"], row["values"][i + 1]["n"])
    return (
        f"{metric_name(metric)} {where(row['slice'])}, n={n}: changes under {fmt_change(metric, d['mde']).lstrip('+')} "
        "cannot be seen here (80% power) — add eval rows"
    )


def lines(comparison: Mapping[str, Any]) -> list[str]:
    """The summary: significant changes (largest first), what is flat, slices found in one run only."""
    rows = comparison["rows"]
    runs = [r["name"] for r in comparison["runs"]]
    confidence = float(comparison["confidence"])
    families = {f["run"]: f for f in comparison.get("fdr", [])}
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
        family = families.get(run)
        level = f"{round(confidence * 100):g}% confidence"
        level += f", q-values over {family['tests']} tests" if family else ""
        if flat:
            out.append(f"{prefix}no significant change ({level}): {', '.join(flat)}.")
        blind = blind_spot(comparison, i)
        if blind:
            out.append(prefix + blind)
        out.extend(lonely)
    return out
