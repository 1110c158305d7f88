"""The "Which data" section of a comparison (compare/attribution.py): segments that helped and hurt the slice that
moved most, and the train rows valued lowest, as markdown (the PR comment, `compare -f markdown`) and as text lines
(the terminal). Every value from the run goes through the one escaper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .escape import inert


def _cell(text: str) -> str:
    return inert(text, table_cell=True, max_len=None)


def _where(block: Mapping[str, Any]) -> str:
    moved = block.get("moved")
    where = "the whole eval set" if block["slice"] == "all" else f"slice {block['slice']}"
    return where + (f" (moved {moved * 100:+.1f} pts, the largest change)" if moved is not None else "")


def _num(x: float) -> str:
    """3 significant digits: KNN-Shapley values are hundredths to thousandths, TracIn's often millionths."""
    return f"{x:+.3g}"


def _interval(s: Mapping[str, Any]) -> str:
    return f"{_num(s['sum'])} [{_num(s['ci_low'])}, {_num(s['ci_high'])}]"


def _tags(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags.items())


def markdown_lines(block: Mapping[str, Any]) -> list[str]:
    conf = round(100 * block["confidence"])
    lines = [
        "",
        f"#### Which data ({_cell(block['method'])} of {_cell(block['run'])}, on {_cell(_where(block))})",
        "",
        f"| segment | rows | value [{conf}% interval] | |",
        "|:---|---:|---:|:---|",
    ]
    order = {"hurt": 0, "helped": 1, "unclear": 2}
    for s in sorted(block["segments"], key=lambda s: (order[s["verdict"]], s["sum"])):
        mark = {"hurt": "▼ hurt", "helped": "▲ helped", "unclear": "unclear"}[s["verdict"]]
        lines.append(f"| {_cell(s['key'] + '=' + s['value'])} | {s['rows']:,} | {_interval(s)} | {mark} |")
    rows = block["harmful_rows"]
    if rows:
        lines += ["", f"The {len(rows)} train rows valued lowest (most harmful first):", ""]
        lines += ["| value | id | tags | label | text |", "|---:|:---|:---|:---|:---|"]
        for r in rows:
            cells = [r["id"], _tags(r["tags"]), r["label"], r["text"]]
            lines.append(f"| {_num(r['value'])} | " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def text_lines(block: Mapping[str, Any]) -> list[str]:
    conf = round(100 * block["confidence"])
    lines = [f"which data ({block['method']} of {block['run']}, on {_where(block)}; {conf}% intervals):"]
    for s in sorted(block["segments"], key=lambda s: s["sum"]):
        lines.append(f"  {s['key']}={s['value']}  rows {s['rows']:,}  {_interval(s)}  {s['verdict']}")
    for r in block["harmful_rows"]:
        label = f"label={r['label']}  " if r["label"] else ""
        lines.append(f"  {_num(r['value'])}  {r['id']}  [{_tags(r['tags'])}]  {label}{r['text'][:60]}")
    return lines
