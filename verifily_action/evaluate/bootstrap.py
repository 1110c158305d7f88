"""Percentile-bootstrap confidence intervals for every metric, vectorized with numpy.

One seeded matrix of resample indices (B x n) is drawn per set of examples and shared by all its metrics, so the
intervals of one slice are computed from the same resamples. Mean metrics (accuracy, exact match, token F1, ROUGE-L,
loss) are the row means of the per-example scores gathered through that matrix; perplexity is exp of the loss's
resampled means; macro-F1 comes from per-resample
confusion counts built with one `np.bincount` over (resample, reference, prediction) codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import label_set, macro_f1_from_counts

DEFAULT_RESAMPLES = 1000
# Bound the index matrix's size (resamples x n int64): large eval sets are resampled in chunks of rows.
_MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def _index_chunks(rng: np.random.Generator, n: int, resamples: int):
    rows = max(1, _MAX_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        b = min(rows, resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def resample_stats(
    metric_names: Sequence[str],
    scores: dict[str, np.ndarray],
    references: Sequence[str] | None = None,
    predictions: Sequence[str] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each metric's value on every bootstrap resample: {metric: array of shape (resamples,)}.

    `scores` holds the per-example score arrays (metrics.per_example_scores); macro-F1 needs the label strings.
    """
    n = len(next(iter(scores.values()))) if scores else len(references or ())
    if n == 0:
        raise ValueError("cannot bootstrap an empty set")
    rng = np.random.default_rng(seed)
    wanted = list(metric_names)
    mean_keys = sorted({"loss" if m == "perplexity" else m for m in wanted if m != "macro_f1"})
    parts: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    codes = k = None
    if "macro_f1" in wanted:
        if references is None or predictions is None:
            raise ValueError("macro_f1 needs references and predictions")
        labels = label_set(references, predictions)
        k = len(labels)
        index = {lab: i for i, lab in enumerate(labels)}
        codes = np.fromiter(
            (index[r] * k + index[p] for r, p in zip(references, predictions, strict=True)), dtype=np.int64
        )
    for idx in _index_chunks(rng, n, resamples):
        means = {key: scores[key][idx].mean(axis=1) for key in mean_keys}
        for m in wanted:
            if m == "macro_f1":
                assert codes is not None and k is not None
                b = idx.shape[0]
                # Offset each resample's (ref, pred) codes into its own K*K block, count all blocks at once.
                flat = (codes[idx] + (np.arange(b, dtype=np.int64) * k * k)[:, None]).ravel()
                cm = np.bincount(flat, minlength=b * k * k).reshape(b, k, k)
                parts[m].append(macro_f1_from_counts(cm))
            elif m == "perplexity":
                parts[m].append(np.exp(means["loss"]))
            else:
                parts[m].append(means[m])
    return {m: np.concatenate(v) for m, v in parts.items()}


def intervals(
    values: dict[str, float],
    scores: dict[str, np.ndarray],
    references: Sequence[str] | None = None,
    predictions: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval]:
    """Point values (computed on the full set) with their percentile-bootstrap intervals."""
    stats = resample_stats(list(values), scores, references, predictions, resamples=resamples, seed=seed)
    out = {}
    for m, v in values.items():
        low, high = _percentiles(stats[m], confidence)
        out[m] = Interval(float(v), low, high)
    return out


def mean_interval(
    scores: np.ndarray, *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """The interval of the mean of one per-example score array (e.g. accuracy from 0/1 correctness)."""
    stats = resample_stats(["m"], {"m": np.asarray(scores, dtype=float)}, resamples=resamples, seed=seed)["m"]
    low, high = _percentiles(stats, confidence)
    return Interval(float(np.mean(scores)), low, high)
