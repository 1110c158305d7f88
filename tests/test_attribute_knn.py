"""KNN-Shapley (attribute/knn_shapley.py): Jia et al.'s recursion against the Shapley value by its definition (a sum
over every subset of 6 train rows) and against pyDVL's KNNShapleyValuation on the same points and K."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from verifily_action.attribute import knn_shapley as ks

pytestmark = pytest.mark.unit


def _utility(subset, train, labels, query, label, k):
    """Jia et al.'s KNN utility of one query: the share of its K nearest rows in `subset` that carry its label
    (1/K each; an empty subset is worth 0)."""
    if not subset:
        return 0.0
    dist = np.linalg.norm(train[list(subset)] - query, axis=1)
    nearest = [subset[i] for i in np.argsort(dist, kind="stable")[:k]]
    return sum(labels[i] == label for i in nearest) / k


def _brute_force(train, labels, queries, query_labels, k):
    """Shapley values by definition: for each row, the weighted marginal gain over every subset of the others."""
    n = len(labels)
    values = np.zeros(n)
    for q, ql in zip(queries, query_labels, strict=True):
        for i in range(n):
            others = [j for j in range(n) if j != i]
            for size in range(n):
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                for subset in itertools.combinations(others, size):
                    with_i = tuple(sorted((*subset, i)))
                    gain = _utility(with_i, train, labels, q, ql, k) - _utility(subset, train, labels, q, ql, k)
                    values[i] += weight * gain
    return values / len(query_labels)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_the_recursion_equals_the_shapley_value_over_all_subsets(k):
    rng = np.random.default_rng(k)
    train, labels = rng.normal(size=(6, 3)), rng.integers(0, 2, 6)
    queries, query_labels = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
    got = ks.knn_shapley(train, labels, queries, query_labels, k)
    want = _brute_force(train, labels, queries, query_labels, k)
    assert np.abs(got - want).max() < 1e-12, (got, want)


def test_values_sum_to_the_knn_classifiers_accuracy():
    """Efficiency: the values of all rows sum to U(all rows) - U(empty) for each query, i.e. the mean share of
    correctly labelled rows among each query's K nearest."""
    rng = np.random.default_rng(1)
    train, labels = rng.normal(size=(80, 4)), rng.integers(0, 3, 80)
    queries, query_labels = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    got = ks.knn_shapley(train, labels, queries, query_labels, 5).sum()
    want = np.mean(
        [_utility(tuple(range(80)), train, labels, q, y, 5) for q, y in zip(queries, query_labels, strict=True)]
    )
    assert abs(got - want) < 1e-12


def test_equal_to_pydvl_knn_shapley():
    pytest.importorskip("pydvl")
    from sklearn.neighbors import KNeighborsClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyDVL's own deprecation notices
        from pydvl.valuation.dataset import Dataset
        from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation

    rng = np.random.default_rng(7)
    train, labels = rng.normal(size=(300, 16)), rng.integers(0, 3, 300)
    queries, query_labels = rng.normal(size=(60, 16)), rng.integers(0, 3, 60)
    for k in (1, 5, 10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            valuation = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=k), Dataset(queries, query_labels))
            valuation.progress = False
            result = valuation.fit(Dataset(train, labels)).result
        reference = np.zeros(len(labels))
        reference[result.indices] = result.values
        got = ks.knn_shapley(train, labels, queries, query_labels, k)
        assert np.abs(got - reference).max() < 1e-9, k


def test_batches_cover_every_query_once(monkeypatch):
    rng = np.random.default_rng(3)
    train, labels = rng.normal(size=(50, 4)), rng.integers(0, 2, 50)
    queries, query_labels = rng.normal(size=(23, 4)), rng.integers(0, 2, 23)
    whole = ks.knn_shapley(train, labels, queries, query_labels, 3)
    monkeypatch.setattr(ks, "BATCH_CELLS", 50 * 4)  # 4 queries per batch, the last one short
    parts = list(ks.batches(train, labels, queries, query_labels, 3))
    assert [p.stop - p.start for p, _ in parts] == [4, 4, 4, 4, 4, 3]
    assert np.abs(sum(v.sum(axis=0) for _, v in parts) / 23 - whole).max() < 1e-12
    with pytest.raises(ValueError):
        ks.knn_shapley(train, labels, queries, query_labels, 0)


def test_the_truncated_approximation_is_exact_on_each_querys_nearest_rows():
    """`nearest` M: for one query, the rows beyond its M nearest get 0 and the M nearest get their exact KNN-Shapley
    values as a train set of their own; M >= N is the exact recursion."""
    rng = np.random.default_rng(5)
    train, labels = rng.normal(size=(200, 8)), rng.integers(0, 2, 200)
    query, label = rng.normal(size=(1, 8)), rng.integers(0, 2, 1)
    m = 40
    got = ks.knn_shapley(train, labels, query, label, 5, nearest=m)
    near = np.argsort(np.linalg.norm(train - query, axis=1), kind="stable")[:m]
    assert np.count_nonzero(got[np.setdiff1d(np.arange(200), near)]) == 0
    alone = ks.knn_shapley(train[near], labels[near], query, label, 5)
    assert np.abs(got[near] - alone).max() < 1e-12
    exact = ks.knn_shapley(train, labels, query, label, 5)
    assert np.abs(ks.knn_shapley(train, labels, query, label, 5, nearest=500) - exact).max() == 0


def test_the_cli_help_names_the_defaults():
    from typer.testing import CliRunner

    from verifily_action.cli import app

    text = " ".join(CliRunner().invoke(app, ["attribute", "--help"]).output.split())
    assert f"exact up to {ks.EXACT_UP_TO:,} train rows, else {ks.NEAREST_DEFAULT:,}" in text
