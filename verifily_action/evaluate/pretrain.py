"""Eval of `task: pretrain`: each held-out document's mean token loss, over all of its tokens, and its records.

A document is encoded as training encodes it (train.pretrain.document_ids: the tokenizer's BOS, the text, EOS) and
scored alone, never truncated: one that is longer than max_length goes through several windows of max_length tokens
that overlap by one token, each scoring the tokens after its first, so every token but the document's first is
scored exactly once, always with at least one token of context. A document's loss is the mean over those tokens;
`tokens` (how many were scored) weighs it in the token-weighted loss and perplexity (evaluate.metrics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tags import tag_value
from .inference import LoadedModel, Outputs, length_sorted_batches


def windows(ids: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """(start, end) of the windows scoring `ids`: at most `limit` tokens each, overlapping by one token, so the
    targets ids[start + 1 : end] of all windows together are ids[1:], each once."""
    step = limit - 1
    return [(s, min(s + limit, len(ids))) for s in range(0, max(len(ids) - 1, 1), step)]


def score_documents(lm: LoadedModel, texts: Sequence[str], batch_size: int) -> Outputs:
    """Each document's mean token loss (`losses`) and scored tokens (`extra["tokens"]`), in the input order."""
    import torch

    from ..train.pretrain import document_ids
    from .inference import _timed

    limit = lm.max_length
    docs = document_ids(lm.tokenizer, texts)
    pieces = [(d, s, e) for d, ids in enumerate(docs) for s, e in windows(ids, limit)]
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0

    def run() -> Outputs:
        nll = [0.0] * len(docs)
        for batch in length_sorted_batches([e - s for _, s, e in pieces], batch_size):
            width = max(pieces[i][2] - pieces[i][1] for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            att = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, i in enumerate(batch):
                d, s, e = pieces[i]
                ids[row, : e - s] = labels[row, : e - s] = torch.tensor(docs[d][s:e])
                att[row, : e - s] = 1
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=att.to(lm.device)).logits[:, :-1]
            target = labels[:, 1:].to(lm.device)
            flat = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
            ).reshape(target.shape)
            for row, total in enumerate(flat.sum(dim=1).tolist()):
                nll[pieces[batch[row]][0]] += total
        counts = [len(ids) - 1 for ids in docs]
        losses = [t / n if n else None for t, n in zip(nll, counts, strict=True)]  # n = 0: an empty text, no BOS
        return Outputs([""] * len(docs), losses, extra={"tokens": counts})

    out = _timed(run)
    longest = max((len(d) for d in docs), default=0)
    out.extra["truncation"] = {"max_length": limit, "truncated": 0, "inputs": 0, "references": 0, "longest": longest}
    out.extra["windows"] = len(pieces)
    return out


def build_records(
    ids: Sequence[str], tags: Sequence[Mapping[str, Any] | None], losses: Sequence[float | None], tokens: Sequence[int]
) -> list[dict[str, Any]]:
    """predictions.jsonl rows of a pretrain eval, one per document: id, tags, tokens (scored), loss (the document's
    mean token loss) and score (the same loss: the per-row score `compare` pairs; lower is better)."""
    return [
        {
            "id": str(ids[i]),
            "tags": {k: tag_value(tags[i], k) for k in (tags[i] or {})},
            "tokens": int(tokens[i]),
            "loss": losses[i],
            "score": losses[i],
        }
        for i in range(len(ids))
    ]
