"""Rows -> model inputs per task, with truncation counted (never silent), and the batch collators.

sft: the prompt (through the tokenizer's chat template when it has one, else `format_prompt`) is followed by the
response and EOS; labels copy the ids with every prompt token masked to -100, so the loss covers the response only.
Rows with only `text` train on the whole text. The encoding is the one eval scores with: prompt tokens with the
tokenizer's special tokens, then `response + eos` without them.
seq2seq: source = `format_prompt(prompt)`, target = response (labels; padding masked to -100 by the collator).
classification: text -> ids, label string -> class id through the label map (sorted labels of the train split).
pretrain: documents + EOS packed into max_length blocks, nothing truncated (train/pretrain.py).
dpo: (prompt, chosen, rejected) token ids for TRL's DPOTrainer (train/dpo.py).
Padding is dynamic (each batch to its longest row); a `length` column lets the Trainer group similar lengths.
Tokens/s counts real tokens through a forward pre-hook (the dataloader prefetches, so counting at collate time
would run a batch ahead). Rows are tokenized whole to count what truncation cuts, so transformers' warning "Token
indices sequence length is longer than …" is silenced while encoding: every such row is truncated and reported here
(unless max_length exceeds the model's own limit, when the warning is kept).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import VerifilyError

SFT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
_LENGTH_WARNING = "Token indices sequence length is longer than"


class _DropLengthWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LENGTH_WARNING)


@contextmanager
def _quiet_length_warning(tokenizer: Any, max_length: int) -> Iterator[None]:
    """Silence transformers' too-long-sequence warning while rows are tokenized whole, when every row it would warn
    about (longer than the model's limit) is also longer than max_length, so truncated and reported by `encode`."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or max_length > limit:
        yield
        return
    log = logging.getLogger("transformers.tokenization_utils_base")
    quiet = _DropLengthWarning()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def format_prompt(task: str, prompt: str, tokenizer: Any = None) -> str:
    """The prompt text the model sees (training and eval must agree). sft with a tokenizer that has a chat
    template: the template with one user turn and the generation prompt; sft otherwise: SFT_TEMPLATE;
    seq2seq: the prompt unchanged."""
    if task != "sft":
        return prompt
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return SFT_TEMPLATE.format(prompt=prompt)


@dataclass
class TokenStats:
    """What tokenization did to one split."""

    rows: int = 0
    truncated: int = 0  # rows longer than max_length, cut to fit
    dropped: int = 0  # rows with nothing left to learn after truncation (prompt filled the window)
    tokens: int = 0
    max_length: int = 0
    longest: int = 0
    blocks: int | None = None  # pretrain: max_length blocks the documents were packed into

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Encoded:
    columns: dict[str, list[Any]]
    stats: TokenStats
    notes: list[str] = field(default_factory=list)


def build_label_map(labels: Sequence[str]) -> dict[str, int]:
    return {lab: i for i, lab in enumerate(sorted({str(x) for x in labels}))}


def unseen_labels(label_map: dict[str, int], labels: Sequence[str]) -> dict[str, int]:
    """Counts of labels (e.g. of the eval split) that the train split never had."""
    return dict(sorted(Counter(str(x) for x in labels if str(x) not in label_map).items()))


def _need(rows: Any, cols: Sequence[str], task: str) -> None:
    have = set(rows.column_names)
    missing = [c for c in cols if c not in have]
    if missing:
        raise VerifilyError(
            f"task {task} needs the fields {', '.join(cols)}; the rows have no {', '.join(missing)}",
            hint="map row keys to roles with the config's `fields:` (or the manifest's `fields`)",
        )


def _ids(tokenizer: Any, texts: list[str], max_length: int, stats: TokenStats) -> tuple[list[list[int]], set[int]]:
    """Tokenize without truncation (to count), then re-tokenize the few long rows with the tokenizer's own
    truncation (which keeps its special tokens, e.g. T5's closing </s>). Returns (ids, indices truncated)."""
    special = True
    ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
    long = [i for i, x in enumerate(ids) if len(x) > max_length]
    stats.longest = max([stats.longest, *(len(x) for x in ids)])
    if long:
        cut = tokenizer([texts[i] for i in long], add_special_tokens=special, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        for i, x in zip(long, cut, strict=True):
            ids[i] = x
    return ids, set(long)


def encode(
    task: str,
    rows: Any,
    tokenizer: Any,
    max_length: int,
    label_map: dict[str, int] | None = None,
    verbalizers: Any = None,
) -> Encoded:
    """Tokenize a split (a datasets.Dataset with canonical columns) for `task`; classification with `verbalizers`
    (train/label_tokens.py) encodes prompt + label tokens, the loss on the label's tokens only."""
    with _quiet_length_warning(tokenizer, max_length):
        return _encode(task, rows, tokenizer, max_length, label_map, verbalizers)


def _encode(task: str, rows: Any, tokenizer: Any, max_length: int, label_map: Any, verbalizers: Any) -> Encoded:
    stats = TokenStats(rows=len(rows), max_length=max_length)
    cols: dict[str, list[Any]]
    if task == "classification" and verbalizers is not None:
        from .label_tokens import encode as encode_label_tokens

        _need(rows, ("text", "label"), task)
        cols = encode_label_tokens(rows, tokenizer, max_length, label_map, verbalizers, stats)
    elif task == "classification":
        _need(rows, ("text", "label"), task)
        assert label_map is not None
        ids, cut = _ids(tokenizer, [str(t) for t in rows["text"]], max_length, stats)
        stats.truncated = len(cut)
        labels = [label_map.get(str(x), -1) for x in rows["label"]]
        keep = [i for i, y in enumerate(labels) if y >= 0]  # unseen labels cannot be trained on (reported)
        stats.dropped = len(labels) - len(keep)
        cols = {"input_ids": [ids[i] for i in keep], "labels": [labels[i] for i in keep]}
    elif task == "seq2seq":
        _need(rows, ("prompt", "response"), task)
        src, cut_src = _ids(tokenizer, [format_prompt(task, str(p)) for p in rows["prompt"]], max_length, stats)
        tgt, cut_tgt = _ids(tokenizer, [str(r) for r in rows["response"]], max_length, stats)
        stats.truncated = len(cut_src | cut_tgt)  # a row counts once even when both sides were cut
        cols = {"input_ids": src, "labels": tgt}
    elif task == "sft":
        cols = _encode_sft(rows, tokenizer, max_length, stats)
    elif task == "dpo":  # preference pairs, in TRL's columns (train/dpo.py)
        from .dpo import encode_pairs

        _need(rows, ("prompt", "chosen", "rejected"), task)
        return encode_pairs(rows, tokenizer, max_length)
    elif task == "pretrain":
        from .pretrain import encode_documents

        _need(rows, ("text",), task)
        cols, packed = encode_documents(rows, tokenizer, max_length, stats)
    else:
        raise ValueError(task)
    cols["attention_mask"] = [[1] * len(x) for x in cols["input_ids"]]
    cols["length"] = [len(x) for x in cols["input_ids"]]
    stats.tokens = sum(cols["length"])
    notes = [packed] if task == "pretrain" else []
    if stats.truncated:
        notes.append(
            f"{stats.truncated} of {stats.rows} rows are longer than max_length {max_length} tokens and were "
            f"truncated (longest: {stats.longest})"
        )
    if stats.dropped:
        notes.append(f"{stats.dropped} rows were left out: nothing to learn from them after truncation/labels")
    return Encoded(cols, stats, notes)


def _encode_sft(rows: Any, tokenizer: Any, max_length: int, stats: TokenStats) -> dict[str, list[Any]]:
    have = set(rows.column_names)
    eos = tokenizer.eos_token or ""
    if not {"prompt", "response"} <= have:
        _need(rows, ("text",), "sft")
        ids, cut = _ids(tokenizer, [str(t) + eos for t in rows["text"]], max_length, stats)
        stats.truncated = len(cut)
        return {"input_ids": ids, "labels": [list(x) for x in ids]}
    chat = bool(getattr(tokenizer, "chat_template", None))
    prompts = [format_prompt("sft", str(p), tokenizer) for p in rows["prompt"]]
    # A chat template writes its own special tokens (BOS etc.); adding them again would double them.
    p_ids = tokenizer(prompts, add_special_tokens=not chat)["input_ids"]
    r_ids = tokenizer([str(r) + eos for r in rows["response"]], add_special_tokens=False)["input_ids"]
    out_ids: list[list[int]] = []
    out_labels: list[list[int]] = []
    for p, r in zip(p_ids, r_ids, strict=True):
        seq = p + r
        stats.longest = max(stats.longest, len(seq))
        if len(seq) > max_length:
            stats.truncated += 1
            if len(p) >= max_length:
                stats.dropped += 1  # the prompt alone fills the window: no response token to learn
                continue
            seq = seq[:max_length]
        out_ids.append(seq)
        out_labels.append([-100] * len(p) + seq[len(p) :])
    return {"input_ids": out_ids, "labels": out_labels}


def to_dataset(enc: Encoded) -> Any:
    import datasets

    return datasets.Dataset.from_dict(enc.columns)


class StripLength:
    """Wraps a collator to drop the `length` column (used only by the Trainer's length grouping)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        return self.inner([{k: v for k, v in f.items() if k != "length"} for f in features])


class TokenCounter:
    """Counts the real (unpadded) input tokens the model sees, through a forward pre-hook. The count stays a
    device tensor between reads, so counting adds no GPU synchronisation per step."""

    def __init__(self) -> None:
        self._total: Any = 0

    def attach(self, model: Any) -> None:
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        if mask is not None:
            self._total = self._total + mask.detach().sum()
        elif kwargs.get("input_ids") is not None:  # padding-free (packed) batches: every token is real
            self._total = self._total + kwargs["input_ids"].numel()

    def __call__(self) -> int:
        return int(self._total)


def collator(
    task: str, tokenizer: Any, model: Any = None, pad_to: int | None = None, packing: bool = False
) -> StripLength:
    """Dynamic padding per batch (`pad_to` pads every batch to that length instead, for benchmarks).

    `packing` (sft): padding-free batches — the rows laid end to end as one sequence with position ids restarting
    at each row. Transformers turns restarting position ids into a block-diagonal causal mask (sdpa, flex) or
    varlen kernels (flash attention), so no token attends across rows; the first label of each row is -100, so no
    row predicts the next one's first token. The loss is the mean over the same label tokens as padded batches."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, DataCollatorWithPadding

    padding: bool | str = "max_length" if pad_to else True
    if packing and task == "sft":
        return StripLength(DataCollatorWithFlattening(return_position_ids=True, separator_id=-100))
    inner: Any
    if task == "classification":
        inner = DataCollatorWithPadding(tokenizer, padding=padding, max_length=pad_to)
    else:
        # DataCollatorForSeq2Seq pads labels with -100; with the model it also builds decoder_input_ids (seq2seq).
        inner = DataCollatorForSeq2Seq(
            tokenizer,
            model=model if task == "seq2seq" else None,
            padding=padding,
            max_length=pad_to,
            label_pad_token_id=-100,
        )
    return StripLength(inner)
