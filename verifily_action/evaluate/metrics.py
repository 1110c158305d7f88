"""Task metrics, in pure Python and numpy (no torch) so `compare` can recompute them from predictions.jsonl.

Classification: accuracy, macro-F1, micro-F1, per-class precision/recall/F1, confusion matrix — the same numbers as
scikit-learn (labels = the sorted union of references and predictions; 0 where a ratio's denominator is 0).
Generation (sft / seq2seq): exact match and token F1 with SQuAD's answer normalization, ROUGE-L F-measure with
rouge-score's default tokenizer (no stemmer), and the loss on the references.

`loss` is the mean over examples of each example's mean token cross-entropy, and `perplexity = exp(loss)`: a
per-example mean (not a token-weighted one) so that every metric but macro-F1 is a mean of per-example scores, which
is what the bootstrap and the paired comparison resample.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "micro_f1")
GENERATION_METRICS = ("exact_match", "token_f1", "rouge_l", "loss", "perplexity")
ALL_METRICS = CLASSIFICATION_METRICS + GENERATION_METRICS
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "sft": ("exact_match", "token_f1", "rouge_l", "loss"),
    "seq2seq": ("exact_match", "token_f1", "rouge_l", "loss"),
}
DIRECTIONS: dict[str, str] = {m: "higher" for m in ALL_METRICS} | {"loss": "lower", "perplexity": "lower"}
# Metrics that are a plain mean of one per-example score (the bootstrap resamples those scores directly).
MEAN_METRICS = ("accuracy", "micro_f1", "exact_match", "token_f1", "rouge_l", "loss")
# The per-example score written to predictions.jsonl for pairing runs example by example.
PRIMARY_SCORE = {"classification": "accuracy", "sft": "token_f1", "seq2seq": "token_f1"}


def metrics_for(task: str, requested: Sequence[str] | None = None) -> list[str]:
    """The metric names to report for a task: `requested` (validated against the task) or the task's defaults."""
    allowed = CLASSIFICATION_METRICS if task == "classification" else GENERATION_METRICS
    if not requested:
        return list(DEFAULT_METRICS[task])
    bad = [m for m in requested if m not in allowed]
    if bad:
        from ..errors import VerifilyError

        raise VerifilyError(
            f"metric(s) {', '.join(bad)} do not apply to task {task}",
            hint=f"{task} supports: {', '.join(allowed)}",
        )
    return list(requested)


# ---------------------------------------------------------------- generation: per-example scores

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1's normalization: lower case, drop punctuation and articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(reference: str, prediction: str) -> float:
    return float(normalize_answer(reference) == normalize_answer(prediction))


def token_f1(reference: str, prediction: str) -> float:
    """SQuAD's token F1 on normalized text (two empty answers agree: 1.0; one empty: 0.0)."""
    ref, pred = normalize_answer(reference).split(), normalize_answer(prediction).split()
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# rouge-score's DefaultTokenizer (use_stemmer=False): lower case, non-[a-z0-9] runs become spaces.
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def _lcs_length(a: list[str], b: list[str]) -> int:
    # One rolling row of the DP table: O(len(b)) memory.
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure (LCS-based), equal to rouge_score's `rougeL` fmeasure with use_stemmer=False."""
    ref, pred = rouge_tokens(reference), rouge_tokens(prediction)
    if not ref or not pred:
        return 0.0
    lcs = _lcs_length(ref, pred)
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# ---------------------------------------------------------------- classification


def label_set(references: Sequence[str], predictions: Sequence[str]) -> list[str]:
    """Sorted union of the labels seen, scikit-learn's default `labels`."""
    return sorted(set(references) | set(predictions))


