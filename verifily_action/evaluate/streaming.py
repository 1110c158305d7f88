"""Eval of a run trained with `data: {streaming: true}`: the eval split in chunks of CHUNK rows, each chunk inferred,
its predictions.jsonl rows written to a scratch file at once and then dropped; the same `runner.score` as the
in-memory eval then works on `Columns`, a read-only view of what was kept, so the metrics and intervals are equal.

Held per row (`Columns`): tags, a pointer to one shared dict per distinct tag combination (8 B); reference and
prediction, pointers to one shared string per distinct value (8 B each: classification labels; a generation task
keeps its reference and generated texts themselves, since token F1 / ROUGE-L and slices re-score them); score and
loss as float64 (8 B each) and one byte each for "has a loss" and "correct": 42 B a row for classification. Not
kept: ids, inputs, label-token probabilities (written to predictions.jsonl only). Scoring builds transient per-row
lists (references, predictions, losses, tags) and a float64 array per metric, and the bootstrap resamples in
chunks of at most 4M indices (`bootstrap._MAX_CELLS`: 32 MB of int64 and a float64 gather of the same size per
metric), which stops growing at 4,000 rows (x 1,000 resamples). Hard examples: the worst
k rows (with their inputs) are merged chunk by chunk — the same rows in the same order as ranking all rows at once
(the ranking is a stable sort and the kept rows all come before the chunk's). The rows are read from the
memory-mapped Arrow file `load_split` writes, CHUNK at a time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..runs.layout import TEMP_SUFFIX
from ..train.streaming import Batch
from . import hard
from .inference import Outputs
from .records import jsonl, records_for

CHUNK = 2048  # rows inferred and written at a time


class Columns(Sequence[dict[str, Any]]):
    """predictions.jsonl's rows without their id, input and probabilities, as compact columns (see the docstring)."""

    def __init__(self) -> None:
        self.tags: list[Mapping[str, Any]] = []
        self.refs: list[str] = []
        self.preds: list[str] = []
        self.score = array("d")
        self.loss = array("d")
        self.has_loss = bytearray()
        self.correct = bytearray()
        self._shared: dict[Any, Any] = {}

    def share(self, value: Any, key: Any = None) -> Any:
        return self._shared.setdefault(value if key is None else key, value)

    def add(self, rec: Mapping[str, Any], shared_texts: bool) -> None:
        self.tags.append(self.share(rec["tags"], ("tags", *rec["tags"].items())))
        ref, pred = rec["reference"], rec["prediction"]
        self.refs.append(self.share(ref) if shared_texts else ref)
        self.preds.append(self.share(pred) if shared_texts else pred)
        self.score.append(rec["score"])
        self.has_loss.append(rec["loss"] is not None)
        self.loss.append(rec["loss"] if rec["loss"] is not None else 0.0)
        self.correct.append(bool(rec["correct"]))

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {
            "tags": self.tags[i],
            "reference": self.refs[i],
            "prediction": self.preds[i],
            "score": self.score[i],
            "loss": self.loss[i] if self.has_loss[i] else None,
            "correct": bool(self.correct[i]),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def tags(rows: Any) -> list[Mapping[str, Any]]:
    """The split's tags, CHUNK rows at a time, one shared dict per distinct combination."""
    shared: dict[tuple, Mapping[str, Any]] = {}
    out: list[Mapping[str, Any]] = []
    for batch in rows.select_columns(["tags"]).iter(batch_size=CHUNK):
        out += [shared.setdefault(tuple(t.items()), t) for t in batch["tags"]]
    return out


def merge_truncation(total: dict[str, int] | None, part: dict[str, int]) -> dict[str, int]:
    """Chunks' truncation counts added up (their rows are disjoint, so counts of rows add); the longest row kept."""
    if total is None:
        return dict(part)
    return {k: max(total[k], v) if k in ("longest", "max_length") else total[k] + v for k, v in part.items()}


def infer(task: str, run: Any, rows: Any, batch_size: int, ecfg: Any, infer_chunk: Any, load: Any) -> tuple:
    """Infer `rows` chunk by chunk; returns (outputs summary, references, Columns, hard examples, predictions
    scratch file). `infer_chunk(task, run, rows, batch_size, max_new_tokens, lm)` is the in-memory eval's inference
    on one chunk; `load(task, run)` loads the model once."""
    lm = load(task, run)
    cols = Columns()
    worst: list[dict[str, Any]] = []
    # no name on disk: gone when closed (runner closes it after writing the run) or with the process
    scratch = tempfile.TemporaryFile()  # noqa: SIM115
    seconds, truncation, extra = 0.0, None, {}
    try:
        for batch in rows.iter(batch_size=CHUNK):
            chunk = Batch(batch)
            out, refs, inputs = infer_chunk(task, run, chunk, batch_size, ecfg.max_new_tokens, lm)
            recs = records_for(task, batch["id"], batch["tags"], out, refs)
            scratch.write(jsonl(recs).encode("utf-8"))
            for rec in recs:
                cols.add(rec, shared_texts=task == "classification")
            keep = ecfg.hard_examples
            chunk_worst = hard.hard_examples([dict(r, input=inputs[i]) for i, r in enumerate(recs)], keep)
            merged = hard.hard_examples(worst + chunk_worst, keep)
            worst = [{k: v for k, v in r.items() if k != "rank"} for r in merged]
            seconds += out.seconds
            truncation = merge_truncation(truncation, out.extra["truncation"])
            extra = out.extra
    except BaseException:
        scratch.close()
        raise
    summary = Outputs([], [], seconds, dict(extra, truncation=truncation))
    ranked = [dict(r, rank=i + 1) for i, r in enumerate(worst)]
    return summary, cols.refs, cols, ranked, scratch


def place(scratch: IO[bytes], path: Path) -> None:
    """Copy the predictions scratch file to `path` through a temporary name beside it and `os.replace` (the eval
    folder of a staged run may hold a hard link to the run's own file: never write through it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        scratch.seek(0)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(scratch, dst, 4 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
