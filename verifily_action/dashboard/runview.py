"""What a run's page shows, read from its folder: identity and status (run_meta.json), every evaluation's metrics
overall and per slice with their intervals, its hard examples, the loss curve (train_log.jsonl) and the attribution
segments when `verifily attribute` added them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..runs import layout
from ..runs.files import read_json
from ..runs.results import load_eval_results
from ..tags import slice_label

HARD_SHOWN = 20  # hard examples listed per evaluation (the file keeps eval.hard_examples of them)


def _jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise VerifilyError(f"{path}:{n} is not JSON: {e}", hint="the run folder is damaged") from e
            if limit is not None and len(out) >= limit:
                break
    return out


def loss_curve(run_dir: Path) -> list[dict[str, float]]:
    """(step, loss) of every train_log line that has a loss (eval lines and the summary line have none)."""
    return [
        {"step": r["step"], "loss": r["loss"]}
        for r in _jsonl(run_dir / layout.TRAIN_LOG)
        if isinstance(r.get("step"), int) and isinstance(r.get("loss"), (int, float))
    ]


def _evaluation(folder: Path) -> dict[str, Any]:
    results = load_eval_results(folder / layout.EVAL_RESULTS)
    metrics = list(results["metrics"])
    rows = [{"slice": "overall", "n": results["n"], "too_small": False, "values": results["overall"]}]
    rows += [
        {"slice": slice_label(s["key"]), "n": s["n"], "too_small": s["too_small"], "values": s["metrics"]}
        for s in results["slices"]
    ]
    return {
        "name": folder.name,
        "metrics": metrics,
        "directions": results["directions"],
        "confidence": results["confidence"],
        "rows": rows,
        "hard": _jsonl(folder / layout.HARD_EXAMPLES, HARD_SHOWN),
    }


def _attributions(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    root = run_dir / layout.ATTRIBUTION
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        seg = folder / layout.ATTRIBUTION_SEGMENTS
        if seg.is_file():
            doc = read_json(seg)  # segments on the whole eval set ("overall"); per slice in "slices"
            out.append({"method": folder.name, "confidence": doc.get("confidence"), "segments": doc.get("overall", [])})
    return out


def run_view(run_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """Everything the run page shows; `name` replaces the folder's name (the server names runs by root hash)."""
    d = Path(run_dir)
    if not (d / layout.RUN_META).is_file():
        raise VerifilyError(
            f"{d} is not a run folder (no {layout.RUN_META})", hint="pass a folder `verifily train` made"
        )
    meta = read_json(d / layout.RUN_META)
    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
    return {
        "name": name or d.name,
        "id": meta.get("id"),
        "status": meta.get("status"),
        "task": meta.get("task"),
        "root_hash": meta.get("root_hash"),
        "dataset": (dataset or {}).get("ref"),
        "model": meta.get("model"),
        "started_at": meta.get("started_at"),
        "evaluations": [_evaluation(layout.eval_dir(d, n)) for n in layout.eval_names(d)],
        "loss": loss_curve(d),
        "attributions": _attributions(d),
    }