def confusion_counts(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """K x K counts, rows = reference label, columns = predicted label, in `labels` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    codes = np.fromiter((index[r] * k + index[p] for r, p in zip(references, predictions, strict=True)), dtype=np.int64)
    return np.bincount(codes, minlength=k * k).reshape(k, k)


def _f1_from_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from confusion counts; 0 where a denominator is 0."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    pred_n = cm.sum(axis=-2).astype(float)  # column sums
    true_n = cm.sum(axis=-1).astype(float)  # row sums
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    denom = pred_n + true_n  # = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, true_n


def macro_f1_from_counts(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 over the labels present (as reference or prediction); works on a stack of matrices (..., K, K)."""
    _, _, f1, _ = _f1_from_counts(cm)
    present = (cm.sum(axis=-2) + cm.sum(axis=-1)) > 0
    n_present = present.sum(axis=-1)
    return np.divide((f1 * present).sum(axis=-1), n_present, out=np.zeros(f1.shape[:-1]), where=n_present > 0)


def per_class(references: Sequence[str], predictions: Sequence[str]) -> dict[str, dict[str, float]]:
    """{label: {precision, recall, f1, support}} like sklearn's classification report."""
    labels = label_set(references, predictions)
    precision, recall, f1, support = _f1_from_counts(confusion_counts(references, predictions, labels))
    return {
        lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for lab, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def confusion_matrix(references: Sequence[str], predictions: Sequence[str]) -> dict[str, list]:
    labels = label_set(references, predictions)
    return {"labels": labels, "matrix": confusion_counts(references, predictions, labels).tolist()}


# ---------------------------------------------------------------- one entry point


def per_example_scores(
    task: str,
    references: Sequence[str],
    predictions: Sequence[str],
    losses: Sequence[float | None] | None = None,
) -> dict[str, np.ndarray]:
    """Per-example scores whose means are the MEAN_METRICS (only those that apply to the task and inputs)."""
    if task == "classification":
        correct = np.fromiter(
            (r == p for r, p in zip(references, predictions, strict=True)), dtype=float, count=len(references)
        )
        # Single-label micro-F1 equals accuracy: micro TP = correct, micro FP = micro FN = wrong.
        out = {"accuracy": correct, "micro_f1": correct}
    else:
        out = {
            "exact_match": np.array(
                [exact_match(r, p) for r, p in zip(references, predictions, strict=True)], dtype=float
            ),
            "token_f1": np.array([token_f1(r, p) for r, p in zip(references, predictions, strict=True)], dtype=float),
            "rouge_l": np.array([rouge_l(r, p) for r, p in zip(references, predictions, strict=True)], dtype=float),
        }
    if losses is not None and len(losses) and all(x is not None for x in losses):
        out["loss"] = np.asarray(losses, dtype=float)
    return out


def compute(
    task: str,
    metric_names: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    losses: Sequence[float | None] | None = None,
) -> dict[str, float]:
    """The named metrics over a whole set. Raises ValueError on an empty set or a metric that needs missing losses."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("no examples: metrics of an empty set are undefined")
    scores = per_example_scores(task, references, predictions, losses)
    return from_scores(metric_names, scores, references, predictions)


def from_scores(
    metric_names: Sequence[str],
    scores: dict[str, np.ndarray],
    references: Sequence[str] | None = None,
    predictions: Sequence[str] | None = None,
) -> dict[str, float]:
    """The named metrics from per-example scores (a slice takes a subset of them instead of re-scoring texts)."""
    out: dict[str, float] = {}
    for name in metric_names:
        if name == "macro_f1":
            if references is None or predictions is None:
                raise ValueError("macro_f1 needs references and predictions")
            labels = label_set(references, predictions)
            out[name] = float(macro_f1_from_counts(confusion_counts(references, predictions, labels)))
        elif name == "perplexity":
            if "loss" not in scores:
                raise ValueError("perplexity needs a loss for every example")
            out[name] = math.exp(float(scores["loss"].mean()))
        elif name in scores:
            out[name] = float(scores[name].mean())
        else:
            raise ValueError(f"metric {name!r} is not available for these inputs (loss needs a loss per example)")
    return out
