"""Batched inference for a trained run: the base model plus the run's LoRA adapter and tokenizer.

Speed comes from doing little per example: examples are sorted by token length and cut into batches, so each batch
pads only to its own longest row (dynamic padding); everything runs under `torch.inference_mode`; decoder-only
generation pads on the left (every row's last prompt token sits at the end, where generation continues) and reuses
the KV cache; seq2seq generates from the encoder output. Loss on the references is computed in the same pass style,
per example (mean token cross-entropy over the reference tokens only), for classification too (cross-entropy of the
reference label).
Inputs (and, for generation, the references scored for the loss) longer than the run's max_length are cut as in
training, and counted: each function's `Outputs.extra["truncation"]` says how many rows were cut (never silent).

torch, transformers and peft are imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..runs.layout import LABEL_MAP
from ..train.device import pick_device  # one rule for training and eval: cuda > mps > cpu


@dataclass
class Outputs:
    """Predictions (label strings or generated texts) and per-example losses, in the input order."""

    predictions: list[str]
    losses: list[float | None]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    task: str
    model: Any
    tokenizer: Any
    device: str
    label_map: dict[str, int] | None = None  # classification: label -> class id, as trained
    max_length: int = 512
    verbalizers: dict[str, str] | None = None  # classifier label_tokens: label -> verbalizer text (a causal LM)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: lab for lab, i in (self.label_map or {}).items()}


# ---------------------------------------------------------------- loading


def read_label_map(adapter_dir: Path) -> dict[str, int] | None:
    path = adapter_dir / LABEL_MAP
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    # Accept {"label2id": {...}} or a plain {label: id} mapping.
    mapping = data.get("label2id", data) if isinstance(data, dict) else {}
    return {str(k): int(v) for k, v in mapping.items()}


def read_verbalizers(adapter_dir: Path) -> dict[str, str] | None:
    """label -> verbalizer text when the run classifies by label tokens (train/label_tokens.py), else None."""
    path = adapter_dir / LABEL_MAP
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if not isinstance(data, dict) or data.get("classifier") != "label_tokens":
        return None
    return {str(k): str(v) for k, v in (data.get("label_tokens") or {}).items()}


def load_for_eval(
    task: str,
    base_model: str,
    adapter_dir: Path,
    tokenizer_dir: Path,
    *,
    max_length: int = 512,
    merge: bool = True,
    device: str | None = None,
) -> LoadedModel:
    """Load the base model, apply the adapter with `PeftModel.from_pretrained` (merged into the base weights unless
    `merge=False`), move it to `device` (default: the best one; bf16 on a GPU that has it), eval mode."""
    import torch
    import transformers
    from peft import PeftModel
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    # The base checkpoint lacks the task head the adapter restores (e.g. a classifier): transformers' load report
    # about those "missing" weights is expected here and would only alarm users.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    device = device or pick_device()
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else None
    tok_src = tokenizer_dir if tokenizer_dir.is_dir() else base_model
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    label_map = verbalizers = None
    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    if task == "classification" and (verbalizers := read_verbalizers(adapter_dir)) is not None:
        label_map = read_label_map(adapter_dir)  # label tokens: a causal LM scores each label's tokens
        base = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    elif task == "classification":
        label_map = read_label_map(adapter_dir)
        if not label_map:
            raise VerifilyError(
                f"{adapter_dir / LABEL_MAP} is missing or empty",
                hint=f"a classification run's adapter folder holds {LABEL_MAP}; retrain the run",
            )
        id2label = {i: lab for lab, i in label_map.items()}
        base = AutoModelForSequenceClassification.from_pretrained(
            base_model, num_labels=len(label_map), id2label=id2label, label2id=label_map, **kwargs
        )
    elif task == "seq2seq":
        base = AutoModelForSeq2SeqLM.from_pretrained(base_model, **kwargs)
    else:
        base = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(base.config, "pad_token_id", None) is None:
        base.config.pad_token_id = tokenizer.pad_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a transformers API deprecated in v5
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    if merge:
        # Fold the LoRA deltas into the base weights: one matmul per layer instead of base + two low-rank ones.
        model = model.merge_and_unload()
    model.to(device)
    model.eval()
    return LoadedModel(task, model, tokenizer, device, label_map, max_length, verbalizers)


# ---------------------------------------------------------------- batching


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Index batches, longest first (a memory problem shows in the first batch, not the last)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _timed(fn: Callable[[], Outputs]) -> Outputs:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out.seconds = time.perf_counter() - start
    return out


def _row_losses(logits: Any, labels: Any) -> list[float | None]:
    """Mean cross-entropy per row over the positions whose label is not -100 (logits already aligned)."""
    import torch

    flat = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(labels.shape)
    mask = labels != -100
    counts = mask.sum(dim=1)
    sums = (flat * mask).sum(dim=1)
    return [float(s / c) if c > 0 else None for s, c in zip(sums.tolist(), counts.tolist(), strict=True)]


def tokenize_rows(
    tok: Any, texts: Sequence[str], limit: int, *, target: bool = False, **kw: Any
) -> tuple[dict[str, list[Any]], list[int]]:
    """Tokenize without truncation (to count), then re-tokenize only the rows over `limit` with the tokenizer's own
    truncation (which keeps its special tokens, e.g. T5's closing </s>), as training does. `target=True` encodes
    seq2seq labels (`text_target`). Returns (encoding columns, each row's length before truncation)."""

    def encode(xs: list[str], **more: Any) -> Any:
        return tok(text_target=xs, **kw, **more) if target else tok(xs, **kw, **more)

    enc = {k: list(v) for k, v in encode(list(texts)).items()}
    lengths = [len(x) for x in enc["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > limit]
    if long:
        cut = encode([texts[i] for i in long], truncation=True, max_length=limit)
        for k, col in enc.items():
            for j, i in enumerate(long):
                col[i] = cut[k][j]
    return enc, lengths


def _truncation(limit: int, inputs: set[int], references: set[int], longest: int) -> dict[str, int]:
    """eval_results.json's `truncation`: rows cut to fit max_length (a row counts once even when both sides were)."""
    return {
        "max_length": limit,
        "truncated": len(inputs | references),
        "inputs": len(inputs),
        "references": len(references),
        "longest": longest,
    }


# ---------------------------------------------------------------- classification


def classify(lm: LoadedModel, texts: Sequence[str], references: Sequence[str], batch_size: int) -> Outputs:
    """Predicted labels and the cross-entropy of each reference label (None for a label the model never saw)."""
    import torch

    if lm.verbalizers is not None:  # classifier label_tokens: the labels' summed log-probs, nothing generated
        from .label_tokens import classify as classify_by_tokens

        return classify_by_tokens(lm, texts, references, batch_size)

    tok = lm.tokenizer
    enc, lengths = tokenize_rows(tok, texts, lm.max_length)
    id2label = lm.id2label
    label_map = lm.label_map or {}

    def run() -> Outputs:
        preds: list[str] = [""] * len(texts)
        losses: list[float | None] = [None] * len(texts)
        ref_ids = torch.tensor([label_map.get(r, -100) for r in references], dtype=torch.long)
        for batch in length_sorted_batches([len(x) for x in enc["input_ids"]], batch_size):
            feats = tok.pad([{k: enc[k][i] for k in enc} for i in batch], return_tensors="pt").to(lm.device)
            logits = lm.model(**feats).logits.float()
            # Whole-batch ops, one .tolist() each: per-row tensor indexing costs more than the model on short texts.
            refs = ref_ids[batch].to(lm.device)
            nll = torch.nn.functional.cross_entropy(logits, refs.clamp(min=0), reduction="none")
            for i, p, loss, r in zip(batch, logits.argmax(-1).tolist(), nll.tolist(), refs.tolist(), strict=True):
                preds[i] = id2label[p]
                losses[i] = None if r < 0 else loss
        return Outputs(preds, losses)

    out = _timed(run)
    cut = {i for i, n in enumerate(lengths) if n > lm.max_length}
    out.extra["truncation"] = _truncation(lm.max_length, cut, set(), max(lengths, default=0))
    return out


# ---------------------------------------------------------------- decoder-only generation


def generate_causal(
    lm: LoadedModel,
    prompts: Sequence[str],
    references: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    *,
    add_special_tokens: bool = True,
    generate: bool = True,
) -> Outputs:
    """Greedy generation after each prompt (left padding, KV cache) and the loss of prompt->reference.

    Encoded as training encodes sft rows: the prompt string (already formatted by `train.data.format_prompt`) with
    the tokenizer's special tokens unless a chat template wrote them (`add_special_tokens=False`), then
    `reference + eos` without. `generate=False` scores the loss only (sft rows of plain text: prompt "").
    """
    import torch

    tok = lm.tokenizer
    eos = tok.eos_token or ""
    limit = lm.max_length
    enc, prompt_lengths = tokenize_rows(tok, prompts, limit, add_special_tokens=add_special_tokens)
    prompt_ids = enc["input_ids"]
    # Reference tokens: the continuation of the prompt, then EOS, as in training.
    ref_ids = tok([r + eos for r in references], add_special_tokens=False)["input_ids"]
    # The loss pass scores (prompt + reference)[:limit]: a reference past the window loses its tail (or all of it).
    cut_refs = {i for i, (p, r) in enumerate(zip(prompt_ids, ref_ids, strict=True)) if len(p) + len(r) > limit}
    cut_prompts = {i for i, n in enumerate(prompt_lengths) if n > limit}
    longest = max((n + len(r) for n, r in zip(prompt_lengths, ref_ids, strict=True)), default=0)

    def run() -> Outputs:
        preds: list[str] = [""] * len(prompts)
        losses: list[float | None] = [None] * len(prompts)
        pad = tok.pad_token_id
        for batch in length_sorted_batches(
            [len(p) + len(r) for p, r in zip(prompt_ids, ref_ids, strict=True)], batch_size
        ):
            # Loss pass, right padded: positions are plain 0..len-1 and the logits of row r, position t predict t+1.
            seqs = [(prompt_ids[i] + ref_ids[i])[:limit] for i in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            att = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, (i, s) in enumerate(zip(batch, seqs, strict=True)):
                ids[row, : len(s)] = torch.tensor(s)
                att[row, : len(s)] = 1
                start = min(len(prompt_ids[i]), len(s))
                labels[row, start : len(s)] = torch.tensor(s[start:], dtype=torch.long)
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=att.to(lm.device)).logits
            for row, loss in enumerate(_row_losses(logits[:, :-1], labels[:, 1:].to(lm.device))):
                losses[batch[row]] = loss
        for batch in length_sorted_batches([len(p) for p in prompt_ids] if generate else [], batch_size):
            # Generation pass, left padded: the last real token of every row is at the same (final) position.
            width = max(len(prompt_ids[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            att = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                p = prompt_ids[i]
                ids[row, width - len(p) :] = torch.tensor(p)
                att[row, width - len(p) :] = 1
            out = lm.model.generate(
                input_ids=ids.to(lm.device),
                attention_mask=att.to(lm.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
            texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
            for i, text in zip(batch, texts, strict=True):
                preds[i] = text.strip()
        return Outputs(preds, losses)

    out = _timed(run)
    out.extra["truncation"] = _truncation(limit, cut_prompts, cut_refs, longest)
    return out


# ---------------------------------------------------------------- seq2seq


def generate_seq2seq(
    lm: LoadedModel,
    sources: Sequence[str],
    references: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
) -> Outputs:
    """Greedy generation from each source and the loss of the reference as decoder labels."""
    import torch

    tok = lm.tokenizer
    limit = lm.max_length
    src, src_lengths = tokenize_rows(tok, sources, limit)
    tgt_enc, tgt_lengths = tokenize_rows(tok, references, limit, target=True)
    tgt = tgt_enc["input_ids"]

    def run() -> Outputs:
        preds: list[str] = [""] * len(sources)
        losses: list[float | None] = [None] * len(sources)
        for batch in length_sorted_batches([len(x) for x in src["input_ids"]], batch_size):
            feats = tok.pad([{k: src[k][i] for k in src} for i in batch], return_tensors="pt").to(lm.device)
            width = max(len(tgt[i]) for i in batch)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, i in enumerate(batch):
                labels[row, : len(tgt[i])] = torch.tensor(tgt[i], dtype=torch.long)
            labels = labels.to(lm.device)
            logits = lm.model(**feats, labels=labels).logits
            for row, loss in enumerate(_row_losses(logits, labels)):
                losses[batch[row]] = loss
            out = lm.model.generate(**feats, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True)
            for i, text in zip(batch, tok.batch_decode(out, skip_special_tokens=True), strict=True):
                preds[i] = text.strip()
        return Outputs(preds, losses)

    out = _timed(run)
    cut_src = {i for i, n in enumerate(src_lengths) if n > limit}
    cut_tgt = {i for i, n in enumerate(tgt_lengths) if n > limit}
    out.extra["truncation"] = _truncation(limit, cut_src, cut_tgt, max([*src_lengths, *tgt_lengths], default=0))
    return out
