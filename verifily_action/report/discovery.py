"""Worst-slice discovery for people (evaluate/discover.py's `discovery`): the search's size in one line, the slices
found as a terminal table or a markdown table, and compare's "the combination that regressed most" sentence.

Effects and changes are in points (hundredths) for scores in [0, 1] and in the score's own units for the loss, as
everywhere in report/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .escape import inert
from .summary import UNBOUNDED, fmt_change, fmt_p, fmt_q, fmt_value, metric_name, slice_name


def search_line(discovery: Mapping[str, Any]) -> str:
    """`discovery: 35 candidate slices tested (one or two tag values, n ≥ 30; cap 1000): 1 significantly worse than
    the rest (accuracy; Benjamini–Hochberg, q < 0.05)`."""
    c = discovery["candidates"]
    size = f"{c['tested']} candidate slices tested"
    if c["possible"] > c["tested"]:
        size = f"{c['tested']} of {c['possible']} candidate slices tested (the largest; cap {c['cap']})"
    else:
        size += f" (cap {c['cap']})"
    size += f": one or two tag values, n ≥ {discovery['min_slice_size']}"
    found = len(discovery["found"])
    what = f"{found} significantly worse than the rest" if found else "no slice is significantly worse than the rest"
    from ..compare.fdr import NAMES  # the methods' names, where they are defined

    fdr = discovery["fdr"]
    how = f"{metric_name(discovery['score'])}; {NAMES.get(fdr['method'], fdr['method'])}, q < {fdr['level']:g}"
    return f"discovery: {size}; {what} ({how})"


def explained_line(discovery: Mapping[str, Any]) -> str:
    n = discovery.get("explained_by_one_tag", 0)
    if not n:
        return ""
    return f"{n} worse combination(s) left out: one of their two tags explains them (it is listed alone)"


def _row(discovery: Mapping[str, Any], f: Mapping[str, Any]) -> list[str]:
    score = discovery["score"]
    return [
        slice_name(f["key"]),
        str(f["n"]),
        fmt_value(score, f["value"]),
        fmt_value(score, f["rest"]),
        fmt_change(score, f["effect"], False),
        fmt_p(f["p_value"]).removeprefix("p").removeprefix("="),
        fmt_q(f["q_value"]).removeprefix("q").removeprefix("="),
    ]


def _header(discovery: Mapping[str, Any]) -> list[str]:
    unit = "" if discovery["score"] in UNBOUNDED else " (pts)"
    return ["slice", "n", metric_name(discovery["score"]), "rest", f"Δ vs rest{unit}", "p", "q"]


def table(discovery: Mapping[str, Any], top: int = 10) -> Any:
    """A rich Table of the slices found (the `top` worst)."""
    from rich.table import Table

    t = Table(title="worst slices", title_justify="left")
    for i, c in enumerate(_header(discovery)):
        t.add_column(c, justify="left" if i == 0 else "right")
    for f in discovery["found"][:top]:
        t.add_row(*_row(discovery, f))
    return t


def print_discovery(discovery: Mapping[str, Any], console: Any) -> None:
    console.print(search_line(discovery), highlight=False, markup=False)
    if discovery["found"]:
        console.print(table(discovery))
        shown = min(len(discovery["found"]), 10)
        if len(discovery["found"]) > shown:
            console.print(f"(the {shown} worst of {len(discovery['found'])}; all in the JSON)", highlight=False)
    extra = explained_line(discovery)
    if extra:
        console.print(extra, style="dim", highlight=False, markup=False)


def markdown(discovery: Mapping[str, Any], top: int = 5) -> str:
    """The slices found as a pipe table under a heading, every text from data made inert."""
    lines = ["", "**Worst slices**", "", inert(search_line(discovery).removeprefix("discovery: "), max_len=None)]
    if discovery["found"]:
        lines += ["", "| " + " | ".join(_header(discovery)) + " |", "|:---|" + "---:|" * 6]
        for f in discovery["found"][:top]:
            lines.append("| " + " | ".join(inert(c, table_cell=True) for c in _row(discovery, f)) + " |")
    return "\n".join(lines) + "\n"


def regressed_most(entry: Mapping[str, Any]) -> str | None:
    """compare: `the combination that regressed most (run): origin=x&source=y, n=85: accuracy −38.9 pts (the rest
    −1.2 pts), q<0.001`; None when nothing regressed significantly or the search did not run."""
    d = entry.get("result")
    if not d or not d["found"]:
        return None
    f = d["found"][0]
    score = d["score"]
    what = "combination" if len(f["key"]) > 1 else "slice"
    return (
        f"the {what} that regressed most ({entry['run']}): {slice_name(f['key'])}, n={f['n']}: "
        f"{metric_name(score)} {fmt_change(score, f['value'])} (the rest {fmt_change(score, f['rest'])}), "
        f"{fmt_q(f['q_value'])}"
    )
