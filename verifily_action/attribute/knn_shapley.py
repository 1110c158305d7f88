"""Exact KNN-Shapley values (Jia et al., "Efficient task-specific data valuation for nearest neighbor algorithms",
VLDB 2019, Theorem 1): the Shapley value of every train row for a K-nearest-neighbour classifier's accuracy on each
eval row, in O(N log N) per eval row instead of an exponential sum over subsets.

For one eval row with label y, the train rows sorted from nearest to farthest (a_1 … a_N) get
    s(a_N) = 1[y_{a_N} = y] / N
    s(a_i) = s(a_{i+1}) + (1[y_{a_i} = y] - 1[y_{a_{i+1}} = y]) / K * min(K, i) / i
and a row's value over an eval set is the mean over its rows; the values of all train rows sum to the KNN
classifier's accuracy (the utility of the empty set is 0). Distances are Euclidean (scikit-learn's default, which
pyDVL's `KNNShapleyValuation` uses; a test holds the two equal); ties keep the train order (a stable sort).

The work is done per batch of eval rows (B x N distances and values at a time), so memory stays bounded for any
eval set; callers aggregate each batch (per row, per eval slice, per segment) as it comes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import defaults

DEFAULT_K = defaults.K
EXACT_UP_TO = defaults.EXACT_UP_TO  # train rows valued exactly; beyond, each eval row's NEAREST_DEFAULT nearest only
NEAREST_DEFAULT = defaults.NEAREST
BATCH_CELLS = 4_000_000  # eval rows per batch x train rows: ~32 MB of float64 per array


def _sq_distances(train: np.ndarray, train_sq: np.ndarray, queries: np.ndarray) -> np.ndarray:
    d = train_sq[None, :] - 2.0 * queries @ train.T + np.einsum("ij,ij->i", queries, queries)[:, None]
    return np.maximum(d, 0.0, out=d)


def _nearest_first(dist: np.ndarray, nearest: int | None) -> np.ndarray:
    """Each query's train rows from nearest to farthest (B x N), or only its `nearest` closest (B x M)."""
    if nearest is None or nearest >= dist.shape[1]:
        return np.argsort(dist, axis=1, kind="stable")
    part = np.argpartition(dist, nearest - 1, axis=1)[:, :nearest]
    inner = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, inner, axis=1)


def batch_values(
    train: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    k: int,
    nearest: int | None = None,
) -> np.ndarray:
    """KNN-Shapley values of every train row for each query (B x N): row b is the recursion above for query b.
    `nearest` M: the truncated approximation — each query's recursion runs over its M nearest rows only (as if the
    train set were those M), every other row gets 0 from it (NEAREST_DEFAULT, error measured in bench/RESULTS.md)."""
    dist = _sq_distances(train, np.einsum("ij,ij->i", train, train), queries)
    order = _nearest_first(dist, nearest)
    n = order.shape[1]
    match = (train_labels[order] == query_labels[:, None]).astype(np.float64)  # B x n, nearest first
    i = np.arange(1, n, dtype=np.float64)  # positions 1..N-1 (1-based) of the recursion's a_i
    steps = (match[:, :-1] - match[:, 1:]) / np.maximum(k, i)  # s(a_i) - s(a_{i+1}), since min(K,i)/(K i) = 1/max(K,i)
    sorted_values = np.empty_like(match)
    sorted_values[:, -1] = match[:, -1] / n
    # s(a_i) = s(a_N) + sum of the steps from i to N-1: a reversed cumulative sum
    sorted_values[:, :-1] = sorted_values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    values = np.zeros((len(query_labels), len(train_labels)))
    np.put_along_axis(values, order, sorted_values, axis=1)
    return values


def batches(
    train: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    k: int = DEFAULT_K,
    nearest: int | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """(the queries' positions, their B x N values) batch by batch."""
    if k < 1:
        raise ValueError("k must be at least 1")
    train = np.asarray(train, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    step = max(1, BATCH_CELLS // max(len(train_labels), 1))
    for start in range(0, len(query_labels), step):
        part = slice(start, min(start + step, len(query_labels)))
        yield part, batch_values(train, train_labels, queries[part], query_labels[part], k, nearest)


def knn_shapley(
    train: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    k: int = DEFAULT_K,
    nearest: int | None = None,
) -> np.ndarray:
    """Each train row's KNN-Shapley value over all queries (the mean over them); `nearest`: see batch_values."""
    total = np.zeros(len(train_labels))
    for _, values in batches(train, train_labels, queries, query_labels, k, nearest):
        total += values.sum(axis=0)
    return total / max(len(query_labels), 1)
