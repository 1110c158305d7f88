"""The comparison's "Which data" block: when the newest compared run carries a row attribution (`verifily attribute`
with knn-shapley, else tracin), the tag segments that helped and hurt the slice that moved most, and the train rows
valued lowest.

The run folder may be a fork's artifact (the comment job): its attribution files are read with size caps and
checked value by value; anything malformed drops the block with a warning, never the comparison.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..runs.layout import ATTRIBUTION_ROWS, ATTRIBUTION_SEGMENTS, attribution_dir
from ..tags import slice_label

METHODS = ("knn-shapley", "tracin")  # row-valuing methods the report shows, the first the run carries
SHOWN_ROWS = 10
MAX_SEGMENTS_BYTES = 4 * 1024 * 1024
MAX_ROWS_BYTES = 512 * 1024 * 1024
SNIPPET = 120


class Malformed(ValueError):
    pass


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Malformed(f"{where} is not a finite number")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise Malformed(f"{where} is not a string")
    return v


def _segment(s: Any, where: str) -> dict[str, Any]:
    if not isinstance(s, Mapping):
        raise Malformed(f"{where} is not an object")
    rows = s.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise Malformed(f"{where}.rows is not a count")
    verdict = s.get("verdict")
    if verdict not in ("helped", "hurt", "unclear"):
        raise Malformed(f"{where}.verdict is not helped, hurt or unclear")
    return {
        "key": _str(s.get("key"), f"{where}.key"),
        "value": _str(s.get("value"), f"{where}.value"),
        "rows": rows,
        "sum": _num(s.get("sum"), f"{where}.sum"),
        "ci_low": _num(s.get("ci_low"), f"{where}.ci_low"),
        "ci_high": _num(s.get("ci_high"), f"{where}.ci_high"),
        "verdict": verdict,
    }


def _lowest_rows(path: Path) -> list[dict[str, Any]]:
    """The SHOWN_ROWS lowest-valued rows of rows.jsonl, each checked; streamed (the file can be large)."""
    if path.stat().st_size > MAX_ROWS_BYTES:
        raise Malformed(f"{ATTRIBUTION_ROWS} is over {MAX_ROWS_BYTES:,} bytes")
    heap: list[tuple[float, int, dict[str, Any]]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError:
                raise Malformed(f"{ATTRIBUTION_ROWS}:{n} is not JSON") from None
            if not isinstance(row, Mapping):
                raise Malformed(f"{ATTRIBUTION_ROWS}:{n} is not an object")
            tags = row.get("tags")
            if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
                raise Malformed(f"{ATTRIBUTION_ROWS}:{n}.tags is not an object of strings")
            value = _num(row.get("value"), f"{ATTRIBUTION_ROWS}:{n}.value")
            item = {
                "id": _str(row.get("id"), f"{ATTRIBUTION_ROWS}:{n}.id"),
                "tags": {str(k): v for k, v in tags.items()},
                "label": _str(row.get("label", ""), f"{ATTRIBUTION_ROWS}:{n}.label"),  # none for generation rows
                "text": _str(row.get("text"), f"{ATTRIBUTION_ROWS}:{n}.text")[:SNIPPET],
                "value": value,
            }
            entry = (-value, -n, item)  # a max-heap of the lowest values; ties: the first rows stay
            if len(heap) < SHOWN_ROWS:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
    return [e[2] for e in sorted(heap, key=lambda e: (-e[0], -e[1]))]


def _moved_most(comparison: Mapping[str, Any]) -> tuple[str, float] | None:
    """(slice label, delta) of the first metric's largest compared change of the last candidate."""
    metric = comparison["metrics"][0]
    best: tuple[str, float] | None = None
    for row in comparison["rows"]:
        if row["metric"] != metric or not row["deltas"]:
            continue
        d = row["deltas"][-1]
        if d.get("status") != "compared" or d.get("delta") is None:
            continue
        if best is None or abs(d["delta"]) > abs(best[1]):
            best = (slice_label(row["slice"]), float(d["delta"]))
    return best


def which_data(run_dir: Path, run_name: str, comparison: Mapping[str, Any], warn: Callable[[str], None]):
    """The block, or None when the run has no attribution (or a malformed one: then `warn` says why)."""

    def present(method: str) -> bool:
        files = [attribution_dir(run_dir, method) / n for n in (ATTRIBUTION_SEGMENTS, ATTRIBUTION_ROWS)]
        return all(p.is_file() and not p.is_symlink() for p in files)

    method = next((m for m in METHODS if present(m)), None)
    if method is None:
        return None
    folder = attribution_dir(run_dir, method)
    seg_path, rows_path = folder / ATTRIBUTION_SEGMENTS, folder / ATTRIBUTION_ROWS
    try:
        if seg_path.stat().st_size > MAX_SEGMENTS_BYTES:
            raise Malformed(f"{ATTRIBUTION_SEGMENTS} is over {MAX_SEGMENTS_BYTES:,} bytes")
        try:
            doc = json.loads(seg_path.read_text(encoding="utf-8"))
        except ValueError:
            raise Malformed(f"{ATTRIBUTION_SEGMENTS} is not JSON") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("overall"), list):
            raise Malformed(f"{ATTRIBUTION_SEGMENTS} has no `overall` list")
        moved = _moved_most(comparison)
        block, where = doc["overall"], "overall"
        for i, s in enumerate(doc.get("slices") or []):
            if isinstance(s, Mapping) and moved and s.get("slice") == moved[0] and isinstance(s.get("segments"), list):
                block, where = s["segments"], f"slices[{i}].segments"
        segments = [_segment(s, f"{ATTRIBUTION_SEGMENTS} {where}[{i}]") for i, s in enumerate(block)]
        rows = _lowest_rows(rows_path)
        confidence = _num(doc.get("confidence", 0.95), f"{ATTRIBUTION_SEGMENTS} confidence")
    except (Malformed, OSError, UnicodeDecodeError) as e:
        warn(f"the attribution of {run_name} is not shown: {e}")
        return None
    return {
        "run": run_name,
        "method": method,
        "slice": moved[0] if moved and where != "overall" else "all",
        "moved": moved[1] if moved else None,
        "confidence": confidence,
        "segments": segments,
        "harmful_rows": rows,
    }
