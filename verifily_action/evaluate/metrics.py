"""Task metrics, in pure Python and numpy (no torch) so `compare` can recompute them from predictions.jsonl.

Classification: accuracy, macro-F1, micro-F1, per-class precision/recall/F1, confusion matrix — the same numbers as
scikit-learn (labels = the sorted union of references and predictions; 0 where a ratio's denominator is 0).

Which labels a macro-F1 averages over (`macro_f1_labels`): the whole eval set averages over every label seen, as a
reference or a prediction (scikit-learn's default). A slice averages over the labels of its own references
(`slice_labels`, the default of `eval.slice_macro_f1`): on a 150-intent set sliced by domain, a wrong prediction
naming another domain's intent must cost this slice's recall, not add a 0 for a label the slice never holds. The
old definition, every label seen in the slice (`all_labels`), stays an option. `MacroF1` computes either on a set and
on stacks of its resamples (how a resample weighs its labels: its docstring).

Generation (sft / seq2seq): exact match and token F1 with SQuAD's answer normalization, ROUGE-L F-measure with
rouge-score's default tokenizer (no stemmer), and the loss on the references.

`loss` is the mean over examples of each example's mean token cross-entropy, and `perplexity = exp(loss)`: a
per-example mean (not a token-weighted one) so that every metric but macro-F1 is a mean of per-example scores, which
is what the bootstrap and the paired comparison resample.

Pretrain (raw documents of very different lengths): `loss` and `perplexity` only, token-weighted as pre-training
reports them: loss = sum over documents of (mean token loss x scored tokens) / all scored tokens, perplexity =
exp(loss). The per-example scores carry each document's token count (`TOKENS`), and every resample (bootstrap,
paired bootstrap, permutation test) takes the same ratio over the documents it draws (`weighted_rows`).

DPO (preference pairs, evaluate/preference.py): each row's margin m = beta x ((log pi(chosen) - log ref(chosen)) -
(log pi(rejected) - log ref(rejected))); `preference_accuracy` is the mean of [m > 0], `reward_margin` the mean of m.
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
PRETRAIN_METRICS = ("perplexity", "loss")
DPO_METRICS = ("preference_accuracy", "reward_margin")
ALL_METRICS = CLASSIFICATION_METRICS + GENERATION_METRICS + DPO_METRICS
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "sft": ("exact_match", "token_f1", "rouge_l", "loss"),
    "seq2seq": ("exact_match", "token_f1", "rouge_l", "loss"),
    "pretrain": PRETRAIN_METRICS,
    "dpo": DPO_METRICS,
}
DIRECTIONS: dict[str, str] = {m: "higher" for m in ALL_METRICS} | {"loss": "lower", "perplexity": "lower"}
# Metrics that are a plain mean of one per-example score (the bootstrap resamples those scores directly).
MEAN_METRICS = ("accuracy", "micro_f1", "exact_match", "token_f1", "rouge_l", "loss", *DPO_METRICS)
# The per-example score written to predictions.jsonl for pairing runs example by example.
PRIMARY_SCORE = {
    "classification": "accuracy",
    "sft": "token_f1",
    "seq2seq": "token_f1",
    "pretrain": "loss",
    "dpo": "reward_margin",
}
TOKENS = "tokens"  # pretrain: each document's scored tokens, the weight of its loss (not a metric)


def allowed_metrics(task: str) -> tuple[str, ...]:
    """The metrics a task can report."""
    if task in ("classification", "dpo"):
        return CLASSIFICATION_METRICS if task == "classification" else DPO_METRICS
    return PRETRAIN_METRICS if task == "pretrain" else GENERATION_METRICS


def metrics_for(task: str, requested: Sequence[str] | None = None) -> list[str]:
    """The metric names to report for a task: `requested` (validated against the task) or the task's defaults."""
    allowed = allowed_metrics(task)
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


MACRO_F1_SCOPES = ("slice_labels", "all_labels")


