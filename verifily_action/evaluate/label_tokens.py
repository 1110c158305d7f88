"""Prediction for classification by label tokens (train/label_tokens.py): score every label, generate nothing.

Each row's prompt (encoded exactly as training encodes it) is followed in turn by every label's verbalizer tokens;
right-padded forward passes over the rows × labels (about eval.batch_size sequences each) give, per label, the sum
of its tokens' log-probabilities given the prompt. The prediction is the label with the highest sum; the
probabilities are a softmax over the sums (calibrated over the label set, so they add up to 1), and the loss is the
cross-entropy of the reference label under those probabilities (as the head path's loss is under its softmax).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..train.label_tokens import prompt_ids
from .inference import LoadedModel, Outputs, _timed, _truncation, length_sorted_batches


def verbalizer_ids(lm: LoadedModel) -> tuple[list[str], list[list[int]]]:
    """The labels in class-id order and their verbalizer ids, tokenized as training tokenized them."""
    labels = [lab for lab, _ in sorted((lm.label_map or {}).items(), key=lambda x: x[1])]
    texts = [(lm.verbalizers or {})[lab] for lab in labels]
    ids = lm.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return labels, [list(x) for x in ids]


def label_log_probs(model: Any, prompts: Sequence[Sequence[int]], verbs: Sequence[Sequence[int]], pad: int) -> Any:
    """(rows, labels) tensor: sum over each verbalizer's tokens of log p(token | prompt, earlier tokens)."""
    import torch

    seqs = [list(p) + list(v) for p in prompts for v in verbs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, s in enumerate(seqs):
        n_prompt = len(prompts[row // len(verbs)])
        ids[row, : len(s)] = torch.tensor(s)
        att[row, : len(s)] = 1
        labels[row, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
    device = next(model.parameters()).device
    # Only the positions that predict a verbalizer token count: slice before casting (vocabularies are large).
    start = min(len(p) for p in prompts) - 1
    logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits[:, start:-1].float()
    target = labels[:, start + 1 :].to(device)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
    return (-nll.sum(dim=1)).reshape(len(prompts), len(verbs))


def classify(lm: LoadedModel, texts: Sequence[str], references: Sequence[str], batch_size: int) -> Outputs:
    """Predicted labels, each row's probabilities over the labels (`extra["probabilities"]`) and the cross-entropy
    of the reference label (None for a label the model never saw)."""
    import torch

    labels, verbs = verbalizer_ids(lm)
    room = max((len(v) for v in verbs), default=0)
    prompts, cut, longest = prompt_ids(lm.tokenizer, texts, lm.max_length, room)
    index = {lab: k for k, lab in enumerate(labels)}
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0

    def run() -> Outputs:
        preds: list[str] = [""] * len(texts)
        losses: list[float | None] = [None] * len(texts)
        probs: list[dict[str, float]] = [{} for _ in texts]
        rows = max(1, batch_size // max(len(labels), 1))  # a forward pass holds about batch_size sequences
        for batch in length_sorted_batches([len(p) for p in prompts], rows):
            scores = label_log_probs(lm.model, [prompts[i] for i in batch], verbs, pad)
            logp = torch.log_softmax(scores, dim=-1)
            for i, row in zip(batch, logp.exp().tolist(), strict=True):
                probs[i] = dict(zip(labels, row, strict=True))
                preds[i] = labels[max(range(len(row)), key=row.__getitem__)]
            for i, row in zip(batch, logp.tolist(), strict=True):
                k = index.get(references[i])
                losses[i] = None if k is None else -row[k]
        return Outputs(preds, losses, extra={"probabilities": probs})

    out = _timed(run)
    out.extra["truncation"] = _truncation(lm.max_length, cut, set(), longest + room)
    return out
