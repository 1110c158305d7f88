"""Worst-slice discovery: the combinations of one or two tag values whose examples score significantly worse than the
rest of the eval set, ranked by how much worse — the idea of SliceLine (Sagadeeva & Boehm 2021) and Slice Finder
(Chung et al. 2019), on the tags the rows carry.

Input: each example's tags and one per-example score (`verifily eval`: the task's primary score, accuracy or token
F1, else the loss; `verifily compare`: the change in it between two runs on the same examples). Pure numpy and no
model, so eval and compare share it.

The search, bounded:
  * candidates are every `key=value` and every `key1=value1 & key2=value2` (two different keys) with at least
    `min_size` examples and at least one example outside it; a pair that holds the same rows as one of its tags
    alone is that tag and is not counted again. At most `max_candidates` are tested (eval.discover_max_candidates):
    over the cap, single tags first and then pairs, the largest first; `candidates` records how many there were,
    how many were tested and the cap, and the output prints them.
  * each candidate is tested, one-sided towards worse, for "its rows score no differently from the others" (a
    permutation test). For 0/1 scores (accuracy) it is exact: Fisher's test, the hypergeometric tail of the slice's
    count of correct rows (the normal approximation flagged 9% of clean data sets in simulation, where 5% is the
    promise, because accuracies near 1 have a long lower tail). Other scores use its normal approximation
    z = (mean_s - mean_r) / (S * sqrt(1/n_s + 1/n_r)), S the standard deviation of all scores.
  * false discoveries are controlled over all tested candidates with compare/fdr.py (Benjamini–Hochberg by default,
    eval.fdr), and a slice is found when its q-value is below 1 - confidence.
  * a pair is listed only when both of its tags matter: within each of its two tags' slices it is also worse than
    that slice's other rows (the same test; both must hold, so the larger p-value counts, and these p-values of the
    pairs found are adjusted as one more family). Otherwise one tag explains it, and that tag is what is listed; the
    output counts the pairs left out so.
  * found slices are ranked by effect: the difference of means, slice minus rest, in the score's units (points of
    accuracy), worst first; for the loss, higher is worse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tags import tag_value
from .slices import existing_keys

MAX_TERMS = 2


@dataclass
class _Group:
    """One candidate slice: its rows' count, sum and sum of squares (enough for every test here)."""

    key: dict[str, str]
    n: int
    total: float
    squares: float
    parents: list[tuple[int, float, float]] = field(default_factory=list)  # (n, total, squares) of each tag alone

    @property
    def mean(self) -> float:
        return self.total / self.n


