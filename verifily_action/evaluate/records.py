"""predictions.jsonl's rows: built from the model's outputs, written one JSON object a line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import metrics, slices


def build_records(
    task: str,
    ids: Sequence[str],
    tags: Sequence[Mapping[str, Any] | None],
    refs: Sequence[str],
    preds: Sequence[str],
    losses: Sequence[float | None],
) -> list[dict[str, Any]]:
    """predictions.jsonl rows: id, tags, reference, prediction, score (the task's primary per-example score),
    loss, correct (classification: label match; generation: exact match after SQuAD normalization)."""
    records = []
    for i, (ref, pred, loss) in enumerate(zip(refs, preds, losses, strict=True)):
        if task == "classification":
            sc = float(ref == pred)
            correct = ref == pred
        else:
            sc = metrics.token_f1(ref, pred)
            correct = metrics.exact_match(ref, pred) == 1.0
        records.append(
            {
                "id": str(ids[i]),
                "tags": {k: slices.tag_value(tags[i], k) for k in (tags[i] or {})},
                "reference": ref,
                "prediction": pred,
                "score": sc,
                "loss": loss,
                "correct": bool(correct),
            }
        )
    return records


def records_for(task: str, ids: Sequence[str], tags: Sequence[Any], out: Any, refs: Sequence[str]) -> list[dict]:
    """The records of one inference's `out` (inference.Outputs): pretrain's scored documents, dpo's pairs (built by
    evaluate/preference.py), else `build_records` with label-token probabilities (calibrated over the labels)."""
    if task == "pretrain":
        from .pretrain import build_records as document_records

        return document_records(list(ids), list(tags), out.losses, out.extra["tokens"])
    if task == "dpo":
        return out.extra["records"]
    records = build_records(task, ids, tags, refs, out.predictions, out.losses)
    for rec, probs in zip(records, out.extra.get("probabilities") or (), strict=False):
        rec["probabilities"] = probs
    return records


def jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
