"""Statistics of a metric's change between two runs: paired when both saw the same examples, unpaired otherwise.

Paired (the same example ids, in the same order, with the same references):
  * the delta's confidence interval is a paired percentile bootstrap: one seeded (B x n) index matrix resamples the
    examples and both runs' metric is computed on the same rows, so the interval reflects only the change;
  * the p-value is McNemar's exact test for accuracy (a two-sided binomial test on the discordant pairs, the same
    number as `statsmodels...mcnemar(exact=True)` and `scipy.stats.binomtest(b, b + c)`), and an approximate paired
    randomization test for every other metric: each example's two outputs are swapped with probability 1/2, B times,
    and p = (1 + #{|delta*| >= |delta|}) / (B + 1) (Noreen 1989; Dror et al. 2018 recommend it for NLP metrics).
Unpaired (different examples): each run is resampled on its own and the interval is that of the difference of the
two resampled metrics; the p-value is the two-sided bootstrap one, 2 * min(P(delta* <= 0), P(delta* >= 0)).

The interval and the test agree (issue 16): the test decides, and the interval is made to say the same at the same
level alpha = 1 - confidence. Where the test keeps 0 (p >= alpha) but the bootstrap interval leaves it out (the
bootstrap is optimistic with few discordant examples: -11.3...-0.7 beside McNemar's p=0.064), the interval is
extended to reach 0; where the test rejects but the interval holds 0, the change is not called significant and p
becomes the interval's own p-value (the smallest alpha at which it leaves out 0, at least alpha). `reconciled` says
which happened. So a change is significant at the slice level exactly when p < alpha and exactly when its interval
leaves out 0; across slices, `significant` then comes from the q-value (fdr.py), and the MDE from power.py.

Everything is vectorized with numpy; nothing imports scipy (its `stats` module takes over a second to import, which
alone would exceed compare's latency goal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..evaluate.metrics import TOKENS, MacroF1, macro_f1_labels
from . import power

# Bound the (resamples x n) matrices: large eval sets are processed in chunks of rows.
_MAX_CELLS = 4_000_000


@dataclass
class Outcomes:
    """One run's per-example outcomes on one set of examples: what the metrics are computed from.

    `scores` holds per-example score arrays for mean metrics (metrics.per_example_scores); `references` and
    `predictions` are needed for macro-F1 only, which averages over the labels `label_scope` names
    (evaluate.metrics.macro_f1_labels: all_labels for the whole set, the eval's slice_macro_f1 for a slice).
    """

    scores: dict[str, np.ndarray]
    references: Sequence[str]
    predictions: Sequence[str]
    label_scope: str = "all_labels"

    @property
    def n(self) -> int:
        return len(self.references)

    def subset(self, idx: np.ndarray) -> Outcomes:
        return Outcomes(
            {k: v[idx] for k, v in self.scores.items()},
            [self.references[i] for i in idx],
            [self.predictions[i] for i in idx],
            self.label_scope,
        )


@dataclass(frozen=True)
class Delta:
    """The change candidate - baseline of one metric, with its interval and test."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # mcnemar_exact | paired_permutation | unpaired_bootstrap
    paired: bool
    significant: bool
    discordant: tuple[int, int] | None = None  # McNemar: (baseline right & candidate wrong, the reverse)
    mde: float | None = None  # smallest change detectable at 80 % power (power.py)
    reconciled: str | None = None  # None | interval_to_zero | p_from_interval (see the module docstring)

    def to_dict(self) -> dict[str, object]:
        return {
            "delta": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "q_value": None,  # filled by fdr.apply over all of a comparison's tests
            "test": self.test,
            "method": "paired" if self.paired else "unpaired",
            "significant": self.significant,
            "mde": self.mde,
            "reconciled": self.reconciled,
        }


# ---------------------------------------------------------------- McNemar's exact test


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c: min(1, 2 * P(X <= min(b, c))) with
    X ~ Binomial(b + c, 1/2). Exact integer arithmetic (the sum of binomial coefficients is an int), so it holds for
    any n without underflow."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    term, total = 1, 1  # C(n, 0)
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        total += term
    return min(1.0, 2 * total / (1 << n))


def discordant_pairs(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(a right & b wrong, a wrong & b right)."""
    a, b = correct_a.astype(bool), correct_b.astype(bool)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


# ---------------------------------------------------------------- vectorized metric on rows of an index matrix


class _Stat:
    """Computes one metric for every row of a (B x n) selection, given which example each cell takes."""

    def __init__(self, metric: str, outs: Sequence[Outcomes]):
        self.metric = metric
        self.weights: list[np.ndarray] | None = None
        self.products: list[np.ndarray] | None = None
        if metric == "macro_f1":
            # `verifily eval`'s definition and resampling (evaluate.metrics.MacroF1): one label list so the runs'
            # codes agree; each run counts the labels its own rows show.
            scope = outs[0].label_scope
            refs, preds = [r for o in outs for r in o.references], [p for o in outs for p in o.predictions]
            labels = macro_f1_labels(refs, preds, scope)
            self.macro = [MacroF1(o.references, o.predictions, scope, labels) for o in outs]
        else:
            key = "loss" if metric == "perplexity" else metric
            self.values = [np.asarray(o.scores[key], dtype=float) for o in outs]
            # pretrain: a document's loss weighs by its tokens (metrics.weighted_rows): kept as (loss x tokens, tokens)
            if key == "loss" and all(TOKENS in o.scores for o in outs):
                self.weights = [np.asarray(o.scores[TOKENS], dtype=float) for o in outs]
                self.products = [v * w for v, w in zip(self.values, self.weights, strict=True)]

    def value(self, which: int) -> float:
        """Metric of run `which` on all its examples."""
        if self.metric == "macro_f1":
            return self.macro[which].value()
        return float(self.rows(which, np.arange(len(self.values[which]))[None, :])[0])

    def rows(self, which: int, idx: np.ndarray) -> np.ndarray:
        """Metric of run `which` on each row of `idx` (B x n example indices, resamples of its examples)."""
        if self.metric == "macro_f1":
            return self.macro[which].rows(idx)
        if self.weights is not None and self.products is not None:
            means = self.products[which][idx].sum(axis=1) / self.weights[which][idx].sum(axis=1)
        else:
            means = self.values[which][idx].mean(axis=1)
        return np.exp(means) if self.metric == "perplexity" else means

    def rows_mixed(self, swap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paired runs 0 and 1 with each example's outputs exchanged where `swap` (B x n bool) is set."""
        if self.metric == "macro_f1":
            # Each mixed set is scored as it stands, over the labels its rows show (a statistic, not a resample).
            first, second = self.macro
            ref = np.broadcast_to(first.ref, swap.shape)
            pa, pb = first.pred, second.pred
            mixed_a, mixed_b = np.where(swap, pb, pa), np.where(swap, pa, pb)
            return first.of_codes(ref, mixed_a, weighted=False), first.of_codes(ref, mixed_b, weighted=False)
        a, b = self.values
        if self.weights is not None and self.products is not None:  # token-weighted: swap numerators and weights
            (pa, pb), (wa, wb) = self.products, self.weights
            ma = np.where(swap, pb, pa).sum(axis=1) / np.where(swap, wb, wa).sum(axis=1)
            mb = np.where(swap, pa, pb).sum(axis=1) / np.where(swap, wa, wb).sum(axis=1)
        else:
            ma, mb = np.where(swap, b, a).mean(axis=1), np.where(swap, a, b).mean(axis=1)
        return (np.exp(ma), np.exp(mb)) if self.metric == "perplexity" else (ma, mb)


def _chunks(n: int, total: int):
    rows = max(1, _MAX_CELLS // max(n, 1))
    done = 0
    while done < total:
        b = min(rows, total - done)
        yield b
        done += b


def _interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def interval_p(stats: np.ndarray) -> float:
    """The smallest alpha at which the percentile interval of `stats` (np.quantile's linear rule, as `_interval`)
    leaves out 0: the interval at level 1 - alpha holds 0 exactly when alpha <= this."""
    s = np.sort(np.asarray(stats, dtype=float))
    last = len(s) - 1
    if last < 1:
        return 1.0 if last == 0 and s[0] == 0 else 0.0
    # The interval's low end is <= 0 while alpha/2 * last <= t_low, the last position where the interpolated
    # quantile is <= 0; its high end is >= 0 while (1 - alpha/2) * last >= t_high, the first where it is >= 0.
    below = np.flatnonzero(s <= 0)
    if below.size == 0:
        return 0.0
    j = int(below[-1])
    t_low = float(j) if j == last else j - s[j] / (s[j + 1] - s[j])
    above = np.flatnonzero(s >= 0)
    if above.size == 0:
        return 0.0
    k = int(above[0])
    t_high = 0.0 if k == 0 else (k - 1) - s[k - 1] / (s[k] - s[k - 1])
    return float(min(1.0, max(0.0, 2 * t_low / last), max(0.0, 2 * (last - t_high) / last)))


def agree(low: float, high: float, p: float, alpha: float, stats: np.ndarray) -> tuple[float, float, float, str | None]:
    """(low, high, p, reconciled) made to agree at level alpha: the test decides (module docstring)."""
    holds_zero = low <= 0.0 <= high
    if p >= alpha and not holds_zero:
        return min(low, 0.0), max(high, 0.0), p, "interval_to_zero"
    if p < alpha and holds_zero:
        return low, high, max(p, interval_p(stats), alpha), "p_from_interval"
    return low, high, p, None


def point(metric: str, out: Outcomes) -> float:
    """The metric on all of `out`'s examples."""
    return _Stat(metric, [out]).value(0)


# ---------------------------------------------------------------- paired


def paired_deltas(
    metric_names: Sequence[str],
    a: Outcomes,
    b: Outcomes,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Delta]:
    """Change b - a of each metric on the same examples (index i of `a` and `b` is the same example). All metrics
    share one bootstrap index matrix and one swap matrix per chunk."""
    if a.n != b.n or a.n == 0:
        raise ValueError(f"paired comparison needs the same non-zero number of examples, got {a.n} and {b.n}")
    stats = {m: _Stat(m, [a, b]) for m in metric_names}
    observed = {m: s.value(1) - s.value(0) for m, s in stats.items()}
    rng = np.random.default_rng(seed)
    # A second stream for the randomization test, so the bootstrap does not depend on it.
    prng = np.random.default_rng([seed, 1])
    boot: dict[str, list[np.ndarray]] = {m: [] for m in stats}
    extreme = dict.fromkeys(stats, 0)
    permuted = [m for m in stats if m != "accuracy"]
    for rows in _chunks(a.n, resamples):
        idx = rng.integers(0, a.n, size=(rows, a.n))
        for m, s in stats.items():
            boot[m].append(s.rows(1, idx) - s.rows(0, idx))
        if permuted:
            swap = prng.random((rows, a.n)) < 0.5
            for m in permuted:
                ma, mb = stats[m].rows_mixed(swap)
                # ties within float noise count as extreme (the conservative side)
                tol = 1e-12 * max(1.0, abs(observed[m]))
                extreme[m] += int(np.sum(np.abs(mb - ma) >= abs(observed[m]) - tol))
    alpha = 1.0 - confidence
    out: dict[str, Delta] = {}
    for m, s in stats.items():
        deltas = np.concatenate(boot[m])
        low, high = _interval(deltas, confidence)
        if m == "accuracy":
            b_, c_ = discordant_pairs(a.scores["accuracy"], b.scores["accuracy"])
            p = mcnemar_exact(b_, c_)
            low, high, p, fix = agree(low, high, p, alpha, deltas)
            mde = power.mde_mcnemar(b_, c_, a.n, confidence)
            out[m] = Delta(observed[m], low, high, p, "mcnemar_exact", True, p < alpha, (b_, c_), mde, fix)
        else:
            p = (1 + extreme[m]) / (resamples + 1)
            low, high, p, fix = agree(low, high, p, alpha, deltas)
            if m == "macro_f1":
                mde = power.mde_from_se(_se(deltas), confidence)
            elif m == "perplexity":
                mde = power.mde_perplexity(s.values[1] - s.values[0], float(np.mean(s.values[0])), confidence)
            else:
                mde = power.mde_paired_mean(s.values[1] - s.values[0], confidence)
            out[m] = Delta(observed[m], low, high, p, "paired_permutation", True, p < alpha, None, mde, fix)
    return out


def _se(deltas: np.ndarray) -> float:
    return float(np.std(deltas, ddof=1)) if len(deltas) > 1 else float("nan")


# ---------------------------------------------------------------- unpaired


def unpaired_deltas(
    metric_names: Sequence[str],
    a: Outcomes,
    b: Outcomes,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Delta]:
    """Change b - a of each metric when the runs were evaluated on different examples: independent bootstraps."""
    if a.n == 0 or b.n == 0:
        raise ValueError("cannot compare an empty set of examples")
    stats = {m: _Stat(m, [a, b]) for m in metric_names}
    observed = {m: s.value(1) - s.value(0) for m, s in stats.items()}
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in stats}
    for rows in _chunks(max(a.n, b.n), resamples):
        ia = rng.integers(0, a.n, size=(rows, a.n))
        ib = rng.integers(0, b.n, size=(rows, b.n))
        for m, s in stats.items():
            parts[m].append(s.rows(1, ib) - s.rows(0, ia))
    out: dict[str, Delta] = {}
    for m in stats:
        d = np.concatenate(parts[m])
        low, high = _interval(d, confidence)
        p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
        p = max(p, 1.0 / (resamples + 1))  # B draws cannot resolve a smaller p-value
        alpha = 1.0 - confidence
        low, high, p, fix = agree(low, high, p, alpha, d)
        mde = power.mde_from_se(_se(d), confidence)
        out[m] = Delta(observed[m], low, high, p, "unpaired_bootstrap", False, p < alpha, None, mde, fix)
    return out


def value_intervals(
    metric_names: Sequence[str], out: Outcomes, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """{metric: (value, ci_low, ci_high)} of one run: a percentile bootstrap like `verifily eval`'s."""
    stats = {m: _Stat(m, [out]) for m in metric_names}
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in stats}
    for rows in _chunks(out.n, resamples):
        idx = rng.integers(0, out.n, size=(rows, out.n))
        for m, s in stats.items():
            parts[m].append(s.rows(0, idx))
    result = {}
    for m, s in stats.items():
        low, high = _interval(np.concatenate(parts[m]), confidence)
        result[m] = (s.value(0), low, high)
    return result


def finite(x: float) -> float | None:
    """JSON-safe float (None for NaN/inf)."""
    return x if math.isfinite(x) else None
