"""train_log.jsonl and checkpoints across a resume: the newest complete checkpoint, the log cut back to it, and the
run's train_loss computed from the log over every step of the run (the Trainer's own covers only the steps since
the resume: 0.017 instead of 0.127 for a run resumed at 30%, 0.0 for one resumed at its last step).

Each line's loss is the mean over the steps since the line before (the first: since step 0), and a line is written
at every checkpoint and at the last step (`callbacks.CheckpointCallback`), so a resumed run's lines are the lines
up to its checkpoint followed by those written after it, each window still covering its steps once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..runs.files import write_text_atomic


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete checkpoint in `checkpoints`: the Trainer writes trainer_state.json last, so a process
    killed while saving leaves a folder without a readable one, which is skipped."""
    if not checkpoints.is_dir():
        return None
    steps = {p: p.name.rsplit("-", 1)[1] for p in checkpoints.glob("checkpoint-*")}
    found = [(int(n), p) for p, n in steps.items() if n.isdigit()]
    for _, p in sorted(found, reverse=True):
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(p)
    return None


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def truncate(path: Path, step: int) -> None:
    """On resume, drop log lines after the checkpoint's step (they are logged again)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= step]
    write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def mean_loss(path: Path) -> float | None:
    """The mean training loss over every step the log covers: each line's loss weighted by its window (steps
    since the line before). None without lines, or when a loss is not a finite number."""
    total, prev = 0.0, 0
    for rec in sorted(_lines(path), key=lambda r: r["step"]):
        loss, step = rec.get("loss"), int(rec["step"])
        if not isinstance(loss, (int, float)) or not math.isfinite(loss) or step <= prev:
            return None
        total += float(loss) * (step - prev)
        prev = step
    return total / prev if prev else None
