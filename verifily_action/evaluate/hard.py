"""Hard examples and the failure breakdown by tag: where the model fails, and whether failures crowd into a slice.

Input is the per-example records of predictions.jsonl (`id, tags, reference, prediction, score, loss, correct`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..tags import NONE_TAG, tag_value
from .slices import existing_keys


def _sort_key(rec: Mapping[str, Any]) -> tuple[bool, float, float]:
    loss = rec.get("loss")
    loss_key = -float(loss) if loss is not None and math.isfinite(loss) else math.inf
    return (bool(rec.get("correct")), loss_key, float(rec.get("score") or 0.0))


def hard_examples(records: Sequence[Mapping[str, Any]], k: int) -> list[dict[str, Any]]:
    """The k worst examples: wrong ones first, then the highest loss, then the lowest score; each with its tags."""
    ranked = sorted(records, key=_sort_key)  # sorted() is stable: ties keep eval-set order
    return [dict(rec, rank=i + 1) for i, rec in enumerate(ranked[:k])]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def failure_breakdown(records: Sequence[Mapping[str, Any]], keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per tag key and value: its share of the failures against its share of the eval set.

    `keys` defaults to every tag key present. Entries are sorted by over-representation (share of failures minus
    share of eval set), largest first, and each carries a sentence for people.
    """
    n = len(records)
    if n == 0:
        return []
    keys = list(keys) or existing_keys([r.get("tags") for r in records])
    failed = [not r.get("correct") for r in records]
    n_fail = sum(failed)
    out: list[dict[str, Any]] = []
    for key in keys:
        values = [tag_value(r.get("tags"), key) for r in records]
        total = Counter(values)
        fails = Counter(v for v, f in zip(values, failed, strict=True) if f)
        for value, count in total.items():
            share_eval = count / n
            share_fail = fails[value] / n_fail if n_fail else 0.0
            where = f"{key}={value}" if value != NONE_TAG else f"rows without {key}"
            if n_fail:
                sentence = (
                    f"{_pct(share_fail)} of failures come from {where}, which is {_pct(share_eval)} of the eval set"
                )
            else:
                sentence = f"no failures; {where} is {_pct(share_eval)} of the eval set"
            out.append(
                {
                    "key": key,
                    "value": value,
                    "n": count,
                    "failures": fails[value],
                    "failure_rate": fails[value] / count,
                    "share_of_eval": share_eval,
                    "share_of_failures": share_fail,
                    "sentence": sentence,
                }
            )
    out.sort(key=lambda e: (-(e["share_of_failures"] - e["share_of_eval"]), e["key"], e["value"]))
    return out