def _columns(tags: Sequence[Mapping[str, Any] | None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each tag key: (its distinct values, each row's value code)."""
    out = {}
    for key in existing_keys(tags):
        values, codes = np.unique(np.array([tag_value(t, key) for t in tags], dtype=object), return_inverse=True)
        out[key] = (values, codes.astype(np.int64))
    return out


def _candidates(
    tags: Sequence[Mapping[str, Any] | None], scores: np.ndarray, min_size: int
) -> tuple[list[_Group], list[_Group]]:
    """Every single-tag and two-tag slice with at least `min_size` rows and a non-empty rest."""
    n = len(scores)
    squares = scores * scores
    cols = _columns(tags)
    singles: list[_Group] = []
    stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for key, (values, codes) in cols.items():
        count = np.bincount(codes, minlength=len(values))
        total = np.bincount(codes, weights=scores, minlength=len(values))
        sq = np.bincount(codes, weights=squares, minlength=len(values))
        stats[key] = (count, total, sq)
        for v in np.flatnonzero((count >= min_size) & (count < n)):
            singles.append(_Group({key: str(values[v])}, int(count[v]), float(total[v]), float(sq[v])))
    pairs: list[_Group] = []
    keys = list(cols)
    for i, k1 in enumerate(keys):
        for k2 in keys[i + 1 :]:
            (v1, c1), (v2, c2) = cols[k1], cols[k2]
            n1, n2 = stats[k1][0], stats[k2][0]
            rows = np.flatnonzero((n1[c1] >= min_size) & (n2[c2] >= min_size))  # a pair is no larger than its tags
            if not len(rows):
                continue
            joint, inverse = np.unique(c1[rows] * len(v2) + c2[rows], return_inverse=True)
            count = np.bincount(inverse)
            total = np.bincount(inverse, weights=scores[rows])
            sq = np.bincount(inverse, weights=squares[rows])
            for j in np.flatnonzero(count >= min_size):
                a, b = divmod(int(joint[j]), len(v2))
                if count[j] in (n1[a], n2[b]):  # the same rows as one of its tags: not a new slice
                    continue
                parents = [(int(s[0][x]), float(s[1][x]), float(s[2][x])) for s, x in ((stats[k1], a), (stats[k2], b))]
                both = {k1: str(v1[a]), k2: str(v2[b])}
                pairs.append(_Group(both, int(count[j]), float(total[j]), float(sq[j]), parents))
    return singles, pairs


class _Hypergeometric:
    """Exact one-sided p-values for 0/1 scores: the slice's count of 1s against drawing its n rows at random from all
    (Fisher's exact test; the permutation test itself, where the normal approximation would be too bold in the tail
    for accuracies near 1)."""

    def __init__(self, n: int, ones: int) -> None:
        self.n, self.ones = n, ones
        self.log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])

    def _log_choose(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        lf = self.log_fact
        return np.asarray(lf[a] - lf[b] - lf[np.subtract(a, b)])

    def p_at_most(self, size: int, ones: int) -> float:
        """P(a random slice of `size` rows holds at most `ones` 1s)."""
        low = max(0, size - (self.n - self.ones))
        x = np.arange(low, ones + 1)
        if not len(x):
            return 0.0
        log_p = self._log_choose(self.ones, x) + self._log_choose(self.n - self.ones, size - x)
        return float(min(1.0, np.exp(log_p - self._log_choose(self.n, size)).sum()))

    def p_at_least(self, size: int, ones: int) -> float:
        """P(a random slice of `size` rows holds at least `ones` 1s)."""
        return 1.0 if ones <= 0 else 1.0 - self.p_at_most(size, ones - 1)


def _p_worse(mean_s: float, n_s: int, mean_r: float, n_r: int, sd: float, higher_is_better: bool) -> float:
    """One-sided p-value that the slice is worse than the rest (normal approximation to the permutation test)."""
    if n_r < 1 or sd <= 0:
        return 1.0
    z = (mean_s - mean_r) / (sd * math.sqrt(1.0 / n_s + 1.0 / n_r))
    if not higher_is_better:
        z = -z
    return 0.5 * math.erfc(-z / math.sqrt(2.0))  # Phi(z): small when the slice's mean is far on the worse side


def _sd(n: int, total: float, squares: float) -> float:
    if n < 2:
        return 0.0
    return math.sqrt(max(0.0, (squares - total * total / n) / (n - 1)))


def search(
    tags: Sequence[Mapping[str, Any] | None],
    scores: Sequence[float] | np.ndarray,
    *,
    score_name: str,
    higher_is_better: bool = True,
    min_size: int,
    max_candidates: int,
    confidence: float = 0.95,
    fdr_method: str = "bh",
    regressions_only: bool = False,
) -> dict[str, Any]:
    """The slices significantly worse than the rest (schemas/eval_results.schema.json `discovery`). With
    `regressions_only` (compare: scores are changes), a found slice must also have changed for the worse itself."""
    from ..compare.fdr import adjust  # the one BH/BY; imported here so evaluate/ loads compare/ only when asked

    x = np.asarray(scores, dtype=float)
    if len(x) != len(tags):
        raise ValueError(f"{len(tags)} rows of tags but {len(x)} scores")
    alpha = 1.0 - confidence
    singles, pairs = _candidates(tags, x, min_size)
    possible = len(singles) + len(pairs)
    by_size = sorted(singles, key=lambda g: -g.n) + sorted(pairs, key=lambda g: -g.n)
    tested = by_size[:max_candidates]
    n, grand = len(x), float(x.sum())
    sd = float(np.std(x, ddof=1)) if n > 1 else 0.0
    if np.all((x == 0) | (x == 1)):  # 0/1 scores (accuracy, exact match): the exact test
        exact = _Hypergeometric(n, round(grand))
        test = "fisher_exact"
        p = [
            exact.p_at_most(g.n, round(g.total)) if higher_is_better else exact.p_at_least(g.n, round(g.total))
            for g in tested
        ]
    else:
        test = "z_permutation_approx"
        p = [_p_worse(g.mean, g.n, (grand - g.total) / (n - g.n), n - g.n, sd, higher_is_better) for g in tested]
    q = adjust(p, fdr_method) if tested else np.zeros(0)
    worse = 1.0 if higher_is_better else -1.0
    hits = [
        (g, float(pv), float(qv))
        for g, pv, qv in zip(tested, p, q, strict=True)
        if qv < alpha and not (regressions_only and worse * g.mean >= 0)
    ]
    # A pair stays only where both its tags matter: worse than the other rows of each tag's slice. Both must hold, so
    # its p-value is the larger of the two; these tests are one more family, adjusted like the first.
    within = [
        max(_p_within(g, parent, higher_is_better, test) for parent in g.parents) for g, _, _ in hits if g.parents
    ]
    kept = iter((adjust(within, fdr_method) < alpha).tolist() if within else [])
    found: list[dict[str, Any]] = []
    explained = 0
    for g, pv, qv in hits:
        if g.parents and not next(kept):
            explained += 1
            continue
        rest = (grand - g.total) / (n - g.n)
        found.append(
            {
                "key": dict(g.key),
                "n": g.n,
                "value": g.mean,
                "rest": rest,
                "effect": g.mean - rest,
                "p_value": pv,
                "q_value": qv,
            }
        )
    found.sort(key=lambda f: (worse * float(f["effect"]), -int(f["n"])))
    return {
        "score": score_name,
        "direction": "higher" if higher_is_better else "lower",
        "min_slice_size": int(min_size),
        "max_terms": MAX_TERMS,
        "candidates": {"possible": possible, "tested": len(tested), "cap": int(max_candidates)},
        "test": test,
        "fdr": {"method": fdr_method, "level": alpha},
        "found": found,
        "explained_by_one_tag": explained,
    }


def _p_within(g: _Group, parent: tuple[int, float, float], higher_is_better: bool, test: str) -> float:
    """One-sided p-value of the pair being worse than the other rows of one of its tags' slices (the same test)."""
    n_p, total_p, squares_p = parent
    if test == "fisher_exact":
        exact = _Hypergeometric(n_p, round(total_p))
        ones = round(g.total)
        return exact.p_at_most(g.n, ones) if higher_is_better else exact.p_at_least(g.n, ones)
    n_r = n_p - g.n
    mean_r = (total_p - g.total) / n_r
    return _p_worse(g.mean, g.n, mean_r, n_r, _sd(n_p, total_p, squares_p), higher_is_better)


def for_records(
    task: str,
    records: Sequence[Mapping[str, Any]],
    metric_names: Sequence[str],
    *,
    min_size: int,
    max_candidates: int,
    confidence: float,
    fdr_method: str,
) -> dict[str, Any] | None:
    """Discovery on an evaluation's records (predictions.jsonl rows): on the task's primary per-example score (the
    `score` field: accuracy, or token F1 when the eval generated), else on the loss; None when there is neither."""
    from .metrics import DIRECTIONS, PRIMARY_SCORE

    primary = PRIMARY_SCORE[task]
    if primary in metric_names or task == "classification":
        name, scores = primary, [float(r["score"]) for r in records]
    elif records and all(r.get("loss") is not None for r in records):
        name, scores = "loss", [float(r["loss"]) for r in records]
    else:
        return None
    return search(
        [r.get("tags") for r in records],
        scores,
        score_name=name,
        higher_is_better=DIRECTIONS[name] == "higher",
        min_size=min_size,
        max_candidates=max_candidates,
        confidence=confidence,
        fdr_method=fdr_method,
    )
