"""Eval under a multi-process launch (torchrun, accelerate launch): every rank scores its share of the eval rows
(rows rank, rank + world, ...) with its own copy of the model, and rank 0 gathers the records and writes the eval
folder alone, as one process would have.

What rank 0 gathers from each rank: its records (the per-example rows of predictions.jsonl), their references and
the inputs shown in hard_examples.jsonl, its truncation counts and its seconds. The records are put back in the eval
set's order by id (ids are unique within a split), so predictions.jsonl, the metrics and the bootstrap intervals are
those of a one-process eval of the same run — the records are computed row by row, so sharding changes nothing but
the padding of each batch (numerically: the same to float tolerance). The eval takes as long as the slowest rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import VerifilyError
from ..train import ranks
from .inference import Outputs
from .records import records_for
from .streaming import merge_truncation


def check(streamed: bool) -> None:
    """A streaming eval (evaluate/streaming.py) runs in one process: refused as one rank of several."""
    w = ranks.world()
    if streamed and w.size > 1:
        raise VerifilyError(
            f"a streaming eval runs in one process; this is rank {w.rank} of {w.size} (WORLD_SIZE)",
            hint="run `verifily eval --run RUN` without torchrun, or pass a dataset that fits in memory "
            "(the run trained with data.streaming: true)",
        )


def infer(
    task: str, run: Any, rows: Any, batch_size: int, max_new_tokens: int, infer_rows: Callable[..., Any]
) -> tuple[Outputs, list[str], list[dict[str, Any]], list[str]] | None:
    """`infer_rows` (the one-process inference) on this rank's rows; on rank 0: (outputs summary, references,
    records, inputs) of all rows in the eval set's order; on the other ranks: None (they write nothing)."""
    import torch.distributed as dist

    w = ranks.world()
    ranks.init(w)
    mine = rows.select(range(w.rank, len(rows), w.size))
    out, refs, inputs = infer_rows(task, run, mine, batch_size, max_new_tokens)
    records = records_for(task, list(mine["id"]), list(mine["tags"]), out, refs)
    part = {
        "records": records, "refs": list(refs), "inputs": list(inputs), "seconds": out.seconds,
        "truncation": out.extra["truncation"],
    }  # fmt: skip
    parts: list[Any] | None = [None] * w.size if w.main else None
    dist.gather_object(part, parts, dst=0)
    ranks.close()
    if parts is None:
        return None
    return merged(parts, list(rows["id"]), out)


def merged(
    parts: Sequence[dict[str, Any]], ids: Sequence[Any], mine: Outputs
) -> tuple[Outputs, list[str], list[dict[str, Any]], list[str]]:
    """The ranks' parts as one eval: records (with their references and inputs) in the order of `ids`; truncation
    counts added up; seconds: the slowest rank's; device, label map and `generated` from rank 0's outputs (`mine`)."""
    where = {str(x): i for i, x in enumerate(ids)}
    triples = [t for p in parts for t in zip(p["records"], p["refs"], p["inputs"], strict=True)]
    triples.sort(key=lambda t: where[str(t[0]["id"])])
    truncation: dict[str, int] | None = None
    for p in parts:
        truncation = merge_truncation(truncation, p["truncation"])
    extra = {k: v for k, v in mine.extra.items() if k in ("device", "label_map", "generated")}
    summary = Outputs([], [], max(float(p["seconds"]) for p in parts), dict(extra, truncation=truncation))
    return summary, [t[1] for t in triples], [t[0] for t in triples], [t[2] for t in triples]
