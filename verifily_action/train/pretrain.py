"""Continued pre-training (`task: pretrain`): raw documents -> max_length blocks of a causal LM, with nothing cut.

Each document is tokenized as the tokenizer encodes a sequence (its BOS, if it adds one) and gets EOS appended, so
the model learns where documents end; the documents are laid end to end and cut into blocks of `max_length` tokens.
No token is truncated or dropped: the last, partial block is kept (the collator pads it, with -100 labels). Labels
are the input ids (the model shifts them), so the loss covers every token but the first of each block, which has no
context inside its block. Blocks may span two documents; that is what pre-training on a stream of text does.

Eval (evaluate/pretrain.py) scores each held-out document alone, through as many windows as it needs.
Also here: the checks that only pretrain needs (a causal LM head; no empty document).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import Problem, VerifilyError


def document_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each document's token ids: the tokenizer's own special tokens (e.g. BOS), the text, then EOS. Training and
    eval encode documents through this one function."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise VerifilyError(
            "task pretrain needs a tokenizer with an eos token (it marks where each document ends)",
            hint="save the tokenizer with an eos_token set",
        )
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return [list(x) + [eos] for x in ids]


def pack(docs: Sequence[Sequence[int]], block: int) -> list[list[int]]:
    """The documents' ids concatenated and cut into blocks of `block` tokens; the last block keeps the remainder."""
    stream = [t for d in docs for t in d]
    return [stream[i : i + block] for i in range(0, len(stream), block)]


def encode_documents(rows: Any, tokenizer: Any, max_length: int, stats: Any) -> tuple[dict[str, list[Any]], str]:
    """The train split's columns (input_ids = labels, one row per block) and a note on the packing; fills `stats`
    (train.data.TokenStats): rows = documents, tokens, longest document, blocks. Nothing is ever truncated."""
    docs = document_ids(tokenizer, [str(t) for t in rows["text"]])
    blocks = pack(docs, max_length)
    stats.longest = max((len(d) for d in docs), default=0)
    stats.blocks = len(blocks)
    total = sum(len(d) for d in docs)
    last = len(blocks[-1]) if blocks else 0
    note = (
        f"pretrain: {len(docs)} documents, {total} tokens (EOS after each) packed into {len(blocks)} blocks of "
        f"max_length {max_length}" + (f" (the last holds {last})" if blocks and last < max_length else "")
        + "; no token truncated"
    )  # fmt: skip
    return {"input_ids": blocks, "labels": [list(b) for b in blocks]}, note


# ---------------------------------------------------------------- checks


def check_causal_lm(task: str, model: Any) -> None:
    """`task: pretrain` and `task: dpo` need a decoder-only causal LM: refuse an encoder-decoder or a model whose
    checkpoint is only an encoder or a classifier, from its config.json (before anything is loaded)."""
    from .models import not_causal_lm

    why = not_causal_lm(model)
    if why:
        raise VerifilyError(
            f"task {task} needs a decoder-only causal LM, but {model.name!r} is {why}",
            hint=f"use a causal LM (Llama, Qwen, GPT-2, ...) for {task}; task seq2seq trains encoder-decoders and "
            "task classification trains classifiers",
        )


def refuse_empty_documents(report: Any) -> None:
    """A document with an empty (or whitespace-only) text: one error naming each row (file:line), from the data
    checks (`datasets.check_data`); other tasks only note them."""
    where = [e for e in report.examples if e.check == "empty_text"]
    total = sum(report.empty_text.values())
    if total:
        raise VerifilyError(
            f"dataset {report.ref}: {total} document{'s' * (total != 1)} with empty text: task pretrain has "
            "nothing to learn or score in them",
            problems=[Problem(f"{e.detail}", file=e.file, line=e.line) for e in where],
            omitted=max(0, total - len(where)),
            hint="remove the rows listed (file:line) or give them text, in a new dataset version",
        )
