"""Eval of `task: dpo`: each held-out pair's log-ratios against the reference, and its records.

A pair is encoded as training encodes it (train.dpo.pair_ids) and each response's summed token log-probability
(after the prompt) is computed twice on one model: by the policy (base + adapter, unmerged) and by the reference, the
same base with the adapter disabled (`disable_adapter()`: no second copy, as in training). A pair's margin is
beta x ((logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))); it is correct when the margin is > 0.
preference_accuracy and reward_margin are the means of those (evaluate.metrics). A row whose chosen equals its
rejected is left out (nothing to prefer; training leaves it out too), as is one whose prompt fills max_length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..tags import tag_value
from .inference import LoadedModel, Outputs, length_sorted_batches


def sequence_logps(lm: LoadedModel, prompts: Sequence[list[int]], responses: Sequence[list[int]], batch_size: int):
    """The summed log-probability of each response's tokens after its prompt, by the model as it is now."""
    import torch

    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    out = [0.0] * len(prompts)
    for batch in length_sorted_batches([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)], batch_size):
        width = max(len(prompts[i]) + len(responses[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, i in enumerate(batch):
            p, r = prompts[i], responses[i]
            ids[row, : len(p) + len(r)] = torch.tensor(p + r)
            att[row, : len(p) + len(r)] = 1
            labels[row, len(p) : len(p) + len(r)] = torch.tensor(r)
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=att.to(lm.device)).logits[:, :-1].float()
        target = labels[:, 1:].to(lm.device)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for row, total in enumerate((logp * (target != -100)).sum(dim=1).tolist()):
            out[batch[row]] = float(total)
    return out


def infer(task: str, run: Any, rows: Any, batch_size: int, max_new_tokens: int) -> tuple[Outputs, list[str], list[str]]:
    """evaluate.runner's inference for dpo (its `_infer`'s signature; nothing is generated): (Outputs with the
    records in extra["records"], references, inputs shown in hard_examples.jsonl)."""
    from ..runs.layout import ADAPTER, TOKENIZER
    from ..train.dpo import pair_ids
    from . import inference
    from .inference import _timed
    from .runner import _stderr as stderr
    from .runner import base_model_dir

    cfg = run.config
    beta, max_length = float(cfg.training.dpo_beta), cfg.training.max_length
    lm = inference.load_for_eval(
        "dpo", base_model_dir(run), run.dir / ADAPTER, run.dir / TOKENIZER, max_length=max_length, merge=False
    )
    prompts, chosen, rejected = (list(map(str, rows[k])) for k in ("prompt", "chosen", "rejected"))
    pairs, cut, longest = pair_ids(lm.tokenizer, prompts, chosen, rejected, max_length)
    keep = [i for i, x in enumerate(pairs) if x is not None and chosen[i] != rejected[i]]
    same = sum(c == r for c, r in zip(chosen, rejected, strict=True))
    if same:
        stderr(f"note: {same} eval rows have chosen equal to rejected: left out (nothing to prefer)")
    if len(keep) < len(rows) - same:
        stderr(f"note: {len(rows) - same - len(keep)} eval pairs left out: their prompt fills max_length {max_length}")
    kept = [p for p in (pairs[i] for i in keep) if p is not None]
    p_ids, c_ids, r_ids = [p for p, _, _ in kept], [c for _, c, _ in kept], [r for _, _, r in kept]

    def run_all() -> Outputs:
        logps = [sequence_logps(lm, p_ids, x, batch_size) for x in (c_ids, r_ids)]
        with lm.model.disable_adapter():  # the reference: the base model, the adapter disabled
            refs = [sequence_logps(lm, p_ids, x, batch_size) for x in (c_ids, r_ids)]
        return Outputs([""] * len(kept), [None] * len(kept), extra={"logps": logps, "ref_logps": refs})

    out = _timed(run_all)
    ids, tags = list(rows["id"]), list(rows["tags"])
    (pc, pr), (rc, rr) = out.extra.pop("logps"), out.extra.pop("ref_logps")
    out.extra["records"] = build_records([str(ids[i]) for i in keep], [tags[i] for i in keep], pc, pr, rc, rr, beta)
    out.extra["truncation"] = {
        "max_length": max_length, "truncated": cut, "inputs": 0, "references": cut, "longest": longest
    }  # fmt: skip
    out.extra.update(device=lm.device, label_map=None, generated=True)
    return out, ["chosen"] * len(keep), [prompts[i] for i in keep]


def build_records(
    ids: Sequence[str],
    tags: Sequence[Any],
    logp_chosen: Sequence[float],
    logp_rejected: Sequence[float],
    ref_chosen: Sequence[float],
    ref_rejected: Sequence[float],
    beta: float,
) -> list[dict[str, Any]]:
    """predictions.jsonl rows of a dpo eval, one per pair: id, tags, the four log-probs, the two log-ratios,
    margin (beta x their difference: the per-row score `compare` pairs; higher is better), correct (margin > 0),
    reference "chosen" and prediction (the response the policy prefers, relative to the reference), and loss (the
    pair's DPO loss, -log sigmoid(margin))."""
    out = []
    for i in range(len(ids)):
        lr_c, lr_r = logp_chosen[i] - ref_chosen[i], logp_rejected[i] - ref_rejected[i]
        margin = beta * (lr_c - lr_r)
        out.append(
            {
                "id": str(ids[i]),
                "tags": {k: tag_value(tags[i], k) for k in (tags[i] or {})},
                "reference": "chosen",
                "prediction": "chosen" if margin > 0 else "rejected",
                "logp_chosen": logp_chosen[i],
                "logp_rejected": logp_rejected[i],
                "ref_logp_chosen": ref_chosen[i],
                "ref_logp_rejected": ref_rejected[i],
                "chosen_logratio": lr_c,
                "rejected_logratio": lr_r,
                "margin": margin,
                "score": margin,
                "loss": math.log1p(math.exp(-margin)) if margin > -30 else -margin,
                "correct": margin > 0,
            }
        )
    return out
