"""Render a comparison: a terminal table (rich), GitHub-flavoured markdown (a pipe table that renders on GitHub) or
JSON. All three show the same cells, built once by `cells()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .escape import code_span, inert
from .results import scope_sentence
from .summary import fmt_change, fmt_p, fmt_value, metric_name, slice_name

FORMATS = ("table", "markdown", "json")
SMALL = "†"  # marks a slice under the eval's min_slice_size
RECONCILED = "‡"  # marks an interval made to agree with its test (compare/paired.py)
FDR_NAMES = {"bh": "Benjamini–Hochberg", "by": "Benjamini–Yekutieli"}


def _value_cell(metric: str, v: Mapping[str, Any], with_ci: bool = True) -> str:
    if v["value"] is None:
        return "absent"
    text = fmt_value(metric, v["value"])
    if with_ci and v.get("ci_low") is not None:
        text += f" [{fmt_value(metric, v['ci_low'])}, {fmt_value(metric, v['ci_high'])}]"
    return text + (SMALL if v.get("too_small") else "")


_STATUS = {"only_in_baseline": "only in baseline", "only_in_run": "only in this run"}


def run_labels(comparison: Mapping[str, Any]) -> list[str]:
    """Short column labels for the terminal, where full run names (often 40 characters) would make the table too wide
    to read: `baseline`, then `run` (or `run 2`, `run 3`, … when several are compared)."""
    n = len(comparison["runs"])
    return ["baseline"] + (["run"] if n == 2 else [f"run {i}" for i in range(2, n + 1)])


def header(comparison: Mapping[str, Any], labels: list[str] | None = None) -> list[str]:
    runs = labels or [r["name"] for r in comparison["runs"]]
    cols = ["slice", "metric"]
    for name in runs:
        cols += [name, "n"]
    conf = f"{round(comparison['confidence'] * 100):g}% CI"
    for name in runs[1:]:
        cols += [f"Δ {name}", conf, "p", "q"]
    return cols


def cells(comparison: Mapping[str, Any], with_ci: bool = True) -> list[list[str]]:
    """One list of strings per comparison row; `with_ci=False` leaves the runs' own intervals out (narrow
    terminals), the deltas' intervals stay."""
    out = []
    for row in comparison["rows"]:
        m = row["metric"]
        line = [slice_name(row["slice"]), metric_name(m) + (" ↓" if row["direction"] == "lower" else "")]
        for v in row["values"]:
            line += [_value_cell(m, v, with_ci), str(v["n"])]
        for d in row["deltas"]:
            if d["status"] != "compared":
                line += [_STATUS.get(d["status"], "absent"), "", "", ""]
                continue
            delta = fmt_change(m, d["delta"], False)
            if d["significant"]:
                delta += " ▲" if d["improved"] else " ▼"
            ci = f"{fmt_change(m, d['ci_low'], False)}…{fmt_change(m, d['ci_high'], False)}"
            ci += RECONCILED if d.get("reconciled") else ""
            p = fmt_p(d["p_value"]).removeprefix("p=") + ("" if d["method"] == "paired" else " u")
            q = fmt_p(d.get("q_value"), "q").removeprefix("q=")
            line += [delta, ci, p, q]
        out.append(line)
    return out


def footnotes(comparison: Mapping[str, Any]) -> list[str]:
    alpha = f"{1 - comparison['confidence']:.2g}"
    notes = [
        "Δ: the run minus the baseline, in points (hundredths) for metrics in [0, 1]; "
        f"▲/▼: significant improvement/regression after false-discovery control (q < {alpha}); ↓: lower is better.",
        f"q: {_families(comparison)}; p and the interval are each slice's own test, and agree: the interval leaves "
        f"out 0 exactly when p < {alpha}.",
    ]
    if any(d.get("reconciled") for r in comparison["rows"] for d in r["deltas"]):
        notes.append(
            f"{RECONCILED}: the bootstrap interval and the test disagreed; the test decides, so the interval was "
            "extended to 0 (the test keeps 0) or p taken from the interval (the interval holds 0)."
        )
    if any(d["status"] == "compared" and d["method"] != "paired" for r in comparison["rows"] for d in r["deltas"]):
        notes.append("u: unpaired (the runs' examples differ): independent bootstrap interval and p-value.")
    if any(v.get("too_small") for r in comparison["rows"] for v in r["values"]):
        notes.append(f"{SMALL}: fewer examples than the eval's min_slice_size; read with care.")
    if any(r["slice"] and r["metric"] == "macro_f1" for r in comparison["rows"]):
        scope = scope_sentence(comparison.get("slice_macro_f1"))
        notes += [scope[0].upper() + scope[1:] + "."] if scope else []
    notes += [f"warning: {w}" for w in comparison.get("warnings", [])]
    return notes + list(comparison.get("notes", []))


