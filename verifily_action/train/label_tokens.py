"""Classification through label tokens (`classifier: label_tokens`): a decoder-only causal LM writes the label.

Each label has a verbalizer, the text the model should write for it (`label_tokens` in the config, else the label
itself after a space), tokenized without special tokens into one or several tokens. A row becomes
`<text>` + SUFFIX (the prompt: the tokenizer's special tokens such as BOS, then the text, then "\\nLabel:") followed
by its label's verbalizer tokens; the labels mask every prompt token with -100, so the loss covers the label's
tokens only (as sft's response-only loss). Prediction scores every label: the sum of its verbalizer tokens'
log-probabilities given the prompt (no generation), and the probabilities are a softmax over those sums.

Design choices: the chat template is not used, even when the tokenizer has one — the label tokens must follow the
prompt directly, the fixed suffix works for base and instruct models alike, and training and eval then encode a row
the same way whatever the template. Text longer than the window is cut (from its end) so the suffix and the longest
verbalizer always fit. A verbalizer of zero tokens, or two labels whose verbalizers tokenize the same, is an error
before anything is written; so is an encoder or encoder-decoder model (they have no next-token head to score with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Problem, VerifilyError
from ..yamlsource import format_json_path, load

SUFFIX = "\nLabel:"
CLASSIFIER = "label_tokens"


@dataclass(frozen=True)
class Verbalizers:
    """The labels in class-id order, each one's verbalizer text and token ids."""

    labels: list[str]
    texts: list[str]
    ids: list[list[int]]

    @property
    def longest(self) -> int:
        return max((len(x) for x in self.ids), default=0)


def uses_label_tokens(cfg: Any) -> bool:
    return cfg.task == "classification" and getattr(cfg, "classifier", "head") == CLASSIFIER


def lm_task(cfg: Any) -> str:
    """The task whose model, LoRA task type and batches a config trains: classification by label tokens trains a
    causal LM on masked sequences exactly as sft does (no classification head)."""
    return "sft" if uses_label_tokens(cfg) else cfg.task


def verbalizer_texts(labels: Sequence[str], mapping: Mapping[str, str] | None) -> list[str]:
    """Each label's verbalizer text: the config's, else the label after a space."""
    mapping = mapping or {}
    return [mapping[lab] if lab in mapping else " " + lab for lab in labels]


