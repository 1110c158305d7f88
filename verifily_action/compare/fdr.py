"""False-discovery control across a comparison's slices: a q-value beside every p-value, and `significant` from it.

With ten or more slices each tested at 95 %, some slice "changes significantly" by chance on most comparisons. So the
tests of one candidate run against the baseline (every slice x metric cell of the comparison: one family of m tests)
are adjusted together, and a change is significant when its q-value is below 1 - confidence. Then, among the
changes flagged, the expected share of flukes (the false discovery rate) is at most 1 - confidence.

  bh  Benjamini & Hochberg (1995): q_(i) = min over j >= i of min(1, m * p_(j) / j), p sorted ascending. Controls
      the rate when the tests are independent or positively dependent (PRDS: Benjamini & Yekutieli 2001, which
      covers overlapping slices and metrics computed on the same examples moving together).
  by  Benjamini & Yekutieli (2001): BH times c(m) = 1 + 1/2 + ... + 1/m; controls the rate under any dependence, at
      the cost of power (c(40) is about 4.3).

The numbers equal scipy.stats.false_discovery_control(p, method="bh"|"by") and statsmodels' multipletests(p,
method="fdr_bh"|"fdr_by") (tests/test_compare_fdr.py checks both). They are computed here with numpy because
importing scipy.stats takes over a second, more than compare's whole latency budget (see paired.py); statsmodels is
not installed in the image.

Which method: `verifily compare --fdr`, else each candidate run's config (`eval.fdr`; default in
schemas/train.schema.json), so the Action follows the config of the pull request's run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("bh", "by")
NAMES = {"bh": "Benjamini–Hochberg", "by": "Benjamini–Yekutieli"}


def adjust(p_values: Sequence[float] | np.ndarray, method: str = "bh") -> np.ndarray:
    """q-values of `p_values` (any order; returned in the same order)."""
    p = np.asarray(p_values, dtype=float)
    return adjust_rows(p[None, :], method)[0] if p.size else _check(method, p.copy())


def adjust_rows(p_values: np.ndarray, method: str = "bh") -> np.ndarray:
    """`adjust` on each row of a (simulations x m) matrix at once (bench/fdr_simulation.py, tests)."""
    p = _check(method, np.asarray(p_values, dtype=float))
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    scaled = np.take_along_axis(p, order, axis=1) * m / np.arange(1, m + 1)
    if method == "by":
        scaled *= float(np.sum(1.0 / np.arange(1, m + 1)))
    # Step-up: each q is the smallest scaled value at its rank or above.
    q_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[:, ::-1], axis=1)[:, ::-1])
    q = np.empty_like(q_sorted)
    np.put_along_axis(q, order, q_sorted, axis=1)
    return q


def _check(method: str, p: np.ndarray) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"unknown false-discovery method {method!r}; choose one of {', '.join(METHODS)}")
    return p


def configured(run_dir: Path) -> str:
    """The run config's `eval.fdr`; the schema's default when the config does not say (runs trained before it
    existed) or the run folder has no config.yaml."""
    from ..runs.layout import CONFIG
    from ..schemas import load_schema
    from ..yamlsource import load_yaml

    path = run_dir / CONFIG
    cfg = load_yaml(path, "run config") if path.is_file() else None
    ecfg = cfg.get("eval") if isinstance(cfg, dict) else None
    method = ecfg.get("fdr") if isinstance(ecfg, dict) else None
    if method in METHODS:
        return str(method)
    return str(load_schema("train.schema.json")["properties"]["eval"]["properties"]["fdr"]["default"])


def apply(comparison: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """Add `q_value` to every delta of the comparison's rows, set `significant` to q < 1 - confidence, and record
    each family in `comparison["fdr"]`. `methods` holds one method per candidate run (in the order of the rows'
    deltas). Not-compared cells get q_value None and are no test."""
    alpha = 1.0 - float(comparison["confidence"])
    rows = comparison["rows"]
    candidates = [r["name"] for r in comparison["runs"][1:]]
    families = []
    for i, (run, method) in enumerate(zip(candidates, methods, strict=True)):
        cells = [row["deltas"][i] for row in rows if _tested(row["deltas"][i])]
        q = adjust([d["p_value"] for d in cells], method)
        for d, qv in zip(cells, q, strict=True):
            d["q_value"] = float(qv)
            d["significant"] = bool(qv < alpha)
        for row in rows:
            d = row["deltas"][i]
            if not _tested(d):
                d["q_value"] = None
                d["significant"] = False
        families.append({"run": run, "method": method, "tests": len(cells)})
        coarse = _resolution_note(run, cells, alpha, int(comparison["resamples"]))
        if coarse:
            comparison.setdefault("notes", []).append(coarse)
    comparison["fdr"] = families
    return comparison


def _resolution_note(run: str, cells: Sequence[Mapping[str, Any]], alpha: float, resamples: int) -> str | None:
    """A resampled p-value cannot go below 1 / (resamples + 1), while BH flags a lone change only at
    p <= alpha / m: with many tests such a change cannot be seen at all, and the output should say so."""
    m = len(cells)
    floor = 1.0 / (resamples + 1)
    if not m or floor <= alpha / m or all(d.get("test") == "mcnemar_exact" for d in cells):
        return None
    return (
        f"{run}: over {m} tests a lone change is flagged only at p <= {alpha / m:.2g}, below the smallest p-value "
        f"{resamples} resamples give a permutation or bootstrap test ({floor:.2g}); raise eval.bootstrap_resamples "
        "or compare fewer slices to see single changes in those metrics"
    )


def _tested(d: Mapping[str, Any]) -> bool:
    return d.get("status") == "compared" and d.get("p_value") is not None