def _families(comparison: Mapping[str, Any]) -> str:
    """How the q-values were adjusted: `the p-value adjusted by Benjamini–Hochberg over the run's 18 slice × metric
    tests`, or per candidate run when their families differ."""
    fams = comparison.get("fdr", [])
    said = {(FDR_NAMES.get(f["method"], f["method"]), f["tests"]) for f in fams}
    if len(said) == 1:
        ((name, m),) = said
        return f"the p-value adjusted by {name} over the run's {m} slice × metric tests"
    each = "; ".join(f"{f['run']}: {FDR_NAMES.get(f['method'], f['method'])}, {f['tests']}" for f in fams)
    return f"the p-value adjusted over each run's slice × metric tests ({each})"


# ---------------------------------------------------------------- markdown


def _md(text: str) -> str:
    """One line of markdown text (a bullet or a table cell) made inert: it may quote tag values and run names."""
    return inert(text, table_cell=True, max_len=None)


def markdown(comparison: Mapping[str, Any]) -> str:
    """Summary bullets, a GitHub pipe table, dataset diffs, gate results and notes; every text from data made inert
    (report.escape), so the output can be pasted into a pull request as it is."""
    cols = header(comparison)
    lines = [f"### Comparison against `{code_span(comparison['baseline'])}` (baseline)", ""]
    lines += [f"- {_md(s)}" for s in comparison.get("summary", [])]
    lines += [""] if comparison.get("summary") else []
    lines.append("| " + " | ".join(_md(c) for c in cols) + " |")
    # Text columns left, numbers right.
    lines.append("|" + "|".join(":---" if i < 2 else "---:" for i in range(len(cols))) + "|")
    for line in cells(comparison):
        lines.append("| " + " | ".join(_md(c) for c in line) + " |")
    lines.append("")
    for diff in comparison.get("dataset_diffs", []):
        lines.append(f"- Data: {_md(diff['text'])}")
    for g in comparison.get("gates", []):
        mark = "❌" if g["failed"] else ("✅" if g["checked"] else "➖")
        lines.append(f"- {mark} gate `{code_span(g['rule'])}`: {_md(g['message'])}")
    if comparison.get("which_data"):
        from .attribution import markdown_lines

        lines += markdown_lines(comparison["which_data"]) + [""]
    lines += [f"<sub>{_md(n)}</sub><br>" for n in footnotes(comparison)]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- terminal


def print_table(comparison: Mapping[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    labels = run_labels(comparison)
    head, body = header(comparison, labels), cells(comparison, with_ci=False)
    # Never squeeze the table below its natural width (rich would cut numbers): a narrow or piped terminal gets
    # longer lines instead.
    natural = sum(max(len(r[i]) for r in [head, *body]) + 3 for i in range(len(head))) + 2
    console = Console()
    if console.width < natural:
        console = Console(width=natural)
    for s in comparison.get("summary", []):
        console.print(s, highlight=False, markup=False)
    legend = "\n".join(f"  {label:<8} {r['name']}" for label, r in zip(labels, comparison["runs"], strict=True))
    table = Table(title=f"Comparison\n{legend}", title_justify="left", box=box.SIMPLE_HEAD)
    for i, c in enumerate(head):
        table.add_column(c, justify="left" if i < 2 else "right", no_wrap=True)
    previous = None
    for line in body:
        # Show each slice name once: the rows of one slice follow each other.
        shown = [line[0] if line[0] != previous else "", *line[1:]]
        previous = line[0]
        table.add_row(*shown)
    console.print(table)
    for diff in comparison.get("dataset_diffs", []):
        console.print(f"data: {diff['text']}", highlight=False, markup=False)
    gates = comparison.get("gates", [])
    for g in gates:
        if g["failed"] or not g["checked"]:
            console.print(f"gate {g['message']}", highlight=False, markup=False)
    passed = sum(1 for g in gates if g["checked"] and not g["failed"])
    if passed:
        console.print(f"gates: {passed} check(s) passed", highlight=False, markup=False)
    if comparison.get("which_data"):
        from .attribution import text_lines

        for text in text_lines(comparison["which_data"]):
            console.print(text, highlight=False, markup=False)
    for n in footnotes(comparison):
        console.print(n, style="dim", highlight=False, markup=False)


def to_json(comparison: Mapping[str, Any]) -> str:
    return json.dumps(comparison, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