def build(
    tokenizer: Any, label_map: Mapping[str, int], mapping: Mapping[str, str] | None, source: str | None = None
) -> Verbalizers:
    """Tokenize the verbalizers; one VerifilyError listing every empty or shared verbalizer (`source`: the config
    file, for file:line)."""
    labels = [lab for lab, _ in sorted(label_map.items(), key=lambda x: x[1])]
    texts = verbalizer_texts(labels, mapping)
    ids = [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    where = _locator(source)
    problems = []
    for lab, text, x in zip(labels, texts, ids, strict=True):
        if not x:
            problems.append(where(lab, f"label {lab!r}: its verbalizer {text!r} is empty (zero tokens)"))
    seen: dict[tuple[int, ...], str] = {}
    for lab, x in zip(labels, ids, strict=True):
        if x and tuple(x) in seen:
            other = seen[tuple(x)]
            problems.append(where(lab, f"labels {other!r} and {lab!r} share a verbalizer: both tokenize to {x}"))
        seen.setdefault(tuple(x), lab)
    if problems:
        raise VerifilyError(
            f"label_tokens: {len(problems)} label verbalizer{'s' * (len(problems) > 1)} the model cannot score "
            "(empty, or shared by two labels)",
            problems=problems,
            hint="give each label a distinct, non-empty text under `label_tokens:` (label: text) in the config",
        )
    return Verbalizers(labels, texts, ids)


def _locator(source: str | None) -> Any:
    """label -> Problem at `$.label_tokens.<label>` (file:line when the config file says it, else `label_tokens`)."""
    src = None
    if source:
        try:
            src = load(source, kind="config")
        except (OSError, ValueError, VerifilyError):
            src = None

    def at(label: str, message: str) -> Problem:
        data = getattr(src, "data", None)
        listed = isinstance(data, dict) and isinstance(data.get("label_tokens"), dict) and label in data["label_tokens"]
        path: tuple[str, ...] = ("label_tokens", label) if listed else ("classifier",)
        line, col = src.where(path) if src is not None else (None, None)
        return Problem(message, source, line, col, format_json_path(path))

    return at


def for_config(cfg: Any, tokenizer: Any, label_map: Mapping[str, int] | None) -> Verbalizers | None:
    """The run's verbalizers, or None unless the config classifies by label tokens."""
    if not uses_label_tokens(cfg) or not label_map:
        return None
    return build(tokenizer, label_map, cfg.label_tokens, cfg.source_path)


def label_map_file(cfg: Any, label_map: Mapping[str, int], tokenizer: Any) -> dict[str, Any]:
    """adapter/label_map.json: label2id, and for label tokens the classifier, verbalizers and prompt suffix, so the
    adapter folder alone says how to load and score it (`evaluate.inference.load_for_eval`)."""
    out: dict[str, Any] = {"label2id": dict(label_map)}
    v = for_config(cfg, tokenizer, label_map)
    if v is not None:
        out.update(classifier=CLASSIFIER, label_tokens=dict(zip(v.labels, v.texts, strict=True)), suffix=SUFFIX)
    return out


# ---------------------------------------------------------------- checks before anything is written


def check_model(cfg: Any, model: Any) -> None:
    """`classifier: label_tokens` needs a decoder-only causal LM: refuse an encoder-decoder or an encoder-only
    checkpoint from its config.json, before anything is loaded."""
    from .models import not_causal_lm

    if not uses_label_tokens(cfg):
        return
    why = not_causal_lm(model)
    if why:
        raise VerifilyError(
            f"classifier: label_tokens needs a decoder-only causal LM to score label tokens, but {model.name!r} is "
            f"{why}",
            hint="use `classifier: head` for encoder and encoder-decoder models (a new classification head), or a "
            "causal LM (Llama, Qwen, GPT-2, ...) for label_tokens",
        )


def check_plan(cfg: Any, model: Any, manifest: Any, fields: Any) -> None:
    """Everything label tokens need, checked before a run folder is made: the model kind, then the verbalizers of
    the train split's labels (the tokenizer is loaded; the split is read)."""
    if not uses_label_tokens(cfg):
        return
    check_model(cfg, model)
    from ..datasets import load_split
    from .data import build_label_map
    from .models import load_tokenizer

    rows = load_split(manifest, cfg.train_split, fields=fields)
    if "label" not in rows.column_names:
        return  # encoding reports the missing field
    tokenizer, _ = load_tokenizer(model)
    for_config(cfg, tokenizer, build_label_map(rows["label"]))


# ---------------------------------------------------------------- encoding


def prompt_ids(
    tokenizer: Any, texts: Sequence[str], max_length: int, room: int
) -> tuple[list[list[int]], set[int], int]:
    """Each text's prompt ids (special tokens, text, SUFFIX), the text cut from its end so that `room` more tokens
    (the longest verbalizer) fit in max_length. Returns (ids, indices cut, longest prompt before cutting)."""
    text_ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    suffix = tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]
    budget = max(max_length - len(suffix) - room, 1)
    out, cut, longest = [], set(), 0
    for i, x in enumerate(text_ids):
        longest = max(longest, len(x) + len(suffix))
        if len(x) > budget:
            cut.add(i)
            x = x[:budget]
        out.append(list(x) + list(suffix))
    return out, cut, longest


def encode(
    rows: Any, tokenizer: Any, max_length: int, label_map: Mapping[str, int], verbalizers: Verbalizers, stats: Any
) -> dict[str, list[Any]]:
    """The train split's columns: input_ids = prompt + the label's verbalizer, labels = -100 over the prompt and the
    verbalizer's ids; rows whose label the train split lacks are left out (counted in stats.dropped)."""
    prompts, cut, longest = prompt_ids(tokenizer, [str(t) for t in rows["text"]], max_length, verbalizers.longest)
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    for p, lab in zip(prompts, rows["label"], strict=True):
        k = label_map.get(str(lab))
        if k is None:
            stats.dropped += 1
            continue
        v = verbalizers.ids[k]
        ids.append(p + v)
        labels.append([-100] * len(p) + list(v))
    stats.truncated = len(cut)
    stats.longest = longest + verbalizers.longest
    return {"input_ids": ids, "labels": labels}