def macro_f1_labels(references: Sequence[str], predictions: Sequence[str], scope: str = "all_labels") -> list[str]:
    """The labels a macro-F1 averages over: `all_labels` every label seen as a reference or a prediction
    (scikit-learn's default, used for the whole eval set), `slice_labels` the labels of these references only."""
    if scope == "slice_labels":
        return sorted(set(references))
    if scope == "all_labels":
        return label_set(references, predictions)
    raise ValueError(f"unknown macro-F1 label scope {scope!r} (expected one of {', '.join(MACRO_F1_SCOPES)})")


_FEW_LABELS = 8  # up to this many labels, per-label counts compare codes label by label (bench/compare_latency.py)


def label_codes(values: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Each value's index in `labels`; a value outside them gets len(labels), the "other" code."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    # the smallest integer type that holds k: resampling copies these codes B x n times, so bytes are time
    dtype = np.min_scalar_type(k) if k < 2**31 else np.int64
    return np.fromiter((index.get(v, k) for v in values), dtype=dtype, count=len(values))


class MacroF1:
    """Macro-F1 of one set of examples under a label scope, for the set itself and for stacks of resamples of it.

    The labels are those of `macro_f1_labels(references, predictions, scope)`, coded 0..k-1 (k: any other label). On
    a resample (`rows(idx)`), the scope's rule picks the labels it averages over, as on any set: `slice_labels` the
    labels among the resample's references, `all_labels` those among its references or predictions. Each label
    counts with the weight 1/pi, pi being its chance to be there at all in a resample of n rows drawn with replacement
    (1 - (1 - m/n)^n, m its rows): a Hajek mean. A label on one row is missing from 37% of resamples; unweighted, the
    labels of one or two rows would lose their share of the mean and pull the resampled values off the estimate
    whenever they score unlike the rest (stray predicted labels all score 0). A label on many rows has pi = 1 (to the
    float), so where every label is common this is the plain mean over the labels a resample shows.

    `labels` may name more labels than this set's (two runs' outcomes share one list so that their codes agree, e.g.
    for a permutation test): the scope's rule still counts only the labels these rows show.
    """

    def __init__(
        self,
        references: Sequence[str],
        predictions: Sequence[str],
        scope: str = "all_labels",
        labels: Sequence[str] | None = None,
    ) -> None:
        self.scope = scope
        own = macro_f1_labels(references, predictions, scope)
        self.labels = own if labels is None else list(labels)
        if labels is not None and not set(own) <= set(self.labels):
            raise ValueError("labels must include every label the scope takes from these outcomes")
        self.k = len(self.labels)
        self.ref = label_codes(references, self.labels)
        self.pred = label_codes(predictions, self.labels)
        n = len(self.ref)
        m = self._counts(self.ref[None, :], self.pred[None, :])[3][0] if n else np.zeros(self.k)
        with np.errstate(divide="ignore"):
            self.inclusion = -np.expm1(n * np.log1p(-m / max(n, 1)))  # 1 - (1 - m/n)^n, exact at m = n

    @property
    def n(self) -> int:
        return len(self.ref)

    def value(self) -> float:
        """Macro-F1 on the whole set: the plain mean over its labels (scikit-learn's `f1_score(labels=...)`)."""
        return float(self.of_codes(self.ref[None, :], self.pred[None, :], weighted=False)[0])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Macro-F1 of each row of `idx` (B x n example indices), Hajek-weighted (see the class docstring)."""
        return self.of_codes(self.ref[idx], self.pred[idx])

    def of_codes(self, ref: np.ndarray, pred: np.ndarray, *, weighted: bool = True) -> np.ndarray:
        """Macro-F1 of each row of stacked codes (B x n), e.g. two runs' predictions mixed for a permutation test."""
        tp, true_n, pred_n, seen = self._counts(ref, pred)
        denom = true_n + pred_n  # = 2tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        present = seen > 0
        if weighted:  # a label this set never shows has inclusion 0 and is never present in its resamples
            weight = np.divide(present, self.inclusion, out=np.zeros(seen.shape), where=present & (self.inclusion > 0))
        else:
            weight = present.astype(float)
        total = weight.sum(axis=1)
        return np.divide((f1 * weight).sum(axis=1), total, out=np.zeros(len(total)), where=total > 0)

    def _counts(self, ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row and label (B x k): true positives, references, predictions, and the rows that make the label
        count under the scope. O(n) per row: per-label counts, no k x k matrix."""
        rows, width = ref.shape[0], self.k + 1
        offset = (np.arange(rows, dtype=np.int64) * width)[:, None]

        def per_label(codes: np.ndarray) -> np.ndarray:
            if self.k <= _FEW_LABELS:  # a comparison per label over small codes beats one bincount of int64 keys
                out = np.empty((rows, self.k))
                for c in range(self.k):
                    out[:, c] = np.count_nonzero(codes == c, axis=1)
                return out
            counts = np.bincount((codes + offset).ravel(), minlength=rows * width)
            return counts.reshape(rows, width)[:, : self.k].astype(float)

        true_n, pred_n = per_label(ref), per_label(pred)
        tp = per_label(np.where(ref == pred, ref, self.k))  # a hit on "other" is nobody's true positive
        if self.scope == "slice_labels":
            return tp, true_n, pred_n, true_n
        return tp, true_n, pred_n, true_n + pred_n - tp  # rows with the label as reference or prediction


def macro_f1(references: Sequence[str], predictions: Sequence[str], scope: str = "all_labels") -> float:
    """Macro-F1 over the labels of `scope` (`macro_f1_labels`); 0.0 for an empty set."""
    return MacroF1(references, predictions, scope).value() if len(references) else 0.0


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
    tokens: Sequence[int] | None = None,
    margins: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-example scores whose means are the MEAN_METRICS (only those that apply to the task and inputs).
    pretrain: the loss and, from `tokens`, each document's weight (TOKENS). dpo: from each row's reward `margins`."""
    out: dict[str, np.ndarray]
    if task == "dpo":
        m = np.asarray(margins if margins is not None else [], dtype=float)
        out = {"preference_accuracy": (m > 0).astype(float), "reward_margin": m}
    elif task == "pretrain":
        out = {} if tokens is None else {TOKENS: np.asarray(tokens, dtype=float)}
    elif task == "classification":
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


def record_scores(task: str, records: Sequence[dict]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """The references, predictions and `per_example_scores` of predictions.jsonl records (pretrain's rows have no
    reference or prediction: ""), pretrain's token weights and dpo's margins included."""
    refs, preds = [r.get("reference", "") for r in records], [r.get("prediction", "") for r in records]
    losses = [r.get("loss") for r in records]
    tokens = [int(r.get("tokens", 0)) for r in records] if task == "pretrain" else None
    margins = [float(r["margin"]) for r in records] if task == "dpo" else None
    return refs, preds, per_example_scores(task, refs, preds, losses, tokens, margins)


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
    *,
    label_scope: str = "all_labels",
) -> dict[str, float]:
    """The named metrics from per-example scores (a slice takes a subset of them instead of re-scoring texts).
    `label_scope`: the labels macro-F1 averages over (`macro_f1_labels`); default every label seen."""
    out: dict[str, float] = {}
    for name in metric_names:
        if name == "macro_f1":
            if references is None or predictions is None:
                raise ValueError("macro_f1 needs references and predictions")
            out[name] = macro_f1(references, predictions, label_scope)
        elif name in ("perplexity", "loss"):
            if "loss" not in scores:
                raise ValueError(f"{name} needs a loss for every example")
            mean = float(weighted_rows(scores, "loss", np.arange(len(scores["loss"]))[None, :])[0])
            out[name] = math.exp(mean) if name == "perplexity" else mean
        elif name in scores:
            out[name] = float(scores[name].mean())
        else:
            raise ValueError(f"metric {name!r} is not available for these inputs (loss needs a loss per example)")
    return out


def weighted_rows(scores: dict[str, np.ndarray], key: str, idx: np.ndarray) -> np.ndarray:
    """The mean of `scores[key]` over each row of `idx` (B x n example indices); the loss of documents that carry
    token counts (TOKENS, pretrain) is weighted by them: sum(loss x tokens) / sum(tokens) per row."""
    if key != "loss" or TOKENS not in scores:
        return scores[key][idx].mean(axis=1)
    weights = scores[TOKENS]
    return (scores[key] * weights)[idx].sum(axis=1) / weights[idx].sum(axis=1)
