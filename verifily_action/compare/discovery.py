"""compare's worst-slice discovery: for each run paired with the baseline, the combinations of one or two tag values
whose examples changed for the worse significantly more than the rest did (evaluate/discover.py on each example's
change in the task's primary score), so a comparison can name "the combination that regressed most".

Only paired runs are searched: a change per example needs the same examples in both runs. The tags are the
baseline's; the false-discovery method is the one the comparison's q-values used for that run (compare/fdr.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..evaluate import discover
from ..evaluate.metrics import DIRECTIONS, PRIMARY_SCORE
from .engine import pair
from .loading import EvalRun


def default_cap() -> int:
    """eval.discover_max_candidates' default (schemas/train.schema.json, the one place it is written)."""
    from ..schemas import load_schema

    return int(
        load_schema("train.schema.json")["properties"]["eval"]["properties"]["discover_max_candidates"]["default"]
    )


def _score(run: EvalRun) -> tuple[str, np.ndarray] | None:
    scores = run.outcomes().scores
    primary = PRIMARY_SCORE[run.task]
    for name in (primary, "loss"):
        if name in scores and (name != primary or run.task == "classification" or primary in run.results["metrics"]):
            return name, np.asarray(scores[name], dtype=float)
    return None


def search(
    runs: Sequence[EvalRun], comparison: Mapping[str, Any], max_candidates: int | None = None
) -> list[dict[str, Any]]:
    """One entry per candidate run: {run, paired, reason, result} (schemas/comparison.schema.json `discovery`)."""
    base = runs[0]
    methods = {f["run"]: f["method"] for f in comparison.get("fdr", [])}
    cap = max_candidates or default_cap()
    out = []
    for run in runs[1:]:
        p = pair(base, run)
        entry: dict[str, Any] = {"run": run.name, "paired": p.paired, "reason": None, "result": None}
        a, b = _score(base), _score(run)
        if not p.paired or p.order is None:
            entry["reason"] = "not paired with the baseline, so there is no change per example: " + p.reason
        elif a is None or b is None or a[0] != b[0]:
            entry["reason"] = "the runs have no per-example score in common"
        else:
            name, before = a
            change = b[1][p.order] - before
            entry["result"] = discover.search(
                base.tags,
                change,
                score_name=name,
                higher_is_better=DIRECTIONS[name] == "higher",
                min_size=int(base.results["min_slice_size"]),
                max_candidates=cap,
                confidence=float(comparison["confidence"]),
                fdr_method=methods.get(run.name, "bh"),
                regressions_only=True,
            )
        out.append(entry)
    return out


def summary_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """For the comparison's summary: the combination that regressed most per run, or that none did."""
    from ..report.discovery import regressed_most

    out = []
    for e in entries:
        line = regressed_most(e)
        if line:
            out.append(line)
        elif e["result"] is not None:
            tested = e["result"]["candidates"]["tested"]
            out.append(
                f"no combination of tags regressed significantly more than the rest ({e['run']}; {tested} tested)"
            )
        else:
            out.append(f"no worst-slice search for {e['run']}: {e['reason']}")
    return out
