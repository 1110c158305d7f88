"""The terminal view of eval_results.json: a rich table of overall and per-slice metrics with CIs and n, and the
notes (e.g. truncation) the CLI prints on stderr."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runs.layout import EVAL_FILES
from ..tags import slice_label
from .escape import inert
from .summary import fmt_value, metric_name


def _cell(iv: Mapping[str, float] | None) -> str:
    if not iv:
        return "-"
    return f"{iv['value']:.3f} [{iv['ci_low']:.3f}, {iv['ci_high']:.3f}]"


_MACRO_F1_SCOPE = {
    "slice_labels": "a slice's macro-F1 averages over the labels of its references",
    "all_labels": "a slice's macro-F1 averages over every label seen in it (references and predictions)",
}


def scope_sentence(scope: str | None) -> str:
    """`eval.slice_macro_f1` in words ("" for None: results written before it was recorded)."""
    return _MACRO_F1_SCOPE.get(str(scope), "")


def macro_f1_scope(results: Mapping[str, Any]) -> str:
    """Which labels a slice's macro-F1 averages over, in words; "" when no slice reports macro-F1 (or the file
    predates the record)."""
    if "macro_f1" not in results["metrics"] or not results.get("slices"):
        return ""
    return scope_sentence(results.get("slice_macro_f1"))


def results_table(results: Mapping[str, Any]) -> Any:
    """A rich Table: one row for the whole set, one per slice (too-small slices marked and dimmed)."""
    from rich.table import Table

    conf = round(100 * float(results["confidence"]))
    caption = f"value [{conf}% bootstrap CI, {results['bootstrap_resamples']} resamples]"
    scope = macro_f1_scope(results)
    table = Table(
        title=f"{results['eval_name']} · run {results['run_id']} · {results['task']}",
        caption=caption + (f"\n{scope}" if scope else ""),
    )
    table.add_column("slice")
    table.add_column("n", justify="right")
    for m in results["metrics"]:
        arrow = "↑" if results["directions"].get(m) == "higher" else "↓"
        table.add_column(f"{m} {arrow}", justify="right")
    table.add_row("overall", str(results["n"]), *(_cell(results["overall"].get(m)) for m in results["metrics"]))
    for s in results["slices"]:
        name = slice_label(s["key"])
        cells = [_cell(s["metrics"].get(m)) for m in results["metrics"]]
        if s["too_small"]:
            table.add_row(f"{name} (too small)", str(s["n"]), *cells, style="dim")
        else:
            table.add_row(name, str(s["n"]), *cells)
    return table


def notes(results: Mapping[str, Any]) -> list[str]:
    """Things the user should know about how the numbers were made, worded as training words its notes (the CLI
    prints them on stderr as `note: ...`, so `--json` keeps stdout clean)."""
    out = []
    trunc = results.get("truncation") or {}
    if trunc.get("truncated"):
        note = (
            f"{trunc['truncated']} of {results['n']} rows are longer than max_length {trunc['max_length']} tokens "
            f"and were truncated (longest: {trunc['longest']}"
        )
        if trunc.get("references"):
            note += f"; inputs cut: {trunc['inputs']}, references cut for the loss: {trunc['references']}"
        out.append(note + ")")
    return out


def print_results(results: Mapping[str, Any], eval_dir: str | None = None) -> None:
    from rich.console import Console

    console = Console()
    console.print(results_table(results))
    breakdown = results.get("failure_breakdown") or []
    if breakdown and breakdown[0]["failures"]:
        console.print(f"failures: {breakdown[0]['sentence']}")
    unseen = results.get("unseen_labels") or {}
    if unseen.get("count"):
        labels = ", ".join(f"{k} ({v})" for k, v in unseen["labels"].items())
        console.print(f"[yellow]warning:[/] {unseen['count']} example(s) have labels the model never saw: {labels}")
    small = [s for s in results["slices"] if s["too_small"]]
    if small:
        console.print(
            f"[yellow]note:[/] {len(small)} slice(s) have fewer than {results['min_slice_size']} examples "
            "(too small: their intervals are wide)"
        )
    if results.get("discovery"):
        from .discovery import print_discovery

        print_discovery(results["discovery"], console)
    if eval_dir:
        console.print(f"wrote {eval_dir}/{', '.join(EVAL_FILES)}")


# ---------------------------------------------------------------- markdown (the PR comment and job summary)


def results_markdown(results: Mapping[str, Any]) -> str:
    """This run's own metrics per slice (no baseline to compare with)."""
    metrics = list(results["metrics"])
    conf = round(float(results["confidence"]) * 100)

    def cell(m: str, v: Mapping[str, Any] | None) -> str:
        if not v:
            return "–"
        return f"{fmt_value(m, v['value'])} [{fmt_value(m, v['ci_low'])}, {fmt_value(m, v['ci_high'])}]"

    name = inert(results["eval_name"], table_cell=True)
    lines = [f"### This run on {name} (value [{conf}% CI])", ""]
    lines.append("| slice | n | " + " | ".join(inert(metric_name(m), table_cell=True) for m in metrics) + " |")
    lines.append("|:---|---:|" + "---:|" * len(metrics))
    lines.append(
        f"| overall | {results['n']} | " + " | ".join(cell(m, results["overall"].get(m)) for m in metrics) + " |"
    )
    for s in results["slices"]:
        label = inert(slice_label(s["key"]), table_cell=True) + (" †" if s["too_small"] else "")
        lines.append(f"| {label} | {s['n']} | " + " | ".join(cell(m, s["metrics"].get(m)) for m in metrics) + " |")
    scope = macro_f1_scope(results)
    if scope:
        lines += ["", f"<sub>{scope[0].upper() + scope[1:]}.</sub>"]
    text = "\n".join(lines) + "\n"
    if results.get("discovery"):
        from .discovery import markdown

        text += markdown(results["discovery"])
    return text


def failure_breakdown(results: Mapping[str, Any], top: int = 3) -> str:
    """The failure breakdown: the tag values that gather more than their share of the failures."""
    entries = results.get("failure_breakdown") or []
    over = [e for e in entries if e["share_of_failures"] > e["share_of_eval"]][:top]
    if not over:
        return ""
    return "\n**Where this run fails**\n\n" + "".join(f"- {inert(e['sentence'])}\n" for e in over)
